//! The referral exchange's writes, inside the batch's transaction: an operator refers a ticket
//! or acts on a referral, a ticket command that partners must hear about (a shared note, a
//! resolution, a status move), a partner's message, a partner's acknowledgement.
//!
//! Every decision is made by the pure functions of [`crate::exchange`]; this module reads what
//! they need, and writes what they decide as events of the site's log: the referral's step, the
//! messages for the outbox (already filtered by the peer's policy) and the effects on our
//! ticket, all in the request's one transaction. A partner's message becomes our own events
//! plus the advance of that peer's mark, never events of another site.

use uuid::Uuid;

use super::request::InBatch;
use super::{InboundMessage, ReferralAck, WriteOutcome};
use crate::exchange::action::{ReferTicket, ReferralAction};
use crate::exchange::edge::WindowAnswers;
use crate::exchange::forward::{self, Edge};
use crate::exchange::inbound::{self, Inbound};
use crate::exchange::record::{short, ExchangeRecord};
use crate::exchange::referral::{self, Effect, Referral, Side, Step};
use crate::exchange::{PeerRates, SharingPolicy};
use crate::model::clock::Millis;
use crate::model::command::{CommandError, DEFAULT_QUEUE};
use crate::model::event::{EventKind, NewTicket};
use crate::model::lifecycle::Status;
use crate::model::peer::{PeerRecord, PeerState};
use crate::model::role::NodeRole;
use crate::model::ticket::{Contact, TicketType};
use crate::store::apply::load_ticket;
use crate::store::exchange as tables;
use crate::store::{query, StoreError};
use crate::wire::exchange::{Answer, Body, ExchangeCode, Message, PartnerStatus, Refused};

/// Longest reason, question or first note an operator may send with a referral action.
const MAX_TEXT_BYTES: usize = 64 * 1024;

fn refused(msg: impl Into<String>) -> StoreError {
    StoreError::Command(CommandError::Refused(msg.into()))
}

fn not_found(msg: impl Into<String>) -> StoreError {
    StoreError::Command(CommandError::NotFound(msg.into()))
}

/// The text of the escalation alarm a referral with a respond-by time sets on our ticket.
fn escalation_text(r: &Referral) -> String {
    format!(
        "referral {} to {}: no answer by the respond-by time: escalate",
        short(r.id),
        r.peer
    )
}

impl InBatch<'_> {
    fn exchange_event(
        &mut self,
        ticket: Option<Uuid>,
        record: ExchangeRecord,
        actor: &str,
        now: Millis,
    ) -> Result<i64, StoreError> {
        self.emit(ticket, EventKind::Exchange { record }, actor, now)
    }

    /// A peer we may exchange with: in the registry, accepted, with the exchange permission.
    fn exchange_peer(&self, site: &str) -> Result<PeerRecord, StoreError> {
        let peer = query::peer(self.conn, site)?
            .ok_or_else(|| not_found(format!("no peer {site:?} (see `ttx peer list`)")))?;
        if peer.state != PeerState::Accepted || !peer.exchange {
            return Err(refused(format!(
                "peer {site:?} may not exchange referrals (it is {}{}): see `ttx peer add`",
                peer.state.as_str(),
                if peer.exchange {
                    ""
                } else {
                    ", without the exchange permission"
                }
            )));
        }
        Ok(peer)
    }

    /// The policy for a peer, or `None` when it is not (or no longer) in the registry.
    fn policy_of(&self, site: &str) -> Result<Option<SharingPolicy>, StoreError> {
        tables::sharing_of(self.conn, site)
    }

    /// `ttx refer`: a new referral of ticket `req.number` to `req.to`.
    pub(super) fn refer(
        &mut self,
        req: &ReferTicket,
        actor: &str,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        let t = super::request::ticket_by_number(self.conn, req.number)?
            .ok_or_else(|| crate::store::query::no_such_ticket(req.number))?;
        if req.to == self.stamp.site {
            return Err(refused("a ticket cannot be referred to its own site"));
        }
        let peer = self.exchange_peer(&req.to)?;
        if let Some(note) = &req.note {
            if note.len() > MAX_TEXT_BYTES {
                return Err(StoreError::Command(CommandError::Invalid(format!(
                    "the note is {} bytes: at most {MAX_TEXT_BYTES}",
                    note.len()
                ))));
            }
        }
        let open = tables::referrals_of_ticket(self.conn, t.id)?
            .into_iter()
            .find(|r| r.side == Side::Out && r.peer == req.to && !r.state.is_final());
        if let Some(r) = open {
            return Err(refused(format!(
                "ticket {} is already referred to {} (referral {}, {})",
                t.number,
                req.to,
                short(r.id),
                r.state.as_str()
            )));
        }
        if t.status != Status::Referred {
            t.status
                .check_transition(Status::Referred)
                .map_err(|e| refused(format!("ticket {}: {e}", t.number)))?;
        }
        let header = peer
            .sharing
            .refer_header(&t, req.respond_by, req.note.clone());
        let step = referral::refer(Uuid::now_v7(), t.id, &req.to, header, now);
        let mut events = Vec::new();
        if t.status != Status::Referred {
            let kind = EventKind::StatusChanged {
                from: t.status,
                to: Status::Referred,
            };
            events.push(self.emit(Some(t.id), kind, actor, now)?);
        }
        let r = step.referral.clone();
        events.extend(self.write_step(step, None, actor, now)?);
        if let Some(due_at) = r.escalation_at() {
            let kind = EventKind::TimerSet {
                timer_id: Uuid::now_v7(),
                due_at,
                text: escalation_text(&r),
            };
            events.push(self.emit(Some(t.id), kind, actor, now)?);
        }
        Ok(referral_ack(&r, t.number, events))
    }

    /// Finds a referral by its id or a unique prefix of it.
    fn find_referral(&self, id: &str) -> Result<Referral, StoreError> {
        let unknown = || {
            not_found(format!(
                "no referral {id:?} (see `ttx referrals` for the ids)"
            ))
        };
        if let Ok(uuid) = Uuid::parse_str(id) {
            return tables::referral(self.conn, uuid)?.ok_or_else(unknown);
        }
        let mut found = tables::referrals_by_prefix(self.conn, id)?;
        match found.len() {
            0 => Err(unknown()),
            1 => Ok(found.remove(0)),
            _ => Err(StoreError::Command(CommandError::Invalid(format!(
                "referral id {id:?} is ambiguous: give more of it"
            )))),
        }
    }

    /// `ttx referral accept|reject|close|reopen|cancel|ask ID`.
    pub(super) fn act_on_referral(
        &mut self,
        id: &str,
        action: &ReferralAction,
        actor: &str,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        if action.text().len() > MAX_TEXT_BYTES {
            return Err(StoreError::Command(CommandError::Invalid(format!(
                "the text is {} bytes: at most {MAX_TEXT_BYTES}",
                action.text().len()
            ))));
        }
        let r = self.find_referral(id)?;
        if self.policy_of(&r.peer)?.is_none() && !matches!(action, ReferralAction::Cancel { .. }) {
            return Err(refused(format!(
                "referral {} is orphaned: peer {} is not in the registry (add it again to resume, or cancel the referral)",
                short(r.id),
                r.peer
            )));
        }
        let step = referral::act(&r, action.body(), now)
            .map_err(|e| refused(format!("referral {}: {e}", short(r.id))))?;
        let t = load_ticket(self.conn, r.ticket)?
            .ok_or_else(|| StoreError::Corrupt(format!("referral {} has no ticket", r.id)))?;
        let mut events = Vec::new();
        // The handler's own ticket follows its decision: a rejected referral's ticket is
        // cancelled (there is nothing for us to do), an accepted one is open work.
        let own = match action {
            ReferralAction::Reject { reason } if t.status.is_active() => Some(Status::Cancelled)
                .filter(|_| t.status.check_transition(Status::Cancelled).is_ok())
                .map(|to| (to, reason.clone())),
            ReferralAction::Accept if t.status == Status::New => {
                Some((Status::Open, String::new()))
            }
            _ => None,
        };
        let state = step.referral.clone();
        events.extend(self.write_step(step, Some(&r), actor, now)?);
        if let Some((to, _)) = own {
            let kind = EventKind::StatusChanged { from: t.status, to };
            events.push(self.emit(Some(t.id), kind, actor, now)?);
        }
        Ok(referral_ack(&state, t.number, events))
    }

    /// Writes one step of a referral: the referral as it now stands with its history lines, the
    /// messages it sends (each with the peer's next sequence), and its effects on our ticket.
    /// `before` is the referral as the step found it (`None`: a new one).
    ///
    /// A step that leaves the referral as it was apart from the time (a shared note, an
    /// attachment chunk) and adds no history line writes no referral record: the log keeps the
    /// referral's last change, and the queued message or the note is the record of the step.
    pub(super) fn write_step(
        &mut self,
        step: Step,
        before: Option<&Referral>,
        actor: &str,
        now: Millis,
    ) -> Result<Vec<i64>, StoreError> {
        let Step {
            referral: r,
            send,
            effects,
        } = step;
        let ends = r.state.is_final() && !before.is_some_and(|b| b.state.is_final());
        let mut lines = Vec::new();
        let mut notes = Vec::new();
        let mut chunks = Vec::new();
        let mut kinds = Vec::new();
        // Our ticket, read only for the effects that look at it.
        let mut ticket = None;
        for effect in effects {
            match effect {
                Effect::History(line) => lines.push(line),
                Effect::Alert(text) => kinds.push(EventKind::TimerSet {
                    timer_id: Uuid::now_v7(),
                    due_at: now,
                    text,
                }),
                Effect::TicketBack { reason } => {
                    let t = self.ticket_of(&r, &mut ticket)?;
                    let referred = t.status == Status::Referred;
                    let others_open = tables::referrals_of_ticket(self.conn, r.ticket)?
                        .iter()
                        .any(|o| o.id != r.id && o.side == Side::Out && !o.state.is_final());
                    if referred && !others_open {
                        kinds.push(EventKind::StatusChanged {
                            from: Status::Referred,
                            to: Status::Open,
                        });
                    }
                    lines.push(reason);
                }
                Effect::ReopenTicket { reason } => {
                    let t = self.ticket_of(&r, &mut ticket)?;
                    if matches!(t.status, Status::Resolved | Status::Closed) {
                        kinds.push(EventKind::Reopened {
                            reason: reason.clone(),
                        });
                    }
                    lines.push(reason);
                }
                Effect::CloseTicket => {
                    if self.ticket_of(&r, &mut ticket)?.status == Status::Resolved {
                        kinds.push(EventKind::Closed { checked_by: None });
                    }
                }
                Effect::PartnerNote(note) => notes.push(note),
                Effect::PartnerAttachment(chunk) => chunks.push(chunk),
            }
        }
        let mut events = Vec::new();
        let changed = !lines.is_empty() || before.is_none_or(|b| !same_but_time(b, &r));
        if changed {
            let record = ExchangeRecord::Referral {
                referral: r.clone(),
                lines,
            };
            events.push(self.exchange_event(Some(r.ticket), record, actor, now)?);
        }
        for body in send {
            events.push(self.queue(&r, body, actor, now)?);
        }
        for kind in kinds {
            events.push(self.emit(Some(r.ticket), kind, actor, now)?);
        }
        if before.is_some_and(|b| b.escalation_at().is_some()) && r.escalation_at().is_none() {
            events.extend(self.cancel_escalation(&r, actor, now)?);
        }
        for note in notes {
            events.extend(self.partner_note(&r, note, actor, now)?);
        }
        for chunk in chunks {
            events.extend(self.partner_chunk(&r, chunk, actor, now)?);
        }
        if ends {
            events.extend(self.drop_partial_attachments(r.id, now)?);
        }
        Ok(events)
    }

    /// Our ticket of referral `r`, read once into `cache`.
    fn ticket_of<'c>(
        &self,
        r: &Referral,
        cache: &'c mut Option<crate::model::ticket::Ticket>,
    ) -> Result<&'c crate::model::ticket::Ticket, StoreError> {
        let t = match cache.take() {
            Some(t) => t,
            None => load_ticket(self.conn, r.ticket)?
                .ok_or_else(|| StoreError::Corrupt(format!("referral {} has no ticket", r.id)))?,
        };
        Ok(cache.insert(t))
    }

    /// Queues `body` for the referral's peer with the peer's next sequence.
    fn queue(
        &mut self,
        r: &Referral,
        body: Body,
        actor: &str,
        now: Millis,
    ) -> Result<i64, StoreError> {
        let (out, _) = tables::edge(self.conn, &r.peer)?;
        let record = ExchangeRecord::Queued {
            peer: r.peer.clone(),
            seq: out.last + 1,
            id: Uuid::now_v7(),
            epoch: self.log.role.epoch,
            referral: r.id,
            body,
        };
        self.effects.exchange = true;
        self.exchange_event(Some(r.ticket), record, actor, now)
    }

    fn cancel_escalation(
        &mut self,
        r: &Referral,
        actor: &str,
        now: Millis,
    ) -> Result<Vec<i64>, StoreError> {
        let pending: Vec<Uuid> = self
            .conn
            .prepare_cached(
                "SELECT id FROM timers WHERE ticket_id = ?1 AND text = ?2
                 AND fired_at IS NULL AND cancelled_at IS NULL",
            )?
            .query_map(
                rusqlite::params![r.ticket.as_bytes(), escalation_text(r)],
                |row| row.get(0),
            )?
            .collect::<Result<_, _>>()?;
        let mut events = Vec::new();
        for timer_id in pending {
            let kind = EventKind::TimerCancelled {
                timer_id,
                reason: format!("{} answered the referral", r.peer),
            };
            events.push(self.emit(Some(r.ticket), kind, actor, now)?);
        }
        Ok(events)
    }

    /// The referrals of `ticket` but `except` (the one a note came on) as forwarding sees them,
    /// read from the referrals' columns, each peer's policy read once. A ticket whose only
    /// referral is `except` (a partner's note on a ticket referred no further) costs one index
    /// probe.
    pub(super) fn edges_of(
        &self,
        ticket: Uuid,
        except: Option<Uuid>,
    ) -> Result<Vec<Edge>, StoreError> {
        let mut policies: Vec<(String, Option<SharingPolicy>)> = Vec::new();
        let mut edges = Vec::new();
        if except.is_some() && tables::count_referrals(self.conn, ticket)? <= 1 {
            return Ok(edges);
        }
        for (referral, peer, state) in tables::edges_of_ticket(self.conn, ticket)? {
            if Some(referral) == except {
                continue;
            }
            let policy = match policies.iter().find(|(p, _)| *p == peer) {
                Some((_, policy)) => policy.clone(),
                None => {
                    let policy = self.policy_of(&peer)?;
                    policies.push((peer.clone(), policy.clone()));
                    policy
                }
            };
            edges.push(Edge {
                referral,
                peer,
                state,
                orphaned: policy.is_none(),
                shares_notes: policy.is_some_and(|p| p.passes_note(true)),
            });
        }
        Ok(edges)
    }

    /// Sends `note` on every open edge of `ticket` but the one it came on, as each edge's state
    /// allows.
    fn forward_note(
        &mut self,
        ticket: Uuid,
        note: &crate::wire::exchange::SharedNote,
        arrived_on: Option<Uuid>,
        actor: &str,
        now: Millis,
    ) -> Result<Vec<i64>, StoreError> {
        let edges = self.edges_of(ticket, arrived_on)?;
        let mut events = Vec::new();
        for target in forward::targets(&edges, arrived_on, &note.origin_site, false) {
            let Some(r) = tables::referral(self.conn, target)? else {
                continue;
            };
            if let Ok(step) = referral::act(&r, Body::Note(note.clone()), now) {
                events.extend(self.write_step(step, Some(&r), actor, now)?);
            }
        }
        Ok(events)
    }

    /// A partner's shared note on referral `r`: into our ticket's history once per origin stamp,
    /// and on along the chain.
    fn partner_note(
        &mut self,
        r: &Referral,
        note: crate::wire::exchange::SharedNote,
        actor: &str,
        now: Millis,
    ) -> Result<Vec<i64>, StoreError> {
        // Our own note come back around a triangle: we have it, and we sent it on already.
        if note.origin_site == self.stamp.site {
            return Ok(Vec::new());
        }
        let note_id = tables::partner_note_id(r.ticket, &note.origin_site, &note.origin_id);
        if tables::note_exists(self.conn, note_id)? {
            return Ok(Vec::new());
        }
        let kind = EventKind::NoteAdded {
            note_id,
            text: format!("[{}] {}", note.origin_site, note.text),
            shared: true,
            happened_at: None,
        };
        let mut events = vec![self.emit(Some(r.ticket), kind, actor, now)?];
        events.extend(self.forward_note(r.ticket, &note, Some(r.id), actor, now)?);
        Ok(events)
    }

    /// What partners hear of a ticket command: a shared note goes to every open referral of the
    /// ticket whose peer's policy shares notes (internal notes never); a resolution or a status
    /// move of a ticket referred to us goes to its referrer.
    pub(super) fn after_ticket_command(
        &mut self,
        ticket: Uuid,
        kinds: &[EventKind],
        actor: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        for kind in kinds {
            match kind {
                EventKind::NoteAdded {
                    note_id,
                    text,
                    shared: true,
                    ..
                } => {
                    let note = crate::wire::exchange::SharedNote {
                        origin_site: self.stamp.site.clone(),
                        origin_id: *note_id.as_bytes(),
                        author: actor.to_string(),
                        at: now,
                        text: text.clone(),
                    };
                    self.forward_note(ticket, &note, None, actor, now)?;
                }
                EventKind::Resolved {
                    resolution,
                    component,
                    ..
                } => self.tell_referrers(
                    ticket,
                    Body::Resolved {
                        resolution: resolution.clone(),
                        component: component.clone(),
                    },
                    actor,
                    now,
                )?,
                EventKind::StatusChanged { to, .. } => {
                    let status = match to {
                        Status::Open => PartnerStatus::InProgress,
                        Status::Pending | Status::Referred => PartnerStatus::Waiting,
                        _ => continue,
                    };
                    self.tell_referrers(ticket, Body::Status { status }, actor, now)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Sends `body` on every referral of `ticket` that was referred to us and takes it now.
    fn tell_referrers(
        &mut self,
        ticket: Uuid,
        body: Body,
        actor: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        for r in tables::referrals_of_ticket(self.conn, ticket)? {
            if r.side != Side::In || self.policy_of(&r.peer)?.is_none() {
                continue;
            }
            if let Ok(step) = referral::act(&r, body.clone(), now) {
                self.write_step(step, Some(&r), actor, now)?;
            }
        }
        Ok(())
    }

    /// Messages from partner site `peer`, consecutive as they arrived: each decided by
    /// [`inbound::decide`] and written with the advance of the peer's mark, in turn, until one
    /// is refused for now (nothing after it is taken); answered as one window.
    pub(super) fn inbound(
        &mut self,
        peer: &str,
        messages: &[InboundMessage],
        rates: &PeerRates,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        let mut window = WindowAnswers::new();
        // The peer's record, read once for the window: nothing a partner sends changes it.
        let record = query::peer(self.conn, peer)?;
        for m in messages {
            let answer =
                self.inbound_one(peer, record.as_ref(), m.bytes, &m.message, rates, now)?;
            if !window.push(answer) {
                break;
            }
        }
        Ok(WriteOutcome::Exchange {
            answers: window.into_answers(),
        })
    }

    /// One message from partner site `peer` (whose registry record is `record`), `bytes` long
    /// as encoded.
    fn inbound_one(
        &mut self,
        peer: &str,
        record: Option<&PeerRecord>,
        bytes: usize,
        msg: &Message,
        rates: &PeerRates,
        now: Millis,
    ) -> Result<Answer, StoreError> {
        match &self.log.role.role {
            // Without the witness's lease a primary takes nothing either: the partner retries
            // (at the standby too, which the witness may be promoting).
            NodeRole::Primary if !self.leased => {
                return Ok(Answer::Refused(Refused::code(ExchangeCode::NotPrimary)))
            }
            NodeRole::Primary => {}
            // A primary handing over takes no partner message either: the partner retries,
            // at the new primary once the switchover is done.
            NodeRole::Standby { .. } | NodeRole::HandingOver { .. } => {
                return Ok(Answer::Refused(Refused::code(ExchangeCode::NotPrimary)))
            }
            NodeRole::Fenced { .. } => {
                return Ok(Answer::Refused(Refused {
                    epoch: Some(self.log.role.epoch),
                    ..Refused::code(ExchangeCode::Fenced)
                }))
            }
        }
        // Only a registered, accepted peer with the exchange permission is party to anything.
        let policy = match record {
            Some(p) if p.state == PeerState::Accepted && p.exchange => &p.sharing,
            _ => return Ok(Answer::Refused(Refused::code(ExchangeCode::NotParty))),
        };
        let (_, mark) = tables::edge(self.conn, peer)?;
        let id = Uuid::from_bytes(msg.referral);
        let existing = tables::referral(self.conn, id)?;
        let mut decision = inbound::decide(&mark, peer, msg, existing.as_ref(), now);
        let new = matches!(
            decision,
            Inbound::Open(_) | Inbound::Step(_) | Inbound::Consume(_)
        );
        // A new message takes a token of the peer's rate (a duplicate or a gap takes none).
        if new && rates.take(peer, policy, now).is_err() {
            tracing::warn!(%peer, seq = msg.seq, "partner over its message rate");
            return Ok(Answer::Refused(Refused::code(ExchangeCode::RateLimited)));
        }
        if new && policy.check_size(bytes).is_err() {
            decision = Inbound::Consume(ExchangeCode::TooLarge);
        }
        if let (Inbound::Step(step), Body::Attachment(chunk)) = (&decision, &msg.body) {
            if let Some(code) = self.check_partner_chunk(&step.referral, chunk, now)? {
                decision = Inbound::Consume(code);
            }
        }
        let actor = format!("exchange:{peer}");
        if matches!(decision, Inbound::Duplicate | Inbound::Refuse(_))
            && mark.learns_epoch(msg.epoch)
        {
            // Not taken, but the site has a later epoch than we knew: remember it, so its
            // deposed primary is refused from now on.
            tracing::info!(%peer, epoch = msg.epoch, "partner site at a later epoch");
            let record = ExchangeRecord::EpochSeen {
                peer: peer.to_string(),
                epoch: msg.epoch,
            };
            self.exchange_event(None, record, &actor, now)?;
        }
        let ticket = match decision {
            Inbound::Duplicate => {
                return Ok(Answer::Ack {
                    up_to: mark.applied,
                })
            }
            Inbound::Refuse(mut r) => {
                // A gap names this node's epoch too: a sender told to resend what it saw
                // acknowledged can tell a failed-over primary (whose site lost it) from a
                // deposed one (protocol §5c).
                if r.code == ExchangeCode::OutOfOrder {
                    r.epoch = Some(self.log.role.epoch);
                }
                tracing::info!(%peer, seq = msg.seq, code = ?r.code, "partner message not taken");
                return Ok(Answer::Refused(r));
            }
            Inbound::Open(refer) => Some(self.open_for(peer, id, &refer, policy, &actor, now)?),
            Inbound::Step(step) => {
                let ticket = step.referral.ticket;
                self.write_step(step, existing.as_ref(), &actor, now)?;
                Some(ticket)
            }
            Inbound::Consume(code) => {
                tracing::warn!(%peer, seq = msg.seq, referral = %id, message = msg.body.name(), code = ?code, "partner message refused");
                let record = received(peer, msg, Some(code));
                self.exchange_event(None, record, &actor, now)?;
                return Ok(Answer::Refused(Refused::code(code)));
            }
        };
        self.exchange_event(ticket, received(peer, msg, None), &actor, now)?;
        Ok(Answer::Ack { up_to: msg.seq })
    }

    /// Opens our own ticket for a partner's referral and takes the referral (accepted at once
    /// when the peer's policy says so).
    fn open_for(
        &mut self,
        peer: &str,
        id: Uuid,
        refer: &crate::wire::exchange::Refer,
        policy: &SharingPolicy,
        actor: &str,
        now: Millis,
    ) -> Result<Uuid, StoreError> {
        let field = |name: &str| {
            refer
                .fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let level = |l: Option<u8>| l.unwrap_or(3).clamp(1, 4);
        let subject = refer.subject.trim();
        let new = NewTicket {
            ticket_type: TicketType::Trouble,
            subject: if subject.is_empty() {
                format!("referral from {peer}")
            } else {
                subject.to_string()
            },
            severity: level(refer.severity),
            priority: level(refer.priority),
            queue: DEFAULT_QUEUE.to_string(),
            owner: None,
            problem_start: refer.problem_start,
            reporter: Contact {
                org: Some(peer.to_string()),
                ..Contact::default()
            },
            nodes: field("nodes")
                .map(|n| n.split(", ").map(str::to_string).collect())
                .unwrap_or_default(),
            network: field("network"),
            circuit: field("circuit"),
        };
        let number = self.log.next_number;
        self.log.next_number += 1;
        let ticket = Uuid::now_v7();
        let kind = EventKind::TicketCreated {
            number,
            ticket: new,
        };
        self.emit(Some(ticket), kind, actor, now)?;
        if !refer.fields.is_empty() {
            let listed: Vec<String> = refer
                .fields
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let kind = EventKind::NoteAdded {
                note_id: Uuid::now_v7(),
                text: format!("[{peer}] shared fields\n{}", listed.join("\n")),
                shared: false,
                happened_at: None,
            };
            self.emit(Some(ticket), kind, actor, now)?;
        }
        let step = referral::receive(id, peer, refer, ticket, number, policy.auto_accept, now);
        self.write_step(step, None, actor, now)?;
        Ok(ticket)
    }

    /// `ttx referral policy SITE …`: the peer's sharing policy changes in the registry (so it
    /// replicates with it).
    pub(super) fn set_sharing(
        &mut self,
        site: &str,
        change: &crate::exchange::policy::SharingChange,
        actor: &str,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        let mut peer = query::peer(self.conn, site)?
            .ok_or_else(|| not_found(format!("no peer {site:?} (see `ttx peer list`)")))?;
        let next = change
            .apply(&peer.sharing)
            .map_err(|e| StoreError::Command(CommandError::Invalid(e)))?;
        let changed = next != peer.sharing;
        if changed {
            peer.sharing = next;
            self.emit(None, EventKind::PeerUpserted { peer }, actor, now)?;
        }
        Ok(WriteOutcome::Peer {
            site: site.to_string(),
            changed,
        })
    }

    /// Partner site `peer` took our messages up to `up_to`.
    pub(super) fn acked(
        &mut self,
        peer: &str,
        up_to: u64,
        code: Option<ExchangeCode>,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        let (mut out, _) = tables::edge(self.conn, peer)?;
        // Which referral the refused message was about, before the ack drops it from the outbox.
        let refused_on: Option<(Uuid, String)> = match code {
            Some(_) => self
                .conn
                .prepare_cached(
                    "SELECT r.ticket_id, o.body FROM exchange_outbox o
                     JOIN referrals r ON r.id = o.referral WHERE o.peer = ?1 AND o.seq = ?2",
                )?
                .query_row(rusqlite::params![peer, up_to as i64], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .ok(),
            None => None,
        };
        let moved = out
            .ack(up_to)
            .map_err(|e| refused(format!("peer {peer}: {e}")))?;
        if moved {
            let record = ExchangeRecord::Acked {
                peer: peer.to_string(),
                up_to,
                refused: code,
            };
            self.exchange_event(None, record, "system", now)?;
        }
        if let (true, Some(code), Some((ticket, body))) = (moved, code, refused_on) {
            let what = serde_json::from_str::<Body>(&body)
                .map(|b| b.name())
                .unwrap_or("message");
            let kind = EventKind::TimerSet {
                timer_id: Uuid::now_v7(),
                due_at: now,
                text: format!("{peer} refused our {what}: {}", code.text()),
            };
            self.emit(Some(ticket), kind, "system", now)?;
        }
        Ok(WriteOutcome::Applied {
            applied: usize::from(moved),
        })
    }
}

impl InBatch<'_> {
    /// Partner site `peer` answered our mark probe with `mark`: weighed against what this site
    /// may have sent before this epoch ([`crate::exchange::edge::Outbox::rebase`]) and recorded
    /// once per edge per epoch (a second answer in the same epoch changes nothing).
    pub(super) fn mark_learned(
        &mut self,
        peer: &str,
        mark: u64,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        let epoch = self.log.role.epoch;
        let (learned, last_prev) = tables::learned_and_last_prev(self.conn, peer, epoch)?;
        if !crate::exchange::edge::needs_probe(learned, epoch) {
            return Ok(WriteOutcome::Applied { applied: 0 });
        }
        let (out, _) = tables::edge(self.conn, peer)?;
        let rebase = out
            .rebase(mark, last_prev)
            .map_err(|e| refused(format!("peer {peer}: {e}")))?;
        if rebase.shift > 0 {
            tracing::warn!(%peer, mark, after = rebase.after, shift = rebase.shift, "partner took messages this node never knew of (its site failed over): ours move after its mark");
        } else {
            tracing::info!(%peer, mark, "partner's mark learned");
        }
        let record = ExchangeRecord::MarkLearned {
            peer: peer.to_string(),
            epoch,
            mark,
            after: rebase.after,
            shift: rebase.shift,
        };
        self.exchange_event(None, record, "system", now)?;
        Ok(WriteOutcome::Applied { applied: 1 })
    }
}

/// Whether `after` is `before` but for the time it was last touched.
fn same_but_time(before: &Referral, after: &Referral) -> bool {
    *before
        == Referral {
            updated_at: before.updated_at,
            ..after.clone()
        }
}

fn received(peer: &str, msg: &Message, refused: Option<ExchangeCode>) -> ExchangeRecord {
    ExchangeRecord::Received {
        peer: peer.to_string(),
        seq: msg.seq,
        epoch: msg.epoch,
        id: Uuid::from_bytes(msg.id),
        referral: Uuid::from_bytes(msg.referral),
        message: msg.body.name().to_string(),
        refused,
    }
}

fn referral_ack(r: &Referral, ticket: i64, events: Vec<i64>) -> WriteOutcome {
    WriteOutcome::Referral(ReferralAck {
        referral: r.id,
        peer: r.peer.clone(),
        ticket,
        referral_state: r.state.as_str().to_string(),
        events,
    })
}

//! One referral's life, seen from one side: a pure state machine.
//!
//! The *referrer* sent its ticket to a partner (side [`Side::Out`]); the *handler* opened its own
//! ticket for it (side [`Side::In`]). Each side holds its own copy of the referral's state and
//! moves it only on its own operators' actions ([`act`], each named by the message it sends) and on
//! messages from the other side ([`on_message`]). Both run one transition table, so the two
//! copies go through the same states. A step returns the new state, the messages to queue for the peer and the effects
//! on the local ticket; the caller writes all of it in one transaction.
//!
//! ```text
//! referrer:  queued ─opened→ delivered ─accepted→ accepted ─status→ in-progress
//!               │               └─rejected→ rejected          │         │
//!               └──────── cancel (any open state) → cancelled  └─resolved→ resolved
//!            resolved ─close→ closed     resolved ─reopen→ in-progress
//! handler:   delivered ─accept→ accepted …  (the same states, moved by its own actions)
//! ```

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::clock::Millis;
use crate::wire::exchange::{Body, ExchangeCode, PartnerStatus, Refer, SharedNote};

/// Which end of the referral this site is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// We referred our ticket to the peer.
    Out,
    /// The peer referred its ticket to us; we opened our own for it.
    In,
}

/// Where a referral is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferralState {
    /// Decided and in the outbox; the handler has not confirmed receipt.
    Queued,
    /// The handler stored it and opened its own ticket; not yet accepted.
    Delivered,
    /// The handler took it on.
    Accepted,
    /// The handler refused it. Final.
    Rejected,
    /// The handler reports work on it.
    InProgress,
    /// The handler says it is fixed; the referrer has not confirmed.
    Resolved,
    /// The referrer confirmed the resolution. Final.
    Closed,
    /// The referrer withdrew it. Final.
    Cancelled,
}

impl ReferralState {
    /// The kebab-case name the CLI and API show.
    pub fn as_str(self) -> &'static str {
        match self {
            ReferralState::Queued => "queued",
            ReferralState::Delivered => "delivered",
            ReferralState::Accepted => "accepted",
            ReferralState::Rejected => "rejected",
            ReferralState::InProgress => "in-progress",
            ReferralState::Resolved => "resolved",
            ReferralState::Closed => "closed",
            ReferralState::Cancelled => "cancelled",
        }
    }

    /// Every state, in the order of the referral's life.
    pub const ALL: [ReferralState; 8] = [
        ReferralState::Queued,
        ReferralState::Delivered,
        ReferralState::Accepted,
        ReferralState::Rejected,
        ReferralState::InProgress,
        ReferralState::Resolved,
        ReferralState::Closed,
        ReferralState::Cancelled,
    ];

    /// The state named `name` (as [`Self::as_str`] names it).
    pub fn from_name(name: &str) -> Option<ReferralState> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether nothing can happen to the referral any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ReferralState::Rejected | ReferralState::Closed | ReferralState::Cancelled
        )
    }
}

/// One referral as a site holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    /// Chosen by the referrer (UUIDv7); the same at both ends.
    pub id: Uuid,
    /// Which end we are.
    pub side: Side,
    /// The other site.
    pub peer: String,
    /// Our own ticket: the referred one (out) or the one we opened for it (in).
    pub ticket: Uuid,
    /// The other side's ticket number, once known (shown as `PEER#N`).
    pub partner_ref: Option<i64>,
    /// Where it is.
    pub state: ReferralState,
    /// When the referrer wants an answer by (out: our alarm; in: the partner's wish).
    pub respond_by: Option<Millis>,
    /// When it was made here.
    pub created_at: Millis,
    /// When a step last changed it here (a shared note or an attachment chunk, which leave it
    /// as it was, does not count).
    pub updated_at: Millis,
    /// The peer was removed from the registry while the referral was open; nothing is sent until
    /// it is added again.
    pub orphaned: bool,
}

/// What a step does to our own ticket; the store turns each into events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The referral is back with us (rejected, cancelled or closed): a ticket still `referred`
    /// returns to `open`.
    TicketBack {
        /// For the history.
        reason: String,
    },
    /// Reopen our ticket (handler: the referrer reopened).
    ReopenTicket {
        /// Why.
        reason: String,
    },
    /// Close our ticket (handler: the referrer confirmed the resolution).
    CloseTicket,
    /// A note from the partner, source-stamped, into our ticket's history.
    PartnerNote(SharedNote),
    /// A chunk of a partner's shared attachment (`ttx-exchange/2`), already checked to fit
    /// (`exchange::attachment::decide_chunk`).
    PartnerAttachment(crate::wire::exchange_v2::AttachmentChunk),
    /// A line in our ticket's history about the referral (e.g. `telco-b accepted`).
    History(String),
    /// Something an operator must look at (`ttx alerts`).
    Alert(String),
}

/// The result of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The referral after the step.
    pub referral: Referral,
    /// Messages to queue for the peer, in order.
    pub send: Vec<Body>,
    /// Effects on our ticket, in order.
    pub effects: Vec<Effect>,
}

/// Why a step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferralError {
    /// The operator asked for something only the other end may do.
    #[error("only the {side} side may {action} a referral")]
    WrongSide {
        /// The side that may.
        side: &'static str,
        /// What was asked.
        action: &'static str,
    },
    /// Not possible in the current state.
    #[error("cannot {action} a referral that is {state}")]
    State {
        /// What was asked.
        action: &'static str,
        /// The state it is in.
        state: &'static str,
    },
    /// The peer sent a message that its end may not send, or that makes no sense now.
    #[error("{peer} sent {message} on a referral that is {state} here")]
    Nonsense {
        /// The sender.
        peer: String,
        /// The message's name.
        message: &'static str,
        /// Our state.
        state: &'static str,
    },
}

impl ReferralError {
    /// The stable code a peer gets for it.
    pub fn code(&self) -> ExchangeCode {
        ExchangeCode::InvalidState
    }
}

/// The referrer's first step: a new referral of `ticket` to `peer`, with the header the sharing
/// policy let out. Our ticket goes to `referred` (the caller applies that as a status change).
pub fn refer(id: Uuid, ticket: Uuid, peer: &str, header: Refer, now: Millis) -> Step {
    let referral = Referral {
        id,
        side: Side::Out,
        peer: peer.to_string(),
        ticket,
        partner_ref: None,
        state: ReferralState::Queued,
        respond_by: header.respond_by,
        created_at: now,
        updated_at: now,
        orphaned: false,
    };
    Step {
        effects: vec![Effect::History(format!("referred to {peer}"))],
        send: vec![Body::Refer(header)],
        referral,
    }
}

/// The handler's first step: `peer` referred its ticket `refer.number` to us; the caller stored
/// it and opened our own ticket `ticket` numbered `our_number`. With `auto_accept` (the peer's
/// policy) it is accepted at once.
pub fn receive(
    id: Uuid,
    peer: &str,
    refer: &Refer,
    ticket: Uuid,
    our_number: i64,
    auto_accept: bool,
    now: Millis,
) -> Step {
    let mut referral = Referral {
        id,
        side: Side::In,
        peer: peer.to_string(),
        ticket,
        partner_ref: Some(refer.number),
        state: ReferralState::Delivered,
        respond_by: refer.respond_by,
        created_at: now,
        updated_at: now,
        orphaned: false,
    };
    let mut send = vec![Body::Opened {
        reference: our_number,
    }];
    let mut effects = vec![Effect::History(format!(
        "referred by {peer} as {peer}#{}",
        refer.number
    ))];
    if auto_accept {
        referral.state = ReferralState::Accepted;
        send.push(Body::Accepted);
        effects.push(Effect::History(format!("accepted by policy for {peer}")));
    } else {
        effects.push(Effect::Alert(format!(
            "{peer} referred {peer}#{}: accept or reject it",
            refer.number
        )));
    }
    if let Some(text) = &refer.note {
        effects.push(Effect::History(format!("[{peer}] {text}")));
    }
    Step {
        referral,
        send,
        effects,
    }
}

/// Which end of a referral sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    Referrer,
    Handler,
}

impl Sender {
    fn of(side: Side) -> Sender {
        match side {
            Side::Out => Sender::Referrer,
            Side::In => Sender::Handler,
        }
    }
    fn peer_of(side: Side) -> Sender {
        match side {
            Side::Out => Sender::Handler,
            Side::In => Sender::Referrer,
        }
    }
}

/// Who may send a message on an existing referral: the handler reports, the referrer decides the
/// end, either end may share notes and ask questions.
fn who_sends(body: &Body) -> Option<Sender> {
    match body {
        Body::Opened { .. }
        | Body::Accepted
        | Body::Rejected { .. }
        | Body::Status { .. }
        | Body::Resolved { .. } => Some(Sender::Handler),
        Body::Close | Body::Reopen { .. } | Body::Cancel { .. } => Some(Sender::Referrer),
        Body::Note(_) | Body::InfoRequest { .. } | Body::Refer(_) | Body::Attachment(_) => None,
    }
}

/// The one transition table, used by both ends: the state a referral in `state` moves to when
/// `body` is sent, or `None` when that message makes no sense now. Both copies of a referral go
/// through the same states because both run this table on the same messages.
fn next_state(state: ReferralState, body: &Body) -> Option<ReferralState> {
    use ReferralState as S;
    if state.is_final() {
        return None;
    }
    let worked = matches!(state, S::Accepted | S::InProgress);
    match body {
        Body::Refer(_) => None,
        Body::Opened { .. } => (state == S::Queued).then_some(S::Delivered),
        Body::Accepted => (state == S::Delivered).then_some(S::Accepted),
        Body::Rejected { .. } => (state == S::Delivered).then_some(S::Rejected),
        Body::Status { .. } => worked.then_some(S::InProgress),
        Body::Resolved { .. } => worked.then_some(S::Resolved),
        Body::Close => (state == S::Resolved).then_some(S::Closed),
        Body::Reopen { .. } => (state == S::Resolved).then_some(S::InProgress),
        Body::Cancel { .. } => Some(S::Cancelled),
        Body::Note(_) | Body::InfoRequest { .. } | Body::Attachment(_) => Some(state),
    }
}

/// One of our own actions on an existing referral, as the message it sends: `Accepted`,
/// `Rejected`, `Status` and `Resolved` at the handler, `Close`, `Reopen` and `Cancel` at the
/// referrer, a shared `Note` or an `InfoRequest` at either (internal notes never get here).
pub fn act(referral: &Referral, body: Body, now: Millis) -> Result<Step, ReferralError> {
    let sender = Sender::of(referral.side);
    if let Some(required) = who_sends(&body).filter(|s| *s != sender) {
        return Err(ReferralError::WrongSide {
            side: match required {
                Sender::Referrer => "referring",
                Sender::Handler => "handling",
            },
            action: action_name(&body),
        });
    }
    let next = next_state(referral.state, &body).ok_or(ReferralError::State {
        action: action_name(&body),
        state: referral.state.as_str(),
    })?;
    let peer = &referral.peer;
    let effects = match &body {
        Body::Close => vec![Effect::TicketBack {
            reason: format!("{peer} confirmed resolved"),
        }],
        Body::Cancel { reason } => vec![Effect::TicketBack {
            reason: format!("referral to {peer} cancelled: {reason}"),
        }],
        _ => Vec::new(),
    };
    Ok(moved(referral, next, vec![body], effects, now))
}

/// The verb an operator used, for refusals (`cannot accept a referral that is rejected`).
fn action_name(body: &Body) -> &'static str {
    match body {
        Body::Refer(_) => "refer",
        Body::Opened { .. } => "open",
        Body::Accepted => "accept",
        Body::Rejected { .. } => "reject",
        Body::Note(_) => "note",
        Body::Status { .. } => "report status on",
        Body::Resolved { .. } => "resolve",
        Body::Close => "close",
        Body::Reopen { .. } => "reopen",
        Body::Cancel { .. } => "cancel",
        Body::InfoRequest { .. } => "ask about",
        Body::Attachment(_) => "attach to",
    }
}

/// A message from the peer on an existing referral (already checked for order and party).
pub fn on_message(referral: &Referral, body: &Body, now: Millis) -> Result<Step, ReferralError> {
    let peer = referral.peer.as_str();
    let nonsense = || ReferralError::Nonsense {
        peer: peer.to_string(),
        message: body.name(),
        state: referral.state.as_str(),
    };
    if who_sends(body).is_some_and(|s| s != Sender::peer_of(referral.side)) {
        return Err(nonsense());
    }
    let next = next_state(referral.state, body).ok_or_else(nonsense)?;
    let mut partner_ref = referral.partner_ref;
    let effects = match body {
        Body::Refer(_) => return Err(nonsense()),
        Body::Opened { reference } => {
            partner_ref = Some(*reference);
            vec![Effect::History(format!(
                "{peer} opened it as {peer}#{reference}"
            ))]
        }
        Body::Accepted => vec![Effect::History(format!("{peer} accepted"))],
        Body::Rejected { reason } => vec![Effect::TicketBack {
            reason: format!("{peer} rejected the referral: {reason}"),
        }],
        Body::Status { status } => {
            let text = match status {
                PartnerStatus::InProgress => "in progress",
                PartnerStatus::Waiting => "waiting",
            };
            vec![Effect::History(format!("{peer}: {text}"))]
        }
        Body::Resolved {
            resolution,
            component,
        } => {
            let part = component
                .as_ref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            vec![
                Effect::History(format!("{peer} resolved: {resolution}{part}")),
                Effect::Alert(format!(
                    "{peer} resolved its part: confirm (referral close) or reopen"
                )),
            ]
        }
        Body::Close => vec![
            Effect::History(format!("{peer} confirmed the resolution")),
            Effect::CloseTicket,
        ],
        Body::Reopen { reason } => vec![Effect::ReopenTicket {
            reason: format!("{peer} reopened: {reason}"),
        }],
        Body::Cancel { reason } => vec![
            Effect::History(format!("{peer} cancelled the referral: {reason}")),
            Effect::Alert(format!("{peer} cancelled its referral: {reason}")),
        ],
        Body::Note(note) => vec![Effect::PartnerNote(note.clone())],
        Body::Attachment(chunk) => vec![Effect::PartnerAttachment(chunk.clone())],
        Body::InfoRequest { question } => vec![
            Effect::History(format!("[{peer}] asks: {question}")),
            Effect::Alert(format!("{peer} asks: {question}")),
        ],
    };
    let mut step = moved(referral, next, Vec::new(), effects, now);
    step.referral.partner_ref = partner_ref;
    Ok(step)
}

fn moved(
    referral: &Referral,
    state: ReferralState,
    send: Vec<Body>,
    effects: Vec<Effect>,
    now: Millis,
) -> Step {
    let mut referral = referral.clone();
    referral.state = state;
    referral.updated_at = now;
    Step {
        referral,
        send,
        effects,
    }
}

impl Referral {
    /// Whether the referrer's answer-by time has passed without the handler accepting or
    /// rejecting (RFC 1297's alarm clock for telcos).
    pub fn is_overdue(&self, now: Millis) -> bool {
        self.side == Side::Out
            && matches!(self.state, ReferralState::Queued | ReferralState::Delivered)
            && self.respond_by.is_some_and(|t| now >= t)
    }

    /// When our escalation alarm should go off, if the referral still waits for an answer.
    pub fn escalation_at(&self) -> Option<Millis> {
        (self.side == Side::Out
            && matches!(self.state, ReferralState::Queued | ReferralState::Delivered))
        .then_some(self.respond_by)
        .flatten()
    }

    /// The label `ttx referrals` shows: the state, or `orphaned` / `overdue` when that is what
    /// an operator must know first.
    pub fn label(&self, now: Millis) -> &'static str {
        if self.orphaned && !self.state.is_final() {
            "orphaned"
        } else if self.is_overdue(now) {
            "overdue"
        } else {
            self.state.as_str()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Refer {
        Refer {
            number: 7,
            subject: "LON-PAR-3 down".into(),
            severity: Some(1),
            priority: Some(1),
            problem_start: None,
            fields: vec![("circuit".into(), "LON-PAR-3".into())],
            respond_by: Some(5_000),
            note: Some("please check your side".into()),
        }
    }

    fn note(site: &str) -> SharedNote {
        SharedNote {
            origin_site: site.into(),
            origin_id: [1; 16],
            author: "al".into(),
            at: 1,
            text: "dispatched field tech".into(),
        }
    }

    /// Runs both ends side by side: every message one sends is applied by the other.
    struct Pair {
        out: Referral,
        inn: Referral,
    }

    /// Applies `bodies` in order at one end, as its peer's messages.
    fn deliver(end: &mut Referral, bodies: &[Body]) -> Vec<Effect> {
        let mut all = Vec::new();
        for body in bodies {
            let s = on_message(end, body, 2).expect("the other end applies it");
            *end = s.referral;
            all.extend(s.effects);
        }
        all
    }

    impl Pair {
        fn new(auto_accept: bool) -> Pair {
            let id = Uuid::now_v7();
            let a = refer(id, Uuid::now_v7(), "telco-b", header(), 0);
            let Body::Refer(h) = &a.send[0] else {
                panic!("refer sends Refer")
            };
            let b = receive(id, "noc-a", h, Uuid::now_v7(), 31, auto_accept, 1);
            let mut p = Pair {
                out: a.referral,
                inn: b.referral,
            };
            p.deliver_to_out(&b.send);
            p
        }
        fn deliver_to_out(&mut self, bodies: &[Body]) -> Vec<Effect> {
            deliver(&mut self.out, bodies)
        }
        fn deliver_to_in(&mut self, bodies: &[Body]) -> Vec<Effect> {
            deliver(&mut self.inn, bodies)
        }
        fn handler(&mut self, action: Body) -> Vec<Effect> {
            let s = act(&self.inn, action, 3).expect("handler acts");
            self.inn = s.referral;
            self.deliver_to_out(&s.send)
        }
        fn referrer(&mut self, action: Body) -> Vec<Effect> {
            let s = act(&self.out, action, 3).expect("referrer acts");
            self.out = s.referral;
            self.deliver_to_in(&s.send)
        }
    }

    #[test]
    fn every_state_is_read_back_from_its_name() {
        for s in ReferralState::ALL {
            assert_eq!(ReferralState::from_name(s.as_str()), Some(s));
        }
        assert_eq!(ReferralState::from_name("open"), None);
    }

    #[test]
    fn a_note_leaves_the_referral_as_it_was_but_for_the_time() {
        // The store writes no referral record for such a step (only the note and the message).
        let p = Pair::new(true);
        let but_time = |r: &Referral, like: &Referral| Referral {
            updated_at: like.updated_at,
            ..r.clone()
        };
        let sent = act(&p.out, Body::Note(note("noc-a")), 9).unwrap();
        assert!(sent.effects.is_empty());
        assert_eq!(sent.send.len(), 1);
        assert_eq!(but_time(&sent.referral, &p.out), p.out);
        let got = on_message(&p.inn, &sent.send[0], 9).unwrap();
        assert_eq!(got.effects, vec![Effect::PartnerNote(note("noc-a"))]);
        assert_eq!(but_time(&got.referral, &p.inn), p.inn);
    }

    #[test]
    fn the_whole_flow_refer_accept_progress_resolve_close() {
        let mut p = Pair::new(false);
        assert_eq!(p.out.state, ReferralState::Delivered);
        assert_eq!(p.out.partner_ref, Some(31));
        assert_eq!(p.inn.partner_ref, Some(7));
        p.handler(Body::Accepted);
        assert_eq!(p.out.state, ReferralState::Accepted);
        let fx = p.handler(Body::Note(note("telco-b")));
        assert_eq!(fx, vec![Effect::PartnerNote(note("telco-b"))]);
        p.handler(Body::Status {
            status: PartnerStatus::InProgress,
        });
        assert_eq!(p.out.state, ReferralState::InProgress);
        let fx = p.handler(Body::Resolved {
            resolution: "spliced fibre".into(),
            component: Some("span 4".into()),
        });
        assert_eq!(p.out.state, ReferralState::Resolved);
        assert!(matches!(&fx[0], Effect::History(t) if t.contains("spliced fibre (span 4)")));
        let fx = p.referrer(Body::Close);
        assert_eq!(
            (p.out.state, p.inn.state),
            (ReferralState::Closed, ReferralState::Closed)
        );
        assert!(fx.contains(&Effect::CloseTicket));
    }

    #[test]
    fn auto_accept_sends_opened_then_accepted() {
        let p = Pair::new(true);
        assert_eq!(p.out.state, ReferralState::Accepted);
        assert_eq!(p.inn.state, ReferralState::Accepted);
    }

    #[test]
    fn a_rejection_returns_our_ticket_with_the_reason() {
        let mut p = Pair::new(false);
        let fx = p.handler(Body::Rejected {
            reason: "not our circuit".into(),
        });
        assert_eq!(p.out.state, ReferralState::Rejected);
        assert_eq!(
            fx,
            vec![Effect::TicketBack {
                reason: "telco-b rejected the referral: not our circuit".into()
            }]
        );
    }

    #[test]
    fn reopen_after_resolve_reopens_the_handlers_ticket() {
        let mut p = Pair::new(true);
        p.handler(Body::Resolved {
            resolution: "reset".into(),
            component: None,
        });
        let fx = p.referrer(Body::Reopen {
            reason: "flapping again".into(),
        });
        assert_eq!(p.inn.state, ReferralState::InProgress);
        assert_eq!(
            fx,
            vec![Effect::ReopenTicket {
                reason: "noc-a reopened: flapping again".into()
            }]
        );
    }

    #[test]
    fn cancel_works_from_any_open_state_and_is_final() {
        let mut p = Pair::new(true);
        p.referrer(Body::Cancel {
            reason: "customer fixed it".into(),
        });
        assert_eq!(p.inn.state, ReferralState::Cancelled);
        let e = act(&p.out, Body::Note(note("noc-a")), 4).unwrap_err();
        assert_eq!(e.to_string(), "cannot note a referral that is cancelled");
    }

    #[test]
    fn each_end_may_do_only_its_own_part() {
        let p = Pair::new(false);
        let e = act(&p.out, Body::Accepted, 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "only the handling side may accept a referral"
        );
        let e = act(&p.inn, Body::Close, 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "only the referring side may close a referral"
        );
        let e = act(&p.inn, Body::Cancel { reason: "x".into() }, 3).unwrap_err();
        assert!(matches!(e, ReferralError::WrongSide { .. }));
    }

    #[test]
    fn messages_that_make_no_sense_are_refused_with_invalid_state() {
        let mut p = Pair::new(false);
        p.handler(Body::Rejected {
            reason: "no".into(),
        });
        // "resolved" on a rejected referral.
        let e = on_message(
            &p.out,
            &Body::Resolved {
                resolution: "x".into(),
                component: None,
            },
            5,
        )
        .unwrap_err();
        assert_eq!(e.code(), ExchangeCode::InvalidState);
        assert_eq!(
            e.to_string(),
            "telco-b sent resolved on a referral that is rejected here"
        );
        // A handler's message arriving at the handler.
        let q = Pair::new(false);
        assert!(on_message(&q.inn, &Body::Accepted, 5).is_err());
        // A referrer's message arriving at the referrer.
        assert!(on_message(&q.out, &Body::Close, 5).is_err());
        // Accepted twice (a replay that slipped past the marks) is refused, not applied twice.
        let mut r = Pair::new(false);
        r.handler(Body::Accepted);
        assert!(on_message(&r.out, &Body::Accepted, 5).is_err());
        // Close before resolve.
        assert!(act(&r.out, Body::Close, 5).is_err());
    }

    #[test]
    fn info_requests_alert_the_other_side() {
        let mut p = Pair::new(true);
        let fx = p.referrer(Body::InfoRequest {
            question: "ETA?".into(),
        });
        assert!(fx.contains(&Effect::Alert("noc-a asks: ETA?".into())));
    }

    #[test]
    fn overdue_until_accepted_and_orphaned_shows_first() {
        let p = Pair::new(false);
        assert!(!p.out.is_overdue(4_999));
        assert!(p.out.is_overdue(5_000));
        assert_eq!(p.out.label(6_000), "overdue");
        assert_eq!(p.out.escalation_at(), Some(5_000));
        assert!(!p.inn.is_overdue(6_000), "only the referrer escalates");
        let mut q = Pair::new(true);
        assert!(!q.out.is_overdue(6_000));
        assert_eq!(q.out.escalation_at(), None);
        q.out.orphaned = true;
        assert_eq!(q.out.label(0), "orphaned");
    }

    proptest::proptest! {
        /// Whatever either end tries, in whatever order, every action that is allowed is applied
        /// by the other end when its message arrives in order, so both copies stay in one state,
        /// and a refused action changes nothing.
        #[test]
        fn both_copies_stay_in_step(script in proptest::collection::vec((0u8..2, 0u8..9), 0..40)) {
            let mut p = Pair::new(false);
            for (who, what) in script {
                let body = match what {
                    0 => Body::Accepted,
                    1 => Body::Rejected { reason: "r".into() },
                    2 => Body::Status { status: PartnerStatus::Waiting },
                    3 => Body::Resolved { resolution: "x".into(), component: None },
                    4 => Body::Close,
                    5 => Body::Reopen { reason: "again".into() },
                    6 => Body::Cancel { reason: "c".into() },
                    7 => Body::Note(note("x")),
                    _ => Body::InfoRequest { question: "?".into() },
                };
                let (mine, theirs) = if who == 0 { (&mut p.out, &mut p.inn) } else { (&mut p.inn, &mut p.out) };
                let before = mine.clone();
                match act(mine, body, 3) {
                    Ok(step) => {
                        *mine = step.referral;
                        for sent in &step.send {
                            let got = on_message(theirs, sent, 4).expect("the other end applies it");
                            *theirs = got.referral;
                        }
                    }
                    Err(_) => proptest::prop_assert_eq!(&*mine, &before),
                }
                proptest::prop_assert_eq!(p.out.state, p.inn.state);
            }
        }
    }
}

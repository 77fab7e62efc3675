//! The referral exchange on the wire: the `ttx-exchange/1` handler (a partner's message in, our
//! answer out) and the outbox worker (our queued messages out, in order, until acknowledged).
//!
//! Neither decides anything about referrals: the handler hands the decoded message to the
//! writer (`WriteOp::Inbound`, where the pure decision and the mark advance run in one
//! transaction) and the worker reports acknowledgements back (`WriteOp::ExchangeAcked`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::watch;
use tracing::Instrument;

use super::edge_stream::{EdgeStream, Opened};
use super::{Federation, FederationSlot};
use crate::exchange::edge::{consumed_for_good, retry_delay, PROBE_SEQ};
use crate::exchange::PeerRates;
use crate::model::peer::PeerState;
use crate::model::role::NodeRole;
use crate::net::{BoxFuture, Handler, IncomingStream, NetError, Peer, PeerCtx};
use crate::replication::{Primary, PrimaryHint};
use crate::store::{query, InboundMessage, Store, StoreError, WriteOp, WriteOutcome, WriteRequest};
use crate::wire::codec::{decode, encode};
use crate::wire::exchange::{Answer, ExchangeCode, Message, Refused};
use crate::wire::{ErrorCode, Request, StreamOpen};

/// What the exchange needs of the site's replication.
#[derive(Clone)]
pub struct SiteLink {
    /// The hub whose gate a partner's ack waits in: in `sync` modes a partner is told a
    /// message is taken only once the standby has it durably, so a promoted standby never
    /// expects again what the partner already dropped from its outbox.
    pub primary: Arc<Primary>,
    /// Where this site's primary is, named in the refusals of a node that is not it.
    pub hint: PrimaryHint,
}

impl SiteLink {
    /// A node without a standby (async: acks leave after the local commit).
    pub fn standalone() -> Self {
        SiteLink {
            primary: Primary::new(
                &crate::config::ReplicationSection::default(),
                crate::replication::Mode::Async,
                0,
            ),
            hint: PrimaryHint::default(),
        }
    }
}

/// Serves `ttx-exchange/1` and `ttx-exchange/2` (the same messages, plus attachment chunks on
/// version 2): one [`Message`] per request, answered with an [`Answer`], or many on one
/// long-lived edge stream ([`super::edge_stream`]). The endpoint has already checked the peer's
/// certificate and its exchange permission; the sender site is the one its certificate names,
/// never one the message claims.
pub struct ExchangeV1 {
    store: Store,
    site: SiteLink,
    /// Each peer's token bucket (taken in the writer, against the policy it reads there).
    rates: Arc<PeerRates>,
}

impl ExchangeV1 {
    /// A handler writing through `store`, acknowledging through `site`'s gate.
    pub fn new(store: Store, site: SiteLink) -> Self {
        ExchangeV1 {
            store,
            site,
            rates: Arc::new(PeerRates::new()),
        }
    }

    /// The refusal of a node that is not its site's primary (`None` on the primary): the
    /// primary's address when known, so the partner moves over at once.
    fn not_primary(&self) -> Option<Refused> {
        let role = self.store.writer.role_now();
        let code = match role.role {
            NodeRole::Primary => return None,
            NodeRole::Standby { .. } | NodeRole::HandingOver { .. } => ExchangeCode::NotPrimary,
            NodeRole::Fenced { .. } => ExchangeCode::Fenced,
        };
        Some(Refused {
            primary: self.site.hint.get(),
            epoch: Some(role.epoch),
            ..Refused::code(code)
        })
    }

    /// Takes a window of `site`'s messages (consecutive, as they arrived) in one write, and
    /// answers once the local standby has them durably (the gate). Nothing is read before the
    /// write: requests reach the writer in the order they arrived.
    pub(super) async fn take(
        &self,
        site: &str,
        messages: Vec<InboundMessage>,
    ) -> Result<Vec<Answer>, ErrorCode> {
        let first = messages.first().map_or(0, |m| m.message.seq);
        if let Some(refused) = self.not_primary() {
            tracing::info!(peer = %site, seq = first, code = ?refused.code, primary = refused.primary.as_deref().unwrap_or("-"), "partner message refused: not the primary");
            return Ok(vec![Answer::Refused(refused)]);
        }
        let req = WriteRequest {
            actor: format!("exchange:{site}"),
            idempotency: None,
            op: WriteOp::Inbound {
                peer: site.to_string(),
                messages,
                rates: self.rates.clone(),
            },
        };
        match self.store.writer.write(req).await {
            Ok(WriteOutcome::Exchange { mut answers }) => {
                // Deposed between the check above and the write: the refusal names the primary.
                if let Some(Answer::Refused(r)) = answers.last_mut() {
                    if matches!(r.code, ExchangeCode::NotPrimary | ExchangeCode::Fenced) {
                        if let Some(named) = self.not_primary() {
                            *r = named;
                        }
                    }
                }
                // The head after the commit covers the messages' events and the mark.
                let head = *self.store.writer.head.borrow() as u64;
                if let Err(e) = self.site.primary.acknowledged(head).await {
                    tracing::warn!(peer = %site, seq = first, error = %e, "partner messages not yet on the standby: not acknowledged");
                    return Err(ErrorCode::Timeout);
                }
                Ok(answers)
            }
            Ok(other) => {
                tracing::error!(?other, "unexpected answer to a partner message");
                Err(ErrorCode::Internal)
            }
            Err(StoreError::Closed) => Err(ErrorCode::ShuttingDown),
            Err(e) => {
                tracing::error!(peer = %site, error = %e, "cannot take a partner message");
                Err(ErrorCode::Internal)
            }
        }
    }

    async fn answer(
        &self,
        site: &str,
        protocol: crate::wire::alpn::ProtocolId,
        body: &[u8],
    ) -> Result<Answer, ErrorCode> {
        let message: Message = decode(body).map_err(|_| ErrorCode::Malformed)?;
        if not_in_version(protocol, &message) {
            return Err(ErrorCode::Malformed);
        }
        let one = InboundMessage {
            bytes: body.len(),
            message,
        };
        self.take(site, vec![one])
            .await?
            .pop()
            .ok_or(ErrorCode::Internal)
    }
}

impl Handler for ExchangeV1 {
    fn handle<'a>(
        &'a self,
        peer: &'a PeerCtx,
        request: Request,
    ) -> BoxFuture<'a, Result<Vec<u8>, ErrorCode>> {
        Box::pin(async move {
            let answer = self
                .answer(&peer.identity.site, peer.protocol, &request.body)
                .await?;
            encode(&answer).map_err(|_| ErrorCode::Internal)
        })
    }

    fn stream<'a>(
        &'a self,
        peer: &'a PeerCtx,
        open: StreamOpen,
        incoming: IncomingStream,
    ) -> BoxFuture<'a, ()> {
        Box::pin(super::edge_stream::serve(self, peer, open, incoming))
    }
}

/// Whether `message` is not a message of `protocol`: what `ttx-exchange/2` added (an
/// attachment chunk) is an unknown message on a `ttx-exchange/1` connection.
pub(super) fn not_in_version(protocol: crate::wire::alpn::ProtocolId, message: &Message) -> bool {
    protocol.version < 2 && matches!(message.body, crate::wire::exchange::Body::Attachment(_))
}

/// The exchange's frame limits: an edge stream's frame is one message, as large as a request.
pub fn limits() -> crate::net::ProtocolLimits {
    let d = crate::net::ProtocolLimits::default();
    crate::net::ProtocolLimits {
        max_stream_frame_bytes: d.max_request_bytes,
        ..d
    }
}

/// How many queued messages one round of a worker reads.
const ROUND: usize = 1024;

/// How many requests a worker keeps in flight on its edge (each on its own stream, below the
/// partner's per-connection stream limit).
const WINDOW: usize = 64;

/// Runs one outbox worker per peer with messages waiting, for as long as the node runs. Only
/// messages whose queuing event is at a log position at most `shippable` leave (the store's
/// head on a node without a standby; the standby-durable position with one), so a partner never
/// holds a message a promoted standby does not know was sent. Only the primary sends.
pub async fn run_outboxes(
    slot: Arc<FederationSlot>,
    store: Store,
    shippable: watch::Receiver<i64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut workers: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let primary_at = PrimaryAt::default();
    // Woken when messages are queued (not at every commit: reading the outbox after each of
    // them cost a node with no partners a few per cent of its API's time), when a worker
    // ends (it may have found its outbox empty just before a message was queued), and when
    // the role changes (a promotion starts the workers at once; a role change stops them:
    // each checks the role before every message).
    let queued = store.writer.outbox_changed.clone();
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut role = store.writer.role.clone();
    loop {
        let notified = queued.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        workers.retain(|_, w| !w.is_finished());
        let primary = store.writer.role.borrow().is_primary();
        if primary {
            match store
                .reader
                .read(crate::store::exchange::peers_with_backlog)
                .await
            {
                Ok(peers) => {
                    for peer in peers {
                        if workers.contains_key(&peer) {
                            continue;
                        }
                        let worker = Worker::new(
                            slot.clone(),
                            store.clone(),
                            peer.clone(),
                            shippable.clone(),
                            shutdown.clone(),
                            primary_at.clone(),
                        );
                        let span = tracing::info_span!("outbox", peer = %peer);
                        let ended_tx = ended_tx.clone();
                        let run = async move {
                            worker.run().await;
                            let _ = ended_tx.send(());
                        };
                        workers.insert(peer, tokio::spawn(run.instrument(span)));
                    }
                }
                Err(StoreError::Closed) => return,
                Err(e) => tracing::error!(error = %e, "cannot read the exchange outbox"),
            }
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = ended.recv() => {}
            r = role.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    for (_, w) in workers {
        let _ = w.await;
    }
}

/// Where each partner's primary last took messages (its address), shared by the workers one
/// after another: a worker started for the next burst goes there first, on the connection
/// already open to it, rather than to whichever of the site's nodes it happens to have a
/// connection to (a standby or deposed primary, which would only redirect it).
type PrimaryAt = Arc<std::sync::Mutex<HashMap<String, String>>>;

/// Sends one peer's outbox, in sequence order, until it is empty.
struct Worker {
    slot: Arc<FederationSlot>,
    store: Store,
    peer: String,
    shippable: watch::Receiver<i64>,
    shutdown: watch::Receiver<bool>,
    /// The connection in use and the address it was dialed at (or the peer's address on it).
    conn: Option<(Peer, String)>,
    /// The address to dial first next time: where the peer's last answer said its primary is,
    /// or the registered address after the one that failed (a site's nodes in turn).
    first: Option<String>,
    /// Requests kept in flight: [`WINDOW`], down to 1 after the partner's rate cap refused
    /// one, doubling again with each round it does not.
    window: usize,
    /// The edge stream in use, if the partner serves them.
    stream: Option<EdgeStream>,
    /// The connection whose partner refused an edge stream (one request per message there).
    no_stream_on: Option<u64>,
    /// Where to resend from although the partner acknowledged it: its site failed over with
    /// asynchronous replication and its new primary expects messages its old one had taken
    /// (`OutOfOrder` with an `expected` at or below our acknowledged mark). They are read back
    /// from our log until the partner is past our mark again.
    resend_from: Option<u64>,
    /// Where the partners' primaries last took messages.
    primary_at: PrimaryAt,
}

/// How a round of sending ended.
enum Round {
    /// Nothing is waiting: the worker ends (the supervisor starts a new one when there is).
    Empty,
    /// Everything that may leave has left; wait for more to become shippable.
    WaitShippable,
    /// Sent and acknowledged some: go on at once.
    Progress,
    /// Failed (the peer down, refused for now): back off.
    Failed(String),
    /// The connection failed (not the peer's answer): close it, back off, dial a new one.
    Broken(String),
    /// The node answering is not its site's primary (a standby, or a deposed primary): dial
    /// the primary it names, else the site's next address, at once.
    Redirect(Option<String>),
    /// This node is no longer its site's primary: it sends nothing more.
    Deposed,
    /// The partner expects a message it had already acknowledged (it lost it in a failover):
    /// resend from there at once.
    Rewind(u64),
    /// The partner refused a message as over its rate cap (after taking those before it when
    /// `progressed`): send again soon, with a smaller window.
    RateLimited {
        /// Whether the round got any acknowledgement before the refusal.
        progressed: bool,
    },
}

impl Worker {
    fn new(
        slot: Arc<FederationSlot>,
        store: Store,
        peer: String,
        shippable: watch::Receiver<i64>,
        shutdown: watch::Receiver<bool>,
        primary_at: PrimaryAt,
    ) -> Self {
        let first = lock(&primary_at).get(&peer).cloned();
        Worker {
            slot,
            store,
            peer,
            shippable,
            shutdown,
            conn: None,
            first,
            window: WINDOW,
            stream: None,
            no_stream_on: None,
            resend_from: None,
            primary_at,
        }
    }

    fn is_primary(&self) -> bool {
        self.store.writer.role.borrow().is_primary()
    }

    async fn run(mut self) {
        let mut attempt: u32 = 0;
        // After a broken connection, dial a new one rather than reuse a live one (it may be
        // the same dead connection, still registered until its idle timeout).
        let mut dial_new = false;
        // Redirects in a row without progress: the first is followed at once, later ones
        // back off (both nodes of a site may say "not me" while a promotion is under way).
        let mut redirects: u32 = 0;
        loop {
            if *self.shutdown.borrow() || !self.is_primary() {
                return;
            }
            let round = self.round(dial_new).await;
            // A stream outlives only a round that went well (the partner finishes it after a
            // refusal for now, and a failure may have broken it).
            if !matches!(round, Round::Progress | Round::WaitShippable) {
                self.stream = None;
            }
            let wait = match round {
                Round::Empty | Round::Deposed => return,
                Round::Progress => {
                    (attempt, redirects, dial_new) = (0, 0, false);
                    if let Some((_, addr)) = &self.conn {
                        lock(&self.primary_at).insert(self.peer.clone(), addr.clone());
                    }
                    self.window = (self.window * 2).min(WINDOW);
                    continue;
                }
                Round::Rewind(from) => {
                    tracing::warn!(peer = %self.peer, from, "partner lost messages it had acknowledged (its site failed over): sending them again from our log");
                    self.resend_from = Some(from);
                    if attempt == 0 {
                        attempt = 1;
                        continue;
                    }
                    attempt = attempt.saturating_add(1);
                    retry_delay(attempt, jitter())
                }
                Round::RateLimited { progressed } => {
                    self.window = 1;
                    attempt = if progressed {
                        1
                    } else {
                        attempt.saturating_add(1)
                    };
                    retry_delay(attempt, jitter())
                }
                Round::WaitShippable => {
                    attempt = 0;
                    tokio::select! {
                        r = self.shippable.changed() => if r.is_err() { return },
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = self.shutdown.wait_for(|s| *s) => return,
                    }
                    continue;
                }
                Round::Redirect(primary) => {
                    let refused_at = self.conn.take().map(|(_, addr)| addr);
                    self.first = match primary {
                        Some(p) => Some(p),
                        None => self.next_addr(refused_at.as_deref()).await,
                    };
                    tracing::info!(peer = %self.peer, refused_at = refused_at.as_deref().unwrap_or("-"), next = self.first.as_deref().unwrap_or("-"), "partner node is not its site's primary: moving over");
                    dial_new = true;
                    redirects += 1;
                    if redirects == 1 {
                        continue;
                    }
                    attempt = attempt.saturating_add(1);
                    retry_delay(attempt, jitter())
                }
                Round::Failed(ref why) | Round::Broken(ref why) => {
                    let why = why.clone();
                    if let Some((c, addr)) = self.conn.take() {
                        if matches!(round, Round::Broken(_)) {
                            c.close(ErrorCode::Timeout);
                            dial_new = true;
                            // A dead node: try the site's next address first.
                            self.first = self.next_addr(Some(&addr)).await;
                        }
                    }
                    attempt = attempt.saturating_add(1);
                    let delay = retry_delay(attempt, jitter());
                    if attempt == 1 || attempt.is_power_of_two() {
                        tracing::warn!(peer = %self.peer, attempt, retry_in_ms = delay.as_millis() as u64, reason = %why, "cannot deliver to partner; will retry");
                    }
                    delay
                }
            };
            // The peer's record changing (re-added with a new address, say) retries at once.
            let before = self.addrs().await;
            let until = tokio::time::Instant::now() + wait;
            let changed = self.store.writer.outbox_changed.clone();
            loop {
                let woke = tokio::select! {
                    _ = tokio::time::sleep_until(until) => false,
                    _ = changed.notified() => true,
                    _ = self.shutdown.wait_for(|s| *s) => return,
                };
                if !woke {
                    break;
                }
                if self.addrs().await != before {
                    attempt = 0;
                    self.first = None;
                    break;
                }
            }
        }
    }

    /// The peer's registered addresses (`None` when it is not in the registry).
    async fn addrs(&self) -> Option<Vec<String>> {
        let peer = self.peer.clone();
        self.store
            .reader
            .read(move |c| query::peer(c, &peer))
            .await
            .ok()
            .flatten()
            .map(|r| r.addrs)
    }

    /// The registered address after `failed` (in turn, wrapping), or `None` to dial in the
    /// registry's order.
    async fn next_addr(&self, failed: Option<&str>) -> Option<String> {
        let addrs = self.addrs().await?;
        let at = addrs.iter().position(|a| Some(a.as_str()) == failed)?;
        addrs.get((at + 1) % addrs.len()).cloned()
    }

    /// The connection to use: the one in hand, a live one (unless `dial_new`: to the node at
    /// `first` when the worker knows where the primary is), or a new one dialed from `first`.
    /// Reusing a live connection to the right node keeps a partner's connections to one per
    /// node (each dial adds one until it idles out; past the peer's cap it refuses more).
    async fn connect(&mut self, fed: &Federation, dial_new: bool) -> Result<Peer, String> {
        if let Some((p, _)) = &self.conn {
            return Ok(p.clone());
        }
        let live = if dial_new {
            None
        } else {
            fed.live_exchange_peer(&self.peer, self.first.as_deref())
        };
        let (p, addr) = match live {
            Some(p) => {
                let addr = p.ctx().remote.to_string();
                (p, addr)
            }
            None => fed
                .dial_from(&self.peer, self.first.as_deref())
                .await
                .map_err(|e| e.to_string())?,
        };
        self.conn = Some((p.clone(), addr));
        Ok(p)
    }

    async fn round(&mut self, dial_new: bool) -> Round {
        let peer = self.peer.clone();
        let shippable = *self.shippable.borrow();
        let resend_from = self.resend_from;
        // Every message carries the epoch this node sends it in (not only the one it was
        // decided in): a promoted standby's retries of its predecessor's messages tell the
        // partner of the new epoch, and the partner refuses the deposed primary from then on.
        let epoch = self.store.writer.role.borrow().epoch;
        let read = self
            .store
            .reader
            .read(move |c| {
                let record = query::peer(c, &peer)?;
                let (out, mark) = crate::store::exchange::edge(c, &peer)?;
                // What the partner lost first (read back from the log), then the outbox.
                let mut msgs = match resend_from {
                    Some(from) if from <= out.acked => {
                        let to = out.acked.min(from + ROUND as u64 - 1);
                        crate::store::exchange::resend_from_log(c, &peer, from, to)?
                    }
                    _ => Vec::new(),
                };
                if msgs.last().is_none_or(|m| m.seq == out.acked) {
                    let room = ROUND - msgs.len().min(ROUND);
                    msgs.extend(crate::store::exchange::outbox_after(
                        c, &peer, out.acked, shippable, room,
                    )?);
                }
                let learned = crate::store::exchange::learned_epoch(c, &peer)?;
                Ok((record, out, mark.epoch, learned, msgs))
            })
            .await;
        let (record, out, peer_epoch, learned, msgs) = match read {
            Ok(r) => r,
            Err(e) => return Round::Failed(e.to_string()),
        };
        if msgs.first().is_none_or(|m| m.seq > out.acked) {
            self.resend_from = None;
        }
        if out.backlog() == 0 && self.resend_from.is_none() {
            return Round::Empty;
        }
        match record {
            Some(r) if r.state == PeerState::Accepted && r.exchange => {}
            // Orphaned: the peer left the registry (or lost the permission). Nothing is sent
            // until it is added again; the messages stay queued.
            _ => return Round::WaitShippable,
        }
        if msgs.is_empty() {
            return Round::WaitShippable;
        }
        let mut msgs = msgs;
        for m in &mut msgs {
            m.epoch = m.epoch.max(epoch);
        }
        let Some(fed) = self.slot.get() else {
            return Round::Failed("the federation is down".into());
        };
        let link = match self.connect(&fed, dial_new).await {
            Ok(p) => p,
            Err(e) => return Round::Failed(e),
        };
        // The partner's mark first, once per edge per epoch: nothing is sent before it.
        if crate::exchange::edge::needs_probe(learned, epoch) {
            let protocol = link.ctx().protocol;
            let probe = crate::exchange::attachment::for_protocol(msgs.swap_remove(0), protocol);
            return self.probe(&link, probe).await;
        }
        let connection = link.ctx().connection_id;
        if self
            .stream
            .as_ref()
            .is_some_and(|s| !s.usable_on(connection))
        {
            self.stream = None;
        }
        if self.stream.is_none() && self.no_stream_on != Some(connection) {
            match EdgeStream::open(&link, self.store.writer.role.clone()).await {
                Ok(Opened::Stream(s)) => self.stream = Some(s),
                Ok(Opened::Unsupported) => {
                    tracing::info!(peer = %self.peer, "partner serves no edge stream: one request per message");
                    self.no_stream_on = Some(connection);
                }
                Err(e) => return Round::Broken(e.to_string()),
            }
        }
        // On `ttx-exchange/1` an attachment chunk goes as the note naming it.
        let protocol = link.ctx().protocol;
        let msgs: Vec<Message> = msgs
            .into_iter()
            .map(|m| crate::exchange::attachment::for_protocol(m, protocol))
            .collect();
        let window = Window::new(&msgs, out.acked, peer_epoch);
        match self.stream.take() {
            Some(stream) => self.stream_round(stream, msgs, window).await,
            None => self.pipeline(&link, msgs, window).await,
        }
    }

    /// Learns the partner's mark with a mark probe (protocol §5c): `lowest`, the lowest
    /// message waiting, sent with sequence [`PROBE_SEQ`] alone as one request. Every
    /// conformant receiver answers it as a retry, `Ack { up_to: applied }`, and applies
    /// nothing (it still learns this node's epoch). The answer is recorded through the
    /// writer, which moves this epoch's messages after the mark when the partner took messages
    /// this node never knew of; the next round sends from there.
    async fn probe(&self, link: &Peer, lowest: Message) -> Round {
        let probe = Message {
            seq: PROBE_SEQ,
            ..lowest
        };
        let body = match encode(&probe) {
            Ok(b) => b,
            Err(e) => return Round::Failed(e.to_string()),
        };
        if !self.is_primary() {
            return Round::Deposed;
        }
        let answer = match answer_of(link.request(body).await) {
            Ok(a) => a,
            Err(round) => return round,
        };
        let mark = match answer {
            Answer::Ack { up_to } => up_to,
            Answer::Refused(r)
                if matches!(r.code, ExchangeCode::NotPrimary | ExchangeCode::Fenced) =>
            {
                return Round::Redirect(r.primary)
            }
            Answer::Refused(r) => {
                return Round::Failed(format!("mark probe refused: {}", r.code.text()))
            }
        };
        let req = WriteRequest {
            actor: "system".into(),
            idempotency: None,
            op: WriteOp::ExchangeMarkLearned {
                peer: self.peer.clone(),
                mark,
            },
        };
        match self.store.writer.write(req).await {
            Ok(_) => Round::Progress,
            Err(e) => Round::Failed(e.to_string()),
        }
    }

    /// Sends `msgs` (consecutive, from `window.start + 1`) on the edge stream and reads the
    /// answers until the last is acknowledged, then records the highest acknowledgement once
    /// (a refusal for good on its own, for its alert). Keeps the stream for the next round when
    /// it went well.
    async fn stream_round(
        &mut self,
        mut stream: EdgeStream,
        msgs: Vec<Message>,
        mut window: Window,
    ) -> Round {
        let last = msgs.last().map_or(window.start, |m| m.seq);
        if !self.is_primary() {
            return Round::Deposed;
        }
        if let Err(e) = stream.send(msgs).await {
            return Round::Broken(e);
        }
        let end = loop {
            if window.highest >= last {
                break Round::Progress;
            }
            let answer = match stream.answer().await {
                Ok(Some(a)) => a,
                Ok(None) => break Round::Failed("the partner ended the edge stream".into()),
                Err(e) => break Round::Broken(e.to_string()),
            };
            // A refusal for good is about the message after the last acknowledged one.
            let about = window.highest + 1;
            if let Some(round) = self.on_answer(&mut window, about, answer).await {
                break round;
            }
        };
        let end = self.record(&window, end).await;
        if matches!(end, Round::Progress) {
            self.stream = Some(stream);
        }
        end
    }

    /// What one answer does to the window being read: `Some` ends the round.
    async fn on_answer(&self, w: &mut Window, about: u64, answer: Answer) -> Option<Round> {
        let r = match answer {
            Answer::Ack { up_to } => {
                w.highest = w.highest.max(up_to);
                return None;
            }
            Answer::Refused(r) => r,
        };
        match r.code {
            // Consumed for good at the partner: the edge goes on past it.
            code if consumed_for_good(code) => {
                if let Err(e) = self.acked(about, Some(code)).await {
                    return Some(Round::Failed(e));
                }
                (w.highest, w.written) = (about, w.written.max(about));
                None
            }
            // The partner has everything before `expected`: resend from there.
            ExchangeCode::OutOfOrder => {
                let expected = r.expected.unwrap_or(1).max(1);
                // It expects what it had acknowledged: its site failed over and lost it, if
                // the node answering is at the site's latest epoch we know of (a deposed
                // primary restarted before it was fenced answers the same, from an earlier
                // epoch: it must not be sent anything).
                if expected <= w.acked && r.epoch.is_some_and(|e| e >= w.peer_epoch) {
                    return Some(Round::Rewind(expected));
                }
                w.highest = w.highest.max(expected - 1);
                Some(if w.highest > w.start {
                    Round::Progress
                } else {
                    Round::Failed("out of order".into())
                })
            }
            ExchangeCode::NotPrimary | ExchangeCode::Fenced => Some(Round::Redirect(r.primary)),
            ExchangeCode::RateLimited => Some(Round::RateLimited {
                progressed: w.highest > w.acked,
            }),
            code => Some(Round::Failed(code.text().to_string())),
        }
    }

    /// Records the window's highest acknowledgement (if not yet written) and ends the round;
    /// a round that resent what a failed-over partner lost moves the resend on.
    async fn record(&mut self, w: &Window, end: Round) -> Round {
        if self.resend_from.is_some() && w.highest > w.start {
            self.resend_from = (w.highest < w.acked).then_some(w.highest + 1);
        }
        if w.highest > w.written {
            if let Err(e) = self.acked(w.highest, None).await {
                return Round::Failed(e);
            }
        }
        end
    }

    /// Sends `msgs` (consecutive, from `w.start + 1`) with up to `window` requests in flight,
    /// reads the answers in sequence order, and records the highest acknowledgement once at
    /// the end (a refusal for good is recorded on its own, for its alert). The partner applies
    /// strictly in order, so a message that overtook its predecessor is refused `OutOfOrder`:
    /// the round then ends and the next one resends from the partner's mark.
    async fn pipeline(&mut self, link: &Peer, msgs: Vec<Message>, mut w: Window) -> Round {
        let window = self.window.clamp(1, WINDOW);
        let mut pending = msgs.into_iter();
        let mut inflight = FuturesOrdered::new();
        let end = loop {
            while inflight.len() < window {
                let Some(msg) = pending.next() else { break };
                // A deposed primary sends nothing: the role is checked before every message.
                if !self.is_primary() {
                    return Round::Deposed;
                }
                let body = match encode(&msg) {
                    Ok(b) => b,
                    Err(e) => return Round::Failed(e.to_string()),
                };
                let link = link.clone();
                inflight.push_back(async move { (msg.seq, link.request(body).await) });
            }
            let Some((seq, result)) = inflight.next().await else {
                break Round::Progress;
            };
            let answer = match answer_of(result) {
                Ok(a) => a,
                Err(round) => break round,
            };
            if let Some(round) = self.on_answer(&mut w, seq, answer).await {
                break round;
            }
        };
        self.record(&w, end).await
    }

    async fn acked(&self, up_to: u64, refused: Option<ExchangeCode>) -> Result<(), String> {
        let req = WriteRequest {
            actor: "system".into(),
            idempotency: None,
            op: WriteOp::ExchangeAcked {
                peer: self.peer.clone(),
                up_to,
                refused,
            },
        };
        self.store
            .writer
            .write(req)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The acknowledgements of one round as its answers are read.
struct Window {
    /// What was acknowledged before the round.
    acked: u64,
    /// The sequence before the round's first message: `acked`, or lower when the round resends
    /// what a failed-over partner lost.
    start: u64,
    /// The highest acknowledgement seen.
    highest: u64,
    /// The highest acknowledgement already recorded in the store.
    written: u64,
    /// The highest epoch of the partner's site we have seen (on its messages to us).
    peer_epoch: u64,
}

impl Window {
    /// A round sending `msgs` (consecutive) with the edge acknowledged up to `acked`, the
    /// partner's site last seen at `peer_epoch`.
    fn new(msgs: &[Message], acked: u64, peer_epoch: u64) -> Self {
        let start = msgs.first().map_or(acked, |m| m.seq - 1).min(acked);
        Window {
            acked,
            start,
            highest: start,
            written: acked,
            peer_epoch,
        }
    }
}

/// The answer a request got, or how the round ends when it got none: a malformed answer or a
/// remote error fails it, a broken connection breaks it.
fn answer_of(result: Result<Vec<u8>, NetError>) -> Result<Answer, Round> {
    match result {
        Ok(bytes) => {
            decode::<Answer>(&bytes).map_err(|e| Round::Failed(format!("a malformed answer: {e}")))
        }
        Err(NetError::Remote(code)) => Err(Round::Failed(format!("refused: {}", code.text()))),
        Err(e) => Err(Round::Broken(e.to_string())),
    }
}

/// A number in [0, 1) for the retry jitter, from the clock's low bits (no RNG needed).
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// The map's lock (a panic elsewhere leaves it usable: it holds only addresses).
fn lock(m: &PrimaryAt) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

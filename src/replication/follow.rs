//! The standby's follower: dials its primary over `ttx-repl/1`, subscribes from its own head,
//! applies each batch with the one applier (`WriteOp::Replicate`, strict `head + 1`), acks what
//! it has durably and applied, and reconnects with backoff after any failure, always resuming
//! from its head (so a restart, a dropped stream or a refused batch resume cleanly).
//!
//! Each subscription names the event at the standby's head (position, id, epoch): a primary
//! whose log holds another event there refuses it `diverged`, and the follower says so in
//! `ttx status` (the node has events the primary never had: `ttx standby rejoin`).
//!
//! It follows while the node is a standby (or fenced: a deposed primary whose log is a prefix
//! of the new primary's may catch up; one with a tail is refused `diverged`). A promoted node
//! stops following at once and knocks at the old primary's address with its new epoch, so
//! that an old primary that comes back is fenced by its first subscription (it refuses writes
//! from then on, durably). It knocks until the old primary answered once (it is then fenced
//! or a standby, durably, and never needs another knock), waiting 1 s doubling to 10 s while
//! the old primary cannot be reached.
//!
//! A stream runs three tasks: the reader checks each batch's place and hands it to the
//! applier, which applies every batch waiting in one transaction; the acker tells the primary
//! `durable` and `applied` each time either moves. With `replication.receipt_spool` a fourth,
//! the spooler, makes every batch waiting durable in the receipt spool with one `fdatasync`
//! ([`crate::store::spool`]) side by side with the applier, and `durable` is the spooled
//! position: a `sync` primary then waits for one small append here, not for the standby's
//! SQLite transaction. Before each subscription the follower applies what the spool holds past
//! its head (a restart, a dropped stream), so it always subscribes from everything it ever
//! acknowledged.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::timeline::Stage;
use crate::federation::FederationSlot;
use crate::model::clock::{self, Millis};
use crate::net::{FramedRecv, FramedSend, NetError};
use crate::store::{spool, Store, StoreError, WriteOp, WriteRequest};
use crate::wire::codec;
use crate::wire::envelope::Envelope;
use crate::wire::repl::{Subscribe, Subscribed, ToPrimary, ToStandby};

/// The first wait after a failure; doubled each time up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The first wait between a promoted node's knocks at its old primary (unreachable so far).
const PROBE_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between knocks.
const PROBE_MAX: Duration = Duration::from_secs(10);
/// Batches waiting to be spooled, and again to be applied, before the stream stops being read
/// (QUIC then slows the primary down).
const APPLY_QUEUE: usize = 64;

/// The spool thread's loop: every record waiting in one append and one `fdatasync`, then
/// `durable` moves. Once the spool has grown past [`spool::RECYCLE_BYTES`] it waits until
/// everything in it is applied (the applier is at most [`APPLY_QUEUE`] batches behind) and
/// starts it afresh.
fn spool_records(
    spool: &spool::Spool,
    mut rx: mpsc::Receiver<spool::Record>,
    durable: &watch::Sender<u64>,
    timeline: &super::timeline::Timeline,
    head: &watch::Receiver<i64>,
) -> Result<(), spool::SpoolError> {
    while let Some(first) = rx.blocking_recv() {
        let mut records = vec![first];
        while let Ok(r) = rx.try_recv() {
            records.push(r);
        }
        if spool.len() >= spool::RECYCLE_BYTES {
            let last = spool.last();
            while (*head.borrow() as u64) < last {
                if head.has_changed().is_err() || rx.is_closed() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            spool.recycle(last, spool::RECYCLE_BYTES)?;
        }
        let last = spool.append_records(&records)?;
        timeline.record(Stage::Spooled, last);
        durable.send_replace(last);
    }
    Ok(())
}

/// Runs file I/O off the runtime's threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SessionEnd> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| SessionEnd::Apply(StoreError::Closed))
}

/// The standby's replication state, for `ttx status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FollowStatus {
    /// The address of the site's other node: the primary it follows while a standby, the old
    /// primary it knocks at once promoted (`replication.primary`, else the first address of
    /// this site's own registry record; empty when neither is set).
    pub primary_addr: String,
    /// The primary's node name, once a stream was up.
    pub primary_node: Option<String>,
    /// Whether the stream is up now.
    pub connected: bool,
    /// The last position applied here.
    pub applied: u64,
    /// The last position durable here (in the receipt spool or applied): what the primary's
    /// `sync` answers wait for.
    #[serde(default)]
    pub durable: u64,
    /// The primary's head as last heard (a batch, a heartbeat or the subscription).
    pub primary_head: u64,
    /// Events the primary has that are not applied here, as last heard.
    pub lag_events: u64,
    /// How far behind this node is in the primary's milliseconds: the primary's clock now (its
    /// greatest reading received, plus this node's monotonic time since) minus its commit time
    /// of the oldest event not applied here; 0 when nothing is missing (`standby_lag.rs`).
    #[serde(default)]
    pub lag_ms: Option<i64>,
    /// The primary's commit time (its own clock) of the last batch applied here.
    pub last_batch_committed_at: Option<Millis>,
    /// When this node last heard from the primary (its own clock).
    pub last_heard_at: Option<Millis>,
    /// Why the last stream ended or could not start.
    pub last_error: Option<String>,
    /// After promotion: the old primary came back and was fenced by this node's epoch.
    #[serde(default)]
    pub old_primary_fenced: bool,
    /// The primary refused this node's log as not a prefix of its own: the position of this
    /// node's head when it was refused (its events at or below it differ from the primary's).
    #[serde(default)]
    pub diverged_at: Option<u64>,
}

/// Why a session with the primary ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("the federation is down on this node (see `ttx status`)")]
    NoFederation,
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("no address to follow: set `replication.primary` in the config, or this site's standby address in the registry (`ttx peer add SITE --addr`)")]
    NoAddress,
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("applying a batch: {0}")]
    Apply(StoreError),
    #[error(transparent)]
    Spool(#[from] crate::store::spool::SpoolError),
    #[error("the primary answered a subscription that does not decode")]
    BadAnswer,
    #[error("a batch from the primary does not encode again for the receipt spool")]
    Unspoolable,
    #[error("the primary is at epoch {theirs}, older than this node's {ours}: it was deposed")]
    OlderPrimary { theirs: u64, ours: u64 },
    #[error("this node is no longer a standby")]
    NotStandby,
    #[error("the primary refused this node's log (head {head}): it holds events the primary never had at or below position {head}; `ttx standby rejoin` makes it a standby again, keeping them for review")]
    Diverged { head: u64 },
    #[error("the primary closed the stream")]
    Closed,
}

/// The follower of a standby node (every node has one: it idles while the node is primary
/// and has nobody to knock at).
pub struct Follower {
    store: Store,
    federation: Arc<FederationSlot>,
    site: String,
    config_addr: Option<String>,
    status: Mutex<FollowStatus>,
    /// The primary's clock readings and what is not applied yet, for the lag in ms.
    lag: Mutex<super::standby_lag::StandbyLag>,
    /// `ttx switchover` on this standby: ask the primary over the stream.
    switchover: tokio::sync::Notify,
    /// This node's latency stamps (received, applied).
    timeline: Arc<super::timeline::Timeline>,
    /// `replication.receipt_spool`: ack `durable` once a batch is spooled, before it is
    /// applied.
    receipt_spool: bool,
}

/// What the reader hands the applier, in the stream's order.
enum Received {
    Batch(Vec<Envelope>, Millis),
    TakeOver { epoch: u64, head: u64 },
}

/// Why `ttx switchover` on a standby did not make it the primary.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The stream to the primary is down: the request cannot reach it.
    #[error("this standby is not connected to its primary ({0}): nothing changed; a switchover needs both nodes up")]
    NotConnected(String),
    /// The primary did not hand over in time.
    #[error("the primary did not hand over within {0} ms: see `ttx status` on both nodes")]
    Timeout(u64),
}

impl Follower {
    /// The follower of a node of `site`: it follows `config_addr` (`replication.primary`) or,
    /// without one, the first address of the site's own registry record (where the admin said
    /// the site's other node is), read each time it dials.
    pub fn new(
        store: Store,
        federation: Arc<FederationSlot>,
        site: &str,
        config_addr: Option<&str>,
        timeline: Arc<super::timeline::Timeline>,
        receipt_spool: bool,
    ) -> Arc<Self> {
        let applied = *store.writer.head.borrow() as u64;
        Arc::new(Follower {
            status: Mutex::new(FollowStatus {
                primary_addr: config_addr.unwrap_or_default().to_string(),
                applied,
                ..FollowStatus::default()
            }),
            lag: Mutex::default(),
            store,
            federation,
            site: site.to_string(),
            config_addr: config_addr.map(str::to_string),
            switchover: tokio::sync::Notify::new(),
            timeline,
            receipt_spool,
        })
    }

    /// The address of the site's other node: `replication.primary`, else the first address
    /// of this site's registry record. The role never comes from here (the store's role
    /// decides whether to follow it or knock at it).
    pub async fn target(&self) -> Option<String> {
        if let Some(a) = &self.config_addr {
            return Some(a.clone());
        }
        let site = self.site.clone();
        let addr = self
            .store
            .reader
            .read(move |c| {
                Ok(crate::store::query::peers(c)?
                    .into_iter()
                    .find(|r| r.site == site && r.standby)
                    .and_then(|r| r.addrs.into_iter().next()))
            })
            .await
            .ok()
            .flatten();
        if let Some(a) = &addr {
            self.lock().primary_addr = a.clone();
        }
        addr
    }

    /// `ttx switchover` run on this standby: asks the primary over the stream to hand over,
    /// then waits (at most `timeout`) until this node is the primary.
    pub async fn ask_switchover(&self, timeout: Duration) -> Result<u64, AskError> {
        let status = self.status();
        if !status.connected {
            let why = status
                .last_error
                .unwrap_or_else(|| "never connected".into());
            return Err(AskError::NotConnected(why));
        }
        let mut role = self.store.writer.role.clone();
        self.switchover.notify_one();
        let promoted = tokio::time::timeout(timeout, role.wait_for(|r| r.is_primary()))
            .await
            .map(|r| r.map(|r| r.epoch));
        match promoted {
            Ok(Ok(epoch)) => Ok(epoch),
            _ => Err(AskError::Timeout(timeout.as_millis() as u64)),
        }
    }

    /// Whether the node follows a primary now (a standby or fenced: its role says so).
    pub fn follows(&self) -> bool {
        self.store.writer.role.borrow().follows()
    }

    /// The state for `ttx status`.
    pub fn status(&self) -> FollowStatus {
        let mut s = self.lock().clone();
        s.applied = *self.store.writer.head.borrow() as u64;
        s.durable = s.durable.max(s.applied);
        s.lag_events = s.primary_head.saturating_sub(s.applied);
        s.lag_ms = self
            .lag_lock()
            .lag_ms(s.applied, s.primary_head, super::witness::mono_now());
        s
    }

    /// The address last resolved (for the log).
    fn addr(&self) -> String {
        self.lock().primary_addr.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FollowStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lag_lock(&self) -> std::sync::MutexGuard<'_, super::standby_lag::StandbyLag> {
        self.lag.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the primary while this node is a standby, until `shutdown`.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut role = self.store.writer.role.clone();
        let mut backoff = MIN_BACKOFF;
        let mut probe = PROBE_FIRST;
        loop {
            let now = role.borrow_and_update().clone();
            if now.is_primary() {
                self.empty_spool().await;
                // Promoted: knock at the old primary's address with the new epoch, so that if it
                // comes back its first subscription fences it (durably) before it takes writes.
                // Once it answered, it holds our epoch durably: no more knocks.
                let answered = tokio::select! {
                    a = self.fence_old_primary(now.epoch) => a,
                    _ = shutdown.wait_for(|s| *s) => return,
                };
                let wait = if answered {
                    None
                } else {
                    let wait = probe;
                    probe = (probe * 2).min(PROBE_MAX);
                    Some(wait)
                };
                tokio::select! {
                    _ = async {
                        match wait {
                            Some(w) => tokio::time::sleep(w).await,
                            None => std::future::pending().await,
                        }
                    } => {}
                    r = role.changed() => if r.is_err() { return } else { probe = PROBE_FIRST },
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                continue;
            }
            let mut subscribed = false;
            let end = tokio::select! {
                e = self.session(&mut subscribed) => e.err().unwrap_or(SessionEnd::Closed),
                _ = shutdown.wait_for(|s| *s) => return,
            };
            {
                let mut s = self.lock();
                s.connected = false;
                s.last_error = Some(end.to_string());
            }
            match &end {
                SessionEnd::NotStandby => continue,
                SessionEnd::Apply(_)
                | SessionEnd::OlderPrimary { .. }
                | SessionEnd::Diverged { .. } => {
                    tracing::error!(error = %end, primary = %self.addr(), "replication stream stopped")
                }
                _ => {
                    tracing::warn!(error = %end, primary = %self.addr(), "replication stream down")
                }
            }
            if subscribed {
                backoff = MIN_BACKOFF;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Empties the receipt spool once everything in it is applied (after a promotion, which
    /// applied it, and before a subscription); moves it aside when it still holds events past
    /// the head (the store refused them). A failure is only logged: it is tried again at the
    /// next stream and the next promotion.
    async fn empty_spool(&self) {
        let spool = self.store.spool.clone();
        let head = *self.store.writer.head.borrow() as u64;
        let emptied = blocking(move || {
            if spool.recycle(head, 0)? || spool.is_empty() {
                return Ok(None);
            }
            spool.set_aside().map(Some)
        })
        .await;
        match emptied {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(kept))) => {
                tracing::error!(kept = %kept.display(), "the receipt spool held events the store refused: moved aside; following starts from the store's head")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot empty the receipt spool"),
            Err(e) => tracing::warn!(error = %e, "cannot empty the receipt spool"),
        }
    }

    /// One knock at the old primary (this node was promoted): a subscription with our epoch,
    /// which a primary of an older epoch answers by fencing itself (`not_primary`). Whether it
    /// answered at all (then it holds our epoch durably and needs no further knock).
    async fn fence_old_primary(&self, epoch: u64) -> bool {
        let attempt = async {
            let fed = self.federation.get().ok_or(SessionEnd::NoFederation)?;
            let addr = self.resolve().await?;
            let peer = fed.connect_as_standby(addr).await?;
            let sub = Subscribe {
                epoch,
                ..self.subscription().await?
            };
            let body = codec::encode(&sub).expect("subscribe encodes");
            let answer = peer.open_stream::<ToPrimary, ToStandby>(body).await;
            peer.close(crate::wire::ErrorCode::Closed);
            answer.map(|_| ()).map_err(SessionEnd::from)
        };
        match attempt.await {
            Err(SessionEnd::Net(NetError::Remote(crate::wire::ErrorCode::NotPrimary))) => {
                let mut s = self.lock();
                if !s.old_primary_fenced {
                    s.old_primary_fenced = true;
                    tracing::warn!(old_primary = %s.primary_addr, epoch, "the old primary is back and holds an older epoch: it is fenced");
                }
                true
            }
            Err(SessionEnd::Net(NetError::Remote(code))) => {
                tracing::warn!(old_primary = %self.addr(), %code, "the old primary refused the knock");
                true
            }
            Ok(()) => {
                tracing::error!(old_primary = %self.addr(), "the old primary accepted a subscription of a newer epoch");
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "old primary not reachable");
                false
            }
        }
    }

    /// A subscription from this node's head: its epoch, head + 1, and the event at the head.
    async fn subscription(&self) -> Result<Subscribe, SessionEnd> {
        let (head, head_id, head_epoch) = self
            .store
            .reader
            .read(crate::store::ship::tip)
            .await
            .map_err(SessionEnd::Apply)?;
        Ok(Subscribe {
            epoch: self.store.writer.role.borrow().epoch,
            from: head + 1,
            head_id,
            head_epoch,
        })
    }

    async fn resolve(&self) -> Result<SocketAddr, SessionEnd> {
        let target = self.target().await.ok_or(SessionEnd::NoAddress)?;
        tokio::net::lookup_host(target.as_str())
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or(SessionEnd::Resolve(target))
    }

    /// One stream: dial, subscribe from our head, apply and ack until something fails; the
    /// connection is closed with it (the next session dials afresh, and a refused
    /// subscription retried every backoff must not leave a connection behind each time: the
    /// primary admits only a few per peer).
    async fn session(&self, subscribed: &mut bool) -> Result<(), SessionEnd> {
        let fed = self.federation.get().ok_or(SessionEnd::NoFederation)?;
        let addr = self.resolve().await?;
        let peer = fed.connect_as_standby(addr).await?;
        let ended = self.session_on(&peer, subscribed).await;
        peer.close(crate::wire::ErrorCode::Closed);
        ended
    }

    /// [`Self::session`] on the connection `peer`.
    async fn session_on(
        &self,
        peer: &crate::net::Peer,
        subscribed: &mut bool,
    ) -> Result<(), SessionEnd> {
        self.apply_spooled().await?;
        let sub = self.subscription().await?;
        let ours = sub.epoch;
        let body = codec::encode(&sub).expect("subscribe encodes");
        let (answer, stream) = match peer.open_stream::<ToPrimary, ToStandby>(body).await {
            Ok(opened) => opened,
            Err(NetError::Remote(crate::wire::ErrorCode::Diverged)) => {
                self.lock().diverged_at = Some(sub.from - 1);
                return Err(SessionEnd::Diverged { head: sub.from - 1 });
            }
            Err(e) => return Err(e.into()),
        };
        let answer: Subscribed = codec::decode(&answer).map_err(|_| SessionEnd::BadAnswer)?;
        if answer.epoch < ours {
            return Err(SessionEnd::OlderPrimary {
                theirs: answer.epoch,
                ours,
            });
        }
        *subscribed = true;
        self.lag_lock().subscribed(sub.from - 1);
        {
            let mut s = self.lock();
            s.connected = true;
            s.primary_node = Some(peer.ctx().identity.node.clone());
            s.primary_head = answer.head;
            s.last_heard_at = Some(clock::now());
            s.last_error = None;
            s.diverged_at = None;
        }
        tracing::info!(primary = %peer.ctx().identity, from = sub.from, primary_head = answer.head, "following the primary");
        let (send, recv) = stream.split();
        let send = tokio::sync::Mutex::new(send);
        let (to_spool, spool_rx) = mpsc::channel(APPLY_QUEUE);
        let (to_apply, apply_rx) = mpsc::channel(APPLY_QUEUE);
        let (durable_tx, durable) = watch::channel(sub.from - 1);
        let reack = tokio::sync::Notify::new();
        let to_spool = self.receipt_spool.then_some(to_spool);
        let spooling = async {
            match to_spool {
                Some(_) => self.spool(spool_rx, durable_tx).await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            e = self.read(recv, to_spool.clone(), to_apply, &reack, sub.from - 1) => e,
            e = spooling => e,
            e = self.apply(apply_rx, &send) => e,
            e = self.ack(&send, durable, &reack) => e,
        };
        result?;
        Err(SessionEnd::Closed)
    }

    /// Applies what the receipt spool holds past the head (acknowledged to a primary as
    /// durable by an earlier stream, not applied before it ended: [`WriteOp::ApplySpool`]),
    /// then empties the spool, so the subscription that follows starts after everything this
    /// node ever acknowledged. What the store refused (logged by the writer) is not lost for
    /// the site: the primary ships what this node lacks again; the spool is moved aside for
    /// an operator to look at.
    async fn apply_spooled(&self) -> Result<(), SessionEnd> {
        if !self.store.spool.path().exists() {
            return Ok(());
        }
        let req = WriteRequest {
            actor: "system".into(),
            idempotency: None,
            op: WriteOp::ApplySpool,
        };
        self.store
            .writer
            .write(req)
            .await
            .map_err(SessionEnd::Apply)?;
        self.empty_spool().await;
        Ok(())
    }

    /// Reads frames. A batch is checked for its place (of this site, at the next position:
    /// `after + 1` on; nothing is acknowledged that the applier refuses for its place),
    /// encoded as a spool record for the spooler and handed to the applier: the two run side
    /// by side. Heartbeats update the lag and ask for a re-ack.
    async fn read(
        &self,
        mut recv: FramedRecv<ToStandby>,
        to_spool: Option<mpsc::Sender<spool::Record>>,
        to_apply: mpsc::Sender<Received>,
        reack: &tokio::sync::Notify,
        mut after: u64,
    ) -> Result<(), SessionEnd> {
        while let Some(frame) = recv.recv().await? {
            let now = clock::now();
            let mono = super::witness::mono_now();
            let msg = match frame {
                ToStandby::Batch(b) => {
                    for env in &b.envelopes {
                        crate::store::ship::check_placement(&self.site, after, env)
                            .map_err(|e| SessionEnd::Apply(e.into()))?;
                        after = env.position;
                    }
                    let Some(last) = b.envelopes.last().map(|e| e.position) else {
                        continue;
                    };
                    {
                        let mut s = self.lock();
                        s.last_heard_at = Some(now);
                        s.primary_head = s.primary_head.max(last);
                        self.lag_lock().batch(last, b.committed_at, mono);
                    }
                    self.timeline.record(Stage::Received, last);
                    if let Some(to_spool) = &to_spool {
                        let record =
                            spool::Record::of(&b.envelopes).ok_or(SessionEnd::Unspoolable)?;
                        if to_spool.send(record).await.is_err() {
                            return Ok(());
                        }
                    }
                    Received::Batch(b.envelopes, b.committed_at)
                }
                ToStandby::Heartbeat { head, at, .. } => {
                    let mut s = self.lock();
                    s.last_heard_at = Some(now);
                    s.primary_head = s.primary_head.max(head);
                    self.lag_lock().heard(head, at, mono);
                    reack.notify_one();
                    continue;
                }
                ToStandby::TakeOver { epoch, head } => Received::TakeOver { epoch, head },
            };
            if to_apply.send(msg).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Makes every record waiting durable in the receipt spool and publishes the last
    /// position as `durable`, on a thread of its own (`ttx-spool`, one per stream: no hop
    /// through the runtime's blocking pool per append). Ends when the reader stops.
    async fn spool(
        &self,
        rx: mpsc::Receiver<spool::Record>,
        durable: watch::Sender<u64>,
    ) -> Result<(), SessionEnd> {
        let spool = self.store.spool.clone();
        let timeline = self.timeline.clone();
        let head = self.store.writer.head.clone();
        let (end_tx, end_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("ttx-spool".into())
            .spawn(move || {
                let _ = end_tx.send(spool_records(&spool, rx, &durable, &timeline, &head));
            })
            .map_err(|_| SessionEnd::Apply(StoreError::Closed))?;
        match end_rx.await {
            Ok(ended) => ended.map_err(SessionEnd::from),
            Err(_) => Err(SessionEnd::Apply(StoreError::Closed)),
        }
    }

    /// Applies batches (all that are waiting, in one transaction); the head it publishes is
    /// the `applied` the acker sends.
    async fn apply(
        &self,
        mut rx: mpsc::Receiver<Received>,
        send: &tokio::sync::Mutex<FramedSend<ToPrimary>>,
    ) -> Result<(), SessionEnd> {
        let mut role = self.store.writer.role.clone();
        loop {
            let first = tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => return Ok(()),
                },
                _ = role.changed() => {
                    if !role.borrow_and_update().follows() {
                        return Err(SessionEnd::NotStandby);
                    }
                    continue;
                }
            };
            let mut envelopes = Vec::new();
            let mut committed_at = None;
            let mut takeover = None;
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Received::Batch(mut e, at) => {
                        envelopes.append(&mut e);
                        committed_at = Some(at);
                    }
                    Received::TakeOver { epoch, head } => {
                        takeover = Some((epoch, head));
                        break;
                    }
                }
                next = rx.try_recv().ok();
            }
            if let Some(last) = envelopes.last().map(|e| e.position) {
                self.timeline.record(Stage::Applying, last);
                let req = WriteRequest {
                    actor: "system".into(),
                    idempotency: None,
                    op: WriteOp::Replicate(envelopes),
                };
                self.store
                    .writer
                    .write(req)
                    .await
                    .map_err(SessionEnd::Apply)?;
                self.timeline.record(Stage::Applied, last);
                self.lock().last_batch_committed_at = committed_at;
            }
            if let Some((epoch, head)) = takeover {
                return self.take_over(&mut *send.lock().await, epoch, head).await;
            }
        }
    }

    /// Acks `durable` (spooled or applied) and `applied` (the head) to the primary each time
    /// either moves (and again when a heartbeat asks), and carries `ttx switchover` requests.
    /// While the node does not follow (promoted by a switchover) it sends no ack: the applier
    /// ends the stream.
    async fn ack(
        &self,
        send: &tokio::sync::Mutex<FramedSend<ToPrimary>>,
        mut durable: watch::Receiver<u64>,
        reack: &tokio::sync::Notify,
    ) -> Result<(), SessionEnd> {
        let mut head = self.store.writer.head.clone();
        let mut sent = None;
        let mut again = true;
        // Without a spooler (or once its thread ended, with its error on the spool task),
        // `durable` never moves again: only the head does.
        let mut spooling = true;
        loop {
            let r = self.store.writer.role_now();
            let applied = *head.borrow_and_update() as u64;
            let now = (
                r.epoch,
                (*durable.borrow_and_update()).max(applied),
                applied,
            );
            if r.follows() && (again || sent != Some(now)) {
                let (epoch, durable, applied) = now;
                let ack = ToPrimary::Ack {
                    epoch,
                    durable,
                    applied,
                };
                send.lock().await.send(&ack).await?;
                sent = Some(now);
                self.lock().durable = durable;
            }
            again = false;
            tokio::select! {
                r = durable.changed(), if spooling => spooling = r.is_ok(),
                r = head.changed() => if r.is_err() { return Err(SessionEnd::Apply(StoreError::Closed)) },
                _ = reack.notified() => again = true,
                _ = self.switchover.notified() => {
                    let epoch = self.store.writer.role.borrow().epoch;
                    tracing::warn!(epoch, "asking the primary for a switchover");
                    send.lock().await.send(&ToPrimary::Switchover { epoch }).await?;
                }
            }
        }
    }

    /// A switchover: the primary (of `epoch`, log ending at `head`) hands over. With exactly
    /// that log here, promote (durably, `EpochStarted` at `head + 1`) and answer `Promoted`;
    /// otherwise refuse by closing the stream (the primary's switchover then times out).
    async fn take_over(
        &self,
        send: &mut FramedSend<ToPrimary>,
        epoch: u64,
        head: u64,
    ) -> Result<(), SessionEnd> {
        let ours = self.store.writer.role_now();
        let our_head = *self.store.writer.head.borrow() as u64;
        if ours.epoch != epoch || our_head != head {
            tracing::error!(
                epoch,
                head,
                our_epoch = ours.epoch,
                our_head,
                "switchover refused: this standby's log does not end where the primary's does"
            );
            return Err(SessionEnd::Closed);
        }
        let req = WriteRequest {
            actor: "system".into(),
            idempotency: None,
            op: WriteOp::Promote,
        };
        let out = self
            .store
            .writer
            .write(req)
            .await
            .map_err(SessionEnd::Apply)?;
        if let crate::store::WriteOutcome::Promoted { epoch, position } = out {
            tracing::warn!(
                epoch,
                position,
                "switchover: this node took over as the primary"
            );
            send.send(&ToPrimary::Promoted {
                epoch,
                position: position as u64,
            })
            .await?;
            send.finish();
            // The connection closes when the session ends: let the answer arrive first.
            let _ = tokio::time::timeout(Duration::from_secs(1), send.flushed()).await;
        }
        Err(SessionEnd::NotStandby)
    }
}

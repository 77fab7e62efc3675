//! The primary's side of replication at run time: the shipping backlog fed by the writer's
//! commit hook, the sync-commit gate the API's answers wait in, and what `ttx status` and the
//! exchange's outbox learn from them.
//!
//! The writer thread only hands over envelopes ([`CommitHook`]) and never waits: the API, once
//! the writer has answered, asks [`Primary::acknowledged`] and waits there (in the gate, in
//! position order) until the standby's ack covers the write, the mode says it need not, or
//! `block` gives up on it. The standby's streams ([`super::serve`]) read the backlog and feed
//! the acks back.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch, Notify};

use super::backlog::{Backlog, ByteSize, Plan};
use super::gate::{Ack, Gate, Lag, Mode, Outcome, WhenGone};
use super::timeline::{Stage, Timeline};
use crate::config::ReplicationSection;
use crate::model::clock::{self, Millis};
use crate::store::writer::CommitHook;
use crate::wire::envelope::Envelope;

/// Why an answer did not leave the gate as a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// `block` mode ran out of time: committed here, not yet on the standby.
    #[error("committed here, not yet on the standby: retry with the same Idempotency-Key")]
    NotOnStandby,
    /// The node is stopping.
    #[error("the node is shutting down")]
    Closed,
    /// A witness is configured and this primary does not hold its lease (the witness is
    /// unreachable, or has not granted a renewal yet): no write is taken or acknowledged.
    #[error("lost the witness's lease: not taking writes until it is renewed")]
    NoLease,
}

/// A committed envelope kept in memory, with the primary's commit time of its batch.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The envelope.
    pub envelope: Envelope,
    /// When its batch committed (the primary's clock, unix ms).
    pub committed_at: Millis,
}

impl ByteSize for Kept {
    fn bytes(&self) -> usize {
        self.envelope.bytes()
    }
}

/// What the standby's stream ships next.
#[derive(Debug)]
pub enum Next {
    /// Nothing new: wait for a commit (or send a heartbeat).
    UpToDate,
    /// Envelopes from memory, and the commit time of the last one.
    Batch(Vec<Envelope>, Millis),
    /// Read the log for `from..=to` first.
    Log {
        /// First position.
        from: u64,
        /// Last position.
        to: u64,
    },
}

/// The standby as the primary sees it, for `ttx status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StandbyView {
    /// The standby's node name.
    pub node: String,
    /// Its address.
    pub addr: String,
    /// Since when its stream is up (unix ms).
    pub since: Millis,
}

/// The primary's replication state, for `ttx status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrimaryStatus {
    /// When answers leave: `async`, `sync` or `sync-visible`.
    pub mode: Mode,
    /// What sync modes do while the standby is gone.
    pub when_standby_gone: WhenGone,
    /// The standby whose stream is up, if one is.
    pub standby: Option<StandbyView>,
    /// How far the standby has the log durably and applied (its last ack).
    pub acked_durable: u64,
    /// Applied there.
    pub acked_applied: u64,
    /// When the last ack arrived (unix ms, this node's clock).
    pub last_ack_at: Option<Millis>,
    /// How far behind the standby is, in events and in this node's milliseconds since it
    /// committed the oldest event the standby has not applied.
    pub lag: Lag,
    /// Since when sync mode runs as async because the standby is gone (unix ms), if it does.
    pub degraded_since: Option<Millis>,
    /// Answers waiting for the standby now.
    pub waiting: usize,
}

struct State {
    backlog: Backlog<Kept>,
    gate: Gate<oneshot::Sender<bool>>,
    streams: usize,
    standby: Option<StandbyView>,
    last_ack_at: Option<Millis>,
    degraded: bool,
}

/// The primary's shipping and gating state. One per node (a standby holds one too, idle until
/// it is promoted). Cheap to share behind an `Arc`.
pub struct Primary {
    state: Mutex<State>,
    head: watch::Sender<u64>,
    shippable: watch::Sender<i64>,
    deadlines: Notify,
    mode: Mode,
    when_gone: WhenGone,
    block_timeout_ms: u64,
    /// A switchover's request to the standby: take over at (epoch, head).
    takeover: watch::Sender<Option<(u64, u64)>>,
    /// The lowest of the standby's last durable and applied positions.
    caught_up: watch::Sender<u64>,
    /// The standby asked for a switchover (`ttx switchover` run there).
    switchover_asked: Notify,
    /// The witness's lease (required only when the node names a witness).
    lease: super::witness::LeaseGate,
    /// This node's latency stamps (the follower records its stages here too).
    timeline: Arc<Timeline>,
}

impl Primary {
    /// A hub in `mode` for a log whose head is `head`.
    pub fn new(cfg: &ReplicationSection, mode: Mode, head: u64) -> Arc<Primary> {
        let mut gate = Gate::new(
            mode,
            cfg.when_standby_gone,
            cfg.block_timeout_ms as Millis,
            Ack::default(),
        );
        gate.advanced(head, clock::now());
        let primary = Arc::new(Primary {
            state: Mutex::new(State {
                backlog: Backlog::new(head, cfg.backlog_bytes),
                gate,
                streams: 0,
                standby: None,
                last_ack_at: None,
                degraded: false,
            }),
            head: watch::channel(head).0,
            shippable: watch::channel(head as i64).0,
            deadlines: Notify::new(),
            mode,
            when_gone: cfg.when_standby_gone,
            block_timeout_ms: cfg.block_timeout_ms,
            takeover: watch::channel(None).0,
            caught_up: watch::channel(0).0,
            switchover_asked: Notify::new(),
            lease: super::witness::LeaseGate::default(),
            timeline: Arc::default(),
        });
        primary.update(&mut primary.lock(), Vec::new());
        primary
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configured mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// This node's replication latency stamps (`GET /v1/replication/timeline`).
    pub fn timeline(&self) -> &Arc<Timeline> {
        &self.timeline
    }

    /// The witness's lease as this node holds it.
    pub fn lease(&self) -> &super::witness::LeaseGate {
        &self.lease
    }

    /// Whether the witness must be told this primary is degraded: it may acknowledge writes
    /// the standby lacks (async mode, or sync degraded to async).
    pub fn witness_should_know_degraded(&self) -> bool {
        self.mode == Mode::Async || self.lock().degraded
    }

    /// The last position published by the writer.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Follows the published head (the standby's streams wait on it).
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// The position up to which the site's log may be acted on outside the site (the exchange's
    /// outbox sends only what the standby has durably): the standby's durable position while it
    /// is connected, or in `block` sync mode; the local head otherwise (no standby, async
    /// without one, or degraded).
    pub fn shippable(&self) -> watch::Receiver<i64> {
        self.shippable.subscribe()
    }

    /// What to ship for a standby that wants `want` next: at most `max_bytes` of envelopes
    /// from memory (at least one), or where to read the log.
    pub fn next(&self, want: u64, max_bytes: usize) -> Next {
        let s = self.lock();
        match s.backlog.plan(want) {
            Plan::UpToDate => Next::UpToDate,
            Plan::Log { from, to } => Next::Log { from, to },
            Plan::Memory { from } => {
                let (mut out, mut bytes, mut at) = (Vec::new(), 0, 0);
                for (_, kept) in s.backlog.from(from) {
                    if !out.is_empty() && bytes + kept.bytes() > max_bytes {
                        break;
                    }
                    bytes += kept.bytes();
                    at = kept.committed_at;
                    out.push(kept.envelope.clone());
                }
                Next::Batch(out, at)
            }
        }
    }

    /// A standby's stream came up.
    pub fn stream_up(&self, node: &str, addr: &str) {
        let mut s = self.lock();
        s.streams += 1;
        let now = clock::now();
        s.standby = Some(StandbyView {
            node: node.to_string(),
            addr: addr.to_string(),
            since: now,
        });
        let out = s.gate.connected(true, now);
        tracing::info!(standby = %node, %addr, "standby stream up");
        self.update(&mut s, out);
    }

    /// A standby's stream ended.
    pub fn stream_down(&self, node: &str) {
        let mut s = self.lock();
        s.streams = s.streams.saturating_sub(1);
        let mut out = Vec::new();
        if s.streams == 0 {
            s.standby = None;
            out = s.gate.connected(false, clock::now());
            tracing::warn!(standby = %node, "standby stream down: no standby connected");
        }
        self.update(&mut s, out);
    }

    /// The standby acknowledged positions.
    pub fn acked(&self, ack: Ack) {
        let mut s = self.lock();
        s.last_ack_at = Some(clock::now());
        let out = s.gate.acked_to(ack);
        self.update(&mut s, out);
        self.caught_up.send_replace(ack.durable.min(ack.applied));
    }

    /// Follows how far the standby has the log both durably and applied (its last ack).
    pub fn watch_caught_up(&self) -> watch::Receiver<u64> {
        self.caught_up.subscribe()
    }

    /// A switchover asks the standby's stream to send `TakeOver { epoch, head }`; `None`
    /// withdraws the request.
    pub fn request_takeover(&self, at: Option<(u64, u64)>) {
        self.takeover.send_replace(at);
    }

    /// Follows the switchover's request (the standby's stream sends it when set).
    pub fn watch_takeover(&self) -> watch::Receiver<Option<(u64, u64)>> {
        self.takeover.subscribe()
    }

    /// The standby asked for a switchover over its stream.
    pub fn ask_switchover(&self) {
        self.switchover_asked.notify_one();
    }

    /// Waits until the standby asks for a switchover.
    pub async fn switchover_asked(&self) {
        self.switchover_asked.notified().await
    }

    /// Waits until the write whose answer covers position `pos` may be acknowledged to the
    /// operator (at once in async mode or when the standby already has it).
    pub async fn acknowledged(&self, pos: u64) -> Result<(), GateError> {
        if self.mode == Mode::Async {
            return self.lease.check();
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.lock();
            let out = s.gate.committed(pos, tx, clock::now());
            self.update(&mut s, out);
        }
        self.deadlines.notify_one();
        match rx.await {
            Ok(true) => {
                // Released without the standby (degraded): only once the witness knows it, so
                // that it never promotes a standby lacking this write.
                if self.lease.required() && self.lock().degraded {
                    let wait = Duration::from_millis(self.block_timeout_ms.max(1_000));
                    self.lease.witness_knows_degraded(wait).await?;
                }
                self.lease.check()
            }
            Ok(false) => Err(GateError::NotOnStandby),
            Err(_) => Err(GateError::Closed),
        }
    }

    /// Times out waiting answers at their deadlines (`block` fails them, `degrade` releases
    /// them and degrades). Runs until `shutdown`.
    pub async fn run_deadlines(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let next = self.lock().gate.next_deadline();
            let wait = next
                .map(|d| (d - clock::now()).clamp(0, 60_000))
                .unwrap_or(60_000);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = self.deadlines.notified() => continue,
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let mut s = self.lock();
            let out = s.gate.tick(clock::now());
            self.update(&mut s, out);
        }
    }

    /// The state for `ttx status`.
    pub fn status(&self) -> PrimaryStatus {
        let s = self.lock();
        let acked = s.gate.acked();
        PrimaryStatus {
            mode: self.mode,
            when_standby_gone: self.when_gone,
            standby: s.standby.clone(),
            acked_durable: acked.durable,
            acked_applied: acked.applied,
            last_ack_at: s.last_ack_at,
            lag: s.gate.lag(clock::now()),
            degraded_since: s.gate.degraded_since(),
            waiting: s.gate.waiting(),
        }
    }

    /// After any change: deliver what the gate released, log degrading and recovering, and
    /// move the shippable position.
    fn update(&self, s: &mut State, out: Vec<Outcome<oneshot::Sender<bool>>>) {
        for o in out {
            let _ = match o {
                Outcome::Released(tx) => tx.send(true),
                Outcome::NotOnStandby(tx) => tx.send(false),
            };
        }
        let degraded = s.gate.degraded_since().is_some();
        if degraded != s.degraded {
            s.degraded = degraded;
            if degraded {
                tracing::warn!(
                    "sync replication DEGRADED to async: the standby is gone or not keeping up; \
                     writes are acknowledged without it (never auto-promote from this state)"
                );
            } else {
                tracing::info!("sync replication restored: the standby has caught up");
            }
        }
        let head = s.gate.head();
        let holds =
            s.streams > 0 || (self.mode != Mode::Async && self.when_gone == WhenGone::Block);
        let shippable = if holds && !degraded {
            s.gate.acked().durable.min(head)
        } else {
            head
        };
        self.shippable.send_if_modified(|v| {
            let changed = *v != shippable as i64;
            *v = shippable as i64;
            changed
        });
    }
}

impl CommitHook for Primary {
    /// Only while the witness's lease is held, when the node names a witness.
    fn may_take_writes(&self) -> bool {
        self.lease.check().is_ok()
    }

    fn committed(&self, envelopes: Vec<Envelope>, committed_at: Millis) {
        let Some(last) = envelopes.last().map(|e| e.position) else {
            return;
        };
        {
            let mut s = self.lock();
            for envelope in envelopes {
                let pos = envelope.position;
                s.backlog.push(
                    pos,
                    Kept {
                        envelope,
                        committed_at,
                    },
                );
            }
            s.gate.advanced(last, committed_at);
            self.update(&mut s, Vec::new());
        }
        self.timeline.record(Stage::Committed, last);
        self.head.send_replace(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(position: u64) -> Envelope {
        crate::wire::envelope::sample(position, 100)
    }

    fn cfg(when: WhenGone) -> ReplicationSection {
        ReplicationSection {
            when_standby_gone: when,
            block_timeout_ms: 50,
            ..ReplicationSection::default()
        }
    }

    #[tokio::test]
    async fn sync_answers_wait_for_the_standby_and_memory_ships_in_order() {
        let p = Primary::new(&cfg(WhenGone::Block), Mode::Sync, 2);
        p.stream_up("standby", "127.0.0.1:1");
        p.committed(vec![env(3), env(4)], 10);
        assert_eq!(p.head(), 4);
        assert!(matches!(p.next(5, 1 << 20), Next::UpToDate));
        assert!(matches!(p.next(1, 1 << 20), Next::Log { from: 1, to: 2 }));
        match p.next(3, 1) {
            Next::Batch(envs, at) => {
                assert_eq!((envs.len(), envs[0].position, at), (1, 3, 10));
            }
            other => panic!("{other:?}"),
        }
        let waiting = {
            let p = p.clone();
            tokio::spawn(async move { p.acknowledged(4).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(*p.shippable().borrow(), 0);
        p.acked(Ack {
            durable: 3,
            applied: 3,
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        p.acked(Ack {
            durable: 4,
            applied: 4,
        });
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert_eq!(*p.shippable().borrow(), 4);
    }

    #[tokio::test]
    async fn block_fails_after_the_timeout_and_degrade_goes_on() {
        let (_stop, shutdown) = watch::channel(false);
        let p = Primary::new(&cfg(WhenGone::Block), Mode::Sync, 0);
        tokio::spawn(p.clone().run_deadlines(shutdown.clone()));
        p.committed(vec![env(1)], 1);
        assert_eq!(p.acknowledged(1).await, Err(GateError::NotOnStandby));

        let d = Primary::new(&cfg(WhenGone::Degrade), Mode::Sync, 0);
        d.committed(vec![env(1)], 1);
        assert_eq!(d.acknowledged(1).await, Ok(()));
        assert!(d.status().degraded_since.is_some());
        assert_eq!(*d.shippable().borrow(), 1);
    }
}

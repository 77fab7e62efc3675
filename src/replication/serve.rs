//! The primary serves `ttx-repl/1`: one long-lived stream per standby, envelopes out (from
//! memory after each commit, from the log to catch up), acks in.
//!
//! Only a node of this site that declared the `Standby` role at Hello and holds the standby
//! permission in the registry gets here (the endpoint checks both); the handler checks the
//! site and role again, then that this node is the primary and that the subscriber's log is a
//! prefix of ours (it wants no position past our head and holds the same event as we do at its
//! head). Refusals carry stable codes: `not_authorized` (not this site's standby),
//! `not_primary` (this node is a standby or fenced), `diverged` (the subscriber wants
//! positions past our head, holds another event at its head, or acknowledges positions we
//! never had), `malformed`.

use std::sync::Arc;
use std::time::Duration;

use super::gate::Ack;
use super::primary::{Next, Primary};
use super::send_snapshot::SnapshotSender;
use crate::model::clock;
use crate::net::{BoxFuture, FramedRecv, FramedSend, Handler, IncomingStream, NetError, PeerCtx};
use crate::store::{ship, Store, StoreError, WriteOp, WriteRequest};
use crate::wire::codec;
use crate::wire::repl::{
    decode_open, Batch, OpenRequest, Subscribe, Subscribed, ToPrimary, ToStandby,
};
use crate::wire::{ErrorCode, Role, StreamOpen};

/// Most envelopes read from the log per catch-up batch.
const LOG_BATCH: u64 = 512;
/// Soft limit of a batch's bytes (a single larger envelope still goes alone).
const BATCH_BYTES: usize = crate::wire::repl::BATCH_BYTES;

/// Why a standby's stream ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamEnd {
    /// The transport failed or the standby sent something undecodable.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This node is no longer the primary.
    #[error("this node is no longer the primary")]
    NotPrimary,
    /// The standby acknowledged positions this node never had.
    #[error("the standby acknowledged position {acked} past this node's head {head}")]
    Diverged {
        /// Acknowledged.
        acked: u64,
        /// Our head.
        head: u64,
    },
    /// The log lacks a position it should hold.
    #[error("the log has no position {0}")]
    Missing(u64),
}

/// Fences this node at `epoch` (held by `by`), durably: the one write every path that sees a
/// higher epoch makes (a subscriber, an ack, the witness's `fenced`).
pub(crate) async fn record_fence(store: &Store, epoch: u64, by: &str) {
    let req = WriteRequest {
        actor: "system".into(),
        idempotency: None,
        op: WriteOp::Fence {
            epoch,
            by: by.to_string(),
        },
    };
    if let Err(e) = store.writer.write(req).await {
        tracing::error!(error = %e, epoch, by, "cannot record the fence");
    }
}

/// The `ttx-repl/1` handler of a node.
pub struct ReplV1 {
    site: String,
    store: Store,
    primary: Arc<Primary>,
    heartbeat: Duration,
    snapshots: SnapshotSender,
}

impl ReplV1 {
    /// The handler for a node of `site` with its store and hub; heartbeats every `heartbeat` when idle.
    pub fn new(site: &str, store: Store, primary: Arc<Primary>, heartbeat: Duration) -> Self {
        ReplV1 {
            site: site.to_string(),
            snapshots: SnapshotSender::new(site, store.clone()),
            store,
            primary,
            heartbeat,
        }
    }

    fn epoch(&self) -> u64 {
        self.store.writer.role.borrow().epoch
    }

    /// A higher epoch seen from `by`: fence this node, durably, before anything else.
    async fn fence(&self, epoch: u64, by: &str) {
        record_fence(&self.store, epoch, by).await
    }

    /// What to answer a subscription, before accepting it.
    async fn admit(&self, peer: &PeerCtx, open: &StreamOpen) -> Result<Subscribe, ErrorCode> {
        let own = self.store.writer.role_now();
        if peer.role != Role::Standby || peer.identity.site != self.site {
            return Err(ErrorCode::NotAuthorized);
        }
        let sub: Subscribe = codec::decode(&open.body).map_err(|_| ErrorCode::Malformed)?;
        if sub.epoch > own.epoch {
            tracing::error!(
                standby_epoch = sub.epoch,
                epoch = own.epoch,
                "a subscriber holds a higher epoch: fencing this node"
            );
            self.fence(sub.epoch, &peer.identity.node).await;
            return Err(ErrorCode::NotPrimary);
        }
        if !own.ships() {
            return Err(ErrorCode::NotPrimary);
        }
        let head = *self.store.writer.head.borrow() as u64;
        if sub.from == 0 || sub.from > head + 1 {
            tracing::error!(
                from = sub.from,
                head,
                "a subscriber wants positions past the head: its log is not ours (it has events this primary never had)"
            );
            return Err(ErrorCode::Diverged);
        }
        let at = sub.from - 1;
        let ours = match at {
            0 => Some(([0; 16], 0)),
            _ => self
                .store
                .reader
                .read(move |c| ship::event_at(c, at))
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot read the log to check a subscriber");
                    ErrorCode::Internal
                })?,
        };
        if ours != Some((sub.head_id, sub.head_epoch)) {
            tracing::error!(
                position = at,
                theirs = %uuid::Uuid::from_bytes(sub.head_id),
                their_epoch = sub.head_epoch,
                ours = ?ours.map(|(id, e)| (uuid::Uuid::from_bytes(id), e)),
                "a subscriber's event at its head differs from ours: its log diverged at or below this position"
            );
            return Err(ErrorCode::Diverged);
        }
        Ok(sub)
    }

    async fn serve(&self, peer: &PeerCtx, open: StreamOpen, incoming: IncomingStream) {
        let sub = match self.admit(peer, &open).await {
            Ok(sub) => sub,
            Err(code) => {
                tracing::warn!(peer = %peer.identity, %code, "replication subscription refused");
                incoming.refuse(code).await;
                return;
            }
        };
        let answer = Subscribed {
            epoch: self.epoch(),
            head: self.primary.head(),
        };
        let body = codec::encode(&answer).expect("subscribed encodes");
        let stream = match incoming.accept::<ToStandby, ToPrimary>(body).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept the replication stream");
                return;
            }
        };
        let (mut send, recv) = stream.split();
        let node = peer.identity.node.clone();
        self.primary.stream_up(&node, &peer.remote.to_string());
        tracing::info!(from = sub.from, "shipping to the standby");
        let end = tokio::select! {
            e = self.ship(&mut send, sub.from) => e,
            e = self.acks(recv, &node) => e,
        };
        self.primary.stream_down(&node);
        match end {
            Ok(()) => tracing::info!("the standby closed its stream"),
            Err(e) => {
                let code = match &e {
                    StreamEnd::NotPrimary => ErrorCode::NotPrimary,
                    StreamEnd::Diverged { .. } => ErrorCode::Diverged,
                    StreamEnd::Net(NetError::Wire(w)) => w.code(),
                    _ => ErrorCode::Internal,
                };
                tracing::warn!(error = %e, %code, "replication stream ended");
                send.reset(code);
            }
        }
    }

    /// Sends batches and heartbeats until the stream fails or this node stops being primary.
    async fn ship(&self, send: &mut FramedSend<ToStandby>, mut next: u64) -> Result<(), StreamEnd> {
        let mut head = self.primary.watch_head();
        let mut role = self.store.writer.role.clone();
        let mut takeover = self.primary.watch_takeover();
        let mut told = None;
        loop {
            let epoch = {
                let r = role.borrow_and_update();
                if !r.ships() {
                    return Err(StreamEnd::NotPrimary);
                }
                r.epoch
            };
            head.borrow_and_update();
            let (envelopes, committed_at) = match self.primary.next(next, BATCH_BYTES) {
                Next::UpToDate => {
                    // A switchover: everything up to its head is shipped; tell the standby once.
                    let asked = *takeover.borrow_and_update();
                    if let Some((epoch, head)) = asked.filter(|&(_, h)| next > h && told != asked) {
                        tracing::warn!(epoch, head, "switchover: telling the standby to take over");
                        send.send(&ToStandby::TakeOver { epoch, head }).await?;
                        told = asked;
                    }
                    tokio::select! {
                        _ = head.changed() => {}
                        _ = role.changed() => {}
                        _ = takeover.changed() => {}
                        _ = tokio::time::sleep(self.heartbeat) => {
                            let beat = ToStandby::Heartbeat {
                                epoch,
                                head: self.primary.head(),
                                at: clock::now(),
                            };
                            send.send(&beat).await?;
                        }
                    }
                    continue;
                }
                Next::Batch(envelopes, at) => (envelopes, at),
                Next::Log { from, to } => (self.read_log(from, to).await?, clock::now()),
            };
            let Some(last) = envelopes.last().map(|e| e.position) else {
                continue;
            };
            let batch = ToStandby::Batch(Batch {
                epoch,
                committed_at,
                envelopes,
            });
            send.send(&batch).await?;
            self.primary
                .timeline()
                .record(super::timeline::Stage::Shipped, last);
            next = last + 1;
        }
    }

    /// Positions `from..=to` (at most a batch of them) from the log.
    async fn read_log(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<crate::wire::envelope::Envelope>, StreamEnd> {
        let limit = (to - from + 1).min(LOG_BATCH) as u32;
        let mut envelopes = self
            .store
            .reader
            .read(move |c| ship::envelopes_after(c, from as i64 - 1, limit))
            .await?;
        if envelopes.first().map(|e| e.position) != Some(from) {
            return Err(StreamEnd::Missing(from));
        }
        super::backlog::keep_within(&mut envelopes, BATCH_BYTES);
        Ok(envelopes)
    }

    /// Reads acks until the standby finishes its half or the stream fails.
    async fn acks(&self, mut recv: FramedRecv<ToPrimary>, node: &str) -> Result<(), StreamEnd> {
        while let Some(frame) = recv.recv().await? {
            let (epoch, durable, applied) = match frame {
                ToPrimary::Ack {
                    epoch,
                    durable,
                    applied,
                } => (epoch, durable, applied),
                ToPrimary::Promoted { epoch, position } => {
                    // The answer to TakeOver: the standby is the primary of `epoch` now. This
                    // node (handing over to it) becomes its standby, durably.
                    tracing::warn!(
                        epoch,
                        position,
                        new_primary = node,
                        "switchover: the standby took over"
                    );
                    self.fence(epoch, node).await;
                    return Err(StreamEnd::NotPrimary);
                }
                ToPrimary::Switchover { epoch } => {
                    tracing::warn!(epoch, standby = node, "the standby asks for a switchover");
                    self.primary.ask_switchover();
                    continue;
                }
            };
            if epoch > self.epoch() {
                tracing::error!(epoch, standby = node, "the standby holds a higher epoch");
                self.fence(epoch, node).await;
                return Err(StreamEnd::NotPrimary);
            }
            let head = self
                .primary
                .head()
                .max(*self.store.writer.head.borrow() as u64);
            if durable.max(applied) > head {
                return Err(StreamEnd::Diverged {
                    acked: durable.max(applied),
                    head,
                });
            }
            self.primary.acked(Ack { durable, applied });
        }
        Ok(())
    }
}

impl Handler for ReplV1 {
    /// One-shot requests: comparing two nodes of the site (`ttx verify --against`).
    fn handle<'a>(
        &'a self,
        peer: &'a PeerCtx,
        request: crate::wire::Request,
    ) -> BoxFuture<'a, Result<Vec<u8>, ErrorCode>> {
        let span = tracing::info_span!("compare", peer = %peer.identity, remote = %peer.remote);
        Box::pin(tracing::Instrument::instrument(
            async move { super::compare::answer(&self.store, &self.site, peer, &request.body).await },
            span,
        ))
    }

    fn stream<'a>(
        &'a self,
        peer: &'a PeerCtx,
        open: StreamOpen,
        incoming: IncomingStream,
    ) -> BoxFuture<'a, ()> {
        if let Ok(OpenRequest::Snapshot(req)) = decode_open(&open.body) {
            let span =
                tracing::info_span!("snapshot", standby = %peer.identity, remote = %peer.remote);
            return Box::pin(tracing::Instrument::instrument(
                async move { self.snapshots.serve(peer, req, incoming).await },
                span,
            ));
        }
        let span = tracing::info_span!("repl", standby = %peer.identity, remote = %peer.remote);
        Box::pin(tracing::Instrument::instrument(
            self.serve(peer, open, incoming),
            span,
        ))
    }
}

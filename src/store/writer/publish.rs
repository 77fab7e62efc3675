//! What the writer hands on after a commit for shipping: the envelopes of the events the batch
//! wrote here, in position order, to whoever installed a [`CommitHook`] (the replication
//! primary's backlog). Kept apart from the commit itself so the hot path stays one call.

use std::sync::{Arc, OnceLock};

use crate::model::event::Event;
use crate::store::ship::envelope_of;
use crate::wire::envelope::Envelope;

/// Receives, on the writer thread and right after each commit, the envelopes of the events the
/// batch wrote on this node (not events applied from a replication stream). Must not block:
/// it runs before the batch's requesters get their answers.
pub trait CommitHook: Send + Sync + 'static {
    /// A committed batch's envelopes, positions consecutive; `committed_at` is the primary's
    /// clock (unix ms) right after the commit.
    fn committed(&self, envelopes: Vec<Envelope>, committed_at: i64);

    /// Whether this primary may take writes now. A primary that names a witness answers
    /// `false` while it does not hold the witness's lease; the writer then refuses every
    /// write a primary decides (operators' writes, timers, partners' messages, reviews), so
    /// no path around the API can write without the lease. Checked once per batch.
    fn may_take_writes(&self) -> bool {
        true
    }
}

/// The hook slot shared by the [`Writer`](super::Writer) handle and its thread: empty until a
/// hook is installed, and then fixed for the writer's life.
pub(super) type HookSlot = Arc<OnceLock<Arc<dyn CommitHook>>>;

/// Envelopes collected while a request runs (only when a hook is installed: building them
/// costs a copy of each body).
#[derive(Default)]
pub(super) struct Shipped {
    collect: bool,
    pub(super) envelopes: Vec<Envelope>,
}

impl Shipped {
    /// Collecting when `collect`.
    pub(super) fn new(collect: bool) -> Self {
        Shipped {
            collect,
            envelopes: Vec::new(),
        }
    }

    /// The event just written at `position` with its stored `body`.
    pub(super) fn push(&mut self, position: i64, event: &Event, body: &str) {
        if self.collect {
            self.envelopes.push(envelope_of(position, event, body));
        }
    }
}

/// Hands a committed batch's envelopes to the hook, if one is installed and there are any.
pub(super) fn publish(slot: &HookSlot, envelopes: Vec<Envelope>) {
    if envelopes.is_empty() {
        return;
    }
    if let Some(hook) = slot.get() {
        hook.committed(envelopes, crate::model::clock::now());
    }
}

//! The writer's byte budgets: what a queued request costs, and the budget it waits on.
//!
//! The queue in front of the writer is bounded by count (`store.write_queue`) and by bytes
//! (`store.write_queue_bytes`): a request reserves its cost before it is queued and gives it
//! back when it has been answered, so queued and in-flight requests never hold more than the
//! budget, however large each is. A batch is bounded the same way (`store.group_commit_max`
//! requests, `store.group_commit_max_bytes`).

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{WriteOp, WriteRequest};
use crate::model::command::Command;
use crate::store::StoreError;

/// What every request costs besides its texts: the request, its answer channel, the answer.
const REQUEST_OVERHEAD_BYTES: usize = 512;

/// About how many bytes `req` holds while it waits and runs: its texts (a note's text is
/// counted as is, a shipped envelope by its body and names; other commands by their JSON size) plus a fixed
/// overhead. What the queue's and the batch's byte budgets count.
pub fn request_bytes(req: &WriteRequest) -> usize {
    let key = req
        .idempotency
        .as_ref()
        .map_or(0, |i| i.key.len() + i.fingerprint.len());
    let payload = match &req.op {
        WriteOp::Ticket {
            command: Command::Note { text, .. },
            ..
        } => text.len(),
        WriteOp::Ticket { command, .. } => json_len(command),
        WriteOp::Create(create) => json_len(create),
        WriteOp::Replicate(envelopes) => envelopes_bytes(envelopes),
        WriteOp::QueueReview { node, envelopes } => node.len() + envelopes_bytes(envelopes),
        WriteOp::DecideReview { decision, .. } => json_len(decision),
        WriteOp::AddOperator {
            name, token_sha256, ..
        } => name.len() + token_sha256.len(),
        WriteOp::SetPassword {
            name,
            password_hash,
        } => name.len() + password_hash.len(),
        WriteOp::Timer { which, .. } => which.len(),
        WriteOp::WatchQueues { name, queues } => name.len() + queues.len(),
        WriteOp::Refer(r) => json_len(r),
        WriteOp::Referral { id, action } => id.len() + action.text().len(),
        WriteOp::Inbound { peer, messages, .. } => {
            peer.len() + messages.iter().map(|m| m.bytes).sum::<usize>()
        }
        WriteOp::ExchangeAcked { peer, .. } | WriteOp::ExchangeMarkLearned { peer, .. } => {
            peer.len()
        }
        WriteOp::PeerSharing { site, change } => site.len() + json_len(change),
        // Each chunk is held as bytes and as base64 in its event's body.
        WriteOp::Attach { name, data, .. } => name.len() + data.len() / 3 * 7,
        WriteOp::Link { .. }
        | WriteOp::RemoveOperator { .. }
        | WriteOp::Peer(_)
        | WriteOp::FireDueTimers
        | WriteOp::Promote
        | WriteOp::ApplySpool
        | WriteOp::Fence { .. }
        | WriteOp::ResumePrimary
        | WriteOp::Verify => 0,
        WriteOp::HandOver { to } => to.len(),
    };
    REQUEST_OVERHEAD_BYTES + req.actor.len() + key + payload
}

/// What envelopes weigh: an envelope's body is the event's JSON as stored; its fixed fields are
/// 64 bytes.
fn envelopes_bytes(envelopes: &[crate::wire::envelope::Envelope]) -> usize {
    envelopes
        .iter()
        .map(|e| {
            64 + e.body.len()
                + e.origin_site.len()
                + e.origin_node.len()
                + e.actor.len()
                + e.kind.len()
        })
        .sum()
}

/// The length of `v` as JSON, counted without building it.
fn json_len(v: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing model types into a counter cannot fail; a failure would only undercount.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// The queue's byte budget: requests reserve their cost before they are queued.
#[derive(Clone)]
pub(super) struct ByteBudget {
    permits: Arc<Semaphore>,
    total: u32,
}

/// Bytes reserved by one queued request; given back when it is dropped (after the answer).
pub(super) struct Reserved {
    pub(super) bytes: usize,
    _permit: OwnedSemaphorePermit,
}

impl ByteBudget {
    /// A budget of `total` bytes (config validation keeps it within `u32`).
    pub(super) fn new(total: usize) -> Self {
        let total = u32::try_from(total).unwrap_or(u32::MAX);
        Self {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until `bytes` fit, then holds them. A request larger than the whole budget holds
    /// all of it (it then runs alone), so it waits but is never refused here.
    pub(super) async fn reserve(&self, bytes: usize) -> Result<Reserved, StoreError> {
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.total);
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Reserved {
            bytes,
            _permit: permit,
        })
    }

    /// Bytes not reserved right now.
    #[cfg(test)]
    pub(super) fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// [`Self::reserve`], blocking the calling thread (tools and benchmarks, not the runtime).
    pub(super) fn reserve_blocking(&self, bytes: usize) -> Result<Reserved, StoreError> {
        block_on(self.reserve(bytes))
    }
}

/// Runs a future to completion on the calling thread, parking between polls.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_bytes_are_held_until_dropped() {
        let budget = ByteBudget::new(1000);
        let a = budget.reserve_blocking(600).unwrap();
        assert_eq!(budget.available(), 400);
        // A request larger than the whole budget takes all of it (and so runs alone).
        drop(a);
        let huge = budget.reserve_blocking(5000).unwrap();
        assert_eq!((huge.bytes, budget.available()), (5000, 0));
        drop(huge);
        assert_eq!(budget.available(), 1000);
    }

    #[tokio::test]
    async fn a_request_waits_for_room() {
        let budget = ByteBudget::new(1000);
        let first = budget.reserve(600).await.unwrap();
        let second = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(600).await.map(|r| r.bytes) }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "600 + 600 bytes do not fit in 1000");
        drop(first);
        assert_eq!(second.await.unwrap().unwrap(), 600);
    }

    #[test]
    fn a_note_costs_its_text() {
        let req = WriteRequest {
            actor: "alice".into(),
            idempotency: None,
            op: WriteOp::Ticket {
                number: 1,
                command: Command::Note {
                    text: "x".repeat(100_000),
                    shared: false,
                    happened_at: None,
                },
            },
        };
        assert_eq!(request_bytes(&req), 100_000 + 5 + REQUEST_OVERHEAD_BYTES);
    }
}

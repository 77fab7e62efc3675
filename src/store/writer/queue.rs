//! The writer thread's loop: it takes the first job off the queue, drains whatever else is
//! already waiting into one batch, and hands the batch to [`super::commit`].

use std::panic::AssertUnwindSafe;

use tokio::sync::{mpsc, oneshot, watch};

use super::commit::{Fatal, WriterState};
use super::{WriteOutcome, WriteRequest};
use crate::store::StoreError;

/// A queued write and where its answer goes.
pub(super) type Pending = (
    Box<WriteRequest>,
    oneshot::Sender<Result<WriteOutcome, StoreError>>,
);

pub(super) enum Job {
    Write(
        Box<WriteRequest>,
        oneshot::Sender<Result<WriteOutcome, StoreError>>,
    ),
    Shutdown,
}

impl WriterState {
    /// The thread's body. Fail-stop: if a batch panics, or a failed transaction cannot be
    /// rolled back, the thread cannot know what the store holds, so it writes nothing more. It
    /// logs why, refuses whatever is queued, and reports the failure on `failed` so the node
    /// stops (and its service manager restarts it) instead of serving reads with every write
    /// refused.
    pub(super) fn run(
        mut self,
        mut rx: mpsc::Receiver<Job>,
        failed: watch::Sender<Option<String>>,
    ) {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.serve(&mut rx)));
        let reason = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(fatal)) => fatal.0,
            Err(panic) => format!("the writer thread panicked: {}", panic_message(&*panic)),
        };
        tracing::error!(
            reason = %reason,
            "the store's writer failed; this node writes nothing more and stops"
        );
        rx.close();
        while let Ok(job) = rx.try_recv() {
            if let Job::Write(_, reply) = job {
                let _ = reply.send(Err(StoreError::Closed));
            }
        }
        failed.send_replace(Some(reason));
    }

    /// Takes jobs into batches and commits them until shutdown or a fatal failure.
    fn serve(&mut self, rx: &mut mpsc::Receiver<Job>) -> Result<(), Fatal> {
        let mut batch = Vec::with_capacity(self.cfg.group_commit_max);
        loop {
            let Some(first) = rx.blocking_recv() else {
                return Ok(());
            };
            let mut stop = false;
            for job in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                match job {
                    Job::Write(req, reply) => batch.push((req, reply)),
                    Job::Shutdown => {
                        stop = true;
                        break;
                    }
                }
                if batch.len() >= self.cfg.group_commit_max {
                    break;
                }
            }
            if !batch.is_empty() {
                self.commit_batch(&mut batch)?;
            }
            if stop {
                rx.close();
                // Answer anything that raced in behind the shutdown.
                while let Ok(Job::Write(_, reply)) = rx.try_recv() {
                    let _ = reply.send(Err(StoreError::Closed));
                }
                return Ok(());
            }
        }
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

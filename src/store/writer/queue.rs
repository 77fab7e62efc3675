//! The writer thread's loop: it takes the first job off the queue, drains whatever else is
//! already waiting into one batch, and hands the batch to [`super::commit`].

use tokio::sync::{mpsc, oneshot};

use super::commit::WriterState;
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
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(self.cfg.group_commit_max);
        loop {
            let Some(first) = rx.blocking_recv() else {
                return;
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
                self.commit_batch(&mut batch);
            }
            if stop {
                rx.close();
                // Answer anything that raced in behind the shutdown.
                while let Ok(Job::Write(_, reply)) = rx.try_recv() {
                    let _ = reply.send(Err(StoreError::Closed));
                }
                return;
            }
        }
    }
}

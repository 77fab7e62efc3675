//! The writer thread's loop: it takes the first job off the queue, drains whatever else is
//! already waiting into one batch, and hands the batch to [`super::commit`].

use std::panic::AssertUnwindSafe;

use tokio::sync::{mpsc, oneshot, watch};

use super::budget::Reserved;
use super::commit::{Fatal, WriterState};
use super::{WriteOutcome, WriteRequest};
use crate::store::StoreError;

/// A queued write, where its answer goes, and the bytes it holds of the queue's budget
/// (given back when it is dropped, after the answer).
pub(super) struct Pending {
    pub(super) req: Box<WriteRequest>,
    pub(super) reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
    pub(super) reserved: Reserved,
}

pub(super) enum Job {
    Write(Pending),
    /// A reader waits for the search index ([`super::Writer::search_index_ready`]): index
    /// what is pending now rather than at the next quiet moment.
    IndexNow,
    Shutdown,
}

/// What the queue gave the writer when it asked for the first job of a batch.
enum Next {
    Job(Job),
    /// Nothing came within the idle wait: the queue is quiet, index now.
    Quiet,
    /// Every sender is gone.
    Closed,
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
            if let Job::Write(p) = job {
                let _ = p.reply.send(Err(StoreError::Closed));
            }
        }
        failed.send_replace(Some(reason));
    }

    /// Takes jobs into batches and commits them until shutdown or a fatal failure.
    ///
    /// A batch takes the first job, then whatever else is already queued, up to
    /// `group_commit_max` requests and `group_commit_max_bytes` bytes (a request that would
    /// cross the byte bound waits for the next batch; a batch always takes at least one).
    fn serve(&mut self, rx: &mut mpsc::Receiver<Job>) -> Result<(), Fatal> {
        self.serve_batches(rx)?;
        // What the last batches added is searchable after a clean stop too.
        self.index_notes()
    }

    /// [`Self::serve`]'s loop. Between batches it indexes note text when the indexer says so:
    /// whenever the queue is empty, and under load after enough notes or time
    /// ([`super::indexer`]).
    fn serve_batches(&mut self, rx: &mut mpsc::Receiver<Job>) -> Result<(), Fatal> {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.cfg.group_commit_max);
        let mut carried: Option<Pending> = None;
        let mut stop = false;
        // Only for waiting on the queue with a timeout (see `next_job`).
        let clock = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| Fatal(format!("cannot start the writer's clock: {e}")))?;
        loop {
            let first = match carried.take() {
                Some(p) => Job::Write(p),
                None if stop => break,
                None => match self.next_job(rx, &clock) {
                    Next::Job(Job::IndexNow) | Next::Quiet => {
                        if self.indexer.due(true) {
                            self.index_notes()?;
                        }
                        continue;
                    }
                    Next::Job(job) => job,
                    Next::Closed => return Ok(()),
                },
            };
            let mut index_now = false;
            let mut bytes = 0;
            for job in std::iter::once(first).chain(std::iter::from_fn(|| {
                if stop {
                    None
                } else {
                    rx.try_recv().ok()
                }
            })) {
                let p = match job {
                    Job::Write(p) => p,
                    Job::IndexNow => {
                        index_now = true;
                        continue;
                    }
                    Job::Shutdown => {
                        stop = true;
                        break;
                    }
                };
                if !batch.is_empty() && bytes + p.reserved.bytes > self.cfg.group_commit_max_bytes {
                    carried = Some(p);
                    break;
                }
                bytes += p.reserved.bytes;
                batch.push(p);
                if batch.len() >= self.cfg.group_commit_max {
                    break;
                }
            }
            if !batch.is_empty() {
                self.commit_batch(&mut batch)?;
            }
            if self.indexer.due(index_now) {
                self.index_notes()?;
            }
        }
        rx.close();
        // Answer anything that raced in behind the shutdown.
        while let Ok(job) = rx.try_recv() {
            if let Job::Write(p) = job {
                let _ = p.reply.send(Err(StoreError::Closed));
            }
        }
        Ok(())
    }
}

impl WriterState {
    /// The next job off the queue. When none is waiting and notes wait to be indexed, it waits
    /// at most the indexer's idle wait ([`super::indexer::Indexer::idle_wait`]) and says
    /// [`Next::Quiet`] if nothing came: under load the queue is empty for a moment between
    /// nearly every two group commits, and indexing at each such moment would make the index
    /// transaction (an FTS5 segment flush and its pages) a per-commit cost again.
    fn next_job(&mut self, rx: &mut mpsc::Receiver<Job>, clock: &tokio::runtime::Runtime) -> Next {
        match rx.try_recv() {
            Ok(job) => return Next::Job(job),
            Err(mpsc::error::TryRecvError::Disconnected) => return Next::Closed,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        let received = match self.indexer.idle_wait() {
            None => rx.blocking_recv(),
            Some(wait) if wait.is_zero() => return Next::Quiet,
            Some(wait) => {
                match clock.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
                    Ok(received) => received,
                    Err(_elapsed) => return Next::Quiet,
                }
            }
        };
        match received {
            Some(job) => Next::Job(job),
            None => Next::Closed,
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

//! Debug counters of replication's latency: when each batch passed each stage on this node,
//! in wall-clock microseconds, kept for the last [`KEEP`] stamps.
//!
//! The primary stamps a batch when the writer's commit hook hands it over ([`Stage::Committed`])
//! and when its frame is written to the standby's stream ([`Stage::Shipped`]); the standby
//! stamps it when the frame is read ([`Stage::Received`]), when it is durable in the receipt
//! spool ([`Stage::Spooled`]), when its write goes to the writer
//! ([`Stage::Applying`]) and when the applier's transaction has committed and its head is
//! published to readers ([`Stage::Applied`]). `ttx bench
//! replication` reads both nodes' stamps (`GET /v1/replication/timeline`) and joins them by
//! position: both nodes run on the bench's host, so one wall clock times both. Across hosts the
//! clocks differ and only each node's own intervals mean anything.
//!
//! Recording costs one short lock per batch per stage; nothing reads the stamps on the
//! replication path.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Stamps kept (the oldest are dropped first): about 16 s of one-note batches at 1,000/s on
/// each stage of a node.
pub const KEEP: usize = 65_536;

/// A stage a batch passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Primary: committed by the writer and handed to the shipping backlog.
    Committed,
    /// Primary: its frame written to the standby's stream.
    Shipped,
    /// Standby: its frame read from the stream.
    Received,
    /// Standby: durable in its receipt spool (it acks `durable` from here), before it is
    /// applied.
    Spooled,
    /// Standby: handed to the writer (after the previous batch's apply and ack; batches
    /// waiting then go together, stamped at the last one's position).
    Applying,
    /// Standby: applied, committed and its head published to readers.
    Applied,
}

/// One batch at one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The stage.
    pub stage: Stage,
    /// The batch's last position (a stamp covers every position up to it not covered before).
    pub last: u64,
    /// When (unix microseconds, this node's clock).
    pub at_us: i64,
}

/// The stamps of one node.
#[derive(Debug, Default)]
pub struct Timeline {
    stamps: Mutex<VecDeque<Stamp>>,
}

/// The wall clock now, in unix microseconds.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Timeline {
    /// Records that the batch ending at `last` passed `stage` now.
    pub fn record(&self, stage: Stage, last: u64) {
        let stamp = Stamp {
            stage,
            last,
            at_us: now_us(),
        };
        let mut s = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() >= KEEP {
            s.pop_front();
        }
        s.push_back(stamp);
    }

    /// The stamps taken after `after_us` (unix microseconds), oldest first.
    pub fn since(&self, after_us: i64) -> Vec<Stamp> {
        let s = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        s.iter().filter(|x| x.at_us > after_us).copied().collect()
    }
}

/// The stamps of one stage, in the order they were taken (positions rising).
pub fn of_stage(stamps: &[Stamp], stage: Stage) -> Vec<Stamp> {
    stamps
        .iter()
        .filter(|s| s.stage == stage)
        .copied()
        .collect()
}

/// When `position` first passed the stage of `stage_stamps` (from [`of_stage`]): the time of
/// the first batch covering it.
pub fn covering(stage_stamps: &[Stamp], position: u64) -> Option<i64> {
    let i = stage_stamps.partition_point(|s| s.last < position);
    stage_stamps.get(i).map(|s| s.at_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_finds_the_batch_covering_a_position() {
        let t = Timeline::default();
        for last in 1..=(KEEP as u64 + 10) {
            t.record(Stage::Committed, last);
        }
        let all = t.since(0);
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].last, 11);
        t.record(Stage::Applied, 20);
        t.record(Stage::Applied, 30);
        let stamps = t.since(0);
        let applied = of_stage(&stamps, Stage::Applied);
        assert_eq!(covering(&applied, 15), Some(stamps[KEEP - 2].at_us));
        assert_eq!(covering(&applied, 20), Some(stamps[KEEP - 2].at_us));
        assert_eq!(covering(&applied, 21), Some(stamps[KEEP - 1].at_us));
        assert_eq!(covering(&applied, 31), None);
        assert_eq!(covering(&of_stage(&stamps, Stage::Shipped), 1), None);
        assert!(t.since(stamps[KEEP - 1].at_us).is_empty());
    }
}

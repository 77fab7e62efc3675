//! The standby's lag in milliseconds, measured with the primary's clock only.
//!
//! Two hosts' wall clocks are never compared. Every batch and heartbeat carries a reading of
//! the primary's clock (a batch: the commit time of its last envelope; a heartbeat: when it was
//! sent). The standby pairs the greatest reading with its own **monotonic** receive time, so
//! "the primary's clock now" is that reading plus the standby's monotonic time elapsed since it
//! arrived. The lag is that estimate minus the primary's commit time of the oldest event not
//! applied here (the batch received and not yet applied, or, when the primary's head is ahead
//! of anything received, the primary's time when it first said so). Both terms are readings of
//! the primary's clock; the estimate is short by the one-way delay of the last reading, so the
//! lag is understated by at most that (sub-millisecond on a LAN). Pure: driven with `now`.

use std::collections::VecDeque;

use crate::model::clock::Millis;

/// Batches received and not applied yet, remembered at most (the follower's apply queue holds
/// fewer).
const MAX_PENDING: usize = 4096;

/// What the standby knows of the primary's clock and of what it has not applied.
#[derive(Debug, Default, Clone)]
pub struct StandbyLag {
    /// The latest reading of the primary's clock, with this node's monotonic receive time.
    sample: Option<(Millis, Millis)>,
    /// Received batches not yet applied: (last position, the primary's commit time).
    pending: VecDeque<(u64, Millis)>,
    /// Since when (the primary's clock) the primary has said its head is past everything this
    /// node received, and that head.
    ahead_since: Option<(u64, Millis)>,
    /// The last position received in a batch.
    received: u64,
}

impl StandbyLag {
    /// A batch ending at `last` whose events the primary committed at `committed_at` (its clock)
    /// arrived at `mono` (this node's monotonic clock).
    pub fn batch(&mut self, last: u64, committed_at: Millis, mono: Millis) {
        self.read_clock(committed_at, mono);
        if self.pending.len() == MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back((last, committed_at));
        self.received = self.received.max(last);
        if self.ahead_since.is_some_and(|(head, _)| head <= last) {
            self.ahead_since = None;
        }
    }

    /// A heartbeat (or subscription answer) said the primary's head is `head` at `at` (its
    /// clock), arriving at `mono`.
    pub fn heard(&mut self, head: u64, at: Millis, mono: Millis) {
        self.read_clock(at, mono);
        if head > self.received && self.ahead_since.is_none() {
            self.ahead_since = Some((head, at));
        }
    }

    /// A reading `at` of the primary's clock arrived at `mono`. Every reading is a lower bound
    /// of the primary's clock when it arrived (it was read before it was sent): keep the
    /// greatest, so a batch delayed in a queue does not turn the estimate back.
    fn read_clock(&mut self, at: Millis, mono: Millis) {
        if self.primary_now(mono).is_none_or(|now| at > now) {
            self.sample = Some((at, mono));
        }
    }

    /// A stream opened from `head` (everything up to it is here already).
    pub fn subscribed(&mut self, head: u64) {
        self.received = self.received.max(head);
        if self.ahead_since.is_some_and(|(h, _)| h <= head) {
            self.ahead_since = None;
        }
    }

    /// The primary's clock now, as far as this node can tell, at its monotonic `mono`.
    fn primary_now(&self, mono: Millis) -> Option<Millis> {
        self.sample.map(|(at, received)| at + (mono - received))
    }

    /// The lag at `mono` for a node that has applied up to `applied`, the primary's head being
    /// `primary_head` as last heard: 0 when nothing is missing; `None` before any reading.
    pub fn lag_ms(&mut self, applied: u64, primary_head: u64, mono: Millis) -> Option<Millis> {
        while self
            .pending
            .front()
            .is_some_and(|(last, _)| *last <= applied)
        {
            self.pending.pop_front();
        }
        if self.ahead_since.is_some_and(|(h, _)| h <= applied) {
            self.ahead_since = None;
        }
        let now = self.primary_now(mono)?;
        if applied >= primary_head {
            return Some(0);
        }
        let oldest = match (self.pending.front(), self.ahead_since) {
            (Some((_, committed)), _) => *committed,
            (None, Some((_, since))) => since,
            (None, None) => now,
        };
        Some((now - oldest).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The primary's clock runs an hour ahead of the standby's monotonic clock (and its origin
    /// is unrelated): the lag comes out the same.
    #[test]
    fn the_lag_is_measured_with_the_primarys_clock_only() {
        for offset in [0, 3_600_000, -86_400_000] {
            let mut lag = StandbyLag::default();
            assert_eq!(lag.lag_ms(0, 0, 5), None, "no reading yet");
            // Caught up at a heartbeat.
            lag.heard(10, 1_000 + offset, 50);
            assert_eq!(lag.lag_ms(10, 10, 60), Some(0));
            // A batch committed at 1_100 arrives at mono 150; applied at mono 400 it is gone.
            lag.batch(12, 1_100 + offset, 150);
            assert_eq!(lag.lag_ms(10, 12, 150), Some(0), "just arrived");
            assert_eq!(lag.lag_ms(10, 12, 350), Some(200));
            assert_eq!(lag.lag_ms(12, 12, 400), Some(0));
        }
    }

    #[test]
    fn a_head_announced_but_not_shipped_counts_from_when_it_was_announced() {
        let mut lag = StandbyLag::default();
        lag.heard(5, 10_000, 0);
        assert_eq!(lag.lag_ms(5, 5, 0), Some(0));
        // The primary says it is at 9 (the stream is slow); nothing arrives for 300 ms.
        lag.heard(9, 10_500, 500);
        assert_eq!(lag.lag_ms(5, 9, 800), Some(300));
        // The stream goes down: the estimate keeps growing with this node's own time.
        assert_eq!(lag.lag_ms(5, 9, 2_500), Some(2_000));
        // The batch arrives late: its commit time is older than the clock estimate, which stays.
        lag.batch(9, 10_400, 2_600);
        assert_eq!(lag.lag_ms(5, 9, 2_600), Some(2_200));
        assert_eq!(lag.lag_ms(9, 9, 2_700), Some(0));
    }
}

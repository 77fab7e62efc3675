//! The sync-commit gate: answers to operators wait here, in log-position order, until the
//! standby has their events (durably in `sync` mode, applied in `sync-visible` mode). Pure: the
//! caller feeds it commits, acks and the clock, and delivers what it releases.
//!
//! The writer thread never waits on the standby. It commits batch after batch and hands each
//! answer to the gate with the log position of its last event; acks from the standby release
//! every answer at or below the acknowledged position at once, so many writes share one fsync
//! on each side and one round trip (PostgreSQL's `synchronous_commit=on` / `remote_apply`, without
//! stalling the primary's group commit).
//!
//! When the standby is gone (disconnected, or connected but silent past the timeout) the
//! configured [`WhenGone`] decides: `block` holds answers until
//! `block_timeout_ms`, then fails them with [`Outcome::NotOnStandby`] (the write is committed on
//! the primary, not yet on the standby: the client retries with the same idempotency key);
//! `degrade` releases everything and goes on as `async`, loudly (the gate reports
//! [`Gate::degraded_since`], and a degraded primary must never be the reason for an automatic
//! promotion), until the standby has caught up with the head again.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::model::clock::Millis;

/// When an operator's write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// After the local commit (the standby may be a moment behind).
    Async,
    /// Once the standby has the events durably (PostgreSQL's `synchronous_commit=on`).
    Sync,
    /// Once the standby has applied them, so a read there sees them (`remote_apply`).
    SyncVisible,
}

/// What sync mode does while the standby is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenGone {
    /// Writes wait, then fail with a clear error.
    Block,
    /// Writes go on as async, loudly; never auto-promote from that state.
    Degrade,
}

impl Mode {
    /// The name in config, `ttx status` and the console (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Sync => "sync",
            Mode::SyncVisible => "sync-visible",
        }
    }
}

impl WhenGone {
    /// The name in config, `ttx status` and the console (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            WhenGone::Block => "block",
            WhenGone::Degrade => "degrade",
        }
    }
}

/// What happened to an answer that left the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The standby has it as the mode requires (or the mode is async, or the gate degraded):
    /// deliver the answer.
    Released(T),
    /// `block` mode ran out of time: the write is committed here but not yet on the standby.
    /// Deliver an error telling the client to retry with the same idempotency key.
    NotOnStandby(T),
}

/// The standby's acknowledgement: how far it has the log durably, and how far it applied it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ack {
    /// Every position up to here is durable on the standby.
    pub durable: u64,
    /// Every position up to here is applied (visible to reads) on the standby.
    pub applied: u64,
}

/// How far behind the standby is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lag {
    /// Committed positions the standby has not applied.
    pub events: u64,
    /// Since the primary committed the oldest event the standby has not applied (primary's
    /// clock only, so clock skew between the nodes does not enter).
    pub ms: Millis,
}

struct Waiting<T> {
    pos: u64,
    deadline: Millis,
    answer: T,
}

/// The largest number of commit times kept for lag. Past it, neighbouring entries are merged
/// keeping the older time, so lag is over-estimated, never under-estimated.
const LAG_SAMPLES: usize = 65_536;

/// The gate. `T` is whatever the caller delivers (a one-shot sender with its answer).
pub struct Gate<T> {
    mode: Mode,
    when_gone: WhenGone,
    block_timeout_ms: Millis,
    connected: bool,
    ack: Ack,
    head: u64,
    degraded_since: Option<Millis>,
    waiting: VecDeque<Waiting<T>>,
    commits: VecDeque<(u64, Millis)>,
}

impl<T> Gate<T> {
    /// A gate for `mode`; the standby counts as gone until [`Gate::connected`] says otherwise,
    /// and has acknowledged everything up to `ack` (its position when the node starts).
    pub fn new(mode: Mode, when_gone: WhenGone, block_timeout_ms: Millis, ack: Ack) -> Self {
        Gate {
            mode,
            when_gone,
            block_timeout_ms,
            connected: false,
            ack,
            head: ack.durable.max(ack.applied),
            degraded_since: None,
            waiting: VecDeque::new(),
            commits: VecDeque::new(),
        }
    }

    /// The configured mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Since when sync mode has been degraded to async (standby gone in `degrade` mode), if it is.
    pub fn degraded_since(&self) -> Option<Millis> {
        self.degraded_since
    }

    /// How many answers wait for the standby.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The last committed position the gate was told about.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The standby's last acknowledgement.
    pub fn acked(&self) -> Ack {
        self.ack
    }

    /// The primary committed everything up to `pos` at `now` (positions arrive in order): the
    /// head and the lag's commit times move on, with no answer to hold. The writer's commit
    /// hook calls this; the answers arrive separately through [`Gate::committed`].
    pub fn advanced(&mut self, pos: u64, now: Millis) {
        if pos > self.head {
            self.head = pos;
            self.sample(pos, now);
        }
    }

    /// An answer for a write whose last event is at `pos`. Answers may arrive in any order
    /// (concurrent requests learn their positions from the writer, then come here); they are
    /// kept in position order. Returns what may be delivered now.
    pub fn committed(&mut self, pos: u64, answer: T, now: Millis) -> Vec<Outcome<T>> {
        self.advanced(pos, now);
        if self.passes(pos) || self.mode == Mode::Async || self.degraded_since.is_some() {
            return vec![Outcome::Released(answer)];
        }
        if !self.connected && self.when_gone == WhenGone::Degrade {
            self.degraded_since = Some(now);
            let mut out = self.drain_all();
            out.push(Outcome::Released(answer));
            return out;
        }
        let at = self.waiting.partition_point(|w| w.pos <= pos);
        self.waiting.insert(
            at,
            Waiting {
                pos,
                deadline: now + self.block_timeout_ms,
                answer,
            },
        );
        Vec::new()
    }

    /// An acknowledgement from the standby. Old or overtaken acks change nothing.
    pub fn acked_to(&mut self, ack: Ack) -> Vec<Outcome<T>> {
        self.ack.durable = self.ack.durable.max(ack.durable);
        self.ack.applied = self.ack.applied.max(ack.applied);
        while self
            .commits
            .front()
            .is_some_and(|&(pos, _)| pos <= self.ack.applied)
        {
            self.commits.pop_front();
        }
        if self.degraded_since.is_some() && self.connected && self.required() >= self.head {
            self.degraded_since = None;
        }
        let mut out = Vec::new();
        while self.waiting.front().is_some_and(|w| self.passes(w.pos)) {
            let w = self.waiting.pop_front().expect("front exists");
            out.push(Outcome::Released(w.answer));
        }
        out
    }

    /// The standby's stream came up (`true`) or went away (`false`). Going away in `degrade`
    /// mode releases everything waiting and degrades the gate.
    pub fn connected(&mut self, up: bool, now: Millis) -> Vec<Outcome<T>> {
        self.connected = up;
        if !up && self.when_gone == WhenGone::Degrade && self.mode != Mode::Async {
            if !self.waiting.is_empty() || self.head > self.required() {
                self.degraded_since.get_or_insert(now);
            }
            return self.drain_all();
        }
        Vec::new()
    }

    /// The clock. An answer past its deadline means the standby, connected or not, is not
    /// keeping up: in `block` mode those answers fail; in `degrade` mode the gate degrades and
    /// releases everything. The caller sleeps until [`Gate::next_deadline`].
    pub fn tick(&mut self, now: Millis) -> Vec<Outcome<T>> {
        let due = |w: &Waiting<T>| w.deadline <= now;
        if self.when_gone == WhenGone::Degrade && self.waiting.iter().any(due) {
            self.degraded_since = Some(now);
            return self.drain_all();
        }
        let mut out = Vec::new();
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for w in self.waiting.drain(..) {
            if due(&w) {
                out.push(Outcome::NotOnStandby(w.answer));
            } else {
                kept.push_back(w);
            }
        }
        self.waiting = kept;
        out
    }

    /// When the next waiting answer times out.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.waiting.iter().map(|w| w.deadline).min()
    }

    /// How far behind the standby is at `now`.
    pub fn lag(&self, now: Millis) -> Lag {
        Lag {
            events: self.head.saturating_sub(self.ack.applied),
            ms: self
                .commits
                .front()
                .map(|&(_, at)| (now - at).max(0))
                .unwrap_or(0),
        }
    }

    fn required(&self) -> u64 {
        match self.mode {
            Mode::SyncVisible => self.ack.applied,
            Mode::Async | Mode::Sync => self.ack.durable,
        }
    }

    fn passes(&self, pos: u64) -> bool {
        pos <= self.required()
    }

    fn drain_all(&mut self) -> Vec<Outcome<T>> {
        self.waiting
            .drain(..)
            .map(|w| Outcome::Released(w.answer))
            .collect()
    }

    fn sample(&mut self, pos: u64, at: Millis) {
        if pos <= self.ack.applied || self.commits.back().is_some_and(|&(p, _)| p >= pos) {
            return;
        }
        if self.commits.len() >= LAG_SAMPLES {
            // Merge into the newest sample: keep its (older) time, extend its position.
            if let Some(back) = self.commits.back_mut() {
                back.0 = pos;
            }
            return;
        }
        self.commits.push_back((pos, at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names() {
        for m in [Mode::Async, Mode::Sync, Mode::SyncVisible] {
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        for w in [WhenGone::Block, WhenGone::Degrade] {
            assert_eq!(serde_json::to_value(w).unwrap(), w.as_str());
        }
    }

    fn released(out: Vec<Outcome<u32>>) -> Vec<u32> {
        out.into_iter()
            .map(|o| match o {
                Outcome::Released(x) => x,
                Outcome::NotOnStandby(x) => panic!("{x} timed out"),
            })
            .collect()
    }

    fn sync(when_gone: WhenGone) -> Gate<u32> {
        let mut g = Gate::new(Mode::Sync, when_gone, 1_000, Ack::default());
        assert!(g.connected(true, 0).is_empty());
        g
    }

    #[test]
    fn async_releases_at_once() {
        let mut g = Gate::new(Mode::Async, WhenGone::Block, 1_000, Ack::default());
        assert_eq!(released(g.committed(1, 10, 0)), vec![10]);
        assert_eq!(g.lag(5), Lag { events: 1, ms: 5 });
    }

    #[test]
    fn sync_releases_in_position_order_as_acks_arrive() {
        let mut g = sync(WhenGone::Block);
        for (pos, answer) in [(1, 10), (3, 30), (3, 31), (7, 70)] {
            assert!(g.committed(pos, answer, 0).is_empty());
        }
        assert_eq!(g.waiting(), 4);
        assert_eq!(
            released(g.acked_to(Ack {
                durable: 3,
                applied: 0
            })),
            vec![10, 30, 31]
        );
        // An overtaken ack changes nothing.
        assert!(g
            .acked_to(Ack {
                durable: 2,
                applied: 0
            })
            .is_empty());
        assert_eq!(
            released(g.acked_to(Ack {
                durable: 9,
                applied: 1
            })),
            vec![70]
        );
        // A commit the standby already has passes straight through.
        assert_eq!(released(g.committed(8, 80, 1)), vec![80]);
    }

    #[test]
    fn answers_arriving_out_of_order_leave_in_position_order() {
        let mut g = sync(WhenGone::Block);
        g.advanced(9, 0);
        for (pos, answer) in [(7, 70), (3, 30), (9, 90), (5, 50)] {
            assert!(g.committed(pos, answer, 0).is_empty());
        }
        assert_eq!(
            released(g.acked_to(Ack {
                durable: 6,
                applied: 6
            })),
            vec![30, 50]
        );
        assert_eq!(g.lag(10), Lag { events: 3, ms: 10 });
        assert_eq!(
            released(g.acked_to(Ack {
                durable: 9,
                applied: 9
            })),
            vec![70, 90]
        );
    }

    #[test]
    fn sync_visible_waits_for_apply_not_durable_receipt() {
        let mut g = Gate::new(Mode::SyncVisible, WhenGone::Block, 1_000, Ack::default());
        g.connected(true, 0);
        assert!(g.committed(2, 20, 0).is_empty());
        assert!(g
            .acked_to(Ack {
                durable: 2,
                applied: 1
            })
            .is_empty());
        assert_eq!(
            released(g.acked_to(Ack {
                durable: 2,
                applied: 2
            })),
            vec![20]
        );
    }

    #[test]
    fn block_mode_fails_after_the_timeout_and_says_so() {
        let mut g = sync(WhenGone::Block);
        g.committed(1, 10, 0);
        g.committed(2, 20, 500);
        assert!(g.connected(false, 600).is_empty(), "block holds");
        assert_eq!(g.next_deadline(), Some(1_000));
        assert_eq!(g.tick(999), vec![]);
        assert_eq!(g.tick(1_000), vec![Outcome::NotOnStandby(10)]);
        // The standby returns in time for the second.
        g.connected(true, 1_200);
        assert_eq!(
            released(g.acked_to(Ack {
                durable: 2,
                applied: 2
            })),
            vec![20]
        );
        assert_eq!(g.tick(5_000), vec![]);
    }

    #[test]
    fn degrade_mode_releases_everything_and_recovers_once_caught_up() {
        let mut g = sync(WhenGone::Degrade);
        g.committed(1, 10, 0);
        g.committed(2, 20, 0);
        assert_eq!(released(g.connected(false, 5)), vec![10, 20]);
        assert_eq!(g.degraded_since(), Some(5));
        // While degraded, commits pass at once.
        assert_eq!(released(g.committed(3, 30, 6)), vec![30]);
        // Back, but not caught up: still degraded.
        g.connected(true, 7);
        g.acked_to(Ack {
            durable: 2,
            applied: 2,
        });
        assert_eq!(g.degraded_since(), Some(5));
        assert_eq!(released(g.committed(4, 40, 8)), vec![40]);
        // Caught up with the head: sync again.
        g.acked_to(Ack {
            durable: 4,
            applied: 4,
        });
        assert_eq!(g.degraded_since(), None);
        assert!(g.committed(5, 50, 9).is_empty());
    }

    #[test]
    fn a_connected_but_silent_standby_degrades_after_the_timeout() {
        let mut g = sync(WhenGone::Degrade);
        g.committed(1, 10, 0);
        assert!(g.tick(999).is_empty());
        assert_eq!(released(g.tick(1_000)), vec![10]);
        assert_eq!(g.degraded_since(), Some(1_000));
    }

    #[test]
    fn a_commit_while_the_standby_is_gone_degrades_at_once() {
        let mut g = Gate::new(Mode::Sync, WhenGone::Degrade, 1_000, Ack::default());
        assert_eq!(released(g.committed(1, 10, 3)), vec![10]);
        assert_eq!(g.degraded_since(), Some(3));
    }

    #[test]
    fn lag_counts_from_the_oldest_unapplied_commit() {
        let mut g = sync(WhenGone::Block);
        g.committed(1, 1, 100);
        g.committed(2, 2, 150);
        assert_eq!(g.lag(200), Lag { events: 2, ms: 100 });
        g.acked_to(Ack {
            durable: 2,
            applied: 1,
        });
        assert_eq!(g.lag(200), Lag { events: 1, ms: 50 });
        g.acked_to(Ack {
            durable: 2,
            applied: 2,
        });
        assert_eq!(g.lag(200), Lag { events: 0, ms: 0 });
    }

    #[test]
    fn lag_samples_are_bounded_and_never_under_estimate() {
        let mut g = Gate::new(Mode::Async, WhenGone::Block, 1_000, Ack::default());
        for pos in 1..=(LAG_SAMPLES as u64 + 10) {
            g.committed(pos, 0, pos as Millis);
        }
        assert_eq!(g.commits.len(), LAG_SAMPLES);
        // Everything up to the last full sample is applied: the merged tail keeps its old time.
        g.acked_to(Ack {
            durable: 0,
            applied: LAG_SAMPLES as u64 - 1,
        });
        let lag = g.lag(LAG_SAMPLES as Millis + 10);
        assert_eq!(lag.events, 11);
        assert!(lag.ms >= 10, "{lag:?}");
    }

    proptest::proptest! {
        /// Whatever the interleaving of commits, acks, disconnects and clock ticks: in sync mode
        /// an answer is released only once the standby's ack covers it or the gate is degraded,
        /// answers leave in position order, and each leaves exactly once.
        #[test]
        fn never_released_before_the_standby_has_it(
            degrade in proptest::bool::ANY,
            script in proptest::collection::vec((0u8..4, 0u64..4), 1..80),
        ) {
            let when_gone = if degrade { WhenGone::Degrade } else { WhenGone::Block };
            let mut g: Gate<u64> = Gate::new(Mode::Sync, when_gone, 50, Ack::default());
            g.connected(true, 0);
            let (mut pos, mut now, mut durable) = (0u64, 0 as Millis, 0u64);
            let mut left: Vec<u64> = Vec::new();
            let mut check = |g: &Gate<u64>, out: Vec<Outcome<u64>>, durable: u64| {
                for o in out {
                    match o {
                        Outcome::Released(p) => proptest::prop_assert!(
                            p <= durable || g.degraded_since().is_some(),
                            "released {p} with the standby at {durable}"
                        ),
                        Outcome::NotOnStandby(p) => proptest::prop_assert!(!degrade, "{p}"),
                    }
                    let p = match o { Outcome::Released(p) | Outcome::NotOnStandby(p) => p };
                    proptest::prop_assert!(left.last().is_none_or(|&l| l <= p), "order");
                    left.push(p);
                }
                Ok(())
            };
            for (op, n) in script {
                now += 10;
                let out = match op {
                    0 => { pos += n; g.committed(pos, pos, now) }
                    1 => { durable = (durable + n).min(pos); g.acked_to(Ack { durable, applied: durable }) }
                    2 => g.connected(n % 2 == 0, now),
                    _ => g.tick(now),
                };
                check(&g, out, durable)?;
            }
            g.connected(true, now);
            let out = g.acked_to(Ack { durable: pos, applied: pos });
            check(&g, out, pos)?;
            proptest::prop_assert_eq!(g.waiting(), 0);
        }
    }
}

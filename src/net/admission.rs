//! What the accept path does with an incoming QUIC attempt before any crypto runs: a pure
//! decision over counts (no I/O), and a limiter that keeps refusals from flooding the log.
//!
//! The rules, in order:
//! 1. live plus handshaking connections at `max_connections`: refuse (`CONNECTION_REFUSED`);
//! 2. handshaking connections at `max_handshaking` (a small bound): refuse;
//! 3. a source address QUIC has not validated yet, while handshakes pile up (at least
//!    `retry_above_handshaking` in progress) or while its IP already has
//!    `max_handshaking_per_source` in progress: answer with a stateless Retry. A real client
//!    comes straight back with the token (one round trip); a flood of spoofed or abandoned
//!    Initials costs the node no state;
//! 4. a validated source whose IP already holds `max_handshaking_per_source` handshakes
//!    twice over: ignore (drop the packet silently);
//! 5. otherwise accept, counting the handshake against the total and its IP until it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::TransportSection;

/// What to do with an incoming attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start the handshake (and count it).
    Accept,
    /// Ask the client to prove its address with a Retry token first.
    Retry,
    /// Refuse it outright (`CONNECTION_REFUSED`).
    Refuse,
    /// Drop it without an answer.
    Ignore,
}

/// Handshakes in progress, in all and per source IP.
#[derive(Debug, Default)]
pub struct HandshakeGate {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// The inputs of one decision.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// The source IP.
    pub ip: IpAddr,
    /// QUIC validated the address (the attempt carries a Retry token).
    pub validated: bool,
    /// A Retry may still be sent (not already retried).
    pub may_retry: bool,
    /// Connections past Hello.
    pub live: usize,
}

impl HandshakeGate {
    /// Decides about an attempt; on `Accept` the handshake is counted until [`Self::finished`].
    pub fn decide(&mut self, a: Attempt, limits: &TransportSection) -> Decision {
        let from_source = self.per_source.get(&a.ip).copied().unwrap_or(0);
        let per_source = limits.max_handshaking_per_source as usize;
        let decision = if a.live + self.total >= limits.max_connections as usize
            || self.total >= limits.max_handshaking as usize
        {
            Decision::Refuse
        } else if !a.validated
            && (self.total >= limits.retry_above_handshaking as usize || from_source >= per_source)
        {
            if a.may_retry {
                Decision::Retry
            } else {
                Decision::Ignore
            }
        } else if from_source >= 2 * per_source {
            Decision::Ignore
        } else {
            Decision::Accept
        };
        if decision == Decision::Accept {
            self.total += 1;
            *self.per_source.entry(a.ip).or_default() += 1;
        }
        decision
    }

    /// A counted handshake ended (connected, refused or timed out).
    pub fn finished(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_source.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&ip);
            }
        }
    }

    /// Handshakes in progress.
    pub fn in_progress(&self) -> usize {
        self.total
    }
}

/// Lets through at most `burst` log lines per `window`; counts the rest, to report them with
/// the next line let through.
#[derive(Debug)]
pub struct LogLimiter {
    window: Duration,
    burst: u32,
    started: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter of `burst` lines per `window`.
    pub fn new(burst: u32, window: Duration) -> Self {
        Self {
            window,
            burst,
            started: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be logged at `now`, and how many were suppressed since the last one
    /// that was.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.started {
            Some(s) if now.duration_since(s) < self.window => {}
            _ => {
                self.started = Some(now);
                self.used = 0;
            }
        }
        if self.used < self.burst {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TransportSection {
        TransportSection {
            max_connections: 100,
            max_handshaking: 10,
            retry_above_handshaking: 4,
            max_handshaking_per_source: 2,
            ..TransportSection::default()
        }
    }

    fn attempt(ip: [u8; 4], validated: bool) -> Attempt {
        Attempt {
            ip: IpAddr::from(ip),
            validated,
            may_retry: !validated,
            live: 0,
        }
    }

    #[test]
    fn one_source_gets_retries_beyond_its_share_and_others_still_get_in() {
        let l = limits();
        let mut g = HandshakeGate::default();
        let flood = [10, 0, 0, 1];
        assert_eq!(g.decide(attempt(flood, false), &l), Decision::Accept);
        assert_eq!(g.decide(attempt(flood, false), &l), Decision::Accept);
        // Its share is used: unvalidated attempts from it get a Retry (no state kept).
        for _ in 0..100 {
            assert_eq!(g.decide(attempt(flood, false), &l), Decision::Retry);
        }
        assert_eq!(g.in_progress(), 2);
        // Another source still gets in directly; a validated one from the flooding IP too.
        assert_eq!(
            g.decide(attempt([10, 0, 0, 2], false), &l),
            Decision::Accept
        );
        assert_eq!(g.decide(attempt(flood, true), &l), Decision::Accept);
        assert_eq!(g.decide(attempt(flood, true), &l), Decision::Accept);
        // Twice its share, even validated attempts from it are dropped.
        assert_eq!(g.decide(attempt(flood, true), &l), Decision::Ignore);
        for _ in 0..4 {
            g.finished(IpAddr::from(flood));
        }
        assert_eq!(g.decide(attempt(flood, false), &l), Decision::Accept);
    }

    #[test]
    fn piled_up_handshakes_require_validation_and_the_small_bound_holds() {
        let l = limits();
        let mut g = HandshakeGate::default();
        for i in 0..4 {
            assert_eq!(
                g.decide(attempt([10, 0, 1, i], false), &l),
                Decision::Accept
            );
        }
        assert_eq!(g.decide(attempt([10, 0, 2, 1], false), &l), Decision::Retry);
        let mut retried = attempt([10, 0, 2, 1], false);
        retried.may_retry = false;
        assert_eq!(g.decide(retried, &l), Decision::Ignore);
        for i in 0..6 {
            assert_eq!(g.decide(attempt([10, 0, 3, i], true), &l), Decision::Accept);
        }
        assert_eq!(g.decide(attempt([10, 0, 4, 1], true), &l), Decision::Refuse);
        let mut full = attempt([10, 0, 5, 1], true);
        g = HandshakeGate::default();
        full.live = 100;
        assert_eq!(g.decide(full, &l), Decision::Refuse);
    }

    #[test]
    fn the_log_limiter_lets_a_burst_through_and_counts_the_rest() {
        let mut lim = LogLimiter::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(lim.allow(t0), Some(0));
        assert_eq!(lim.allow(t0), Some(0));
        assert_eq!(lim.allow(t0), None);
        assert_eq!(lim.allow(t0), None);
        assert_eq!(lim.allow(t0 + Duration::from_secs(11)), Some(2));
    }
}

//! The campaign's schedule, drawn from a seed (pure: no I/O, no clock): which fault comes next
//! and how long it is held. The same seed gives the same schedule, so a failing run replays
//! with `--seed`.

use std::time::Duration;

use super::proxy::next_unit;

/// A deterministic generator (xorshift64*, the proxy's; not for secrets).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value: it is mixed with splitmix64 first, so neighbouring
    /// seeds give unrelated sequences and the state is never 0).
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    /// A draw in [0, 1).
    pub fn unit(&mut self) -> f64 {
        next_unit(&mut self.0)
    }

    /// A draw in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }

    /// A duration between `lo` and `hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        lo + (hi.saturating_sub(lo)).mul_f64(self.unit())
    }

    /// A new seed for a part of the run (a proxy, a client).
    pub fn fork(&mut self) -> u64 {
        (self.unit() * u64::MAX as f64) as u64 ^ 0x9E37_79B9_7F4A_7C15
    }
}

/// Which of the campaign's nodes a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The site's current primary.
    Primary,
    /// The site's current standby.
    Standby,
    /// Partner `i` (0: telco-b, 1: carrier-c).
    Partner(usize),
}

/// One fault, held for `hold`, then healed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// SIGKILL a node and start it again after the hold (crash recovery, no role change).
    Crash(Target),
    /// SIGKILL the primary and promote the standby at once; after the hold the old primary
    /// comes back as the new primary's standby (`ttx standby rejoin`).
    Failover,
    /// `ttx switchover`, run on the primary or (`on_standby`) on the standby, which asks the
    /// primary: the roles swap with nothing lost, the clients move to the new primary. If it
    /// is left stuck half-way (the standby told to take over but unconfirmed), the nemesis
    /// finishes it the operator's way: `ttx switchover --abort` on the old primary while the
    /// standby is still a standby.
    Switchover {
        /// Run on the standby rather than on the primary.
        on_standby: bool,
    },
    /// Cut the replication link (both ways) for the hold.
    Partition,
    /// Drop this share of the replication link's packets for the hold.
    Loss(f64),
}

/// A fault and how long it lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// What.
    pub fault: Fault,
    /// For how long before it is healed.
    pub hold: Duration,
    /// Quiet time after the heal before the next fault.
    pub pause: Duration,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.fault {
            Fault::Crash(Target::Primary) => "SIGKILL + restart the primary".to_string(),
            Fault::Crash(Target::Standby) => "SIGKILL + restart the standby".to_string(),
            Fault::Crash(Target::Partner(i)) => format!("SIGKILL + restart partner {i}"),
            Fault::Failover => "SIGKILL the primary, promote the standby, rejoin".to_string(),
            Fault::Switchover { on_standby: false } => "ttx switchover on the primary".to_string(),
            Fault::Switchover { on_standby: true } => "ttx switchover on the standby".to_string(),
            Fault::Partition => "partition the replication link".to_string(),
            Fault::Loss(p) => format!("drop {:.0}% of replication packets", p * 100.0),
        };
        write!(
            f,
            "{what} for {} ms, then {} ms quiet",
            self.hold.as_millis(),
            self.pause.as_millis()
        )
    }
}

/// The schedule: an endless sequence of steps drawn from the seed.
#[derive(Debug, Clone)]
pub struct Schedule {
    rng: Rng,
}

impl Schedule {
    /// The schedule for `seed`.
    pub fn new(seed: u64) -> Schedule {
        Schedule {
            rng: Rng::new(seed),
        }
    }

    /// The next step.
    pub fn next_step(&mut self) -> Step {
        let r = &mut self.rng;
        let fault = match r.below(9) {
            0 => Fault::Crash(Target::Primary),
            1 => Fault::Crash(Target::Standby),
            2 => Fault::Crash(Target::Partner(r.below(2))),
            3 | 4 => Fault::Failover,
            5 | 6 => Fault::Switchover {
                on_standby: r.below(3) == 0,
            },
            7 => Fault::Partition,
            _ => Fault::Loss(0.1 + 0.4 * r.unit()),
        };
        let hold = r.between(Duration::from_millis(500), Duration::from_millis(3_000));
        let pause = r.between(Duration::from_millis(500), Duration::from_millis(2_000));
        Step { fault, hold, pause }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_schedule_and_every_fault_comes_up() {
        let draw = |seed| {
            let mut s = Schedule::new(seed);
            (0..200).map(|_| s.next_step()).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
        let steps = draw(7);
        for want in [
            Fault::Crash(Target::Primary),
            Fault::Crash(Target::Standby),
            Fault::Crash(Target::Partner(0)),
            Fault::Crash(Target::Partner(1)),
            Fault::Failover,
            Fault::Switchover { on_standby: false },
            Fault::Switchover { on_standby: true },
            Fault::Partition,
        ] {
            assert!(
                steps.iter().any(|s| s.fault == want),
                "{want:?} never drawn"
            );
        }
        assert!(steps.iter().any(|s| matches!(s.fault, Fault::Loss(_))));
        assert!(steps.iter().all(
            |s| s.hold >= Duration::from_millis(500) && s.hold <= Duration::from_millis(3_000)
        ));
    }
}

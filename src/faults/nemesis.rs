//! The campaign's nemesis: the live cluster (a site's two nodes with a UDP proxy in front of
//! each, two partners) and how each fault of the schedule is done to it and healed, with real
//! signals, real promotions and the real proxy.

use std::time::Duration;

use super::clients::Endpoint;
use super::schedule::{Fault, Step, Target};
use super::{Faults, UdpProxy};
use crate::cluster::{wait_until, ClusterError, Node};

/// The nodes the campaign runs, and which of the site's two is the primary.
pub struct Cluster {
    /// The site's two nodes; `site[primary]` is the primary, the other its standby.
    pub site: [Node; 2],
    /// `proxies[i]` forwards to `site[i]`'s QUIC port: a standby follows its primary through
    /// the proxy in front of it, so the replication link can be cut or made lossy. Each node's
    /// `replication.primary` names the proxy in front of the other, so after a failover or a
    /// switchover the new standby follows through a proxy too.
    pub proxies: [UdpProxy; 2],
    /// Which of `site` is the primary.
    pub primary: usize,
    /// The partners (0: telco-b, 1: carrier-c).
    pub partners: [Node; 2],
    /// Where the site's clients write (moved on a failover).
    pub endpoint: Endpoint,
}

/// How long a promotion may take to be accepted.
const PROMOTE_LIMIT: Duration = Duration::from_secs(30);
/// How long a switchover may take to settle (one node primary, the other following it).
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// How long a node may stay `handing-over` beside a standby before it is aborted.
const STUCK_AFTER: Duration = Duration::from_secs(10);

impl Cluster {
    /// The site's primary.
    pub fn primary(&self) -> &Node {
        &self.site[self.primary]
    }

    /// The site's standby.
    pub fn standby(&self) -> &Node {
        &self.site[1 - self.primary]
    }

    fn node_mut(&mut self, t: Target) -> &mut Node {
        match t {
            Target::Primary => &mut self.site[self.primary],
            Target::Standby => &mut self.site[1 - self.primary],
            Target::Partner(i) => &mut self.partners[i],
        }
    }

    /// Does `step` to the cluster and heals it; returns once the hold and the pause are over
    /// and every node is running again, with what came of it when that is worth a line (a
    /// switchover's outcome).
    pub fn apply(&mut self, step: &Step) -> Result<Option<String>, ClusterError> {
        let mut outcome = None;
        match step.fault {
            Fault::Crash(t) => {
                self.node_mut(t).kill()?;
                std::thread::sleep(step.hold);
                self.node_mut(t).start()?;
            }
            Fault::Failover => self.failover(step.hold)?,
            Fault::Switchover { on_standby } => outcome = Some(self.switchover(on_standby)?),
            Fault::Partition => self.link(Faults::CUT, step.hold),
            Fault::Loss(share) => self.link(
                Faults {
                    drop: share,
                    ..Faults::NONE
                },
                step.hold,
            ),
        }
        std::thread::sleep(step.pause);
        Ok(outcome)
    }

    /// `ttx switchover` on the primary, or on the standby (it asks the primary). Whatever it
    /// answered, the roles are then read from both nodes: swapped (the clients move to the new
    /// primary), unchanged (refused up front or abandoned: nothing lost either way), or stuck
    /// half-way, which is finished as the runbook says ([`Self::settle_switchover`]).
    fn switchover(&mut self, on_standby: bool) -> Result<String, ClusterError> {
        let runner = if on_standby {
            1 - self.primary
        } else {
            self.primary
        };
        let out = self.site[runner].run(&["switchover"])?;
        let said = if out.code == 0 {
            "done".to_string()
        } else {
            format!(
                "refused (exit {}): {}",
                out.code,
                out.stderr.lines().last().unwrap_or_default().trim()
            )
        };
        let (primary, aborted) = self.settle_switchover()?;
        let moved = primary != self.primary;
        if moved {
            self.primary = primary;
            self.endpoint
                .move_to(self.site[primary].runtime()?.api_addr);
        }
        Ok(format!(
            "{said}; {}{}",
            if moved {
                "roles swapped"
            } else {
                "roles unchanged"
            },
            if aborted {
                " (after switchover --abort)"
            } else {
                ""
            }
        ))
    }

    /// Waits until one of the site's nodes is `primary` and the other follows it, and returns
    /// which is the primary. A node left `handing-over` while the other is still a standby
    /// for [`STUCK_AFTER`] is made the primary again with `ttx switchover --abort` (then
    /// `true`).
    fn settle_switchover(&self) -> Result<(usize, bool), ClusterError> {
        let role = |i: usize| -> Result<String, ClusterError> {
            Ok(self.site[i].json(&["status"])?["role"]
                .as_str()
                .unwrap_or_default()
                .to_string())
        };
        let started = std::time::Instant::now();
        let mut aborted = false;
        let mut primary = None;
        wait_until("the switchover to settle", SETTLE_LIMIT, || {
            let roles = [role(0)?, role(1)?];
            for i in 0..2 {
                let other = &roles[1 - i];
                if roles[i] == "primary" && other.starts_with("standby:") {
                    primary = Some(i);
                    return Ok(true);
                }
                if roles[i].starts_with("handing-over:")
                    && other.starts_with("standby:")
                    && started.elapsed() >= STUCK_AFTER
                    && !aborted
                {
                    self.site[i].ok(&["switchover", "--abort"])?;
                    aborted = true;
                }
            }
            Ok(false)
        })?;
        Ok((primary.unwrap_or(self.primary), aborted))
    }

    fn link(&self, faults: Faults, hold: Duration) {
        let proxy = &self.proxies[self.primary];
        proxy.set(faults);
        std::thread::sleep(hold);
        proxy.set(Faults::NONE);
    }

    /// SIGKILL the primary, promote the standby (clients move to it), and after `hold` make
    /// the old primary the new one's standby with `ttx standby rejoin`, following it through
    /// the proxy in front of it.
    fn failover(&mut self, hold: Duration) -> Result<(), ClusterError> {
        let (old, new) = (self.primary, 1 - self.primary);
        self.site[old].kill()?;
        let promoting = &self.site[new];
        wait_until("the standby accepting ttx promote", PROMOTE_LIMIT, || {
            let out = promoting.run(&["promote"])?;
            Ok(out.code == 0 || out.stderr.contains("already the primary"))
        })?;
        self.primary = new;
        self.endpoint.move_to(self.site[new].runtime()?.api_addr);
        std::thread::sleep(hold);
        // The operator's way back: `ttx standby rejoin` from the new primary, through the
        // proxy in front of it (what each node's `replication.primary` already names). Its
        // events that never reached the new primary (a write in flight when it was killed)
        // go to the new primary's review list, not into its log.
        // A primary sends one snapshot at a time and says so ("try again shortly", exit 4):
        // retried, as an operator would.
        let via = self.proxies[new].addr().to_string();
        let rejoining = &self.site[old];
        wait_until("the old primary to rejoin", PROMOTE_LIMIT, || {
            let out = rejoining.run(&["standby", "rejoin", "--from", &via])?;
            match out.code {
                0 => Ok(true),
                4 if out.stderr.contains("try again") => {
                    std::thread::sleep(Duration::from_millis(500));
                    Ok(false)
                }
                code => Err(ClusterError::Command {
                    command: format!("standby rejoin --from {via}"),
                    code,
                    stderr: out.stderr,
                }),
            }
        })?;
        self.site[old].start()
    }
}

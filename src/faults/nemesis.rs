//! The campaign's nemesis: the live cluster (a site's two nodes with a UDP proxy in front of
//! each, two partners) and how each fault of the schedule is done to it and healed, with real
//! signals, real promotions and the real proxy.

use std::time::Duration;

use super::clients::Endpoint;
use super::schedule::{Fault, Step, Target};
use super::{Faults, UdpProxy};
use crate::cluster::{wait_until, ClusterError, Node};
use crate::datadir::DataDir;
use crate::replication::offline::standby_from_copy;

/// The nodes the campaign runs, and which of the site's two is the primary.
pub struct Cluster {
    /// The site's two nodes; `site[primary]` is the primary, the other its standby.
    pub site: [Node; 2],
    /// `proxies[i]` forwards to `site[i]`'s QUIC port: a standby follows its primary through
    /// the proxy in front of it, so the replication link can be cut or made lossy.
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
    /// and every node is running again.
    pub fn apply(&mut self, step: &Step) -> Result<(), ClusterError> {
        match step.fault {
            Fault::Crash(t) => {
                self.node_mut(t).kill()?;
                std::thread::sleep(step.hold);
                self.node_mut(t).start()?;
            }
            Fault::Failover => self.failover(step.hold)?,
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
        Ok(())
    }

    fn link(&self, faults: Faults, hold: Duration) {
        let proxy = &self.proxies[self.primary];
        proxy.set(faults);
        std::thread::sleep(hold);
        proxy.set(Faults::NONE);
    }

    /// SIGKILL the primary, promote the standby (clients move to it), and after `hold` make
    /// the old primary the new one's standby from a copy of its store (what `ttx standby
    /// clone` does over the network), following it through the proxy in front of it.
    fn failover(&mut self, hold: Duration) -> Result<(), ClusterError> {
        let (old, new) = (self.primary, 1 - self.primary);
        self.site[old].kill()?;
        let promoting = &self.site[new];
        wait_until("the standby accepting ttx promote", PROMOTE_LIMIT, || {
            let out = promoting.run(&["promote"])?;
            Ok(out.code == 0 || out.stderr.contains("already the primary"))
        })?;
        promoting.configure(|c| c.replication.primary = None)?;
        self.primary = new;
        self.endpoint.move_to(self.site[new].runtime()?.api_addr);
        std::thread::sleep(hold);
        standby_from_copy(&self.site[new].data(), &DataDir::new(self.site[old].dir()))
            .map_err(|e| ClusterError::Setup(e.to_string()))?;
        let via = self.proxies[new].addr().to_string();
        self.site[old].configure(|c| c.replication.primary = Some(via))?;
        self.site[old].start()
    }
}

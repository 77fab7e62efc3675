//! The fault campaign (in the spirit of Jepsen's set checks), run by `tests/it/campaign.rs`
//! and `ttx bench faults`: a site with a primary and a standby (replication through a UDP
//! proxy), two partners with a referral each, concurrent clients writing notes with
//! idempotency keys on all three sites, and a seeded schedule of faults (SIGKILL and restart
//! of any node, failovers with the old primary rejoining, `ttx switchover` on either node,
//! partitions and packet loss on the replication link). At the end, with everything healed, the checker demands every
//! acknowledged note exactly once on every node it must reach, and the standby's digest equal
//! to the primary's.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checker::{self, unstamped, Counts, Verdict, Write};
use super::clients::{Client, ClientLog, Endpoint, Ticket};
use super::nemesis::Cluster;
use super::schedule::{Rng, Schedule, Step};
use super::{Limits, UdpProxy};
use crate::cluster::federation::add_peer;
use crate::cluster::{wait_until, Ca, ClusterError, Node, Site, Ttx};
use crate::model::event::EventKind;
use crate::replication::{Mode, WhenGone};

/// What a campaign runs.
#[derive(Debug, Clone)]
pub struct CampaignOptions {
    /// The schedule's seed (printed; the same seed replays the same schedule).
    pub seed: u64,
    /// How long faults are injected (the set-up and the final check come on top).
    pub duration: Duration,
    /// Clients writing on the site (each partner has one more).
    pub site_clients: usize,
    /// Each client's pause between writes.
    pub pace: Duration,
}

/// What a campaign did and found.
#[derive(Debug, Clone)]
pub struct CampaignReport {
    /// The seed.
    pub seed: u64,
    /// The faults done, in order.
    pub faults: Vec<String>,
    /// The checker's verdict.
    pub verdict: Verdict,
    /// Refusals the clients got (a valid note refused: a bug).
    pub refused: Vec<String>,
    /// Retried attempts (failures during faults, then retried with the same key).
    pub retries: u64,
    /// Nodes whose own checks (`ttx verify`: quick_check, the search index) failed.
    pub integrity: Vec<String>,
    /// The standby's position and digest equal the primary's at the end.
    pub digests_equal: bool,
    /// The site's final (position, digest) on primary and standby.
    pub digests: [(i64, String); 2],
    /// How long the faults ran.
    pub elapsed: Duration,
}

impl CampaignReport {
    /// Nothing lost or doubled, no refusal, the standby identical to the primary.
    pub fn holds(&self) -> bool {
        self.verdict.holds()
            && self.refused.is_empty()
            && self.integrity.is_empty()
            && self.digests_equal
    }
}

impl CampaignReport {
    /// The report as `ttx bench faults --json` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        let v = &self.verdict;
        serde_json::json!({
            "seed": self.seed,
            "faults": self.faults,
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "writes": v.acked + v.unknown,
            "acknowledged": v.acked,
            "unknown": v.unknown,
            "unknown_applied": v.unknown_present,
            "retries": self.retries,
            "lost": v.lost,
            "duplicated": v.duplicated,
            "refused": self.refused,
            "integrity": self.integrity,
            "digests_equal": self.digests_equal,
            "holds": self.holds(),
        })
    }
}

impl std::fmt::Display for CampaignReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = &self.verdict;
        writeln!(
            f,
            "seed {}: {} faults in {:.0} s; {} writes tried, {} acknowledged, {} unknown \
             ({} of them applied), {} retries",
            self.seed,
            self.faults.len(),
            self.elapsed.as_secs_f64(),
            v.acked + v.unknown,
            v.acked,
            v.unknown,
            v.unknown_present,
            self.retries
        )?;
        writeln!(
            f,
            "lost {}, duplicated {}, refused {}; standby digest {} the primary's ({} at {})",
            v.lost.len(),
            v.duplicated.len(),
            self.refused.len(),
            if self.digests_equal {
                "equals"
            } else {
                "DIFFERS FROM"
            },
            &self.digests[0].1.get(..12).unwrap_or(""),
            self.digests[0].0
        )?;
        for (what, list) in [
            ("lost", &v.lost),
            ("duplicated", &v.duplicated),
            ("refused", &self.refused),
            ("failed its checks", &self.integrity),
        ] {
            for item in list.iter().take(20) {
                writeln!(f, "  {what}: {item}")?;
            }
        }
        Ok(())
    }
}

const SITE: &str = "noc-a";
const PARTNERS: [&str; 2] = ["telco-b", "carrier-c"];

/// Every note on `node`'s store by its text (without a partner's stamp), read from the log.
fn note_counts(node: &Node) -> Result<Counts, ClusterError> {
    let db = rusqlite::Connection::open_with_flags(
        node.data().database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .map_err(|e| ClusterError::Setup(format!("open {}'s store: {e}", node.label)))?;
    let mut stmt = db
        .prepare("SELECT body FROM events WHERE kind = 'note'")
        .map_err(|e| ClusterError::Setup(e.to_string()))?;
    let bodies = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ClusterError::Setup(format!("read {}'s notes: {e}", node.label)))?;
    let mut counts = Counts::new();
    for body in bodies {
        if let Ok(EventKind::NoteAdded { text, .. }) = serde_json::from_str(&body) {
            *counts.entry(unstamped(&text).to_string()).or_default() += 1;
        }
    }
    Ok(counts)
}

fn number(v: &serde_json::Value) -> Result<i64, ClusterError> {
    v["number"]
        .as_i64()
        .or_else(|| v["ticket"].as_i64())
        .ok_or_else(|| ClusterError::Setup(format!("no ticket number in {v}")))
}

/// Sets the cluster up in `root`: the site (sync, `block` when the standby is gone, so an
/// acknowledged write is always on the standby), the proxies, the partners and their
/// referrals. Returns the cluster and the clients.
fn set_up(
    ttx: &Ttx,
    root: &Path,
    rt: &tokio::runtime::Runtime,
    opts: &CampaignOptions,
    rng: &mut Rng,
) -> Result<(Cluster, Vec<Client>), ClusterError> {
    let ca = Ca::create(ttx, &root.join("ca"), "campaign")?;
    let Site {
        primary,
        mut standby,
        ..
    } = Site::start(&ca, root, SITE, |c| {
        c.replication.mode = Some(Mode::Sync);
        c.replication.when_standby_gone = WhenGone::Block;
        c.replication.block_timeout_ms = 2_000;
    })?;
    let proxy = |n: &Node, seed| -> Result<UdpProxy, ClusterError> {
        let target = n.listen_addr()?;
        rt.block_on(UdpProxy::start(target, seed, Limits::default()))
            .map_err(ClusterError::io("start a UDP proxy"))
    };
    let proxies = [proxy(&primary, rng.fork())?, proxy(&standby, rng.fork())?];
    // Each node follows (and, as the primary, knocks at) the other through its proxy.
    let mut primary = primary;
    for (node, other) in [(&mut standby, &proxies[0]), (&mut primary, &proxies[1])] {
        node.stop();
        let via = other.addr().to_string();
        node.configure(|c| c.replication.primary = Some(via))?;
        node.start()?;
    }
    // In `block` mode every write below waits for the standby: let it connect first.
    wait_until("the standby to connect", Duration::from_secs(60), || {
        let status = primary.json(&["status"])?;
        Ok(status["replication"]["primary"]["standby"].is_object())
    })?;
    let site_addrs = vec![
        primary.listen_addr()?.to_string(),
        standby.listen_addr()?.to_string(),
    ];
    let mut partners = Vec::new();
    for name in PARTNERS {
        let mut p = ca.node(root, name, "primary")?;
        p.start()?;
        p.pin_ports()?;
        add_peer(&p, SITE, &site_addrs, &[])?;
        add_peer(&primary, name, &[p.listen_addr()?.to_string()], &[])?;
        partners.push(p);
    }
    let token = std::fs::read_to_string(primary.data().admin_token())
        .map_err(ClusterError::io("read the admin token"))?
        .trim()
        .to_string();
    let local = number(&primary.json(&["new", "campaign: internal notes"])?)?;
    let mut site_tickets = vec![Ticket {
        number: local,
        shared: false,
        on: vec![SITE.to_string()],
    }];
    let mut clients = Vec::new();
    for (i, p) in partners.iter().enumerate() {
        let ours =
            number(&primary.json(&["new", &format!("campaign: referred to {}", PARTNERS[i])])?)?;
        primary.ok(&["refer", &ours.to_string(), "--to", PARTNERS[i]])?;
        let at = p.wait_referral(SITE, "in", "delivered")?;
        let theirs = number(&at)?;
        let id = at["id"].as_str().unwrap_or_default().to_string();
        p.ok(&["referral", "accept", &id])?;
        primary.wait_referral(PARTNERS[i], "out", "accepted")?;
        site_tickets.push(Ticket {
            number: ours,
            shared: true,
            on: vec![SITE.to_string(), PARTNERS[i].to_string()],
        });
        let partner_token = std::fs::read_to_string(p.data().admin_token())
            .map_err(ClusterError::io("read the admin token"))?
            .trim()
            .to_string();
        clients.push(Client {
            name: format!("{}1", &PARTNERS[i][..1]),
            endpoint: Endpoint::new(p.runtime()?.api_addr, partner_token),
            tickets: vec![Ticket {
                number: theirs,
                shared: true,
                on: vec![PARTNERS[i].to_string(), SITE.to_string()],
            }],
            seed: rng.fork(),
            pace: opts.pace,
        });
    }
    let endpoint = Endpoint::new(primary.runtime()?.api_addr, token);
    for i in 0..opts.site_clients.max(1) {
        clients.push(Client {
            name: format!("a{}", i + 1),
            endpoint: endpoint.clone(),
            tickets: site_tickets.clone(),
            seed: rng.fork(),
            pace: opts.pace,
        });
    }
    let [telco, carrier]: [Node; 2] = partners
        .try_into()
        .map_err(|_| ClusterError::Setup("two partners".into()))?;
    Ok((
        Cluster {
            site: [primary, standby],
            proxies,
            primary: 0,
            partners: [telco, carrier],
            endpoint,
        },
        clients,
    ))
}

/// How long the end waits for everything acknowledged to arrive everywhere.
const SETTLE: Duration = Duration::from_secs(120);

/// Runs a campaign in `root`; `progress` gets one line per fault.
pub fn run(
    ttx: &Ttx,
    root: &Path,
    opts: &CampaignOptions,
    mut progress: impl FnMut(&str),
) -> Result<CampaignReport, ClusterError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(ClusterError::io("start a runtime for the proxies"))?;
    let mut rng = Rng::new(opts.seed ^ 0x5EED);
    let (mut cluster, clients) = set_up(ttx, root, &rt, opts, &mut rng)?;
    progress(&format!(
        "seed {}: {} clients; faults for {} s",
        opts.seed,
        clients.len(),
        opts.duration.as_secs()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<std::thread::JoinHandle<ClientLog>> = clients
        .into_iter()
        .map(|c| {
            let stop = stop.clone();
            std::thread::spawn(move || c.run(stop))
        })
        .collect();
    let mut schedule = Schedule::new(opts.seed);
    let mut faults = Vec::new();
    let started = Instant::now();
    let mut outcome = Ok(());
    while started.elapsed() < opts.duration {
        let step: Step = schedule.next_step();
        progress(&format!(
            "  {:>5.1} s  {step}",
            started.elapsed().as_secs_f64()
        ));
        match cluster.apply(&step) {
            Ok(None) => faults.push(step.to_string()),
            Ok(Some(came)) => {
                progress(&format!("         {came}"));
                faults.push(format!("{step}: {came}"));
            }
            Err(e) => {
                faults.push(step.to_string());
                outcome = Err(e);
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let mut writes: Vec<Write> = Vec::new();
    let (mut refused, mut retries) = (Vec::new(), 0);
    for h in handles {
        let log = h.join().unwrap_or_default();
        writes.extend(log.writes);
        refused.extend(log.refused);
        retries += log.retries;
    }
    outcome?;
    let verdict = settle(&cluster, &writes)?;
    // Every node's own checks (quick_check, the search index), and the standby's digest.
    let mut integrity = Vec::new();
    for node in cluster.site.iter().chain(cluster.partners.iter()) {
        if let Err(e) = node.verify() {
            integrity.push(format!("{}: {e}", node.label));
        }
    }
    let mut digests = [(0, String::new()), (0, String::new())];
    let caught_up = wait_until("the standby catching up", Duration::from_secs(60), || {
        let (p, s) = (cluster.primary().digest()?, cluster.standby().digest()?);
        let same = p == s;
        digests = [p, s];
        Ok(same)
    });
    Ok(CampaignReport {
        seed: opts.seed,
        faults,
        verdict,
        refused,
        retries,
        integrity,
        digests_equal: caught_up.is_ok(),
        digests,
        elapsed,
    })
}

/// Checks until the verdict holds or [`SETTLE`] has passed (messages in outboxes are still
/// crossing when the faults stop); returns the last verdict.
fn settle(cluster: &Cluster, writes: &[Write]) -> Result<Verdict, ClusterError> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut counts = BTreeMap::new();
        counts.insert(SITE.to_string(), note_counts(cluster.primary())?);
        for (i, p) in cluster.partners.iter().enumerate() {
            counts.insert(PARTNERS[i].to_string(), note_counts(p)?);
        }
        let verdict = checker::check(writes, &counts);
        if verdict.holds() || Instant::now() >= deadline {
            return Ok(verdict);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

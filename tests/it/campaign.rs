//! The bounded fault campaign CI runs (about two minutes of faults): a site with a primary and
//! a standby (replication through the UDP proxy), two partners with a referral each, five
//! clients writing notes with idempotency keys, and a seeded schedule of SIGKILLs and restarts
//! of any node, failovers with the old primary rejoining, `ttx switchover` on either node,
//! partitions and packet loss. Every acknowledged note must be exactly once on every node it
//! must reach, and the standby's digest equal to the primary's.
//!
//! Two campaigns of a minute each: a fixed seed (the same schedule on every run, so a
//! regression shows on it first) and a fresh random one (a new schedule each run, so runs add
//! up to more than one schedule). Each prints its seed: `TTX_CAMPAIGN_SEED=N cargo test --test
//! it campaign` runs that seed alone for the two minutes, `ttx bench faults --seed N` replays
//! its schedule outside the tests.

use std::time::Duration;

use ttx::cluster::Ttx;
use ttx::faults::campaign::{self, CampaignOptions};

/// The seed every CI run tries first.
const FIXED_SEED: u64 = 20_261_201;
/// Faults for this long in all (split between the seeds).
const FAULTS_FOR: Duration = Duration::from_secs(120);

fn run_campaign(seed: u64, duration: Duration) {
    eprintln!(
        "fault campaign seed {seed} for {} s (replay: TTX_CAMPAIGN_SEED={seed} cargo test --test it campaign, or ttx bench faults --seed {seed})",
        duration.as_secs()
    );
    let root = tempfile::tempdir().unwrap();
    let opts = CampaignOptions {
        seed,
        duration,
        site_clients: 3,
        pace: Duration::from_millis(100),
    };
    let ttx = Ttx::at(env!("CARGO_BIN_EXE_ttx"));
    let report = campaign::run(&ttx, root.path(), &opts, |line| eprintln!("{line}"))
        .unwrap_or_else(|e| panic!("seed {seed}: the campaign could not run: {e}"));
    eprintln!("{report}");
    assert!(
        report.faults.len() >= 5,
        "seed {seed}: too few faults: {report}"
    );
    assert!(
        report.verdict.acked >= 100,
        "seed {seed}: too few writes: {report}"
    );
    assert!(report.holds(), "seed {seed}: {report}");
}

#[test]
fn a_seeded_campaign_of_crashes_failovers_switchovers_and_partitions_loses_nothing() {
    let seeds = match std::env::var("TTX_CAMPAIGN_SEED") {
        Ok(s) => vec![s
            .parse()
            .unwrap_or_else(|_| panic!("TTX_CAMPAIGN_SEED={s:?} is not a number"))],
        Err(_) => {
            let random = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            vec![FIXED_SEED, random]
        }
    };
    let each = FAULTS_FOR / seeds.len() as u32;
    for seed in seeds {
        run_campaign(seed, each);
    }
}

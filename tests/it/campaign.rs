//! The bounded fault campaign CI runs (about two minutes): a site with a primary and a standby
//! (replication through the UDP proxy), two partners with a referral each, five clients
//! writing notes with idempotency keys, and a seeded schedule of SIGKILLs and restarts of any
//! node, failovers with the old primary rejoining, partitions and packet loss. Every
//! acknowledged note must be exactly once on every node it must reach, and the standby's
//! digest equal to the primary's. The seed is printed: `ttx bench faults --seed N` replays it.

use std::time::Duration;

use ttx::cluster::Ttx;
use ttx::faults::campaign::{self, CampaignOptions};

#[test]
fn a_seeded_campaign_of_crashes_failovers_and_partitions_loses_nothing() {
    let seed = std::env::var("TTX_CAMPAIGN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("fault campaign seed {seed} (replay: TTX_CAMPAIGN_SEED={seed}, or ttx bench faults --seed {seed})");
    let root = tempfile::tempdir().unwrap();
    let opts = CampaignOptions {
        seed,
        duration: Duration::from_secs(45),
        site_clients: 3,
        pace: Duration::from_millis(100),
    };
    let ttx = Ttx::at(env!("CARGO_BIN_EXE_ttx"));
    let report = campaign::run(&ttx, root.path(), &opts, |line| eprintln!("{line}"))
        .unwrap_or_else(|e| panic!("seed {seed}: the campaign could not run: {e}"));
    eprintln!("{report}");
    assert!(report.faults.len() >= 5, "too few faults: {report}");
    assert!(report.verdict.acked >= 100, "too few writes: {report}");
    assert!(report.holds(), "seed {seed}: {report}");
}

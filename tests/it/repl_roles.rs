//! Role changes of a site's two nodes with real `ttx` processes: a deposed primary whose log
//! diverged is refused when it tries to follow the new primary; planned switchovers (and back)
//! under concurrent writers lose nothing acknowledged; a switchover without the standby is
//! refused and changes nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ttx::replication::{Mode, WhenGone};

use crate::common::TestNode;
use crate::repl::{
    assert_old_primary_fenced, position_and_digest, wait_caught_up, wait_until, Pair,
};
use crate::repl_faults::{create, pair_through_proxy, subjects};

fn async_mode(c: &mut ttx::config::Config) {
    c.replication.mode = Some(Mode::Async);
    c.replication.when_standby_gone = WhenGone::Degrade;
}

/// Lists the subjects of a node's tickets (JSON text, for `contains`).
fn listed(n: &crate::common::TestNode) -> String {
    n.cli(&["--json", "list"]).json().to_string()
}

#[test]
fn a_deposed_async_primary_with_a_tail_is_refused_as_diverged_when_it_follows_the_new_primary() {
    let mut p = Pair::new(async_mode);
    wait_caught_up(&p);
    // The standby goes away; the async primary acknowledges writes it alone has.
    p.standby.stop();
    for i in 0..3 {
        p.primary.cli(&["new", &format!("tail {i}")]).ok();
    }
    let old_head = p.primary.cli(&["--json", "status"]).json()["events"]
        .as_u64()
        .unwrap();
    p.primary.kill();
    p.standby.start();
    let promoted = p.standby.cli(&["--json", "promote"]).json();
    assert_eq!(promoted["epoch"], 2, "{promoted}");
    for i in 0..5 {
        p.standby
            .cli(&["new", &format!("on the new primary {i}")])
            .ok();
    }
    // The old primary comes back told to follow the new one: its log is not a prefix.
    let new_primary = p.standby_addr.to_string();
    p.primary
        .configure(|c| c.replication.primary = Some(new_primary.clone()));
    p.primary.start();
    wait_until("the old primary to see that it diverged", || {
        let s = p.primary.cli(&["--json", "status"]).json();
        s["role"] == "fenced:standby"
            && s["replication"]["following"]["diverged_at"].as_u64() == Some(old_head)
    });
    let s = p.primary.cli(&["--json", "status"]).json();
    let error = s["replication"]["following"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains(&format!(
            "holds events the primary never had at or below position {old_head}"
        )) && error.contains("ttx standby rejoin"),
        "{s}"
    );
    let text = p.primary.cli(&["status"]).ok().to_string();
    assert!(text.contains("DIVERGED"), "{text}");
    // Nothing of the tail reached the new primary, and the old one still refuses writes.
    assert!(!listed(&p.standby).contains("tail 0"));
    assert!(listed(&p.primary).contains("tail 2"));
    p.primary
        .cli(&["new", "on the deposed primary"])
        .fails(4, "fenced");
    // The new primary stopped knocking once the old one answered.
    assert_old_primary_fenced(&p.standby);
    p.primary.stop();
    p.standby.stop();
}

/// Writers that create tickets (subject = Idempotency-Key) on whichever node takes writes: on a
/// refusal during a switchover (`switching_over`, `not_primary`) or a lost answer they retry the
/// same key, at the other node if this one refused. Every acknowledged key is logged with the
/// ticket number it got.
struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<BTreeMap<String, i64>>>,
}

impl Writers {
    fn start(n: usize, nodes: [std::net::SocketAddr; 2], token: &str) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|w| {
                let (stop, token) = (stop.clone(), token.to_string());
                std::thread::spawn(move || {
                    let mut acked = BTreeMap::new();
                    let mut at = 0;
                    for j in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let key = format!("switch-w{w}-{j}");
                        for attempt in 0.. {
                            assert!(attempt < 2_000, "{key} never acknowledged");
                            let (code, body) = create(nodes[at], &token, &key);
                            if code == 201 {
                                acked.insert(key.clone(), body["number"].as_i64().unwrap());
                                break;
                            }
                            let refusal = body["error"]["code"].as_str().unwrap_or_default();
                            if refusal == "not_primary" {
                                at = 1 - at;
                            }
                            assert!(
                                matches!(code, 0 | 409 | 503),
                                "{key}: unexpected answer {code} {body}"
                            );
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    acked
                })
            })
            .collect();
        Writers { stop, threads }
    }

    fn stop(self) -> BTreeMap<String, i64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = BTreeMap::new();
        for t in self.threads {
            all.extend(t.join().unwrap());
        }
        all
    }
}

fn role(n: &TestNode) -> (String, u64) {
    let s = n.cli(&["--json", "status"]).json();
    (
        s["role"].as_str().unwrap().to_string(),
        s["epoch"].as_u64().unwrap(),
    )
}

#[test]
fn switchovers_there_and_back_under_writers_lose_nothing_acknowledged() {
    let mut p = Pair::new(|_| {});
    wait_caught_up(&p);
    // Both nodes' admin tokens are the site's: one token for both.
    let token = p.primary.admin_token();
    let writers = Writers::start(4, [p.primary.api_addr(), p.standby.api_addr()], &token);
    std::thread::sleep(Duration::from_millis(300));

    // Run on the primary: it hands over and becomes the standby's standby.
    let a = p.primary.cli(&["--json", "switchover"]).json();
    assert_eq!(
        (
            a["ran_on"].as_str(),
            a["new_primary"].as_str(),
            a["epoch"].as_u64()
        ),
        (Some("primary"), Some("standby"), Some(2)),
        "{a}"
    );
    assert_eq!(a["follows"], p.standby_addr.to_string(), "{a}");
    println!(
        "switchover 1: writes paused {} ms on the old primary",
        a["paused_ms"]
    );
    assert_eq!(role(&p.standby), ("primary".into(), 2));
    assert_eq!(role(&p.primary), ("standby:standby".into(), 2));
    p.primary
        .cli(&["new", "on the old primary"])
        .fails(4, "this node is a standby of \"standby\"");
    std::thread::sleep(Duration::from_millis(300));

    // Run on the node that is now the standby (the first primary): it asks, and takes over.
    wait_until("the old primary to follow the new one", || {
        p.primary.cli(&["--json", "status"]).json()["replication"]["following"]["connected"] == true
    });
    let b = p.primary.cli(&["--json", "switchover"]).json();
    assert_eq!(
        (
            b["ran_on"].as_str(),
            b["new_primary"].as_str(),
            b["epoch"].as_u64()
        ),
        (Some("standby"), Some("primary"), Some(3)),
        "{b}"
    );
    assert_eq!(role(&p.primary), ("primary".into(), 3));
    wait_until("the second node to be the standby again", || {
        role(&p.standby) == ("standby:primary".into(), 3)
    });
    std::thread::sleep(Duration::from_millis(300));
    let acked = writers.stop();
    assert!(acked.len() > 20, "too few writes: {}", acked.len());

    // Both nodes hold the same state, and every acknowledged write is there exactly once with
    // the number its writer was told.
    wait_caught_up(&p);
    assert_eq!(
        position_and_digest(&p.primary),
        position_and_digest(&p.standby)
    );
    p.standby.stop();
    p.primary.stop();
    for n in [&p.primary, &p.standby] {
        let found = subjects(&n.dir);
        for (key, number) in &acked {
            assert_eq!(
                found.get(key),
                Some(&vec![*number]),
                "{key} on {}",
                n.dir.display()
            );
        }
    }
    // After a restart each node keeps the role its store says (the config of the first
    // standby still names the first primary's address as `replication.primary`: an address
    // only, never a role).
    p.primary.start();
    p.standby.start();
    assert_eq!(role(&p.primary), ("primary".into(), 3));
    assert_eq!(role(&p.standby), ("standby:primary".into(), 3));
    p.primary.cli(&["new", "after the restarts"]).ok();
    wait_caught_up(&p);
    p.standby.stop();
    p.primary.stop();
}

#[test]
fn a_switchover_without_the_standby_is_refused_and_changes_nothing() {
    let mut p = Pair::new(|_| {});
    wait_caught_up(&p);
    p.standby.stop();
    p.primary.cli(&["switchover"]).fails(
        4,
        "no standby is connected: a switchover needs the standby streaming",
    );
    assert_eq!(role(&p.primary), ("primary".into(), 1));
    p.primary.cli(&["new", "still the primary"]).ok();
    // On a standby whose primary is down: refused the same way, nothing changes.
    p.standby.start();
    wait_caught_up(&p);
    p.primary.stop();
    p.standby
        .cli(&["switchover"])
        .fails(4, "this standby is not connected to its primary");
    assert_eq!(role(&p.standby), ("standby:primary".into(), 1));
    // An abort on a node that is not handing over changes nothing either.
    p.primary.start();
    let out = p.primary.cli(&["--json", "switchover", "--abort"]).json();
    assert_eq!(out["role"], "primary", "{out}");
    p.standby.stop();
    p.primary.stop();
}

#[test]
fn two_primaries_after_a_partition_the_higher_epoch_fences_the_other_and_only_its_writes_count() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The standby reaches its primary through a proxy; the partition cuts it.
    let (mut p, proxy) = pair_through_proxy(&rt, |c| c.replication.block_timeout_ms = 300);
    proxy.set(ttx::faults::Faults::CUT);
    let token = p.primary.admin_token();
    // The cut-off primary goes on (sync + degrade: acknowledged without the standby, loudly).
    for i in 0..3 {
        let (code, body) = create(p.primary.api_addr(), &token, &format!("old-{i}"));
        assert_eq!(code, 201, "{body}");
    }
    // The backup NOC promotes its standby: two nodes now take writes.
    let promoted = p.standby.cli(&["--json", "promote"]).json();
    assert_eq!(promoted["epoch"], 2, "{promoted}");
    for i in 0..3 {
        let (code, body) = create(p.standby.api_addr(), &token, &format!("new-{i}"));
        assert_eq!(code, 201, "{body}");
    }
    // The old primary cannot be promoted over it: it is (it believes) the primary already.
    p.primary
        .cli(&["promote"])
        .fails(4, "this node is already the primary (epoch 1)");
    // The partition heals: the first frame with epoch 2 that reaches the old primary fences it.
    proxy.set(ttx::faults::Faults::NONE);
    wait_until("the epoch-1 primary to be fenced", || {
        role(&p.primary) == ("fenced:standby".into(), 2)
    });
    assert_old_primary_fenced(&p.standby);
    let (code, body) = create(p.primary.api_addr(), &token, "old-after-heal");
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (409, Some("not_primary")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fenced"),
        "{body}"
    );
    let (code, _) = create(p.standby.api_addr(), &token, "new-after-heal");
    assert_eq!(code, 201);
    // What counts is the epoch-2 primary's log: its writes, none of the loser's partition
    // writes (those stay in the loser's store, for review, and never reach the site's log).
    p.standby.stop();
    p.primary.stop();
    let winner = subjects(&p.standby.dir);
    let loser = subjects(&p.primary.dir);
    for i in 0..3 {
        assert_eq!(winner.get(&format!("new-{i}")).map(Vec::len), Some(1));
        assert!(!winner.contains_key(&format!("old-{i}")), "{winner:?}");
        assert_eq!(loser.get(&format!("old-{i}")).map(Vec::len), Some(1));
    }
    assert!(winner.contains_key("new-after-heal"));
    assert!(!loser.contains_key("old-after-heal"));
}

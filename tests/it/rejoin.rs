//! `ttx standby rejoin` and `ttx review` with real `ttx` processes over real QUIC: a deposed
//! async primary with an unshipped tail becomes the new primary's standby and its tail is on
//! the new primary's review list (applied and discarded items replicate); a rejoin killed with
//! SIGKILL at two points and rerun leaves exactly one item per tail event; a deposed sync
//! primary without a tail rejoins with an empty list; a node that is the primary is refused.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use ttx::replication::{Mode, WhenGone};

use crate::common::{ttx, TestNode};
use crate::repl::{position_and_digest, wait_caught_up, wait_until, Pair};

fn async_mode(c: &mut ttx::config::Config) {
    c.replication.mode = Some(Mode::Async);
    c.replication.when_standby_gone = WhenGone::Degrade;
}

/// The review list on a node (JSON array).
fn review_list(n: &TestNode) -> Vec<serde_json::Value> {
    n.cli(&["--json", "review", "list"])
        .json()
        .as_array()
        .expect("a list")
        .clone()
}

/// A pair whose async primary wrote a tail the standby never got (three tickets, a note and a
/// 200 KB capture on ticket 1), then was killed; the standby was promoted and took writes of its own. Returns
/// the pair (the old primary stopped) and the old primary's head and the fork position.
fn deposed_with_a_tail() -> (Pair, u64, u64) {
    let mut p = Pair::new(async_mode);
    p.primary.cli(&["new", "before the failover"]).ok();
    wait_caught_up(&p);
    let fork = position_and_digest(&p.primary).0 as u64;
    p.standby.stop();
    for i in 0..3 {
        p.primary.cli(&["new", &format!("tail {i}")]).ok();
    }
    p.primary
        .cli(&["note", "1", "written on the deposed primary only"])
        .ok();
    // A pasted capture: the tail is more than one request of the old limit (64 KiB).
    let capture = "tcpdump: 10.0.0.1 > 10.0.0.2: ICMP echo request\n".repeat(4_000);
    p.primary
        .cli_with(&["note", "1", "-"], None, Some(capture.as_bytes()))
        .ok();
    let old_head = position_and_digest(&p.primary).0 as u64;
    p.primary.kill();
    p.standby.start();
    let promoted = p.standby.cli(&["--json", "promote"]).json();
    assert_eq!(promoted["epoch"], 2, "{promoted}");
    for i in 0..2 {
        p.standby
            .cli(&["new", &format!("on the new primary {i}")])
            .ok();
    }
    (p, old_head, fork)
}

fn rejoin_args(p: &Pair) -> Vec<String> {
    vec![
        "standby".into(),
        "rejoin".into(),
        "--from".into(),
        p.standby_addr.to_string(),
    ]
}

/// Runs `ttx standby rejoin` with the pause hook at `step`, waits until it paused there, and
/// SIGKILLs it.
fn rejoin_killed_after(p: &Pair, step: &str) {
    let mut c = ttx();
    c.env("TTX_DIR", &p.primary.dir)
        .env("TTX_REJOIN_PAUSE", step)
        .args(rejoin_args(p))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn ttx");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let paused = loop {
        match lines.next() {
            Some(Ok(line)) if line.contains(&format!("paused after {step}")) => break true,
            Some(Ok(_)) => continue,
            _ => break false,
        }
    };
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert!(paused, "rejoin did not reach {step}: {status:?}");
}

/// A stopped node's head, head event id and role, read from its store.
fn log_and_role(n: &TestNode) -> (i64, Vec<u8>, String, String) {
    let db = crate::common::open_db(&n.dir);
    let (head, id) = db
        .query_row(
            "SELECT seq, id FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let meta = |k: &str| -> String {
        db.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .unwrap()
    };
    (head, id, meta("role"), meta("epoch"))
}

fn kinds(items: &[serde_json::Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["item"]["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_deposed_async_primary_rejoins_as_standby_and_its_tail_is_kept_for_review() {
    let (mut p, old_head, fork) = deposed_with_a_tail();
    let args = rejoin_args(&p);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let done = p.primary.cli(&[&["--json"], &args[..]].concat()).json();
    assert_eq!(done["fork"].as_u64(), Some(fork), "{done}");
    assert_eq!(done["tail"].as_u64(), Some(old_head - fork), "{done}");
    assert_eq!(done["queued"].as_u64(), Some(old_head - fork), "{done}");
    assert_eq!(done["cloned"], true, "{done}");
    let kept = p.primary.dir.join("ttx.db.deposed-epoch1");
    assert!(kept.exists(), "{done}");
    assert_eq!(done["kept"].as_str(), kept.to_str());

    // Every tail event is an item on the new primary, in the tail's order.
    let items = review_list(&p.standby);
    assert_eq!(items.len() as u64, old_head - fork, "{items:?}");
    let positions: Vec<u64> = items
        .iter()
        .map(|i| i["item"]["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, ((fork + 1)..=old_head).collect::<Vec<_>>());
    let kinds = kinds(&items);
    assert_eq!(
        kinds.iter().filter(|k| *k == "created").count(),
        3,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "note").count(),
        2,
        "{kinds:?}"
    );
    assert!(items.iter().all(|i| i["state"] == "pending"));
    let text = p.standby.cli(&["review", "list"]).ok().to_string();
    assert!(
        text.contains("pending") && text.contains("created"),
        "{text}"
    );

    // The rejoined node follows the new primary and holds the same state.
    p.primary.start();
    wait_until("the rejoined node to catch up", || {
        position_and_digest(&p.primary) == position_and_digest(&p.standby)
    });
    let status = p.primary.cli(&["--json", "status"]).json();
    assert_eq!(status["role"], "standby:standby", "{status}");
    let against = p
        .primary
        .cli(&["--json", "verify", "--against", &p.standby_addr.to_string()])
        .json();
    assert_eq!(against["against"]["same"], true, "{against}");

    // Apply the tail's first ticket: a new ticket, its number reported.
    let number_of = |kind: &str, nth: usize| {
        items
            .iter()
            .filter(|i| i["item"]["kind"] == kind)
            .nth(nth)
            .unwrap()["number"]
            .as_i64()
            .unwrap()
    };
    let created = number_of("created", 0).to_string();
    let applied = p
        .standby
        .cli(&["--json", "review", "apply", &created])
        .json();
    assert_eq!(applied["review_state"], "applied", "{applied}");
    let ticket = applied["ticket"].as_i64().unwrap().to_string();
    let shown = p.standby.cli(&["--json", "show", &ticket]).json();
    assert!(shown.to_string().contains("tail 0"), "{shown}");
    // The note on ticket 1 goes to ticket 1, marked recovered.
    let note = number_of("note", 0).to_string();
    let applied = p.standby.cli(&["--json", "review", "apply", &note]).json();
    assert_eq!(applied["ticket"], 1, "{applied}");
    let shown = p.standby.cli(&["--json", "show", "1"]).json().to_string();
    assert!(
        shown.contains("written on the deposed primary only")
            && shown.contains("recovered from epoch 1"),
        "{shown}"
    );
    // Discard another, with a reason; deciding it again is refused, nothing written.
    let discard = number_of("created", 1).to_string();
    let out = p
        .standby
        .cli(&[
            "review",
            "discard",
            &discard,
            "--reason",
            "duplicate of TT 2",
        ])
        .ok()
        .to_string();
    assert!(out.contains("discarded"), "{out}");
    let before = position_and_digest(&p.standby);
    p.standby
        .cli(&["review", "apply", &discard])
        .fails(4, "already discarded");
    p.standby
        .cli(&["review", "discard", &created])
        .fails(4, "already applied");
    p.standby
        .cli(&["review", "show", "999"])
        .fails(3, "no review item 999");
    assert_eq!(position_and_digest(&p.standby), before);
    // A viewer may not see or decide the list.
    let viewer = p
        .standby
        .cli(&["--json", "operator", "add", "vic", "--role", "viewer"])
        .json();
    let token = viewer["token"].as_str().expect("token").to_string();
    p.standby
        .cli_with(&["review", "list"], Some(&token), None)
        .fails(5, "not an admin");

    // The decisions replicated: the standby shows them.
    wait_until("the decisions to replicate", || {
        position_and_digest(&p.primary) == position_and_digest(&p.standby)
    });
    let on_standby = review_list(&p.primary);
    let states: Vec<&str> = on_standby
        .iter()
        .map(|i| i["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "applied").count(),
        2,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "discarded").count(),
        1,
        "{states:?}"
    );
    let shown = p
        .primary
        .cli(&["--json", "review", "show", &discard])
        .json();
    assert_eq!(shown["outcome"], "duplicate of TT 2", "{shown}");

    // Run again on the stopped standby: nothing to do.
    p.primary.stop();
    let again = p.primary.cli(&args).ok().to_string();
    assert!(again.contains("already the standby"), "{again}");
    assert_eq!(review_list(&p.standby).len() as u64, old_head - fork);
    p.standby.stop();
}

#[test]
fn a_rejoin_killed_at_any_step_and_rerun_keeps_exactly_one_item_per_tail_event() {
    let (mut p, old_head, fork) = deposed_with_a_tail();
    // Killed right after the tail was handed over.
    rejoin_killed_after(&p, "queued");
    assert!(p.primary.data().database().exists());
    assert_eq!(review_list(&p.standby).len() as u64, old_head - fork);
    // Killed between moving the old store aside and moving the new one in.
    rejoin_killed_after(&p, "moved");
    assert!(!p.primary.data().database().exists());
    assert!(p.primary.dir.join("ttx.db.deposed-epoch1").exists());
    // The rerun finishes from the store kept aside.
    let args = rejoin_args(&p);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let done = p.primary.cli(&[&["--json"], &args[..]].concat()).json();
    assert_eq!(done["tail"].as_u64(), Some(old_head - fork), "{done}");
    assert_eq!(done["queued"], 0, "{done}");
    assert_eq!(done["known"].as_u64(), Some(old_head - fork), "{done}");
    let items = review_list(&p.standby);
    assert_eq!(items.len() as u64, old_head - fork, "{items:?}");
    let mut ids: Vec<&str> = items
        .iter()
        .map(|i| i["item"]["id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, old_head - fork);
    p.primary.start();
    wait_until("the rejoined node to catch up", || {
        position_and_digest(&p.primary) == position_and_digest(&p.standby)
    });
    p.primary.stop();
    p.standby.stop();
}

#[test]
fn a_deposed_sync_primary_without_a_tail_rejoins_with_an_empty_list() {
    let mut p = Pair::new(|_| {});
    for i in 0..5 {
        p.primary.cli(&["new", &format!("sync {i}")]).ok();
    }
    wait_caught_up(&p);
    p.primary.stop();
    let args = rejoin_args(&p);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Still the primary (the standby holds no newer epoch): refused, nothing changed.
    let before = log_and_role(&p.primary);
    p.primary
        .cli(&args)
        .fails(4, "this node is the site's primary (epoch 1");
    assert_eq!(log_and_role(&p.primary), before);
    p.standby.cli(&["--json", "promote"]).json();
    p.standby.cli(&["new", "after the promotion"]).ok();
    let done = p.primary.cli(&[&["--json"], &args[..]].concat()).json();
    assert_eq!(done["tail"], 0, "{done}");
    assert_eq!(done["cloned"], false, "{done}");
    assert!(done["kept"].is_null(), "{done}");
    assert!(review_list(&p.standby).is_empty());
    p.primary.start();
    wait_until("the rejoined node to catch up", || {
        position_and_digest(&p.primary) == position_and_digest(&p.standby)
    });
    let status = p.primary.cli(&["--json", "status"]).json();
    assert_eq!(status["role"], "standby:standby", "{status}");
    // A running node is refused.
    p.primary.cli(&args).fails(4, "is running");
    p.primary.stop();
    p.standby.stop();
}

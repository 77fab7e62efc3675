//! The site log across real `ttx` processes: a standby made from a snapshot of its primary
//! (with its own node name) has the primary's position and digest, refuses writes naming the
//! primary, and a promotion survives a SIGKILL right after it returns.

use ttx::replication::offline::standby_from_copy;

use crate::common::{open_db, TestNode};

/// `ttx init` a second node of `primary`'s site named `standby`, then replace its store with a
/// snapshot of the (stopped) primary's store, made a standby of `primary`. The primary's admin
/// token works on it (operators are part of the site's state).
fn standby_of(primary: &TestNode) -> TestNode {
    standby_from_snapshot(primary, &[])
}

/// [`standby_of`] with more `ttx init` arguments for the standby (its federation, listen
/// address).
fn standby_from_snapshot(primary: &TestNode, extra: &[&str]) -> TestNode {
    let mut args = vec!["--node", "standby"];
    args.extend_from_slice(extra);
    let standby = TestNode::init_with("noc-a", &args);
    standby_from_copy(&primary.data(), &standby.data()).unwrap();
    standby
}

#[test]
fn a_standby_from_a_snapshot_matches_its_primary_and_refuses_writes() {
    let mut primary = TestNode::start_new("noc-a");
    primary.cli(&["new", "core1 bgp flap"]).ok();
    primary.cli(&["note", "1", "traceroute shows loss"]).ok();
    let p = primary.cli(&["--json", "verify"]).json();
    assert_eq!(
        (p["role"].as_str(), p["epoch"].as_u64()),
        (Some("primary"), Some(1))
    );
    assert_eq!(p["ok"], true, "{p}");
    primary.stop();

    let mut standby = standby_of(&primary);
    standby.start();
    let s = standby.cli(&["--json", "verify"]).json();
    assert_eq!(s["position"], p["position"]);
    assert_eq!(s["digest"], p["digest"]);
    assert_eq!(
        (s["role"].as_str(), s["primary"].as_str()),
        (Some("standby"), Some("primary"))
    );
    let text = standby.cli(&["verify"]).ok().to_string();
    assert!(text.contains("quick_check ok  search index ok"), "{text}");

    standby
        .cli(&["new", "written on the standby"])
        .fails(4, "this node is a standby of \"primary\"");
    let (code, body) = standby.http(
        "POST",
        "/v1/tickets",
        Some(&standby.admin_token()),
        Some(br#"{"subject": "raw"}"#),
    );
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (409, Some("not_primary"))
    );
    let status = standby.cli(&["--json", "status"]).json();
    assert_eq!(
        (status["role"].as_str(), status["epoch"].as_u64()),
        (Some("standby:primary"), Some(1))
    );
    standby.stop();
}

#[test]
fn a_promotion_survives_a_sigkill_right_after_it_returns() {
    let mut primary = TestNode::start_new("noc-a");
    primary.cli(&["new", "core1 bgp flap"]).ok();
    primary.stop();
    let mut standby = standby_of(&primary);
    standby.start();
    let promoted = standby.cli(&["--json", "promote"]).json();
    standby.kill();
    assert_eq!(promoted["epoch"], 2);
    let position = promoted["position"].as_i64().unwrap();

    standby.start();
    let v = standby.cli(&["--json", "verify"]).json();
    assert_eq!(
        (v["role"].as_str(), v["epoch"].as_u64()),
        (Some("primary"), Some(2))
    );
    assert_eq!(v["position"].as_i64(), Some(position));
    assert_eq!(v["ok"], true, "{v}");
    standby
        .cli(&["note", "1", "written by the new primary"])
        .ok();
    standby
        .cli(&["promote"])
        .fails(4, "this node is already the primary (epoch 2)");
    standby.stop();
    let db = open_db(&standby.dir);
    let (kind, epoch, node): (String, i64, String) = db
        .query_row(
            "SELECT kind, epoch, origin_node FROM events WHERE seq = ?1",
            [position],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (kind.as_str(), epoch, node.as_str()),
        ("epoch-started", 2, "standby")
    );
    let later: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM events WHERE seq > ?1 AND epoch = 2 AND origin_node = 'standby'",
            [position],
            |r| r.get(0),
        )
        .unwrap();
    // The note and the answer to its idempotency key (the CLI sends one with every write).
    assert_eq!(later, 2);
    let older: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM events WHERE seq < ?1 AND epoch = 2",
            [position],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(older, 0, "no event of epoch 2 before its epoch-start");
}

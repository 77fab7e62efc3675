//! The ticket lifecycle through the CLI against a running node.

use crate::common::TestNode;

#[test]
fn the_whole_chart_through_the_cli() {
    let node = TestNode::start_new("noc-a");
    let new = node
        .cli(&[
            "--json",
            "new",
            "core1.ams BGP flap to AS3356",
            "--priority",
            "1",
            "--severity",
            "2",
            "--queue",
            "backbone",
        ])
        .json();
    assert_eq!(new["number"], 1);
    assert_eq!(new["status"], "new");
    assert!(uuid::Uuid::parse_str(new["id"].as_str().unwrap()).is_ok());

    node.cli(&["note", "1", "traceroute shows loss after ae0.core1.ams"])
        .ok();
    node.cli(&[
        "note",
        "1",
        "customer confirms outage",
        "--shared",
        "--at",
        "-15m",
    ])
    .ok();
    node.cli(&["take", "1"]).ok();
    node.cli(&[
        "set",
        "1",
        "cc=bob,carol",
        "cc+=dave",
        "next-action=call telco",
        "circuit=AMS-LON-7",
        "cf.vendor=acme",
    ])
    .ok();
    node.cli(&[
        "new",
        "customer says site unreachable",
        "--type",
        "complaint",
    ])
    .ok();
    node.cli(&["link", "2", "--member-of", "1"]).ok();
    node.cli(&["set", "1", "status=pending"]).ok();
    node.cli(&["set", "1", "status=open"]).ok();
    node.cli(&[
        "resolve",
        "1",
        "--resolution",
        "replaced optic",
        "--component",
        "xe-0/0/1",
    ])
    .ok();
    node.cli(&["reopen", "1", "--reason", "flapping again"])
        .ok();
    node.cli(&["resolve", "1", "--resolution", "replaced line card"])
        .ok();
    node.cli(&["close", "1", "--checked-by", "erin"])
        .fails(2, "checked-by \"erin\" is not an operator of this site");
    node.cli(&["close", "1", "--checked-by", "ext:erin"]).ok();

    let chart = node.cli(&["--json", "show", "1"]).json();
    let t = &chart["ticket"];
    assert_eq!(t["status"], "closed");
    assert_eq!(t["priority"], 1);
    assert_eq!(t["owner"], "admin");
    assert_eq!(
        t["watchers"]["cc"],
        serde_json::json!(["bob", "carol", "dave"])
    );
    assert_eq!(t["circuit"], "AMS-LON-7");
    assert_eq!(t["custom"]["vendor"], "acme");
    assert_eq!(t["resolution"]["checked_by"], "ext:erin");
    assert_eq!(t["resolution"]["resolution"], "replaced line card");
    assert!(t["resolution"]["total_ms"].as_i64().unwrap() >= 0);
    let history = chart["history"].as_array().unwrap();
    let kinds: Vec<&str> = history
        .iter()
        .map(|h| {
            h["event"]["kind"]
                .as_object()
                .unwrap()
                .keys()
                .next()
                .unwrap()
                .as_str()
        })
        .collect();
    assert_eq!(kinds.first(), Some(&"TicketCreated"));
    assert_eq!(kinds.last(), Some(&"Closed"));
    assert!(kinds.contains(&"Reopened"));
    // Both times of a back-dated update are kept.
    let shared = history
        .iter()
        .find(|h| h["event"]["kind"]["NoteAdded"]["shared"] == true)
        .expect("shared note");
    let happened = shared["event"]["kind"]["NoteAdded"]["happened_at"]
        .as_i64()
        .unwrap();
    assert!(happened < shared["event"]["at"].as_i64().unwrap() - 14 * 60 * 1000);
    let text = node.cli(&["show", "1"]).ok().to_string();
    assert!(
        text.contains("TT 1  [trouble] core1.ams BGP flap to AS3356"),
        "{text}"
    );
    assert!(text.contains("<- member-of  TT 2"), "{text}");
    assert!(text.contains("reopened: flapping again"), "{text}");

    // Open work by priority, filtered.
    let list = node.cli(&["--json", "list"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["number"], 2);
    assert_eq!(
        node.cli(&["--json", "list", "--status", "closed"]).json()[0]["number"],
        1
    );
    assert_eq!(
        node.cli(&["--json", "list", "--queue", "backbone", "--status", "closed"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    node.cli(&["take", "2"]).ok();
    assert_eq!(
        node.cli(&["--json", "list", "--mine"]).json()[0]["number"],
        2
    );

    let hits = node.cli(&["--json", "search", "ae0.core1.ams"]).json();
    assert_eq!(hits[0]["ticket"]["number"], 1);
    assert_eq!(
        node.cli(&["--json", "search", "unreachable"]).json()[0]["ticket"]["number"],
        2
    );
    let status = node.cli(&["--json", "status"]).json();
    assert_eq!(status["site"], "noc-a");
    assert_eq!(status["tickets"], 2);
    assert_eq!(status["api_addr"], node.api_addr().to_string());
}

#[test]
fn timers_fire_once_and_survive_restarts() {
    let mut node = TestNode::start_new("noc-a");
    node.cli(&["new", "waiting on telco"]).ok();
    node.cli(&["timer", "1", "--in", "2s", "Remind Site: TT 1"])
        .ok();
    node.cli(&["timer", "1", "--in", "1h", "later"]).ok();
    assert_eq!(
        node.cli(&["--json", "alerts"]).json(),
        serde_json::json!([])
    );
    // Stopped before it is due, started after: it fires on start, once.
    node.stop();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    node.start();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let alerts = loop {
        let a = node.cli(&["--json", "alerts"]).json();
        if !a.as_array().unwrap().is_empty() || std::time::Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(alerts.as_array().unwrap().len(), 1, "{alerts}");
    assert_eq!(alerts[0]["text"], "Remind Site: TT 1");
    node.stop();
    node.start();
    let chart = node.cli(&["--json", "show", "1"]).json();
    let fired = chart["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"]["kind"].get("TimerFired").is_some())
        .count();
    assert_eq!(fired, 1);
    assert!(node.cli(&["alerts"]).ok().contains("Remind Site: TT 1"));
}

#[test]
fn operators_roles_and_tokens() {
    let node = TestNode::start_new("noc-a");
    let added = node
        .cli(&["--json", "operator", "add", "vera", "--role", "viewer"])
        .json();
    let viewer = added["token"].as_str().unwrap().to_string();
    let op = node
        .cli(&["--json", "operator", "add", "oscar", "--role", "operator"])
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    node.cli_with(&["new", "by oscar"], Some(&op), None).ok();
    assert_eq!(
        node.cli_with(&["--json", "show", "1"], Some(&viewer), None)
            .json()["ticket"]["opened_by"],
        "oscar"
    );
    node.cli_with(&["note", "1", "viewer tries"], Some(&viewer), None)
        .fails(5, "vera is a viewer");
    node.cli_with(
        &["operator", "add", "x", "--role", "admin"],
        Some(&op),
        None,
    )
    .fails(5, "not an admin");
    node.cli_with(&["list"], Some("ttx_bogus"), None)
        .fails(5, "invalid token");
    node.cli(&["operator", "add", "oscar", "--role", "viewer"])
        .fails(4, "exists");
    node.cli(&["operator", "add", "Bad Name", "--role", "viewer"])
        .fails(2, "invalid operator name");
    node.cli(&["operator", "add", "z", "--role", "root"])
        .fails(2, "unknown role");
    let list = node.cli(&["--json", "operator", "list"]).json();
    assert_eq!(list.as_array().unwrap().len(), 3);
    node.cli(&["operator", "remove", "oscar"]).ok();
    node.cli_with(&["list"], Some(&op), None)
        .fails(5, "invalid token");
    node.cli(&["operator", "remove", "nobody"])
        .fails(3, "no operator");
    node.cli(&["operator", "remove", "admin"])
        .fails(4, "last admin");
}

#[test]
fn the_quick_start_creates_the_node_on_first_run() {
    use crate::common::{run, ttx};
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("noc-a");
    let dir_s = dir.to_str().unwrap().to_string();
    for round in 0..2 {
        // First round creates the node; the second finds it and serves it again.
        let mut child = ttx()
            .args(["serve", &dir_s, "--site", "noc-a"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.join("run/node.json").exists() {
            assert!(Instant::now() < deadline, "no node.json");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut c = ttx();
        c.env("TTX_DIR", &dir)
            .args(["--json", "new", "first ticket"]);
        assert_eq!(run(c, None).json()["number"], round + 1);
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
    let mut c = ttx();
    c.args(["serve", &dir_s, "--site", "noc-b"]);
    run(c, None).fails(4, "belongs to site noc-a");
}

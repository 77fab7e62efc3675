//! Attachments across the referral exchange between real nodes: `ttx-exchange/2` between two
//! nodes that speak it (the file arrives intact, once, both ways; an internal attachment never
//! leaves), a node configured for `ttx-exchange/1` only (referrals flow both ways, an
//! attachment arrives as a named shared note), and a receiver SIGKILLed mid-attachment.

use std::time::{Duration, Instant};

use crate::common::{open_db, TestNode};
use crate::exchange::{refer_accepted, wait_history};
use crate::federation::{add_peer, Ca};

fn sample(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn attach(node: &TestNode, ticket: i64, name: &str, data: &[u8], shared: bool) -> String {
    let file = node.tmp.path().join(name);
    std::fs::write(&file, data).unwrap();
    let t = ticket.to_string();
    let mut args = vec!["--json", "attach", &t, file.to_str().unwrap()];
    if shared {
        args.push("--shared");
    }
    node.cli(&args).json()["sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits (bounded) until ticket `number` on `node` lists an attachment named `name`.
fn wait_attachment(node: &TestNode, number: i64, name: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let list = node
            .cli(&["--json", "attachments", &number.to_string()])
            .json();
        if let Some(a) = list.as_array().unwrap().iter().find(|a| a["name"] == name) {
            return a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached ticket {number}: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Downloads attachment `id` from `node`; its bytes.
fn download(node: &TestNode, id: &str) -> Vec<u8> {
    let out = node.tmp.path().join(format!("dl-{id}"));
    node.cli(&["attachment", "get", id, "-o", out.to_str().unwrap()])
        .ok();
    std::fs::read(out).unwrap()
}

fn ping_version(from: &TestNode, site: &str) -> String {
    from.cli(&["--json", "peer", "ping", site]).json()["version"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn exchange_v2_carries_a_shared_attachment_intact_and_once_both_ways_and_never_an_internal_one() {
    let ca = Ca::new("eu");
    let a = ca.node("eu", "noc-a");
    let b = ca.node("eu", "telco-b");
    add_peer(&a, &b, "telco-b", &[]);
    add_peer(&b, &a, "noc-a", &[]);
    assert_eq!(ping_version(&a, "telco-b"), "ttx-exchange/2");
    let (ours, theirs) = refer_accepted(&a, &b, "loss on LON-PAR-3");
    let their_ticket = theirs["ticket"].as_i64().unwrap();

    // Internal first: it must never leave. Then a shared one of three chunks.
    let secret = b"SECRET-CONFIG enable secret 5 $1$abc".repeat(10);
    attach(&a, ours, "internal.cfg", &secret, false);
    let data = sample(600 * 1024 + 3, 1);
    let sha = attach(&a, ours, "capture.pcap", &data, true);
    let got = wait_attachment(&b, their_ticket, "capture.pcap");
    assert_eq!(got["sha256"], sha.as_str());
    assert_eq!(got["size"], data.len() as u64);
    assert_eq!(got["origin_site"], "noc-a");
    assert_eq!(download(&b, got["id"].as_str().unwrap()), data);

    // And back: B's shared attachment reaches A.
    let back = sample(10_000, 9);
    let back_sha = attach(&b, their_ticket, "otdr.sor", &back, true);
    let got = wait_attachment(&a, ours, "otdr.sor");
    assert_eq!(got["sha256"], back_sha.as_str());
    assert_eq!(download(&a, got["id"].as_str().unwrap()), back);

    // Once: a note written after them arrives after them, and B still has exactly one copy.
    a.cli(&["note", &ours.to_string(), "--shared", "barrier"])
        .ok();
    wait_history(&b, their_ticket, "[noc-a] barrier");
    let list = b
        .cli(&["--json", "attachments", &their_ticket.to_string()])
        .json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["capture.pcap", "otdr.sor"], "{list}");
    // The internal attachment was never queued for B and is nowhere in B's store.
    let queued: Vec<String> = first_column(&open_db(&a.dir), "SELECT body FROM exchange_outbox");
    assert!(
        queued.iter().all(|q| !q.contains("internal.cfg")),
        "{queued:?}"
    );
    let db = open_db(&b.dir);
    let leaked: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM events WHERE body LIKE '%internal.cfg%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leaked, 0);
    let chunks: Vec<Vec<u8>> = first_column(&db, "SELECT data FROM attachment_chunks");
    assert!(
        chunks
            .iter()
            .all(|c| !c.windows(13).any(|w| w == b"SECRET-CONFIG")),
        "internal bytes reached B"
    );
}

#[test]
fn a_peer_configured_for_exchange_v1_only_gets_referrals_both_ways_and_a_named_note_for_an_attachment(
) {
    let ca = Ca::new("eu");
    let a = ca.node("eu", "noc-a");
    let mut b = ca.node("eu", "telco-b");
    b.stop();
    b.configure(|c| c.transport.exchange_versions = vec![1]);
    b.start();
    add_peer(&a, &b, "telco-b", &[]);
    add_peer(&b, &a, "noc-a", &[]);
    assert_eq!(ping_version(&a, "telco-b"), "ttx-exchange/1");
    assert_eq!(ping_version(&b, "noc-a"), "ttx-exchange/1");
    // A refers to the v1 peer, which accepts.
    let (ours, theirs) = refer_accepted(&a, &b, "v1 partner");
    let their_ticket = theirs["ticket"].as_i64().unwrap();
    // A shared attachment of two chunks reaches B as one shared note naming it.
    let data = sample(300 * 1024, 4);
    let sha = attach(&a, ours, "trace.pcap", &data, true);
    let line = format!(
        "[noc-a] attachment trace.pcap ({} bytes, sha256 {sha}): attachment not sent: peer speaks ttx-exchange/1",
        data.len()
    );
    a.cli(&["note", &ours.to_string(), "--shared", "after the file"])
        .ok();
    let chart = wait_history(&b, their_ticket, "[noc-a] after the file");
    assert_eq!(
        chart["history"].to_string().matches(&line).count(),
        1,
        "{chart}"
    );
    assert_eq!(
        b.cli(&["--json", "attachments", &their_ticket.to_string()])
            .json(),
        serde_json::json!([])
    );
    // And the other way: B refers a ticket of its own to A over version 1.
    b.cli(&["new", "referred by the v1 peer"]).ok();
    b.cli(&["refer", "2", "--to", "noc-a"]).ok();
    let incoming = crate::exchange::wait_state(&a, "delivered");
    assert_eq!(incoming["peer"], "telco-b", "{incoming}");
    a.cli(&["referral", "accept", incoming["id"].as_str().unwrap()])
        .ok();
    let mine = incoming["ticket"].as_i64().unwrap();
    a.cli(&["note", &mine.to_string(), "--shared", "looking at it"])
        .ok();
    wait_history(&b, 2, "[noc-a] looking at it");
    // B's shared attachment reaches A as a note too (B speaks only version 1).
    let from_b = sample(1000, 7);
    let b_sha = attach(&b, 2, "b.txt", &from_b, true);
    wait_history(
        &a,
        mine,
        &format!("[telco-b] attachment b.txt (1000 bytes, sha256 {b_sha}): attachment not sent"),
    );
}

#[test]
fn a_receiver_killed_mid_attachment_resumes_and_gets_it_once() {
    let ca = Ca::new("eu");
    let a = ca.node("eu", "noc-a");
    let mut b = ca.node("eu", "telco-b");
    add_peer(&a, &b, "telco-b", &[]);
    add_peer(&b, &a, "noc-a", &[]);
    let (ours, theirs) = refer_accepted(&a, &b, "big capture");
    let their_ticket = theirs["ticket"].as_i64().unwrap();
    // 8 MiB: 32 chunks; B is killed while they arrive.
    let data = sample(8 * 1024 * 1024, 3);
    let file = a.tmp.path().join("big.pcap");
    std::fs::write(&file, &data).unwrap();
    a.cli(&[
        "attach",
        &ours.to_string(),
        file.to_str().unwrap(),
        "--shared",
    ])
    .ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    while open_db(&b.dir)
        .query_row("SELECT COUNT(*) FROM attachment_chunks", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "no chunk arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    b.kill();
    let held: i64 = open_db(&b.dir)
        .query_row("SELECT COUNT(*) FROM attachment_chunks", [], |r| r.get(0))
        .unwrap();
    assert!(
        (1..32).contains(&held),
        "B was to die part way through the 32 chunks, it held {held}"
    );
    b.start();
    // B listens on a new port: A learns it as an operator would (`ttx peer add` again).
    add_peer(&a, &b, "telco-b", &[]);
    let got = wait_attachment(&b, their_ticket, "big.pcap");
    assert_eq!(download(&b, got["id"].as_str().unwrap()), data);
    let db = open_db(&b.dir);
    let (rows, bytes): (i64, i64) = db
        .query_row(
            "SELECT COUNT(*), SUM(length(data)) FROM attachment_chunks",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, bytes), (32, data.len() as i64), "each chunk once");
    let attachments: i64 = db
        .query_row("SELECT COUNT(*) FROM attachments", [], |r| r.get(0))
        .unwrap();
    assert_eq!(attachments, 1);
}

/// The first column of every row `sql` selects.
fn first_column<T: rusqlite::types::FromSql>(db: &rusqlite::Connection, sql: &str) -> Vec<T> {
    db.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

//! The referral exchange between real `ttx` nodes over real QUIC with real certificates, driven
//! from the CLI: the whole flow (refer → accept → progress both ways → resolve → close), reject,
//! reopen, cancel, a partner that is down when we refer, SIGKILL of the receiver, and the bad
//! input an operator can give.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ttx::faults::{Faults, Limits, UdpProxy};

use crate::common::{open_db, TestNode};
use crate::federation::{add_peer, Ca};

/// Two partner sites that know each other: NOC A and telco B.
fn pair() -> (Ca, TestNode, TestNode) {
    let ca = Ca::new("eu");
    let a = ca.node("eu", "noc-a");
    let b = ca.node("eu", "telco-b");
    add_peer(&a, &b, "telco-b", &[]);
    add_peer(&b, &a, "noc-a", &[]);
    (ca, a, b)
}

/// `ttx referrals --json` on `node`.
pub(crate) fn referrals(node: &TestNode) -> Vec<serde_json::Value> {
    node.cli(&["--json", "referrals"])
        .json()
        .as_array()
        .expect("a list")
        .clone()
}

/// Waits (bounded) until `node` lists a referral in state `state`; returns it.
pub(crate) fn wait_state(node: &TestNode, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = referrals(node);
        if let Some(r) = list.iter().find(|r| r["state"] == state) {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no referral became {state} in time: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) until ticket `number`'s history on `node` holds a line containing `text`.
pub(crate) fn wait_history(node: &TestNode, number: i64, text: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let chart = node.cli(&["--json", "show", &number.to_string()]).json();
        if chart["history"].to_string().contains(text) {
            return chart;
        }
        assert!(
            Instant::now() < deadline,
            "{text:?} never reached ticket {number}: {chart}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) until `ttx alerts` on `node` holds `text`.
fn wait_alert(node: &TestNode, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let alerts = node.cli(&["--json", "alerts"]).json().to_string();
        if alerts.contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "no alert {text:?}: {alerts}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that the history text holds `[noc-a] {prefix} {i}` exactly once for each i < n.
fn each_once(history: &str, prefix: &str, n: usize) {
    for i in 0..n {
        let line = format!("[noc-a] {prefix} {i}\"");
        assert_eq!(
            history.matches(&line).count(),
            1,
            "{line} applied once: {history}"
        );
    }
}

pub(crate) fn new_ticket(node: &TestNode, subject: &str) -> i64 {
    node.cli(&["--json", "new", subject, "--circuit", "LON-PAR-3"])
        .json()["number"]
        .as_i64()
        .expect("a number")
}

/// A new ticket on `a` referred to telco `b`, which accepts it: our number and B's referral
/// row (B's own ticket in `ticket`). Returns once A saw the acceptance.
pub(crate) fn refer_accepted(
    a: &TestNode,
    b: &TestNode,
    subject: &str,
) -> (i64, serde_json::Value) {
    let ours = new_ticket(a, subject);
    a.cli(&["refer", &ours.to_string(), "--to", "telco-b"]).ok();
    let theirs = wait_state(b, "delivered");
    b.cli(&["referral", "accept", theirs["id"].as_str().unwrap()])
        .ok();
    wait_state(a, "accepted");
    (ours, theirs)
}

#[test]
fn refer_accept_progress_resolve_close_between_real_nodes() {
    let (_ca, a, b) = pair();
    let ours = new_ticket(&a, "LON-PAR-3 down");
    let n = ours.to_string();
    let out = a
        .cli(&[
            "refer",
            &n,
            "--to",
            "telco-b",
            "--note",
            "please check your side",
        ])
        .ok()
        .to_string();
    assert!(out.contains("referred"), "{out}");
    // B stored it and opened its own ticket; A sees B's reference.
    let theirs = wait_state(&b, "delivered");
    assert_eq!(theirs["partner_ref"], format!("noc-a#{ours}"));
    let their_ticket = theirs["ticket"].as_i64().unwrap();
    let mine = wait_state(&a, "delivered");
    assert_eq!(mine["partner_ref"], format!("telco-b#{their_ticket}"));
    assert_eq!(mine["id"], theirs["id"]);
    let id = mine["id"].as_str().unwrap().to_string();
    let chart = a.cli(&["--json", "show", &n]).json();
    assert_eq!(chart["ticket"]["status"], "referred");
    // B's ticket carries what A's policy shares, and the first note source-stamped.
    let their_chart = wait_history(&b, their_ticket, "please check your side");
    assert_eq!(their_chart["ticket"]["circuit"], "LON-PAR-3");

    b.cli(&["referral", "accept", &id[..8]]).ok();
    wait_state(&a, "accepted");
    // Progress both ways: shared notes cross, internal ones never do.
    let t = their_ticket.to_string();
    b.cli(&["note", &t, "--shared", "dispatched field tech"])
        .ok();
    b.cli(&["note", &t, "SECRET internal detail"]).ok();
    a.cli(&["note", &n, "--shared", "customer confirms outage"])
        .ok();
    wait_history(&a, ours, "[telco-b] dispatched field tech");
    wait_history(&b, their_ticket, "[noc-a] customer confirms outage");
    // B resolves its own ticket: A sees it, and confirms.
    b.cli(&["resolve", &t, "--resolution", "spliced fibre"])
        .ok();
    wait_state(&a, "resolved");
    let chart = a.cli(&["--json", "show", &n]).json();
    assert!(
        !chart.to_string().contains("SECRET"),
        "an internal note left B"
    );
    let text = a.cli(&["show", &n]).ok().to_string();
    assert!(text.contains(&format!("telco-b#{their_ticket}")), "{text}");
    a.cli(&["referral", "close", &id]).ok();
    wait_state(&b, "closed");
    let their_chart = b.cli(&["--json", "show", &t]).json();
    assert_eq!(their_chart["ticket"]["status"], "closed");
    let chart = a.cli(&["--json", "show", &n]).json();
    assert_eq!(
        chart["ticket"]["status"], "open",
        "our ticket is back with us"
    );
    // The alert that B resolved its part went into A's alerts.
    let alerts = a.cli(&["--json", "alerts"]).json().to_string();
    assert!(alerts.contains("resolved its part"), "{alerts}");
    // Every frame either node put on the wire is the encoding of one of its queued messages
    // (the plaintext inside QUIC, which a proxy would only see encrypted): B's internal note's
    // text is in none of them, and neither node's store holds it outside B's own note.
    for node in [&a, &b] {
        let db = open_db(&node.dir);
        let queued: Vec<String> = db
            .prepare("SELECT body FROM events WHERE kind = 'exchange' AND body LIKE '%Queued%'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(queued.len() >= 3, "{queued:?}");
        assert!(queued.iter().all(|q| !q.contains("SECRET")), "{queued:?}");
    }
    let leaked: i64 = open_db(&a.dir)
        .query_row(
            "SELECT COUNT(*) FROM events WHERE body LIKE '%SECRET%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leaked, 0);
}

#[test]
fn reject_reopen_and_cancel_between_real_nodes() {
    let (_ca, a, b) = pair();
    let first = new_ticket(&a, "wrong circuit").to_string();
    a.cli(&["refer", &first, "--to", "telco-b"]).ok();
    let r = wait_state(&b, "delivered");
    let id = r["id"].as_str().unwrap().to_string();
    b.cli(&["referral", "reject", &id, "--reason", "not our circuit"])
        .ok();
    wait_state(&a, "rejected");
    wait_history(&a, first.parse().unwrap(), "not our circuit");
    let chart = a.cli(&["--json", "show", &first]).json();
    assert_eq!(chart["ticket"]["status"], "open");

    // Reopen: B resolves, A says the problem is back, B's ticket reopens.
    let second = new_ticket(&a, "flapping").to_string();
    a.cli(&["refer", &second, "--to", "telco-b"]).ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    let r = loop {
        let l = referrals(&b);
        if let Some(r) = l
            .iter()
            .find(|r| r["state"] == "delivered" && r["id"] != id.as_str())
        {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "{l:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let id2 = r["id"].as_str().unwrap().to_string();
    let t2 = r["ticket"].as_i64().unwrap().to_string();
    b.cli(&["referral", "accept", &id2]).ok();
    b.cli(&["resolve", &t2, "--resolution", "reset the port"])
        .ok();
    wait_state(&a, "resolved");
    a.cli(&["referral", "reopen", &id2, "--reason", "flapping again"])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let chart = b.cli(&["--json", "show", &t2]).json();
        if chart["ticket"]["status"] == "open" {
            break;
        }
        assert!(Instant::now() < deadline, "{chart}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Cancel: A withdraws it; B sees it cancelled.
    a.cli(&["referral", "cancel", &id2, "--reason", "customer fixed it"])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = referrals(&b);
        if l.iter()
            .any(|r| r["id"] == id2.as_str() && r["state"] == "cancelled")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{l:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // "resolved" on a cancelled referral makes no sense: B's operator is refused.
    b.cli(&["resolve", &t2, "--resolution", "x"]).ok();
    let l = referrals(&b);
    assert!(l
        .iter()
        .any(|r| r["id"] == id2.as_str() && r["state"] == "cancelled"));
}

#[test]
fn a_partner_down_when_we_refer_gets_it_once_when_it_is_back() {
    let (_ca, a, mut b) = pair();
    b.stop();
    let n = new_ticket(&a, "down while the telco is down").to_string();
    a.cli(&["refer", &n, "--to", "telco-b", "--respond-within", "1h"])
        .ok();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(referrals(&a)[0]["state"], "queued");
    // B comes back on a new port; A learns it (re-adding resumes the outbox at once).
    b.start();
    add_peer(&a, &b, "telco-b", &[]);
    wait_state(&a, "delivered");
    let theirs = referrals(&b);
    assert_eq!(theirs.len(), 1, "delivered once: {theirs:?}");
    let list = b.cli(&["--json", "list"]).json().to_string();
    assert_eq!(list.matches("down while the telco is down").count(), 1);
}

#[test]
fn the_receiver_killed_mid_flow_applies_each_message_once() {
    let (_ca, a, mut b) = pair();
    let n = new_ticket(&a, "many updates").to_string();
    a.cli(&["refer", &n, "--to", "telco-b"]).ok();
    let r = wait_state(&b, "delivered");
    b.cli(&["referral", "accept", r["id"].as_str().unwrap()])
        .ok();
    wait_state(&a, "accepted");
    for i in 0..20 {
        a.cli(&["note", &n, "--shared", &format!("update {i}")])
            .ok();
        if i == 10 {
            b.kill();
            b.start();
            add_peer(&a, &b, "telco-b", &[]);
        }
    }
    let t = r["ticket"].as_i64().unwrap();
    let chart = wait_history(&b, t, "[noc-a] update 19");
    each_once(&chart["history"].to_string(), "update", 20);
}

#[test]
fn bad_referral_input_gets_clear_errors() {
    let (_ca, a, _b) = pair();
    let n = new_ticket(&a, "x").to_string();
    a.cli(&["referral", "accept", "0123abcd"])
        .fails(3, "no referral");
    a.cli(&["refer", "999", "--to", "telco-b"])
        .fails(3, "no ticket 999");
    a.cli(&["refer", &n, "--to", "nobody"]).fails(3, "no peer");
    a.cli(&["refer", &n, "--to", "telco-b", "--respond-within", "soon"])
        .fails(2, "invalid duration");
    a.cli(&["refer", &n, "--to", "telco-b"]).ok();
    a.cli(&["refer", &n, "--to", "telco-b"])
        .fails(4, "already referred");
    let id = referrals(&a)[0]["id"].as_str().unwrap().to_string();
    a.cli(&["referral", "accept", &id])
        .fails(4, "only the handling side");
    a.cli(&["referral", "close", &id]).fails(4, "cannot close");
}

#[test]
fn an_unanswered_referral_escalates_at_the_respond_by_time() {
    let (_ca, a, mut b) = pair();
    b.stop();
    let n = new_ticket(&a, "nobody answers").to_string();
    a.cli(&["refer", &n, "--to", "telco-b", "--respond-within", "2s"])
        .ok();
    wait_alert(&a, "no answer by the respond-by time");
    let r = &referrals(&a)[0];
    assert_eq!(r["label"], "overdue");
    assert_eq!(r["overdue"], true);
    let text = a.cli(&["referrals"]).ok().to_string();
    assert!(text.contains("overdue"), "{text}");
}

#[test]
fn a_removed_peer_leaves_its_referrals_orphaned_and_re_adding_it_resumes_them() {
    let (_ca, a, mut b) = pair();
    let n = new_ticket(&a, "orphan me").to_string();
    a.cli(&["refer", &n, "--to", "telco-b"]).ok();
    let theirs = wait_state(&b, "delivered");
    let their_ticket = theirs["ticket"].as_i64().unwrap();
    wait_state(&a, "delivered");
    // B goes away with a shared note still queued for it; then an admin removes B.
    b.stop();
    a.cli(&["note", &n, "--shared", "queued before the removal"])
        .ok();
    a.cli(&["peer", "remove", "telco-b"]).ok();
    let r = &referrals(&a)[0];
    assert_eq!(
        (r["label"].as_str(), r["orphaned"].as_bool()),
        (Some("orphaned"), Some(true))
    );
    // While orphaned nothing new is decided for B (its policy left with it): a shared note
    // stays on our ticket, and what needs the partner is refused.
    a.cli(&["note", &n, "--shared", "written while orphaned"])
        .ok();
    let id = r["id"].as_str().unwrap().to_string();
    a.cli(&["referral", "ask", &id, "status?"])
        .fails(4, "orphaned");
    // B is back (on a new port) and re-added: the queued note arrives, once.
    b.start();
    add_peer(&a, &b, "telco-b", &[]);
    let chart = wait_history(&b, their_ticket, "[noc-a] queued before the removal");
    assert_eq!(
        chart
            .to_string()
            .matches("[noc-a] queued before the removal")
            .count(),
        1
    );
    assert!(!chart.to_string().contains("written while orphaned"));
    assert_eq!(referrals(&a)[0]["label"], "delivered");
}

#[test]
fn the_sender_killed_mid_flow_loses_and_duplicates_nothing() {
    let (_ca, mut a, b) = pair();
    let n = new_ticket(&a, "sender dies").to_string();
    a.cli(&["refer", &n, "--to", "telco-b"]).ok();
    let r = wait_state(&b, "delivered");
    let t = r["ticket"].as_i64().unwrap();
    for i in 0..15 {
        a.cli(&["note", &n, "--shared", &format!("step {i}")]).ok();
    }
    a.kill();
    a.start();
    for i in 15..20 {
        a.cli(&["note", &n, "--shared", &format!("step {i}")]).ok();
    }
    let chart = wait_history(&b, t, "[noc-a] step 19");
    each_once(&chart["history"].to_string(), "step", 20);
}

#[test]
fn a_lossy_then_cut_link_delivers_every_message_once_and_in_order() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_ca, mut a, b) = pair();
    // The sender notices a dead link within seconds.
    a.stop();
    a.configure(|c| {
        c.transport.handshake_timeout_ms = 3_000;
        c.transport.stream_timeout_ms = 3_000;
        c.transport.idle_timeout_ms = 6_000;
        c.transport.keep_alive_ms = 1_000;
    });
    a.start();
    let proxy = rt
        .block_on(UdpProxy::start(b.listen_addr(), 7, Limits::default()))
        .unwrap();
    // A reaches B only through the proxy.
    let via = proxy.addr().to_string();
    a.cli(&["peer", "add", "telco-b", "--addr", &via]).ok();
    add_peer(&b, &a, "noc-a", &[]);
    let n = new_ticket(&a, "over a bad link").to_string();
    a.cli(&["refer", &n, "--to", "telco-b"]).ok();
    let r = wait_state(&b, "delivered");
    assert!(proxy.counters().forwarded.load(Ordering::Relaxed) > 0);
    let t = r["ticket"].as_i64().unwrap();
    // A third of the packets lost, 40-70 ms each way, reordered.
    proxy.set(Faults {
        drop: 0.3,
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(30),
        ..Faults::NONE
    });
    for i in 0..8 {
        a.cli(&["note", &n, "--shared", &format!("lossy {i}")]).ok();
    }
    // Then a partition while more is written, then the link heals.
    proxy.set(Faults::CUT);
    for i in 8..14 {
        a.cli(&["note", &n, "--shared", &format!("lossy {i}")]).ok();
    }
    std::thread::sleep(Duration::from_secs(4));
    assert!(proxy.counters().dropped.load(Ordering::Relaxed) > 0);
    proxy.set(Faults::NONE);
    let chart = wait_history(&b, t, "[noc-a] lossy 13");
    let history = chart["history"].to_string();
    each_once(&history, "lossy", 14);
    let at: Vec<usize> = (0..14)
        .map(|i| history.find(&format!("[noc-a] lossy {i}\"")).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "in order: {at:?}");
}

#[test]
fn the_sharing_policy_decides_what_leaves_and_auto_accepts() {
    let (_ca, a, b) = pair();
    // B accepts A's referrals without an operator; A sends B only the severity.
    let out = b
        .cli(&["referral", "policy", "noc-a", "--auto-accept", "on"])
        .ok()
        .to_string();
    assert!(out.contains("auto-accept   on"), "{out}");
    a.cli(&["referral", "policy", "telco-b", "--fields", "severity"])
        .ok();
    let p = a.cli(&["--json", "referral", "policy", "telco-b"]).json();
    assert_eq!(p["fields"], serde_json::json!(["severity"]));
    a.cli(&["referral", "policy", "telco-b", "--fields", "phone"])
        .fails(2, "unknown field");
    a.cli(&["referral", "policy", "nobody", "--auto-accept", "on"])
        .fails(3, "no peer");
    let n = new_ticket(&a, "auto").to_string();
    a.cli(&["refer", &n, "--to", "telco-b"]).ok();
    wait_state(&a, "accepted");
    let theirs = wait_state(&b, "accepted");
    let chart = b
        .cli(&["--json", "show", &theirs["ticket"].to_string()])
        .json();
    assert_eq!(chart["ticket"]["circuit"], serde_json::Value::Null);
    assert!(!chart.to_string().contains("LON-PAR-3"), "{chart}");
}

#[test]
fn per_peer_caps_set_from_the_cli_refuse_what_is_over_them() {
    let (_ca, a, b) = pair();
    let (ours, r) = refer_accepted(&a, &b, "capped");
    let n = ours.to_string();
    // B caps what A may send: 400-byte messages, 2 a second in bursts of 1.
    let out = b
        .cli(&[
            "referral",
            "policy",
            "noc-a",
            "--max-message-bytes",
            "400",
            "--rate",
            "2",
            "--burst",
            "1",
        ])
        .ok()
        .to_string();
    assert!(
        out.contains("400 bytes a message, 2/s (bursts of 1)"),
        "{out}"
    );
    let p = b.cli(&["--json", "referral", "policy", "noc-a"]).json();
    assert_eq!(
        (&p["max_message_bytes"], &p["rate_per_sec"], &p["burst"]),
        (
            &serde_json::json!(400),
            &serde_json::json!(2),
            &serde_json::json!(1)
        )
    );
    b.cli(&["referral", "policy", "noc-a", "--rate", "0"])
        .fails(2, "rate 0 is out of range");
    b.cli(&["referral", "policy", "noc-a", "--burst", "many"])
        .fails(2, "invalid value");
    // Over the size cap: refused for good with `too large`, which A's operators see.
    let big = "x".repeat(600);
    a.cli(&["note", &n, "--shared", &big]).ok();
    wait_alert(&a, "telco-b refused our note: too large");
    // Over the rate: refused for now (`rate limited`), so A sends again later; every note
    // arrives once, in order.
    for i in 0..6 {
        a.cli(&["note", &n, "--shared", &format!("paced {i}")]).ok();
    }
    let t = r["ticket"].as_i64().unwrap();
    let chart = wait_history(&b, t, "[noc-a] paced 5");
    let history = chart["history"].to_string();
    each_once(&history, "paced", 6);
    assert!(!history.contains(&big), "the oversize note was not applied");
}

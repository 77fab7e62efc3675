//! The hot standby across real `ttx` processes over real QUIC with real certificates: a primary
//! and a standby cloned from it, streaming over `ttx-repl/1`; writes on the primary
//! become visible on the standby, the standby refuses writes naming the primary, and a
//! standby killed with SIGKILL resumes from its head when it comes back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ttx::replication::{Mode, WhenGone};

use crate::clone::clone_of;
use crate::common::{http_with, TestNode};
use crate::federation::Ca;

/// A free UDP port on loopback (bound, read, released).
pub(crate) fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A primary `noc-a/primary` and its standby `noc-a/standby`, both certified by one CA, the
/// standby authorized in the registry at its own fixed address (`peer add noc-a --addr
/// STANDBY --allow standby`), cloned from the running primary (`ttx standby clone`) and
/// following it. Both are started.
pub(crate) struct Pair {
    pub(crate) _ca: Option<Ca>,
    pub(crate) primary: TestNode,
    pub(crate) standby: TestNode,
    pub(crate) primary_addr: SocketAddr,
    /// The standby's QUIC address, kept across its restarts (a promoted standby is dialed there).
    pub(crate) standby_addr: SocketAddr,
}

impl Pair {
    /// Sets the pair up; `edit` adjusts both configs (mode, timeouts) before they start.
    pub(crate) fn new(edit: impl Fn(&mut ttx::config::Config)) -> Pair {
        let ca = Ca::new("fed");
        let standby_addr: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
        let mut primary = crate::clone::primary_with_standby_at(&ca, &standby_addr.to_string());
        // `ttx standby clone` from the running primary.
        let mut standby = clone_of(&primary, &ca);
        let primary_addr = primary.listen_addr();
        primary.stop();
        // The primary keeps its UDP port across the restart: the standby dials it.
        primary.configure(|c| {
            c.transport.listen = Some(primary_addr);
            edit(c);
        });
        standby.configure(|c| {
            assert_eq!(c.replication.primary, Some(primary_addr.to_string()));
            c.transport.listen = Some(standby_addr);
            edit(c);
        });
        primary.start();
        standby.start();
        Pair {
            _ca: Some(ca),
            primary,
            standby,
            primary_addr,
            standby_addr,
        }
    }
}

/// Waits until `cond` holds (bounded: 30 s), polling.
#[track_caller]
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The node's site position and digest.
pub(crate) fn position_and_digest(n: &TestNode) -> (i64, String) {
    let v = n.cli(&["--json", "verify"]).json();
    (
        v["position"].as_i64().expect("position"),
        v["digest"].as_str().expect("digest").to_string(),
    )
}

/// Waits until the standby has the primary's position and digest.
#[track_caller]
pub(crate) fn wait_caught_up(p: &Pair) {
    let want = position_and_digest(&p.primary);
    wait_until("the standby to catch up", || {
        position_and_digest(&p.standby) == want
    });
}

#[test]
fn writes_on_the_primary_stream_to_the_standby_which_resumes_after_a_sigkill() {
    let mut p = Pair::new(|_| {});
    wait_caught_up(&p);
    for i in 0..20 {
        p.primary.cli(&["new", &format!("ticket {i}")]).ok();
    }
    p.primary.cli(&["note", "3", "traceroute shows loss"]).ok();
    wait_caught_up(&p);
    let shown = p.standby.cli(&["--json", "show", "3"]).json();
    assert!(
        shown.to_string().contains("traceroute shows loss"),
        "{shown}"
    );

    // Reads are served on the standby; writes are refused naming the primary.
    p.standby
        .cli(&["new", "written on the standby"])
        .fails(4, "this node is a standby of \"primary\"");
    let status = p.standby.cli(&["--json", "status"]).json();
    let following = &status["replication"]["following"];
    assert_eq!(following["connected"], true, "{status}");
    assert_eq!(following["primary_node"], "primary", "{status}");
    assert_eq!(following["primary_addr"], p.primary_addr.to_string());
    // Caught up: no lag, in events or in the primary's milliseconds.
    assert_eq!(following["lag_events"], 0, "{status}");
    assert_eq!(following["lag_ms"], 0, "{status}");
    let status = p.primary.cli(&["--json", "status"]).json();
    assert_eq!(
        status["replication"]["primary"]["standby"]["node"], "standby",
        "{status}"
    );

    // SIGKILL the standby, write on, bring it back: it resumes from its own head.
    p.standby.kill();
    for i in 0..10 {
        p.primary
            .cli(&["new", &format!("while the standby is down {i}")])
            .ok();
    }
    p.standby.start();
    wait_caught_up(&p);
    let listed = p.standby.cli(&["--json", "show", "31"]).json();
    assert!(
        listed.to_string().contains("while the standby is down 9"),
        "{listed}"
    );
    p.standby.stop();
    p.primary.stop();
}

fn set_mode(c: &mut ttx::config::Config, mode: Mode, when: WhenGone, timeout_ms: u64) {
    c.replication.mode = Some(mode);
    c.replication.when_standby_gone = when;
    c.replication.block_timeout_ms = timeout_ms;
}

/// The site position a node's status reports.
fn events(n: &TestNode) -> i64 {
    n.cli(&["--json", "status"]).json()["events"]
        .as_i64()
        .expect("events")
}

#[test]
fn sync_visible_answers_only_once_the_standby_shows_the_write() {
    let mut p = Pair::new(|c| set_mode(c, Mode::SyncVisible, WhenGone::Block, 10_000));
    wait_caught_up(&p);
    for i in 0..10 {
        let ack = p
            .primary
            .cli(&["--json", "new", &format!("sync {i}")])
            .json();
        let number = ack["number"].as_i64().unwrap().to_string();
        // Acknowledged means applied on the standby: readable there at once, no waiting.
        let shown = p.standby.cli(&["--json", "show", &number]).json();
        assert!(shown.to_string().contains(&format!("sync {i}")), "{shown}");
        let last = ack["events"].as_array().unwrap().last().unwrap().as_i64();
        assert!(events(&p.standby) >= last.unwrap());
    }
    let status = p.primary.cli(&["--json", "status"]).json();
    let r = &status["replication"]["primary"];
    assert_eq!(r["mode"], "sync-visible", "{status}");
    assert_eq!(r["degraded_since"], serde_json::Value::Null, "{status}");
    p.standby.stop();
    p.primary.stop();
}

#[test]
fn block_mode_fails_a_write_the_standby_lacks_and_the_retry_answers_it_once() {
    let mut p = Pair::new(|c| set_mode(c, Mode::Sync, WhenGone::Block, 500));
    wait_caught_up(&p);
    p.standby.stop();
    let token = p.primary.admin_token();
    let create = |key: &str| {
        http_with(
            p.primary.api_addr(),
            "POST",
            "/v1/tickets",
            Some(&token),
            Some(br#"{"subject": "written while the standby is away"}"#),
            &[("Idempotency-Key", key)],
        )
    };
    let (code, body) = create("k-1");
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (503, Some("not_on_standby")),
        "{body}"
    );
    assert_eq!(
        body["error"]["message"],
        "committed here, not yet on the standby: retry with the same Idempotency-Key"
    );
    // Committed on the primary: it is there, once.
    let listed = p.primary.cli(&["--json", "list"]).json().to_string();
    assert_eq!(
        listed.matches("written while the standby is away").count(),
        1,
        "{listed}"
    );
    // A retry while the standby is still away waits and fails the same way, applying nothing.
    assert_eq!(create("k-1").0, 503);
    p.standby.start();
    wait_caught_up(&p);
    let (code, body) = create("k-1");
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["replayed"], true, "{body}");
    let listed = p.standby.cli(&["--json", "list"]).json().to_string();
    assert_eq!(
        listed.matches("written while the standby is away").count(),
        1,
        "{listed}"
    );
    p.standby.stop();
    p.primary.stop();
}

#[test]
fn degrade_mode_goes_on_without_the_standby_loudly_and_recovers() {
    // No mode in the config: the registry authorizes a standby, so sync + degrade.
    let mut p = Pair::new(|c| c.replication.block_timeout_ms = 500);
    wait_caught_up(&p);
    let primary_status =
        |p: &Pair| p.primary.cli(&["--json", "status"]).json()["replication"]["primary"].clone();
    let r = primary_status(&p);
    assert_eq!(
        (r["mode"].as_str(), r["when_standby_gone"].as_str()),
        (Some("sync"), Some("degrade")),
        "{r}"
    );
    p.standby.stop();
    p.primary.cli(&["new", "while the standby is away"]).ok();
    let r = primary_status(&p);
    assert!(r["degraded_since"].is_i64(), "{r}");
    let text = p.primary.cli(&["status"]).ok().to_string();
    assert!(text.contains("DEGRADED to async since"), "{text}");
    p.standby.start();
    wait_caught_up(&p);
    wait_until("sync to be restored", || {
        primary_status(&p)["degraded_since"].is_null()
    });
    p.standby.stop();
    p.primary.stop();
}

#[test]
fn a_deposed_primary_restarted_is_fenced_by_the_promoted_standby_and_takes_no_write() {
    let mut p = Pair::new(|_| {});
    wait_caught_up(&p);
    p.primary.kill();
    let promoted = p.standby.cli(&["--json", "promote"]).json();
    assert_eq!(promoted["epoch"], 2, "{promoted}");
    p.standby.cli(&["new", "written on the new primary"]).ok();
    // The old primary comes back on its address: the promoted node's knock fences it.
    p.primary.start();
    wait_until("the old primary to be fenced", || {
        p.primary.cli(&["--json", "status"]).json()["role"] == "fenced:standby"
    });
    p.primary
        .cli(&["new", "written on the deposed primary"])
        .fails(4, "fenced");
    // Fenced durably: a restart does not make it a primary again.
    p.primary.stop();
    p.primary.start();
    let status = p.primary.cli(&["--json", "status"]).json();
    assert_eq!(
        (status["role"].as_str(), status["epoch"].as_u64()),
        (Some("fenced:standby"), Some(2)),
        "{status}"
    );
    assert_old_primary_fenced(&p.standby);
    p.primary.stop();
    p.standby.stop();
}

/// Waits until `promoted`'s status says its old primary came back and was fenced (its knocks
/// back off up to 10 s, so the answer may come a while after the old primary is up).
#[track_caller]
pub(crate) fn assert_old_primary_fenced(promoted: &TestNode) {
    wait_until("the promoted node to see its old primary fenced", || {
        promoted.cli(&["--json", "status"]).json()["replication"]["old_primary_fenced"] == true
    });
}

/// `GET /v1/replication/visible` waits on the standby until a write from the primary is
/// readable there (no polling), answers the head when its wait runs out, and refuses a wait
/// over its limit; `GET /v1/replication/timeline` shows the write's batch at each stage on
/// the node that stamped it (committed and shipped on the primary, received and applied on
/// the standby, with the write handed to its writer between).
#[test]
fn a_reader_on_the_standby_waits_for_a_position_and_both_nodes_stamp_its_stages() {
    let mut p = Pair::new(|c| {
        set_mode(c, Mode::Async, WhenGone::Degrade, 10_000);
        c.replication.receipt_spool = true;
    });
    wait_caught_up(&p);
    let token = p.standby.admin_token();
    let before = events(&p.standby);
    let waiter = {
        let (addr, token) = (p.standby.api_addr(), token.clone());
        std::thread::spawn(move || {
            let path = format!("/v1/replication/visible?after={before}&wait_ms=10000");
            crate::common::http(addr, "GET", &path, Some(&token), None)
        })
    };
    let ack = p.primary.cli(&["--json", "new", "seen soon"]).json();
    let last = ack["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_i64()
        .unwrap();
    let (status, answer) = waiter.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer["head"].as_i64().unwrap() > before, "{answer}");
    // Visible means readable: the ticket is there once the head covers it.
    let (_, answer) = p.standby.http(
        "GET",
        &format!("/v1/replication/visible?after={}&wait_ms=10000", last - 1),
        Some(&token),
        None,
    );
    assert!(answer["head"].as_i64().unwrap() >= last, "{answer}");
    let number = ack["number"].as_i64().unwrap().to_string();
    let shown = p.standby.cli(&["--json", "show", &number]).json();
    assert!(shown.to_string().contains("seen soon"), "{shown}");
    // Nothing past the head: the wait runs out and answers the head as it is.
    let head = events(&p.standby);
    let (status, answer) = p.standby.http(
        "GET",
        &format!("/v1/replication/visible?after={head}&wait_ms=50"),
        Some(&token),
        None,
    );
    assert_eq!(
        (status, answer["head"].as_i64()),
        (200, Some(head)),
        "{answer}"
    );
    for bad in ["after=1&wait_ms=10001", "wait_ms=5", "after=x"] {
        let (status, answer) = p.standby.http(
            "GET",
            &format!("/v1/replication/visible?{bad}"),
            Some(&token),
            None,
        );
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("invalid")),
            "{bad}: {answer}"
        );
    }
    let stages = |n: &TestNode| {
        let token = n.admin_token();
        let (status, v) = n.http("GET", "/v1/replication/timeline", Some(&token), None);
        assert_eq!(status, 200, "{v}");
        v["stamps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["last"].as_i64().unwrap() >= last)
            .map(|s| s["stage"].as_str().unwrap().to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let want = |s: &[&str]| s.iter().map(|s| s.to_string()).collect();
    assert_eq!(stages(&p.primary), want(&["committed", "shipped"]));
    assert_eq!(
        stages(&p.standby),
        want(&["applied", "applying", "received", "spooled"])
    );
    let (status, _) = p
        .standby
        .http("GET", "/v1/replication/timeline", None, None);
    assert_eq!(status, 401);
    p.standby.stop();
    p.primary.stop();
}

//! Partners across a failover, with real processes: NOC A's primary and standby (`Pair`) and
//! telco B exchange shared notes both ways under load, every acknowledgement logged; A's primary
//! is SIGKILLed mid-stream (and B with it, in the second test) and the standby promoted. Every
//! note acknowledged on either side is then present exactly once on both sides, the referral
//! carries on, and a partner that reaches the deposed primary is told where the new one is.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ttx::replication::{Mode, WhenGone};

use crate::common::{try_http_with, TestNode};
use crate::exchange::{refer_accepted, referrals, wait_history, wait_state};
use crate::repl::{position_and_digest, wait_caught_up, wait_until, Pair};

/// Notes each side writes.
const NOTES: usize = 40;

/// Short transport timeouts, so a dead node is noticed within seconds.
fn quick_transport(c: &mut ttx::config::Config) {
    c.transport.handshake_timeout_ms = 3_000;
    c.transport.stream_timeout_ms = 3_000;
    c.transport.idle_timeout_ms = 6_000;
    c.transport.keep_alive_ms = 1_000;
}

/// Where a writer sends: a node's API and its admin token (switched by the test on failover).
type Target = Arc<Mutex<(SocketAddr, String)>>;

fn target_of(n: &TestNode) -> (SocketAddr, String) {
    (n.api_addr(), n.admin_token())
}

/// A client writing `NOTES` shared notes `{prefix} {i}` on ticket `number`, each with its own
/// idempotency key, retrying a note whose answer was lost (with its key, at whatever node
/// `target` names by then) until it is acknowledged. Returns the notes acknowledged, in order.
fn writer(target: Target, number: i64, prefix: &'static str) -> JoinHandle<Vec<usize>> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(150);
        for i in 0..NOTES {
            let key = format!("{prefix}-{i}");
            let body = format!(r#"{{"text": "{prefix} {i}", "shared": true}}"#);
            loop {
                assert!(Instant::now() < deadline, "{prefix} {i} never acknowledged");
                let (addr, token) = target.lock().unwrap().clone();
                let path = format!("/v1/tickets/{number}/notes");
                let answer = try_http_with(
                    addr,
                    "POST",
                    &path,
                    Some(&token),
                    Some(body.as_bytes()),
                    &[("Idempotency-Key", &key)],
                );
                if matches!(answer, Some((200 | 201, _))) {
                    acked.push(i);
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        acked
    })
}

/// The texts of the notes in ticket `number`'s history on `n`.
fn notes(n: &TestNode, number: i64) -> Vec<String> {
    let chart = n.cli(&["--json", "show", &number.to_string()]).json();
    chart["history"]
        .as_array()
        .expect("a history")
        .iter()
        .filter_map(|e| e["event"]["kind"]["NoteAdded"]["text"].as_str())
        .map(str::to_string)
        .collect()
}

/// Asserts that the notes hold `{prefix} {i}` (stamped `[site] ` when it came from a partner)
/// exactly once for each i < NOTES.
fn each_once(notes: &[String], stamp: Option<&str>, prefix: &str) {
    for i in 0..NOTES {
        let text = match stamp {
            Some(site) => format!("[{site}] {prefix} {i}"),
            None => format!("{prefix} {i}"),
        };
        let n = notes.iter().filter(|t| **t == text).count();
        assert_eq!(n, 1, "{text:?} is there {n} times, not once");
    }
}

fn history(n: &TestNode, number: i64) -> String {
    notes(n, number).join("\n")
}

/// NOC A (primary + standby, sync replication that degrades) and telco B on a fixed port, B
/// knowing A by both its addresses; a ticket of A referred to B and accepted. Returns the
/// pair, B, A's ticket, B's ticket and the referral id.
fn federation() -> (Pair, TestNode, i64, i64, String) {
    let p = Pair::new(|c| {
        c.replication.mode = Some(Mode::Sync);
        c.replication.when_standby_gone = WhenGone::Degrade;
        c.replication.block_timeout_ms = 2_000;
        quick_transport(c);
    });
    let mut b = p._ca.as_ref().unwrap().node("fed", "telco-b");
    let b_addr = b.listen_addr();
    b.stop();
    b.configure(|c| {
        c.transport.listen = Some(b_addr);
        quick_transport(c);
    });
    b.start();
    let a_addrs = format!("{},{}", p.primary_addr, p.standby.listen_addr());
    b.cli(&["peer", "add", "noc-a", "--addr", &a_addrs]).ok();
    p.primary
        .cli(&["peer", "add", "telco-b", "--addr", &b_addr.to_string()])
        .ok();
    let (ours, theirs) = refer_accepted(&p.primary, &b, "LON-PAR-3 down");
    let id = theirs["id"].as_str().unwrap().to_string();
    wait_caught_up(&p);
    (p, b, ours, theirs["ticket"].as_i64().unwrap(), id)
}

/// The story both tests tell; `kill_b` also SIGKILLs B at the moment A's primary dies.
fn failover_mid_stream(kill_b: bool) {
    let (p, mut b, ours, theirs, id) = federation();
    let Pair {
        mut primary,
        standby,
        ..
    } = p;
    let at_a: Target = Arc::new(Mutex::new(target_of(&primary)));
    let at_b: Target = Arc::new(Mutex::new(target_of(&b)));
    let a_writer = writer(at_a.clone(), ours, "from-a");
    let b_writer = writer(at_b.clone(), theirs, "from-b");
    // Mid-stream: once both sides' notes are crossing.
    wait_until("notes crossing both ways", || {
        history(&b, theirs).contains("[noc-a] from-a 8")
            && history(&primary, ours).contains("[telco-b] from-b 8")
    });
    primary.kill();
    if kill_b {
        b.kill();
    }
    let promoted = standby.cli(&["--json", "promote"]).json();
    assert_eq!(promoted["epoch"], 2, "{promoted}");
    *at_a.lock().unwrap() = target_of(&standby);
    if kill_b {
        b.start();
        *at_b.lock().unwrap() = target_of(&b);
    }
    let (a_acked, b_acked) = (a_writer.join().unwrap(), b_writer.join().unwrap());
    assert_eq!(a_acked.len(), NOTES);
    assert_eq!(b_acked.len(), NOTES);

    // Every acknowledged note is on both sides, once: A's on A's ticket and at B, B's on B's
    // ticket and at A's new primary.
    wait_history(&b, theirs, &format!("[noc-a] from-a {}", NOTES - 1));
    wait_history(&standby, ours, &format!("[telco-b] from-b {}", NOTES - 1));
    let (at_new_a, at_b_now) = (notes(&standby, ours), notes(&b, theirs));
    each_once(&at_new_a, None, "from-a");
    each_once(&at_new_a, Some("telco-b"), "from-b");
    each_once(&at_b_now, None, "from-b");
    each_once(&at_b_now, Some("noc-a"), "from-a");

    // The deposed primary comes back: the new primary's dial fences it. B, restarted, dials
    // A's first address, the deposed primary, which refuses it naming the new primary; B
    // moves over and the note arrives once.
    primary.start();
    wait_until("the old primary to be fenced", || {
        primary
            .cli(&["--json", "status"])
            .json()
            .to_string()
            .contains("fenced")
    });
    b.stop();
    b.start();
    b.cli(&["note", &theirs.to_string(), "--shared", "after the fence"])
        .ok();
    wait_history(&standby, ours, "[telco-b] after the fence");
    let after = notes(&standby, ours);
    assert_eq!(
        after
            .iter()
            .filter(|t| t.contains("after the fence"))
            .count(),
        1
    );
    // The deposed primary took no partner message itself. When its log is a prefix of the new
    // primary's it follows the new primary, fenced, and then holds exactly its log (a message
    // it had taken itself would have forked it); when SIGKILL left it a tail of its own that
    // never reached the standby (sync acknowledges only what the standby has; a write in
    // flight may still be in the old primary's log), it is refused `diverged` and holds
    // nothing of B's after the fence at all.
    wait_until(
        "the deposed primary to follow or be refused as diverged",
        || {
            position_and_digest(&primary) == position_and_digest(&standby)
                || !primary.cli(&["--json", "status"]).json()["replication"]["following"]
                    ["diverged_at"]
                    .is_null()
        },
    );
    let deposed = notes(&primary, ours);
    let held = deposed
        .iter()
        .filter(|t| t.contains("after the fence"))
        .count();
    assert!(
        held <= 1,
        "the deposed primary holds the note {held} times (only from the new primary's log)"
    );
    // The referral carries on with the new primary: B resolves, A confirms, B sees it closed.
    b.cli(&[
        "resolve",
        &theirs.to_string(),
        "--resolution",
        "spliced fibre",
    ])
    .ok();
    wait_state(&standby, "resolved");
    standby.cli(&["referral", "close", &id]).ok();
    wait_state(&b, "closed");

    let list = referrals(&b);
    assert_eq!(list.len(), 1, "one referral, no duplicate: {list:?}");
}

#[test]
fn partners_follow_a_promotion_after_a_sigkill_exactly_once() {
    failover_mid_stream(false);
}

#[test]
fn partners_follow_a_promotion_when_both_sides_are_killed_at_once() {
    failover_mid_stream(true);
}

#[test]
fn a_partner_that_reaches_the_standby_first_is_sent_to_the_primary() {
    let p = Pair::new(quick_transport);
    let b = p._ca.as_ref().unwrap().node("fed", "telco-b");
    // B lists A's standby first: its messages reach the standby, which names the primary.
    let a_addrs = format!("{},{}", p.standby.listen_addr(), p.primary_addr);
    b.cli(&["peer", "add", "noc-a", "--addr", &a_addrs]).ok();
    let b_addr = b.listen_addr().to_string();
    p.primary
        .cli(&["peer", "add", "telco-b", "--addr", &b_addr])
        .ok();
    let (ours, theirs) = refer_accepted(&p.primary, &b, "standby first");
    let t = theirs["ticket"].as_i64().unwrap();
    b.cli(&["note", &t.to_string(), "--shared", "from the telco"])
        .ok();
    wait_history(&p.primary, ours, "[telco-b] from the telco");
    // The standby took nothing from B itself: it only has what the primary shipped.
    wait_caught_up(&p);
}

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

use crate::common::{open_db, try_http_with, TestNode};
use crate::exchange::{refer_accepted, referrals, wait_history, wait_state};
use crate::federation::Ca;
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

/// A writer on each side (A's at `a`, B's at `b`), returned once both sides' notes are
/// crossing: where each writes (to switch on a failover) and their handles.
fn writers_mid_stream(
    a: &TestNode,
    ours: i64,
    b: &TestNode,
    theirs: i64,
) -> (
    Target,
    Target,
    JoinHandle<Vec<usize>>,
    JoinHandle<Vec<usize>>,
) {
    let at_a: Target = Arc::new(Mutex::new(target_of(a)));
    let at_b: Target = Arc::new(Mutex::new(target_of(b)));
    let a_writer = writer(at_a.clone(), ours, "from-a");
    let b_writer = writer(at_b.clone(), theirs, "from-b");
    wait_until("notes crossing both ways", || {
        history(b, theirs).contains("[noc-a] from-a 8")
            && history(a, ours).contains("[telco-b] from-b 8")
    });
    (at_a, at_b, a_writer, b_writer)
}

/// Every note both writers had acknowledged is on both sides exactly once: A's on A's ticket
/// (at `a`, the site's primary now) and at B, B's on B's ticket and at `a`.
fn each_note_once_on_both_sides(a: &TestNode, ours: i64, b: &TestNode, theirs: i64) {
    wait_history(b, theirs, &format!("[noc-a] from-a {}", NOTES - 1));
    wait_history(a, ours, &format!("[telco-b] from-b {}", NOTES - 1));
    let (at_a, at_b) = (notes(a, ours), notes(b, theirs));
    each_once(&at_a, None, "from-a");
    each_once(&at_a, Some("telco-b"), "from-b");
    each_once(&at_b, None, "from-b");
    each_once(&at_b, Some("noc-a"), "from-a");
}

/// The referral carries on with A's primary `a`: B resolves, A closes, B sees it closed; one
/// referral on each side, no duplicate.
fn referral_carries_on(a: &TestNode, b: &TestNode, theirs: i64, id: &str) {
    b.cli(&[
        "resolve",
        &theirs.to_string(),
        "--resolution",
        "spliced fibre",
    ])
    .ok();
    wait_state(a, "resolved");
    a.cli(&["referral", "close", id]).ok();
    wait_state(b, "closed");
    let (at_a, at_b) = (referrals(a), referrals(b));
    assert_eq!(at_b.len(), 1, "one referral at B, no duplicate: {at_b:?}");
    assert_eq!(at_a.len(), 1, "one referral at A, no duplicate: {at_a:?}");
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
    let b = partner_of(&p);
    let (ours, theirs) = refer_accepted(&p.primary, &b, "LON-PAR-3 down");
    let id = theirs["id"].as_str().unwrap().to_string();
    wait_caught_up(&p);
    (p, b, ours, theirs["ticket"].as_i64().unwrap(), id)
}

/// Telco B on a fixed port, knowing NOC A by both its addresses, and A's primary knowing B.
fn partner_of(p: &Pair) -> TestNode {
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
    b
}

/// A node's counters of its edge with `peer`, read from its store file: (our last sequence
/// towards it, the highest it acknowledged, the highest we took from it, the highest epoch of
/// its we saw).
fn edge_counters(n: &TestNode, peer: &str) -> (i64, i64, i64, i64) {
    open_db(&n.dir)
        .query_row(
            "SELECT out_last, out_acked, in_applied, in_epoch FROM exchange_edges WHERE peer = ?1",
            [peer],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap_or_default()
}

/// Notes of the tail B writes while A's standby is away.
const TAIL: usize = 5;

/// NOC A (primary and standby, async replication) and telco B with a ticket of A's referred
/// and accepted, A's standby caught up and then stopped: (the certificate authority, kept while
/// the nodes run, A's primary, A's standby, B, A's ticket, B's ticket).
fn async_pair_with_its_standby_away() -> (Option<Ca>, TestNode, TestNode, TestNode, i64, i64) {
    let p = Pair::new(|c| {
        c.replication.mode = Some(Mode::Async);
        quick_transport(c);
    });
    let b = partner_of(&p);
    let (ours, theirs) = refer_accepted(&p.primary, &b, "LON-PAR-3 down");
    let theirs = theirs["ticket"].as_i64().unwrap();
    wait_caught_up(&p);
    let Pair {
        _ca,
        primary,
        mut standby,
        ..
    } = p;
    standby.stop();
    (_ca, primary, standby, b, ours, theirs)
}

/// NOC A replicates asynchronously and its standby is away while telco B sends shared notes
/// to A's primary, which takes and acknowledges them: A's standby never knew they were taken.
/// A's primary is SIGKILLed and the standby promoted (epoch 2): its mark for B is behind what B
/// had acknowledged, so it answers B's next message `OutOfOrder` with an `expected` B has
/// already dropped from its outbox. Before the fix B's edge stuck there for good (`out of
/// order`, retried forever); now B sends again from its log what A's site lost (protocol §5c),
/// so every note of B's is at A's new primary exactly once, and both edges carry on.
#[test]
fn an_async_failover_that_lost_the_partners_tail_has_it_sent_again() {
    let (_ca, mut primary, mut standby, b, ours, theirs) = async_pair_with_its_standby_away();
    for i in 0..TAIL {
        b.cli(&[
            "note",
            &theirs.to_string(),
            "--shared",
            &format!("tail-b {i}"),
        ])
        .ok();
    }
    wait_history(&primary, ours, &format!("[telco-b] tail-b {}", TAIL - 1));
    // B's outbox fully acknowledged by A's primary: B has dropped the tail from it.
    wait_until("B's tail acknowledged", || {
        let (last, acked, ..) = edge_counters(&b, "noc-a");
        acked == last
    });
    primary.kill();
    standby.start();
    let promoted = standby.cli(&["--json", "promote"]).json();
    assert_eq!(promoted["epoch"], 2, "{promoted}");
    let (_, _, a_took, _) = edge_counters(&standby, "telco-b");
    let (_, b_acked, ..) = edge_counters(&b, "noc-a");
    assert!(
        a_took < b_acked,
        "the new primary took {a_took} of B's messages, B had {b_acked} acknowledged"
    );

    // New notes both ways after the failover.
    for i in 0..3 {
        standby
            .cli(&[
                "note",
                &ours.to_string(),
                "--shared",
                &format!("after-a {i}"),
            ])
            .ok();
        b.cli(&[
            "note",
            &theirs.to_string(),
            "--shared",
            &format!("after-b {i}"),
        ])
        .ok();
    }
    wait_history(&b, theirs, "[noc-a] after-a 2");
    wait_history(&standby, ours, "[telco-b] after-b 2");
    let (at_a, at_b) = (notes(&standby, ours), notes(&b, theirs));
    let once = |notes: &[String], text: String| {
        let n = notes.iter().filter(|t| **t == text).count();
        assert_eq!(n, 1, "{text:?} is there {n} times, not once: {notes:?}");
    };
    for i in 0..TAIL {
        once(&at_a, format!("[telco-b] tail-b {i}"));
    }
    for i in 0..3 {
        once(&at_a, format!("[telco-b] after-b {i}"));
        once(&at_b, format!("[noc-a] after-a {i}"));
    }
    assert_eq!(referrals(&b).len(), 1, "one referral, no duplicate");
}

/// NOC A replicates asynchronously and its standby is away while A's primary sends shared
/// notes that telco B takes: B's mark for A is then past everything A's standby has queued.
/// A's primary is SIGKILLed and the standby promoted (epoch 2); it sends notes of its own.
/// With `b_away` B is stopped across the failover, so the new primary decides all its notes
/// before it reaches B (more than the tail it lost: without the rule B answers the first ones
/// as retries and they are lost); without, B is up and the new primary's first note goes
/// alone, with a sequence below B's mark (without the rule B's `Ack` is beyond everything the
/// new primary queued, it refuses it, and the edge stops for good). Either way the new primary first learns B's mark (a probe, seq 0) and moves
/// its own notes after it (protocol §5c): each reaches B exactly once, and the edge carries on.
fn a_failover_that_lost_what_was_sent(b_away: bool) {
    let (_ca, mut primary, mut standby, mut b, ours, theirs) = async_pair_with_its_standby_away();
    for i in 0..TAIL {
        primary
            .cli(&[
                "note",
                &ours.to_string(),
                "--shared",
                &format!("tail-a {i}"),
            ])
            .ok();
    }
    wait_history(&b, theirs, &format!("[noc-a] tail-a {}", TAIL - 1));
    if b_away {
        b.stop();
    }
    primary.kill();
    standby.start();
    let promoted = standby.cli(&["--json", "promote"]).json();
    assert_eq!(promoted["epoch"], 2, "{promoted}");
    let (a_last, ..) = edge_counters(&standby, "telco-b");
    let (_, _, b_took, _) = edge_counters(&b, "noc-a");
    assert!(
        a_last < b_took,
        "the new primary queued up to {a_last}, B took {b_took} of A's messages"
    );

    // More notes of its own than the tail it lost, all decided before B is back when
    // `b_away`; else the first alone (its sequence is below B's mark, and B's answer to it
    // would acknowledge more than the new primary ever queued), then the rest.
    let news = TAIL + 3;
    let note = |i: usize| {
        standby
            .cli(&["note", &ours.to_string(), "--shared", &format!("new-a {i}")])
            .ok();
    };
    note(0);
    if !b_away {
        wait_history(&b, theirs, "[noc-a] new-a 0");
    }
    (1..news).for_each(note);
    if b_away {
        b.start();
    }
    wait_history(&b, theirs, &format!("[noc-a] new-a {}", news - 1));
    // The edge carries on.
    standby
        .cli(&["note", &ours.to_string(), "--shared", "after the move"])
        .ok();
    wait_history(&b, theirs, "[noc-a] after the move");
    let at_b = notes(&b, theirs);
    let once = |text: String| {
        let n = at_b.iter().filter(|t| **t == text).count();
        assert_eq!(n, 1, "{text:?} is at B {n} times, not once: {at_b:?}");
    };
    for i in 0..TAIL {
        once(format!("[noc-a] tail-a {i}"));
    }
    for i in 0..news {
        once(format!("[noc-a] new-a {i}"));
    }
    once("[noc-a] after the move".to_string());
    // Nothing waits at A and B's mark is A's last sequence: the move was into the gap only.
    wait_until("A's outbox acknowledged", || {
        let (last, acked, ..) = edge_counters(&standby, "telco-b");
        last == acked
    });
    let (a_last, ..) = edge_counters(&standby, "telco-b");
    assert_eq!(edge_counters(&b, "noc-a").2, a_last);
    assert_eq!(referrals(&b).len(), 1, "one referral, no duplicate");
}

#[test]
fn a_failover_that_lost_what_was_sent_moves_the_new_primarys_messages_after_the_partners_mark() {
    a_failover_that_lost_what_was_sent(false);
}

#[test]
fn a_failover_that_lost_what_was_sent_loses_nothing_the_new_primary_decided_before_reaching_the_partner(
) {
    a_failover_that_lost_what_was_sent(true);
}

/// The story both tests tell; `kill_b` also SIGKILLs B at the moment A's primary dies.
fn failover_mid_stream(kill_b: bool) {
    let (p, mut b, ours, theirs, id) = federation();
    let Pair {
        mut primary,
        standby,
        ..
    } = p;
    let (at_a, at_b, a_writer, b_writer) = writers_mid_stream(&primary, ours, &b, theirs);
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
    each_note_once_on_both_sides(&standby, ours, &b, theirs);

    // The deposed primary comes back: the new primary's dial fences it. B, restarted, dials
    // A's first address, the deposed primary, which refuses it naming the new primary; B
    // moves over and the note arrives once.
    primary.start();
    wait_fenced(&primary);
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
    referral_carries_on(&standby, &b, theirs, &id);
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

#[test]
fn partners_follow_a_planned_switchover_exactly_once() {
    switchover_mid_stream(false);
}

#[test]
fn partners_follow_a_planned_switchover_when_the_partner_is_killed_at_once() {
    switchover_mid_stream(true);
}

/// A planned switchover of A mid-stream; `kill_b` also SIGKILLs B the moment it is done (and
/// restarts it), so B's outbox and inbound mark come back from its store alone.
fn switchover_mid_stream(kill_b: bool) {
    let (p, mut b, ours, theirs, id) = federation();
    let Pair {
        primary, standby, ..
    } = p;
    let (at_a, at_b, a_writer, b_writer) = writers_mid_stream(&primary, ours, &b, theirs);
    // Mid-stream, on the primary: it hands over to the standby and follows it.
    let out = primary.cli(&["--json", "switchover"]).json();
    assert_eq!(
        (out["new_primary"].as_str(), out["epoch"].as_u64()),
        (Some("standby"), Some(2)),
        "{out}"
    );
    if kill_b {
        b.kill();
        b.start();
        *at_b.lock().unwrap() = target_of(&b);
    }
    // A's writer moves over (the old primary now refuses it `not_primary`); B's writer stays
    // where it is, and B's outbox finds A's new primary by itself.
    *at_a.lock().unwrap() = target_of(&standby);
    let (a_acked, b_acked) = (a_writer.join().unwrap(), b_writer.join().unwrap());
    assert_eq!(a_acked.len(), NOTES, "every note of A acknowledged");
    assert_eq!(b_acked.len(), NOTES, "every note of B acknowledged");

    // Every acknowledged note is on both sides once: B's at A's new primary too, and on the
    // old primary, which follows the new one.
    each_note_once_on_both_sides(&standby, ours, &b, theirs);
    wait_until("the old primary to hold the new one's log", || {
        position_and_digest(&primary) == position_and_digest(&standby)
    });

    referral_carries_on(&standby, &b, theirs, &id);
}

/// Waits until `n` (a deposed primary) says it is fenced.
fn wait_fenced(n: &TestNode) {
    wait_until("the old primary to be fenced", || {
        n.cli(&["--json", "status"])
            .json()
            .to_string()
            .contains("fenced")
    });
}

/// B's mark for the edge from `site`: (highest sequence taken, highest epoch seen).
fn mark_at(n: &TestNode, site: &str) -> (i64, i64) {
    let (_, _, applied, epoch) = edge_counters(n, site);
    (applied, epoch)
}

/// A deposed primary in `degrade` mode that restarts before anyone fences it still believes it
/// is the primary, and its outbox holds a tail the new primary never had. The partner has seen
/// the site's new epoch (the new primary's retries carry it, even a retry the partner had
/// already taken) and refuses the tail; the new primary's own next message is taken, once.
#[test]
fn a_partner_refuses_a_deposed_primarys_tail_once_it_has_seen_the_new_epoch() {
    let (p, mut b, ours, theirs, _id) = federation();
    let Pair {
        mut primary,
        mut standby,
        ..
    } = p;
    // B away: a note queues at A (sync: on the standby too).
    b.stop();
    primary
        .cli(&["note", &ours.to_string(), "--shared", "before the fault"])
        .ok();
    wait_until("the standby to hold the queued note", || {
        position_and_digest(&primary) == position_and_digest(&standby)
    });
    // The standby dies; B comes back and takes the note from A's primary, whose record of
    // B's acknowledgement never reaches the standby.
    standby.kill();
    b.start();
    wait_history(&b, theirs, "[noc-a] before the fault");
    let (taken, epoch) = mark_at(&b, "noc-a");
    assert_eq!(epoch, 1);
    // B away again; A's primary, degraded without its standby, writes a tail no one else has.
    b.stop();
    primary
        .cli(&["note", &ours.to_string(), "--shared", "deposed tail"])
        .ok();
    primary.kill();

    // The standby is promoted; its outbox still holds the note B took (it never learnt of the
    // acknowledgement): it sends it again, in epoch 2, and B learns the new epoch from it.
    standby.start();
    let promoted = standby.cli(&["--json", "promote"]).json();
    assert_eq!(promoted["epoch"], 2, "{promoted}");
    b.start();
    wait_until("B to learn noc-a's epoch 2 from a retry", || {
        mark_at(&b, "noc-a") == (taken, 2)
    });

    // The new primary away, the deposed one restarts with no one to fence it: it still thinks
    // it is the primary and sends its tail to B, which refuses it (stale epoch).
    standby.stop();
    primary.start();
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !history(&b, theirs).contains("deposed tail"),
        "B took the deposed primary's tail: {}",
        history(&b, theirs)
    );
    assert_eq!(mark_at(&b, "noc-a"), (taken, 2));

    // The new primary back: it fences the old one, and its own next message is taken once.
    standby.start();
    wait_fenced(&primary);
    standby
        .cli(&["note", &ours.to_string(), "--shared", "after the fence"])
        .ok();
    wait_history(&b, theirs, "[noc-a] after the fence");
    let at_b = notes(&b, theirs);
    assert_eq!(
        at_b.iter()
            .filter(|t| t.contains("after the fence"))
            .count(),
        1
    );
    assert!(!at_b.iter().any(|t| t.contains("deposed tail")), "{at_b:?}");
}

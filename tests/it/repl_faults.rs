//! The hot standby's fault tests, Jepsen-style: real `ttx` processes, SIGKILL, clients that log
//! every acknowledgement, and a checker over the whole history at the end. The kill times come
//! from a seed printed with each run, so a failure replays.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ttx::replication::{Mode, WhenGone};

use crate::common::{open_db, try_http_with, TestNode};
use crate::repl::{free_udp_port, wait_caught_up, wait_until, Pair};

/// Concurrent writers per trial.
const WRITERS: usize = 16;
/// Trials in the suite (the bench runs more).
const TRIALS: usize = 20;

/// A tiny seeded generator (xorshift): the kill schedule, reproducible from the seed.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Copies a stopped node's data dir into a fresh temp dir.
fn copy_node(from: &TestNode) -> TestNode {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(from.dir.file_name().unwrap());
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(&from.dir)
        .arg(&dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {}", from.dir.display());
    let _ = std::fs::remove_dir_all(dir.join("run"));
    TestNode::at(tmp, dir)
}

/// What one writer learned: the keys acknowledged (with the ticket number) and the keys whose
/// answer it never got.
#[derive(Default)]
struct History {
    acked: BTreeMap<String, i64>,
    unacked: Vec<String>,
}

/// Creates a ticket whose subject is its key; `(0, null)` when the node refused the connection.
pub(crate) fn create(
    addr: std::net::SocketAddr,
    token: &str,
    key: &str,
) -> (u16, serde_json::Value) {
    let body = format!(r#"{{"subject": "{key}"}}"#);
    try_http_with(
        addr,
        "POST",
        "/v1/tickets",
        Some(token),
        Some(body.as_bytes()),
        &[("Idempotency-Key", key)],
    )
    .unwrap_or((0, serde_json::Value::Null))
}

/// Tickets by subject in a stopped node's store.
pub(crate) fn subjects(dir: &Path) -> BTreeMap<String, Vec<i64>> {
    let db = open_db(dir);
    let mut stmt = db.prepare("SELECT subject, number FROM tickets").unwrap();
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap()
    {
        let (s, n) = row.unwrap();
        out.entry(s).or_default().push(n);
    }
    out
}

/// One trial: 16 writers create tickets with unique Idempotency-Keys against the primary in
/// sync mode; the primary is SIGKILLed `kill_after` once 16 writes were acknowledged; the standby is promoted; every request
/// whose answer was lost is retried with its key against the new primary. With
/// `standby_first`, the standby is SIGKILLed first (its receipt spool may hold acknowledged
/// batches it had not applied), then the primary, and the standby restarted before it is
/// promoted. Returns (acked, retried, events the standby held only in its spool at the kill).
fn trial(
    template: &Pair,
    trial: usize,
    kill_after: Duration,
    standby_first: bool,
) -> (usize, usize, usize) {
    let mut primary = copy_node(&template.primary);
    let mut standby = copy_node(&template.standby);
    let port = free_udp_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    primary.configure(|c| c.transport.listen = Some(addr));
    standby.configure(|c| c.replication.primary = Some(addr.to_string()));
    primary.start();
    standby.start();
    let standby_addr = standby.listen_addr();
    let pair = Pair {
        _ca: None,
        primary,
        standby,
        primary_addr: addr,
        standby_addr,
    };
    wait_caught_up(&pair);
    let Pair {
        mut primary,
        mut standby,
        ..
    } = pair;
    let token = primary.admin_token();
    let api = primary.api_addr();
    let histories: Vec<Arc<Mutex<History>>> = (0..WRITERS).map(|_| Arc::default()).collect();
    let start = Instant::now();
    let writers: Vec<_> = histories
        .iter()
        .enumerate()
        .map(|(w, history)| {
            let (history, token) = (history.clone(), token.clone());
            std::thread::spawn(move || {
                for j in 0.. {
                    let key = format!("t{trial}-w{w}-{j}");
                    let (code, body) = create(api, &token, &key);
                    let mut h = history.lock().unwrap();
                    match (code, body["number"].as_i64()) {
                        (201, Some(n)) => {
                            h.acked.insert(key, n);
                        }
                        _ => {
                            // The node is gone (or refused): this answer is lost; stop.
                            h.unacked.push(key);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    // Kill only once the writers are under way (a loaded machine starts them slowly), then
    // after the seeded delay.
    let acked_so_far = || -> usize {
        histories
            .iter()
            .map(|h| h.lock().unwrap().acked.len())
            .sum()
    };
    while acked_so_far() < WRITERS {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "trial {trial}: the writers got no answers"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(kill_after);
    if standby_first {
        standby.kill();
    }
    primary.kill();
    for w in writers {
        w.join().unwrap();
    }
    let mut spooled_only = 0;
    if standby_first {
        spooled_only = spooled_past_head(&standby.dir);
        standby.start();
    }
    let promoted = standby.cli(&["--json", "promote"]).json();
    assert_eq!(promoted["epoch"], 2, "{promoted}");
    // Retry every lost answer with the same key against the new primary.
    let new_api = standby.api_addr();
    let mut retried = 0;
    for h in &histories {
        for key in &h.lock().unwrap().unacked {
            let (code, body) = create(new_api, &token, key);
            assert_eq!(code, 201, "retry of {key} on the promoted standby: {body}");
            retried += 1;
        }
    }
    standby.stop();
    let held = subjects(&standby.dir);
    let mut acked = 0;
    for h in &histories {
        let h = h.lock().unwrap();
        for (key, number) in &h.acked {
            acked += 1;
            assert_eq!(
                held.get(key),
                Some(&vec![*number]),
                "trial {trial}: acknowledged {key} (ticket {number}) is not on the new primary exactly once"
            );
        }
        for key in &h.unacked {
            assert_eq!(
                held.get(key).map(Vec::len),
                Some(1),
                "trial {trial}: retried {key} is not applied exactly once: {:?}",
                held.get(key)
            );
        }
    }
    (acked, retried, spooled_only)
}

/// Events a stopped standby holds in its receipt spool past its store's head.
fn spooled_past_head(dir: &Path) -> usize {
    let head = head_of(dir) as u64;
    let db = ttx::datadir::DataDir::new(dir).database();
    ttx::store::spool::Spool::beside(&db)
        .pending_after(head)
        .unwrap()
        .len()
}

#[test]
fn sigkill_of_the_sync_primary_under_16_writers_then_promote_loses_no_acknowledged_write() {
    kill_trials(TRIALS, false);
}

/// With `replication.receipt_spool`, the standby acknowledges a batch once it is in its
/// receipt spool, before it applies it:
/// SIGKILL the standby under load, then the primary, restart the standby and promote it:
/// every acknowledged write is on it (the promotion applied the spool first), exactly once.
#[test]
fn sigkill_of_the_sync_standby_then_the_primary_then_promote_loses_no_acknowledged_write() {
    kill_trials(TRIALS / 2, true);
}

fn kill_trials(trials: usize, standby_first: bool) {
    let seed = std::env::var("TTX_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| ttx::model::clock::now() as u64 | 1);
    eprintln!("fault seed {seed} (TTX_FAULT_SEED={seed} replays it)");
    let mut rng = Seeded(seed);
    let mut template = Pair::new(|c| {
        c.replication.mode = Some(Mode::Sync);
        c.replication.receipt_spool = standby_first;
        c.replication.when_standby_gone = WhenGone::Block;
        c.replication.block_timeout_ms = 10_000;
    });
    wait_caught_up(&template);
    template.standby.stop();
    template.primary.stop();
    // Promoted, the standby has no standby of its own: in `block` it would refuse every write
    // (as PostgreSQL with synchronous_standby_names and no standby). It degrades instead.
    template
        .standby
        .configure(|c| c.replication.when_standby_gone = WhenGone::Degrade);
    let (mut acked, mut retried, mut spooled) = (0, 0, 0);
    let started = Instant::now();
    for t in 0..trials {
        let kill_after = Duration::from_millis(rng.next() % 800);
        let (a, r, s) = trial(&template, t, kill_after, standby_first);
        spooled += s;
        assert!(
            a > 0,
            "trial {t}: no write was acknowledged before the kill"
        );
        acked += a;
        retried += r;
    }
    eprintln!(
        "{trials} trials in {:?}: {acked} acknowledged writes, all on the promoted standby; {retried} lost answers retried, each applied once; {spooled} events were only in the killed standby's spool",
        started.elapsed()
    );
}

/// The last position of a stopped node's log.
fn head_of(dir: &Path) -> i64 {
    open_db(dir)
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn async_loss_is_bounded_by_the_lag_status_reported_before_the_kill() {
    use ttx::faults::Faults;
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The standby reaches its primary through a proxy adding 150 ms each way: it lags.
    let (mut p, proxy) = pair_through_proxy(&rt, |c| c.replication.mode = Some(Mode::Async));
    proxy.set(Faults {
        delay: Duration::from_millis(150),
        ..Faults::NONE
    });
    let token = p.primary.admin_token();
    let api = p.primary.api_addr();
    let mut acked = BTreeMap::new();
    let until = Instant::now() + Duration::from_millis(800);
    for j in 0.. {
        if Instant::now() > until {
            break;
        }
        let key = format!("async-{j}");
        let (code, body) = create(api, &token, &key);
        assert_eq!(code, 201, "{body}");
        acked.insert(key, body["number"].as_i64().unwrap());
    }
    // No write between this status and the kill.
    let status = p.primary.cli(&["--json", "status"]).json();
    let lag = status["replication"]["primary"]["lag"]["events"]
        .as_i64()
        .expect("lag");
    let head = status["events"].as_i64().unwrap();
    p.primary.kill();
    p.standby.cli(&["--json", "promote"]).json();
    p.standby.stop();
    let promoted_head = head_of(&p.standby.dir) - 1; // its own epoch-start event
    let lost_events = head - promoted_head.min(head);
    assert!(
        lost_events <= lag,
        "lost {lost_events} events, status reported a lag of {lag}"
    );
    let held = subjects(&p.standby.dir);
    let lost: Vec<_> = acked.keys().filter(|k| !held.contains_key(*k)).collect();
    assert!(
        lost.len() as i64 <= lag,
        "{} acknowledged writes lost, lag was {lag}: {lost:?}",
        lost.len()
    );
    eprintln!(
        "async: {} writes acknowledged, lag reported {lag} events, {} lost",
        acked.len(),
        lost.len()
    );
}

fn sync_when_gone(c: &mut ttx::config::Config, when: WhenGone) {
    c.replication.mode = Some(Mode::Sync);
    c.replication.when_standby_gone = when;
    c.replication.block_timeout_ms = 500;
}

/// A pair whose standby reaches the primary through an in-test UDP proxy.
pub(crate) fn pair_through_proxy(
    rt: &tokio::runtime::Runtime,
    edit: impl Fn(&mut ttx::config::Config),
) -> (Pair, ttx::faults::UdpProxy) {
    let mut p = Pair::new(edit);
    wait_caught_up(&p);
    let proxy = rt
        .block_on(ttx::faults::UdpProxy::start(
            p.primary_addr,
            11,
            ttx::faults::Limits::default(),
        ))
        .unwrap();
    p.standby.stop();
    let via = proxy.addr().to_string();
    p.standby
        .configure(|c| c.replication.primary = Some(via.clone()));
    p.standby.start();
    wait_caught_up(&p);
    (p, proxy)
}

#[test]
fn a_partition_in_block_mode_fails_writes_clearly_and_heals_without_a_duplicate() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut p, proxy) = pair_through_proxy(&rt, |c| sync_when_gone(c, WhenGone::Block));
    let (token, api) = (p.primary.admin_token(), p.primary.api_addr());
    proxy.set(ttx::faults::Faults::CUT);
    let (code, body) = create(api, &token, "cut-1");
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (503, Some("not_on_standby")),
        "{body}"
    );
    // Lossy and slow, then healed: the stream recovers, the retry is answered once.
    proxy.set(ttx::faults::Faults {
        drop: 0.2,
        delay: Duration::from_millis(30),
        ..ttx::faults::Faults::NONE
    });
    std::thread::sleep(Duration::from_millis(300));
    proxy.set(ttx::faults::Faults::NONE);
    wait_caught_up(&p);
    let (code, body) = create(api, &token, "cut-1");
    assert_eq!(
        (code, body["replayed"].as_bool()),
        (201, Some(true)),
        "{body}"
    );
    let (code, _) = create(api, &token, "after-heal");
    assert_eq!(code, 201);
    p.standby.stop();
    p.primary.stop();
    let held = subjects(&p.standby.dir);
    assert_eq!(held.get("cut-1").map(Vec::len), Some(1), "{held:?}");
    assert_eq!(held.get("after-heal").map(Vec::len), Some(1), "{held:?}");
}

#[test]
fn a_partition_in_degrade_mode_goes_on_loudly_and_recovers_when_healed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut p, proxy) = pair_through_proxy(&rt, |c| sync_when_gone(c, WhenGone::Degrade));
    let (token, api) = (p.primary.admin_token(), p.primary.api_addr());
    proxy.set(ttx::faults::Faults::CUT);
    let (code, body) = create(api, &token, "cut-degrade");
    assert_eq!(code, 201, "{body}");
    let degraded = |p: &Pair| {
        p.primary.cli(&["--json", "status"]).json()["replication"]["primary"]["degraded_since"]
            .is_i64()
    };
    assert!(degraded(&p), "degraded after the partition");
    proxy.set(ttx::faults::Faults::NONE);
    wait_caught_up(&p);
    wait_until("sync to be restored after the heal", || !degraded(&p));
    p.standby.stop();
    p.primary.stop();
    let held = subjects(&p.standby.dir);
    assert_eq!(held.get("cut-degrade").map(Vec::len), Some(1), "{held:?}");
}

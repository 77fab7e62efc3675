//! Automatic failover with a witness, across real `ttx` processes over real QUIC: a primary
//! `noc-a/primary`, its standby `noc-a/standby`, and a witness `telco-w/primary` (another site's
//! node) that holds the lease on noc-a's primary role over `ttx-witness/1`. SIGKILL, in-test
//! UDP proxies for partitions, clients that log every acknowledgement.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ttx::faults::{Faults, Limits, UdpProxy};
use ttx::replication::{Mode, WhenGone};

use crate::common::TestNode;
use crate::repl::{wait_caught_up, wait_until, Pair};
use crate::repl_faults::{create, pair_through_proxy, subjects};

fn sync_degrade(c: &mut ttx::config::Config) {
    c.replication.mode = Some(Mode::Sync);
    c.replication.when_standby_gone = WhenGone::Degrade;
    c.replication.block_timeout_ms = 500;
}

fn status(n: &TestNode) -> serde_json::Value {
    n.cli(&["--json", "status"]).json()
}

fn role(n: &TestNode) -> String {
    status(n)["role"].as_str().unwrap_or_default().to_string()
}

/// Starts a witness node of site `telco-w` with the pair's CA and authorizes the relation on
/// both sides (`--allow witness`).
fn start_witness(p: &Pair) -> TestNode {
    start_witness_allowing(p, "witness")
}

/// [`start_witness`], the witness's registry allowing noc-a `allow`.
fn start_witness_allowing(p: &Pair, allow: &str) -> TestNode {
    let ca = p._ca.as_ref().expect("the pair's CA");
    let w = ca.node("fed", "telco-w");
    let w_addr = w.listen_addr().to_string();
    let p_addr = p.primary_addr.to_string();
    w.cli(&["peer", "add", "noc-a", "--addr", &p_addr, "--allow", allow])
        .ok();
    p.primary
        .cli(&[
            "peer", "add", "telco-w", "--addr", &w_addr, "--allow", "witness",
        ])
        .ok();
    wait_caught_up(p);
    w
}

/// Restarts both nodes of the pair naming the witness (`replication.witness`), the primary
/// reaching it at `primary_via` when given, and waits until the primary holds the lease.
fn name_witness(p: &mut Pair, primary_via: Option<String>) {
    p.standby.stop();
    p.primary.stop();
    p.primary.configure(|c| {
        c.replication.witness = Some("telco-w".into());
        c.replication.witness_addr = primary_via.clone();
    });
    p.standby
        .configure(|c| c.replication.witness = Some("telco-w".into()));
    p.primary.start();
    p.standby.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&p.primary);
        if s["replication"]["lease"]["may_write"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the primary never held the lease: {}",
            s["replication"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_caught_up(p);
}

/// [`start_witness`], then [`name_witness`] with the witness at its registered address.
fn add_witness(p: &mut Pair) -> TestNode {
    let w = start_witness(p);
    name_witness(p, None);
    w
}

/// Keyed writers against one node until `stop`: each logs the keys acknowledged (with the
/// client's receive time) and the keys whose answer it never got.
#[derive(Default)]
struct Log {
    acked: BTreeMap<String, Instant>,
    unacked: Vec<String>,
}

fn writers(
    api: std::net::SocketAddr,
    token: &str,
    prefix: &str,
    n: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Arc<Mutex<Log>>, Vec<std::thread::JoinHandle<()>>) {
    let log: Arc<Mutex<Log>> = Arc::default();
    let threads = (0..n)
        .map(|w| {
            let (log, token, stop) = (log.clone(), token.to_string(), stop.clone());
            let prefix = prefix.to_string();
            std::thread::spawn(move || {
                for j in 0.. {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    let key = format!("{prefix}-w{w}-{j}");
                    let (code, body) = create(api, &token, &key);
                    let mut l = log.lock().unwrap();
                    match (code, body["number"].as_i64()) {
                        (201, Some(_)) => {
                            l.acked.insert(key, Instant::now());
                        }
                        (0, _) => {
                            // The node is gone: this answer is lost.
                            l.unacked.push(key);
                            return;
                        }
                        _ => {
                            // Refused (no lease, not primary): not acknowledged; pause a little.
                            l.unacked.push(key);
                            drop(l);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            })
        })
        .collect();
    (log, threads)
}

#[test]
fn a_killed_primary_is_replaced_by_its_standby_on_the_witness_word_losing_nothing() {
    let mut p = Pair::new(sync_degrade);
    wait_caught_up(&p);
    let mut w = add_witness(&mut p);
    let token = p.primary.admin_token();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (log, threads) = writers(p.primary.api_addr(), &token, "k", 8, stop.clone());
    wait_until("some writes acknowledged", || {
        log.lock().unwrap().acked.len() >= 40
    });
    p.primary.kill();
    let killed = Instant::now();
    for t in threads {
        t.join().unwrap();
    }
    // The standby is promoted by itself (nobody runs `ttx promote`) and takes writes.
    let (api, token) = (p.standby.api_addr(), p.standby.admin_token());
    let deadline = Instant::now() + Duration::from_secs(30);
    let writable = loop {
        let (code, _) = create(api, &token, "first-after-failover");
        if code == 201 {
            break killed.elapsed();
        }
        assert!(Instant::now() < deadline, "the standby was never promoted");
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "witness failover: writable {} ms after the SIGKILL",
        writable.as_millis()
    );
    assert_eq!(role(&p.standby), "primary");
    let lease = &status(&p.standby)["replication"]["lease"];
    assert_eq!(lease["holder"], "standby", "{lease}");
    assert_eq!(lease["epoch"], 2, "{lease}");
    // Every request whose answer was lost, retried with its key, is applied once.
    let log = log.lock().unwrap();
    for key in &log.unacked {
        let (code, body) = create(api, &token, key);
        assert_eq!(code, 201, "{key}: {body}");
    }
    // The witness restarts: the lease book survives, the deposed primary coming back is
    // fenced by its first renewal (or by the promoted node's knock) and takes no write.
    w.stop();
    w.start();
    p.primary.start();
    wait_until("the deposed primary to be fenced", || {
        role(&p.primary).starts_with("fenced:") || role(&p.primary).starts_with("standby:")
    });
    p.primary
        .cli(&["new", "written on the deposed primary"])
        .fails(4, "");
    p.primary.stop();
    p.standby.stop();
    w.stop();
    let held = subjects(&p.standby.dir);
    for key in log.acked.keys().chain(log.unacked.iter()) {
        assert_eq!(
            held.get(key).map(Vec::len),
            Some(1),
            "{key}: {:?}",
            held.get(key)
        );
    }
    assert_eq!(held.get("first-after-failover").map(Vec::len), Some(1));
    assert!(!held.contains_key("written on the deposed primary"));
    assert_eq!(
        ttx::replication::witness_serve::stored_lease(&w.dir.join("witness.db"), "noc-a").unwrap(),
        Some(("standby".into(), 2))
    );
}

#[test]
fn a_primary_cut_from_the_witness_stops_before_the_standby_takes_over() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut p = Pair::new(sync_degrade);
    wait_caught_up(&p);
    // The primary reaches the witness through a proxy; the standby directly.
    let mut w = start_witness(&p);
    let proxy = rt
        .block_on(UdpProxy::start(w.listen_addr(), 5, Limits::default()))
        .unwrap();
    name_witness(&mut p, Some(proxy.addr().to_string()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (old, old_threads) = writers(
        p.primary.api_addr(),
        &p.primary.admin_token(),
        "old",
        4,
        stop.clone(),
    );
    let (new, new_threads) = writers(
        p.standby.api_addr(),
        &p.standby.admin_token(),
        "new",
        4,
        stop.clone(),
    );
    wait_until("writes on the primary", || {
        old.lock().unwrap().acked.len() >= 20
    });
    proxy.set(Faults::CUT);
    let cut = Instant::now();
    wait_until("the standby to be promoted", || {
        role(&p.standby) == "primary"
    });
    wait_until("writes on the new primary", || {
        !new.lock().unwrap().acked.is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in old_threads.into_iter().chain(new_threads) {
        t.join().unwrap();
    }
    let (old, new) = (old.lock().unwrap(), new.lock().unwrap());
    let last_old = *old.acked.values().max().unwrap();
    let first_new = *new.acked.values().min().unwrap();
    eprintln!(
        "cut from the witness: last write on the old primary {} ms after the cut, first on the new one {} ms after it",
        last_old.duration_since(cut).as_millis(),
        first_new.duration_since(cut).as_millis()
    );
    // Never both: the old primary's last acknowledgement came before the new one's first.
    assert!(
        last_old < first_new,
        "both primaries acknowledged writes at once"
    );
    let s = status(&p.primary);
    assert_eq!(s["replication"]["lease"]["may_write"], false, "{s}");
    // Everything the old primary acknowledged is on the new one.
    p.primary.stop();
    p.standby.stop();
    w.stop();
    let held = subjects(&p.standby.dir);
    for key in old.acked.keys().chain(new.acked.keys()) {
        assert_eq!(held.get(key).map(Vec::len), Some(1), "{key}");
    }
}

/// Waits 5 s (twice the lease and margin), then checks that `standby` is still a standby and
/// that the witness's last word to it starts with `why`.
#[track_caller]
fn still_a_standby_for_5s(standby: &TestNode, why: &str) {
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(role(standby), "standby:primary");
    let lease = &status(standby)["replication"]["lease"];
    let refusal = lease["last_refusal"].as_str().unwrap_or_default();
    assert!(refusal.starts_with(why), "{lease}");
}

#[test]
fn a_standby_cut_from_a_renewing_primary_is_not_promoted_nor_after_a_degraded_primary_dies() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut p, proxy) = pair_through_proxy(&rt, sync_degrade);
    let mut w = add_witness(&mut p);
    // add_witness restarted the standby with its config: it still follows through the proxy.
    proxy.set(Faults::CUT);
    still_a_standby_for_5s(&p.standby, "held");
    // A write now degrades the primary (the standby is away): acknowledged only once the
    // witness knows. Then the primary dies: no automatic promotion.
    let (code, body) = create(p.primary.api_addr(), &p.primary.admin_token(), "degraded-1");
    assert_eq!(code, 201, "{body}");
    p.primary.kill();
    proxy.set(Faults::NONE);
    still_a_standby_for_5s(&p.standby, "degraded");
    p.standby.stop();
    w.stop();
}

#[test]
fn without_a_witness_a_dead_primary_is_never_replaced() {
    let mut p = Pair::new(sync_degrade);
    wait_caught_up(&p);
    p.primary.kill();
    std::thread::sleep(Duration::from_secs(5));
    let s = status(&p.standby);
    assert_eq!(s["role"], "standby:primary", "{s}");
    assert_eq!(s["replication"]["lease"], serde_json::Value::Null, "{s}");
    p.standby.stop();
}

#[test]
fn a_site_the_witness_does_not_allow_gets_no_lease_and_takes_no_write() {
    let mut p = Pair::new(sync_degrade);
    // A timer set while the primary needs no lease, due once it needs one it cannot get
    // (far enough ahead that a loaded machine restarts the primary before it is due; checked
    // below).
    p.primary.cli(&["new", "waiting on telco"]).ok();
    p.primary
        .cli(&["timer", "1", "--in", "10s", "call telco"])
        .ok();
    let timer_set = Instant::now();
    wait_caught_up(&p);
    // noc-a names telco-w its witness, but telco-w allows noc-a only the exchange.
    let mut w = start_witness_allowing(&p, "exchange");
    let alerts = p.primary.cli(&["--json", "alerts"]).json();
    assert_eq!(alerts, serde_json::json!([]), "the timer is not due yet");
    p.primary.stop();
    p.primary
        .configure(|c| c.replication.witness = Some("telco-w".into()));
    p.primary.start();
    std::thread::sleep(Duration::from_secs(2));
    let (code, body) = create(p.primary.api_addr(), &p.primary.admin_token(), "refused");
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (503, Some("no_lease")),
        "{body}"
    );
    let lease = &status(&p.primary)["replication"]["lease"];
    assert_eq!(lease["witness_reachable"], false, "{lease}");
    assert!(
        lease["last_refusal"]
            .as_str()
            .unwrap_or_default()
            .contains("not_authorized"),
        "{lease}"
    );
    // Nor does anything the primary decides by itself outside the API: the timer, due for
    // two seconds by now, has not gone off (the writer refuses `FireDueTimers` without the
    // lease).
    std::thread::sleep(
        (timer_set + Duration::from_secs(12)).saturating_duration_since(Instant::now()),
    );
    let alerts = p.primary.cli(&["--json", "alerts"]).json();
    assert_eq!(
        alerts,
        serde_json::json!([]),
        "no timer fired without the lease"
    );
    let timers = p.primary.cli(&["--json", "timers", "1"]).json();
    assert!(timers[0]["fired_at"].is_null(), "{timers}");
    p.primary.stop();
    p.standby.stop();
    w.stop();
}

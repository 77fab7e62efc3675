//! The role changes of `ttx bench replication`, timed as a client sees them: how long writes
//! pause during `ttx switchover`, how long from `ttx promote` to the first accepted write, and
//! how long from the primary's SIGKILL to the first write the witness's promotion lets in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::KeepAlive;
use super::BenchError;

/// One writer's view of a switchover: the longest gap between two acknowledged writes while
/// the switchover ran, and what the old primary reported as its own pause.
#[derive(Debug, Clone, Copy)]
pub struct Pause {
    /// The longest time without an acknowledged write, as the client saw it (ms).
    pub client_gap_ms: f64,
    /// The old primary's `paused_ms` (from its hand-over to learning the standby took over),
    /// when the switchover ran on the primary.
    pub reported_ms: Option<f64>,
    /// The same-run baseline: the longest gap between acknowledged writes in the 300 ms before
    /// the switchover started.
    pub baseline_gap_ms: f64,
    /// Writes acknowledged during the measurement.
    pub writes: u64,
}

fn failed(what: &str, why: impl std::fmt::Display) -> BenchError {
    BenchError::Invalid(format!("{what}: {why}"))
}

/// A client that creates tickets without a pause on whichever of `nodes` takes writes (it
/// moves to the other node on `not_primary` or `switching_over`), retrying each with its key;
/// returns the times of its acknowledged writes.
fn write_on(
    nodes: [SocketAddr; 2],
    token: String,
    stop: Arc<AtomicBool>,
) -> Result<Vec<Instant>, BenchError> {
    let mut conns = [
        KeepAlive::connect(nodes[0], &token)?,
        KeepAlive::connect(nodes[1], &token)?,
    ];
    let (mut at, mut acked) = (0, Vec::new());
    let started = Instant::now();
    for i in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("switchover-bench-{i}");
        loop {
            if started.elapsed() > Duration::from_secs(60) {
                return Err(failed("switchover bench", "no write accepted for 60 s"));
            }
            let a = conns[at].post_json_keyed(
                "/v1/tickets",
                br#"{"subject": "written during a switchover"}"#,
                Some(&key),
            );
            match a {
                Ok(a) if a.status == 201 => {
                    acked.push(Instant::now());
                    break;
                }
                Ok(a) if a.status == 409 || a.status == 503 => at = 1 - at,
                Ok(a) => {
                    return Err(failed(
                        "switchover bench",
                        format!("HTTP {}: {}", a.status, String::from_utf8_lossy(&a.body)),
                    ))
                }
                Err(_) => conns[at] = KeepAlive::connect(nodes[at], &token)?,
            }
        }
    }
    Ok(acked)
}

/// Runs `POST /v1/switchover` on `run_on` while a client writes on both nodes; the gap is the
/// longest time between two acknowledged writes from just before the call to just after.
pub fn switchover_pause(
    run_on: SocketAddr,
    nodes: [SocketAddr; 2],
    token: &str,
) -> Result<Pause, BenchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (token, stop) = (token.to_string(), stop.clone());
        std::thread::spawn(move || write_on(nodes, token, stop))
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = Instant::now();
    let answer = KeepAlive::connect(run_on, token)?.post_json("/v1/switchover", b"{}")?;
    let after = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let acked = writer
        .join()
        .map_err(|_| failed("switchover bench", "the writer panicked"))??;
    if answer.status != 200 {
        return Err(failed(
            "switchover",
            String::from_utf8_lossy(&answer.body).into_owned(),
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&answer.body).map_err(|e| failed("switchover answer", e))?;
    let window: Vec<Instant> = acked
        .iter()
        .copied()
        .filter(|t| *t >= before - Duration::from_millis(200))
        .collect();
    let gap = window
        .windows(2)
        .filter(|w| w[1] >= before && w[0] <= after + Duration::from_millis(200))
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(after - before);
    let baseline = acked
        .windows(2)
        .filter(|w| w[1] < before)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    Ok(Pause {
        client_gap_ms: gap.as_secs_f64() * 1e3,
        reported_ms: v["paused_ms"].as_f64(),
        baseline_gap_ms: baseline.as_secs_f64() * 1e3,
        writes: acked.len() as u64,
    })
}

/// What `ttx promote` to the first write took, with the same-run baseline.
#[derive(Debug, Clone, Copy)]
pub struct Promotion {
    /// From sending the promotion to the first accepted write's answer (ms).
    pub to_first_write_ms: f64,
    /// The same-run baseline: one ordinary write on the promoted node right after (ms).
    pub next_write_ms: f64,
}

/// `POST /v1/promote` on the standby at `api` (its primary stopped), then writes until one is
/// accepted: the time from sending the promotion to that write's answer, then one more write
/// timed alone as the baseline.
pub fn promote_to_first_write(api: SocketAddr, token: &str) -> Result<Promotion, BenchError> {
    let mut conn = KeepAlive::connect(api, token)?;
    let start = Instant::now();
    let promoted = conn.post_json("/v1/promote", b"{}")?;
    if promoted.status != 200 {
        return Err(failed(
            "promote",
            String::from_utf8_lossy(&promoted.body).into_owned(),
        ));
    }
    first_write_since(&mut conn, start, "promote", Duration::ZERO)
}

/// Writes on `conn` until one is accepted (bounded: 30 s after `start`, `pause` between
/// refused attempts): the time from `start` to that write's answer, then one more write timed
/// alone as the baseline. `what` names the role change (and the writes' keys).
pub fn first_write_since(
    conn: &mut KeepAlive,
    start: Instant,
    what: &str,
    pause: Duration,
) -> Result<Promotion, BenchError> {
    let (first, next) = (
        format!("{what}-bench-first-write"),
        format!("{what}-bench-next-write"),
    );
    loop {
        let a = conn.post_json_keyed(
            "/v1/tickets",
            br#"{"subject": "the first write after a role change"}"#,
            Some(&first),
        )?;
        if a.status == 201 {
            let to_first_write_ms = start.elapsed().as_secs_f64() * 1e3;
            let at = Instant::now();
            let b = conn.post_json_keyed(
                "/v1/tickets",
                br#"{"subject": "an ordinary write after the role change"}"#,
                Some(&next),
            )?;
            if b.status != 201 {
                return Err(failed(
                    &format!("{what} bench"),
                    format!("HTTP {}", b.status),
                ));
            }
            return Ok(Promotion {
                to_first_write_ms,
                next_write_ms: at.elapsed().as_secs_f64() * 1e3,
            });
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(failed(
                &format!("{what} bench"),
                format!("no write accepted: HTTP {}", a.status),
            ));
        }
        std::thread::sleep(pause);
    }
}

//! `ttx bench replication`'s async phase "commit on the primary to visible on the standby":
//! [`WRITERS`] paced writers send notes to the primary at a fixed total rate (each note at its
//! scheduled time, or right after its writer's previous answer when that came later; the rate
//! actually sent is reported), while one reader waits on the standby
//! (`GET /v1/replication/visible`, answered as soon as the standby's head passes the last one
//! seen) and records when each head became visible to it.
//!
//! Both nodes run on this host, so one clock serves. Two figures:
//! - **commit → visible**, from the nodes' own stamps (`GET /v1/replication/timeline`): the
//!   primary's commit of the note's batch to the standby's commit of it with its head published
//!   to readers, and the stages in between (shipped, received), joined by position;
//! - **sent → seen**, the bench's own: from the request's send to the primary to the waiting
//!   reader's answer covering it (an upper bound: it also holds the primary's HTTP, group
//!   commit and fsync, and the reader's own wake-up); the primary's answer latency beside it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::http::KeepAlive;
use super::{BenchError, Latencies, LatencySummary};
use crate::replication::timeline::{covering, now_us, of_stage, Stage, Stamp};

/// What the phase measured.
#[derive(Debug, Clone, Copy)]
pub struct Visible {
    /// Send on the primary to seen by the waiting reader on the standby, per note.
    pub to_visible: LatencySummary,
    /// Send on the primary to its answer, per note (the primary's own part of the above).
    pub acked: LatencySummary,
    /// Notes per second actually sent.
    pub rate: f64,
    /// The nodes' own stamps, per note.
    pub stages: Stages,
}

/// Per note, from the nodes' stamps (`crate::replication::timeline`) and the reader's answers.
#[derive(Debug, Clone, Copy)]
pub struct Stages {
    /// The primary's commit to the standby's commit with its head visible to readers.
    pub commit_to_visible: LatencySummary,
    /// The primary's commit to its frame written to the standby's stream.
    pub commit_to_shipped: LatencySummary,
    /// Written on the primary to read on the standby (QUIC on loopback, both processes' tasks).
    pub shipped_to_received: LatencySummary,
    /// Read on the standby to applied and committed there.
    pub received_to_applied: LatencySummary,
    /// Of that: read to durable in the receipt spool (when the standby's `durable` ack can
    /// leave: what a `sync` answer waits for on the standby); empty without
    /// `replication.receipt_spool`.
    pub received_to_spooled: LatencySummary,
    /// Of that: read to handed to the writer (the previous batch applied).
    pub received_to_applying: LatencySummary,
    /// Of that: handed to the writer to committed there with its head published.
    pub applying_to_applied: LatencySummary,
    /// Applied on the standby to the waiting reader's answer received by the bench.
    pub applied_to_seen: LatencySummary,
}

/// Paced writers in all (each with its own keep-alive connection): enough that one slow answer
/// does not hold the rate down.
pub const WRITERS: usize = 16;

/// Writes notes on `ticket` through the primary at `per_sec` in all for `secs`, and times each
/// until the standby at `standby` shows it applied.
pub fn commit_to_visible(
    primary: std::net::SocketAddr,
    standby: std::net::SocketAddr,
    token: &str,
    ticket: i64,
    per_sec: f64,
    secs: f64,
) -> Result<Visible, BenchError> {
    let total = (per_sec * secs).max(1.0) as usize;
    let interval = Duration::from_secs_f64(WRITERS as f64 / per_sec);
    let sent: Mutex<Vec<(i64, Instant, Duration)>> = Mutex::new(Vec::with_capacity(total));
    let seen: Mutex<Vec<(Instant, i64)>> = Mutex::new(Vec::with_capacity(total * 4));
    let done = std::sync::atomic::AtomicBool::new(false);
    let failure: Mutex<Option<BenchError>> = Mutex::new(None);
    let path = format!("/v1/tickets/{ticket}/notes");
    // One clock for the bench's instants and the nodes' stamps (unix microseconds).
    let (base, base_us) = (Instant::now(), now_us());
    let wall = |at: Instant| base_us + at.duration_since(base).as_micros() as i64;
    let start = Instant::now() + Duration::from_millis(50);
    std::thread::scope(|s| {
        let poller = s.spawn(|| {
            let result = (|| {
                let mut conn = KeepAlive::connect(standby, token)?;
                let mut head = visible_after(&mut conn, -1, 0)?;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    head = visible_after(&mut conn, head, 100)?;
                    seen.lock()
                        .expect("not poisoned")
                        .push((Instant::now(), head));
                }
                // Until the last note is seen (or 10 s).
                let last = sent.lock().expect("not poisoned").iter().map(|s| s.0).max();
                let until = Instant::now() + Duration::from_secs(10);
                while let Some(last) = last {
                    if head >= last || Instant::now() > until {
                        break;
                    }
                    head = visible_after(&mut conn, head, 100)?;
                    seen.lock()
                        .expect("not poisoned")
                        .push((Instant::now(), head));
                }
                Ok(())
            })();
            if let Err(e) = result {
                *failure.lock().expect("not poisoned") = Some(e);
            }
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (sent, failure, path) = (&sent, &failure, &path);
                s.spawn(move || {
                    let result = (|| {
                        let mut conn = KeepAlive::connect(primary, token)?;
                        let offset = interval / WRITERS as u32 * w as u32;
                        for i in 0..total / WRITERS {
                            let due = start + offset + interval * i as u32;
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                            let at = Instant::now();
                            let body = format!(r#"{{"text": "visible {w} {i}"}}"#);
                            let answer = conn.post_json(path, body.as_bytes())?;
                            let acked = at.elapsed();
                            let position = position_of(&answer.body).ok_or_else(|| {
                                BenchError::Invalid(format!(
                                    "the primary answered HTTP {}: {}",
                                    answer.status,
                                    String::from_utf8_lossy(&answer.body)
                                ))
                            })?;
                            sent.lock()
                                .expect("not poisoned")
                                .push((position, at, acked));
                        }
                        Ok(())
                    })();
                    if let Err(e) = result {
                        *failure.lock().expect("not poisoned") = Some(e);
                    }
                })
            })
            .collect();
        for w in writers {
            let _ = w.join();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = poller.join();
    });
    if let Some(e) = failure.into_inner().expect("not poisoned") {
        return Err(e);
    }
    let sent = sent.into_inner().expect("not poisoned");
    let seen = seen.into_inner().expect("not poisoned");
    let (mut to_visible, mut acked) = (
        Latencies::with_capacity(sent.len()),
        Latencies::with_capacity(sent.len()),
    );
    for &(position, at, ack) in &sent {
        acked.record(ack);
        // The first answer at or after the send that shows the position applied.
        let first = seen
            .iter()
            .find(|(when, head)| *when >= at && *head >= position)
            .ok_or_else(|| {
                BenchError::Invalid(format!(
                    "the standby did not show position {position} within 10 s"
                ))
            })?;
        to_visible.record(first.0 - at);
    }
    let span = match (
        sent.iter().map(|s| s.1).min(),
        sent.iter().map(|s| s.1).max(),
    ) {
        (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
        _ => secs,
    };
    let on_primary = timeline(primary, token, base_us)?;
    let on_standby = timeline(standby, token, base_us)?;
    let [committed, shipped] = [Stage::Committed, Stage::Shipped].map(|s| of_stage(&on_primary, s));
    let [received, spooled, applying, applied] = [
        Stage::Received,
        Stage::Spooled,
        Stage::Applying,
        Stage::Applied,
    ]
    .map(|s| of_stage(&on_standby, s));
    let mut lat: [Latencies; 8] = std::array::from_fn(|_| Latencies::with_capacity(sent.len()));
    let us = |from: i64, to: i64| Duration::from_micros(to.saturating_sub(from).max(0) as u64);
    for &(position, at, _) in &sent {
        let p = position as u64;
        let stamps =
            [&committed, &shipped, &received, &applying, &applied].map(|st| covering(st, p));
        let [Some(c), Some(sh), Some(r), Some(w), Some(a)] = stamps else {
            return Err(BenchError::Invalid(format!(
                "position {position} lacks a replication stamp (committed, shipped, received, \
                 applying, applied): {stamps:?}"
            )));
        };
        // Only a standby with `replication.receipt_spool` spools.
        if let Some(sp) = covering(&spooled, p) {
            lat[7].record(us(r, sp));
        }
        let seen_at = seen
            .iter()
            .find(|(when, head)| *when >= at && *head >= position)
            .map(|s| wall(s.0))
            .unwrap_or(a);
        lat[0].record(us(c, a));
        lat[1].record(us(c, sh));
        lat[2].record(us(sh, r));
        lat[3].record(us(r, a));
        lat[4].record(us(a, seen_at));
        lat[5].record(us(r, w));
        lat[6].record(us(w, a));
    }
    let [commit_to_visible, commit_to_shipped, shipped_to_received, received_to_applied, applied_to_seen, received_to_applying, applying_to_applied, received_to_spooled] =
        lat.map(|l| l.summary());
    Ok(Visible {
        to_visible: to_visible.summary(),
        acked: acked.summary(),
        rate: sent.len() as f64 / span,
        stages: Stages {
            commit_to_visible,
            commit_to_shipped,
            shipped_to_received,
            received_to_applied,
            received_to_spooled,
            received_to_applying,
            applying_to_applied,
            applied_to_seen,
        },
    })
}

/// The standby's head once it is past `after` (or after `wait_ms`), as a reader there sees it.
fn visible_after(conn: &mut KeepAlive, after: i64, wait_ms: u64) -> Result<i64, BenchError> {
    let answer = conn.get(&format!(
        "/v1/replication/visible?after={after}&wait_ms={wait_ms}"
    ))?;
    let v: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|e| BenchError::Invalid(format!("standby visible: {e}")))?;
    v["head"].as_i64().ok_or_else(|| {
        BenchError::Invalid(format!("the standby answered HTTP {}: {v}", answer.status))
    })
}

/// A node's replication stamps taken after `after_us`.
fn timeline(
    node: std::net::SocketAddr,
    token: &str,
    after_us: i64,
) -> Result<Vec<Stamp>, BenchError> {
    let answer = KeepAlive::connect(node, token)?
        .get(&format!("/v1/replication/timeline?after_us={after_us}"))?;
    let v: crate::api::replication::TimelineAnswer =
        serde_json::from_slice(&answer.body).map_err(|e| {
            BenchError::Invalid(format!("timeline of {node}: HTTP {}: {e}", answer.status))
        })?;
    Ok(v.stamps)
}

/// The last event position in a note's answer.
fn position_of(body: &[u8]) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["events"].as_array()?.last()?.as_i64()
}

//! `ttx bench replication`'s async phase "commit on the primary to visible on the standby":
//! [`WRITERS`] paced writers send notes to the primary at a fixed total rate (each note at its
//! scheduled time, or right after its writer's previous answer when that came later; the rate
//! actually sent is reported), while one poller reads the standby's `GET /v1/status` back to
//! back and records when each applied head was seen.
//!
//! Both nodes run on this host, so one clock serves: the bench's own monotonic clock. A note's
//! figure is from the moment its request was sent to the primary to the end of the first
//! standby status answer whose applied head covers the note's position. That is an upper
//! bound of commit → visible: it also holds the primary's own commit (its HTTP, group commit
//! and fsync) and up to one poll interval; the primary's answer latency is reported beside it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::http::KeepAlive;
use super::{BenchError, Latencies, LatencySummary};

/// What the phase measured.
#[derive(Debug, Clone, Copy)]
pub struct Visible {
    /// Send on the primary to seen applied on the standby, per note.
    pub to_visible: LatencySummary,
    /// Send on the primary to its answer, per note (the primary's own part of the above).
    pub acked: LatencySummary,
    /// Notes per second actually sent.
    pub rate: f64,
    /// The poller's mean interval between status answers (the figure's resolution).
    pub poll_interval_us: f64,
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
    let start = Instant::now() + Duration::from_millis(50);
    std::thread::scope(|s| {
        let poller = s.spawn(|| {
            let result = (|| {
                let mut conn = KeepAlive::connect(standby, token)?;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let head = applied(&mut conn)?;
                    seen.lock()
                        .expect("not poisoned")
                        .push((Instant::now(), head));
                }
                // Until the last note is seen (or 10 s).
                let last = sent.lock().expect("not poisoned").iter().map(|s| s.0).max();
                let until = Instant::now() + Duration::from_secs(10);
                while let Some(last) = last {
                    let head = applied(&mut conn)?;
                    seen.lock()
                        .expect("not poisoned")
                        .push((Instant::now(), head));
                    if head >= last || Instant::now() > until {
                        break;
                    }
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
    let poll_interval_us = match (seen.first(), seen.last()) {
        (Some(a), Some(b)) if seen.len() > 1 => {
            (b.0 - a.0).as_secs_f64() * 1e6 / (seen.len() - 1) as f64
        }
        _ => 0.0,
    };
    Ok(Visible {
        to_visible: to_visible.summary(),
        acked: acked.summary(),
        rate: sent.len() as f64 / span,
        poll_interval_us,
    })
}

/// The standby's applied head, from its status.
fn applied(conn: &mut KeepAlive) -> Result<i64, BenchError> {
    let answer = conn.get("/v1/status")?;
    let v: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|e| BenchError::Invalid(format!("standby status: {e}")))?;
    v["replication"]["following"]["applied"]
        .as_i64()
        .ok_or_else(|| BenchError::Invalid(format!("the standby is not following: {v}")))
}

/// The last event position in a note's answer.
fn position_of(body: &[u8]) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["events"].as_array()?.last()?.as_i64()
}

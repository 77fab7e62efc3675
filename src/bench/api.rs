//! `ttx bench api`: durable notes through the local HTTP API of a real node in this process,
//! against the store's write path called directly in the same run.
//!
//! - Concurrent: `clients` threads, each with its own keep-alive connection
//!   ([`KeepAlive`]), append notes (`POST /v1/tickets/{n}/notes`) for a count or a duration.
//!   Baseline: the same number of threads calling `Writer::write_blocking` with the same note
//!   on the same node's store, so `api / direct` is the API's overhead.
//! - Sequential: one client, one note at a time: the latency an operator sees, against one
//!   thread calling the writer directly.
//!
//! CPU time per thread (tokio workers, the writer thread, the clients) is reported for the
//! concurrent runs, so a missed target says where the time went.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use super::http::KeepAlive;
use super::node::{this_thread_cpu, thread_bytes_written, BenchNode, ThreadCpu};
use super::store::text::{self, Rng};
use super::{rate, BenchError, Goal, Latencies, MachineInfo, Report, ScratchDir, Section, Target};
use crate::model::command::Command;
use crate::store::{WriteOp, WriteOutcome, WriteRequest};

/// Target: durable notes per second through the API with 16 clients.
pub const TARGET_NOTES_PER_SEC: f64 = 10_000.0;
/// Target: median latency of one note through the API, one client (ms).
pub const TARGET_SEQUENTIAL_P50_MS: f64 = 2.0;

/// Issue 6: at most this much CPU of the writer thread per acknowledged note at 16 clients.
pub const TARGET_WRITER_CPU_US_PER_NOTE: f64 = 50.0;

/// How long a load runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// This many operations in all.
    Count(u64),
    /// This long.
    For(Duration),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n} notes"),
            Limit::For(d) => write!(f, "{:.0} s", d.as_secs_f64()),
        }
    }
}

/// What `ttx bench api` runs, and how big.
#[derive(Debug, Clone)]
pub struct ApiBenchOptions {
    /// Concurrent clients (threads, one keep-alive connection each).
    pub clients: usize,
    /// How long each concurrent run lasts.
    pub limit: Limit,
    /// Notes timed one at a time by a single client (and by one direct writer).
    pub sequential: u64,
    /// Tickets the notes are spread over.
    pub tickets: usize,
    /// Where the node's data dir goes (the system temp dir otherwise); removed afterwards.
    pub dir: Option<PathBuf>,
}

impl Default for ApiBenchOptions {
    fn default() -> Self {
        Self {
            clients: 16,
            limit: Limit::For(Duration::from_secs(10)),
            sequential: 2_000,
            tickets: 8,
            dir: None,
        }
    }
}

/// The outcome of one load.
#[derive(Debug, Default)]
pub struct Run {
    /// Operations done.
    pub count: u64,
    /// Wall time from the start barrier to the last thread's end.
    pub elapsed: Duration,
    /// Per-operation latencies.
    pub latencies: Latencies,
    /// CPU seconds the load's own threads used.
    pub client_cpu_secs: f64,
}

/// Runs `op` on `threads` threads (named `bench-client`) until `limit`, each thread with the
/// state `setup(i)` made before the clock starts.
pub fn drive<S, F, G>(threads: usize, limit: Limit, setup: F, op: G) -> Result<Run, BenchError>
where
    F: Fn(usize) -> Result<S, BenchError> + Sync,
    G: Fn(&mut S) -> Result<(), BenchError> + Sync,
{
    let threads = threads.max(1);
    let barrier = Barrier::new(threads + 1);
    let remaining = AtomicU64::new(match limit {
        Limit::Count(n) => n,
        Limit::For(_) => u64::MAX,
    });
    let deadline = Mutex::new(None::<Instant>);
    let run = Mutex::new(Run::default());
    let failed = Mutex::new(None::<BenchError>);
    let start = std::thread::scope(|s| {
        for i in 0..threads {
            let (setup, op, barrier, remaining, deadline, run, failed) =
                (&setup, &op, &barrier, &remaining, &deadline, &run, &failed);
            std::thread::Builder::new()
                .name("bench-client".into())
                .spawn_scoped(s, move || {
                    let state = setup(i);
                    barrier.wait();
                    let mut state = match state {
                        Ok(s) => s,
                        Err(e) => {
                            *failed.lock().expect("not poisoned") = Some(e);
                            return;
                        }
                    };
                    let until = *deadline.lock().expect("not poisoned");
                    let mut lat = Latencies::with_capacity(4096);
                    let cpu0 = this_thread_cpu().unwrap_or(0.0);
                    loop {
                        if until.is_some_and(|d| Instant::now() >= d)
                            || remaining
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                    n.checked_sub(1)
                                })
                                .is_err()
                        {
                            break;
                        }
                        if let Err(e) = lat.time(|| op(&mut state)) {
                            *failed.lock().expect("not poisoned") = Some(e);
                            return;
                        }
                    }
                    let cpu = this_thread_cpu().unwrap_or(0.0) - cpu0;
                    let mut r = run.lock().expect("not poisoned");
                    r.latencies.merge(lat);
                    r.client_cpu_secs += cpu;
                })
                .map_err(BenchError::io("spawn a client thread"))?;
        }
        if let Limit::For(d) = limit {
            *deadline.lock().expect("not poisoned") = Some(Instant::now() + d);
        }
        let start = Instant::now();
        barrier.wait();
        Ok::<_, BenchError>(start)
    })?;
    let elapsed = start.elapsed();
    if let Some(e) = failed.into_inner().expect("not poisoned") {
        return Err(e);
    }
    let mut run = run.into_inner().expect("not poisoned");
    run.elapsed = elapsed;
    run.count = run.latencies.summary().count as u64;
    Ok(run)
}

/// A note's JSON body for the API, and the same note as a store command.
fn note_bodies(rng: &mut Rng, n: usize) -> Vec<(Vec<u8>, String)> {
    (0..n)
        .map(|_| {
            let t = text::note(rng);
            let body = serde_json::to_vec(&serde_json::json!({ "text": t })).expect("json");
            (body, t)
        })
        .collect()
}

pub(crate) struct ApiClient {
    conn: KeepAlive,
    rng: Rng,
    notes: Vec<(Vec<u8>, String)>,
    paths: Vec<String>,
    /// Whether every note carries a fresh `Idempotency-Key`: a new UUIDv7 each time, the key
    /// the CLI sends (time-ordered, so the store's key b-tree is appended to at its end).
    keyed: bool,
}

impl ApiClient {
    fn new(node: &BenchNode, tickets: &[i64], seed: u64) -> Result<Self, BenchError> {
        Self::at(node.addr, &node.token, tickets, seed)
    }

    /// A client of the API at `addr` (a node in another process) writing notes on `tickets`.
    pub(crate) fn at(
        addr: std::net::SocketAddr,
        token: &str,
        tickets: &[i64],
        seed: u64,
    ) -> Result<Self, BenchError> {
        let mut rng = Rng::new(seed);
        Ok(Self {
            conn: KeepAlive::connect(addr, token)?,
            notes: note_bodies(&mut rng, 32),
            paths: tickets
                .iter()
                .map(|n| format!("/v1/tickets/{n}/notes"))
                .collect(),
            rng,
            keyed: false,
        })
    }

    /// A client whose every note carries a fresh idempotency key.
    fn keyed(node: &BenchNode, tickets: &[i64], seed: u64) -> Result<Self, BenchError> {
        let mut client = Self::new(node, tickets, seed)?;
        client.keyed = true;
        Ok(client)
    }

    /// One note on a ticket drawn at random; an error unless the node answers 200.
    pub(crate) fn note(&mut self) -> Result<(), BenchError> {
        let path = &self.paths[self.rng.below(self.paths.len())];
        let body = &self.notes[self.rng.below(self.notes.len())].0;
        let key = self.keyed.then(|| uuid::Uuid::now_v7().to_string());
        let answer = self.conn.post_json_keyed(path, body, key.as_deref())?;
        if answer.status != 200 {
            return Err(BenchError::Invalid(format!(
                "the node answered HTTP {} to a note: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )));
        }
        Ok(())
    }
}

fn direct_note(
    writer: &crate::store::Writer,
    rng: &mut Rng,
    notes: &[(Vec<u8>, String)],
    tickets: &[i64],
) -> Result<(), BenchError> {
    let req = WriteRequest {
        actor: "admin".into(),
        idempotency: None,
        op: WriteOp::Ticket {
            number: tickets[rng.below(tickets.len())],
            command: Command::Note {
                text: notes[rng.below(notes.len())].1.clone(),
                shared: false,
                happened_at: None,
            },
        },
    };
    match writer.write_blocking(req)? {
        WriteOutcome::Ticket(_) => Ok(()),
        other => Err(BenchError::Invalid(format!(
            "unexpected answer to a note: {other:?}"
        ))),
    }
}

/// A load's figures and the CPU split of the process during it.
struct Measured {
    run: Run,
    cpu: ThreadCpu,
    group_commit: f64,
    /// Bytes the writer thread wrote (WAL frames, checkpoints, the note index) per note.
    writer_bytes_per_note: f64,
}

fn measure(
    node: &BenchNode,
    f: impl FnOnce() -> Result<Run, BenchError>,
) -> Result<Measured, BenchError> {
    let stats = &node.store().writer.stats;
    let (r0, c0) = (
        stats.requests.load(Ordering::Relaxed),
        stats.commits.load(Ordering::Relaxed),
    );
    let cpu0 = ThreadCpu::now();
    let bytes0 = thread_bytes_written("ttx-writer");
    let run = f()?;
    let mut cpu = ThreadCpu::now().since(&cpu0);
    let bytes = thread_bytes_written("ttx-writer").saturating_sub(bytes0);
    let writer_bytes_per_note = bytes as f64 / run.count.max(1) as f64;
    cpu.0.insert("bench-client".into(), run.client_cpu_secs);
    let requests = stats.requests.load(Ordering::Relaxed) - r0;
    let commits = (stats.commits.load(Ordering::Relaxed) - c0).max(1);
    Ok(Measured {
        run,
        cpu,
        group_commit: requests as f64 / commits as f64,
        writer_bytes_per_note,
    })
}

/// Runs the API benchmark and returns its report (missed targets are in the report).
pub fn run(opts: &ApiBenchOptions) -> Result<Report, BenchError> {
    let scratch = ScratchDir::new(opts.dir.as_deref())?;
    let machine = MachineInfo::collect(scratch.path(), 200)?;
    let node = BenchNode::start(&scratch.path().join("node"))?;
    let tickets = node.open_tickets(opts.tickets.max(1))?;
    let clients = opts.clients.max(1);
    let writer = node.store().writer.clone();

    // Warm-up: connections, token cache, statement caches, page cache.
    drive(
        clients,
        Limit::Count(20 * clients as u64),
        |i| ApiClient::new(&node, &tickets, 500 + i as u64),
        ApiClient::note,
    )?;

    // The same load without and with an idempotency key on every note.
    let api_load = |seed: u64, keyed: bool| {
        measure(&node, || {
            drive(
                clients,
                opts.limit,
                |i| match keyed {
                    false => ApiClient::new(&node, &tickets, seed + i as u64),
                    true => ApiClient::keyed(&node, &tickets, seed + i as u64),
                },
                ApiClient::note,
            )
        })
    };
    let api = api_load(1000, false)?;
    let keyed = api_load(5000, true)?;
    let direct = measure(&node, || {
        drive(
            clients,
            opts.limit,
            |i| {
                let mut rng = Rng::new(2000 + i as u64);
                let notes = note_bodies(&mut rng, 32);
                Ok((rng, notes))
            },
            |(rng, notes)| direct_note(&writer, rng, notes, &tickets),
        )
    })?;
    let seq_api = drive(
        1,
        Limit::Count(opts.sequential.max(1)),
        |_| ApiClient::new(&node, &tickets, 3000),
        ApiClient::note,
    )?;
    let seq_direct = drive(
        1,
        Limit::Count(opts.sequential.max(1)),
        |_| {
            let mut rng = Rng::new(4000);
            let notes = note_bodies(&mut rng, 32);
            Ok((rng, notes))
        },
        |(rng, notes)| direct_note(&writer, rng, notes, &tickets),
    )?;
    node.stop();

    let mut concurrent = Section::new(format!(
        "Durable notes through the API ({clients} clients, keep-alive, {}, synchronous = full)",
        opts.limit
    ));
    let api_rate = rate(api.run.count, api.run.elapsed);
    let direct_rate = rate(direct.run.count, direct.run.elapsed);
    let (a, d) = (api.run.latencies.summary(), direct.run.latencies.summary());
    concurrent.target(
        "api notes/s",
        api_rate,
        "notes/s",
        Target {
            goal: Goal::AtLeast,
            value: TARGET_NOTES_PER_SEC,
        },
    );
    concurrent.figure("api notes", api.run.count as f64, "notes");
    // Thread CPU comes from /proc in clock ticks (10 ms): over a run of seconds that is well
    // under 1 % of the writer's time.
    let writer_cpu = api.cpu.0.get("ttx-writer").copied().unwrap_or(0.0);
    concurrent.target(
        "api writer CPU per note",
        writer_cpu * 1e6 / (api.run.count.max(1) as f64),
        "µs",
        Target {
            goal: Goal::AtMost,
            value: TARGET_WRITER_CPU_US_PER_NOTE,
        },
    );
    concurrent.figure(
        "api writer KiB written per note",
        api.writer_bytes_per_note / 1024.0,
        "KiB",
    );
    concurrent.figure("api note latency p50", a.p50_us / 1000.0, "ms");
    concurrent.figure("api note latency p99", a.p99_us / 1000.0, "ms");
    concurrent.figure("api average group commit", api.group_commit, "writes");
    concurrent.figure(
        "direct notes/s (Writer::write_blocking)",
        direct_rate,
        "notes/s",
    );
    concurrent.figure("direct note latency p50", d.p50_us / 1000.0, "ms");
    concurrent.figure("direct note latency p99", d.p99_us / 1000.0, "ms");
    concurrent.figure("direct average group commit", direct.group_commit, "writes");
    concurrent.figure("api / direct", api_rate / direct_rate.max(1e-9), "x");
    let keyed_rate = rate(keyed.run.count, keyed.run.elapsed);
    let k = keyed.run.latencies.summary();
    concurrent.figure("keyed api notes/s (Idempotency-Key)", keyed_rate, "notes/s");
    let keyed_writer_cpu = keyed.cpu.0.get("ttx-writer").copied().unwrap_or(0.0);
    concurrent.figure(
        "keyed api writer CPU per note",
        keyed_writer_cpu * 1e6 / (keyed.run.count.max(1) as f64),
        "µs",
    );
    concurrent.figure(
        "keyed api writer KiB written per note",
        keyed.writer_bytes_per_note / 1024.0,
        "KiB",
    );
    concurrent.figure("keyed api note latency p50", k.p50_us / 1000.0, "ms");
    concurrent.figure("keyed api note latency p99", k.p99_us / 1000.0, "ms");
    concurrent.figure(
        "keyed api average group commit",
        keyed.group_commit,
        "writes",
    );
    concurrent.figure("keyed / unkeyed api", keyed_rate / api_rate.max(1e-9), "x");
    concurrent.note(format!(
        "api: {clients} threads, each a raw HTTP/1.1 keep-alive TcpStream (src/bench/http.rs), \
         POST /v1/tickets/N/notes with a bearer token over {} tickets; the node runs in this \
         process (tokio default workers, API on 127.0.0.1 port 0)",
        tickets.len()
    ));
    concurrent.note(
        "direct: the same threads and notes calling the same node's Writer::write_blocking \
         (no HTTP, no JSON, no auth)",
    );
    concurrent.note(
        "keyed api: the same load, every note with a new Idempotency-Key (as the CLI sends): \
         the writer looks the key up and appends an `answered` event with the answer",
    );
    for (what, m) in [("api", &api), ("keyed api", &keyed), ("direct", &direct)] {
        concurrent.note(format!(
            "{what} CPU over {:.2} s wall: {}",
            m.run.elapsed.as_secs_f64(),
            m.cpu.describe()
        ));
    }

    let mut sequential = Section::new(format!(
        "One client, one note at a time ({} notes)",
        opts.sequential.max(1)
    ));
    let (sa, sd) = (seq_api.latencies.summary(), seq_direct.latencies.summary());
    sequential.target(
        "api note latency p50",
        sa.p50_us / 1000.0,
        "ms",
        Target {
            goal: Goal::AtMost,
            value: TARGET_SEQUENTIAL_P50_MS,
        },
    );
    sequential.figure("api note latency p99", sa.p99_us / 1000.0, "ms");
    sequential.figure("direct note latency p50", sd.p50_us / 1000.0, "ms");
    sequential.figure("direct note latency p99", sd.p99_us / 1000.0, "ms");
    sequential.figure("api - direct p50", (sa.p50_us - sd.p50_us) / 1000.0, "ms");
    sequential.note(
        "each note waits for its own commit (group of one): the p50 is mostly the fsync; \
         see the machine's fdatasync line",
    );
    Ok(Report {
        bench: "api".into(),
        machine,
        sections: vec![concurrent, sequential],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_api_bench_runs() {
        let dir = tempfile::tempdir().unwrap();
        let report = run(&ApiBenchOptions {
            clients: 3,
            limit: Limit::Count(60),
            sequential: 10,
            tickets: 2,
            dir: Some(dir.path().to_path_buf()),
        })
        .unwrap();
        assert_eq!(report.sections.len(), 2);
        let f = &report.sections[0].figures;
        assert_eq!(f[1].name, "api notes");
        assert_eq!(f[1].value, 60.0);
        assert_eq!(f[2].name, "api writer CPU per note");
        assert!(f.iter().all(|f| f.value.is_finite()));
    }
}

//! `ttx bench exchange`: the referral exchange between two real nodes in this process (their own
//! data dirs, stores with `synchronous = full`, real QUIC and certificates on 127.0.0.1).
//!
//! Figures: refer → durable receipt at the partner → ack back (p50/p99, one at a time);
//! referrals/s and shared notes/s sustained (many writers at once); a backlog of queued notes
//! (`--backlog N`) drained once the partner is back. Every message travels on the edge stream
//! (protocol §5c). Baselines in the same run, so the figures read as ratios:
//! - the floor of one exchange: a Hello-level ping on the same connection plus three durable
//!   commits of bare rusqlite on the same disk (our commit of the referral, the partner's of
//!   the message, ours of the ack);
//! - the transport's ceiling: the same note messages' bytes on one raw quinn stream with the
//!   same TLS configuration, each frame acknowledged by the receiver;
//! - the disk's ceiling: bare rusqlite doing the receiver's inserts (an event row and a note row
//!   per message, the mark once per batch) in batches of the edge stream's window, one durable
//!   commit per batch.
//!
//! Each section records the load average when it ends: the machine may be shared.

use std::path::Path;
use std::time::{Duration, Instant};

use super::transport::{Ctx, RawQuinn};
use super::{load_average, rate, BenchError, Latencies, MachineInfo, Report, ScratchDir, Section};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::exchange::action::ReferTicket;
use crate::exchange::policy::SharingChange;
use crate::identity::NodeIdentity;
use crate::model::command::{Command, CreateTicket};
use crate::model::peer::{Allow, PeerOp};
use crate::node::RunningNode;
use crate::store::{Store, WriteOp, WriteOutcome, WriteRequest};
use crate::wire::codec;
use crate::wire::exchange::{Body, Message, SharedNote};

/// The receiver's window on the edge stream (messages taken in one transaction), which the
/// bare rusqlite baseline batches by.
const WINDOW: usize = 1024;

type Result<T> = std::result::Result<T, BenchError>;

/// What to run.
#[derive(Debug, Clone)]
pub struct ExchangeOpts {
    /// Referrals timed one at a time.
    pub samples: usize,
    /// Referrals in the sustained run.
    pub referrals: usize,
    /// Shared notes in the sustained run.
    pub notes: usize,
    /// Notes queued while the partner is down.
    pub backlog: usize,
    /// Concurrent writers in the sustained runs.
    pub writers: usize,
    /// Where scratch files go.
    pub dir: Option<std::path::PathBuf>,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Invalid(format!("{what}: {e}"))
}

fn req(op: WriteOp) -> WriteRequest {
    WriteRequest {
        actor: "bench".into(),
        idempotency: None,
        op,
    }
}

/// A node's data dir with a certificate from the bench CA.
fn make_node(root: &Path, ca: &Path, site: &str) -> Result<DataDir> {
    let dir = DataDir::new(root.join(site));
    let mut config = Config::new(site, "primary");
    config.node.federation = "bench".into();
    config.api.addr = "127.0.0.1:0".parse().expect("literal address");
    config.transport.listen = Some("127.0.0.1:0".parse().expect("literal address"));
    crate::node::init_data_dir(&dir, &config).map_err(|e| invalid("init", e))?;
    let id = NodeIdentity::new("bench", site, "primary").map_err(|e| invalid("identity", e))?;
    crate::pki::issue(ca, &id, &dir, 30).map_err(|e| invalid("issue", e))?;
    Ok(dir)
}

async fn add_peer(store: &Store, site: &str, addr: std::net::SocketAddr) -> Result<()> {
    let op = WriteOp::Peer(PeerOp::Add {
        site: site.into(),
        addrs: Some(vec![addr.to_string()]),
        pins: None,
        allow: Some(Allow {
            exchange: true,
            standby: false,
            witness: false,
        }),
    });
    store.writer.write(req(op)).await?;
    Ok(())
}

async fn write(store: &Store, op: WriteOp) -> Result<WriteOutcome> {
    Ok(store.writer.write(req(op)).await?)
}

async fn acked(store: &Store, peer: &str) -> Result<(u64, u64)> {
    let peer = peer.to_string();
    let (out, _) = store
        .reader
        .read(move |c| crate::store::exchange::edge(c, &peer))
        .await?;
    Ok((out.last, out.acked))
}

/// Waits until everything queued for `peer` is acknowledged (bounded).
async fn drained(store: &Store, peer: &str, limit: Duration) -> Result<()> {
    let mut head = store.writer.head.clone();
    let deadline = Instant::now() + limit;
    loop {
        let (last, acked) = acked(store, peer).await?;
        if acked >= last {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BenchError::Invalid(format!(
                "{peer} acknowledged {acked} of {last} within {limit:?}"
            )));
        }
        let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), head.changed()).await;
    }
}

async fn tickets(store: &Store, n: usize) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let op = WriteOp::Create(Box::new(CreateTicket {
            subject: format!("bench referral {i}"),
            circuit: Some(format!("C{i}")),
            ..Default::default()
        }));
        match write(store, op).await? {
            WriteOutcome::Ticket(a) => out.push(a.number),
            other => return Err(invalid("create", format!("{other:?}"))),
        }
    }
    Ok(out)
}

fn refer(number: i64) -> WriteOp {
    WriteOp::Refer(Box::new(ReferTicket {
        number,
        to: "telco-b".into(),
        respond_by: None,
        note: None,
    }))
}

/// Runs `ops` with `writers` concurrent writers; returns the time until all are written.
async fn concurrently(store: &Store, ops: Vec<WriteOp>, writers: usize) -> Result<Duration> {
    let start = Instant::now();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(ops));
    let mut tasks = Vec::new();
    for _ in 0..writers.max(1) {
        let (store, queue) = (store.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(op) = next else { return Ok(()) };
                store.writer.write(req(op)).await?;
            }
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| invalid("writer task", e))?
            .map_err(|e: crate::store::StoreError| BenchError::Store(e))?;
    }
    Ok(start.elapsed())
}

/// The baseline: durable commits of bare rusqlite on the same disk, one row each.
fn bare_commit_latency(dir: &Path, n: usize) -> Result<Latencies> {
    let conn = rusqlite::Connection::open(dir.join("bare.db"))?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", "full")?;
    conn.execute_batch("CREATE TABLE m (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)")?;
    let mut l = Latencies::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.execute(
            "INSERT INTO m (seq, body) VALUES (?1, ?2)",
            rusqlite::params![i as i64, vec![0u8; 200]],
        )?;
        conn.execute_batch("COMMIT")?;
        l.record(start.elapsed());
    }
    Ok(l)
}

/// The disk's ceiling for taking `n` note messages: bare rusqlite on the same disk
/// (`synchronous = full`, WAL) inserting what the receiver inserts per message (an event row
/// and a note row of the same size) in batches of [`WINDOW`], the mark updated once per batch,
/// one durable commit per batch. Rows (messages) per second.
fn bare_batched_inserts(dir: &Path, n: usize) -> Result<f64> {
    let path = dir.join("bare-batched.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    let conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", "full")?;
    conn.execute_batch(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, body TEXT NOT NULL);
         CREATE TABLE notes (id BLOB NOT NULL UNIQUE, event_seq INTEGER NOT NULL, text TEXT NOT NULL);
         CREATE INDEX notes_event ON notes (event_seq);
         CREATE TABLE mark (peer TEXT PRIMARY KEY, applied INTEGER NOT NULL);
         INSERT INTO mark VALUES ('noc-a', 0);",
    )?;
    let start = Instant::now();
    let mut i = 0usize;
    while i < n {
        let end = (i + WINDOW).min(n);
        conn.execute_batch("BEGIN IMMEDIATE")?;
        {
            let mut ev =
                conn.prepare_cached("INSERT INTO events (seq, id, body) VALUES (?1, ?2, ?3)")?;
            let mut note =
                conn.prepare_cached("INSERT INTO notes (id, event_seq, text) VALUES (?1, ?2, ?3)")?;
            for k in i..end {
                let id = uuid::Uuid::now_v7();
                let text = note_text(k);
                let body = format!(
                    r#"{{"note":{{"author":"noc-a/bench","shared":true,"text":"{text}"}}}}"#
                );
                ev.execute(rusqlite::params![
                    k as i64 + 1,
                    id.as_bytes().to_vec(),
                    body
                ])?;
                note.execute(rusqlite::params![
                    id.as_bytes().to_vec(),
                    k as i64 + 1,
                    text
                ])?;
            }
        }
        conn.execute(
            "UPDATE mark SET applied = ?1 WHERE peer = 'noc-a'",
            [end as i64],
        )?;
        conn.execute_batch("COMMIT")?;
        i = end;
    }
    Ok(rate(n as u64, start.elapsed()))
}

/// The text of the bench's `i`-th shared note.
fn note_text(i: usize) -> String {
    format!("bench update {i}: light levels nominal on span {}", i % 7)
}

/// The transport's ceiling for `n` note messages: the same `Message` frames the outbox worker
/// writes (a shared note of the same text, encoded before the clock starts) on one raw quinn
/// stream between two endpoints with the same TLS configuration, every frame acknowledged by
/// the receiver. Messages per second, from the first frame to the last ack.
async fn raw_quinn_notes(n: usize) -> Result<f64> {
    let mut ca = crate::net::testing::TestCa::new("bench-ca");
    // Certificate names as `RawQuinn` dials them (the server is `noc-a`); only bytes matter here.
    let server = ca.node("bench", "noc-a", "primary");
    let client = ca.node("bench", "telco-b", "primary");
    let raw = RawQuinn::start(&server, &client, &ca, &[], true).await?;
    let referral = *uuid::Uuid::now_v7().as_bytes();
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let message = Message {
                seq: i as u64 + 1,
                id: *uuid::Uuid::now_v7().as_bytes(),
                epoch: 1,
                referral,
                body: Body::Note(SharedNote {
                    origin_site: "noc-a".into(),
                    origin_id: *uuid::Uuid::now_v7().as_bytes(),
                    author: "bench".into(),
                    at: 1_764_000_000_000,
                    text: note_text(i),
                }),
            };
            codec::encode_framed(&message, u32::MAX)
        })
        .collect::<std::result::Result<_, _>>()
        .ctx("encode a message")?;
    let (sent, start) = super::streams::raw_frames(&raw.conn, &frames).await?;
    Ok(rate(sent, start.elapsed()))
}

/// Adds the load average now (1 minute) to `section`, if the platform has one.
fn with_load(section: &mut Section) {
    if let Some([one, ..]) = load_average() {
        section.figure("load average (1 min) at the end of this", one, "");
    }
}

/// Runs the benchmark and returns its report.
pub fn run(opts: &ExchangeOpts) -> Result<Report> {
    let scratch = ScratchDir::new(opts.dir.as_deref())?;
    let machine = MachineInfo::collect(scratch.path(), 200)?;
    let ca = scratch.path().join("ca");
    crate::pki::init_ca("bench", &ca, 30).map_err(|e| invalid("init the CA", e))?;
    let a_dir = make_node(scratch.path(), &ca, "noc-a")?;
    let b_dir = make_node(scratch.path(), &ca, "telco-b")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("start the runtime"))?;
    let sections = rt.block_on(run_async(opts, scratch.path(), &a_dir, &b_dir))?;
    Ok(Report {
        bench: "exchange".into(),
        machine,
        sections,
    })
}

async fn start_node(dir: &DataDir) -> Result<RunningNode> {
    RunningNode::start(dir.root())
        .await
        .map_err(|e| invalid("start a node", e))
}

fn listen(node: &RunningNode) -> Result<std::net::SocketAddr> {
    node.bound
        .listen_addr
        .ok_or_else(|| BenchError::Invalid("the node does not listen".into()))
}

async fn run_async(
    opts: &ExchangeOpts,
    scratch: &Path,
    a_dir: &DataDir,
    b_dir: &DataDir,
) -> Result<Vec<Section>> {
    let a = start_node(a_dir).await?;
    let mut b = start_node(b_dir).await?;
    add_peer(&a.store, "telco-b", listen(&b)?).await?;
    add_peer(&b.store, "noc-a", listen(&a)?).await?;
    // The partner accepts by policy, so referrals reach `accepted` without an operator, and
    // lifts its caps on what noc-a sends (the default 200 messages/s would be the figure).
    let auto = WriteOp::PeerSharing {
        site: "noc-a".into(),
        change: SharingChange {
            auto_accept: Some(true),
            rate_per_sec: Some(crate::exchange::policy::MAX_RATE),
            burst: Some(crate::exchange::policy::MAX_RATE),
            ..SharingChange::default()
        },
    };
    write(&b.store, auto).await?;
    let total = opts.samples + opts.referrals + 1;
    let numbers = tickets(&a.store, total).await?;
    let (timed, rest) = numbers.split_at(opts.samples);
    // Warm up the connection with one referral.
    write(&a.store, refer(rest[0])).await?;
    drained(&a.store, "telco-b", Duration::from_secs(30)).await?;

    // One at a time: refer, and wait for the partner's ack of it.
    let mut one = Latencies::with_capacity(timed.len());
    for &n in timed {
        let start = Instant::now();
        write(&a.store, refer(n)).await?;
        drained(&a.store, "telco-b", Duration::from_secs(30)).await?;
        one.record(start.elapsed());
    }
    let ping = {
        let fed = a
            .federation
            .get()
            .ok_or_else(|| BenchError::Invalid("the federation is down".into()))?;
        let mut l = Latencies::with_capacity(200);
        for _ in 0..200 {
            l.record(Duration::from_secs_f64(
                fed.ping("telco-b")
                    .await
                    .map_err(|e| invalid("ping", e))?
                    .latency_ms
                    / 1000.0,
            ));
        }
        l.summary()
    };
    let bare = bare_commit_latency(scratch, 200)?.summary();
    let floor_us = ping.p50_us + 3.0 * bare.p50_us;
    let one = one.summary();
    let mut latency = Section::new("refer -> durable receipt at the partner -> ack");
    latency.latency("refer to ack", &one, Some(20.0));
    latency.at_most("refer to ack p50 (target)", one.p50_us / 1000.0, "ms", 5.0);
    latency.figure("baseline: ping p50", ping.p50_us / 1000.0, "ms");
    latency.figure(
        "baseline: bare rusqlite durable commit p50",
        bare.p50_us / 1000.0,
        "ms",
    );
    latency.figure("floor (ping + 3 commits) p50", floor_us / 1000.0, "ms");
    latency.figure("refer to ack / floor (p50)", one.p50_us / floor_us, "x");
    latency.note(format!(
        "{} referrals, one at a time, each on the edge stream",
        one.count
    ));
    with_load(&mut latency);

    // Sustained referrals.
    let ops: Vec<WriteOp> = rest[1..].iter().map(|&n| refer(n)).collect();
    let n_refs = ops.len();
    let start = Instant::now();
    concurrently(&a.store, ops, opts.writers).await?;
    drained(&a.store, "telco-b", Duration::from_secs(600)).await?;
    let refs_per_sec = rate(n_refs as u64, start.elapsed());
    let mut sustained = Section::new("sustained, two nodes on one machine");
    sustained.target(
        "referrals/s (decided, sent, taken, acked)",
        refs_per_sec,
        "referrals/s",
        super::Target {
            goal: super::Goal::AtLeast,
            value: 2000.0,
        },
    );

    // Sustained shared notes on one referral.
    let note_ticket = rest[1];
    let note = |i: usize| WriteOp::Ticket {
        number: note_ticket,
        command: Command::Note {
            text: note_text(i),
            shared: true,
            happened_at: None,
        },
    };
    let start = Instant::now();
    concurrently(&a.store, (0..opts.notes).map(note).collect(), opts.writers).await?;
    drained(&a.store, "telco-b", Duration::from_secs(600)).await?;
    let notes_per_sec = rate(opts.notes as u64, start.elapsed());
    sustained.target(
        "shared notes/s",
        notes_per_sec,
        "notes/s",
        super::Target {
            goal: super::Goal::AtLeast,
            value: 10_000.0,
        },
    );
    let raw_quinn = raw_quinn_notes(opts.notes.max(1)).await?;
    let bare = bare_batched_inserts(scratch, opts.notes.max(1))?;
    sustained.figure(
        "baseline: raw quinn, the same messages' bytes",
        raw_quinn,
        "msgs/s",
    );
    sustained.figure("shared notes/s / raw quinn", notes_per_sec / raw_quinn, "x");
    sustained.figure(
        "baseline: bare rusqlite, the same inserts, 1 commit per 1,024",
        bare,
        "rows/s",
    );
    sustained.figure("shared notes/s / bare rusqlite", notes_per_sec / bare, "x");
    sustained.note(format!(
        "{n_refs} referrals, {} notes on one referral, {} writers at noc-a; one outbox worker per edge writing on one edge stream, the partner taking up to 1,024 messages per transaction; the partner's rate cap lifted",
        opts.notes, opts.writers
    ));
    with_load(&mut sustained);

    // A backlog: the partner down while notes are queued, then back.
    b.stop().await;
    let start_queue = Instant::now();
    concurrently(
        &a.store,
        (0..opts.backlog).map(note).collect(),
        opts.writers,
    )
    .await?;
    let queued_in = start_queue.elapsed();
    b = start_node(b_dir).await?;
    add_peer(&a.store, "telco-b", listen(&b)?).await?;
    let (_, before) = acked(&a.store, "telco-b").await?;
    // Time from the partner being back (re-registered) until the backlog is acknowledged.
    let back = Instant::now();
    drained(&a.store, "telco-b", Duration::from_secs(1800)).await?;
    let drain = back.elapsed();
    let (last, _) = acked(&a.store, "telco-b").await?;
    let mut backlog = Section::new("backlog after a partner outage");
    backlog.at_most(
        format!("{} queued notes drained", last - before),
        drain.as_secs_f64(),
        "s",
        30.0,
    );
    backlog.figure("queueing them took", queued_in.as_secs_f64(), "s");
    let drained_rate = rate(last - before, drain);
    backlog.figure("drain rate", drained_rate, "notes/s");
    let bare = bare_batched_inserts(scratch, (last - before) as usize)?;
    backlog.figure(
        "drain rate / bare rusqlite (same inserts)",
        drained_rate / bare,
        "x",
    );
    with_load(&mut backlog);
    backlog
        .note("includes the outbox worker's back-off still running from the outage (up to 30 s)");
    b.stop().await;
    a.stop().await;
    Ok(vec![latency, sustained, backlog])
}

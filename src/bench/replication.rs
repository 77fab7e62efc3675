//! `ttx bench replication`: a primary and its hot standby as two `ttx serve` processes on
//! loopback (real QUIC, real certificates from a fresh CA, the standby made from a snapshot of
//! the primary), 16 keep-alive clients writing notes through the primary's API in `async`,
//! `sync` and `sync-visible` mode in the same run (the primary restarted between modes, the
//! standby kept running), then one client in `sync` mode for its latency, and in `async` mode
//! notes paced at 1,000/s timed from their send to the standby showing them ([`super::visible`]). PostgreSQL's figures
//! come from its own script, run in the same hour (`docs/benchmarks.md`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::api::{drive, ApiClient, Limit};
use super::http::KeepAlive;
use super::node::ThreadCpu;
use super::{rate, BenchError, Goal, MachineInfo, Report, ScratchDir, Section, Target};
use crate::cluster::{ClusterError, Node, Ttx};
use crate::datadir::DataDir;
use crate::replication::Mode;

/// Notes per second in the async commit → visible phase (issue 9: 1,000 events/s).
pub const VISIBLE_RATE: f64 = 1_000.0;
/// Target: commit on the primary to visible on the standby, p99, at [`VISIBLE_RATE`] (ms).
pub const VISIBLE_P99_MS: f64 = 5.0;

/// What `ttx bench replication` runs.
#[derive(Debug, Clone)]
pub struct ReplicationBenchOptions {
    /// The `ttx` binary to run the nodes with (the running one).
    pub exe: PathBuf,
    /// Concurrent clients.
    pub clients: usize,
    /// Seconds each concurrent load lasts.
    pub secs: f64,
    /// Notes timed one at a time in sync mode.
    pub sequential: u64,
    /// Where the scratch dirs go (the system temp dir otherwise).
    pub dir: Option<PathBuf>,
    /// The standby acks `durable` from its receipt spool (`replication.receipt_spool`).
    pub receipt_spool: bool,
}

fn failed(what: &str) -> impl FnOnce(String) -> BenchError + '_ {
    move |e| BenchError::Invalid(format!("{what}: {e}"))
}

/// A cluster driver's failure (a `ttx` command or a `ttx serve` child), as the bench's.
fn cluster(e: ClusterError) -> BenchError {
    BenchError::Invalid(e.to_string())
}

/// The node's API address, from its `run/node.json`.
fn api_of(node: &Node) -> Result<std::net::SocketAddr, BenchError> {
    Ok(node.runtime().map_err(cluster)?.api_addr)
}

fn status(addr: std::net::SocketAddr, token: &str) -> Result<serde_json::Value, BenchError> {
    let answer = KeepAlive::connect(addr, token)?.get("/v1/status")?;
    serde_json::from_slice(&answer.body).map_err(|e| failed("status")(e.to_string()))
}

/// Sets up the pair in `root`: CA, both data dirs with certificates, the standby authorized
/// and made from a snapshot. Returns the primary's and the standby's dirs and the admin token.
fn set_up(ttx: &Ttx, root: &Path) -> Result<(Node, Node, String), BenchError> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let run = |args: &[&str]| ttx.ok(None, args).map(drop).map_err(cluster);
    let (ca, primary, standby) = (root.join("ca"), root.join("primary"), root.join("standby"));
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|u| u.local_addr())
        .map_err(BenchError::io("pick a UDP port"))?
        .port();
    let listen = format!("127.0.0.1:{port}");
    // The standby's own fixed port, named in the registry: after a switchover the first
    // primary follows it there.
    let standby_listen = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|u| u.local_addr())
        .map_err(BenchError::io("pick a UDP port"))?
        .to_string();
    let fed = ["--federation", "bench"];
    run(&["pki", "init-ca", fed[0], fed[1], "--out", &s(&ca)])?;
    run(&[
        "init",
        &s(&primary),
        "--site",
        "bench",
        fed[0],
        fed[1],
        "--listen",
        &listen,
    ])?;
    let issue = |dir: &Path, node: &str| {
        let args = [
            "pki",
            "issue",
            "--ca",
            &s(&ca),
            "--site",
            "bench",
            "--node",
            node,
        ];
        let dir = s(dir);
        run(&[&args[..], &["--dir", &dir]].concat())
    };
    issue(&primary, "primary")?;
    let mut first = Node::existing(ttx, &primary, "bench/primary");
    first.start().map_err(cluster)?;
    first
        .ok(&[
            "peer",
            "add",
            "bench",
            "--addr",
            &standby_listen,
            "--allow",
            "standby",
        ])
        .map_err(cluster)?;
    first.stop();
    let init = [
        "init", "--site", "bench", "--node", "standby", fed[0], fed[1],
    ];
    let sdir = s(&standby);
    run(&[
        &init[..1],
        &[&sdir],
        &init[1..],
        &["--listen", &standby_listen],
    ]
    .concat())?;
    issue(&standby, "standby")?;
    crate::replication::offline::standby_from_copy(
        &DataDir::new(&primary),
        &DataDir::new(&standby),
    )
    .map_err(|e| failed("make the standby")(e.to_string()))?;
    let token = std::fs::read_to_string(DataDir::new(&primary).admin_token())
        .map_err(BenchError::io("read admin.token"))?
        .trim()
        .to_string();
    let second = Node::existing(ttx, &standby, "bench/standby");
    second
        .configure(|c| c.replication.primary = Some(listen.clone()))
        .map_err(cluster)?;
    Ok((first, second, token))
}

/// Witness failover: a fresh pair under `root` (the same set-up), a witness node of site
/// `bench-w` certified by the same CA and allowed both ways, both nodes naming it; once the
/// primary holds the lease it is SIGKILLed, and a client writes on the standby until the
/// witness's promotion lets a write in.
fn witness_failover(ttx: &Ttx, root: &Path) -> Result<super::failover::Promotion, BenchError> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let run = |args: &[&str]| ttx.ok(None, args).map(drop).map_err(cluster);
    std::fs::create_dir_all(root).map_err(BenchError::io("make the witness bench's dir"))?;
    let (mut primary, mut standby, token) = set_up(ttx, root)?;
    let wdir = root.join("witness");
    run(&[
        "init",
        &s(&wdir),
        "--site",
        "bench-w",
        "--federation",
        "bench",
        "--listen",
        "127.0.0.1:0",
    ])?;
    run(&[
        "pki",
        "issue",
        "--ca",
        &s(&root.join("ca")),
        "--site",
        "bench-w",
        "--node",
        "primary",
        "--dir",
        &s(&wdir),
    ])?;
    let mut witness = Node::existing(ttx, &wdir, "bench-w/primary");
    witness.start().map_err(cluster)?;
    let w_addr = witness.listen_addr().map_err(cluster)?.to_string();
    primary.start().map_err(cluster)?;
    let p_addr = primary.listen_addr().map_err(cluster)?.to_string();
    witness
        .ok(&[
            "peer", "add", "bench", "--addr", &p_addr, "--allow", "witness",
        ])
        .map_err(cluster)?;
    primary
        .ok(&[
            "peer", "add", "bench-w", "--addr", &w_addr, "--allow", "witness",
        ])
        .map_err(cluster)?;
    primary.stop();
    for n in [&primary, &standby] {
        n.configure(|c| c.replication.witness = Some("bench-w".into()))
            .map_err(cluster)?;
    }
    primary.start().map_err(cluster)?;
    standby.start().map_err(cluster)?;
    let (p_api, s_api) = (api_of(&primary)?, api_of(&standby)?);
    wait_standby(p_api, &token)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(p_api, &token)?["replication"]["lease"]["may_write"] != true {
        if Instant::now() > deadline {
            return Err(failed("the witness")(
                "the primary never held its lease".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut conn = KeepAlive::connect(s_api, &token)?;
    primary.kill().map_err(cluster)?;
    let killed = Instant::now();
    let took =
        super::failover::first_write_since(&mut conn, killed, "witness", Duration::from_millis(5));
    standby.stop();
    witness.stop();
    took
}

/// Waits until the primary reports its standby connected and caught up.
fn wait_standby(api: std::net::SocketAddr, token: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(api, token)?;
        let r = &s["replication"]["primary"];
        if !r["standby"].is_null() && r["acked_applied"] == s["events"] {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(failed("the standby")(format!("did not catch up: {s}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the benchmark.
pub fn run(opts: &ReplicationBenchOptions) -> Result<Report, BenchError> {
    let scratch = ScratchDir::new(opts.dir.as_deref())?;
    let machine = MachineInfo::collect(scratch.path(), 200)?;
    let ttx = Ttx::at(&opts.exe);
    let (mut primary, mut standby, token) = set_up(&ttx, scratch.path())?;
    if opts.receipt_spool {
        standby
            .configure(|c| c.replication.receipt_spool = true)
            .map_err(cluster)?;
    }
    let clients = opts.clients.max(1);
    let limit = Limit::For(Duration::from_secs_f64(opts.secs.max(0.1)));
    standby.start().map_err(cluster)?;
    let mut rates = Vec::new();
    // Per mode: notes written, and the CPU each node's threads used meanwhile.
    let mut spent: Vec<(Mode, u64, ThreadCpu, ThreadCpu)> = Vec::new();
    let mut one = None;
    let mut visible = None;
    for (i, mode) in [Mode::Async, Mode::Sync, Mode::SyncVisible]
        .into_iter()
        .enumerate()
    {
        primary
            .configure(|c| c.replication.mode = Some(mode))
            .map_err(cluster)?;
        primary.start().map_err(cluster)?;
        let api = api_of(&primary)?;
        wait_standby(api, &token)?;
        let mut conn = KeepAlive::connect(api, &token)?;
        let mut tickets = Vec::new();
        for t in 0..8 {
            let body = format!(r#"{{"subject": "bench {} {t}"}}"#, mode.as_str());
            let a = conn.post_json("/v1/tickets", body.as_bytes())?;
            let v: serde_json::Value = serde_json::from_slice(&a.body)
                .map_err(|e| failed("create a ticket")(e.to_string()))?;
            tickets.push(v["number"].as_i64().unwrap_or(1));
        }
        let seed = 1_000 * (i as u64 + 1);
        let client = |i: usize| ApiClient::at(api, &token, &tickets, seed + i as u64);
        drive(
            clients,
            Limit::Count(20 * clients as u64),
            client,
            ApiClient::note,
        )?;
        let cpu0 = [primary.pid(), standby.pid()].map(|p| p.map(ThreadCpu::of_process));
        let run = drive(clients, limit, client, ApiClient::note)?;
        let cpu1 = [primary.pid(), standby.pid()].map(|p| p.map(ThreadCpu::of_process));
        rates.push((mode, rate(run.count, run.elapsed)));
        if let ([Some(p0), Some(s0)], [Some(p1), Some(s1)]) = (cpu0, cpu1) {
            spent.push((mode, run.count, p1.since(&p0), s1.since(&s0)));
        }
        if mode == Mode::Async {
            wait_standby(api, &token)?;
            let standby_api = api_of(&standby)?;
            visible = Some(super::visible::commit_to_visible(
                api,
                standby_api,
                &token,
                tickets[0],
                VISIBLE_RATE,
                opts.secs.clamp(1.0, 10.0),
            )?);
        }
        if mode == Mode::Sync {
            let seq = drive(
                1,
                Limit::Count(opts.sequential.max(1)),
                client,
                ApiClient::note,
            )?;
            one = Some(seq.latencies.summary());
        }
        wait_standby(api, &token)?;
        primary.stop();
    }
    // Role changes, timed as a client sees them: a switchover there and back (run on the
    // primary, then on the node that became the standby), then `ttx promote` on the standby
    // with its primary stopped.
    primary
        .configure(|c| c.replication.mode = None)
        .map_err(cluster)?;
    primary.start().map_err(cluster)?;
    let (p_api, s_api) = (api_of(&primary)?, api_of(&standby)?);
    wait_standby(p_api, &token)?;
    let there = super::failover::switchover_pause(p_api, [p_api, s_api], &token)?;
    wait_standby(s_api, &token)?;
    let back = super::failover::switchover_pause(p_api, [p_api, s_api], &token)?;
    wait_standby(p_api, &token)?;
    primary.stop();
    let promote = super::failover::promote_to_first_write(s_api, &token)?;
    standby.stop();
    let witness = witness_failover(&ttx, &scratch.path().join("witness-failover"))?;
    let mut section = Section::new(format!(
        "{clients} clients writing notes through the primary's API, standby in its own process"
    ));
    let of = |m: Mode| {
        rates
            .iter()
            .find(|(x, _)| *x == m)
            .map(|r| r.1)
            .unwrap_or(0.0)
    };
    for (mode, r) in &rates {
        section.figure(format!("{} notes/s", mode.as_str()), *r, "notes/s");
    }
    let async_rate = of(Mode::Async);
    if async_rate > 0.0 {
        section.target(
            "sync / async",
            of(Mode::Sync) / async_rate,
            "x",
            Target {
                goal: Goal::AtLeast,
                value: 0.7,
            },
        );
        section.figure(
            "sync-visible / async",
            of(Mode::SyncVisible) / async_rate,
            "x",
        );
    }
    for (mode, notes, on_primary, on_standby) in &spent {
        let per_note = |secs: f64| secs * 1e6 / (*notes).max(1) as f64;
        for (node, cpu) in [("primary", on_primary), ("standby", on_standby)] {
            let threads: &[&str] = if opts.receipt_spool {
                &["ttx-writer", "tokio-rt-worker", "ttx-spool"]
            } else {
                &["ttx-writer", "tokio-rt-worker"]
            };
            for thread in threads {
                section.figure(
                    format!("{}: {node} {thread} CPU per note", mode.as_str()),
                    per_note(cpu.secs(thread)),
                    "µs",
                );
            }
        }
        section.note(format!(
            "{} CPU: primary {}; standby {}",
            mode.as_str(),
            on_primary.describe(),
            on_standby.describe()
        ));
    }
    let mut single = Section::new("one client, sync mode");
    if let Some(lat) = &one {
        let fsync_p99_ms = machine.fdatasync.p99_us / 1000.0;
        single.latency("note acknowledged", lat, None);
        single.figure("local fdatasync p99", fsync_p99_ms, "ms");
        single.note(
            "target: note p99 at most 2x the local fdatasync p99 plus the loopback round trip",
        );
    }
    let mut seen = Section::new(format!(
        "async, {VISIBLE_RATE:.0} notes/s: commit on the primary to visible on the standby"
    ));
    if let Some(v) = &visible {
        seen.figure("notes/s sent (paced)", v.rate, "notes/s");
        let st = &v.stages;
        seen.latency(
            "committed on the primary -> applied and visible on the standby",
            &st.commit_to_visible,
            Some(VISIBLE_P99_MS),
        );
        for (name, l) in [
            (
                "stage: committed -> frame written (primary)",
                &st.commit_to_shipped,
            ),
            (
                "stage: frame written -> read (loopback QUIC)",
                &st.shipped_to_received,
            ),
            (
                "stage: frame read -> applied (standby)",
                &st.received_to_applied,
            ),
            (
                "  of it: read -> durable in the receipt spool (the sync ack leaves)",
                &st.received_to_spooled,
            ),
            (
                "  of it: read -> handed to the writer (the previous apply done)",
                &st.received_to_applying,
            ),
            (
                "  of it: handed to the writer -> committed, head published",
                &st.applying_to_applied,
            ),
            (
                "stage: applied -> a waiting reader's answer",
                &st.applied_to_seen,
            ),
        ] {
            // The spool stage is empty without `replication.receipt_spool` on the standby.
            if l.count > 0 {
                seen.latency(name, l, None);
            }
        }
        seen.latency(
            "sent to the primary -> seen by a waiting reader on the standby",
            &v.to_visible,
            None,
        );
        seen.latency("sent to the primary -> its answer", &v.acked, None);
        seen.note(
            "one clock (both nodes on this host): the nodes' stamps (GET /v1/replication/timeline) \
             joined by position; 'sent -> seen' is the bench's own upper bound, holding the \
             primary's HTTP, commit and fsync",
        );
    }
    let mut roles = Section::new("role changes, timed by a client writing without pause");
    for (name, p) in [
        ("there (run on the primary)", there),
        ("back (run on the standby)", back),
    ] {
        roles.target(
            format!("switchover {name}: longest gap between writes"),
            p.client_gap_ms,
            "ms",
            Target {
                goal: Goal::AtMost,
                value: 500.0,
            },
        );
        roles.figure(
            format!("switchover {name}: baseline, longest gap in the 300 ms before"),
            p.baseline_gap_ms,
            "ms",
        );
        if let Some(ms) = p.reported_ms {
            roles.figure(
                format!("switchover {name}: the old primary's own pause"),
                ms,
                "ms",
            );
        }
    }
    roles.target(
        "ttx promote to the first accepted write",
        promote.to_first_write_ms,
        "ms",
        Target {
            goal: Goal::AtMost,
            value: 50.0,
        },
    );
    roles.figure(
        "baseline: the next ordinary write on the promoted node",
        promote.next_write_ms,
        "ms",
    );
    roles.note("PostgreSQL here: pg_ctl promote to the first write about 44 ms");
    roles.target(
        "witness failover: primary SIGKILLed to the first write accepted on the standby",
        witness.to_first_write_ms,
        "ms",
        Target {
            goal: Goal::AtMost,
            value: 3_000.0,
        },
    );
    roles.figure(
        "baseline: the next ordinary write on the node the witness promoted",
        witness.next_write_ms,
        "ms",
    );
    roles.note(
        "witness failover: lease term 2 s, margin 0.5 s (the witness grants no promotion before \
         2.5 s after the primary's last renewal, sent every 667 ms)",
    );
    Ok(Report {
        bench: "replication".into(),
        machine,
        sections: vec![section, single, seen, roles],
    })
}

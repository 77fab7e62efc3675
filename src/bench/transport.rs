//! `ttx bench transport`: the QUIC transport on loopback.
//!
//! Measures, each against its target:
//! - Hello-level round trip (ping) on an established connection: p50 ≤ 0.3 ms;
//! - a new connection with the full mTLS handshake and Hello: p50 ≤ 3 ms;
//! - 1 KiB request/response frames per second on one connection through the endpoint
//!   (≥ 50,000/s), against raw quinn streams carrying the same bytes with the same TLS config in
//!   the same run (≥ 0.7x);
//! - N concurrent peer connections held for a while, with the node's RSS (`VmRSS`) ≤ 200 MB.
//!   By default the peer clients run in a child process (`ttx bench transport-clients`, hidden)
//!   so the RSS is the node's alone; in process (tests, `--clients-in-process`) the figure
//!   covers both ends of every connection: an upper bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::streams::{self, StreamRun};
use super::{
    rss_bytes, BenchError, Goal, Latencies, MachineInfo, Report, ScratchDir, Section, Target,
};
use crate::config::TransportSection;
use crate::identity::NodeIdentity;
use crate::net::testing::{TestCa, TestNode};
use crate::net::tls::{self, LocalCert, TrustConfig};
use crate::net::{
    BoxFuture, Endpoint, EndpointOptions, Handler, PeerCtx, Permission, Permissions, Router,
    StaticPolicy,
};
use crate::wire::alpn::{EXCHANGE, EXCHANGE_V1};
use crate::wire::{codec, ClientFrame, ErrorCode, Request, Role};

/// Target: ping p50 (ms).
pub const TARGET_PING_P50_MS: f64 = 0.3;
/// Target: new connection p50 (ms).
pub const TARGET_CONNECT_P50_MS: f64 = 3.0;
/// Target: 1 KiB requests per second through the endpoint.
pub const TARGET_RPS: f64 = 50_000.0;
/// Target: endpoint / raw quinn.
pub const TARGET_RATIO: f64 = 0.7;
/// Target: node RSS with the peers held (MB).
pub const TARGET_RSS_MB: f64 = 200.0;
/// Target: a long-lived stream of 1 KiB frames (acked) against a raw quinn stream.
pub const TARGET_STREAM_RATIO: f64 = 0.8;
/// Target: 64 KiB chunks on a long-lived stream on loopback (MB/s, the snapshot path).
pub const TARGET_CHUNK_MBS: f64 = 200.0;
/// The frame size of the replication-like stream run.
const STREAM_FRAME_BYTES: usize = 1024;
/// The chunk size of the snapshot-like stream run.
const CHUNK_BYTES: usize = 64 * 1024;

type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Turns any error into a [`BenchError`] saying what was being done.
pub(super) trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T, E: std::fmt::Display> Ctx<T> for std::result::Result<T, E> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| BenchError::Invalid(format!("{what}: {e}")))
    }
}

/// What to measure and how hard.
#[derive(Debug, Clone)]
pub struct TransportOpts {
    /// Pings timed on one connection.
    pub ping_samples: usize,
    /// New connections timed.
    pub connect_samples: usize,
    /// Seconds of each throughput run.
    pub throughput_secs: f64,
    /// Requests in flight at once during the throughput runs.
    pub in_flight: usize,
    /// Request payload size in bytes.
    pub payload: usize,
    /// Alternated throughput rounds (endpoint, raw quinn); the best of each is reported.
    pub rounds: usize,
    /// Concurrent peer connections to hold.
    pub peers: usize,
    /// Seconds to hold them.
    pub hold_secs: u64,
    /// The `ttx` binary that runs the peer clients in a child process (`None`: in process).
    pub clients_exe: Option<PathBuf>,
    /// Where scratch files go (the system temp dir otherwise); removed afterwards.
    pub dir: Option<PathBuf>,
}

impl Default for TransportOpts {
    fn default() -> Self {
        Self {
            ping_samples: 2_000,
            connect_samples: 300,
            throughput_secs: 3.0,
            in_flight: 64,
            payload: 1024,
            rounds: 3,
            peers: 1_000,
            hold_secs: 60,
            clients_exe: None,
            dir: None,
        }
    }
}

struct Echo;
impl Handler for Echo {
    fn handle<'a>(
        &'a self,
        _peer: &'a PeerCtx,
        request: Request,
    ) -> BoxFuture<'a, Result<Vec<u8>, ErrorCode>> {
        Box::pin(async move { Ok(request.body) })
    }

    fn stream<'a>(
        &'a self,
        _peer: &'a PeerCtx,
        open: crate::wire::StreamOpen,
        incoming: crate::net::IncomingStream,
    ) -> BoxFuture<'a, ()> {
        Box::pin(streams::sink(open, incoming))
    }
}

fn limits(peers: usize) -> TransportSection {
    TransportSection {
        max_connections: (peers as u32 + 64).max(2_000),
        max_connections_per_peer: (peers as u32 + 64).max(8),
        idle_timeout_ms: 120_000,
        keep_alive_ms: 15_000,
        ..TransportSection::default()
    }
}

fn endpoint(
    n: &TestNode,
    ca: &rustls_pki_types::CertificateDer<'static>,
    policy: Arc<StaticPolicy>,
    t: TransportSection,
) -> Result<Endpoint> {
    let opts = EndpointOptions {
        identity: n.identity.clone(),
        role: Role::Partner,
        features: 0,
        transport: t,
        local: n.local.clone(),
        trust: TrustConfig {
            ca_certs: vec![ca.clone()],
            ..TrustConfig::default()
        },
    };
    let router = Router::new().route(EXCHANGE_V1, Permission::Exchange, Arc::new(Echo));
    Endpoint::bind(
        "127.0.0.1:0".parse().expect("literal address"),
        opts,
        policy,
        router,
    )
    .ctx("bind a QUIC endpoint")
}

/// Runs the benchmark on a runtime of its own and returns its report.
pub fn run(opts: TransportOpts) -> Result<Report> {
    let scratch = ScratchDir::new(opts.dir.as_deref())?;
    let machine = MachineInfo::collect(scratch.path(), 200)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("start the runtime"))?;
    let sections = rt.block_on(run_async(&opts, scratch.path()))?;
    Ok(Report {
        bench: "transport".into(),
        machine,
        sections,
    })
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

fn at_most(value: f64) -> Target {
    Target {
        goal: Goal::AtMost,
        value,
    }
}

fn at_least(value: f64) -> Target {
    Target {
        goal: Goal::AtLeast,
        value,
    }
}

async fn run_async(opts: &TransportOpts, scratch: &Path) -> Result<Vec<Section>> {
    let mut ca = TestCa::new("bench-ca");
    let server = ca.node("bench", "noc-a", "primary");
    let client = ca.node("bench", "telco-b", "primary");
    let t = limits(opts.peers);
    let server_policy = Arc::new(StaticPolicy::new());
    let client_policy = Arc::new(StaticPolicy::new());
    server_policy.set(client.identity.clone(), Some(Permissions::EXCHANGE));
    client_policy.set(server.identity.clone(), Some(Permissions::EXCHANGE));
    let srv = endpoint(&server, &ca.cert, server_policy.clone(), t.clone())?;
    let cli = endpoint(&client, &ca.cert, client_policy.clone(), t.clone())?;
    let addr = srv.local_addr().ctx("endpoint address")?;

    // Ping round trip on one established connection.
    let peer = cli.connect(addr, "noc-a", EXCHANGE).await.ctx("connect")?;
    for _ in 0..100 {
        peer.ping().await.ctx("ping")?;
    }
    let mut pings = Latencies::with_capacity(opts.ping_samples);
    for _ in 0..opts.ping_samples.max(1) {
        pings.record(peer.ping().await.ctx("ping")?.latency);
    }

    // New connections, full handshake each time.
    let mut connects = Latencies::with_capacity(opts.connect_samples);
    for _ in 0..opts.connect_samples.max(1) {
        let start = Instant::now();
        let p = cli.connect(addr, "noc-a", EXCHANGE).await.ctx("connect")?;
        connects.record(start.elapsed());
        p.close(ErrorCode::ShuttingDown);
    }

    // Throughput through the endpoint and over raw quinn (same TLS configuration), alternated
    // over `rounds` rounds; the best round of each is kept, so that a burst of load from other
    // processes on a shared machine does not decide the ratio.
    let payload = vec![0xa5u8; opts.payload];
    let raw = RawQuinn::start(&server, &client, &ca, &payload, false).await?;
    let (mut endpoint_rps, mut raw_quinn_rps) = (0.0f64, 0.0f64);
    for _ in 0..opts.rounds.max(1) {
        let rps = throughput(opts, {
            let peer = peer.clone();
            let payload = payload.clone();
            move || {
                let peer = peer.clone();
                let payload = payload.clone();
                async move { peer.request(payload).await.map(|_| ()).ctx("request") }
            }
        })
        .await?;
        endpoint_rps = endpoint_rps.max(rps);
        raw_quinn_rps = raw_quinn_rps.max(raw.run(opts).await?);
    }
    drop(raw);

    // Long-lived streams: the same connection, one stream per run, alternated with raw quinn.
    let raw = RawQuinn::start(&server, &client, &ca, &payload, true).await?;
    let mut stream_runs = Vec::new();
    for size in [STREAM_FRAME_BYTES, CHUNK_BYTES] {
        let (mut framed, mut raw_run) = (StreamRun::default(), StreamRun::default());
        for _ in 0..opts.rounds.max(1) {
            let f = streams::framed(&peer, size, opts.throughput_secs).await?;
            let r = streams::raw(&raw.conn, size, opts.throughput_secs).await?;
            if f.bytes_per_sec > framed.bytes_per_sec {
                framed = f;
            }
            if r.bytes_per_sec > raw_run.bytes_per_sec {
                raw_run = r;
            }
        }
        stream_runs.push((size, framed, raw_run));
    }
    peer.close(ErrorCode::ShuttingDown);
    drop(raw);

    // Many peers held at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = rss_bytes().unwrap_or(0);
    let identities = 10.min(opts.peers.max(1));
    let nodes: Vec<TestNode> = (0..identities)
        .map(|i| ca.node("bench", &format!("peer-{i}"), "primary"))
        .collect();
    for n in &nodes {
        server_policy.set(n.identity.clone(), Some(Permissions::EXCHANGE));
    }
    let held = match &opts.clients_exe {
        None => {
            let clients =
                PeerClients::connect(&nodes, &ca.cert, &server.identity, addr, opts.peers).await?;
            tokio::time::sleep(Duration::from_secs(opts.hold_secs)).await;
            clients.ping_all().await?;
            let held = Held {
                peers: srv.peers().len(),
                rss: rss_bytes().unwrap_or(0),
                client_rss: None,
            };
            clients.close();
            held
        }
        Some(exe) => {
            let material = Material {
                addr,
                peers: opts.peers,
                ca_der: hex::encode(&ca.cert),
                server: server.identity.to_uri(),
                clients: nodes
                    .iter()
                    .map(|n| ClientMaterial {
                        identity: n.identity.to_uri(),
                        cert_der: hex::encode(n.cert()),
                        key_der: hex::encode(n.local.key.secret_der()),
                    })
                    .collect(),
            };
            hold_in_child(exe, scratch, &material, opts.hold_secs, || {
                (srv.peers().len(), rss_bytes().unwrap_or(0))
            })
            .await?
        }
    };

    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    let (p, c) = (pings.summary(), connects.summary());
    let mut latency = Section::new(format!(
        "QUIC on loopback: ping and new connections ({} pings, {} connections)",
        p.count, c.count
    ));
    latency.target(
        "ping (hello-level) p50",
        ms(p.p50_us),
        "ms",
        at_most(TARGET_PING_P50_MS),
    );
    latency.figure("ping p99", ms(p.p99_us), "ms");
    latency.target(
        "new connection (mTLS + Hello) p50",
        ms(c.p50_us),
        "ms",
        at_most(TARGET_CONNECT_P50_MS),
    );
    latency.figure("new connection p99", ms(c.p99_us), "ms");

    let mut tput = Section::new(format!(
        "{} B request/response on one connection ({} in flight, best of {} rounds of {} s)",
        opts.payload,
        opts.in_flight,
        opts.rounds.max(1),
        opts.throughput_secs
    ));
    tput.target(
        "endpoint req/s",
        endpoint_rps,
        "req/s",
        at_least(TARGET_RPS),
    );
    tput.figure("raw quinn req/s (baseline)", raw_quinn_rps, "req/s");
    tput.target(
        "endpoint / raw quinn",
        if raw_quinn_rps > 0.0 {
            endpoint_rps / raw_quinn_rps
        } else {
            0.0
        },
        "x",
        at_least(TARGET_RATIO),
    );
    tput.note(
        "raw quinn: the same TLS configs, one stream per request carrying the same framed \
         bytes and echoed back, without Hello, policy or codec",
    );

    let mut peers = Section::new(format!(
        "{} peer connections held {} s ({} client identities)",
        opts.peers, opts.hold_secs, identities
    ));
    peers.figure("peers held (server side)", held.peers as f64, "peers");
    peers.figure("node RSS before the peers", mb(rss_before), "MB");
    peers.target(
        "node RSS with the peers",
        mb(held.rss),
        "MB",
        at_most(TARGET_RSS_MB),
    );
    match held.client_rss {
        Some(r) => {
            peers.figure("client process RSS", mb(r), "MB");
            peers.note(
                "clients in a child process (ttx bench transport-clients): the RSS is the \
                 bench process holding the node's endpoint (plus the earlier phases' client \
                 endpoint and allocations)",
            );
        }
        None => peers.note(
            "clients in the same process: the RSS covers both ends of every connection \
             (an upper bound for the node alone)",
        ),
    }
    peers.note("every held connection is pinged at the end of the hold before the RSS is read");

    let mut long = Section::new(format!(
        "Long-lived streams: frames one way, an ack back for each (best of {} rounds of {} s)",
        opts.rounds.max(1),
        opts.throughput_secs
    ));
    let mbs = |r: &StreamRun| r.bytes_per_sec / 1e6;
    for (size, framed, raw_run) in &stream_runs {
        let what = if *size == CHUNK_BYTES {
            "64 KiB chunks"
        } else {
            "1 KiB frames"
        };
        let name = format!("FramedStream {what}");
        if *size == CHUNK_BYTES {
            long.target(&name, mbs(framed), "MB/s", at_least(TARGET_CHUNK_MBS));
        } else {
            long.figure(&name, mbs(framed), "MB/s");
        }
        long.figure(
            format!("FramedStream {what} frames/s"),
            framed.frames as f64 / opts.throughput_secs.max(1e-9),
            "frames/s",
        );
        long.figure(
            format!("raw quinn stream {what} (baseline)"),
            mbs(raw_run),
            "MB/s",
        );
        let ratio = framed.bytes_per_sec / raw_run.bytes_per_sec.max(1e-9);
        if *size == CHUNK_BYTES {
            long.figure(format!("FramedStream / raw quinn, {what}"), ratio, "x");
        } else {
            long.target(
                format!("FramedStream / raw quinn, {what}"),
                ratio,
                "x",
                at_least(TARGET_STREAM_RATIO),
            );
        }
    }
    long.note(
        "FramedStream: Peer::open_stream on the ping connection, frames {seq, bytes} through the \
         codec, the server's handler acks each with {upto}; raw quinn: one bidirectional stream \
         of a connection with the same TLS configs carrying the same frame bytes (encoded before \
         the clock starts) and the same ack bytes back, without Hello, policy or codec; MB/s \
         counts payload bytes from the first frame to the last ack",
    );
    Ok(vec![latency, tput, peers, long])
}

/// What the peer hold found.
struct Held {
    peers: usize,
    rss: u64,
    client_rss: Option<u64>,
}

/// Peer clients: `peers` connections spread over a few client identities.
struct PeerClients {
    held: Vec<crate::net::Peer>,
    _endpoints: Vec<Endpoint>,
}

impl PeerClients {
    async fn connect(
        nodes: &[TestNode],
        ca: &rustls_pki_types::CertificateDer<'static>,
        server: &NodeIdentity,
        addr: SocketAddr,
        peers: usize,
    ) -> Result<Self> {
        let t = limits(peers);
        let mut endpoints = Vec::new();
        for n in nodes {
            let policy = Arc::new(StaticPolicy::new());
            policy.set(server.clone(), Some(Permissions::EXCHANGE));
            endpoints.push(endpoint(n, ca, policy, t.clone())?);
        }
        let mut held = Vec::with_capacity(peers);
        // All the peers dial from one IP (loopback), which the node's flood protection allows
        // `max_handshaking_per_source` handshakes at once (beyond that a burst from one source
        // is dropped as a flood); real peers come from their own addresses. Dial that many at
        // a time.
        let at_once = t.max_handshaking_per_source.max(1) as usize;
        for chunk in (0..peers).collect::<Vec<_>>().chunks(at_once) {
            let mut tasks = Vec::new();
            for i in chunk {
                let c = endpoints[i % endpoints.len()].clone();
                tasks.push(tokio::spawn(async move {
                    c.connect(addr, "noc-a", EXCHANGE).await
                }));
            }
            for t in tasks {
                held.push(t.await.ctx("a connect task")?.ctx("connect a peer")?);
            }
        }
        Ok(Self {
            held,
            _endpoints: endpoints,
        })
    }

    async fn ping_all(&self) -> Result<()> {
        for p in &self.held {
            p.ping().await.ctx("ping a held peer")?;
        }
        Ok(())
    }

    fn close(&self) {
        for p in &self.held {
            p.close(ErrorCode::ShuttingDown);
        }
    }
}

/// The certificate material the child process needs (DER in hex; the file is 0600).
#[derive(Debug, Serialize, Deserialize)]
struct Material {
    addr: SocketAddr,
    peers: usize,
    ca_der: String,
    server: String,
    clients: Vec<ClientMaterial>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ClientMaterial {
    identity: String,
    cert_der: String,
    key_der: String,
}

fn unhex(what: &str, s: &str) -> Result<Vec<u8>> {
    hex::decode(s).ctx(what)
}

/// Spawns `exe bench transport-clients`, waits for its peers to connect, holds, asks it to
/// ping every peer, then reads `measure()` (server-side peers, RSS) and the child's RSS.
async fn hold_in_child(
    exe: &Path,
    scratch: &Path,
    material: &Material,
    hold_secs: u64,
    measure: impl Fn() -> (usize, u64),
) -> Result<Held> {
    let path = scratch.join("transport-clients.json");
    let bytes = serde_json::to_vec(material).ctx("encode the client material")?;
    crate::pki::files::write_secret(&path, &bytes, true).ctx("write the client material")?;
    let mut child = tokio::process::Command::new(exe)
        .args(["bench", "transport-clients", "--material"])
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(BenchError::io(format!("spawn {}", exe.display())))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut expect = async |want: &str| -> Result<()> {
        match lines.next_line().await.ctx("read the client process")? {
            Some(l) if l.starts_with(want) => Ok(()),
            other => Err(BenchError::Invalid(format!(
                "the client process said {other:?}, expected {want}"
            ))),
        }
    };
    expect("connected").await?;
    tokio::time::sleep(Duration::from_secs(hold_secs)).await;
    stdin
        .write_all(b"ping\n")
        .await
        .ctx("write to the client process")?;
    expect("pinged").await?;
    let (peers, rss) = measure();
    let client_rss = pid.and_then(|p| {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    });
    drop(stdin);
    let status = child.wait().await.ctx("wait for the client process")?;
    if !status.success() {
        return Err(BenchError::Invalid(format!(
            "the client process failed: {status}"
        )));
    }
    Ok(Held {
        peers,
        rss,
        client_rss,
    })
}

/// The hidden `ttx bench transport-clients`: reads the material file, connects its peers,
/// prints `connected N`, then on each `ping` line pings them all and prints `pinged N`; exits
/// when standard input closes.
pub fn run_clients(material: &Path) -> Result<()> {
    let bytes =
        std::fs::read(material).map_err(BenchError::io(format!("read {}", material.display())))?;
    let m: Material = serde_json::from_slice(&bytes).ctx("parse the client material")?;
    let ca = rustls_pki_types::CertificateDer::from(unhex("CA certificate", &m.ca_der)?);
    let server = NodeIdentity::parse_uri(&m.server).ctx("server identity")?;
    let nodes = m
        .clients
        .iter()
        .map(|c| {
            let key = rustls_pki_types::PrivateKeyDer::try_from(unhex("client key", &c.key_der)?)
                .ctx("client key")?;
            Ok(TestNode {
                identity: NodeIdentity::parse_uri(&c.identity).ctx("client identity")?,
                local: LocalCert {
                    chain: vec![unhex("client certificate", &c.cert_der)?.into()],
                    key,
                },
                serial: 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("start the runtime"))?;
    rt.block_on(async {
        let clients = PeerClients::connect(&nodes, &ca, &server, m.addr, m.peers).await?;
        let mut out = tokio::io::stdout();
        let say = |s: String| s.into_bytes();
        out.write_all(&say(format!("connected {}\n", clients.held.len())))
            .await
            .map_err(BenchError::io("write to stdout"))?;
        out.flush().await.map_err(BenchError::io("flush stdout"))?;
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines
            .next_line()
            .await
            .map_err(BenchError::io("read stdin"))?
        {
            if line.trim() == "ping" {
                clients.ping_all().await?;
                out.write_all(&say(format!("pinged {}\n", clients.held.len())))
                    .await
                    .map_err(BenchError::io("write to stdout"))?;
                out.flush().await.map_err(BenchError::io("flush stdout"))?;
            }
        }
        clients.close();
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    })
}

/// Runs `op` with `in_flight` concurrent workers for the configured time; operations per second.
async fn throughput<F, Fut>(opts: &TransportOpts, op: F) -> Result<f64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..opts.in_flight {
        let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                op().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, BenchError>(())
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(opts.throughput_secs)).await;
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for w in workers {
        w.await.ctx("a throughput worker")??;
    }
    Ok(n as f64 / elapsed)
}

/// Raw quinn: the same TLS configs and transport limits, each stream carrying the same framed
/// request bytes and answered with the same bytes, without Hello, policy or codec.
pub(super) struct RawQuinn {
    /// The client's connection.
    pub(super) conn: quinn::Connection,
    frame: Arc<Vec<u8>>,
    limit: usize,
    _endpoints: (quinn::Endpoint, quinn::Endpoint),
}

impl RawQuinn {
    /// With `streams`, every stream the client opens is a long-lived one
    /// ([`streams::raw_sink`]) instead of one request echoed back.
    pub(super) async fn start(
        server: &TestNode,
        client: &TestNode,
        ca: &TestCa,
        payload: &[u8],
        streams: bool,
    ) -> Result<Self> {
        let trust = Arc::new(
            tls::Trust::new(
                "bench",
                TrustConfig {
                    ca_certs: vec![ca.cert.clone()],
                    ..TrustConfig::default()
                },
            )
            .ctx("raw quinn trust")?,
        );
        let alpn = vec![EXCHANGE_V1.alpn()];
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(256));
        let transport = Arc::new(transport);
        let s =
            tls::server_config(&server.local, trust.clone(), &alpn).ctx("raw quinn server TLS")?;
        let mut sc = quinn::ServerConfig::with_crypto(Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(s))
                .ctx("raw quinn server config")?,
        ));
        sc.transport_config(transport.clone());
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        let srv = quinn::Endpoint::server(sc, loopback).ctx("raw quinn server")?;
        let addr: SocketAddr = srv.local_addr().ctx("raw quinn address")?;
        let limit = payload.len() + 64;
        let accept = srv.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accept.accept().await {
                let Ok(conn) = incoming.await else { continue };
                tokio::spawn(async move {
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        tokio::spawn(async move {
                            if streams {
                                return streams::raw_sink(send, recv).await;
                            }
                            if let Ok(bytes) = recv.read_to_end(limit).await {
                                let _ = send.write_all(&bytes).await;
                                let _ = send.finish();
                            }
                        });
                    }
                });
            }
        });
        let c = tls::client_config(&client.local, trust, &alpn).ctx("raw quinn client TLS")?;
        let mut cc = quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(c))
                .ctx("raw quinn client config")?,
        ));
        cc.transport_config(transport);
        let mut cli = quinn::Endpoint::client(loopback).ctx("raw quinn client")?;
        cli.set_default_client_config(cc);
        let conn = cli
            .connect(addr, "noc-a")
            .ctx("raw quinn connect")?
            .await
            .ctx("raw quinn connect")?;
        let frame = codec::encode_framed(
            &ClientFrame::Request(Request {
                id: 1,
                body: payload.to_vec(),
            }),
            u32::MAX,
        )
        .ctx("encode a frame")?;
        Ok(Self {
            conn,
            frame: Arc::new(frame),
            limit,
            _endpoints: (srv, cli),
        })
    }

    async fn run(&self, opts: &TransportOpts) -> Result<f64> {
        let (conn, frame, limit) = (self.conn.clone(), self.frame.clone(), self.limit);
        throughput(opts, move || {
            let conn = conn.clone();
            let frame = frame.clone();
            async move {
                let (mut send, mut recv) = conn.open_bi().await.ctx("open a stream")?;
                send.write_all(&frame).await.ctx("write a request")?;
                send.finish().ctx("finish a request")?;
                recv.read_to_end(limit).await.ctx("read an answer")?;
                Ok(())
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole benchmark at tiny sizes (clients in process: this test binary is not `ttx`),
    /// so the code path stays tested; no timing is asserted. The child-process path is tested
    /// through the real binary in `tests/it/bench.rs`.
    #[test]
    fn small_run_works() {
        let dir = tempfile::tempdir().unwrap();
        let report = run(TransportOpts {
            ping_samples: 20,
            connect_samples: 5,
            throughput_secs: 0.2,
            in_flight: 4,
            payload: 1024,
            rounds: 1,
            peers: 10,
            hold_secs: 1,
            clients_exe: None,
            dir: Some(dir.path().to_path_buf()),
        })
        .unwrap();
        assert_eq!(report.sections.len(), 4);
        let streams = &report.sections[3].figures;
        assert!(streams.iter().all(|f| f.value > 0.0), "{streams:?}");
        let held = &report.sections[2].figures[0];
        assert_eq!(
            (held.name.as_str(), held.value),
            ("peers held (server side)", 10.0)
        );
        let tput = &report.sections[1].figures;
        assert!(tput[0].value > 0.0 && tput[1].value > 0.0);
    }
}

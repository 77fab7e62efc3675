//! `ttx bench web`: the web console on the large store (`ttx bench store`'s, reused or built
//! through the one applier), served by the console's own router over real loopback HTTP.
//!
//! - At a glance (`GET /`) and the page of a ticket with 100 updates (`GET /tickets/N`), timed
//!   from request to the last byte on a keep-alive connection. Baselines in the same run: the
//!   same chart as JSON through the API's router (`GET /v1/tickets/N`), and the page's store
//!   reads alone (no HTTP, no HTML).
//! - The largest answer of each page, against the 100 KB target.
//! - Live updates: a page's event stream is open; a ticket is created through the API; timed
//!   from the API's acknowledgement until the stream said `change` and a fetch of `/glance`
//!   shows the new ticket (what the page's script does).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::KeepAlive;
use super::store::reads::{self, LONG_TICKETS, LONG_UPDATES};
use super::{BenchError, Latencies, LatencySummary, MachineInfo, Report, ScratchDir, Section};
use crate::api::AppState;
use crate::config::Config;
use crate::model::event::Role;
use crate::store::query::{self, ListFilter};
use crate::store::{Store, WriteOp, WriteRequest};
use crate::web::serve::ClientAddr;
use crate::web::WebState;

/// Targets.
const TARGET_PAGE_P99_MS: f64 = 10.0;
const TARGET_PAGE_KB: f64 = 100.0;
const TARGET_LIVE_P99_MS: f64 = 100.0;

/// What `ttx bench web` runs, and how big.
#[derive(Debug, Clone)]
pub struct WebBenchOptions {
    /// Tickets in the store when it has to be built.
    pub tickets: u64,
    /// Timed requests of each page.
    pub iterations: usize,
    /// Timed live-update rounds.
    pub live_rounds: usize,
    /// The store file: reused if it holds tickets, else built there; kept.
    pub store: Option<PathBuf>,
    /// Scratch files (removed afterwards); the system temp dir otherwise.
    pub dir: Option<PathBuf>,
}

/// The operator the pages are rendered for (the bench store's tickets are unowned; this one
/// takes some so "my open tickets" is not empty).
const OPERATOR: &str = "op1";

struct Servers {
    rt: tokio::runtime::Runtime,
    web: SocketAddr,
    api: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

fn serve(store: Store) -> Result<Servers, BenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("start the runtime"))?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut config = Config::new("bench", "primary");
    config.limits = Default::default();
    let federation = crate::federation::FederationSlot::off(
        &crate::datadir::DataDir::new(std::env::temp_dir()),
        store.clone(),
        stop_rx.clone(),
    );
    let store_head = *store.writer.head.borrow() as u64;
    let app = AppState {
        store,
        config: Arc::new(config),
        auth: Arc::default(),
        started: Instant::now(),
        bound: Arc::default(),
        federation,
        replication: Arc::new(crate::replication::Replication::standalone(store_head)),
    };
    let (web, api) = rt
        .block_on(async {
            let web = crate::web::serve::router(WebState::new(app.clone(), stop_rx.clone()));
            let web = spawn_server(web, stop_rx.clone()).await?;
            let api = spawn_server(crate::api::router(app), stop_rx).await?;
            Ok::<_, std::io::Error>((web, api))
        })
        .map_err(BenchError::io("bind the console and the API"))?;
    Ok(Servers { rt, web, api, stop })
}

/// Serves `router` on a free loopback port until `stop`.
async fn spawn_server(
    router: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let service = router.into_make_service_with_connect_info::<ClientAddr>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok(addr)
}

/// Times `n` GETs of `path(i)`; returns latencies and the largest body.
fn time_gets(
    c: &mut KeepAlive,
    n: usize,
    path: impl Fn(usize) -> String,
    must_contain: &str,
) -> Result<(LatencySummary, usize), BenchError> {
    let mut lat = Latencies::with_capacity(n);
    let mut largest = 0;
    for i in 0..n {
        let p = path(i);
        let start = Instant::now();
        let a = c.get(&p)?;
        lat.record(start.elapsed());
        if a.status != 200 || !String::from_utf8_lossy(&a.body).contains(must_contain) {
            return Err(BenchError::Invalid(format!(
                "GET {p} answered {} without {must_contain:?}",
                a.status
            )));
        }
        largest = largest.max(a.body.len());
    }
    Ok((lat.summary(), largest))
}

/// A reader of the console's event stream on its own thread: sends the arrival time of every
/// `change` event.
fn event_stream(addr: SocketAddr, token: &str) -> Result<mpsc::Receiver<Instant>, BenchError> {
    let mut s =
        std::net::TcpStream::connect(addr).map_err(BenchError::io("connect the event stream"))?;
    s.set_nodelay(true)
        .map_err(BenchError::io("set TCP_NODELAY"))?;
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .map_err(BenchError::io("open the event stream"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(s);
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line.starts_with("event: change") && tx.send(Instant::now()).is_err() {
                return;
            }
            line.clear();
        }
    });
    Ok(rx)
}

/// Runs the benchmark.
pub fn run(opts: &WebBenchOptions) -> Result<Report, BenchError> {
    let scratch = ScratchDir::new(opts.dir.as_deref())?;
    let machine = MachineInfo::collect(scratch.path(), 200)?;
    let mut sections = Vec::new();
    let path = opts
        .store
        .clone()
        .unwrap_or_else(|| scratch.path().join("large.db"));
    if !has_tickets(&path)? {
        sections.push(reads::build(&path, opts.tickets, true)?);
    }
    let (store, counts) = reads::open_built(&path)?;
    let token = crate::api::auth::new_token();
    prepare(&store, &token)?;
    let servers = serve(store.clone())?;
    let result = measure(opts, &store, &servers, &token, &counts);
    let _ = servers.stop.send(true);
    servers.rt.shutdown_timeout(Duration::from_secs(5));
    store.writer.shutdown();
    sections.push(result?);
    Ok(Report {
        bench: "web".into(),
        machine,
        sections,
    })
}

pub(crate) fn has_tickets(path: &Path) -> Result<bool, BenchError> {
    if !path.exists() {
        return Ok(false);
    }
    let store = reads::open(path)?;
    let n = store.reader.read_blocking(query::counts)?.tickets;
    store.writer.shutdown();
    Ok(n > 0)
}

/// The operator (again, on a reused store) and ten tickets it owns.
fn prepare(store: &Store, token: &str) -> Result<(), BenchError> {
    let write = |actor: &str, op| {
        store.writer.write_blocking(WriteRequest {
            actor: actor.into(),
            idempotency: None,
            op,
        })
    };
    // A second admin, so the removal below is never refused as removing the last admin (a
    // store reused from an earlier run holds op1 as its only admin).
    let _ = write(
        "bench",
        WriteOp::AddOperator {
            name: "bench".into(),
            role: Role::Admin,
            token_sha256: crate::api::auth::token_sha256(&crate::api::auth::new_token()),
        },
    );
    let _ = write(
        "bench",
        WriteOp::RemoveOperator {
            name: OPERATOR.into(),
        },
    );
    write(
        "bench",
        WriteOp::AddOperator {
            name: OPERATOR.into(),
            role: Role::Admin,
            token_sha256: crate::api::auth::token_sha256(token),
        },
    )?;
    let mine = store.reader.read_blocking(|c| {
        query::list(
            c,
            &ListFilter {
                owner: Some(OPERATOR.into()),
                limit: Some(10),
                ..Default::default()
            },
        )
    })?;
    let open = store
        .reader
        .read_blocking(|c| query::list(c, &ListFilter::default()))?;
    for t in open.iter().take(10usize.saturating_sub(mine.len())) {
        write(
            OPERATOR,
            WriteOp::Ticket {
                number: t.number,
                command: crate::model::command::Command::Take { steal: false },
            },
        )?;
    }
    Ok(())
}

fn measure(
    opts: &WebBenchOptions,
    store: &Store,
    servers: &Servers,
    token: &str,
    counts: &query::Counts,
) -> Result<Section, BenchError> {
    let n = opts.iterations.max(1);
    let mut web = KeepAlive::connect(servers.web, token)?;
    let mut api = KeepAlive::connect(servers.api, token)?;
    let long = |i: usize| 1 + (i as u64 % LONG_TICKETS);
    // Warm up both (prepared statements, page cache).
    time_gets(&mut web, 50, |_| "/".into(), "glance")?;
    time_gets(&mut web, 50, |i| format!("/tickets/{}", long(i)), "History")?;
    time_gets(
        &mut api,
        50,
        |i| format!("/v1/tickets/{}", long(i)),
        "history",
    )?;

    let (glance, glance_bytes) = time_gets(&mut web, n, |_| "/".into(), "Newest unowned")?;
    let (ticket, ticket_bytes) =
        time_gets(&mut web, n, |i| format!("/tickets/{}", long(i)), "History")?;
    let (list, list_bytes) = time_gets(&mut web, n.min(500), |_| "/tickets".into(), "<table")?;
    let (json, json_bytes) = time_gets(
        &mut api,
        n,
        |i| format!("/v1/tickets/{}", long(i)),
        "history",
    )?;
    let glance_reads = super::store::reads::measure(n, |_| {
        store.reader.read_blocking(|c| {
            query::list(
                c,
                &ListFilter {
                    owner: Some(OPERATOR.into()),
                    limit: Some(10),
                    ..Default::default()
                },
            )?;
            query::newest_unowned(c, 10)?;
            query::work_counts(c)?;
            query::alerts(c, false, 10)?;
            Ok(())
        })?;
        Ok(())
    })?;
    let chart_reads = super::store::reads::measure(n, |i| {
        let number = long(i) as i64;
        store.reader.read_blocking(|c| query::chart(c, number))?;
        Ok(())
    })?;

    // Live: ack of a create through the API -> change event -> /glance shows it.
    let events = event_stream(servers.web, token)?;
    std::thread::sleep(Duration::from_millis(200));
    while events.try_recv().is_ok() {}
    let mut notified = Latencies::with_capacity(opts.live_rounds);
    let mut visible = Latencies::with_capacity(opts.live_rounds);
    for round in 0..opts.live_rounds.max(1) {
        let body = format!("{{\"subject\":\"live round {round}\",\"queue\":\"core\"}}");
        let a = api.post_json("/v1/tickets", body.as_bytes())?;
        let acked = Instant::now();
        if a.status != 201 {
            return Err(BenchError::Invalid(format!("create answered {}", a.status)));
        }
        let ack: serde_json::Value = serde_json::from_slice(&a.body)
            .map_err(|e| BenchError::Invalid(format!("create answer: {e}")))?;
        let number = ack["number"].as_i64().unwrap_or(0);
        let event = events
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| BenchError::Invalid("no change event within 10 s".into()))?;
        notified.record(event.saturating_duration_since(acked));
        let page = web.get("/glance")?;
        let shown =
            String::from_utf8_lossy(&page.body).contains(&format!("href=\"/tickets/{number}\""));
        if !shown {
            return Err(BenchError::Invalid(format!(
                "/glance does not show ticket {number} after its event"
            )));
        }
        visible.record(acked.elapsed());
        while events.try_recv().is_ok() {}
    }
    let (notified, visible) = (notified.summary(), visible.summary());

    let mut s = Section::new(format!(
        "Web console ({} tickets, {} events, {} open; {n} requests per page; {LONG_UPDATES}-update tickets)",
        counts.tickets, counts.events, counts.open_tickets
    ));
    s.latency("at a glance", &glance, Some(TARGET_PAGE_P99_MS));
    s.latency(
        "ticket page (101 events)",
        &ticket,
        Some(TARGET_PAGE_P99_MS),
    );
    s.latency("ticket list (100 rows)", &list, None);
    for (name, bytes) in [
        ("largest at a glance", glance_bytes),
        ("largest ticket page", ticket_bytes),
        ("largest ticket list", list_bytes),
    ] {
        s.at_most(name, bytes as f64 / 1000.0, "KB", TARGET_PAGE_KB);
    }
    s.latency("baseline: API chart JSON", &json, None);
    s.figure(
        "baseline: API chart JSON size",
        json_bytes as f64 / 1000.0,
        "KB",
    );
    s.latency("baseline: at-a-glance reads alone", &glance_reads, None);
    s.latency("baseline: chart read alone", &chart_reads, None);
    s.figure(
        "ticket page / API JSON p50",
        ticket.p50_us / json.p50_us.max(0.001),
        "x",
    );
    s.latency("live: ack to change event", &notified, None);
    s.latency(
        "live: ack to visible at a glance",
        &visible,
        Some(TARGET_LIVE_P99_MS),
    );
    s.note(format!(
        "pages rendered for operator {OPERATOR} (admin, 10 tickets owned) through a bearer token on one keep-alive \
         loopback connection; live: {} rounds of POST /v1/tickets, then the change event on an open /events stream, \
         then GET /glance showing the new ticket",
        opts.live_rounds
    ));
    Ok(s)
}

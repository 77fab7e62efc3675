//! `ttx bench …`: benchmarks with their baselines, as a human report or one JSON object.
//! A missed target is shown as "MISSED" in the report; it does not change the exit code.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::bench::api::{self, ApiBenchOptions, Limit};
use crate::bench::cli::{self as cli_bench, CliBenchOptions};
use crate::bench::store::{self, StoreBenchOptions};
use crate::bench::transport::{self, TransportOpts};
use crate::bench::Report;
use crate::cli::{Failure, FailureKind};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable note appends through the writer, and reads on a large store, each against
    /// bare rusqlite in the same run.
    Store(StoreArgs),
    /// Durable notes through the local HTTP API of a real node (concurrent keep-alive clients,
    /// then one client), each against the store's writer called directly in the same run.
    Api(ApiArgs),
    /// `ttx note` from process start to acknowledged write, against the same request made in
    /// process, `ttx --version` and `/bin/true`.
    Cli(CliArgs),
    /// The QUIC transport: ping, handshakes, request throughput against raw quinn, and many
    /// peers held (clients in a child process, so the node's RSS is measured alone).
    Transport(TransportArgs),
    /// The referral exchange between two real nodes: refer to ack latency, referrals/s and
    /// shared notes/s sustained, a backlog drained after an outage, against ping + bare
    /// rusqlite commits in the same run.
    Exchange(ExchangeArgs),
    /// The web console on the large store: at a glance and a 100-update ticket page through
    /// the console's router, against the API's JSON of the same chart; page sizes; live updates.
    Web(WebArgs),
    /// A primary and its hot standby as two processes: 16 clients through the primary's API in
    /// async, sync and sync-visible mode in the same run, then one client in sync mode.
    Replication(ReplicationArgs),
    /// `ttx standby clone` of a large store (1,000,000 tickets by default) as a separate
    /// process, end to end, against a local VACUUM INTO and a raw copy of the same store.
    Clone(CloneArgs),
    /// The fault campaign: a site with a standby and two partners as real processes, clients
    /// writing with idempotency keys, a seeded schedule of SIGKILLs, failovers, partitions and
    /// packet loss; then every acknowledged write checked (exits 1 if one was lost or doubled).
    Faults(FaultsArgs),
    /// Internal: the peer clients of `ttx bench transport`, run as a child process.
    #[command(hide = true)]
    TransportClients(TransportClientsArgs),
}

/// Options of `ttx bench api`.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Concurrent clients, each a thread with its own keep-alive connection.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds each concurrent run lasts (API, then direct).
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// A fixed number of notes per concurrent run instead of --secs.
    #[arg(long)]
    pub notes: Option<u64>,
    /// Notes timed one at a time by one client (and by one direct writer).
    #[arg(long, default_value_t = 2_000)]
    pub sequential: u64,
    /// Tickets the notes are spread over.
    #[arg(long, default_value_t = 8)]
    pub tickets: usize,
    /// Directory for the node's data dir (removed afterwards); the system temp dir by default.
    #[arg(long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// Options of `ttx bench web`.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Tickets in the store when it has to be built (as `ttx bench store`).
    #[arg(long, default_value_t = 1_000_000)]
    pub tickets: u64,
    /// Timed requests of each page.
    #[arg(long, default_value_t = 2_000)]
    pub iterations: usize,
    /// Timed live-update rounds.
    #[arg(long, default_value_t = 200)]
    pub live_rounds: usize,
    /// The store file: reused if it holds tickets (for example `ttx bench store --store`'s),
    /// else built there; kept.
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// Directory for scratch files (removed afterwards); the system temp dir by default.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Options of `ttx bench cli`.
#[derive(Debug, Args)]
pub struct CliArgs {
    /// Timed rounds.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Directory for the node's data dir (removed afterwards); the system temp dir by default.
    #[arg(long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// Options of `ttx bench exchange`.
#[derive(Debug, Args)]
pub struct ExchangeArgs {
    /// Referrals timed one at a time.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Referrals in the sustained run.
    #[arg(long, default_value_t = 2_000)]
    pub referrals: usize,
    /// Shared notes in the sustained run.
    #[arg(long, default_value_t = 10_000)]
    pub notes: usize,
    /// Notes queued while the partner is down.
    #[arg(long, default_value_t = 100_000)]
    pub backlog: usize,
    /// Concurrent writers at the referring node.
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
    /// Directory for scratch files (removed afterwards); the system temp dir by default.
    #[arg(long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// Options of `ttx bench transport`.
#[derive(Debug, Args)]
pub struct TransportArgs {
    /// Concurrent peer connections to hold.
    #[arg(long, default_value_t = 1_000)]
    pub peers: usize,
    /// Seconds to hold them.
    #[arg(long, default_value_t = 60)]
    pub hold_secs: u64,
    /// Pings timed on one connection.
    #[arg(long, default_value_t = 2_000)]
    pub iterations: usize,
    /// New connections (full mTLS handshake + Hello) timed.
    #[arg(long, default_value_t = 300)]
    pub connects: usize,
    /// Seconds of each throughput round.
    #[arg(long, default_value_t = 3.0)]
    pub throughput_secs: f64,
    /// Requests in flight during the throughput rounds.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// Request payload size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub payload: usize,
    /// Alternated throughput rounds (endpoint, raw quinn); the best of each is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Run the peer clients in this process instead of a child (RSS then covers both ends).
    #[arg(long)]
    pub clients_in_process: bool,
    /// Directory for scratch files (removed afterwards); the system temp dir by default.
    #[arg(long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// Options of the hidden `ttx bench transport-clients`.
#[derive(Debug, Args)]
pub struct TransportClientsArgs {
    /// The certificate material written by `ttx bench transport`.
    #[arg(long)]
    pub material: PathBuf,
}

/// Options of `ttx bench store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Notes appended in the write benchmark.
    #[arg(long, default_value_t = 200_000)]
    pub notes: u64,
    /// Concurrent submitters in the write benchmark.
    #[arg(long, default_value_t = 64)]
    pub writers: usize,
    /// Tickets (three updates each, plus 100 tickets of 100 updates) in the read benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    pub tickets: u64,
    /// Timed calls of each read.
    #[arg(long, default_value_t = 2_000)]
    pub iterations: usize,
    /// The read benchmark's store file: reused if it holds tickets, else built there; kept.
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// Directory for scratch files (removed afterwards); the system temp dir by default.
    #[arg(long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Skip the read benchmark.
    #[arg(long)]
    pub skip_reads: bool,
    /// Skip the write benchmark.
    #[arg(long)]
    pub skip_writes: bool,
}

/// `ttx bench replication`.
#[derive(Debug, clap::Args)]
pub struct ReplicationArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds each concurrent load lasts.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Notes timed one at a time in sync mode.
    #[arg(long, default_value_t = 2_000)]
    pub sequential: u64,
    /// Directory for scratch files (removed afterwards); the system temp dir by default.
    #[arg(long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// The standby acks `durable` once a batch is in its receipt spool
    /// (`replication.receipt_spool = true`), not once it is applied.
    #[arg(long = "receipt-spool")]
    pub receipt_spool: bool,
}

/// Options of `ttx bench clone`.
#[derive(Debug, Args)]
pub struct CloneArgs {
    /// Tickets in the store when it has to be built (as `ttx bench store`).
    #[arg(long, default_value_t = 1_000_000)]
    pub tickets: u64,
    /// A store to clone (for example `ttx bench store --store`'s): copied into the primary
    /// when it holds tickets (left as it is); otherwise a store of --tickets is built.
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// Directory for scratch files (removed afterwards); the system temp dir by default.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Options of `ttx bench faults`.
#[derive(Debug, Args)]
pub struct FaultsArgs {
    /// How long faults are injected (set-up and the final check come on top).
    #[arg(long, default_value_t = 5.0)]
    pub minutes: f64,
    /// The schedule's seed (printed; the same seed replays the same schedule); from the clock
    /// by default.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Clients writing on the site (each partner has one more).
    #[arg(long, default_value_t = 3)]
    pub clients: usize,
    /// Each client's pause between two writes, in milliseconds.
    #[arg(long = "pace-ms", default_value_t = 100)]
    pub pace_ms: u64,
    /// Directory for scratch files (removed afterwards); the system temp dir by default.
    #[arg(long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// `ttx bench faults`: runs a campaign, prints what it tried and what it found.
fn faults(a: FaultsArgs, json: bool) -> anyhow::Result<()> {
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let opts = crate::faults::CampaignOptions {
        seed,
        duration: std::time::Duration::from_secs_f64(a.minutes.max(0.0) * 60.0),
        site_clients: a.clients,
        pace: std::time::Duration::from_millis(a.pace_ms),
    };
    let scratch = crate::bench::ScratchDir::named(a.work_dir.as_deref(), "ttx-faults")?;
    let ttx = crate::cluster::Ttx::current()?;
    let report = crate::faults::campaign::run(&ttx, scratch.path(), &opts, |line| {
        if !json {
            outln!("{line}");
        }
    })
    .with_context(|| format!("fault campaign (seed {seed})"))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        out!("{report}");
    }
    if !report.holds() {
        let kept = scratch.keep();
        return Err(Failure::new(
            FailureKind::Failed,
            format!(
                "the campaign found a violation; replay with --seed {seed} (the nodes' data dirs and serve.log files are kept in {})",
                kept.display()
            ),
        )
        .into());
    }
    Ok(())
}

/// Runs a benchmark and prints its report.
pub fn run(cmd: BenchCommand, json: bool) -> anyhow::Result<()> {
    let report = match cmd {
        BenchCommand::Store(a) => {
            let opts = StoreBenchOptions {
                notes: a.notes,
                writers: a.writers,
                tickets: a.tickets,
                iterations: a.iterations,
                store: a.store,
                dir: a.work_dir,
                skip_reads: a.skip_reads,
                skip_writes: a.skip_writes,
                progress: true,
            };
            store::run(&opts).context("store benchmark")?
        }
        BenchCommand::Api(a) => {
            let limit = match a.notes {
                Some(n) => Limit::Count(n),
                None => Limit::For(std::time::Duration::from_secs_f64(a.secs.max(0.01))),
            };
            let opts = ApiBenchOptions {
                clients: a.clients,
                limit,
                sequential: a.sequential,
                tickets: a.tickets,
                dir: a.work_dir,
            };
            api::run(&opts).context("api benchmark")?
        }
        BenchCommand::Replication(a) => {
            let exe = std::env::current_exe().context("cannot find the running ttx binary")?;
            let opts = crate::bench::replication::ReplicationBenchOptions {
                exe,
                clients: a.clients,
                secs: a.secs,
                sequential: a.sequential,
                dir: a.work_dir,
                receipt_spool: a.receipt_spool,
            };
            crate::bench::replication::run(&opts).context("replication benchmark")?
        }
        BenchCommand::Cli(a) => {
            let exe = std::env::current_exe().context("cannot find the running ttx binary")?;
            let opts = CliBenchOptions {
                runs: a.runs,
                exe,
                dir: a.work_dir,
            };
            cli_bench::run(&opts).context("cli benchmark")?
        }
        BenchCommand::Transport(a) => {
            let clients_exe = if a.clients_in_process {
                None
            } else {
                Some(std::env::current_exe().context("cannot find the running ttx binary")?)
            };
            let opts = TransportOpts {
                ping_samples: a.iterations,
                connect_samples: a.connects,
                throughput_secs: a.throughput_secs,
                in_flight: a.in_flight,
                payload: a.payload,
                rounds: a.rounds,
                peers: a.peers,
                hold_secs: a.hold_secs,
                clients_exe,
                dir: a.work_dir,
            };
            transport::run(opts).context("transport benchmark")?
        }
        BenchCommand::Exchange(a) => {
            let opts = crate::bench::exchange::ExchangeOpts {
                samples: a.samples,
                referrals: a.referrals,
                notes: a.notes,
                backlog: a.backlog,
                writers: a.writers,
                dir: a.work_dir,
            };
            crate::bench::exchange::run(&opts).context("exchange benchmark")?
        }
        BenchCommand::Clone(a) => {
            let exe = std::env::current_exe().context("cannot find the running ttx binary")?;
            let opts = crate::bench::clone::CloneBenchOptions {
                exe,
                tickets: a.tickets,
                store: a.store,
                dir: a.dir,
            };
            crate::bench::clone::run(&opts).context("clone benchmark")?
        }
        BenchCommand::Web(a) => {
            let opts = crate::bench::web::WebBenchOptions {
                tickets: a.tickets,
                iterations: a.iterations,
                live_rounds: a.live_rounds,
                store: a.store,
                dir: a.dir,
            };
            crate::bench::web::run(&opts).context("web benchmark")?
        }
        BenchCommand::Faults(a) => return faults(a, json),
        BenchCommand::TransportClients(a) => {
            return transport::run_clients(&a.material).context("transport peer clients");
        }
    };
    print_report(&report, json)
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?);
    } else {
        report.write_human(&mut std::io::stdout().lock())?;
    }
    Ok(())
}

//! `ttx bench …`: benchmarks with their baselines, as a human report or one JSON object.
//! A missed target is shown as "MISSED" in the report; it does not change the exit code.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::bench::store::{self, StoreBenchOptions};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable note appends through the writer, and reads on a large store, each against
    /// bare rusqlite in the same run.
    Store(StoreArgs),
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
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Skip the read benchmark.
    #[arg(long)]
    pub skip_reads: bool,
    /// Skip the write benchmark.
    #[arg(long)]
    pub skip_writes: bool,
}

/// Runs a benchmark and prints its report.
pub fn run(cmd: BenchCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Store(a) => {
            let opts = StoreBenchOptions {
                notes: a.notes,
                writers: a.writers,
                tickets: a.tickets,
                iterations: a.iterations,
                store: a.store,
                dir: a.dir,
                skip_reads: a.skip_reads,
                skip_writes: a.skip_writes,
                progress: true,
            };
            let report = store::run(&opts).context("store benchmark")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                report.write_human(&mut std::io::stdout().lock())?;
            }
            Ok(())
        }
    }
}

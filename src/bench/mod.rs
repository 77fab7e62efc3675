//! `ttx bench …`: benchmarks that measure each figure against a baseline in the same process.
//!
//! This module holds the small shared support every benchmark uses; each benchmark lives in
//! its own module:
//!
//! - [`api`]: durable notes through the local HTTP API of a real node, against the writer.
//! - [`cli`]: `ttx note` process start to acknowledged write, against the same request in process.
//! - [`store`]: durable note appends through the writer, and reads on a large store.
//! - [`exchange`]: the referral exchange between two real nodes (refer to ack, referrals/s,
//!   shared notes/s, a backlog drained), against ping + bare rusqlite commits.
//! - [`transport`]: Hello round trips, handshakes, request throughput vs raw quinn, many peers.
//! - [`http`] and [`node`]: a keep-alive HTTP client and a real node in process, for the above.
//!
//! Support: [`Latencies`] (percentiles), [`rate`], [`rss_bytes`], [`MachineInfo`] (with a
//! measured fdatasync latency of the target disk) and the [`Report`] printed as a human table
//! or as JSON.

pub mod api;
pub mod cli;
pub mod clone;
pub mod exchange;
pub mod failover;
pub mod http;
pub mod node;
pub mod replication;
pub mod store;
mod streams;
pub mod transport;
pub mod visible;
pub mod web;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::store::StoreError;

/// Why a benchmark could not run (a missed target is not an error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file or directory could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bare SQLite (a baseline) failed.
    #[error("baseline database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The benchmark found something it cannot measure (for example an empty store).
    #[error("{0}")]
    Invalid(String),
}

impl BenchError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }
}

/// Collects durations and reports their percentiles.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples: Vec<Duration>,
}

/// Percentiles of a set of durations, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Slowest.
    pub max_us: f64,
}

impl Latencies {
    /// An empty recorder with room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            samples: Vec::with_capacity(n),
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        self.samples.push(d);
    }

    /// Runs `f`, records how long it took, and returns its result.
    pub fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.record(start.elapsed());
        out
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
    }

    /// The percentiles (nearest rank) of the samples so far.
    pub fn summary(&self) -> LatencySummary {
        let mut s = self.samples.clone();
        s.sort_unstable();
        let pick = |p: f64| -> f64 {
            if s.is_empty() {
                return 0.0;
            }
            let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
            s[rank - 1].as_secs_f64() * 1e6
        };
        LatencySummary {
            count: s.len(),
            p50_us: pick(0.50),
            p90_us: pick(0.90),
            p99_us: pick(0.99),
            max_us: pick(1.0),
        }
    }
}

/// `count` per second over `elapsed`.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Resident set size of this process (`VmRSS` of `/proc/self/status`), if the platform has it.
pub fn rss_bytes() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|k| k * 1024)
}

/// Peak resident set size of this process (`VmHWM`), if the platform has it.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|k| k * 1024)
}

fn proc_status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The machine a benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu: String,
    /// Logical cores available to this process.
    pub cores: usize,
    /// Physical memory, in bytes.
    pub ram_bytes: u64,
    /// Kernel release.
    pub kernel: String,
    /// Latency of writing 4 KiB and `fdatasync` on the benchmark's disk.
    pub fdatasync: LatencySummary,
    /// The load average (1, 5, 15 minutes) when the run started (`/proc/loadavg`): the machine
    /// may be shared, and a figure means little without it.
    pub load_average: Option<[f64; 3]>,
}

impl MachineInfo {
    /// Describes this machine and measures fdatasync on a temporary file in `dir`
    /// (`rounds` times 4 KiB written at the same offset, then `File::sync_data`).
    pub fn collect(dir: &Path, rounds: usize) -> Result<Self, BenchError> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let ram_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let l = m.lines().find(|l| l.starts_with("MemTotal:"))?;
                l["MemTotal:".len()..]
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|k| k * 1024)
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("Linux {}", s.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.to_string());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Ok(MachineInfo {
            cpu,
            cores,
            ram_bytes,
            kernel,
            fdatasync: fdatasync_latency(dir, rounds)?,
            load_average: load_average(),
        })
    }
}

/// The load average over 1, 5 and 15 minutes (`/proc/loadavg`), if the platform has it.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

fn fdatasync_latency(dir: &Path, rounds: usize) -> Result<LatencySummary, BenchError> {
    use std::io::{Seek, SeekFrom};
    let path = dir.join(format!("fdatasync-probe-{}", std::process::id()));
    let mut file = std::fs::File::create(&path).map_err(BenchError::io("create the probe file"))?;
    let block = [0x5au8; 4096];
    let mut lat = Latencies::with_capacity(rounds);
    let result = (0..rounds).try_for_each(|_| {
        let start = Instant::now();
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&block)?;
        file.sync_data()?;
        lat.record(start.elapsed());
        Ok(())
    });
    drop(file);
    let _ = std::fs::remove_file(&path);
    result.map_err(BenchError::io("fdatasync probe"))?;
    Ok(lat.summary())
}

/// Which way a target points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// The figure must be at least the target (throughputs, ratios).
    AtLeast,
    /// The figure must be at most the target (latencies, memory).
    AtMost,
}

/// A target for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    /// Direction.
    pub goal: Goal,
    /// The value, in the figure's unit.
    pub value: f64,
}

impl Target {
    /// Whether `v` meets the target.
    pub fn met(&self, v: f64) -> bool {
        match self.goal {
            Goal::AtLeast => v >= self.value,
            Goal::AtMost => v <= self.value,
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit (`notes/s`, `ms`, `MB`, `x`).
    pub unit: String,
    /// The target, if the issue sets one.
    pub target: Option<Target>,
    /// Whether the target was met (`None` without a target).
    pub ok: Option<bool>,
}

/// A group of figures about one thing, with free notes (sizes, what a baseline does).
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// Title.
    pub title: String,
    /// Figures in order.
    pub figures: Vec<Figure>,
    /// Remarks printed under the figures.
    pub notes: Vec<String>,
}

impl Section {
    /// An empty section.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            figures: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a figure without a target.
    pub fn figure(&mut self, name: impl Into<String>, value: f64, unit: &str) {
        self.push(name, value, unit, None);
    }

    /// Adds a figure with a target.
    pub fn target(&mut self, name: impl Into<String>, value: f64, unit: &str, target: Target) {
        self.push(name, value, unit, Some(target));
    }

    fn push(&mut self, name: impl Into<String>, value: f64, unit: &str, target: Option<Target>) {
        self.figures.push(Figure {
            name: name.into(),
            value,
            unit: unit.into(),
            ok: target.map(|t| t.met(value)),
            target,
        });
    }

    /// Adds `NAME p50` and `NAME p99` in milliseconds, the p99 against `p99_at_most_ms` when
    /// given.
    pub fn latency(&mut self, name: &str, l: &LatencySummary, p99_at_most_ms: Option<f64>) {
        self.figure(format!("{name} p50"), l.p50_us / 1000.0, "ms");
        let target = p99_at_most_ms.map(|value| Target {
            goal: Goal::AtMost,
            value,
        });
        self.push(format!("{name} p99"), l.p99_us / 1000.0, "ms", target);
    }

    /// Adds a figure with an at-most target.
    pub fn at_most(&mut self, name: impl Into<String>, value: f64, unit: &str, limit: f64) {
        let target = Target {
            goal: Goal::AtMost,
            value: limit,
        };
        self.push(name, value, unit, Some(target));
    }

    /// Adds a remark.
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }
}

/// A whole benchmark run: the machine and the sections.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Which benchmark.
    pub bench: String,
    /// Where it ran.
    pub machine: MachineInfo,
    /// What it measured.
    pub sections: Vec<Section>,
}

fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Report {
    /// Writes the report as a human-readable table.
    pub fn write_human(&self, out: &mut impl Write) -> std::io::Result<()> {
        let m = &self.machine;
        writeln!(out, "ttx bench {}", self.bench)?;
        writeln!(
            out,
            "machine: {}, {} cores, {:.1} GiB RAM, {}",
            m.cpu,
            m.cores,
            m.ram_bytes as f64 / (1u64 << 30) as f64,
            m.kernel
        )?;
        writeln!(
            out,
            "disk: 4 KiB write + fdatasync p50 {:.2} ms, p99 {:.2} ms ({} rounds)",
            m.fdatasync.p50_us / 1000.0,
            m.fdatasync.p99_us / 1000.0,
            m.fdatasync.count
        )?;
        if let Some([one, five, fifteen]) = m.load_average {
            writeln!(
                out,
                "load average at the start: {one:.2} {five:.2} {fifteen:.2} (1, 5, 15 min)"
            )?;
        }
        for s in &self.sections {
            writeln!(out, "\n{}", s.title)?;
            for f in &s.figures {
                let target = match f.target {
                    Some(t) => {
                        let sign = if t.goal == Goal::AtLeast { ">=" } else { "<=" };
                        let verdict = if f.ok == Some(true) { "ok" } else { "MISSED" };
                        format!("target {sign} {} {}  {verdict}", number(t.value), f.unit)
                    }
                    None => String::new(),
                };
                writeln!(
                    out,
                    "  {:<44} {:>12} {:<8} {}",
                    f.name,
                    number(f.value),
                    f.unit,
                    target
                )?;
            }
            for n in &s.notes {
                writeln!(out, "  - {n}")?;
            }
        }
        Ok(())
    }
}

/// A scratch directory removed on drop (the benchmark's own files; never a `--store`).
#[derive(Debug)]
pub struct ScratchDir {
    path: std::path::PathBuf,
}

impl ScratchDir {
    /// Creates a fresh directory under `parent` (or the system temp dir).
    pub fn new(parent: Option<&Path>) -> Result<Self, BenchError> {
        Self::named(parent, "ttx-bench")
    }

    /// Creates a fresh directory `PREFIX-PID-NANOS` under `parent` (or the system temp dir).
    pub fn named(parent: Option<&Path>, prefix: &str) -> Result<Self, BenchError> {
        let parent = parent
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = parent.join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(BenchError::io(format!("create {}", path.display())))?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory (for a post-mortem) and returns its path.
    pub fn keep(self) -> std::path::PathBuf {
        let path = self.path.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut l = Latencies::default();
        for i in 1..=100 {
            l.record(Duration::from_micros(i));
        }
        let s = l.summary();
        assert_eq!(
            (s.count, s.p50_us, s.p99_us, s.max_us),
            (100, 50.0, 99.0, 100.0)
        );
        assert_eq!(Latencies::default().summary().count, 0);
    }

    #[test]
    fn targets_point_both_ways() {
        let mut s = Section::new("x");
        s.target(
            "a",
            5.0,
            "ms",
            Target {
                goal: Goal::AtMost,
                value: 5.0,
            },
        );
        s.target(
            "b",
            4.0,
            "x",
            Target {
                goal: Goal::AtLeast,
                value: 5.0,
            },
        );
        assert_eq!(s.figures[0].ok, Some(true));
        assert_eq!(s.figures[1].ok, Some(false));
        assert!(rss_bytes().unwrap_or(1) > 0);
        if let Some(l) = load_average() {
            assert!(l.iter().all(|v| *v >= 0.0), "{l:?}");
        }
    }
}

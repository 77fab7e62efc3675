//! `ttx bench store`: the store's figures, each next to a baseline measured in the same run.
//!
//! - [`writes`]: durable note appends through `Writer::write_blocking` from many concurrent
//!   submitters (group commit, `synchronous = full`) against bare rusqlite writing the same
//!   rows in transactions of the same size.
//! - [`reads`]: a large store built through the one applier, then the open-work list, the chart
//!   of a long ticket and full-text search, against the same SQL on a bare connection.
//! - [`text`]: the seeded NOC text both use.

pub mod reads;
pub mod text;
pub mod writes;

use std::path::PathBuf;

use super::{BenchError, MachineInfo, Report, ScratchDir};
use crate::store::NodeStamp;

/// The node the benchmark stores belong to.
fn stamp() -> NodeStamp {
    NodeStamp {
        site: "bench".into(),
        node: "primary".into(),
    }
}

/// What `ttx bench store` runs, and how big.
#[derive(Debug, Clone)]
pub struct StoreBenchOptions {
    /// Notes appended in the write benchmark.
    pub notes: u64,
    /// Concurrent submitters in the write benchmark.
    pub writers: usize,
    /// Tickets (with three updates each) in the read benchmark's store.
    pub tickets: u64,
    /// Timed calls of each read.
    pub iterations: usize,
    /// The read benchmark's store: reused if it holds tickets, built there otherwise, kept.
    pub store: Option<PathBuf>,
    /// Where scratch files go (the system temp dir otherwise); they are removed afterwards.
    pub dir: Option<PathBuf>,
    /// Skip the read benchmark.
    pub skip_reads: bool,
    /// Skip the write benchmark.
    pub skip_writes: bool,
    /// Print build progress on stderr.
    pub progress: bool,
}

impl Default for StoreBenchOptions {
    fn default() -> Self {
        Self {
            notes: 200_000,
            writers: 64,
            tickets: 1_000_000,
            iterations: 2_000,
            store: None,
            dir: None,
            skip_reads: false,
            skip_writes: false,
            progress: false,
        }
    }
}

/// Runs the store benchmark and returns its report (missed targets are in the report, not
/// errors).
pub fn run(opts: &StoreBenchOptions) -> Result<Report, BenchError> {
    let scratch = ScratchDir::new(opts.dir.as_deref())?;
    let machine = MachineInfo::collect(scratch.path(), 200)?;
    let mut sections = Vec::new();
    if !opts.skip_writes {
        sections.push(writes::run(opts, scratch.path())?);
    }
    if !opts.skip_reads {
        sections.extend(reads::run(opts, scratch.path())?);
    }
    Ok(Report {
        bench: "store".into(),
        machine,
        sections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole benchmark at tiny sizes, so the code path stays tested (no timing asserted).
    #[test]
    fn tiny_store_bench_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("large.db");
        let opts = StoreBenchOptions {
            notes: 200,
            writers: 4,
            tickets: 300,
            iterations: 24,
            store: Some(store.clone()),
            dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let report = run(&opts).unwrap();
        let titles: Vec<&str> = report.sections.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles.len(), 3, "{titles:?}");
        assert!(report
            .sections
            .iter()
            .all(|s| s.figures.iter().all(|f| f.value.is_finite())));
        let mut text = Vec::new();
        report.write_human(&mut text).unwrap();
        assert!(String::from_utf8(text).unwrap().contains("ttx / baseline"));
        serde_json::to_string(&report).unwrap();
        // A second run reuses the store: no build section.
        let again = run(&StoreBenchOptions {
            skip_writes: true,
            ..opts
        })
        .unwrap();
        assert_eq!(again.sections.len(), 1);
        assert!(
            again.sections[0].title.contains("400 tickets"),
            "{}",
            again.sections[0].title
        );
    }
}

//! A real node for the API and CLI benchmarks: a fresh data dir made as `ttx init` makes it
//! (config, store, admin operator and token), then [`RunningNode::start`] on a runtime of its
//! own (API on 127.0.0.1 port 0, store with the default `synchronous = full`).
//!
//! Also [`ThreadCpu`]: CPU time per thread name from `/proc/self/task`, so a benchmark can say
//! where its time went (tokio workers, the writer thread, the clients); and
//! [`thread_bytes_written`]: the bytes a thread handed to `write`/`pwrite` (the writer's WAL
//! frames and checkpoints), a figure the machine's load does not move.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::store::text::{self, Rng};
use super::BenchError;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::model::command::CreateTicket;
use crate::node::RunningNode;
use crate::store::{Store, WriteOp, WriteOutcome, WriteRequest};

fn invalid(what: &str) -> impl FnOnce(String) -> BenchError + '_ {
    move |e| BenchError::Invalid(format!("{what}: {e}"))
}

/// Creates a node's data dir in `dir` as `ttx init DIR --site bench` does; returns the admin
/// token (also written to `DIR/admin.token`).
pub fn init_data_dir(dir: &Path) -> Result<String, BenchError> {
    let mut config = Config::new("bench", "primary");
    config.api.addr = "127.0.0.1:0".parse().expect("literal address");
    crate::node::init_data_dir(&DataDir::new(dir), &config)
        .map_err(|e| invalid("create the data dir")(e.to_string()))
}

/// A running node in this process, with its own tokio runtime.
pub struct BenchNode {
    rt: tokio::runtime::Runtime,
    node: Option<RunningNode>,
    /// The API address.
    pub addr: SocketAddr,
    /// The admin token.
    pub token: String,
    /// The data dir.
    pub dir: PathBuf,
}

impl BenchNode {
    /// Initialises `dir` and starts a node on it (tokio's default worker count: one per core).
    pub fn start(dir: &Path) -> Result<Self, BenchError> {
        let token = init_data_dir(dir)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(BenchError::io("start the runtime"))?;
        let node = rt
            .block_on(RunningNode::start(dir))
            .map_err(|e| invalid("start the node")(e.to_string()))?;
        let addr = node
            .bound
            .api_addr
            .ok_or_else(|| BenchError::Invalid("the node bound no API address".into()))?;
        Ok(Self {
            rt,
            node: Some(node),
            addr,
            token,
            dir: dir.to_path_buf(),
        })
    }

    /// The node's store.
    pub fn store(&self) -> &Store {
        &self.node.as_ref().expect("node running until stop").store
    }

    /// Opens `n` tickets through the writer; returns their numbers.
    pub fn open_tickets(&self, n: usize) -> Result<Vec<i64>, BenchError> {
        let mut rng = Rng::new(7);
        (0..n)
            .map(|_| {
                let req = WriteRequest {
                    actor: "bench".into(),
                    idempotency: None,
                    op: WriteOp::Create(Box::new(CreateTicket {
                        subject: text::subject(&mut rng),
                        ..Default::default()
                    })),
                };
                match self.store().writer.write_blocking(req)? {
                    WriteOutcome::Ticket(ack) => Ok(ack.number),
                    other => Err(BenchError::Invalid(format!(
                        "unexpected answer to a create: {other:?}"
                    ))),
                }
            })
            .collect()
    }

    /// Drains and stops the node.
    pub fn stop(mut self) {
        if let Some(node) = self.node.take() {
            self.rt.block_on(node.stop());
        }
    }
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            self.rt.block_on(node.stop());
        }
    }
}

/// CPU seconds (user + system) per thread name, summed over threads of the same name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThreadCpu(pub BTreeMap<String, f64>);

/// Kernel clock ticks per second (`USER_HZ`; 100 on every Linux ABI ttx runs on).
const TICKS_PER_SEC: f64 = 100.0;

fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based, name = 2).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / TICKS_PER_SEC))
}

/// CPU seconds the calling thread has used so far (`/proc/thread-self/stat`), if available.
pub fn this_thread_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    parse_stat(&stat).map(|(_, s)| s)
}

/// Bytes the live threads named `name` have passed to `write`-family calls so far (`wchar` of
/// `/proc/self/task/*/io`; 0 off Linux).
pub fn thread_bytes_written(name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for t in tasks.flatten() {
        let named = std::fs::read_to_string(t.path().join("comm"))
            .is_ok_and(|comm| comm.trim_end() == name);
        if !named {
            continue;
        }
        let io = std::fs::read_to_string(t.path().join("io")).unwrap_or_default();
        total += io
            .lines()
            .find_map(|l| l.strip_prefix("wchar:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

impl ThreadCpu {
    /// CPU seconds of every live thread of this process, by name (empty off Linux).
    pub fn now() -> Self {
        Self::of_tasks(Path::new("/proc/self/task"))
    }

    /// [`Self::now`] of another process (a `ttx serve` child; empty if it is gone).
    pub fn of_process(pid: u32) -> Self {
        Self::of_tasks(&PathBuf::from(format!("/proc/{pid}/task")))
    }

    fn of_tasks(dir: &Path) -> Self {
        let mut map = BTreeMap::new();
        if let Ok(tasks) = std::fs::read_dir(dir) {
            for t in tasks.flatten() {
                if let Some((name, secs)) = std::fs::read_to_string(t.path().join("stat"))
                    .ok()
                    .as_deref()
                    .and_then(parse_stat)
                {
                    *map.entry(name).or_insert(0.0) += secs;
                }
            }
        }
        ThreadCpu(map)
    }

    /// What each thread name used since `before`, dropping names that used nothing.
    pub fn since(&self, before: &ThreadCpu) -> ThreadCpu {
        ThreadCpu(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - before.0.get(k).copied().unwrap_or(0.0)))
                .filter(|(_, v)| *v > 0.0)
                .collect(),
        )
    }

    /// CPU seconds of the threads named `name`.
    pub fn secs(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// One line: `name 1.23 s, …`, largest first.
    pub fn describe(&self) -> String {
        let mut v: Vec<_> = self.0.iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(a.1));
        v.iter()
            .map(|(k, s)| format!("{k} {s:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_odd_names() {
        let line = "42 (tokio-runtime-w) S 1 1 1 0 -1 4194368 100 0 0 0 150 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("tokio-runtime-w".into(), 2.0)));
        let odd = "7 (a) b) R 1 1 1 0 -1 0 0 0 0 0 3 7 0 0";
        assert_eq!(parse_stat(odd), Some(("a) b".into(), 0.1)));
    }
}

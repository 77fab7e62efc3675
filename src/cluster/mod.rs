//! Real `ttx` processes on loopback, set up and driven through the real command line: what
//! `ttx demo` tells its story with and what the fault campaign breaks.
//!
//! - [`process`]: [`Ttx`] (the binary, every run bounded in time) and [`Node`] (a data dir
//!   and its `ttx serve` child: start, SIGKILL, SIGTERM, CLI commands against it).
//! - [`federation`]: [`Ca`] (a federation CA made with `ttx pki`), partners that know each
//!   other, and [`federation::Site`]: a primary with a hot standby cloned from it.
//! - [`look`]: what the drivers read back (referrals, charts, position and digest) and wait
//!   for, each wait bounded.
//!
//! Nothing here is a stand-in: every node is a `ttx serve` process of the same binary, every
//! certificate comes from `ttx pki`, every change goes through `ttx` commands.

pub mod federation;
pub mod look;
pub mod process;

use std::time::{Duration, Instant};

pub use federation::{Ca, Site};
pub use process::{Node, Output, Ttx};

/// What went wrong while setting up or driving the processes.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A command ran and failed.
    #[error("`ttx {command}` failed with exit code {code}: {stderr}")]
    Command {
        /// The command line (without the binary).
        command: String,
        /// Its exit code (-1: killed by a signal).
        code: i32,
        /// What it printed on standard error.
        stderr: String,
    },
    /// Something did not happen in time.
    #[error("{what} did not happen within {secs} s")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        secs: u64,
    },
    /// An answer had not the expected shape.
    #[error("unexpected answer to `ttx {command}`: {detail}")]
    Answer {
        /// The command line.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// A file or process operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A set-up step failed.
    #[error("{0}")]
    Setup(String),
}

impl ClusterError {
    /// A constructor for `map_err` on I/O results.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
        let what = what.into();
        move |source| ClusterError::Io { what, source }
    }
}

/// Polls `cond` every 50 ms until it holds; a [`ClusterError::Timeout`] naming `what` after
/// `limit`. An error from `cond` ends the wait at once.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> Result<bool, ClusterError>,
) -> Result<(), ClusterError> {
    let deadline = Instant::now() + limit;
    loop {
        if cond()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::Timeout {
                what: what.to_string(),
                secs: limit.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! The `ttx` binary and the nodes it runs: every command bounded in time, every `ttx serve` a
//! child process of the driver (a Ctrl-C at the terminal reaches them too, and they drain).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ClusterError;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::node::RuntimeInfo;

/// How long one CLI command may take before it is killed and reported.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);
/// How long `ttx serve` may take to record its addresses.
pub const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd node may take to drain before it is killed.
pub const STOP_LIMIT: Duration = Duration::from_secs(30);

/// What a command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (-1: ended by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The `ttx` binary the processes run (the running one, for the demo and the benches).
#[derive(Debug, Clone)]
pub struct Ttx {
    exe: PathBuf,
}

impl Ttx {
    /// The binary at `exe`.
    pub fn at(exe: impl Into<PathBuf>) -> Ttx {
        Ttx { exe: exe.into() }
    }

    /// The running binary.
    pub fn current() -> Result<Ttx, ClusterError> {
        std::env::current_exe()
            .map(Ttx::at)
            .map_err(ClusterError::io("find the running ttx binary"))
    }

    /// A command for the binary with an environment of its own: no operator's `TTX_*`
    /// settings leak into the nodes or commands.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.exe);
        for var in ["TTX_DIR", "TTX_TOKEN", "TTX_API", "TTX_PROFILE"] {
            c.env_remove(var);
        }
        c.env("TTX_LOG", "warn").env("NO_COLOR", "1");
        c
    }

    /// Runs `ttx ARGS` (with `TTX_DIR=dir` when given) to completion within
    /// [`COMMAND_LIMIT`]; a command still running then is killed and reported.
    pub fn run(&self, dir: Option<&Path>, args: &[&str]) -> Result<Output, ClusterError> {
        let mut c = self.command();
        if let Some(d) = dir {
            c.env("TTX_DIR", d);
        }
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let line = args.join(" ");
        let mut child = c
            .spawn()
            .map_err(ClusterError::io(format!("run ttx {line}")))?;
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let deadline = Instant::now() + COMMAND_LIMIT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ClusterError::Timeout {
                        what: format!("`ttx {line}` finishing"),
                        secs: COMMAND_LIMIT.as_secs(),
                    });
                }
                Err(e) => return Err(ClusterError::io(format!("wait for ttx {line}"))(e)),
            }
        };
        Ok(Output {
            code: status.code().unwrap_or(-1),
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }

    /// [`Ttx::run`], an error unless it exited 0; returns standard output.
    pub fn ok(&self, dir: Option<&Path>, args: &[&str]) -> Result<String, ClusterError> {
        let out = self.run(dir, args)?;
        if out.code != 0 {
            return Err(ClusterError::Command {
                command: args.join(" "),
                code: out.code,
                stderr: out.stderr.trim().to_string(),
            });
        }
        Ok(out.stdout)
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut text);
        }
        text
    })
}

/// A node: its data dir and, while it runs, its `ttx serve` child (logging to
/// `DIR/serve.log`).
#[derive(Debug)]
pub struct Node {
    ttx: Ttx,
    /// `site/node`, as the node's certificate names it.
    pub label: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// `ttx init DIR --site SITE --node NODE --federation FED --listen 127.0.0.1:0` (not
    /// started).
    pub fn init(
        ttx: &Ttx,
        dir: &Path,
        site: &str,
        node: &str,
        federation: &str,
    ) -> Result<Node, ClusterError> {
        let d = dir.to_string_lossy();
        ttx.ok(
            None,
            &[
                "init",
                &d,
                "--site",
                site,
                "--node",
                node,
                "--federation",
                federation,
                "--listen",
                "127.0.0.1:0",
            ],
        )?;
        Ok(Node {
            ttx: ttx.clone(),
            label: format!("{site}/{node}"),
            dir: dir.to_path_buf(),
            child: None,
        })
    }

    /// A node on the existing data dir `dir` (made by `ttx standby clone`, say), labelled
    /// `label` (not started).
    pub fn existing(ttx: &Ttx, dir: &Path, label: &str) -> Node {
        Node {
            ttx: ttx.clone(),
            label: label.to_string(),
            dir: dir.to_path_buf(),
            child: None,
        }
    }

    /// The binary it runs.
    pub fn ttx(&self) -> &Ttx {
        &self.ttx
    }

    /// The data dir (what `TTX_DIR` names).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data dir's paths.
    pub fn data(&self) -> DataDir {
        DataDir::new(&self.dir)
    }

    /// Whether its `ttx serve` child is running (as far as this driver knows).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Starts `ttx serve DIR` and waits (bounded) until it has recorded its addresses.
    pub fn start(&mut self) -> Result<(), ClusterError> {
        if self.is_running() {
            return Ok(());
        }
        let data = self.data();
        let _ = std::fs::remove_file(data.runtime_info());
        let log_path = self.dir.join("serve.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(ClusterError::io(format!("open {}", log_path.display())))?;
        let mut c = self.ttx.command();
        c.arg("serve")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = c
            .spawn()
            .map_err(ClusterError::io(format!("start {}", self.label)))?;
        let deadline = Instant::now() + START_LIMIT;
        while RuntimeInfo::read(&data).ok().map(|i| i.pid) != Some(child.id()) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(ClusterError::Setup(format!(
                    "ttx serve of {} exited with {status} (see {})",
                    self.label,
                    log_path.display()
                )));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ClusterError::Timeout {
                    what: format!("{} starting (see {})", self.label, log_path.display()),
                    secs: START_LIMIT.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        Ok(())
    }

    /// The running node's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to clean up. Returns once the process is gone.
    pub fn kill(&mut self) -> Result<(), ClusterError> {
        if let Some(mut child) = self.child.take() {
            child
                .kill()
                .map_err(ClusterError::io(format!("SIGKILL {}", self.label)))?;
            let _ = child.wait();
        }
        Ok(())
    }

    /// SIGTERM: drain and stop (bounded; SIGKILL after [`STOP_LIMIT`]). Returns whether it
    /// exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        // SAFETY: kill(2) on the pid of our own child, which has not been waited for.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// What the running node recorded in `run/node.json`.
    pub fn runtime(&self) -> Result<RuntimeInfo, ClusterError> {
        RuntimeInfo::read(&self.data()).map_err(ClusterError::io(format!(
            "read {}'s run/node.json",
            self.label
        )))
    }

    /// The QUIC address it listens on.
    pub fn listen_addr(&self) -> Result<std::net::SocketAddr, ClusterError> {
        self.runtime()?
            .listen_addr
            .ok_or_else(|| ClusterError::Setup(format!("{} has no QUIC listener", self.label)))
    }

    /// Its API URL.
    pub fn api_url(&self) -> Result<String, ClusterError> {
        Ok(format!("http://{}", self.runtime()?.api_addr))
    }

    /// Edits its config file (takes effect at the next start).
    pub fn configure(&self, edit: impl FnOnce(&mut Config)) -> Result<(), ClusterError> {
        let path = self.data().config();
        let mut config = Config::load(&path).map_err(|e| ClusterError::Setup(e.to_string()))?;
        edit(&mut config);
        std::fs::write(&path, config.to_toml())
            .map_err(ClusterError::io(format!("write {}", path.display())))
    }

    /// Keeps the ports the running node bound (API and QUIC) across its restarts: partners
    /// and standbys have its QUIC address, clients its API address.
    pub fn pin_ports(&self) -> Result<(), ClusterError> {
        let info = self.runtime()?;
        self.configure(|c| {
            c.api.addr = info.api_addr;
            if info.listen_addr.is_some() {
                c.transport.listen = info.listen_addr;
            }
        })
    }

    /// Runs a CLI command against this node.
    pub fn run(&self, args: &[&str]) -> Result<Output, ClusterError> {
        self.ttx.run(Some(&self.dir), args)
    }

    /// Runs a CLI command against this node; an error unless it succeeded.
    pub fn ok(&self, args: &[&str]) -> Result<String, ClusterError> {
        self.ttx.ok(Some(&self.dir), args)
    }

    /// Runs `ttx --json ARGS` against this node and parses its answer.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value, ClusterError> {
        let all = [&["--json"], args].concat();
        let text = self.ok(&all)?;
        serde_json::from_str(&text).map_err(|e| ClusterError::Answer {
            command: all.join(" "),
            detail: format!("not JSON ({e}): {text}"),
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

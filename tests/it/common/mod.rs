//! Shared helpers for the integration tests: real `ttx` processes on real data dirs in temp
//! directories, real ports (port 0), real signals.

#![allow(dead_code)]

pub mod browser;
pub mod web;

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ttx::config::Config;
use ttx::datadir::DataDir;
use ttx::node::RuntimeInfo;

/// The binary under test. `TTX_TEST_LOG` (e.g. `info`) sets the nodes' log filter and sends
/// each `ttx serve`'s log to `serve.log` in its temp dir, to read a failing test's node logs.
pub fn ttx() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ttx"));
    c.env_remove("TTX_DIR").env_remove("TTX_TOKEN").env(
        "TTX_LOG",
        std::env::var("TTX_TEST_LOG").unwrap_or("warn".into()),
    );
    c
}

/// What a CLI run printed and how it ended.
#[derive(Debug)]
pub struct Out {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success, got {self:?}");
        &self.stdout
    }
    /// Asserts a failure with `code` whose message contains `needle`.
    #[track_caller]
    pub fn fails(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "wrong exit code: {self:?}");
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {self:?}"
        );
    }
    /// Parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Runs a command to completion, feeding `stdin`.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Out {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ttx");
    let input = stdin.map(|s| s.to_vec()).unwrap_or_default();
    let mut pipe = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait ttx");
    let _ = writer.join();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A node's data dir in a temp dir, and its `ttx serve` process when started.
pub struct TestNode {
    /// Keeps the temp dir alive.
    pub tmp: tempfile::TempDir,
    /// The data dir.
    pub dir: PathBuf,
    child: Option<Child>,
    /// The last lines the running node wrote to stderr (read as it writes them, so a chatty
    /// node never blocks on a full pipe).
    log: LogTail,
}

/// The last [`LogTail::LINES`] lines of a node's stderr, drained by a thread of its own.
#[derive(Clone, Default)]
struct LogTail(Arc<Mutex<VecDeque<String>>>);

impl LogTail {
    const LINES: usize = 200;

    /// Drains `pipe` until the node closes it; returns the draining thread.
    fn drain(&self, pipe: std::process::ChildStderr) -> std::thread::JoinHandle<()> {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
                if l.len() == Self::LINES {
                    l.pop_front();
                }
                l.push_back(line);
            }
        })
    }

    fn text(&self) -> String {
        let l = self.0.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl TestNode {
    /// `ttx init` a new node for `site` (not started).
    pub fn init(site: &str) -> TestNode {
        Self::init_with(site, &[])
    }

    /// `ttx init DIR --site SITE` with more arguments (not started).
    pub fn init_with(site: &str, extra: &[&str]) -> TestNode {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join(site);
        let mut c = ttx();
        c.args(["init", dir.to_str().unwrap(), "--site", site])
            .args(extra);
        run(c, None).ok();
        TestNode {
            tmp,
            dir,
            child: None,
            log: LogTail::default(),
        }
    }

    /// A node on an existing data dir `dir` inside `tmp` (not started).
    pub fn at(tmp: tempfile::TempDir, dir: PathBuf) -> TestNode {
        TestNode {
            tmp,
            dir,
            child: None,
            log: LogTail::default(),
        }
    }

    /// The QUIC address from `run/node.json`.
    pub fn listen_addr(&self) -> SocketAddr {
        RuntimeInfo::read(&DataDir::new(&self.dir))
            .expect("node.json")
            .listen_addr
            .expect("listening")
    }

    /// `ttx init` and `ttx serve`.
    pub fn start_new(site: &str) -> TestNode {
        let mut n = Self::init(site);
        n.start();
        n
    }

    /// Edits the node's config file.
    pub fn configure(&self, edit: impl FnOnce(&mut Config)) {
        let path = DataDir::new(&self.dir).config();
        let mut config = Config::load(&path).expect("config");
        edit(&mut config);
        std::fs::write(&path, config.to_toml()).expect("write config");
    }

    /// Spawns `ttx serve DIR` (without waiting).
    pub fn spawn_serve(&self) -> Child {
        let mut c = ttx();
        c.args(["serve", self.dir.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if std::env::var("TTX_TEST_LOG").is_ok() {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.tmp.path().join("serve.log"))
                .expect("serve.log");
            c.stderr(log);
        } else {
            c.stderr(Stdio::piped());
        }
        c.spawn().expect("spawn ttx serve")
    }

    /// Starts the node and waits until it has recorded its addresses.
    pub fn start(&mut self) {
        let _ = std::fs::remove_file(DataDir::new(&self.dir).runtime_info());
        let mut child = self.spawn_serve();
        let pid = child.id();
        self.log = LogTail::default();
        // Piped unless TTX_TEST_LOG sends it to `serve.log`.
        let drained = child.stderr.take().map(|pipe| self.log.drain(pipe));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(info) = RuntimeInfo::read(&DataDir::new(&self.dir)) {
                if info.pid == pid {
                    break;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                if let Some(d) = drained {
                    let _ = d.join();
                }
                panic!("ttx serve exited with {status}: {}", self.log.text());
            }
            assert!(Instant::now() < deadline, "ttx serve did not start in time");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// The process id of the running node.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal to the node and waits for it to exit; returns its exit code.
    pub fn signal(&mut self, sig: &str) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let status = child.wait().expect("wait");
        status.code()
    }

    /// SIGTERM: drain and stop; asserts a clean exit.
    pub fn stop(&mut self) {
        let code = self.signal("-TERM");
        assert_eq!(
            code,
            Some(0),
            "ttx serve did not stop cleanly; its last lines:\n{}",
            self.log.text()
        );
    }

    /// The last lines the node (running or last run) wrote to stderr.
    pub fn log_tail(&self) -> String {
        self.log.text()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        self.signal("-KILL");
    }

    /// Runs a CLI command against this node.
    pub fn cli(&self, args: &[&str]) -> Out {
        self.cli_with(args, None, None)
    }

    /// Runs a CLI command with a token and standard input.
    pub fn cli_with(&self, args: &[&str], token: Option<&str>, stdin: Option<&[u8]>) -> Out {
        let mut c = ttx();
        c.env("TTX_DIR", &self.dir).args(args);
        if let Some(t) = token {
            c.env("TTX_TOKEN", t);
        }
        run(c, stdin)
    }

    /// The API address from `run/node.json`.
    pub fn api_addr(&self) -> SocketAddr {
        RuntimeInfo::read(&DataDir::new(&self.dir))
            .expect("node.json")
            .api_addr
    }

    /// The admin token.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(DataDir::new(&self.dir).admin_token())
            .unwrap()
            .trim()
            .to_string()
    }

    /// One raw HTTP request to the API: (status, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, serde_json::Value) {
        http(self.api_addr(), method, path, token, body)
    }

    /// The data dir's paths.
    pub fn data(&self) -> DataDir {
        DataDir::new(&self.dir)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One raw HTTP/1.1 request: (status, JSON body or Null).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, serde_json::Value) {
    http_with(addr, method, path, token, body, &[])
}

/// One raw HTTP/1.1 request with extra headers.
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    try_http_with(addr, method, path, token, body, headers).expect("connect api")
}

/// [`http_with`], or `None` when the connection is refused (a node that is gone): clients in
/// crash tests log that as a request without an answer.
pub fn try_http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Option<(u16, serde_json::Value)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    Some((
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    ))
}

/// Opens the store file read-only to check it directly.
pub fn open_db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        DataDir::new(dir).database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

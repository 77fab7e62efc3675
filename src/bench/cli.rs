//! `ttx bench cli`: from process start to acknowledged write, `ttx note N TEXT` against a
//! running node (in this process), with what the process adds made visible by baselines
//! measured in the same rounds:
//!
//! - the same request made from inside the bench process (read `run/node.json` and the token,
//!   a fresh ureq agent and connection, `POST /v1/tickets/N/notes`): no process start;
//! - `ttx --version`: the `ttx` binary started and exited, no request;
//! - `/bin/true`: the cost of spawning any process from here.
//!
//! The four are interleaved, one of each per round, so load from other processes on a shared
//! machine falls on all of them alike.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::node::BenchNode;
use super::{BenchError, Goal, Latencies, MachineInfo, Report, ScratchDir, Section, Target};
use crate::datadir::DataDir;
use crate::node::RuntimeInfo;

/// Target: median time from `ttx note` process start to its exit after the acknowledged write.
pub const TARGET_MEDIAN_MS: f64 = 10.0;

/// What `ttx bench cli` runs.
#[derive(Debug, Clone)]
pub struct CliBenchOptions {
    /// Timed rounds (one `ttx note`, one in-process request, one `ttx --version`, one `true`).
    pub runs: usize,
    /// The `ttx` binary to spawn (the running one for `ttx bench cli`).
    pub exe: PathBuf,
    /// Where the node's data dir goes (the system temp dir otherwise); removed afterwards.
    pub dir: Option<PathBuf>,
}

fn spawn_timed(lat: &mut Latencies, cmd: &mut Command) -> Result<(), BenchError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = lat
        .time(|| cmd.output())
        .map_err(BenchError::io(format!("spawn {:?}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(BenchError::Invalid(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The CLI's request without the process: what `ttx note` does once it is running.
fn note_in_process(dir: &Path, number: i64, text: &str) -> Result<(), BenchError> {
    let data = DataDir::new(dir);
    let info = RuntimeInfo::read(&data).map_err(BenchError::io("read run/node.json"))?;
    let token = std::fs::read_to_string(data.admin_token())
        .map_err(BenchError::io("read the admin token"))?;
    let agent = crate::cli::client::agent();
    let resp = agent
        .post(format!(
            "http://{}/v1/tickets/{number}/notes",
            info.api_addr
        ))
        .header("Authorization", format!("Bearer {}", token.trim()))
        .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
        .send_json(serde_json::json!({ "text": text, "shared": false, "at": null }))
        .map_err(|e| BenchError::Invalid(format!("in-process note: {e}")))?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().read_to_vec();
    if status != 200 {
        return Err(BenchError::Invalid(format!(
            "in-process note: HTTP {status}"
        )));
    }
    Ok(())
}

/// Runs the CLI benchmark and returns its report (missed targets are in the report).
pub fn run(opts: &CliBenchOptions) -> Result<Report, BenchError> {
    let scratch = ScratchDir::new(opts.dir.as_deref())?;
    let machine = MachineInfo::collect(scratch.path(), 200)?;
    let node = BenchNode::start(&scratch.path().join("node"))?;
    let number = node.open_tickets(1)?[0];
    let dir = node.dir.clone();
    let text = "BGP session to AS3356 flapped twice, dampened; watching";
    let true_bin = if Path::new("/bin/true").exists() {
        "/bin/true"
    } else {
        "true"
    };
    let note_cmd = || {
        let mut c = Command::new(&opts.exe);
        c.arg("note")
            .arg(number.to_string())
            .arg(text)
            .arg("--dir")
            .arg(&dir)
            .env_remove("TTX_TOKEN")
            .env_remove("TTX_DIR");
        c
    };
    let runs = opts.runs.max(1);
    let (mut cli, mut inproc, mut version, mut truth) = (
        Latencies::with_capacity(runs),
        Latencies::with_capacity(runs),
        Latencies::with_capacity(runs),
        Latencies::with_capacity(runs),
    );
    let mut warm = Latencies::default();
    for _ in 0..3 {
        spawn_timed(&mut warm, &mut note_cmd())?;
        note_in_process(&dir, number, text)?;
    }
    for _ in 0..runs {
        spawn_timed(&mut truth, &mut Command::new(true_bin))?;
        spawn_timed(&mut version, Command::new(&opts.exe).arg("--version"))?;
        spawn_timed(&mut cli, &mut note_cmd())?;
        inproc.time(|| note_in_process(&dir, number, text))?;
    }
    node.stop();

    let (c, i, v, t) = (
        cli.summary(),
        inproc.summary(),
        version.summary(),
        truth.summary(),
    );
    let ms = |us: f64| us / 1000.0;
    let mut s = Section::new(format!(
        "`ttx note` process start to acknowledged write ({runs} rounds)"
    ));
    s.target(
        "ttx note median",
        ms(c.p50_us),
        "ms",
        Target {
            goal: Goal::AtMost,
            value: TARGET_MEDIAN_MS,
        },
    );
    s.figure("ttx note p99", ms(c.p99_us), "ms");
    s.figure("in-process request median", ms(i.p50_us), "ms");
    s.figure("in-process request p99", ms(i.p99_us), "ms");
    s.figure("ttx --version median", ms(v.p50_us), "ms");
    s.figure("ttx --version p99", ms(v.p99_us), "ms");
    s.figure(format!("{true_bin} median"), ms(t.p50_us), "ms");
    s.figure(format!("{true_bin} p99"), ms(t.p99_us), "ms");
    s.figure(
        "ttx note - in-process, median",
        ms(c.p50_us - i.p50_us),
        "ms",
    );
    s.note(format!(
        "ttx note: {} note {number} TEXT --dir DIR, spawned and waited for (exit 0 after the \
         node's durable answer); the node runs in the bench process, synchronous = full",
        opts.exe.display()
    ));
    s.note(
        "in-process: read run/node.json and admin.token, fresh ureq agent and TCP connection, \
         the same POST with an Idempotency-Key, as the CLI does once started",
    );
    Ok(Report {
        bench: "cli".into(),
        machine,
        sections: vec![s],
    })
}

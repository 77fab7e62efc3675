//! `ttx demo` with the binary under test: `--exit` tells the whole story and exits 0 only when
//! every claim held, leaving no process and no temp dir behind; without `--exit` the nodes stay
//! up for a person to use (the printed `TTX_DIR` works) until SIGINT, which stops them and
//! removes the temp dir.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{run, ttx};

/// The temp dirs the demo left under `parent`.
fn left_in(parent: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// Whether process `pid` is still alive.
fn alive(pid: &str) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn ttx_demo_exit_tells_the_whole_story_and_every_claim_holds() {
    let parent = tempfile::tempdir().unwrap();
    let mut c = ttx();
    c.args(["demo", "--exit", "--temp", parent.path().to_str().unwrap()]);
    let out = run(c, None);
    assert_eq!(out.code, 0, "{out:?}");
    for claim in [
        "✓ noc-a/standby follows noc-a/primary",
        "✓ carrier-c's shared note reached telco-b and, through it, noc-a",
        "✓ nothing acknowledged was lost: each of the",
        "✓ telco-b's shared note reached noc-a's new primary",
        "✓ noc-a's ticket #1 is closed",
        "claims checked, all true",
    ] {
        assert!(
            out.stdout.contains(claim),
            "{claim:?} missing: {}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains('✗'), "{}", out.stdout);
    assert!(left_in(parent.path()).is_empty(), "the temp dir is left");
}

#[test]
fn ttx_demo_keeps_the_nodes_up_until_sigint_then_cleans_up() {
    let parent = tempfile::tempdir().unwrap();
    let mut c = ttx();
    c.args(["demo", "--temp", parent.path().to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut story = String::new();
    while !story.contains("Press Ctrl-C") {
        assert!(Instant::now() < deadline, "the story did not end: {story}");
        let Some(Ok(line)) = lines.next() else {
            panic!("the demo ended early: {story}");
        };
        story.push_str(&line);
        story.push('\n');
    }
    assert!(story.contains("all true"), "{story}");
    // The carrier's TTX_DIR as printed: a person can use it while the demo waits.
    let dir = story
        .lines()
        .find(|l| l.trim_start().starts_with("TTX_DIR=/") && l.ends_with("ttx status"))
        .and_then(|l| l.split("TTX_DIR=").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .expect("a TTX_DIR to try")
        .to_string();
    let mut status = ttx();
    status.env("TTX_DIR", &dir).args(["--json", "status"]);
    let answer = run(status, None).json();
    assert_eq!(answer["site"], "carrier-c", "{answer}");
    let pid = std::fs::read_to_string(format!("{dir}/run/node.json")).unwrap();
    let pid = serde_json::from_str::<serde_json::Value>(&pid).unwrap()["pid"].to_string();
    assert!(alive(&pid));

    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "the demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
    assert!(!alive(&pid), "the carrier's node outlived the demo");
    assert!(left_in(parent.path()).is_empty(), "the temp dir is left");
}

//! The CLI as NOC operators use it, through the real binary: RT's habits (reopen, steal,
//! merge, dependencies), timers and alerts, search over header fields, lists that filter and
//! sort, write answers that say what changed, and the output and input conventions.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{run, ttx, TestNode};

/// Polls `f` until it returns `Some`, for at most 20 s.
fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not met in 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tickets_follow_rts_habits() {
    let node = TestNode::start_new("noc-a");
    node.cli(&["new", "core1 down", "--problem-start", "-30m"])
        .ok();
    node.cli(&["new", "x", "--problem-start", "+1h"])
        .fails(2, "is in the future");
    // Write answers say what changed.
    let out = node.cli(&["set", "1", "status=pending"]).ok().to_string();
    assert_eq!(out, "TT 1: status new -> pending\n");
    let out = node.cli(&["set", "1", "status=pending"]).ok().to_string();
    assert_eq!(out, "TT 1: nothing changed (pending)\n");

    // Owners are operators, or marked external on purpose.
    node.cli(&["set", "1", "owner=nobody"])
        .fails(2, "owner \"nobody\" is not an operator of this site");
    node.cli(&["new", "y", "--owner", "nobody"])
        .fails(2, "is not an operator");
    let out = node
        .cli(&["set", "1", "owner=ext:telco-bob"])
        .ok()
        .to_string();
    assert_eq!(out, "TT 1: set owner: (none) -> ext:telco-bob\n");

    // take of someone else's ticket needs --steal.
    node.cli(&["take", "1"]).fails(
        4,
        "ticket 1 is owned by ext:telco-bob: take it anyway with `ttx take 1 --steal`",
    );
    let out = node.cli(&["take", "1", "--steal"]).ok().to_string();
    assert!(
        out.starts_with("TT 1: set owner: ext:telco-bob -> admin"),
        "{out}"
    );

    // --depends-on is enforced on resolve.
    node.cli(&["new", "telco circuit fault"]).ok();
    node.cli(&["link", "1", "--depends-on", "2"]).ok();
    node.cli(&["resolve", "1", "--resolution", "fixed"]).fails(
        4,
        "ticket 1 depends on ticket 2 (new) still open: resolve it first",
    );
    node.cli(&["resolve", "2", "--resolution", "telco fixed it"])
        .ok();
    let out = node
        .cli(&["resolve", "1", "--resolution", "fixed"])
        .ok()
        .to_string();
    assert_eq!(out, "TT 1: status pending -> resolved\n");
    // Durations count from the problem start, 30 minutes before the ticket.
    let t = node.cli(&["--json", "show", "1"]).json()["ticket"].clone();
    assert!(
        t["resolution"]["total_ms"].as_i64().unwrap() >= 30 * 60_000,
        "{t}"
    );

    // The chart of the real binary is in sections; durations say where they count from.
    let chart = node.cli(&["show", "1", "--no-pager"]).ok().to_string();
    for title in ["\nHeader\n", "\nLinks\n", "\nHistory\n", "\nResolution\n"] {
        assert!(chart.contains(title), "{title}: {chart}");
    }
    assert!(chart.contains("\nDurations\n  total "), "{chart}");
    assert!(chart.contains("(from problem start)"), "{chart}");
    // A closed ticket can be reopened (the docs' close-then-reopen example).
    node.cli(&["close", "1", "--checked-by", "admin"]).ok();
    let out = node
        .cli(&["reopen", "1", "--reason", "flapping again"])
        .ok()
        .to_string();
    assert_eq!(out, "TT 1: status closed -> open\n");

    // link --merged-into merges: the duplicate leaves the open list and points at the survivor.
    node.cli(&["new", "core1 down again (dup)"]).ok();
    let out = node
        .cli(&["link", "3", "--merged-into", "1"])
        .ok()
        .to_string();
    assert!(out.contains("linked merged-into TT 1"), "{out}");
    assert!(out.contains("status resolved -> closed"), "{out}");
    let open: Vec<i64> = node
        .cli(&["--json", "list"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_i64().unwrap())
        .collect();
    assert_eq!(open, vec![1]);
    let chart = node.cli(&["show", "3"]).ok().to_string();
    assert!(chart.contains("merged-into   TT 1"), "{chart}");
    assert!(chart.contains("merged into TT 1"), "{chart}");
    assert!(node
        .cli(&["show", "1"])
        .ok()
        .contains("<- merged-into TT 3"));
    node.cli(&["link", "3", "--merged-into", "2"])
        .fails(4, "already merged into 1");
}

#[test]
fn timers_are_listed_cancelled_snoozed_and_acknowledged() {
    let node = TestNode::start_new("noc-a");
    node.cli(&["new", "waiting on telco"]).ok();
    node.cli(&["timer", "1", "--in", "1s", "call telco"]).ok();
    node.cli(&["timer", "1", "--in", "1h", "check again"]).ok();
    node.cli(&["timer", "1", "--at", "+2h", "escalate"]).ok();
    // A relative time for --at is a time, not a clap error.
    node.cli(&["timer", "1", "--at", "-15m", "too late"])
        .fails(2, "is not in the future");
    let timers = node.cli(&["--json", "timers", "1"]).json();
    let ordinals: Vec<i64> = timers
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ordinal"].as_i64().unwrap())
        .collect();
    assert_eq!(ordinals, vec![1, 2, 3]);
    let out = node.cli(&["cancel-timer", "1", "2"]).ok().to_string();
    assert_eq!(out, "TT 1: timer cancelled (cancelled)\n");
    node.cli(&["cancel-timer", "1", "9"])
        .fails(3, "ticket 1 has no timer \"9\"");
    let alerts = eventually(|| {
        let a = node.cli(&["--json", "alerts"]).json();
        (!a.as_array().unwrap().is_empty()).then_some(a)
    });
    assert_eq!(alerts[0]["text"], "call telco");
    assert!(node
        .cli(&["alerts"])
        .ok()
        .contains("TT 1 timer 1  call telco"));
    node.cli(&["cancel-timer", "1", "1"])
        .fails(4, "already went off: acknowledge it");
    let out = node.cli(&["ack", "1"]).ok().to_string();
    assert_eq!(out, "TT 1: alert acknowledged\n");
    // Acknowledged alerts leave `ttx alerts`; --all still shows them.
    assert_eq!(
        node.cli(&["--json", "alerts"]).json(),
        serde_json::json!([])
    );
    assert_eq!(
        node.cli(&["--json", "alerts", "--all"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    node.cli(&["ack", "1"]).fails(4, "no unacknowledged alert");
    let out = node
        .cli(&["snooze", "1", "3", "--in", "30m"])
        .ok()
        .to_string();
    assert!(out.starts_with("TT 1: timer snoozed to "), "{out}");
    // Resolving ends the pending timers.
    node.cli(&["resolve", "1", "--resolution", "telco fixed it"])
        .ok();
    let text = node.cli(&["timers", "1"]).ok().to_string();
    let states: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(states, vec!["acked", "cancelled", "cancelled"], "{text}");
    let chart = node.cli(&["show", "1"]).ok().to_string();
    assert!(
        chart.contains("timer cancelled (ticket resolved): escalate"),
        "{chart}"
    );
    node.cli(&["snooze", "1", "3", "--in", "5m"])
        .fails(4, "timer 3 of ticket 1 was cancelled");
}

#[test]
fn search_covers_the_header_fields() {
    let node = TestNode::start_new("noc-a");
    node.cli(&[
        "new",
        "packet loss to Paris",
        "--circuit",
        "LON-PAR-3",
        "--nodes",
        "core1.lon,edge4.par",
        "--network",
        "AS65010",
    ])
    .ok();
    node.cli(&["new", "unrelated"]).ok();
    node.cli(&["set", "2", "cf.vendor=acmeoptics"]).ok();
    for (q, number) in [
        ("LON-PAR-3", 1),
        ("edge4.par", 1),
        ("AS65010", 1),
        ("acmeoptics", 2),
    ] {
        let hits = node.cli(&["--json", "search", q]).json();
        assert_eq!(hits.as_array().unwrap().len(), 1, "{q}: {hits}");
        assert_eq!(hits[0]["ticket"]["number"], number, "{q}");
        assert_eq!(hits[0]["matched"], "header", "{q}");
    }
    node.cli(&[
        "resolve",
        "1",
        "--resolution",
        "reseated",
        "--component",
        "xe-0/0/9",
    ])
    .ok();
    let hits = node.cli(&["search", "xe-0/0/9"]).ok().to_string();
    assert!(hits.contains("packet loss to Paris"), "{hits}");
    // A changed field leaves the index: the old value no longer matches.
    node.cli(&["set", "2", "cf.vendor=othervendor"]).ok();
    assert_eq!(node.cli(&["search", "acmeoptics"]).ok(), "no matches\n");
    assert!(node
        .cli(&["search", "othervendor"])
        .ok()
        .contains("unrelated"));
}

#[test]
fn list_filters_sorts_and_fits_the_terminal() {
    let node = TestNode::start_new("noc-a");
    node.cli(&["new", "p3 general"]).ok();
    node.cli(&[
        "new",
        "p1 backbone",
        "-p",
        "1",
        "-q",
        "backbone",
        "--circuit",
        "AMS-LON-7",
    ])
    .ok();
    node.cli(&[
        "new",
        "a very long subject that a narrow terminal cannot show whole, not by far",
        "--severity",
        "1",
        "--nodes",
        "core9.fra",
        "--type",
        "engineering",
    ])
    .ok();
    node.cli(&["set", "3", "cf.change=CHG-1"]).ok();
    let numbers = |args: &[&str]| -> Vec<i64> {
        let mut a = vec!["--json", "list"];
        a.extend_from_slice(args);
        node.cli(&a)
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["number"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(numbers(&[]), vec![2, 1, 3]);
    assert_eq!(numbers(&["-p", "1"]), vec![2]);
    assert_eq!(numbers(&["-q", "backbone"]), vec![2]);
    assert_eq!(numbers(&["--severity", "1"]), vec![3]);
    assert_eq!(numbers(&["-t", "engineering"]), vec![3]);
    assert_eq!(numbers(&["--circuit", "AMS-LON-7"]), vec![2]);
    assert_eq!(numbers(&["--node-name", "core9.fra"]), vec![3]);
    assert_eq!(numbers(&["--cf", "change=CHG-1"]), vec![3]);
    assert_eq!(numbers(&["--sort", "age"]), vec![1, 2, 3]);
    assert_eq!(numbers(&["--sort", "updated"])[0], 3);
    assert_eq!(numbers(&["--updated-since", "-1h"]).len(), 3);
    assert!(numbers(&["--created-since", "+1m"]).is_empty());
    node.cli(&["list", "-n", "0"])
        .fails(2, "limit must be 1 to 1000, got 0");
    node.cli(&["list", "-p", "7"])
        .fails(2, "priority must be 1 to 4");
    // Columns fit the terminal: long subjects are cut with an ellipsis.
    let mut c = ttx();
    c.env("TTX_DIR", &node.dir).env("COLUMNS", "80").arg("list");
    let text = run(c, None).ok().to_string();
    let mut lines = text.lines();
    let head = lines.next().unwrap();
    for w in ["AGE", "UPDATED", "NEXT DUE", "SUBJECT"] {
        assert!(head.contains(w), "{head}");
    }
    for l in text.lines() {
        assert!(l.chars().count() <= 80, "too wide: {l:?}");
    }
    assert!(text.contains('…'), "{text}");
}

#[test]
fn output_and_input_follow_unix_conventions() {
    let node = TestNode::start_new("noc-a");
    node.cli(&["new", "core1 down"]).ok();
    // A note that starts with '-' is a note.
    node.cli(&["note", "1", "-42 dBm on xe-0/0/1"]).ok();
    assert!(node
        .cli(&["show", "1"])
        .ok()
        .contains("-42 dBm on xe-0/0/1"));
    // A closed pipe ends quietly: `ttx show 1 | head -c 1` with a chart larger than the pipe.
    let big = "traceroute hop\n".repeat(20_000);
    node.cli_with(&["note", "1", "-"], None, Some(big.as_bytes()))
        .ok();
    let mut child = ttx()
        .env("TTX_DIR", &node.dir)
        .args(["show", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Global options in any position.
    let dir = node.dir.to_str().unwrap();
    for args in [
        vec!["--dir", dir, "status"],
        vec!["status", "--dir", dir],
        vec!["--json", "status", "--dir", dir],
    ] {
        run(
            {
                let mut c = ttx();
                c.args(&args);
                c
            },
            None,
        )
        .ok();
    }
    // --json errors have one shape, clap's included.
    let out = node.cli(&["--json", "list", "--bogus"]);
    assert_eq!(out.code, 2);
    let e: serde_json::Value = serde_json::from_str(&out.stderr).expect(&out.stderr);
    assert_eq!(e["error"]["code"], "invalid");
    assert_eq!(e["error"]["exit_code"], 2);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("--bogus"),
        "{e}"
    );
    let out = node.cli(&["--json", "show", "99"]);
    let e: serde_json::Value = serde_json::from_str(&out.stderr).expect(&out.stderr);
    assert_eq!(e["error"]["code"], "not_found");
    assert_eq!(e["error"]["exit_code"], 3);
    assert_eq!(e["error"]["message"], "no ticket 99");

    // Completions and man pages come from the clap definitions.
    let mut c = ttx();
    c.args(["completions", "bash"]);
    assert!(run(c, None).ok().contains("cancel-timer"));
    let tmp = tempfile::tempdir().unwrap();
    let mut c = ttx();
    c.args(["man", tmp.path().to_str().unwrap()]);
    run(c, None).ok();
    for page in ["ttx.1", "ttx-new.1", "ttx-peer-add.1"] {
        assert!(tmp.path().join(page).exists(), "{page}");
    }
    // --help lists fields, time formats, environment variables and an example.
    let mut c = ttx();
    c.arg("--help");
    let help = run(c, None).ok().to_string();
    for w in [
        "TTX_DIR",
        "TTX_API",
        "TTX_TOKEN",
        "TTX_LOG",
        "tomorrow 09:00",
        "Example:",
    ] {
        assert!(help.contains(w), "--help lacks {w}");
    }
    let mut c = ttx();
    c.args(["set", "--help"]);
    let help = run(c, None).ok().to_string();
    for w in ["next-action", "cf.NAME", "Example:"] {
        assert!(help.contains(w), "set --help lacks {w}");
    }
}

#[test]
fn every_operator_reaches_the_node_with_their_own_url_and_token() {
    let node = TestNode::start_new("noc-a");
    let token = node
        .cli(&["--json", "operator", "add", "oscar", "--role", "operator"])
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("oscar.token");
    std::fs::write(&token_file, &token).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = format!("http://{}", node.api_addr());
    let as_oscar = |args: &[&str]| {
        let mut c = ttx();
        c.env("XDG_CONFIG_HOME", home.path()).args(args);
        run(c, None)
    };
    let out = as_oscar(&[
        "--api",
        &url,
        "--token-file",
        token_file.to_str().unwrap(),
        "--json",
        "new",
        "by oscar",
    ]);
    assert_eq!(out.json()["number"], 1);
    // A profile of the per-user config, as ~/.rtrc or a kubectl context.
    std::fs::create_dir_all(home.path().join("ttx")).unwrap();
    std::fs::write(
        home.path().join("ttx/config.toml"),
        format!(
            "default = \"noc-a\"\n[profiles.noc-a]\napi = \"{url}\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    )
    .unwrap();
    let chart = as_oscar(&["--json", "show", "1"]).json();
    assert_eq!(chart["ticket"]["opened_by"], "oscar");
    as_oscar(&["--profile", "lab", "list"]).fails(3, "no profile \"lab\"");
    // A token file others can read is refused.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    as_oscar(&["list"]).fails(5, "is readable by others (mode 644): chmod 600");
    as_oscar(&["--api", "https://127.0.0.1:1", "list"]).fails(2, "it must start with http://");
    // No node on DIR, and a DIR that does not exist, are told apart.
    let mut stopped = TestNode::init("noc-b");
    let _ = &mut stopped;
    let mut c = ttx();
    c.args(["--dir", stopped.dir.to_str().unwrap(), "list"]);
    run(c, None).fails(3, "no node is running on");
    let mut c = ttx();
    c.args(["--dir", "/nonexistent/ttx", "list"]);
    run(c, None).fails(3, "no data dir /nonexistent/ttx");
    // Another Unix user cannot read the data dir: the message says so (not "no node").
    if std::process::Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout
        == b"0\n"
    {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_ttx"))
            .args(["--dir", node.dir.to_str().unwrap(), "list"])
            .env("TTX_LOG", "warn")
            .env("HOME", "/nonexistent");
        let out = run(c, None);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("(permission denied)"), "{out:?}");
        assert!(
            out.stderr.contains("--api URL and --token-file FILE"),
            "{out:?}"
        );
    }
}

#[test]
fn serve_answers_in_json_and_refuses_an_invalid_log_filter() {
    use std::io::BufRead;
    let node = TestNode::init("noc-a");
    let mut c = ttx();
    c.env("TTX_LOG", "ttx=loud")
        .args(["serve", node.dir.to_str().unwrap()]);
    run(c, None).fails(2, "invalid TTX_LOG \"ttx=loud\"");
    let mut child = ttx()
        .env("TTX_LOG", "info")
        .args(["--json", "serve", node.dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "serve ended: {text}");
        text.push_str(&line);
        if line == "}\n" {
            break;
        }
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["site"], "noc-a");
    assert_eq!(v["api_addr"], node.api_addr().to_string());
    assert!(v["listen_addr"].is_null(), "{v}");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{err}");
    // Logs name addresses, never Rust's Debug of an absent one.
    assert!(err.contains("listen_addr=off"), "{err}");
    assert!(!err.contains("None"), "{err}");
}

#[test]
fn show_folds_long_notes_and_the_editor_writes_a_note() {
    let node = TestNode::start_new("noc-a");
    node.cli(&["new", "-p", "1", "core1 down"]).ok();
    let paste: String = (1..=100)
        .map(|i| format!("hop {i} 192.0.2.{i}\n"))
        .collect();
    node.cli_with(&["note", "1", "-"], None, Some(paste.as_bytes()))
        .ok();
    let folded = node.cli(&["show", "1"]).ok().to_string();
    assert!(folded.contains("hop 20 192.0.2.20"), "{folded}");
    assert!(!folded.contains("hop 21 "), "{folded}");
    assert!(
        folded.contains("… 80 more lines (`ttx show 1 --full` shows them)"),
        "{folded}"
    );
    // No colour into a pipe, even for a priority 1 ticket.
    assert!(!folded.contains('\x1b'), "{folded}");
    let full = node
        .cli(&["show", "1", "--full", "--no-pager"])
        .ok()
        .to_string();
    assert!(full.contains("hop 100 192.0.2.100"), "{full}");
    // Long lines wrap at the terminal's width.
    node.cli(&["note", "1", &"word ".repeat(60)]).ok();
    let mut c = ttx();
    c.env("TTX_DIR", &node.dir)
        .env("COLUMNS", "60")
        .args(["show", "1"]);
    let text = run(c, None).ok().to_string();
    let history = text.split("\nHistory\n").nth(1).unwrap();
    let words: Vec<&str> = history
        .lines()
        .filter(|l| l.starts_with("      word"))
        .collect();
    assert!(words.len() >= 5, "{history}");
    assert!(words.iter().all(|l| l.chars().count() <= 60), "{history}");

    // On a terminal, a note without TEXT opens $EDITOR; '#' lines are left out.
    let tmp = tempfile::tempdir().unwrap();
    let editor = tmp.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\necho 'called the carrier, ticket 991' >> \"$1\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cmd = format!("{} note 1", env!("CARGO_BIN_EXE_ttx"));
    let mut c = std::process::Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"])
        .env("TTX_DIR", &node.dir)
        .env("EDITOR", &editor)
        .env_remove("VISUAL")
        .env("TTX_LOG", "warn");
    let out = run(c, None);
    assert_eq!(out.code, 0, "{out:?}");
    let chart = node.cli(&["--json", "show", "1"]).json();
    let last = chart["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["event"]["kind"]["NoteAdded"]["text"],
        "called the carrier, ticket 991"
    );
    // Without a terminal, leaving TEXT out is an error, not a hang.
    node.cli(&["note", "1"])
        .fails(2, "no note text: give TEXT, or -");
}

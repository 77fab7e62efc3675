//! `ttx bench api|cli|transport|web|exchange|clone` through the real binary at tiny sizes: the JSON report has
//! the expected sections and figures. No timing is asserted (the machine may be busy).

use crate::common::{run, ttx};

/// Runs `ttx --json bench ARGS` in a temp scratch dir and returns the report.
fn bench(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = ttx();
    cmd.arg("--json")
        .arg("bench")
        .args(args)
        .arg("--dir")
        .arg(dir.path());
    run(cmd, None).json()
}

/// Every figure's name and the report's shape: bench name, machine, sections with figures
/// that are finite numbers with a unit, and ok set exactly when a target is.
fn figures(report: &serde_json::Value, bench_name: &str) -> Vec<(String, f64)> {
    assert_eq!(report["bench"], bench_name);
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["fdatasync"]["p50_us"].is_number());
    let mut out = Vec::new();
    for s in report["sections"].as_array().unwrap() {
        assert!(s["title"].is_string());
        for f in s["figures"].as_array().unwrap() {
            let value = f["value"].as_f64().unwrap_or_else(|| panic!("{f}"));
            assert!(f["unit"].is_string(), "{f}");
            assert_eq!(f["target"].is_null(), f["ok"].is_null(), "{f}");
            out.push((f["name"].as_str().unwrap().to_string(), value));
        }
    }
    out
}

fn has(figs: &[(String, f64)], name: &str) -> f64 {
    figs.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no figure {name:?} in {figs:?}"))
        .1
}

#[test]
fn bench_api_reports_api_direct_and_sequential_figures() {
    let r = bench(&[
        "api",
        "--clients",
        "3",
        "--notes",
        "60",
        "--sequential",
        "10",
    ]);
    let f = figures(&r, "api");
    assert_eq!(has(&f, "api notes"), 60.0);
    for name in [
        "api notes/s",
        "api note latency p99",
        "direct notes/s (Writer::write_blocking)",
        "api / direct",
        "direct note latency p50",
    ] {
        has(&f, name);
    }
    let seq = &r["sections"][1]["figures"][0];
    assert_eq!(seq["name"], "api note latency p50");
    assert_eq!(seq["target"]["goal"], "at_most");
}

#[test]
fn bench_cli_reports_the_process_and_its_baselines() {
    let r = bench(&["cli", "--runs", "3"]);
    let f = figures(&r, "cli");
    for name in [
        "ttx note median",
        "ttx note p99",
        "in-process request median",
        "ttx --version median",
        "/bin/true median",
    ] {
        has(&f, name);
    }
    assert_eq!(r["sections"][0]["figures"][0]["target"]["value"], 10.0);
}

#[test]
fn bench_transport_holds_peers_from_a_child_process() {
    let r = bench(&[
        "transport",
        "--peers",
        "10",
        "--hold-secs",
        "0",
        "--iterations",
        "10",
        "--connects",
        "3",
        "--throughput-secs",
        "0.1",
        "--rounds",
        "1",
        "--in-flight",
        "4",
    ]);
    let f = figures(&r, "transport");
    assert_eq!(has(&f, "peers held (server side)"), 10.0);
    has(&f, "client process RSS");
    has(&f, "endpoint / raw quinn");
    has(&f, "new connection (mTLS + Hello) p50");
}

#[test]
fn bench_web_reports_pages_baselines_sizes_and_live_updates() {
    let r = bench(&[
        "web",
        "--tickets",
        "200",
        "--iterations",
        "20",
        "--live-rounds",
        "5",
    ]);
    let f = figures(&r, "web");
    for name in [
        "at a glance p99",
        "ticket page (101 events) p99",
        "baseline: API chart JSON p50",
        "baseline: chart read alone p50",
        "live: ack to visible at a glance p99",
    ] {
        assert!(has(&f, name) > 0.0, "{name}");
    }
    let page = has(&f, "largest ticket page");
    assert!(page > 10.0, "a 101-event page is tens of KB, got {page} KB");
}

#[test]
fn bench_exchange_reports_latency_throughput_backlog_and_baselines() {
    let r = bench(&[
        "exchange",
        "--samples",
        "5",
        "--referrals",
        "20",
        "--notes",
        "30",
        "--backlog",
        "40",
        "--writers",
        "4",
    ]);
    let f = figures(&r, "exchange");
    has(&f, "refer to ack p50");
    has(&f, "refer to ack p99");
    has(&f, "floor (ping + 3 commits) p50");
    assert!(has(&f, "referrals/s (decided, sent, taken, acked)") > 0.0);
    assert!(has(&f, "shared notes/s") > 0.0);
    has(&f, "40 queued notes drained");
    // The same-run baselines the figures are ratios of, and the load they ran under.
    assert!(has(&f, "baseline: raw quinn, the same messages' bytes") > 0.0);
    assert!(
        has(
            &f,
            "baseline: bare rusqlite, the same inserts, 1 commit per 1,024"
        ) > 0.0
    );
    assert!(has(&f, "shared notes/s / raw quinn") > 0.0);
    assert!(has(&f, "drain rate / bare rusqlite (same inserts)") > 0.0);
    if std::path::Path::new("/proc/loadavg").exists() {
        assert!(r["machine"]["load_average"].is_array(), "{}", r["machine"]);
        has(&f, "load average (1 min) at the end of this");
    }
}

#[test]
fn bench_clone_times_a_clone_process_against_vacuum_into_and_a_raw_copy() {
    let r = bench(&["clone", "--tickets", "300"]);
    let f = figures(&r, "clone");
    for name in [
        "ttx standby clone",
        "baseline: VACUUM INTO of the same store",
        "baseline: raw copy of the file (+ fsync)",
        "snapshot",
    ] {
        assert!(has(&f, name) > 0.0, "{name}");
    }
}

//! Trust changed by command on a running node, each applied with a reload and no restart:
//! `ttx pki deny|undeny`, `ttx pki crl install`, `ttx pki trust add|remove`, a CRL copied by
//! hand, and `[transport] listen` turned on by a reload. Each bad input is refused with a clear
//! message and leaves the files as they were.

use std::path::Path;

use crate::common::{run, ttx, TestNode};
use crate::federation::{add_peer, hub_and_two_partners, pki, spki, wait_ping_ok, Ca};

fn key(n: &TestNode) -> String {
    spki(&n.dir.join("tls/node.crt"))
}

/// Every file under `DIR/tls`, with its bytes: what "nothing changed" compares.
fn tls_files(n: &TestNode) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&n.dir.join("tls"), &mut out);
    out.sort();
    out
}

/// Pings until the answer's exit code is `code` (bounded): a reload reaches new connections
/// at once, but a live connection may be in use for one more ping.
fn wait_ping_code(n: &TestNode, site: &str, code: i32) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = n.cli(&["peer", "ping", site]);
        if out.code == code {
            return out.stderr;
        }
        assert!(std::time::Instant::now() < deadline, "{out:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn deny_and_undeny_a_key_by_command() {
    let ca = Ca::new("eu");
    let mut a = ca.node("eu", "noc-a");
    let c = ca.node("eu", "carrier-c");
    add_peer(&a, &c, "carrier-c", &[]);
    add_peer(&c, &a, "noc-a", &[]);
    c.cli(&["peer", "ping", "noc-a"]).ok();
    let c_key = key(&c);
    let out = a.cli(&["pki", "deny", &c_key]).ok().to_string();
    assert!(out.starts_with(&format!("denied: {c_key}\n")), "{out}");
    assert!(
        out.contains("reloaded the running node: 1 CA(s), 0 CRL(s), 1 denied key(s)"),
        "{out}"
    );
    assert!(out.contains("closed ttx://eu/carrier-c/primary"), "{out}");
    let why = wait_ping_code(&c, "noc-a", 4);
    assert!(why.contains("our key is on its deny list"), "{why}");

    // Bad input: clear, non-zero, nothing changed.
    let before = tls_files(&a);
    a.cli(&["pki", "deny", &c_key]).fails(
        4,
        &format!("key {c_key} is already denied: nothing changed"),
    );
    a.cli(&["pki", "deny", "abc"]).fails(2, "64 hex");
    a.cli(&["pki", "deny", &key(&a)]).fails(
        4,
        "refused, nothing changed: with it, this node's trust would not load",
    );
    a.cli(&["pki", "undeny", &"ab".repeat(32)])
        .fails(3, "is not denied: nothing changed");
    assert_eq!(tls_files(&a), before);

    a.cli(&["pki", "undeny", &c_key]).ok();
    wait_ping_code(&c, "noc-a", 0);
    // On a stopped node the change waits for the start.
    a.stop();
    let out = a.cli(&["pki", "deny", &c_key]).ok().to_string();
    assert!(out.contains("no node is running on"), "{out}");
    a.start();
    add_peer(&c, &a, "noc-a", &[]);
    c.cli(&["peer", "ping", "noc-a"])
        .fails(4, "our key is on its deny list");
}

#[test]
fn crls_are_installed_by_command_and_a_copied_one_is_used() {
    let ca = Ca::new("eu");
    let (a, b, c) = hub_and_two_partners(&ca);
    let b_cert = b.dir.join("tls/node.crt");
    pki(&["revoke", "--ca", ca.path(), b_cert.to_str().unwrap()]).ok();
    let crl = ca.path().to_string() + "/../eu.crl";
    pki(&["crl", "--ca", ca.path(), "--out", &crl]).ok();

    // Bad input first: nothing changes.
    let before = tls_files(&a);
    let junk = a.tmp.path().join("junk.crl");
    std::fs::write(&junk, "not a crl\n").unwrap();
    a.cli(&["pki", "crl", "install", junk.to_str().unwrap()])
        .fails(2, "invalid crl: no PEM X509 CRL block found");
    a.cli(&["pki", "crl", "install", "/nonexistent.crl"])
        .fails(3, "does not exist");
    let other = Ca::new("eu");
    let other_crl = a.tmp.path().join("other.crl");
    pki(&[
        "crl",
        "--ca",
        other.path(),
        "--out",
        other_crl.to_str().unwrap(),
    ])
    .ok();
    a.cli(&["pki", "crl", "install", other_crl.to_str().unwrap()])
        .fails(4, "is not signed by any ca this node trusts");
    assert_eq!(tls_files(&a), before);

    let out = a.cli(&["pki", "crl", "install", &crl]).ok().to_string();
    assert!(
        out.starts_with("crl installed: CN=ttx federation CA eu"),
        "{out}"
    );
    assert!(
        out.contains("1 CRL(s)") && out.contains("closed ttx://eu/telco-b/primary"),
        "{out}"
    );
    b.cli(&["peer", "ping", "noc-a"])
        .fails(4, "it holds a CRL that revokes our certificate");
    c.cli(&["peer", "ping", "noc-a"]).ok();
    a.cli(&["pki", "crl", "install", &crl])
        .fails(4, "this crl is already installed");

    // A CRL copied into tls/crl/ by hand, no config edit: the reload uses it.
    std::fs::create_dir_all(c.dir.join("tls/crl")).unwrap();
    std::fs::copy(&crl, c.dir.join("tls/crl/by-hand.pem")).unwrap();
    let reload = c.cli(&["--json", "pki", "reload"]).json();
    assert_eq!(reload["crls"], 1, "{reload}");
}

#[test]
fn cas_are_trusted_and_removed_by_command() {
    let ca = Ca::new("eu");
    let second = Ca::new("eu");
    let a = ca.node("eu", "noc-a");
    let e = second.node("eu", "telco-e");
    add_peer(&a, &e, "telco-e", &[]);
    add_peer(&e, &a, "noc-a", &[]);
    e.cli(&["peer", "ping", "noc-a"]).fails(
        4,
        "refused its certificate: its certificate is not signed by any CA",
    );
    // E trusts A's CA (E uses no CRLs: the CA alone will do); now A refuses E.
    e.cli(&["pki", "trust", "add", ca.cert().to_str().unwrap()])
        .ok();
    e.cli(&["peer", "ping", "noc-a"])
        .fails(4, "refused by the peer: it does not trust our certificate");
    // This node uses CRLs: a new CA needs its CRL in the same step.
    let crl = a.tmp.path().join("eu.crl");
    pki(&["crl", "--ca", ca.path(), "--out", crl.to_str().unwrap()]).ok();
    a.cli(&["pki", "crl", "install", crl.to_str().unwrap()])
        .ok();
    let second_cert = second.cert();
    let second_cert = second_cert.to_str().unwrap();
    let before = tls_files(&a);
    a.cli(&["pki", "trust", "add", second_cert]).fails(
        4,
        "refused, nothing changed: with it, this node's trust would not load: trusted ca",
    );
    let junk = a.tmp.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = a.cli(&["pki", "trust", "add", junk.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    let us = Ca::new("us");
    a.cli(&["pki", "trust", "add", us.cert().to_str().unwrap()])
        .fails(4, "federation \"us\"");
    assert_eq!(tls_files(&a), before);

    let second_crl = a.tmp.path().join("second.crl");
    pki(&[
        "crl",
        "--ca",
        second.path(),
        "--out",
        second_crl.to_str().unwrap(),
    ])
    .ok();
    let out = a
        .cli(&[
            "pki",
            "trust",
            "add",
            second_cert,
            "--crl",
            second_crl.to_str().unwrap(),
        ])
        .ok()
        .to_string();
    assert!(out.contains("ca trusted: CN=ttx federation CA eu"), "{out}");
    assert!(out.contains("2 CA(s), 2 CRL(s)"), "{out}");
    wait_ping_code(&e, "noc-a", 0);
    a.cli(&["pki", "trust", "add", second_cert])
        .fails(4, "is already trusted: nothing changed");

    // Removing a CA: its peers are cut off; the CA of this node's own certificate stays.
    let before = tls_files(&a);
    a.cli(&["pki", "trust", "remove", ca.cert().to_str().unwrap()])
        .fails(4, "refused, nothing changed");
    assert_eq!(tls_files(&a), before);
    let out = a
        .cli(&["pki", "trust", "remove", second_cert])
        .ok()
        .to_string();
    assert!(
        out.contains("ca removed: ") && out.contains("1 CA(s), 1 CRL(s)"),
        "{out}"
    );
    wait_ping_code(&e, "noc-a", 4);
    a.cli(&["pki", "trust", "remove", second_cert])
        .fails(3, "is not trusted");
}

#[test]
fn listening_turned_on_by_a_reload_needs_no_restart() {
    let ca = Ca::new("eu");
    let mut a = TestNode::init_with("noc-a", &["--federation", "eu"]);
    let dir = a.dir.to_str().unwrap().to_string();
    ca.issue(&a, "noc-a", "primary");
    a.start();
    assert!(a.cli(&["--json", "status"]).json()["listen_addr"].is_null());
    a.configure(|cfg| cfg.transport.listen = Some("127.0.0.1:0".parse().unwrap()));
    a.cli(&["pki", "reload"]).ok();
    let status = a.cli(&["--json", "status"]).json();
    let addr = status["listen_addr"]
        .as_str()
        .expect("listening now")
        .to_string();
    assert_eq!(
        a.listen_addr().to_string(),
        addr,
        "run/node.json has it too"
    );
    let b = ca.node("eu", "telco-b");
    add_peer(&b, &a, "noc-a", &[]);
    add_peer(&a, &b, "telco-b", &[]);
    wait_ping_ok(&b, "noc-a");
    let mut c = ttx();
    c.args(["--dir", &dir, "status"]);
    assert!(run(c, None).ok().contains(&addr));
}

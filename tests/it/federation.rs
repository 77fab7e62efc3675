//! Two (and more) nodes set up from scratch with the PKI commands, talking over real QUIC with
//! real certificates: ping, the pending list, accept and deny, pins without a shared CA, live
//! revocation with `ttx pki reload` and SIGHUP, and a node whose TLS material is broken serving
//! its tickets until a reload brings the federation up.

use std::path::{Path, PathBuf};

use crate::common::{run, ttx, Out, TestNode};

/// A federation CA in a temp dir (the fault tests use it too).
pub(crate) struct Ca {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

pub(crate) fn pki(args: &[&str]) -> Out {
    let mut c = ttx();
    c.arg("pki").args(args);
    run(c, None)
}

impl Ca {
    pub(crate) fn new(federation: &str) -> Ca {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        pki(&[
            "init-ca",
            "--federation",
            federation,
            "--out",
            dir.to_str().unwrap(),
        ])
        .ok();
        Ca { _tmp: tmp, dir }
    }

    pub(crate) fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// The CA certificate file.
    pub(crate) fn cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A started node of `site` in `federation` with a certificate from this CA.
    pub(crate) fn node(&self, federation: &str, site: &str) -> TestNode {
        self.named_node(federation, site, "primary")
    }

    /// A started node `node` of `site` in `federation` with a certificate from this CA.
    pub(crate) fn named_node(&self, federation: &str, site: &str, node: &str) -> TestNode {
        let mut n = TestNode::init_with(
            site,
            &[
                "--federation",
                federation,
                "--listen",
                "127.0.0.1:0",
                "--node",
                node,
            ],
        );
        self.issue(&n, site, node);
        n.start();
        n
    }

    /// Issues a certificate for `site`/`node` into the node's data dir.
    pub(crate) fn issue(&self, n: &TestNode, site: &str, node: &str) {
        let dir = n.dir.to_str().unwrap().to_string();
        pki(&[
            "issue",
            "--ca",
            self.path(),
            "--site",
            site,
            "--node",
            node,
            "--dir",
            &dir,
        ])
        .ok();
    }
}

pub(crate) fn add_peer(node: &TestNode, other: &TestNode, site: &str, extra: &[&str]) {
    let addr = other.listen_addr().to_string();
    let mut args = vec!["peer", "add", site, "--addr", &addr];
    args.extend_from_slice(extra);
    node.cli(&args).ok();
}

/// Pings `site` from `node` until it answers (bounded): a pin reaches the TLS trust
/// asynchronously after the registry write.
pub(crate) fn wait_ping_ok(node: &TestNode, site: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = node.cli(&["peer", "ping", site]);
        if out.code == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pin never took effect: {out:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub(crate) fn spki(cert: &Path) -> String {
    let out = pki(&["--json", "show", cert.to_str().unwrap()]);
    out.json()["items"][0]["spki_sha256"]
        .as_str()
        .expect("spki in show")
        .to_string()
}

#[test]
fn two_nodes_set_up_from_scratch_ping_each_other() {
    let ca = Ca::new("eu");
    // One node the long way: request, sign, install (the key never leaves the node).
    let mut a = TestNode::init_with("noc-a", &["--federation", "eu", "--listen", "127.0.0.1:0"]);
    let a_dir = a.dir.to_str().unwrap().to_string();
    pki(&["request", "--dir", &a_dir]).ok();
    let cert = a.tmp.path().join("noc-a.crt");
    let csr = a.dir.join("tls/node.csr");
    pki(&[
        "sign",
        "--ca",
        ca.path(),
        csr.to_str().unwrap(),
        "--site",
        "noc-a",
        "--node",
        "primary",
        "--out",
        cert.to_str().unwrap(),
    ])
    .ok();
    let ca_cert = ca.dir.join("ca.crt");
    pki(&[
        "install",
        "--dir",
        &a_dir,
        cert.to_str().unwrap(),
        ca_cert.to_str().unwrap(),
    ])
    .ok();
    a.start();
    // The other in one go.
    let b = ca.node("eu", "telco-b");

    add_peer(&a, &b, "telco-b", &[]);
    add_peer(&b, &a, "noc-a", &[]);
    let ping = a.cli(&["--json", "peer", "ping", "telco-b"]).json();
    assert_eq!(ping["identity"], "ttx://eu/telco-b/primary");
    assert_eq!(ping["version"], "ttx-exchange/2");
    assert!(ping["latency_ms"].as_f64().unwrap() > 0.0);
    let text = b.cli(&["peer", "ping", "noc-a"]).ok().to_string();
    assert!(
        text.contains("ttx://eu/noc-a/primary") && text.contains("ttx-exchange/2"),
        "{text}"
    );

    let peers = a.cli(&["--json", "peer", "list"]).json();
    let p = &peers[0];
    assert_eq!(
        (
            p["site"].as_str(),
            p["state"].as_str(),
            p["connected"].as_bool()
        ),
        (Some("telco-b"), Some("accepted"), Some(true))
    );
    assert_eq!(p["version"], "ttx-exchange/2");
    let days = p["cert_days_left"].as_i64().unwrap();
    assert!((300..=400).contains(&days), "{days}");
    assert!(p["rtt_ms"].as_f64().is_some());
    let status = a.cli(&["--json", "status"]).json();
    assert_eq!(status["listen_addr"], a.listen_addr().to_string());
    assert_eq!(status["transport"]["identity"], "ttx://eu/noc-a/primary");
    assert_eq!(status["transport"]["peers_connected"], 1);
    assert!(status["transport"]["cert_days_left"].as_i64().unwrap() > 300);
}

#[test]
fn unknown_peers_wait_in_pending_until_an_admin_decides() {
    let ca = Ca::new("eu");
    let a = ca.node("eu", "noc-a");
    let c = ca.node("eu", "carrier-c");
    add_peer(&c, &a, "noc-a", &[]);
    c.cli(&["peer", "ping", "noc-a"]).fails(4, "unknown_peer");
    // The sighting is written after the refusal, asynchronously: wait for it (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let pending = loop {
        let pending = a.cli(&["--json", "peer", "pending"]).json();
        if pending[0]["site"].is_string() || std::time::Instant::now() > deadline {
            break pending;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(pending[0]["site"], "carrier-c");
    assert_eq!(
        pending[0]["seen_spki"].as_str().unwrap(),
        spki(&c.dir.join("tls/node.crt"))
    );
    // Who knocked, with which CA's certificate, from where and when.
    let p = &pending[0];
    assert_eq!(p["identity"], "ttx://eu/carrier-c/primary", "{p}");
    assert!(p["seen_issuer"].as_str().unwrap().contains("eu"), "{p}");
    assert!(
        p["seen_addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{p}"
    );
    let (first, last) = (
        p["first_seen"].as_i64().unwrap(),
        p["last_seen"].as_i64().unwrap(),
    );
    assert!(first <= last, "{p}");
    let text = a.cli(&["peer", "pending"]).ok().to_string();
    for label in [
        "identity",
        "issuer",
        "address",
        "first seen",
        "last seen",
        "key",
    ] {
        assert!(text.contains(&format!("  {label} ")), "{label}: {text}");
    }
    // Accepted with the address to reach it at: this node can dial it at once.
    let c_addr = c.listen_addr().to_string();
    a.cli(&["peer", "accept", "carrier-c", "--addr", "nohost"])
        .fails(2, "HOST:PORT");
    let out = a
        .cli(&["peer", "accept", "carrier-c", "--addr", &c_addr])
        .ok()
        .to_string();
    assert!(
        out.contains("state pending -> accepted") && out.contains(&c_addr),
        "{out}"
    );
    c.cli(&["peer", "ping", "noc-a"]).ok();
    a.cli(&["peer", "ping", "carrier-c"]).ok();
    a.cli(&["peer", "accept", "carrier-c"]).ok();
    assert_eq!(
        a.cli(&["peer", "accept", "carrier-c"]).ok(),
        "peer carrier-c unchanged\n"
    );
    a.cli(&["peer", "deny", "carrier-c"]).ok();
    // The denied peer's live connection is closed and it cannot come back.
    c.cli(&["peer", "ping", "noc-a"]).fails(4, "denied");
    a.cli(&["peer", "accept", "nobody"]).fails(3, "no peer");
    a.cli(&["peer", "add", "x", "--addr", "nohost"])
        .fails(2, "HOST:PORT");
    a.cli(&["peer", "add", "x", "--addr", "127.0.0.1:1", "--pin", "abc"])
        .fails(2, "64 hex");
    a.cli(&[
        "peer",
        "add",
        "x",
        "--addr",
        "127.0.0.1:1",
        "--allow",
        "everything",
    ])
    .fails(2, "unknown permission");
}

#[test]
fn a_peer_may_do_only_what_it_is_authorized_for() {
    let ca = Ca::new("eu");
    let a = ca.node("eu", "noc-a");
    let b = ca.node("eu", "telco-b");
    // A standby of another site can never apply: refused, and nothing is registered.
    let b_addr = b.listen_addr().to_string();
    a.cli(&[
        "peer", "add", "telco-b", "--addr", &b_addr, "--allow", "standby",
    ])
    .fails(
        2,
        "standby cannot apply to telco-b: only a node of this site (noc-a)",
    );
    assert_eq!(
        a.cli(&["--json", "peer", "list"]).json(),
        serde_json::json!([])
    );
    add_peer(&a, &b, "telco-b", &[]);
    a.cli(&["peer", "add", "telco-b", "--allow", "exchange,standby"])
        .fails(2, "standby cannot apply");
    assert_eq!(
        a.cli(&["--json", "peer", "list"]).json()[0]["standby"],
        false
    );
    // This site's standby node, registered only as the standby: no referral exchange.
    let s = ca.named_node("eu", "noc-a", "standby");
    add_peer(&a, &s, "noc-a", &["--allow", "standby"]);
    add_peer(&s, &a, "noc-a", &[]);
    s.cli(&["peer", "ping", "noc-a"]).fails(4, "not_authorized");
}

#[test]
fn a_pinned_partner_may_run_its_own_pki_under_its_own_federation_name() {
    let eu = Ca::new("eu");
    let us = Ca::new("us");
    let a = eu.node("eu", "noc-a");
    let d = us.node("us", "telco-d");
    let a_key = spki(&a.dir.join("tls/node.crt"));
    let d_key = spki(&d.dir.join("tls/node.crt"));
    // Unpinned, another federation is refused.
    add_peer(&a, &d, "telco-d", &[]);
    add_peer(&d, &a, "noc-a", &["--pin", &a_key]);
    a.cli(&["peer", "ping", "telco-d"])
        .fails(4, "its certificate names another federation or site");
    // Pinned: its key is the trust, whatever its federation.
    add_peer(&a, &d, "telco-d", &["--pin", &d_key]);
    wait_ping_ok(&a, "telco-d");
    let ping = d.cli(&["--json", "peer", "ping", "noc-a"]).json();
    assert_eq!(ping["identity"], "ttx://eu/noc-a/primary");
    let ping = a.cli(&["--json", "peer", "ping", "telco-d"]).json();
    assert_eq!(ping["identity"], "ttx://us/telco-d/primary");
}

#[test]
fn an_unreachable_peer_is_a_failure_not_a_refusal() {
    let ca = Ca::new("eu");
    let a = ca.node("eu", "noc-a");
    // A UDP port nothing listens on.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    a.cli(&["peer", "add", "telco-z", "--addr", &addr]).ok();
    let out = a.cli(&["peer", "ping", "telco-z"]);
    out.fails(1, &format!("cannot reach telco-z: {addr}: "));
    let out = a.cli(&["--json", "peer", "ping", "telco-z"]);
    assert_eq!(out.code, 1, "{out:?}");
    let err: serde_json::Value = serde_json::from_str(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], "unreachable", "{err}");
}

#[test]
fn peer_add_on_an_existing_peer_changes_only_what_is_given() {
    let ca = Ca::new("eu");
    let a = ca.node("eu", "noc-a");
    let b = ca.node("eu", "telco-b");
    let b_key = spki(&b.dir.join("tls/node.crt"));
    let b_addr = b.listen_addr().to_string();
    let out = a
        .cli(&["peer", "add", "telco-b", "--addr", &b_addr, "--pin", &b_key])
        .ok()
        .to_string();
    assert!(
        out.contains("pins 1") && out.contains("allow exchange"),
        "{out}"
    );
    a.cli(&["peer", "add", "telco-c"])
        .fails(2, "new peer: give its addresses");
    // A new address: the pin and the permission stay.
    let out = a
        .cli(&["peer", "add", "telco-b", "--addr", "192.0.2.7:4433"])
        .ok()
        .to_string();
    assert_eq!(
        out,
        format!("peer telco-b: addresses {b_addr} -> 192.0.2.7:4433\n")
    );
    let p = a.cli(&["--json", "peer", "list"]).json()[0].clone();
    assert_eq!(p["pins"], serde_json::json!([b_key]), "{p}");
    assert_eq!(
        (p["exchange"].as_bool(), p["standby"].as_bool()),
        (Some(true), Some(false))
    );
    // Moved back, and the pin dropped only when asked.
    a.cli(&["peer", "add", "telco-b", "--addr", &b_addr]).ok();
    assert_eq!(
        a.cli(&["peer", "add", "telco-b", "--unpin"]).ok(),
        "peer telco-b: pins 1 -> 0\n"
    );
    assert_eq!(
        a.cli(&["peer", "add", "telco-b", "--unpin"]).ok(),
        "peer telco-b unchanged\n"
    );
    assert_eq!(
        a.cli(&["--json", "peer", "list"]).json()[0]["addrs"],
        serde_json::json!([b_addr])
    );
}

#[test]
fn pinned_partners_need_no_shared_ca_and_must_show_the_pinned_key() {
    let eu = Ca::new("eu");
    let other = Ca::new("eu");
    let a = eu.node("eu", "noc-a");
    let d = other.node("eu", "noc-d");
    let a_key = spki(&a.dir.join("tls/node.crt"));
    let d_key = spki(&d.dir.join("tls/node.crt"));
    // Without a pin, a certificate from another CA is refused, in words on both sides.
    add_peer(&d, &a, "noc-a", &["--pin", &a_key]);
    add_peer(&a, &d, "noc-d", &[]);
    let out = d.cli(&["peer", "ping", "noc-a"]);
    out.fails(
        4,
        "TLS handshake failed: refused by the peer: it does not trust our certificate: not \
         signed by any CA it holds",
    );
    let out = a.cli(&["peer", "ping", "noc-d"]);
    out.fails(4, "noc-d refused: ");
    out.fails(
        4,
        "refused its certificate: its certificate is not signed by any CA in tls/ca.pem",
    );
    out.fails(
        4,
        "install its CA (`ttx pki trust add CA_CERT`) or pin its key",
    );
    for debug in ["UnknownCA", "UnknownIssuer", "Some(", "InvalidCertificate"] {
        assert!(!out.stderr.contains(debug), "{debug}: {out:?}");
    }
    // Pinned on both sides: they talk.
    add_peer(&a, &d, "noc-d", &["--pin", &d_key]);
    wait_ping_ok(&d, "noc-a");
    a.cli(&["peer", "ping", "noc-d"]).ok();
    // A pin of another key: refused, and the live connection is gone after the change.
    add_peer(&a, &d, "noc-d", &["--pin", &a_key]);
    let out = d.cli(&["peer", "ping", "noc-a"]);
    assert_eq!(out.code, 4, "{out:?}");
}

/// `noc-a` and two partners of the same CA, `telco-b` and `carrier-c`, each registered both
/// ways and pinging `noc-a`.
pub(crate) fn hub_and_two_partners(ca: &Ca) -> (TestNode, TestNode, TestNode) {
    let a = ca.node("eu", "noc-a");
    let b = ca.node("eu", "telco-b");
    let c = ca.node("eu", "carrier-c");
    for (peer, site) in [(&b, "telco-b"), (&c, "carrier-c")] {
        add_peer(&a, peer, site, &[]);
        add_peer(peer, &a, "noc-a", &[]);
        peer.cli(&["peer", "ping", "noc-a"]).ok();
    }
    (a, b, c)
}

#[test]
fn revocation_and_deny_lists_apply_to_a_running_node() {
    let ca = Ca::new("eu");
    let (mut a, b, c) = hub_and_two_partners(&ca);
    // Revoke B while it is connected; A loads the CRL without a restart.
    pki(&[
        "revoke",
        "--ca",
        ca.path(),
        b.dir.join("tls/node.crt").to_str().unwrap(),
        "--reason",
        "key-compromise",
    ])
    .ok();
    let crl = a.dir.join("tls/crl/eu.pem");
    pki(&["crl", "--ca", ca.path(), "--out", crl.to_str().unwrap()]).ok();
    a.configure(|cfg| cfg.tls.crls = vec!["tls/crl/eu.pem".into()]);
    let reload = a.cli(&["--json", "pki", "reload"]).json();
    let closed = reload["closed"].as_array().unwrap();
    assert_eq!(closed.len(), 1, "{reload}");
    assert_eq!(closed[0][0], "ttx://eu/telco-b/primary");
    assert_eq!(reload["kept"], 1);
    b.cli(&["peer", "ping", "noc-a"])
        .fails(4, "it holds a CRL that revokes our certificate");
    c.cli(&["peer", "ping", "noc-a"]).ok();
    // Deny C's key by config and SIGHUP: C is cut off too.
    let c_key = spki(&c.dir.join("tls/node.crt"));
    a.configure(|cfg| cfg.tls.deny_spki = vec![c_key.clone()]);
    let pid = a.pid().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = c.cli(&["peer", "ping", "noc-a"]);
        if out.code != 0 {
            assert_eq!(out.code, 4, "{out:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not apply the deny list"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    a.stop();
}

/// Waits (bounded) until `ttx status` shows the federation up.
fn wait_transport_up(n: &TestNode) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = n.cli(&["--json", "status"]).json();
        if status["transport"]["identity"].is_string() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "federation never came up: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Before: with `[transport] listen` set, a missing certificate or a key with mode 0644 stopped
/// `ttx serve` (exit 2), so the NOC could not work its tickets. Now the node serves, `ttx
/// status` says what is wrong and how to fix it, and `ttx pki reload` or SIGHUP brings the
/// federation up once it is fixed, without a restart.
#[test]
fn broken_tls_material_leaves_the_tickets_up_and_a_reload_brings_federation_up() {
    use std::os::unix::fs::PermissionsExt;
    let ca = Ca::new("eu");
    // Listening without a certificate.
    let mut a = TestNode::init_with("noc-a", &["--federation", "eu", "--listen", "127.0.0.1:0"]);
    a.start();
    let status = a.cli(&["--json", "status"]).json();
    let problem = status["transport_problem"].as_str().unwrap_or_default();
    assert!(problem.contains("ttx pki reload"), "{status}");
    assert!(status["transport"].is_null(), "{status}");
    a.cli(&["new", "fibre cut on LON-PAR-3"]).ok();
    a.cli(&["peer", "list"]).fails(4, "federation is down");
    // A certificate whose key others can read: still down, and said so.
    let dir = a.dir.to_str().unwrap().to_string();
    pki(&[
        "issue",
        "--ca",
        ca.path(),
        "--site",
        "noc-a",
        "--node",
        "primary",
        "--dir",
        &dir,
    ])
    .ok();
    let key = a.dir.join("tls/node.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = a.cli(&["pki", "reload"]);
    assert_ne!(out.code, 0, "{out:?}");
    let status = a.cli(&["--json", "status"]).json();
    assert!(
        status["transport_problem"]
            .as_str()
            .unwrap_or_default()
            .contains("node.key"),
        "{status}"
    );
    // Fixed: SIGHUP brings the federation up; the tickets were never down.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &a.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let status = wait_transport_up(&a);
    assert_eq!(status["transport"]["identity"], "ttx://eu/noc-a/primary");
    assert!(status["transport_problem"].is_null(), "{status}");
    assert!(a.cli(&["show", "1"]).ok().contains("fibre cut"));
    a.stop();
}

#[test]
fn rotating_to_a_new_ca_needs_no_restart() {
    let old = Ca::new("eu");
    let a = old.node("eu", "noc-a");
    let b = old.node("eu", "telco-b");
    add_peer(&a, &b, "telco-b", &[]);
    add_peer(&b, &a, "noc-a", &[]);
    b.cli(&["peer", "ping", "noc-a"]).ok();
    let serial_before = pki(&[
        "--json",
        "show",
        a.dir.join("tls/node.crt").to_str().unwrap(),
    ])
    .json()["items"][0]["serial"]
        .clone();
    // A new CA: each node gets a certificate from it (its bundle now trusts old and new), and
    // reloads while running.
    let new = Ca::new("eu");
    for n in [&a, &b] {
        let dir = n.dir.to_str().unwrap().to_string();
        let site = n.dir.file_name().unwrap().to_str().unwrap().to_string();
        pki(&[
            "issue",
            "--ca",
            new.path(),
            "--site",
            &site,
            "--node",
            "primary",
            "--dir",
            &dir,
        ])
        .ok();
        let reload = n.cli(&["--json", "pki", "reload"]).json();
        assert_eq!(reload["cas"], 2, "{reload}");
        assert_eq!(reload["closed"].as_array().unwrap().len(), 0, "{reload}");
    }
    let serial_after = pki(&[
        "--json",
        "show",
        a.dir.join("tls/node.crt").to_str().unwrap(),
    ])
    .json()["items"][0]["serial"]
        .clone();
    assert_ne!(serial_before, serial_after);
    // Both present certificates of the new CA on new connections, and still talk.
    b.cli(&["peer", "remove", "noc-a"]).ok();
    add_peer(&b, &a, "noc-a", &[]);
    b.cli(&["peer", "ping", "noc-a"]).ok();
    a.cli(&["peer", "ping", "telco-b"]).ok();
    // Last step of the rotation: A drops the old CA. B's new connections still work, which
    // they only can if B now presents its new certificate.
    std::fs::copy(new.dir.join("ca.crt"), a.dir.join("tls/ca.pem")).unwrap();
    assert_eq!(a.cli(&["--json", "pki", "reload"]).json()["cas"], 1);
    b.cli(&["peer", "remove", "noc-a"]).ok();
    add_peer(&b, &a, "noc-a", &[]);
    b.cli(&["peer", "ping", "noc-a"]).ok();
}

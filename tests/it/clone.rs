//! `ttx standby clone` across real processes over real QUIC with real certificates: a standby
//! made from a running primary catches up and follows; every refusal leaves no node behind.

use std::path::{Path, PathBuf};

use crate::common::{run, ttx, Out, TestNode};
use crate::federation::{spki, Ca};
use crate::repl::{position_and_digest, wait_until};

/// `ttx standby clone DIR --from PRIMARY` for `noc-a/NODE` with `trust` arguments.
pub(crate) fn clone_cmd(dir: &Path, from: &str, site: &str, node: &str, trust: &[&str]) -> Out {
    let mut c = ttx();
    c.args(["--json", "standby", "clone", dir.to_str().unwrap()])
        .args(["--from", from, "--site", site, "--node", node])
        .args(["--federation", "fed", "--listen", "127.0.0.1:0"])
        .args(trust);
    run(c, None)
}

/// A standby of the running `primary` (`noc-a/standby`) cloned with the CA at hand, with the
/// site's admin token copied in (the snapshot brings the site's operators, not the file).
/// Not started.
pub(crate) fn clone_of(primary: &TestNode, ca: &Ca) -> TestNode {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("standby");
    let from = primary.listen_addr().to_string();
    clone_cmd(&dir, &from, "noc-a", "standby", &["--ca", ca.path()]).ok();
    std::fs::copy(primary.data().admin_token(), dir.join("admin.token")).unwrap();
    TestNode::at(tmp, dir)
}

/// A running primary `noc-a/primary` that authorizes its site's standby, with one ticket.
pub(crate) fn primary(ca: &Ca) -> TestNode {
    primary_with_standby_at(ca, "127.0.0.1:1")
}

/// [`primary`], the registry naming the standby's address `standby_at` (where a switchover's
/// old primary follows it).
pub(crate) fn primary_with_standby_at(ca: &Ca, standby_at: &str) -> TestNode {
    let p = ca.node("fed", "noc-a");
    p.cli(&[
        "peer", "add", "noc-a", "--addr", standby_at, "--allow", "standby",
    ])
    .ok();
    p.cli(&["new", "core1 bgp flap"]).ok();
    p
}

/// Nothing in `dir` looks like a node: no config, no store (key material may be there).
fn no_node(dir: &Path) {
    for f in ["ttx.toml", "ttx.db"] {
        assert!(
            !dir.join(f).exists(),
            "{} left behind",
            dir.join(f).display()
        );
    }
    let parent = dir.parent().unwrap();
    let staging: Vec<PathBuf> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".init-"))
        .collect();
    assert!(staging.is_empty(), "staging left behind: {staging:?}");
}

#[test]
fn a_clone_of_a_running_primary_follows_it_from_the_snapshot_position() {
    let ca = Ca::new("fed");
    let mut p = primary(&ca);
    p.cli(&["note", "1", "traceroute shows loss"]).ok();
    let before = position_and_digest(&p);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("standby");
    let from = p.listen_addr().to_string();
    let out = clone_cmd(&dir, &from, "noc-a", "standby", &["--ca", ca.path()]);
    let cloned = out.json();
    assert_eq!(cloned["position"].as_i64(), Some(before.0), "{cloned}");
    assert_eq!(cloned["identity"], "ttx://fed/noc-a/standby");
    assert_eq!(cloned["primary"], "ttx://fed/noc-a/primary");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("tls/node.key"), 0o600);
        assert_eq!(mode("ttx.db"), 0o600);
        assert_eq!(mode("."), 0o700);
    }
    let config = std::fs::read_to_string(dir.join("ttx.toml")).unwrap();
    assert!(
        config.contains(&format!("primary = \"{from}\"")),
        "{config}"
    );

    // Written after the snapshot: streamed from the snapshot's position on.
    p.cli(&["new", "after the clone"]).ok();
    std::fs::copy(p.data().admin_token(), dir.join("admin.token")).unwrap();
    let mut s = TestNode::at(tmp, dir.clone());
    s.start();
    let want = position_and_digest(&p);
    wait_until("the clone to catch up", || position_and_digest(&s) == want);
    let shown = s.cli(&["--json", "show", "2"]).json();
    assert!(shown.to_string().contains("after the clone"), "{shown}");
    let status = s.cli(&["--json", "status"]).json();
    assert_eq!(status["role"], "standby:primary", "{status}");
    s.cli(&["new", "on the standby"])
        .fails(4, "this node is a standby of \"primary\"");

    // DIR is a node now: a second clone into it is refused and changes nothing.
    s.stop();
    clone_cmd(&dir, &from, "noc-a", "standby", &["--ca", ca.path()])
        .fails(4, "already holds a node");
    p.stop();
}

#[test]
fn a_clone_the_primary_does_not_authorize_or_of_another_site_is_refused_and_leaves_no_node() {
    let ca = Ca::new("fed");
    // A primary whose registry has no standby record for its site.
    let p = ca.node("fed", "noc-a");
    let from = p.listen_addr().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("standby");
    clone_cmd(&dir, &from, "noc-a", "standby", &["--ca", ca.path()])
        .fails(5, "refused this node as its standby");
    no_node(&dir);
    // Authorized only for the exchange: still not a standby.
    p.cli(&["peer", "add", "noc-a", "--addr", "127.0.0.1:1"])
        .ok();
    clone_cmd(&dir, &from, "noc-a", "standby", &["--ca", ca.path()]).fails(5, "not_authorized");
    no_node(&dir);
    // The site's standby record pins another key: this key is refused.
    let other = "ab".repeat(32);
    p.cli(&[
        "peer", "add", "noc-a", "--allow", "standby", "--pin", &other,
    ])
    .ok();
    let out = clone_cmd(&dir, &from, "noc-a", "standby", &["--ca", ca.path()]);
    assert_eq!(out.code, 5, "{out:?}");
    no_node(&dir);
    // A node of another site (certified by the same CA) dialing noc-a's primary.
    let dir_b = tmp.path().join("other-site");
    clone_cmd(&dir_b, &from, "noc-b", "standby", &["--ca", ca.path()])
        .fails(5, "refused this node as its standby");
    no_node(&dir_b);
}

#[test]
fn a_clone_without_a_certificate_prepares_the_key_and_says_both_ways_to_trust_it() {
    let ca = Ca::new("fed");
    let p = primary(&ca);
    let from = p.listen_addr().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("standby");
    let out = clone_cmd(&dir, &from, "noc-a", "standby", &[]);
    out.fails(2, "ttx pki sign");
    out.fails(2, "ttx peer add noc-a --allow standby");
    no_node(&dir);
    let csr = dir.join("tls/node.csr");
    assert!(dir.join("tls/node.key").exists() && csr.exists());
    let key_before = std::fs::read(dir.join("tls/node.key")).unwrap();
    // The CA signs the CSR; the clone installs the certificate and goes on, with the same key.
    let cert = tmp.path().join("standby.crt");
    let mut c = ttx();
    c.args(["pki", "sign", "--ca", ca.path(), csr.to_str().unwrap()])
        .args([
            "--site",
            "noc-a",
            "--node",
            "standby",
            "--out",
            cert.to_str().unwrap(),
        ]);
    run(c, None).ok();
    let ca_cert = ca.cert();
    let trust = [
        "--cert",
        cert.to_str().unwrap(),
        "--ca-cert",
        ca_cert.to_str().unwrap(),
    ];
    clone_cmd(&dir, &from, "noc-a", "standby", &trust).ok();
    assert_eq!(std::fs::read(dir.join("tls/node.key")).unwrap(), key_before);
    assert!(dir.join("ttx.db").exists() && dir.join("ttx.toml").exists());
}

#[test]
fn a_clone_from_an_unreachable_primary_fails_clearly() {
    let ca = Ca::new("fed");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("standby");
    clone_cmd(
        &dir,
        &port.to_string(),
        "noc-a",
        "standby",
        &["--ca", ca.path()],
    )
    .fails(1, "is unreachable");
    no_node(&dir);
}

#[test]
fn a_standby_record_pinned_to_the_clones_key_admits_it_and_the_pair_trusts_by_those_pins() {
    let ca = Ca::new("fed");
    let mut p = primary(&ca);
    let from = p.listen_addr().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("standby");
    // First run: the key and CSR are made; the message gives the key's fingerprint.
    clone_cmd(&dir, &from, "noc-a", "standby", &[]).fails(2, "add --pin");
    let standby_key = spki(&dir.join("tls/node.csr"));
    let primary_key = spki(&p.dir.join("tls/node.crt"));
    // The primary's admin admits only this key (and its own) as the site's nodes.
    let pins = format!("{standby_key},{primary_key}");
    p.cli(&["peer", "add", "noc-a", "--allow", "standby", "--pin", &pins])
        .ok();
    let cloned = clone_cmd(&dir, &from, "noc-a", "standby", &["--ca", ca.path()]).json();
    assert_eq!(cloned["spki_sha256"], standby_key.as_str(), "{cloned}");
    // The record replicated: the standby trusts its primary by the same pins and follows it.
    std::fs::copy(p.data().admin_token(), dir.join("admin.token")).unwrap();
    let mut s = TestNode::at(tmp, dir);
    s.start();
    p.cli(&["new", "after the pinned clone"]).ok();
    let want = position_and_digest(&p);
    wait_until("the pinned standby to catch up", || {
        position_and_digest(&s) == want
    });
    s.stop();
    p.stop();
}

//! The federation PKI end to end: the real `ttx` binary on real files in temp dirs, with real
//! certificates checked back with x509-parser.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rustls_pki_types::pem::{PemObject, SectionKind};
use serde_json::Value;
use ttx::config::{Config, TlsSection};
use ttx::pki::{self, PkiError, TrustMaterial};
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

/// Runs `ttx` with a command line split on whitespace (temp paths hold none), `TTX_DIR` unset.
fn ttx(line: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ttx"))
        .args(line.split_whitespace())
        .env_remove("TTX_DIR")
        .output()
        .expect("ttx runs")
}

/// Runs `ttx --json LINE`, expects success and returns the JSON answer.
fn ok(line: &str) -> Value {
    let out = ttx(&format!("--json {line}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ttx {line}: {stderr}");
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// Runs `ttx LINE`, expects exit `code` and a message containing `needle` on stderr.
fn fails(line: &str, code: i32, needle: &str) {
    let out = ttx(line);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "ttx {line}: {stderr}");
    assert!(
        stderr.contains(needle),
        "ttx {line}: {stderr:?} lacks {needle:?}"
    );
    assert!(stderr.starts_with("ttx: error: "), "{stderr}");
}

/// The human output of `ttx LINE`.
fn text(line: &str) -> String {
    String::from_utf8(ttx(line).stdout).unwrap()
}

/// A path as a command-line word.
fn p(path: &Path) -> String {
    let s = path.to_str().expect("utf-8 temp path").to_string();
    assert!(!s.contains(char::is_whitespace), "{s}");
    s
}

/// A temp dir with a CA of `federation` at `TMP/ca`.
fn with_ca(federation: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    ok(&format!(
        "pki init-ca --federation {federation} --out {}",
        p(&ca)
    ));
    (tmp, ca)
}

/// A node data dir `TMP/NAME` with a `ttx.toml` for `federation`/`site`/`node`.
fn node_dir(tmp: &Path, name: &str, federation: &str, site: &str, node: &str) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = Config::new(site, node);
    config.node.federation = federation.into();
    std::fs::write(dir.join("ttx.toml"), config.to_toml()).unwrap();
    dir
}

/// `pki issue --ca CA --site SITE --node primary --dir DIR`, plus `extra` flags.
fn issue_line(ca: &Path, site: &str, dir: &Path, extra: &str) -> String {
    format!(
        "pki issue --ca {} --site {site} --node primary --dir {} {extra}",
        p(ca),
        p(dir)
    )
}

/// `pki sign --ca CA CSR --site SITE --node NODE --out OUT`.
fn sign_line(ca: &Path, csr: &Path, site: &str, node: &str, out: &Path) -> String {
    format!(
        "pki sign --ca {} {} --site {site} --node {node} --out {}",
        p(ca),
        p(csr),
        p(out)
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn first_der(path: &Path) -> Vec<u8> {
    let pem = std::fs::read(path).unwrap();
    let (_kind, der) = <(SectionKind, Vec<u8>)>::from_pem_slice(&pem).unwrap();
    der
}

fn show(path: &Path) -> Value {
    ok(&format!("pki show {}", p(path)))["items"][0].clone()
}

#[test]
fn init_ca_writes_a_private_ca_and_refuses_an_existing_one() {
    let (_tmp, ca) = with_ca("eu-noc");
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    for f in ["ca.crt", "index.json", "revoked.json"] {
        assert!(ca.join(f).exists(), "{f}");
    }
    let cert = show(&ca.join("ca.crt"));
    assert_eq!(cert["kind"], "certificate");
    assert_eq!(cert["identity"], "CA federation eu-noc");
    assert_eq!(cert["is_ca"], true);
    let again = format!("pki init-ca --federation eu-noc --out {}", p(&ca));
    fails(&again, 4, "already exists");
    let other = p(&ca.with_file_name("bad"));
    fails(
        &format!("pki init-ca --federation EU_NOC --out {other}"),
        2,
        "invalid federation name",
    );
    fails(
        &format!("pki init-ca --federation eu --out {other} --days 0"),
        2,
        "0 days",
    );
}

#[test]
fn request_sign_install_and_show() {
    let (tmp, ca) = with_ca("eu");
    let dir = node_dir(tmp.path(), "a", "eu", "noc-a", "primary");
    let req = ok(&format!("pki request --dir {}", p(&dir)));
    assert_eq!(req["identity"], "ttx://eu/noc-a/primary");
    assert_eq!(req["key_created"], true);
    assert_eq!(mode(&dir.join("tls/node.key")), 0o600);
    let csr = show(&dir.join("tls/node.csr"));
    assert_eq!(csr["kind"], "csr");
    assert_eq!(csr["signature_valid"], true);

    let crt = tmp.path().join("a.crt");
    let line = sign_line(&ca, &dir.join("tls/node.csr"), "noc-a", "primary", &crt);
    let signed = ok(&format!("{line} --days 90"));
    assert_eq!(signed["identity"], "ttx://eu/noc-a/primary");
    assert_eq!(signed["spki_sha256"], req["spki_sha256"]);

    // TTX_DIR stands in for --dir
    let out = Command::new(env!("CARGO_BIN_EXE_ttx"))
        .args(["--json", "pki", "install", &p(&crt), &p(&ca.join("ca.crt"))])
        .env("TTX_DIR", &dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(installed["serial"], signed["serial"]);
    assert_eq!(installed["ca_count"], 1);

    let node_crt = dir.join("tls/node.crt");
    let cert = show(&node_crt);
    assert_eq!(cert["identity"], "ttx://eu/noc-a/primary");
    assert_eq!(cert["spki_sha256"], req["spki_sha256"]);
    assert_eq!(cert["days_left"], 90);
    assert_eq!(cert["warning"], Value::Null);
    let der = first_der(&node_crt);
    assert_eq!(cert["spki_sha256"], pki::spki_sha256(&der).unwrap());

    // the human form shows the same facts
    let shown = text(&format!("pki show {}", p(&node_crt)));
    assert!(shown.contains("ttx://eu/noc-a/primary"), "{shown}");
    assert!(shown.contains("90 days left"), "{shown}");
    assert!(
        shown.contains(req["spki_sha256"].as_str().unwrap()),
        "{shown}"
    );
}

#[test]
fn issue_in_one_go_and_warn_ahead_of_expiry() {
    let (tmp, ca) = with_ca("eu");
    let dir = node_dir(tmp.path(), "a", "eu", "noc-a", "primary");
    let issued = ok(&issue_line(&ca, "noc-a", &dir, "--days 10"));
    assert_eq!(issued["identity"], "ttx://eu/noc-a/primary");
    let node_crt = dir.join("tls/node.crt");
    let cert = show(&node_crt);
    assert_eq!(cert["days_left"], 10);
    assert_eq!(cert["warning"], "expires within 14 days");
    let shown = text(&format!("pki show {}", p(&node_crt)));
    assert!(
        shown.contains("warning:     expires within 14 days"),
        "{shown}"
    );

    let wrong_site = issue_line(&ca, "noc-b", &dir, "");
    fails(&wrong_site, 4, "--site noc-b does not match noc-a");
}

#[test]
fn readable_keys_are_refused() {
    let (tmp, ca) = with_ca("eu");
    let dir = node_dir(tmp.path(), "a", "eu", "noc-a", "primary");
    ok(&issue_line(&ca, "noc-a", &dir, ""));
    let key = dir.join("tls/node.key");
    assert_eq!(mode(&key), 0o600);
    TrustMaterial::load(&dir, &TlsSection::default()).unwrap();

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = pki::files::check_key_permissions(&key).unwrap_err();
    assert!(
        matches!(err, PkiError::KeyPermissions { mode: 0o644, .. }),
        "{err}"
    );
    let err = TrustMaterial::load(&dir, &TlsSection::default()).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    // the CLI refuses to use it too
    let request = format!("pki request --dir {}", p(&dir));
    fails(&request, 4, "readable by group or others");
}

#[test]
fn the_ca_decides_the_identity_not_the_csr() {
    let (tmp, ca) = with_ca("eu");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
    let asked = rcgen::SanType::URI("ttx://other/hq/admin".try_into().unwrap());
    params.subject_alt_names.push(asked);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let csr = tmp.path().join("evil.csr");
    std::fs::write(&csr, params.serialize_request(&key).unwrap().pem().unwrap()).unwrap();
    let crt = tmp.path().join("evil.crt");
    let signed = ok(&sign_line(&ca, &csr, "noc-a", "standby", &crt));
    assert_eq!(signed["requested"][0], "ttx://other/hq/admin");
    let der = first_der(&crt);
    let id = ttx::identity::NodeIdentity::from_cert_der(&der).unwrap();
    assert_eq!(id.to_uri(), "ttx://eu/noc-a/standby");
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(!cert.is_ca());
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(san.value.general_names.len(), 1, "exactly one SAN");
}

#[test]
fn install_refuses_a_certificate_for_another_key_or_federation() {
    let (tmp, ca) = with_ca("eu");
    let a = node_dir(tmp.path(), "a", "eu", "noc-a", "primary");
    let b = node_dir(tmp.path(), "b", "eu", "noc-a", "primary");
    ok(&format!("pki request --dir {}", p(&a)));
    ok(&format!("pki request --dir {}", p(&b)));
    let crt = tmp.path().join("b.crt");
    ok(&sign_line(
        &ca,
        &b.join("tls/node.csr"),
        "noc-a",
        "primary",
        &crt,
    ));
    let install = |cert: &Path, ca_cert: &Path| {
        format!("pki install --dir {} {} {}", p(&a), p(cert), p(ca_cert))
    };
    fails(
        &install(&crt, &ca.join("ca.crt")),
        4,
        "does not match the node key",
    );
    assert!(!a.join("tls/node.crt").exists());

    // a CA of another federation
    let us = tmp.path().join("us-ca");
    ok(&format!("pki init-ca --federation us --out {}", p(&us)));
    let refused = "ca belongs to federation \"us\" but the node is in federation \"eu\"";
    fails(&issue_line(&us, "noc-a", &a, ""), 4, refused);
    let us_crt = tmp.path().join("us.crt");
    ok(&sign_line(
        &us,
        &a.join("tls/node.csr"),
        "noc-a",
        "primary",
        &us_crt,
    ));
    fails(&install(&us_crt, &us.join("ca.crt")), 4, refused);
    assert!(!a.join("tls/ca.pem").exists());
}

#[test]
fn revoke_by_serial_and_by_cert_then_crl() {
    let (tmp, ca) = with_ca("eu");
    let a = node_dir(tmp.path(), "a", "eu", "noc-a", "primary");
    let b = node_dir(tmp.path(), "b", "eu", "noc-b", "primary");
    let serial_a = ok(&issue_line(&ca, "noc-a", &a, ""))["serial"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&issue_line(&ca, "noc-b", &b, ""));
    let revoke = format!("pki revoke --ca {}", p(&ca));

    let upper = serial_a.to_uppercase();
    let r = ok(&format!(
        "{revoke} --serial {upper} --reason key-compromise"
    ));
    assert_eq!(r["serial"], serial_a.as_str());
    assert_eq!(r["reason"], "key-compromise");
    let b_crt = b.join("tls/node.crt");
    let rb = ok(&format!("{revoke} {} --reason superseded", p(&b_crt)));
    let serial_b = rb["serial"].as_str().unwrap().to_string();
    assert_eq!(show(&b_crt)["serial"], serial_b.as_str());

    fails(
        &format!("{revoke} --serial {serial_a}"),
        4,
        "already revoked",
    );
    let unknown = "no certificate with serial 0badc0de";
    fails(&format!("{revoke} --serial 0badc0de"), 3, unknown);
    fails(&format!("{revoke} --serial xyz"), 2, "invalid serial");

    let crl_path = tmp.path().join("eu.crl");
    let crl = format!("pki crl --ca {} --out {}", p(&ca), p(&crl_path));
    assert_eq!(ok(&crl)["crl_number"], 1);
    assert_eq!(ok(&crl)["crl_number"], 2);
    let shown = show(&crl_path);
    assert_eq!(shown["kind"], "crl");
    assert_eq!(shown["revoked"].as_array().unwrap().len(), 2);

    // parse the CRL back and check it against the CA certificate
    let crl_der = first_der(&crl_path);
    let (_, list) = CertificateRevocationList::from_der(&crl_der).unwrap();
    let ca_der = first_der(&ca.join("ca.crt"));
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    list.verify_signature(ca_cert.public_key())
        .expect("crl signed by the ca");
    assert_eq!(list.issuer().as_raw(), ca_cert.subject().as_raw());
    let listed: Vec<(String, Option<u8>)> = list
        .iter_revoked_certificates()
        .map(|r| {
            (
                hex::encode(r.raw_serial()),
                r.reason_code().map(|(_, c)| c.0),
            )
        })
        .collect();
    assert!(listed.contains(&(serial_a.clone(), Some(1))), "{listed:?}");
    assert!(listed.contains(&(serial_b.clone(), Some(4))), "{listed:?}");

    // a node with this CRL configured loads it
    std::fs::create_dir_all(a.join("tls/crl")).unwrap();
    std::fs::copy(&crl_path, a.join("tls/crl/eu.pem")).unwrap();
    let tls = TlsSection {
        crls: vec!["tls/crl/eu.pem".into()],
        ..TlsSection::default()
    };
    assert_eq!(TrustMaterial::load(&a, &tls).unwrap().crls.len(), 1);
}

#[test]
fn a_second_ca_joins_the_bundle() {
    let (tmp, ca) = with_ca("eu");
    let ca2 = tmp.path().join("ca2");
    ok(&format!("pki init-ca --federation eu --out {}", p(&ca2)));
    let a = node_dir(tmp.path(), "a", "eu", "noc-a", "primary");
    let first = ok(&issue_line(&ca, "noc-a", &a, ""));
    let second = ok(&issue_line(&ca2, "noc-a", &a, ""));
    assert_eq!(second["ca_count"], 2);
    assert_eq!(
        first["spki_sha256"], second["spki_sha256"],
        "re-issue keeps the node key"
    );
    let bundle = ok(&format!("pki show {}", p(&a.join("tls/ca.pem"))));
    let items = bundle["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_ne!(items[0]["spki_sha256"], items[1]["spki_sha256"]);
    // Two CAs of one federation have names of their own (creation day and serial), not two
    // identical-looking subjects.
    let (s0, s1) = (
        items[0]["subject"].as_str().unwrap(),
        items[1]["subject"].as_str().unwrap(),
    );
    assert_ne!(s0, s1);
    for (s, item) in [(s0, &items[0]), (s1, &items[1])] {
        assert!(s.contains("CN=ttx federation CA eu"), "{s}");
        let short: String = item["serial"].as_str().unwrap().chars().take(8).collect();
        assert!(s.contains(&format!("serial {short}")), "{s}");
        assert!(s.contains("created 20"), "{s}");
    }
    let tm = TrustMaterial::load(&a, &TlsSection::default()).unwrap();
    assert_eq!(tm.ca_certs.len(), 2);
}

#[test]
fn serials_are_unique_over_many_issues() {
    let (tmp, ca) = with_ca("eu");
    let a = node_dir(tmp.path(), "a", "eu", "noc-a", "primary");
    ok(&format!("pki request --dir {}", p(&a)));
    let csr = std::fs::read(a.join("tls/node.csr")).unwrap();
    let mut serials = std::collections::BTreeSet::new();
    for i in 0..200 {
        let issued = pki::sign(&ca, &csr, "noc-a", &format!("n{i}"), 30).unwrap();
        assert_eq!(issued.serial.len(), 32);
        assert!(serials.insert(issued.serial), "duplicate serial");
    }
    let index = pki::Ca::open(&ca).unwrap().index().unwrap();
    assert_eq!(index.len(), 200);
}

#[test]
fn cli_errors_are_clear_and_use_the_documented_exit_codes() {
    let (tmp, ca) = with_ca("eu");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails(
        &format!("pki request --dir {}", p(&empty)),
        3,
        "run `ttx init` first",
    );
    let a = node_dir(tmp.path(), "a", "eu", "noc-a", "primary");
    let install = format!("pki install --dir {} nope.crt nope.pem", p(&a));
    fails(&install, 3, "nope.crt does not exist");
    let junk = tmp.path().join("junk.csr");
    std::fs::write(&junk, "not a csr").unwrap();
    let out = tmp.path().join("x.crt");
    let bad_csr = sign_line(&ca, &junk, "noc-a", "p", &out);
    fails(&bad_csr, 2, "invalid certificate signing request");
    let no_ca = sign_line(&tmp.path().join("no-ca"), &junk, "noc-a", "p", &out);
    fails(&no_ca, 3, "run `ttx pki init-ca`");
    let no_pem = "no certificate, crl or certificate request found";
    fails(&format!("pki show {}", p(&junk)), 2, no_pem);
    fails(
        &format!("pki show {}", p(&ca.join("ca.key"))),
        2,
        "private key",
    );
    // A directory in the way of the output (its parent is a file) cannot be created.
    let nowhere = ca.join("ca.crt").join("dir.pem");
    fails(
        &format!("pki crl --ca {} --out {}", p(&ca), p(&nowhere)),
        1,
        "cannot create",
    );

    // --json errors are one JSON object on stderr with the exit code
    let out = ttx(&format!("--json pki revoke --ca {} --serial 01", p(&ca)));
    assert_eq!(out.status.code(), Some(3));
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["exit_code"], 3);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("serial 01"));
    // clap refuses an unknown reason with exit 2
    let out = ttx(&format!(
        "pki revoke --ca {} --serial 01 --reason bored",
        p(&ca)
    ));
    assert_eq!(out.status.code(), Some(2));
}

//! The docs agree with the binary and stand on their own.

use crate::common::{run, ttx};

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

const DOCS: &[&str] = &[
    "README.md",
    "certs/README.md",
    "docs/api.md",
    "docs/architecture.md",
    "docs/benchmarks.md",
    "docs/operations.md",
    "docs/protocol.md",
    "docs/replication.md",
    "docs/security.md",
];

#[test]
fn docs_cite_nothing_outside_the_repository() {
    for doc in DOCS {
        let text = read(doc);
        for outside in ["/work/", "../shared", "design brief", "roadmap"] {
            assert!(!text.contains(outside), "{doc} cites {outside:?}");
        }
    }
}

#[test]
fn the_readme_says_what_the_build_needs_and_matches_cargo() {
    let readme = read("README.md");
    let cargo = read("Cargo.toml");
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        readme.contains(&format!("Rust {version}")),
        "README lacks Rust {version}"
    );
    for needed in [
        "C compiler",
        "cargo install --path .",
        "kill -TERM",
        "federation/",
    ] {
        let text = if needed == "federation/" {
            read("src/lib.rs")
        } else {
            readme.clone()
        };
        assert!(text.contains(needed), "lacks {needed:?}");
    }
    for config in ["config/primary.toml", "config/partner.toml"] {
        assert!(!read(config).contains("must list all its keys"), "{config}");
    }
    assert!(read(".gitignore").lines().any(|l| l == "admin.token"));
}

#[test]
fn help_lists_every_peer_command() {
    let mut c = ttx();
    c.arg("--help");
    let help = run(c, None).ok().to_string();
    let peer = help
        .lines()
        .find(|l| l.trim_start().starts_with("peer"))
        .unwrap();
    let mut c = ttx();
    c.args(["peer", "--help"]);
    let sub = run(c, None).ok().to_string();
    for cmd in ["add", "list", "remove", "ping", "pending", "accept", "deny"] {
        assert!(
            peer.contains(cmd),
            "`ttx --help` peer line lacks {cmd}: {peer}"
        );
        assert!(
            sub.lines().any(|l| l.trim_start().starts_with(cmd)),
            "peer --help lacks {cmd}"
        );
    }
}

#[test]
fn pki_help_lists_the_trust_commands() {
    let mut c = ttx();
    c.args(["pki", "--help"]);
    let help = run(c, None).ok().to_string();
    for cmd in ["crl", "deny", "undeny", "trust", "reload"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "pki --help lacks {cmd}: {help}"
        );
    }
    let mut c = ttx();
    c.args(["pki", "crl", "--help"]);
    let crl = run(c, None).ok().to_string();
    assert!(crl.contains("install") && crl.contains("--ca"), "{crl}");
    let mut c = ttx();
    c.args(["pki", "trust", "--help"]);
    let trust = run(c, None).ok().to_string();
    assert!(trust.contains("add") && trust.contains("remove"), "{trust}");
}

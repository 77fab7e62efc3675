//! `ttx pki crl install`, `ttx pki deny|undeny`, `ttx pki trust add|remove`: trust changes on a
//! node's data dir by command, each checked (see [`crate::pki::admin`]) and then applied to the
//! running node with a reload, without a restart.

use std::path::PathBuf;

use serde_json::json;

use super::client::{print_json, Client, NodeDir};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::federation::ReloadAnswer;
use crate::node::RuntimeInfo;
use crate::pki::admin::{self, TrustChange};

/// `ttx pki crl ...` subcommands on a node.
#[derive(Debug, clap::Subcommand)]
pub enum CrlCommand {
    /// Install a CRL of a trusted CA on this node (DIR/tls/crl/, replacing that CA's previous
    /// one) and reload the running node: revoked peers' connections close.
    Install {
        /// The CRL (PEM, as `ttx pki crl --ca` writes it).
        file: PathBuf,
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
}

/// `ttx pki trust ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TrustCommand {
    /// Trust a CA of this node's federation (added to the CA bundle, tls/ca.pem) and reload.
    Add {
        /// The CA certificate (PEM).
        ca_cert: PathBuf,
        /// Its CRL, needed at once when this node uses CRLs (every trusted CA needs one then).
        #[arg(long, value_name = "FILE")]
        crl: Option<PathBuf>,
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
    /// Stop trusting a CA (out of the bundle, its CRLs out of tls/crl/) and reload: its
    /// peers' connections close. Refused while this node's own certificate is from it.
    Remove {
        /// The CA certificate (PEM).
        ca_cert: PathBuf,
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    crate::pki::files::read(path, "check the path").map_err(super::pki::failure)
}

fn node_config(dd: &DataDir) -> anyhow::Result<Config> {
    super::pki::load_config(dd)
}

/// Runs `change` on the chosen data dir, then reloads the node running on it.
fn change(
    node: &NodeDir,
    json: bool,
    change: impl FnOnce(&DataDir, &Config) -> Result<TrustChange, crate::pki::PkiError>,
) -> anyhow::Result<()> {
    let dd = node.resolve()?;
    let config = node_config(&dd)?;
    let done = change(&dd, &config).map_err(super::pki::failure)?;
    let mut text = format!("{}: {}", done.action, done.subject);
    for f in &done.files {
        text.push_str(&format!("\n  {}", f.display()));
    }
    if let Some(why) = &done.unchecked {
        text.push_str(&format!(
            "\nnote: not checked against the node's trust, which does not load yet: {why}"
        ));
    }
    let (reload, note) = reload_running(&dd, &text)?;
    if json {
        return print_json(&json!({"change": done, "reload": reload, "note": note}));
    }
    outln!("{text}");
    match &reload {
        Some(r) => outln!(
            "reloaded the running node: {} CA(s), {} CRL(s), {} denied key(s); {} connection(s) \
             kept, {} closed",
            r.cas,
            r.crls,
            r.denied_keys,
            r.kept,
            r.closed.len()
        ),
        None => outln!("{}", note.as_deref().unwrap_or_default()),
    }
    for (peer, reason) in reload.iter().flat_map(|r| &r.closed) {
        outln!("  closed {peer}: {reason}");
    }
    Ok(())
}

/// Reloads the node running on `dd`, if one is: its answer, or why there was nothing to reload.
/// A running node that fails to reload is an error (the files are changed; say so).
fn reload_running(
    dd: &DataDir,
    changed: &str,
) -> anyhow::Result<(Option<ReloadAnswer>, Option<String>)> {
    let running = RuntimeInfo::read(dd)
        .ok()
        .filter(|info| std::path::Path::new(&format!("/proc/{}", info.pid)).exists());
    if running.is_none() {
        return Ok((
            None,
            Some(format!(
                "no node is running on {}: the change applies when it starts",
                dd.root().display()
            )),
        ));
    }
    match Client::connect(dd).and_then(|c| c.post::<ReloadAnswer>("/v1/pki/reload", &json!({}))) {
        Ok(r) => Ok((Some(r), None)),
        Err(e) if format!("{e:#}").contains("does not listen for peers") => Ok((
            None,
            Some("the node does not listen for peers: the change applies when it does".into()),
        )),
        Err(e) => Err(e.context(format!(
            "{changed}\nbut the running node did not reload: fix what it says, then `ttx pki \
             reload`"
        ))),
    }
}

/// `ttx pki crl install FILE`.
pub fn crl(cmd: CrlCommand, json: bool) -> anyhow::Result<()> {
    let CrlCommand::Install { file, node } = cmd;
    let pem = read(&file)?;
    change(&node, json, |dd, c| admin::install_crl(dd, &c.tls, &pem))
}

/// `ttx pki deny SPKI`.
pub fn deny(spki: &str, node: &NodeDir, json: bool) -> anyhow::Result<()> {
    change(node, json, |dd, c| admin::deny(dd, &c.tls, spki))
}

/// `ttx pki undeny SPKI`.
pub fn undeny(spki: &str, node: &NodeDir, json: bool) -> anyhow::Result<()> {
    change(node, json, |dd, c| admin::undeny(dd, &c.tls, spki))
}

/// `ttx pki trust add|remove`.
pub fn trust(cmd: TrustCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        TrustCommand::Add { ca_cert, crl, node } => {
            let ca = read(&ca_cert)?;
            let crl = crl.as_deref().map(read).transpose()?;
            change(&node, json, |dd, c| {
                admin::trust_add(dd, &c.tls, &c.node.federation, &ca, crl.as_deref())
            })
        }
        TrustCommand::Remove { ca_cert, node } => {
            let ca = read(&ca_cert)?;
            change(&node, json, |dd, c| admin::trust_remove(dd, &c.tls, &ca))
        }
    }
}

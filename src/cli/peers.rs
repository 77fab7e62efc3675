//! `ttx peer ...` and `ttx pki reload`: the peer registry and trust of a running node.

use serde_json::json;

use super::client::{print_json, NodeDir};
use crate::federation::{PeerStatus, PingAnswer, ReloadAnswer};

/// `ttx peer ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PeerCommand {
    /// Register a partner site (or this site's standby), or change one: on an existing peer only
    /// what is given changes (addresses, pins, permissions); the rest is kept.
    Add {
        /// The peer's site.
        site: String,
        /// Where to reach it: HOST:PORT[,HOST:PORT...] (primary first, then its standby);
        /// required for a new peer.
        #[arg(long, value_delimiter = ',')]
        addr: Vec<String>,
        /// Pin its key (SPKI SHA-256 from `ttx pki show`): no shared CA needed. Replaces the
        /// peer's pins.
        #[arg(long, value_delimiter = ',', conflicts_with = "unpin")]
        pin: Vec<String>,
        /// Drop every pin of the peer (its certificate must then chain to a trusted CA).
        #[arg(long)]
        unpin: bool,
        /// What it may do: exchange (a new peer's default), standby (only a node of this
        /// site), witness (another site: on the witness, that site's nodes may take the lease
        /// on their primary role; on the witnessed site, that peer is its witness). Replaces
        /// the peer's permissions.
        #[arg(long, value_delimiter = ',')]
        allow: Vec<String>,
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
    /// List peers: identity, addresses, connection, version, last seen, RTT, certificate days left.
    List {
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
    /// Remove a peer (its connections close).
    Remove {
        /// Site.
        site: String,
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
    /// A Hello round trip: prints the version and the latency.
    Ping {
        /// Site.
        site: String,
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
    /// Peers with valid certificates that no admin has added.
    Pending {
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
    /// Accept a pending peer (exchange only; use `peer add` for more).
    Accept {
        /// Site.
        site: String,
        /// Where to reach it: HOST:PORT[,HOST:PORT...] (a pending peer has none yet: without
        /// one, this node cannot dial it, only answer it).
        #[arg(long, value_delimiter = ',')]
        addr: Vec<String>,
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
    /// Deny a peer.
    Deny {
        /// Site.
        site: String,
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
}

/// Runs a peer command.
pub fn run(cmd: PeerCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        PeerCommand::Add {
            site,
            addr,
            pin,
            unpin,
            allow,
            node,
        } => {
            let mut body = serde_json::Map::new();
            body.insert("site".into(), json!(site));
            if !addr.is_empty() {
                body.insert("addrs".into(), json!(addr));
            }
            if !pin.is_empty() || unpin {
                body.insert("pins".into(), json!(pin));
            }
            if !allow.is_empty() {
                body.insert("allow".into(), json!(allow));
            }
            let r: serde_json::Value = node.client()?.post("/v1/peers", &body)?;
            if json {
                return print_json(&r);
            }
            print_change(&site, &r);
        }
        PeerCommand::List { node } => list(&node, "/v1/peers", json, super::render::peers)?,
        PeerCommand::Pending { node } => {
            list(&node, "/v1/peers/pending", json, super::render::pending)?
        }
        PeerCommand::Remove { site, node } => {
            node.client()?.delete(&format!("/v1/peers/{site}"))?;
            if json {
                return print_json(&json!({"removed": site}));
            }
            outln!("peer {site} removed");
        }
        PeerCommand::Accept { site, addr, node } => {
            let body = if addr.is_empty() {
                json!({})
            } else {
                json!({ "addrs": addr })
            };
            decide(&node, &site, "accept", &body, json)?
        }
        PeerCommand::Deny { site, node } => decide(&node, &site, "deny", &json!({}), json)?,
        PeerCommand::Ping { site, node } => {
            let r: PingAnswer = node
                .client()?
                .post(&format!("/v1/peers/{site}/ping"), &json!({}))?;
            if json {
                return print_json(&r);
            }
            outln!(
                "{} via {}: {} in {:.3} ms",
                r.identity,
                r.addr,
                r.version,
                r.latency_ms
            );
        }
    }
    Ok(())
}

fn list(
    node: &NodeDir,
    path: &str,
    json: bool,
    render: fn(&[PeerStatus], &super::times::Times) -> String,
) -> anyhow::Result<()> {
    let peers: Vec<PeerStatus> = node.client()?.get(path, &[])?;
    if json {
        return print_json(&peers);
    }
    out!("{}", render(&peers, &super::times()));
    Ok(())
}

fn decide(
    node: &NodeDir,
    site: &str,
    action: &str,
    body: &serde_json::Value,
    json: bool,
) -> anyhow::Result<()> {
    let r: serde_json::Value = node
        .client()?
        .post(&format!("/v1/peers/{site}/{action}"), body)?;
    if json {
        return print_json(&r);
    }
    print_change(site, &r);
    Ok(())
}

/// `peer telco-b: addresses 192.0.2.1:4433 -> 192.0.2.2:4433`, or `peer telco-b unchanged`.
fn print_change(site: &str, answer: &serde_json::Value) {
    let changes: Vec<&str> = answer["changes"]
        .as_array()
        .map(|c| c.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if answer["changed"] != true || changes.is_empty() {
        outln!("peer {site} unchanged");
    } else {
        outln!("peer {site}: {}", changes.join("; "));
    }
}

/// `ttx pki reload`: the running node re-reads its TLS material and the registry's pins.
pub fn reload(node: NodeDir, json: bool) -> anyhow::Result<()> {
    let r: ReloadAnswer = node.client()?.post("/v1/pki/reload", &json!({}))?;
    if json {
        return print_json(&r);
    }
    outln!(
        "reloaded: {} CA(s), {} CRL(s), {} denied key(s); {} connection(s) kept, {} closed",
        r.cas,
        r.crls,
        r.denied_keys,
        r.kept,
        r.closed.len()
    );
    for (peer, reason) in r.closed {
        outln!("  closed {peer}: {reason}");
    }
    Ok(())
}

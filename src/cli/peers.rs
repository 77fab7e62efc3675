//! `ttx peer ...` and `ttx pki reload`: the peer registry and trust of a running node.

use serde_json::json;

use super::client::{print_json, NodeDir};
use crate::federation::{PeerStatus, PingAnswer, ReloadAnswer};

/// `ttx peer ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PeerCommand {
    /// Register (or update) a partner site, or this site's standby.
    Add {
        /// The peer's site.
        site: String,
        /// Where to reach it: HOST:PORT[,HOST:PORT...] (primary first, then its standby).
        #[arg(long, value_delimiter = ',', required = true)]
        addr: Vec<String>,
        /// Pin its key (SPKI SHA-256 from `ttx pki show`): no shared CA needed.
        #[arg(long, value_delimiter = ',')]
        pin: Vec<String>,
        /// What it may do: exchange (default), standby.
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

fn print_peers(peers: &[PeerStatus]) {
    out!("{}", super::render::peers(peers, &super::times()));
}

/// Runs a peer command.
pub fn run(cmd: PeerCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        PeerCommand::Add {
            site,
            addr,
            pin,
            allow,
            node,
        } => {
            let body = json!({"site": site, "addrs": addr, "pins": pin, "allow": allow});
            let r: serde_json::Value = node.client()?.post("/v1/peers", &body)?;
            if json {
                return print_json(&r);
            }
            outln!(
                "peer {site} {}",
                if r["changed"] == true {
                    "registered"
                } else {
                    "unchanged"
                }
            );
        }
        PeerCommand::List { node } => list(&node, "/v1/peers", json)?,
        PeerCommand::Pending { node } => list(&node, "/v1/peers/pending", json)?,
        PeerCommand::Remove { site, node } => {
            node.client()?.delete(&format!("/v1/peers/{site}"))?;
            if json {
                return print_json(&json!({"removed": site}));
            }
            outln!("peer {site} removed");
        }
        PeerCommand::Accept { site, node } => decide(&node, &site, "accept", json)?,
        PeerCommand::Deny { site, node } => decide(&node, &site, "deny", json)?,
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

fn list(node: &NodeDir, path: &str, json: bool) -> anyhow::Result<()> {
    let peers: Vec<PeerStatus> = node.client()?.get(path, &[])?;
    if json {
        return print_json(&peers);
    }
    print_peers(&peers);
    Ok(())
}

fn decide(node: &NodeDir, site: &str, action: &str, json: bool) -> anyhow::Result<()> {
    let r: serde_json::Value = node
        .client()?
        .post(&format!("/v1/peers/{site}/{action}"), &json!({}))?;
    if json {
        return print_json(&r);
    }
    outln!(
        "peer {site}: {}",
        if action == "deny" {
            "denied"
        } else {
            "accepted"
        }
    );
    Ok(())
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

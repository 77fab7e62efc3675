//! `ttx verify` and `ttx promote`: the site log of a running node.

use super::client::{print_json, Client, NodeDir};
use crate::api::site::{PromoteAnswer, VerifyAnswer};

/// Arguments of `ttx verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Also compare with another node of this site at the same position (its QUIC address,
    /// HOST:PORT) and print the first difference; exits 1 when they differ.
    #[arg(long, value_name = "HOST:PORT")]
    pub against: Option<String>,
    /// How long to wait for both nodes to be at one position, in seconds (at most 60).
    #[arg(long, value_name = "SECS", default_value_t = 10, requires = "against")]
    pub wait: u64,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// `ttx verify`: the site position, the digest of the state there, and the integrity checks.
/// Exits 1 when a check fails, or (with `--against`) when the other node's state differs.
pub fn verify(a: VerifyArgs, json: bool) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(addr) = &a.against {
        query.push(("against", addr.clone()));
        query.push(("wait_ms", (a.wait.min(60) * 1000).to_string()));
    }
    let v: VerifyAnswer = Client::connect(&a.node.resolve()?)?.get("/v1/verify", &query)?;
    if json {
        print_json(&v)?;
    } else {
        let r = &v.verification;
        println!(
            "site {}  node {}  role {}  epoch {}",
            v.site, v.node, v.role.role, v.role.epoch
        );
        println!(
            "position {}  head event {}  (epoch {})",
            r.position,
            r.head_id
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into()),
            r.head_epoch
        );
        println!("digest {}", r.digest);
        println!(
            "quick_check {}  search index {}",
            r.quick_check, r.search_index
        );
    }
    if let (Some(c), false) = (&v.against, json) {
        if c.same {
            println!(
                "against {} ({}): the same state at position {}",
                c.against, c.node, c.position
            );
        } else {
            println!(
                "against {} ({}): DIFFERENT at position {}: its digest {}",
                c.against, c.node, c.position, c.digest
            );
        }
    }
    if !v.ok {
        anyhow::bail!(
            "the store failed its checks: quick_check {}, search index {}",
            v.verification.quick_check,
            v.verification.search_index
        );
    }
    if let Some(c) = v.against.as_ref().filter(|c| !c.same) {
        let first = c
            .first_difference
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_else(|| "not found".into());
        anyhow::bail!(
            "this node's state differs from {} ({}) at position {}: first difference {first}",
            c.against,
            c.node,
            c.position
        );
    }
    Ok(())
}

/// `ttx promote`: make this standby the site's primary (a new epoch, durable before it answers).
pub fn promote(node: NodeDir, json: bool) -> anyhow::Result<()> {
    let a: PromoteAnswer =
        Client::connect(&node.resolve()?)?.post("/v1/promote", &serde_json::json!({}))?;
    if json {
        return print_json(&a);
    }
    println!(
        "promoted: this node is the primary of epoch {} (its first event is at position {})",
        a.epoch, a.position
    );
    Ok(())
}

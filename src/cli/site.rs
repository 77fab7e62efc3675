//! `ttx verify` and `ttx promote`: the site log of a running node.

use super::client::{print_json, Client, NodeDir};
use crate::api::site::{PromoteAnswer, VerifyAnswer};

/// `ttx verify`: the site position, the digest of the state there, and the integrity checks.
/// Exits 1 when a check fails.
pub fn verify(node: NodeDir, json: bool) -> anyhow::Result<()> {
    let v: VerifyAnswer = Client::connect(&node.resolve()?)?.get("/v1/verify", &[])?;
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
    if !v.ok {
        anyhow::bail!(
            "the store failed its checks: quick_check {}, search index {}",
            v.verification.quick_check,
            v.verification.search_index
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

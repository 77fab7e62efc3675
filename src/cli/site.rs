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

/// `ttx switchover [--abort]`.
#[derive(Debug, clap::Args)]
pub struct SwitchoverArgs {
    #[command(flatten)]
    node: NodeDir,
    /// Abandon a hand-over the standby did not take: this node becomes the primary again.
    /// Only when `ttx status` on the standby shows it is still a standby.
    #[arg(long)]
    abort: bool,
}

/// `ttx switchover`: on the primary, hand over to the standby and follow it; on the standby,
/// ask the primary to hand over and take over.
pub fn switchover(a: SwitchoverArgs, json: bool) -> anyhow::Result<()> {
    let client = Client::connect(&a.node.resolve()?)?;
    let body = serde_json::json!({ "abort": a.abort });
    let answer: serde_json::Value = client.post("/v1/switchover", &body)?;
    if json {
        return print_json(&answer);
    }
    if a.abort {
        println!(
            "switchover abandoned: this node is {} at epoch {}",
            answer["role"].as_str().unwrap_or("-"),
            answer["epoch"]
        );
        return Ok(());
    }
    let a: crate::replication::SwitchoverAnswer = serde_json::from_value(answer)?;
    match a.ran_on.as_str() {
        "primary" => println!(
            "switched over: {} is the primary of epoch {}; this node is its standby, following it at {} (writes paused {} ms here)",
            a.new_primary,
            a.epoch,
            a.follows.as_deref().unwrap_or("-"),
            a.paused_ms.unwrap_or_default()
        ),
        _ => println!(
            "switched over: this node ({}) is the primary of epoch {}; the old primary is its standby",
            a.new_primary, a.epoch
        ),
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

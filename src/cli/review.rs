//! `ttx review list|show|apply|discard`: the review list of a deposed primary's events that
//! never reached the site's log (kept by `ttx standby rejoin`), through the node's API. Admin
//! only.

use serde::Deserialize;
use serde_json::json;

use super::client::{print_json, NodeDir};
use crate::store::review::ReviewRow;
use crate::store::writer::ReviewAck;

/// `ttx review …`.
#[derive(Debug, clap::Subcommand)]
pub enum ReviewCommand {
    /// Every item: number, state, the original event's kind, ticket, actor and time.
    List(ListArgs),
    /// One item with its original event's body.
    Show(ItemArgs),
    /// Re-enact the item as a new write of the current epoch (a note on the same ticket, a
    /// ticket opened in the tail as a new ticket, a status move if it still applies).
    Apply(ItemArgs),
    /// Keep the item on the list, marked discarded, saying why.
    Discard(DiscardArgs),
}

/// Arguments of `ttx review list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// An item by number.
#[derive(Debug, clap::Args)]
pub struct ItemArgs {
    /// The item's number (from `ttx review list`).
    pub number: i64,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx review discard`.
#[derive(Debug, clap::Args)]
pub struct DiscardArgs {
    /// The item's number (from `ttx review list`).
    pub number: i64,
    /// Why (kept with the item, and in the site's log).
    #[arg(long)]
    pub reason: Option<String>,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

#[derive(Deserialize)]
struct List {
    items: Vec<ReviewRow>,
}

/// Runs a review command.
pub fn run(cmd: ReviewCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        ReviewCommand::List(a) => {
            let list: List = a.node.client()?.get("/v1/review", &[])?;
            if json {
                return print_json(&list.items);
            }
            out!("{}", table(&list.items));
            Ok(())
        }
        ReviewCommand::Show(a) => {
            let row: ReviewRow = a
                .node
                .client()?
                .get(&format!("/v1/review/{}", a.number), &[])?;
            if json {
                return print_json(&row);
            }
            show(&row);
            Ok(())
        }
        ReviewCommand::Apply(a) => {
            let ack: ReviewAck = a
                .node
                .client()?
                .post(&format!("/v1/review/{}/apply", a.number), &json!({}))?;
            print_ack(&ack, json)
        }
        ReviewCommand::Discard(a) => {
            let ack: ReviewAck = a.node.client()?.post(
                &format!("/v1/review/{}/discard", a.number),
                &json!({"reason": a.reason}),
            )?;
            print_ack(&ack, json)
        }
    }
}

fn ticket(r: &ReviewRow) -> String {
    match (r.ticket_number, r.item.ticket) {
        (Some(n), _) => n.to_string(),
        (None, Some(_)) => "(tail)".into(),
        (None, None) => "-".into(),
    }
}

/// The items as a table.
fn table(rows: &[ReviewRow]) -> String {
    use std::fmt::Write as _;
    if rows.is_empty() {
        return "no review items\n".into();
    }
    let t = super::times();
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:>4}  {:<9}  {:<16}  {:>6}  {:<12}  {:<5}  {:<16}  WRITTEN",
        "ITEM", "STATE", "KIND", "TT", "ACTOR", "EPOCH", "NODE"
    );
    for r in rows {
        let _ = writeln!(
            o,
            "{:>4}  {:<9}  {:<16}  {:>6}  {:<12}  {:<5}  {:<16}  {}",
            r.number,
            r.state,
            r.item.kind,
            ticket(r),
            r.item.actor,
            r.item.epoch,
            r.item.node,
            t.absolute(r.item.at)
        );
    }
    o
}

fn show(r: &ReviewRow) {
    let t = super::times();
    outln!("review item {} ({})", r.number, r.state);
    outln!(
        "event      {} at position {} of {} (epoch {})",
        r.item.id,
        r.item.position,
        r.item.node,
        r.item.epoch
    );
    outln!("kind       {}", r.item.kind);
    outln!("ticket     {}", ticket(r));
    outln!("written    {} by {}", t.absolute(r.item.at), r.item.actor);
    if let (Some(by), Some(at)) = (&r.decided_by, r.decided_at) {
        outln!("decided    {} by {} at {}", r.state, by, t.absolute(at));
    }
    if let Some(o) = &r.outcome {
        outln!("outcome    {o}");
    }
    let body = serde_json::from_str::<serde_json::Value>(&r.item.body)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| r.item.body.clone());
    outln!("body\n{body}");
}

fn print_ack(a: &ReviewAck, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(a);
    }
    outln!(
        "review item {} {}{}",
        a.item,
        a.review_state,
        a.outcome
            .as_ref()
            .map(|o| format!(": {o}"))
            .unwrap_or_default()
    );
    Ok(())
}

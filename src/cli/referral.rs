//! `ttx refer`, `ttx referral accept|reject|close|reopen|cancel|ask`, `ttx referrals`: the
//! referral exchange from the command line, through the node's API.

use serde_json::json;

use super::client::{print_json, NodeDir};
use crate::exchange::record::short;
use crate::store::exchange::ReferralRow;
use crate::store::writer::ReferralAck;

/// Arguments of `ttx refer`.
#[derive(Debug, clap::Args)]
pub struct ReferArgs {
    /// Our ticket's number.
    pub number: i64,
    /// The partner site (see `ttx peer list`).
    #[arg(long)]
    pub to: String,
    /// How long the partner has to accept or reject (`4h`, `90m`); an alert fires then.
    #[arg(long, value_name = "DURATION")]
    pub respond_within: Option<String>,
    /// A first note for the partner (sent only if its sharing policy shares notes).
    #[arg(long)]
    pub note: Option<String>,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// `ttx referral …`.
#[derive(Debug, clap::Subcommand)]
pub enum ReferralCommand {
    /// Take on a partner's referral (the handling side).
    Accept(ReferralId),
    /// Refuse a partner's referral, saying why (the handling side).
    Reject(WithReason),
    /// Confirm the partner's resolution (the referring side).
    Close(ReferralId),
    /// The problem is back: reopen the partner's ticket, saying why (the referring side).
    Reopen(WithReason),
    /// Withdraw a referral, saying why (the referring side).
    Cancel(WithReason),
    /// Ask the other side for information (it answers with a shared note).
    Ask(WithQuestion),
    /// Show or change what a partner may see of our tickets and how much it may send us
    /// (admin to change): auto-accept, shared notes, the header fields sent with a referral,
    /// the message size and rate caps.
    Policy(PolicyArgs),
}

/// Arguments of `ttx referral policy`.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// The partner site.
    pub site: String,
    /// Accept its referrals without an operator.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub auto_accept: Option<bool>,
    /// Send it shared notes (internal notes never leave, whatever this says).
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub shared_notes: Option<bool>,
    /// The header fields sent with a referral, comma separated (severity, priority,
    /// problem-start, network, circuit, nodes, next-action, reporter.org, cf.NAME); `none`
    /// for the subject only.
    #[arg(long, value_name = "FIELDS")]
    pub fields: Option<String>,
    /// The largest message it may send us, in bytes (over it: refused `too large`).
    #[arg(long, value_name = "BYTES")]
    pub max_message_bytes: Option<u32>,
    /// Messages a second it may send us on average (over it: refused `rate limited`, and
    /// its node sends again later).
    #[arg(long, value_name = "N")]
    pub rate: Option<u32>,
    /// Messages it may send in a burst above that rate.
    #[arg(long, value_name = "N")]
    pub burst: Option<u32>,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

fn on_off(v: &str) -> Result<bool, String> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{v:?}: use on or off")),
    }
}

/// `ttx referral policy`.
fn policy(a: PolicyArgs, json: bool) -> anyhow::Result<()> {
    let c = a.node.client()?;
    let path = format!("/v1/peers/{}/sharing", a.site);
    let fields = a.fields.map(|f| {
        if f.trim() == "none" {
            Vec::new()
        } else {
            f.split(',').map(|s| s.trim().to_string()).collect()
        }
    });
    let change = crate::exchange::policy::SharingChange {
        auto_accept: a.auto_accept,
        shared_notes: a.shared_notes,
        fields,
        max_message_bytes: a.max_message_bytes,
        rate_per_sec: a.rate,
        burst: a.burst,
    };
    let policy: crate::exchange::SharingPolicy =
        if change == crate::exchange::policy::SharingChange::default() {
            c.get(&path, &[])?
        } else {
            c.post(&path, &change)?
        };
    if json {
        return print_json(&policy);
    }
    let on = |b: bool| if b { "on" } else { "off" };
    let fields: Vec<&str> = policy.fields.iter().map(String::as_str).collect();
    outln!("auto-accept   {}", on(policy.auto_accept));
    outln!("shared notes  {}", on(policy.shared_notes));
    outln!(
        "fields        subject{}{}",
        if fields.is_empty() { "" } else { ", " },
        fields.join(", ")
    );
    outln!(
        "caps          {} bytes a message, {}/s (bursts of {})",
        policy.max_message_bytes,
        policy.rate_per_sec,
        policy.burst
    );
    Ok(())
}

/// A referral by id (the first 8 hex digits `ttx referrals` shows are enough).
#[derive(Debug, clap::Args)]
pub struct ReferralId {
    /// The referral id or a unique prefix of it.
    pub id: String,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// A referral and a reason.
#[derive(Debug, clap::Args)]
pub struct WithReason {
    /// The referral id or a unique prefix of it.
    pub id: String,
    /// Why (goes to the other side's history).
    #[arg(long)]
    pub reason: String,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// A referral and a question.
#[derive(Debug, clap::Args)]
pub struct WithQuestion {
    /// The referral id or a unique prefix of it.
    pub id: String,
    /// The question.
    pub question: String,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx referrals`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

fn print_ack(a: &ReferralAck, json: bool, what: &str) -> anyhow::Result<()> {
    if json {
        return print_json(a);
    }
    outln!(
        "referral {} ({} TT {}, {}): {what}, now {}",
        short(a.referral),
        a.peer,
        a.ticket,
        a.referral,
        a.referral_state
    );
    Ok(())
}

/// `ttx refer`.
pub fn refer(a: ReferArgs, json: bool) -> anyhow::Result<()> {
    let c = a.node.client()?;
    let body = json!({"to": a.to, "respond_within": a.respond_within, "note": a.note});
    let ack: ReferralAck = c.post(&format!("/v1/tickets/{}/refer", a.number), &body)?;
    print_ack(&ack, json, "referred")
}

/// `ttx referral …`.
pub fn run(cmd: ReferralCommand, json: bool) -> anyhow::Result<()> {
    let (id, node, action, body, what) = match cmd {
        ReferralCommand::Policy(a) => return policy(a, json),
        ReferralCommand::Accept(r) => (r.id, r.node, "accept", json!({}), "accepted"),
        ReferralCommand::Close(r) => (r.id, r.node, "close", json!({}), "closed"),
        ReferralCommand::Reject(r) => (
            r.id,
            r.node,
            "reject",
            json!({"reason": r.reason}),
            "rejected",
        ),
        ReferralCommand::Reopen(r) => (
            r.id,
            r.node,
            "reopen",
            json!({"reason": r.reason}),
            "reopened",
        ),
        ReferralCommand::Cancel(r) => (
            r.id,
            r.node,
            "cancel",
            json!({"reason": r.reason}),
            "cancelled",
        ),
        ReferralCommand::Ask(r) => (
            r.id,
            r.node,
            "ask",
            json!({"question": r.question}),
            "asked",
        ),
    };
    let c = node.client()?;
    let ack: ReferralAck = c.post(&format!("/v1/referrals/{id}/{action}"), &body)?;
    print_ack(&ack, json, what)
}

/// The answer of `GET /v1/referrals`.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
struct List {
    items: Vec<ReferralRow>,
}

/// `ttx referrals`.
pub fn list(a: ListArgs, json: bool) -> anyhow::Result<()> {
    let list: List = a.node.client()?.get("/v1/referrals", &[])?;
    if json {
        return print_json(&list.items);
    }
    out!("{}", table(&list.items, &super::times()));
    Ok(())
}

/// The referrals as a table: id, direction and partner, our ticket, the partner's reference,
/// the state (or overdue / orphaned first), the respond-by time.
pub fn table(rows: &[ReferralRow], times: &super::times::Times) -> String {
    use std::fmt::Write as _;
    if rows.is_empty() {
        return "no referrals\n".into();
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<8}  {:<4} {:<16}  {:>6}  {:<22}  {:<11}  RESPOND BY",
        "ID", "DIR", "PARTNER", "TT", "PARTNER REF", "STATE"
    );
    for r in rows {
        let dir = match r.side {
            crate::exchange::Side::Out => "to",
            crate::exchange::Side::In => "from",
        };
        let _ = writeln!(
            o,
            "{:<8}  {:<4} {:<16}  {:>6}  {:<22}  {:<11}  {}",
            short(r.id),
            dir,
            r.peer,
            r.ticket,
            r.partner_ref.as_deref().unwrap_or("-"),
            r.label,
            r.respond_by
                .map_or_else(|| "-".to_string(), |t| times.at(t))
        );
    }
    o
}

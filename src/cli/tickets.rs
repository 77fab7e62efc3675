//! Ticket commands: new, note, show, list, search, set, take, link, timer, alerts, resolve,
//! close, reopen. Each is one request to the node's API.

use std::io::Read;

use serde_json::json;

use super::client::{print_json, Client, NodeDir};
use super::render;
use super::{Failure, FailureKind};
use crate::api::tickets::ShowAnswer;
use crate::model::event::EventKind;
use crate::store::query::FullNote;
use crate::store::query::{SearchHit, TicketRow, Timer};
use crate::store::writer::TicketAck;

/// Arguments of `ttx new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// One-line subject.
    pub subject: String,
    /// trouble, complaint, engineering or meta.
    #[arg(long = "type", value_name = "TYPE")]
    pub ticket_type: Option<String>,
    /// Customer severity 1 (worst) to 4.
    #[arg(long)]
    pub severity: Option<u8>,
    /// NOC priority 1 (first) to 4.
    #[arg(short, long)]
    pub priority: Option<u8>,
    /// Queue.
    #[arg(short, long)]
    pub queue: Option<String>,
    /// Owner: an operator's name, or ext:NAME for someone outside this site.
    #[arg(short, long)]
    pub owner: Option<String>,
    /// First update; `-` reads it from standard input.
    #[arg(long)]
    pub description: Option<String>,
    /// When the problem started, if before now (-30m, 14:05, 2026-12-01 14:05, RFC 3339).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub problem_start: Option<String>,
    /// Affected nodes or machines (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Network affected.
    #[arg(long)]
    pub network: Option<String>,
    /// Circuit id.
    #[arg(long)]
    pub circuit: Option<String>,
    /// Reporter's name.
    #[arg(long)]
    pub reporter_name: Option<String>,
    /// Reporter's organisation.
    #[arg(long)]
    pub reporter_org: Option<String>,
    /// Reporter's phone.
    #[arg(long)]
    pub reporter_phone: Option<String>,
    /// Reporter's email.
    #[arg(long)]
    pub reporter_email: Option<String>,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments naming one ticket.
#[derive(Debug, clap::Args)]
pub struct TicketArg {
    /// Ticket number.
    pub number: i64,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Ticket number.
    pub number: i64,
    /// Show long notes whole: fetch the text of notes the node sends by reference (over
    /// 64 KiB), and do not fold notes of more than 40 lines to their first 20.
    #[arg(long)]
    pub full: bool,
    /// Print straight to the terminal instead of through the pager ($PAGER, or less).
    #[arg(long)]
    pub no_pager: bool,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx take`.
#[derive(Debug, clap::Args)]
pub struct TakeArgs {
    /// Ticket number.
    pub number: i64,
    /// Take it even though another operator owns it (RT's Steal).
    #[arg(long)]
    pub steal: bool,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments naming one timer of a ticket.
#[derive(Debug, clap::Args)]
pub struct TimerRef {
    /// Ticket number.
    pub number: i64,
    /// The timer: its number on the ticket (`ttx timers N` lists them) or its id.
    pub timer: String,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx snooze`.
#[derive(Debug, clap::Args)]
#[group(id = "until", required = true, multiple = false)]
pub struct SnoozeArgs {
    /// Ticket number.
    pub number: i64,
    /// The timer: its number on the ticket (`ttx timers N` lists them) or its id.
    pub timer: String,
    /// Go off again after this long (30m, 2h).
    #[arg(long = "in", value_name = "DURATION", group = "until")]
    pub after: Option<String>,
    /// Go off again at this time.
    #[arg(long, value_name = "TIME", group = "until", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx ack`.
#[derive(Debug, clap::Args)]
pub struct AckArgs {
    /// Ticket number.
    pub number: i64,
    /// The alert's timer number on the ticket; without it, every unacknowledged alert of the
    /// ticket is acknowledged.
    pub timer: Option<String>,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx note`.
#[derive(Debug, clap::Args)]
pub struct NoteArgs {
    /// Ticket number.
    pub number: i64,
    /// The update; `-` reads it from standard input (a pasted traceroute or mail); left out on
    /// a terminal, $VISUAL or $EDITOR opens for it. A text that starts with `-` is taken as
    /// is (`ttx note 4 "-42 dBm on xe-0/0/1"`).
    #[arg(allow_hyphen_values = true)]
    pub text: Option<String>,
    /// Share with partners (default: internal).
    #[arg(long)]
    pub shared: bool,
    /// When it happened, if not now (-15m, 14:05, 2026-12-01 14:05, RFC 3339).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx list`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Sorts: priority (default: priority, then number), updated (latest \
first), age (oldest first). Columns: AGE since opened, UPDATED since the last change, NEXT DUE \
the next pending timer. Times for --since: as every TIME (see `ttx --help`).\n\n\
Example: ttx list -q backbone -p 1 --updated-since -2h --sort updated"
)]
pub struct ListArgs {
    /// Only this status (default: all open work).
    #[arg(short, long)]
    pub status: Option<String>,
    /// Only this queue.
    #[arg(short, long)]
    pub queue: Option<String>,
    /// Only this owner.
    #[arg(short, long, conflicts_with = "mine")]
    pub owner: Option<String>,
    /// Only mine.
    #[arg(short, long)]
    pub mine: bool,
    /// Only this priority (1-4).
    #[arg(short, long)]
    pub priority: Option<u8>,
    /// Only this severity (1-4).
    #[arg(long)]
    pub severity: Option<u8>,
    /// Only this type (trouble, complaint, engineering, meta).
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    pub ticket_type: Option<String>,
    /// Only this network.
    #[arg(long)]
    pub network: Option<String>,
    /// Only tickets naming this affected node.
    #[arg(long)]
    pub node_name: Option<String>,
    /// Only this circuit.
    #[arg(long)]
    pub circuit: Option<String>,
    /// Only tickets whose custom field NAME is VALUE.
    #[arg(long, value_name = "NAME=VALUE")]
    pub cf: Option<String>,
    /// Only tickets opened since TIME.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub created_since: Option<String>,
    /// Only tickets changed since TIME.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub updated_since: Option<String>,
    /// Order: priority, updated or age.
    #[arg(long, default_value = "priority", value_parser = ["priority", "updated", "age"])]
    pub sort: String,
    /// Most rows (1 to 1000).
    #[arg(short = 'n', long, default_value_t = 100)]
    pub limit: u32,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Words to find in subjects and updates.
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
    /// Most hits.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx set`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Fields: subject, type, severity, priority, queue, owner, problem-start, \
next-action, network, circuit, nodes, requestors, cc, admin-cc, reporter.name, reporter.org, \
reporter.phone, reporter.email, escalated-to, cf.NAME (a custom field), status (new, open, \
pending, referred, cancelled; resolve, close and reopen have their own commands). Lists (nodes, \
requestors, cc, admin-cc) also take FIELD+=VALUE and FIELD-=VALUE. An empty VALUE clears. \
owner takes an operator's name or ext:NAME; problem-start any TIME (see `ttx --help`).\n\n\
Example: ttx set 42 status=pending next-action='call telco' cc+=noc-b@example.net"
)]
pub struct SetArgs {
    /// Ticket number.
    pub number: i64,
    /// FIELD=VALUE (lists also FIELD+=VALUE, FIELD-=VALUE).
    #[arg(required = true, num_args = 1..)]
    pub assignments: Vec<String>,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx link`.
#[derive(Debug, clap::Args)]
#[group(id = "kind", required = true, multiple = false)]
pub struct LinkArgs {
    /// Ticket number.
    pub number: i64,
    /// Mentions ticket M.
    #[arg(long, value_name = "M", group = "kind")]
    pub refers_to: Option<i64>,
    /// Cannot be resolved before ticket M.
    #[arg(long, value_name = "M", group = "kind")]
    pub depends_on: Option<i64>,
    /// Is one of the tickets M gathers.
    #[arg(long, value_name = "M", group = "kind")]
    pub member_of: Option<i64>,
    /// Was merged into M.
    #[arg(long, value_name = "M", group = "kind")]
    pub merged_into: Option<i64>,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx timer`.
#[derive(Debug, clap::Args)]
#[group(id = "when", required = true, multiple = false)]
pub struct TimerArgs {
    /// Ticket number.
    pub number: i64,
    /// Reminder text ("Remind Site: TT 42").
    pub text: String,
    /// After this long (2h, 15m, 1d).
    #[arg(long = "in", value_name = "DURATION", group = "when")]
    pub after: Option<String>,
    /// At this time.
    #[arg(long, value_name = "TIME", group = "when", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx alerts`.
#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    /// Include acknowledged alerts and alerts on tickets no longer open.
    #[arg(long)]
    pub all: bool,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx resolve`.
#[derive(Debug, clap::Args)]
pub struct ResolveArgs {
    /// Ticket number.
    pub number: i64,
    /// One line saying what fixed it.
    #[arg(long)]
    pub resolution: String,
    /// The key component.
    #[arg(long)]
    pub component: Option<String>,
    /// Who it was escalated to.
    #[arg(long)]
    pub escalated_to: Option<String>,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx close`.
#[derive(Debug, clap::Args)]
pub struct CloseArgs {
    /// Ticket number.
    pub number: i64,
    /// Who checked the resolution: an operator's name, or ext:NAME for someone outside.
    #[arg(long)]
    pub checked_by: Option<String>,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx reopen`.
#[derive(Debug, clap::Args)]
pub struct ReopenArgs {
    /// Ticket number.
    pub number: i64,
    /// Why.
    #[arg(long)]
    pub reason: String,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// A typed time (`14:00`, `-15m`, ...) as RFC 3339 for the node.
fn typed_time(t: Option<String>) -> anyhow::Result<Option<String>> {
    Ok(t.map(|t| super::times().parse(&t)).transpose()?)
}

fn client(node: &NodeDir) -> anyhow::Result<Client> {
    node.client()
}

/// Reads `-` from standard input; any other text is taken as is.
fn text_or_stdin(text: String) -> anyhow::Result<String> {
    if text != "-" {
        return Ok(text);
    }
    let mut buf = String::new();
    std::io::stdin().read_to_string(&mut buf).map_err(|e| {
        Failure::new(
            FailureKind::Invalid,
            format!("cannot read the text from standard input: {e}"),
        )
    })?;
    Ok(buf)
}

fn ack(a: &TicketAck, json: bool, what: &str) -> anyhow::Result<()> {
    if json {
        return print_json(a);
    }
    out!("{}", render::ack(a, what));
    Ok(())
}

fn post_ack(
    c: &Client,
    number: i64,
    action: &str,
    body: serde_json::Value,
    json: bool,
    what: &str,
) -> anyhow::Result<()> {
    let a: TicketAck = c.post(&format!("/v1/tickets/{number}/{action}"), &body)?;
    ack(&a, json, what)
}

/// `ttx new`.
pub fn new(a: NewArgs, json: bool) -> anyhow::Result<()> {
    let c = client(&a.node)?;
    let description = a.description.map(text_or_stdin).transpose()?;
    if let Some(d) = &description {
        check_size(&a.node, "description", d)?;
    }
    let problem_start = a
        .problem_start
        .as_deref()
        .map(|t| super::times().parse(t))
        .transpose()?;
    let body = json!({
        "subject": a.subject, "type": a.ticket_type, "severity": a.severity, "priority": a.priority,
        "queue": a.queue, "owner": a.owner, "description": description,
        "problem_start": problem_start, "nodes": a.nodes, "network": a.network, "circuit": a.circuit,
        "reporter": {"name": a.reporter_name, "org": a.reporter_org, "phone": a.reporter_phone,
                     "email": a.reporter_email},
    });
    let r: TicketAck = c.post("/v1/tickets", &body)?;
    if json {
        return print_json(&r);
    }
    outln!("TT {} opened ({})", r.number, r.status);
    Ok(())
}

/// Opens `$VISUAL` / `$EDITOR` (else `vi`) on a private temp file for a note, as `git commit`
/// does; lines starting with `#` are dropped, and an empty note is not sent.
fn from_editor(number: i64) -> anyhow::Result<String> {
    use std::io::Write as _;
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(Failure::new(
            FailureKind::Invalid,
            "no note text: give TEXT, or - to read it from standard input",
        )
        .into());
    }
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".into());
    let path = std::env::temp_dir().join(format!("ttx-note-{}.txt", uuid::Uuid::now_v7()));
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?
    };
    writeln!(
        file,
        "\n# The update for ticket {number}. Lines starting with '#' are left out;\n\
         # an empty note is not sent."
    )?;
    drop(file);
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("{editor} \"$1\""), "sh"])
        .arg(&path)
        .status();
    let text = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => anyhow::bail!("the editor ({editor}) failed ({s}): nothing was sent"),
        Err(e) => anyhow::bail!("cannot run the editor ({editor}): {e}"),
    }
    let text: String = text?
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(
            Failure::new(FailureKind::Invalid, "the note is empty: nothing was sent").into(),
        );
    }
    Ok(text)
}

/// Refuses a text the node would refuse, before sending megabytes it will not read.
fn check_size(node: &NodeDir, what: &str, text: &str) -> anyhow::Result<()> {
    let Some(dir) = node.dir() else {
        return Ok(()); // a node reached by --api answers with its own limits
    };
    let Ok(config) = crate::config::Config::load(&dir.config()) else {
        return Ok(()); // the node answers with its own limits
    };
    let (max_note, max_body) = (config.limits.max_note_bytes, config.api.max_body_bytes);
    let message = if text.len() > max_note {
        format!(
            "{what} is {} bytes, at most {max_note} allowed (limits.max_note_bytes)",
            text.len()
        )
    } else if text.len() + 4096 > max_body {
        format!(
            "{what} of {} bytes is larger than api.max_body_bytes ({max_body})",
            text.len()
        )
    } else {
        return Ok(());
    };
    Err(Failure::new(FailureKind::Invalid, message).into())
}

/// `ttx note`.
pub fn note(a: NoteArgs, json: bool) -> anyhow::Result<()> {
    let c = client(&a.node)?;
    let text = match a.text {
        Some(t) => text_or_stdin(t)?,
        None => from_editor(a.number)?,
    };
    check_size(&a.node, "note", &text)?;
    post_ack(
        &c,
        a.number,
        "notes",
        json!({"text": text, "shared": a.shared, "at": typed_time(a.at)?}),
        json,
        "updated",
    )
}

/// `ttx show`.
pub fn show(a: ShowArgs, json: bool) -> anyhow::Result<()> {
    let c = client(&a.node)?;
    let path = format!("/v1/tickets/{}", a.number);
    let mut answer: ShowAnswer = c.get(&path, &[])?;
    // The node answers one page of history at a time: follow the pages to the end.
    while let Some(after) = answer.chart.more_after.take() {
        let next: ShowAnswer = c.get(&path, &[("after", after.to_string())])?;
        answer.chart.history.extend(next.chart.history);
        answer.chart.more_after = next.chart.more_after;
    }
    for entry in &mut answer.chart.history {
        let (Some(bytes), EventKind::NoteAdded { note_id, text, .. }) =
            (entry.note_bytes, &mut entry.event.kind)
        else {
            continue;
        };
        if a.full {
            let note: FullNote = c.get(&format!("{path}/notes/{note_id}"), &[])?;
            *text = note.text;
            entry.note_bytes = None;
        } else if !json {
            *text = format!("[{bytes} bytes, not shown: ttx show {} --full]", a.number);
        }
    }
    if json {
        return print_json(&answer);
    }
    let layout = render::ChartLayout {
        width: render::terminal_width(),
        full: a.full,
    };
    let mut text = render::chart(&answer.chart, &answer.reference, &super::times(), &layout);
    if !answer.attachments.is_empty() {
        text.push_str(&format!(
            "\nATTACHMENTS (ttx attachment get ID)\n{}",
            super::attach::lines(&answer.attachments)
        ));
    }
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let text = if tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) {
        render::colour_chart(&text, answer.chart.ticket.priority)
    } else {
        text
    };
    super::pager::show(&text, tty && !a.no_pager);
    Ok(())
}

/// `ttx list`.
pub fn list(a: ListArgs, json: bool) -> anyhow::Result<()> {
    let times = super::times();
    let mut q: Vec<(&str, String)> = vec![("limit", a.limit.to_string()), ("sort", a.sort)];
    let since = |v: Option<String>| v.map(|t| times.parse(&t)).transpose();
    let optional = [
        ("status", a.status),
        ("queue", a.queue),
        ("owner", a.owner),
        ("priority", a.priority.map(|p| p.to_string())),
        ("severity", a.severity.map(|p| p.to_string())),
        ("type", a.ticket_type),
        ("network", a.network),
        ("node", a.node_name),
        ("circuit", a.circuit),
        ("cf", a.cf),
        ("created_since", since(a.created_since)?),
        ("updated_since", since(a.updated_since)?),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            q.push((k, v));
        }
    }
    if a.mine {
        q.push(("mine", "true".into()));
    }
    let rows: Vec<TicketRow> = client(&a.node)?.get("/v1/tickets", &q)?;
    if json {
        return print_json(&rows);
    }
    out!("{}", render::rows(&rows, &times, render::terminal_width()));
    Ok(())
}

/// `ttx search`.
pub fn search(a: SearchArgs, json: bool) -> anyhow::Result<()> {
    let q = vec![("q", a.text.join(" ")), ("limit", a.limit.to_string())];
    let hits: Vec<SearchHit> = client(&a.node)?.get("/v1/search", &q)?;
    if json {
        return print_json(&hits);
    }
    out!("{}", render::hits(&hits));
    Ok(())
}

/// `ttx set`.
pub fn set(a: SetArgs, json: bool) -> anyhow::Result<()> {
    let c = client(&a.node)?;
    let mut assignments = Vec::with_capacity(a.assignments.len());
    for x in a.assignments {
        assignments.push(match x.split_once('=') {
            Some((f, v))
                if ["problem-start", "problem_start"].contains(&f.trim())
                    && !v.trim().is_empty() =>
            {
                format!("problem-start={}", super::times().parse(v)?)
            }
            _ => x,
        });
    }
    post_ack(
        &c,
        a.number,
        "set",
        json!({"assignments": assignments}),
        json,
        "updated",
    )
}

/// `ttx take`.
pub fn take(a: TakeArgs, json: bool) -> anyhow::Result<()> {
    let c = client(&a.node)?;
    post_ack(
        &c,
        a.number,
        "take",
        json!({"steal": a.steal}),
        json,
        "taken",
    )
}

/// `ttx link`.
pub fn link(a: LinkArgs, json: bool) -> anyhow::Result<()> {
    let (kind, target) = [
        ("refers-to", a.refers_to),
        ("depends-on", a.depends_on),
        ("member-of", a.member_of),
        ("merged-into", a.merged_into),
    ]
    .into_iter()
    .find_map(|(k, t)| t.map(|t| (k, t)))
    .ok_or_else(|| {
        Failure::new(
            FailureKind::Invalid,
            "give one of --refers-to, --depends-on, --member-of, --merged-into",
        )
    })?;
    let c = client(&a.node)?;
    post_ack(
        &c,
        a.number,
        "links",
        json!({"kind": kind, "target": target}),
        json,
        &format!("{kind} TT {target}"),
    )
}

/// `ttx timer`.
pub fn timer(a: TimerArgs, json: bool) -> anyhow::Result<()> {
    let c = client(&a.node)?;
    post_ack(
        &c,
        a.number,
        "timers",
        json!({"in": a.after, "at": typed_time(a.at)?, "text": a.text}),
        json,
        "timer set",
    )
}

/// `ttx alerts`.
pub fn alerts(a: AlertsArgs, json: bool) -> anyhow::Result<()> {
    let q = if a.all {
        vec![("all", "true".to_string())]
    } else {
        vec![]
    };
    let timers: Vec<Timer> = client(&a.node)?.get("/v1/alerts", &q)?;
    if json {
        return print_json(&timers);
    }
    out!("{}", render::alerts(&timers, &super::times()));
    Ok(())
}

/// `ttx resolve`.
pub fn resolve(a: ResolveArgs, json: bool) -> anyhow::Result<()> {
    let c = client(&a.node)?;
    let body = json!({"resolution": a.resolution, "component": a.component, "escalated_to": a.escalated_to});
    post_ack(&c, a.number, "resolve", body, json, "resolved")
}

/// `ttx close`.
pub fn close(a: CloseArgs, json: bool) -> anyhow::Result<()> {
    let c = client(&a.node)?;
    post_ack(
        &c,
        a.number,
        "close",
        json!({"checked_by": a.checked_by}),
        json,
        "closed",
    )
}

/// `ttx reopen`.
pub fn reopen(a: ReopenArgs, json: bool) -> anyhow::Result<()> {
    let c = client(&a.node)?;
    post_ack(
        &c,
        a.number,
        "reopen",
        json!({"reason": a.reason}),
        json,
        "reopened",
    )
}

/// `ttx timers N`.
pub fn timers(a: TicketArg, json: bool) -> anyhow::Result<()> {
    let timers: Vec<Timer> =
        client(&a.node)?.get(&format!("/v1/tickets/{}/timers", a.number), &[])?;
    if json {
        return print_json(&timers);
    }
    out!("{}", render::timers(a.number, &timers, &super::times()));
    Ok(())
}

fn timer_action(
    c: &Client,
    number: i64,
    timer: &str,
    action: &str,
    body: serde_json::Value,
) -> anyhow::Result<TicketAck> {
    let path = format!("/v1/tickets/{number}/timers/{timer}/{action}");
    c.post(&path, &body)
}

/// `ttx cancel-timer N K`.
pub fn cancel_timer(a: TimerRef, json: bool) -> anyhow::Result<()> {
    let c = client(&a.node)?;
    let r = timer_action(&c, a.number, &a.timer, "cancel", json!({}))?;
    ack(&r, json, "timer cancelled")
}

/// `ttx snooze N K --in D`.
pub fn snooze(a: SnoozeArgs, json: bool) -> anyhow::Result<()> {
    let c = client(&a.node)?;
    let body = json!({"in": a.after, "at": typed_time(a.at)?});
    let r = timer_action(&c, a.number, &a.timer, "snooze", body)?;
    ack(&r, json, "timer snoozed")
}

/// `ttx ack N [K]`.
pub fn acknowledge(a: AckArgs, json: bool) -> anyhow::Result<()> {
    let c = client(&a.node)?;
    let which: Vec<String> = match a.timer {
        Some(t) => vec![t],
        None => {
            let timers: Vec<Timer> = c.get(&format!("/v1/tickets/{}/timers", a.number), &[])?;
            let alerts: Vec<String> = timers
                .iter()
                .filter(|t| t.state().is_unacknowledged_alert())
                .map(|t| t.ordinal.to_string())
                .collect();
            if alerts.is_empty() {
                return Err(Failure::new(
                    FailureKind::Refused,
                    format!("ticket {} has no unacknowledged alert", a.number),
                )
                .into());
            }
            alerts
        }
    };
    let mut acks = Vec::new();
    for k in &which {
        acks.push(timer_action(&c, a.number, k, "ack", json!({}))?);
    }
    if json {
        return print_json(&acks);
    }
    for r in &acks {
        out!("{}", render::ack(r, "alert acknowledged"));
    }
    Ok(())
}

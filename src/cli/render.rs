//! Human text for tickets: the chart, lists, search hits, alerts.

use std::fmt::Write;

use super::times::Times;
use crate::model::clock::human_duration;
use crate::model::event::EventKind;
use crate::store::query::{Chart, SearchHit, TicketRow, Timer};

/// The answer to a write: what changed (`TT 3: status new -> pending`), or that nothing did.
pub fn ack(a: &crate::store::writer::TicketAck, what: &str) -> String {
    if a.events.is_empty() && !a.replayed {
        return format!("TT {}: nothing changed ({})\n", a.number, a.status);
    }
    if a.changes.is_empty() {
        return format!("TT {} {what} ({})\n", a.number, a.status);
    }
    format!("TT {}: {}\n", a.number, a.changes.join("; "))
}

/// The terminal's width in columns (`COLUMNS`, else the terminal's, else 100 for a pipe).
pub fn terminal_width() -> usize {
    if let Some(c) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return c;
    }
    terminal_size::terminal_size()
        .map(|(w, _)| usize::from(w.0))
        .unwrap_or(100)
}

/// Cuts `s` to at most `width` characters, marking a cut with `…`.
pub fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One line per ticket, in the order given, fitted to `width` columns: number, priority,
/// severity, status, queue, owner, age, last update, next due timer, then the subject and the
/// next action in what is left (cut with `…`).
pub fn rows(rows: &[TicketRow], times: &Times, width: usize) -> String {
    if rows.is_empty() {
        return "no tickets\n".into();
    }
    let num_w = rows
        .iter()
        .map(|r| r.number.to_string().len())
        .max()
        .unwrap_or(1)
        .max(1);
    let col = |v: &[String], max: usize| {
        v.iter()
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(5, max)
    };
    let queues: Vec<String> = rows.iter().map(|r| r.queue.clone()).collect();
    let owners: Vec<String> = rows
        .iter()
        .map(|r| r.owner.clone().unwrap_or_else(|| "-".into()))
        .collect();
    let (qw, ow) = (col(&queues, 12), col(&owners, 12));
    let line =
        |n: &str, p: &str, s: &str, st: &str, q: &str, o: &str, age: &str, upd: &str, due: &str| {
            format!(
                "{n:>num_w$}  {p:<1} {s:<1} {st:<8} {q:<qw$} {o:<ow$} {age:>4} {upd:>8} {due:>8}  ",
            )
        };
    let head = line(
        "#", "P", "S", "STATUS", "QUEUE", "OWNER", "AGE", "UPDATED", "NEXT DUE",
    );
    let room = width.saturating_sub(head.chars().count()).max(20);
    let mut out = format!("{head}SUBJECT\n");
    for (i, r) in rows.iter().enumerate() {
        let due = r
            .next_due
            .map(|d| times.relative(d).replace(" ago", "").replace("in ", ""))
            .unwrap_or_else(|| "-".into());
        let due = if r.next_due.is_some_and(|d| d <= times.now) {
            format!("{due} late")
        } else {
            due
        };
        let mut subject = r.subject.clone();
        if let Some(next) = r.next_action.as_deref().filter(|n| !n.is_empty()) {
            subject.push_str(" — next: ");
            subject.push_str(next);
        }
        let start = line(
            &r.number.to_string(),
            &r.priority.to_string(),
            &r.severity.to_string(),
            r.status.as_str(),
            &truncate(&queues[i], qw),
            &truncate(&owners[i], ow),
            &times.age(r.created_at),
            &times.age(r.updated_at),
            &due,
        );
        let _ = writeln!(out, "{start}{}", truncate(&subject, room));
    }
    out
}

/// The peer registry, one row per site: every header has its column in every row (`-` when
/// unknown); a pending peer gets a second line with the identity and key it showed.
pub fn peers(peers: &[crate::federation::PeerStatus], times: &Times) -> String {
    if peers.is_empty() {
        return "no peers\n".into();
    }
    let row = |c: [&str; 7], addrs: &str| {
        format!(
            "{:<16} {:<9} {:<10} {:<16} {:>8} {:>9} {:>9}  {addrs}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6]
        )
    };
    let mut out = row(
        [
            "SITE",
            "STATE",
            "LINK",
            "VERSION",
            "RTT ms",
            "SEEN",
            "CERT days",
        ],
        "ADDRESSES",
    );
    out.push('\n');
    for p in peers {
        let rtt = p.rtt_ms.map_or_else(|| "-".into(), |r| format!("{r:.2}"));
        let seen = p
            .last_seen
            .map_or_else(|| "-".into(), |s| times.relative(s));
        let days = p
            .cert_days_left
            .map_or_else(|| "-".into(), |d| d.to_string());
        let addrs = if p.addrs.is_empty() {
            "-".to_string()
        } else {
            p.addrs.join(",")
        };
        let link = if p.connected { "connected" } else { "-" };
        let line = row(
            [
                &p.site,
                p.state.as_str(),
                link,
                p.version.as_deref().unwrap_or("-"),
                &rtt,
                &seen,
                &days,
            ],
            &addrs,
        );
        let _ = write!(out, "{line}");
        if let Some(w) = &p.warning {
            let _ = write!(out, "  WARNING: certificate {w}");
        }
        out.push('\n');
        if p.state == crate::model::peer::PeerState::Pending {
            let _ = writeln!(
                out,
                "{:<16} identity {}  key {}",
                "",
                p.identity.as_deref().unwrap_or("-"),
                p.seen_spki.as_deref().unwrap_or("-")
            );
        }
    }
    out
}

/// `ttx peer pending`: one block per peer waiting for an admin, with what it showed (identity,
/// issuer, key), where it came from, when it was first and last seen, and how to accept it.
pub fn pending(peers: &[crate::federation::PeerStatus], times: &Times) -> String {
    if peers.is_empty() {
        return "no pending peers\n".into();
    }
    let mut out = String::new();
    for p in peers {
        let when = |t: Option<i64>| t.map_or_else(|| "-".into(), |t| times.at(t));
        let _ = writeln!(out, "{}", p.site);
        for (label, value) in [
            ("identity", p.identity.clone().unwrap_or_else(|| "-".into())),
            (
                "issuer",
                p.seen_issuer.clone().unwrap_or_else(|| "-".into()),
            ),
            ("address", p.seen_addr.clone().unwrap_or_else(|| "-".into())),
            ("first seen", when(p.first_seen)),
            ("last seen", when(p.last_seen)),
            ("key", p.seen_spki.clone().unwrap_or_else(|| "-".into())),
        ] {
            let _ = writeln!(out, "  {label:<11}{value}");
        }
        let _ = writeln!(
            out,
            "  accept with `ttx peer accept {} --addr HOST:PORT`, or `ttx peer deny {}`",
            p.site, p.site
        );
    }
    out
}

/// Colours a chart for a terminal: the title of a priority 1 or 2 ticket in bold red, alarms
/// and alerts in red. Only called for a terminal without `NO_COLOR`.
pub fn colour_chart(text: &str, priority: u8) -> String {
    const RED: &str = "\x1b[31m";
    const BOLD_RED: &str = "\x1b[1;31m";
    const RESET: &str = "\x1b[0m";
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in text.lines().enumerate() {
        let colour = if i == 0 && priority <= 2 {
            Some(BOLD_RED)
        } else if line.contains("ALARM: ") || line.contains("ALERT since") {
            Some(RED)
        } else {
            None
        };
        match colour {
            Some(c) => {
                let _ = writeln!(out, "{c}{line}{RESET}");
            }
            None => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

/// Search hits with their snippets.
pub fn hits(hits: &[SearchHit]) -> String {
    if hits.is_empty() {
        return "no matches\n".into();
    }
    let mut out = String::new();
    for h in hits {
        let _ = writeln!(
            out,
            "{:>7}  {:<9} {}",
            h.ticket.number,
            h.ticket.status.as_str(),
            h.ticket.subject
        );
        let _ = writeln!(
            out,
            "         {}: {}",
            h.matched,
            h.snippet.replace('\n', " ")
        );
    }
    out
}

/// Fired timers.
pub fn alerts(timers: &[Timer], times: &Times) -> String {
    if timers.is_empty() {
        return "no alerts\n".into();
    }
    let mut out = String::new();
    for t in timers {
        let _ = writeln!(
            out,
            "{}  TT {} timer {}  {}  (set by {}, due {}; {})",
            times.at(t.fired_at.unwrap_or(t.due_at)),
            t.number,
            t.ordinal,
            t.text,
            t.set_by,
            times.at(t.due_at),
            t.subject
        );
    }
    out
}

/// A timer's state in words: `due ...`, `ALERT since ...`, `acknowledged by ...`, `cancelled`.
fn timer_state(tm: &Timer, times: &Times) -> String {
    match (tm.cancelled_at, tm.fired_at, tm.acked_at) {
        (Some(c), _, _) => format!("cancelled {}", times.at(c)),
        (None, None, _) => format!("due {}", times.at(tm.due_at)),
        (None, Some(f), None) => format!("ALERT since {}", times.at(f)),
        (None, Some(f), Some(a)) => format!(
            "went off {}, acknowledged {} by {}",
            times.at(f),
            times.at(a),
            tm.acked_by.as_deref().unwrap_or("?")
        ),
    }
}

fn timer_line(tm: &Timer, times: &Times) -> String {
    format!(
        "{} ({}, set by {})",
        tm.text,
        timer_state(tm, times),
        tm.set_by
    )
}

/// A ticket's timers, numbered as `ttx cancel-timer`, `ttx snooze` and `ttx ack` take them.
pub fn timers(number: i64, timers: &[Timer], times: &Times) -> String {
    if timers.is_empty() {
        return format!("ticket {number} has no timers\n");
    }
    let mut out = format!("{:>3}  {:<9} TEXT\n", "#", "STATE");
    for t in timers {
        let _ = writeln!(
            out,
            "{:>3}  {:<9} {}",
            t.ordinal,
            t.state().state_name(),
            timer_line(t, times)
        );
    }
    out
}

/// How `ttx show` lays the chart out.
#[derive(Debug, Clone, Copy)]
pub struct ChartLayout {
    /// Columns to wrap note lines at.
    pub width: usize,
    /// Show long notes whole instead of folded.
    pub full: bool,
}

/// Notes longer than this many lines are folded (unless `--full`).
pub const FOLD_LINES: usize = 40;
/// How many lines of a folded note are shown.
pub const FOLDED_SHOWS: usize = 20;

/// Wraps `line` at `width` characters (at a space when there is one), each piece indented.
fn wrap_into(out: &mut String, line: &str, width: usize) {
    const INDENT: &str = "      ";
    let room = width.saturating_sub(INDENT.len()).max(20);
    let mut rest: Vec<char> = line.chars().collect();
    loop {
        if rest.len() <= room {
            let _ = writeln!(out, "{INDENT}{}", rest.iter().collect::<String>());
            return;
        }
        let cut = rest[..room]
            .iter()
            .rposition(|c| *c == ' ')
            .filter(|p| *p > 0)
            .unwrap_or(room);
        let piece: String = rest[..cut].iter().collect();
        let _ = writeln!(out, "{INDENT}{}", piece.trim_end());
        let skip = if rest.get(cut) == Some(&' ') {
            cut + 1
        } else {
            cut
        };
        rest.drain(..skip);
    }
}

/// A note's text, indented and wrapped; a very long pasted note (a whole traceroute or mail)
/// is folded to its first lines with a pointer to `--full`.
fn note_block(text: &str, layout: &ChartLayout, reference: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let fold = !layout.full && lines.len() > FOLD_LINES;
    let shown = if fold { FOLDED_SHOWS } else { lines.len() };
    let mut out = String::new();
    for l in &lines[..shown] {
        wrap_into(&mut out, l, layout.width);
    }
    if fold {
        let _ = writeln!(
            out,
            "      … {} more lines (`ttx show {reference} --full` shows them)",
            lines.len() - shown
        );
    }
    out
}

/// A titled block of `label value` lines in the chart; a section with no lines is left out.
struct Section {
    title: &'static str,
    lines: Vec<(String, String)>,
}

impl Section {
    fn new(title: &'static str) -> Self {
        Section {
            title,
            lines: Vec::new(),
        }
    }

    /// Adds `label value` when the value is known and not empty.
    fn add(&mut self, label: impl Into<String>, value: Option<String>) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.lines.push((label.into(), v));
        }
    }

    fn write(&self, o: &mut String) {
        if self.lines.is_empty() {
            return;
        }
        let _ = writeln!(o, "\n{}", self.title);
        for (label, value) in &self.lines {
            let _ = writeln!(o, "  {label:<13} {value}");
        }
    }
}

/// The whole chart in sections, as RFC 1297 and RT lay a ticket out: the title lines, then
/// Header (problem, network, people, custom fields), Next action and alarm clock (the next
/// action and every timer), Links (both ways), History (every event in order), Resolution
/// and Durations. Empty sections are left out; History is always there.
/// `reference` is how this site names the ticket (`42`, or `SITE#42` for a partner's).
pub fn chart(c: &Chart, reference: &str, times: &Times, layout: &ChartLayout) -> String {
    let t = &c.ticket;
    let mut o = String::new();
    let _ = writeln!(o, "TT {reference}  [{}] {}", t.ticket_type, t.subject);
    let _ = writeln!(
        o,
        "status {}  priority {}  severity {}  queue {}  owner {}",
        t.status,
        t.priority,
        t.severity,
        t.queue,
        t.owner.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        o,
        "opened {} by {}   id {}   site {}",
        times.at(t.created_at),
        t.opened_by,
        t.id,
        t.site
    );
    let mut header = Section::new("Header");
    header.add("problem start", t.problem_start.map(|v| times.at(v)));
    header.add("updated", Some(times.at(t.updated_at)));
    header.add("network", t.network.clone());
    header.add("circuit", t.circuit.clone());
    header.add("nodes", Some(t.nodes.join(", ")));
    let r = &t.reporter;
    let contact: Vec<&str> = [&r.name, &r.org, &r.phone, &r.email]
        .iter()
        .filter_map(|v| v.as_deref())
        .collect();
    header.add("reporter", Some(contact.join(", ")));
    header.add("requestors", Some(t.watchers.requestors.join(", ")));
    header.add("cc", Some(t.watchers.cc.join(", ")));
    header.add("admin-cc", Some(t.watchers.admin_cc.join(", ")));
    for (k, v) in &t.custom {
        header.add(format!("cf.{k}"), Some(v.clone()));
    }
    header.write(&mut o);

    let mut next = Section::new("Next action and alarm clock");
    next.add("next action", t.next_action.clone());
    for tm in &c.timers {
        next.add(format!("timer {}", tm.ordinal), Some(timer_line(tm, times)));
    }
    next.write(&mut o);

    let mut links = Section::new("Links");
    for l in &t.links {
        links.add(l.kind.as_str(), Some(format!("TT {}", l.target_number)));
    }
    for l in &c.incoming {
        links.add(
            format!("<- {}", l.kind),
            Some(format!("TT {}", l.from_number)),
        );
    }
    links.write(&mut o);

    let mut referrals = Section::new("Referrals");
    for r in &c.referrals {
        let dir = match r.side {
            crate::exchange::Side::Out => "to",
            crate::exchange::Side::In => "from",
        };
        referrals.add(
            format!("{} {dir} {}", crate::exchange::record::short(r.id), r.peer),
            Some(format!(
                "{}{}",
                r.label,
                r.partner_ref
                    .as_ref()
                    .map(|p| format!(", partner's ticket {p}"))
                    .unwrap_or_default()
            )),
        );
    }
    referrals.write(&mut o);

    history(&mut o, c, reference, times, layout);

    let res = &t.resolution;
    let mut resolution = Section::new("Resolution");
    resolution.add("resolved", res.resolved_at.map(|v| times.at(v)));
    resolution.add("resolution", res.resolution.clone());
    resolution.add("component", res.component.clone());
    resolution.add("escalated to", res.escalated_to.clone());
    resolution.add("closed", res.closed_at.map(|v| times.at(v)));
    resolution.add("checked by", res.checked_by.clone());
    resolution.write(&mut o);

    let mut durations = Section::new("Durations");
    if let Some(total) = res.total_ms {
        let from = match t.problem_start {
            Some(p) if p < t.created_at => "from problem start",
            _ => "from opening",
        };
        durations.add("total", Some(format!("{} ({from})", human_duration(total))));
        durations.add("NOC time", Some(human_duration(res.noc_ms.unwrap_or(0))));
        durations.add(
            "customer time",
            Some(human_duration(res.customer_ms.unwrap_or(0))),
        );
    }
    durations.write(&mut o);
    o
}

/// The History section: every event of the chart in order, notes wrapped and folded.
fn history(o: &mut String, c: &Chart, reference: &str, times: &Times, layout: &ChartLayout) {
    let _ = writeln!(o, "\nHistory");
    for h in &c.history {
        let e = &h.event;
        let head = format!("  {}  {}  ", times.absolute(e.at), e.actor);
        let _ = match &e.kind {
            EventKind::TicketCreated { ticket, .. } => writeln!(
                o,
                "{head}opened {} ticket: severity {}, priority {}, queue {}",
                ticket.ticket_type, ticket.severity, ticket.priority, ticket.queue
            ),
            EventKind::NoteAdded {
                text,
                shared,
                happened_at,
                ..
            } => {
                let vis = if *shared { "shared" } else { "internal" };
                let when = happened_at
                    .map(|h| format!(", happened at {}", times.at(h)))
                    .unwrap_or_default();
                writeln!(
                    o,
                    "{head}update ({vis}{when}):\n{}",
                    note_block(text, layout, reference).trim_end()
                )
            }
            other => match other
                .describe(&|id| c.timers.iter().find(|t| t.id == id).map(|t| t.text.clone()))
            {
                Some(line) => writeln!(o, "{head}{line}"),
                None => Ok(()),
            },
        };
    }
}

/// `ttx status`'s replication lines: on a primary the mode, the standby and its lag (or
/// `DEGRADED` / no standby); on a standby the primary it follows and how far it has applied.
pub fn replication(r: &crate::replication::ReplicationStatus, role: &str, times: &Times) -> String {
    let mut out = replication_sides(r, role, times);
    if let Some(l) = &r.lease {
        out.push_str(&lease(l));
    }
    out
}

/// The witness's lease line (automatic failover): who holds it, for how long, and why the
/// witness last refused this node.
fn lease(l: &crate::replication::witness::LeaseStatus) -> String {
    let mut out = String::new();
    let reach = if l.witness_reachable {
        "reachable"
    } else {
        "NOT reachable"
    };
    let holder = l.holder.as_deref().unwrap_or("-");
    let _ = write!(
        out,
        "witness {}: {reach}  lease holder {holder} (epoch {})",
        l.witness, l.epoch
    );
    if let Some(ms) = l.expires_in_ms {
        let _ = write!(out, "  expires in {ms} ms");
    }
    let _ = writeln!(out);
    if let Some(why) = &l.last_refusal {
        let _ = writeln!(out, "  witness: {why}");
    }
    out
}

fn replication_sides(
    r: &crate::replication::ReplicationStatus,
    role: &str,
    times: &Times,
) -> String {
    let mut out = String::new();
    let p = &r.primary;
    let mode = p.mode.as_str();
    let gone = p.when_standby_gone.as_str();
    if let Some(to) = role.strip_prefix("handing-over:") {
        let _ = writeln!(
            out,
            "SWITCHOVER in progress: handing the primary role to {to}; local writes pause"
        );
    }
    let follows = role.starts_with("standby:") || role.starts_with("fenced:");
    if let Some(f) = r.following.as_ref().filter(|_| follows) {
        let state = if f.connected {
            "connected"
        } else {
            "NOT connected"
        };
        let node = f.primary_node.as_deref().unwrap_or("-");
        let lag_ms = f.lag_ms.map(|ms| format!(" {ms} ms")).unwrap_or_default();
        let spooled = if f.durable > f.applied {
            format!("  spooled {}", f.durable)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "following primary {node} at {}: {state}  applied {}{spooled}  primary head {}  lag {} events{lag_ms}",
            f.primary_addr, f.applied, f.primary_head, f.lag_events
        );
        if let Some(at) = f.last_heard_at {
            let _ = writeln!(out, "  last heard from the primary {}", times.at(at));
        }
        if let (false, Some(e)) = (f.connected, &f.last_error) {
            let _ = writeln!(out, "  last error: {e}");
        }
        if let Some(at) = f.diverged_at {
            let _ = writeln!(
                out,
                "  DIVERGED: this node's log differs from the primary's at or below position {at}: `ttx standby rejoin` makes it a standby, keeping its own events for review"
            );
        }
        let _ = writeln!(
            out,
            "  on promotion: mode {mode}, when the standby is gone {gone}"
        );
        return out;
    }
    let _ = write!(out, "replication mode {mode}");
    if p.mode != crate::replication::Mode::Async {
        let _ = write!(out, " (when the standby is gone: {gone})");
    }
    match &p.standby {
        Some(s) => {
            let _ = writeln!(
                out,
                "  standby {} at {} connected since {}",
                s.node,
                s.addr,
                times.absolute(s.since)
            );
        }
        None => {
            let _ = writeln!(out, "  standby NOT connected");
        }
    }
    let _ = writeln!(
        out,
        "  acked durable {} applied {}  lag {} events {} ms  waiting answers {}",
        p.acked_durable, p.acked_applied, p.lag.events, p.lag.ms, p.waiting
    );
    if let Some(since) = p.degraded_since {
        let _ = writeln!(
            out,
            "  DEGRADED to async since {}: writes are acknowledged without the standby",
            times.at(since)
        );
    }
    out
}

//! Human text for tickets: the chart, lists, search hits, alerts.

use std::fmt::Write;

use crate::model::clock::{format as ts, human_duration};
use crate::model::event::EventKind;
use crate::store::query::{Chart, SearchHit, TicketRow, Timer};

/// One line per ticket, open work first by priority.
pub fn rows(rows: &[TicketRow]) -> String {
    if rows.is_empty() {
        return "no tickets\n".into();
    }
    let mut out = format!(
        "{:>7}  {:<2} {:<2} {:<9} {:<12} {:<12} {}\n",
        "#", "P", "S", "STATUS", "QUEUE", "OWNER", "SUBJECT"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:>7}  {:<2} {:<2} {:<9} {:<12} {:<12} {}",
            r.number,
            r.priority,
            r.severity,
            r.status.as_str(),
            r.queue,
            r.owner.as_deref().unwrap_or("-"),
            r.subject
        );
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
pub fn alerts(timers: &[Timer]) -> String {
    if timers.is_empty() {
        return "no alerts\n".into();
    }
    let mut out = String::new();
    for t in timers {
        let _ = writeln!(
            out,
            "{}  TT {}  {}  (set by {}, due {}; {})",
            ts(t.fired_at.unwrap_or(t.due_at)),
            t.number,
            t.text,
            t.set_by,
            ts(t.due_at),
            t.subject
        );
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}\n")).collect()
}

/// The whole chart: header, resolution, timers, links, then the history in order.
/// `reference` is how this site names the ticket (`42`, or `SITE#42` for a partner's).
pub fn chart(c: &Chart, reference: &str) -> String {
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
        ts(t.created_at),
        t.opened_by,
        t.id,
        t.site
    );
    let mut line = |label: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            let _ = writeln!(o, "{label:<14}{v}");
        }
    };
    line("problem start", t.problem_start.map(ts));
    line("next action", t.next_action.clone());
    line("network", t.network.clone());
    line("circuit", t.circuit.clone());
    line("nodes", Some(t.nodes.join(", ")));
    let r = &t.reporter;
    let contact: Vec<&str> = [&r.name, &r.org, &r.phone, &r.email]
        .iter()
        .filter_map(|v| v.as_deref())
        .collect();
    line("reporter", Some(contact.join(", ")));
    line("requestors", Some(t.watchers.requestors.join(", ")));
    line("cc", Some(t.watchers.cc.join(", ")));
    line("admin-cc", Some(t.watchers.admin_cc.join(", ")));
    for (k, v) in &t.custom {
        line(&format!("cf.{k}"), Some(v.clone()));
    }
    let res = &t.resolution;
    line("resolved", res.resolved_at.map(ts));
    line("resolution", res.resolution.clone());
    line("component", res.component.clone());
    line("escalated to", res.escalated_to.clone());
    line(
        "durations",
        res.total_ms.map(|total| {
            format!(
                "total {}, NOC time {}, customer time {}",
                human_duration(total),
                human_duration(res.noc_ms.unwrap_or(0)),
                human_duration(res.customer_ms.unwrap_or(0))
            )
        }),
    );
    line("closed", res.closed_at.map(ts));
    line("checked by", res.checked_by.clone());
    for l in &t.links {
        line(l.kind.as_str(), Some(format!("TT {}", l.target_number)));
    }
    for l in &c.incoming {
        line(
            &format!("<- {}", l.kind),
            Some(format!("TT {}", l.from_number)),
        );
    }
    for tm in &c.timers {
        let state = match (tm.fired_at, tm.cancelled_at) {
            (Some(f), _) => format!("went off {}", ts(f)),
            (None, Some(c)) => format!("cancelled with the ticket {}", ts(c)),
            (None, None) => format!("due {}", ts(tm.due_at)),
        };
        line(
            "timer",
            Some(format!("{} ({state}, set by {})", tm.text, tm.set_by)),
        );
    }
    let _ = writeln!(o, "\nhistory");
    for h in &c.history {
        let e = &h.event;
        let head = format!("  {}  {}  ", ts(e.at), e.actor);
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
                    .map(|h| format!(", happened at {}", ts(h)))
                    .unwrap_or_default();
                writeln!(
                    o,
                    "{head}update ({vis}{when}):\n{}",
                    indent(text).trim_end()
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
    o
}

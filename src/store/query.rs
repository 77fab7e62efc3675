//! Reads: the ticket chart, the open-work list, full-text search, alerts and counts.
//! Every function takes a read connection from the [`super::ReadPool`].

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::apply::{event_from_row, EVENT_COLUMNS, EVENT_COLUMN_COUNT};
use super::writer::ticket_by_number;
use super::StoreError;
use crate::model::clock::Millis;
use crate::model::command::CommandError;
use crate::model::event::{Event, Role};
use crate::model::lifecycle::Status;
use crate::model::ticket::Ticket;

/// Most rows a list or search returns.
pub const MAX_LIMIT: u32 = 1000;

/// One row of a ticket list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketRow {
    /// Number.
    pub number: i64,
    /// Id.
    pub id: Uuid,
    /// Status.
    pub status: Status,
    /// Priority.
    pub priority: u8,
    /// Severity.
    pub severity: u8,
    /// Queue.
    pub queue: String,
    /// Owner.
    pub owner: Option<String>,
    /// Type.
    #[serde(rename = "type")]
    pub ticket_type: String,
    /// Subject.
    pub subject: String,
    /// Last change.
    pub updated_at: Millis,
    /// When it was opened.
    #[serde(default)]
    pub created_at: Millis,
    /// The next action to take.
    #[serde(default)]
    pub next_action: Option<String>,
    /// When its next pending timer is due.
    #[serde(default)]
    pub next_due: Option<Millis>,
}

/// The columns of a [`TicketRow`] (the benchmarks' bare baselines run the same SQL).
pub(crate) const ROW_COLUMNS: &str =
    "number, id, status, priority, severity, queue, owner, type, subject, updated_at, created_at,
     json_extract(doc, '$.next_action'),
     (SELECT MIN(due_at) FROM timers tm
      WHERE tm.ticket_id = tickets.id AND tm.fired_at IS NULL AND tm.cancelled_at IS NULL)";

fn ticket_row(r: &rusqlite::Row) -> rusqlite::Result<TicketRow> {
    Ok(TicketRow {
        number: r.get(0)?,
        id: r.get(1)?,
        status: r.get(2)?,
        priority: r.get(3)?,
        severity: r.get(4)?,
        queue: r.get(5)?,
        owner: r.get(6)?,
        ticket_type: r.get(7)?,
        subject: r.get(8)?,
        updated_at: r.get(9)?,
        created_at: r.get(10)?,
        next_action: r.get(11)?,
        next_due: r.get(12)?,
    })
}

/// What `ttx list` filters on; every filter given must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListFilter {
    /// One status; none means all open work (new, open, pending, referred).
    pub status: Option<Status>,
    /// Queue.
    pub queue: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Priority 1-4.
    pub priority: Option<u8>,
    /// Severity 1-4.
    pub severity: Option<u8>,
    /// Ticket type.
    #[serde(rename = "type")]
    pub ticket_type: Option<String>,
    /// Network.
    pub network: Option<String>,
    /// One of the affected nodes.
    pub node: Option<String>,
    /// Circuit id.
    pub circuit: Option<String>,
    /// A custom field's value: (name, value).
    pub custom: Option<(String, String)>,
    /// Opened at or after.
    pub created_since: Option<Millis>,
    /// Changed at or after.
    pub updated_since: Option<Millis>,
    /// Order of the rows.
    pub sort: ListSort,
    /// Most rows (default 100, 1 to 1000).
    pub limit: Option<u32>,
}

/// How `ttx list` orders its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListSort {
    /// Priority first, then number (the NOC's work order).
    #[default]
    Priority,
    /// Most recently changed first.
    Updated,
    /// Oldest first.
    Age,
}

impl std::str::FromStr for ListSort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "priority" => Ok(ListSort::Priority),
            "updated" => Ok(ListSort::Updated),
            "age" => Ok(ListSort::Age),
            _ => Err(format!("unknown sort {s:?}: use priority, updated or age")),
        }
    }
}

/// Refuses a row limit outside 1 to [`MAX_LIMIT`] (rather than quietly answering fewer rows
/// than asked for).
pub fn check_limit(limit: u32) -> Result<u32, StoreError> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(StoreError::Command(CommandError::Invalid(format!(
            "limit must be 1 to {MAX_LIMIT}, got {limit}"
        ))))
    }
}

/// The list, filtered and sorted.
pub fn list(conn: &Connection, f: &ListFilter) -> Result<Vec<TicketRow>, StoreError> {
    use rusqlite::types::Value as V;
    let limit = check_limit(f.limit.unwrap_or(100))?;
    // The literal status list matches the partial indexes, so SQLite walks them in order and
    // stops after `limit` rows even on a store of millions of tickets.
    let mut sql = format!("SELECT {ROW_COLUMNS} FROM tickets WHERE ");
    let mut args: Vec<V> = Vec::new();
    match f.status {
        Some(s) => {
            sql.push_str("status = ?");
            args.push(V::Text(s.as_str().to_string()));
        }
        None => sql.push_str("status IN ('new', 'open', 'pending', 'referred')"),
    }
    let text = |v: &Option<String>| v.clone().map(V::Text);
    let level = |v: Option<u8>| v.map(|l| V::Integer(l.into()));
    let filters: [(&str, Option<V>); 10] = [
        ("queue = ?", text(&f.queue)),
        ("owner = ?", text(&f.owner)),
        ("priority = ?", level(f.priority)),
        ("severity = ?", level(f.severity)),
        ("type = ?", text(&f.ticket_type)),
        ("json_extract(doc, '$.network') = ?", text(&f.network)),
        ("json_extract(doc, '$.circuit') = ?", text(&f.circuit)),
        (
            "EXISTS (SELECT 1 FROM json_each(doc, '$.nodes') WHERE value = ?)",
            text(&f.node),
        ),
        ("created_at >= ?", f.created_since.map(V::Integer)),
        ("updated_at >= ?", f.updated_since.map(V::Integer)),
    ];
    for (clause, v) in filters {
        if let Some(v) = v {
            sql.push_str(" AND ");
            sql.push_str(clause);
            args.push(v);
        }
    }
    if let Some((name, value)) = &f.custom {
        sql.push_str(" AND json_extract(doc, ?) = ?");
        args.push(V::Text(format!("$.custom.\"{}\"", name.replace('"', ""))));
        args.push(V::Text(value.clone()));
    }
    let order = match f.sort {
        ListSort::Priority => "priority, number",
        ListSort::Updated => "updated_at DESC, number DESC",
        ListSort::Age => "created_at, number",
    };
    sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), ticket_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One entry of a ticket's history: an event with its log position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Position in this node's log.
    pub seq: i64,
    /// The event.
    pub event: Event,
    /// Set on a note longer than [`INLINE_NOTE_BYTES`]: its text is left out of the history
    /// (empty) and is this many bytes; fetch it with [`note`] (`GET /v1/tickets/{n}/notes/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note_bytes: Option<u64>,
}

/// Notes longer than this are returned by reference in a ticket's history, so a page of
/// history stays small however large the notes on it are.
pub const INLINE_NOTE_BYTES: usize = 64 * 1024;

/// Most bytes of event bodies one page of history holds (it always holds at least one entry):
/// with [`INLINE_NOTE_BYTES`], an answer to `show` stays near 1 MiB on any ticket.
pub const HISTORY_PAGE_BYTES: usize = 1024 * 1024;

/// Entries one page of history holds unless asked for fewer (at most [`MAX_LIMIT`]).
pub const HISTORY_PAGE_ENTRIES: u32 = 500;

/// Which page of a ticket's history to read.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryPage {
    /// Only entries after this log position (the previous page's `more_after`).
    pub after: Option<i64>,
    /// Most entries (default [`HISTORY_PAGE_ENTRIES`], at most [`MAX_LIMIT`]).
    pub limit: Option<u32>,
}

/// A timer on a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    /// Id.
    pub id: Uuid,
    /// Ticket number.
    pub number: i64,
    /// Ticket subject.
    pub subject: String,
    /// When it goes (went) off.
    pub due_at: Millis,
    /// Reminder.
    pub text: String,
    /// Who set it.
    pub set_by: String,
    /// When it went off.
    pub fired_at: Option<Millis>,
    /// Its number on its ticket (1, 2, ... in the order set): what `ttx ack N K` takes.
    #[serde(default)]
    pub ordinal: u32,
    /// When it was cancelled (by an operator, or by the ticket's resolve or close).
    #[serde(default)]
    pub cancelled_at: Option<Millis>,
    /// When its alert was acknowledged.
    #[serde(default)]
    pub acked_at: Option<Millis>,
    /// Who acknowledged it.
    #[serde(default)]
    pub acked_by: Option<String>,
}

impl Timer {
    /// The state the store's columns describe, for the timer rules.
    pub fn state(&self) -> crate::model::timer::TimerState {
        crate::model::timer::TimerState {
            id: self.id,
            ordinal: self.ordinal,
            due_at: self.due_at,
            fired_at: self.fired_at,
            cancelled_at: self.cancelled_at,
            acked_at: self.acked_at,
        }
    }
}

/// A link into this ticket from another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncomingLink {
    /// The other ticket.
    pub from_number: i64,
    /// Kind (`member-of` from a member, and so on).
    pub kind: String,
}

/// The whole chart of a ticket: header, history in order, timers, incoming links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    /// The projected ticket.
    pub ticket: Ticket,
    /// Events in order: one page of the history (see [`HistoryPage`]).
    pub history: Vec<HistoryEntry>,
    /// Set when the history goes on after this page: ask again with `after` = this position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_after: Option<i64>,
    /// Timers, pending and fired.
    pub timers: Vec<Timer>,
    /// Links from other tickets to this one.
    pub incoming: Vec<IncomingLink>,
    /// The ticket's referrals, to partners and from them (with the partner's reference).
    #[serde(default)]
    pub referrals: Vec<super::exchange::ReferralRow>,
}

/// The one "no ticket N" answer (a ticket number nobody has), for every reader and writer.
pub(crate) fn no_such_ticket(number: i64) -> StoreError {
    StoreError::Command(CommandError::NotFound(format!("no ticket {number}")))
}

const TIMER_COLUMNS: &str =
    "SELECT tm.id, t.number, t.subject, tm.due_at, tm.text, tm.set_by, tm.fired_at,
            (SELECT COUNT(*) FROM timers o WHERE o.ticket_id = tm.ticket_id AND o.id <= tm.id),
            tm.cancelled_at, tm.acked_at, tm.acked_by";

fn timer_row(r: &rusqlite::Row) -> rusqlite::Result<Timer> {
    Ok(Timer {
        id: r.get(0)?,
        number: r.get(1)?,
        subject: r.get(2)?,
        due_at: r.get(3)?,
        text: r.get(4)?,
        set_by: r.get(5)?,
        fired_at: r.get(6)?,
        ordinal: r.get(7)?,
        cancelled_at: r.get(8)?,
        acked_at: r.get(9)?,
        acked_by: r.get(10)?,
    })
}

/// The timers of one ticket, in the order they were set (numbered 1, 2, ...).
pub fn timers_of(conn: &Connection, ticket: Uuid) -> Result<Vec<Timer>, StoreError> {
    let timers = conn
        .prepare_cached(&format!(
            "{TIMER_COLUMNS} FROM timers tm JOIN tickets t ON t.id = tm.ticket_id
             WHERE tm.ticket_id = ?1 ORDER BY tm.id"
        ))?
        .query_map([ticket.as_bytes()], timer_row)?
        .collect::<Result<_, _>>()?;
    Ok(timers)
}

/// The chart of ticket `number` with the first page of its history.
pub fn chart(conn: &Connection, number: i64) -> Result<Chart, StoreError> {
    chart_page(conn, number, HistoryPage::default())
}

/// The chart of ticket `number` with one page of its history. Memory is bounded by the page:
/// a long note's body is not even read out of SQLite (its text is replaced in SQL), and the
/// page stops at [`HISTORY_PAGE_BYTES`].
pub fn chart_page(conn: &Connection, number: i64, page: HistoryPage) -> Result<Chart, StoreError> {
    let ticket = ticket_by_number(conn, number)?.ok_or_else(|| no_such_ticket(number))?;
    let id = ticket.id.as_bytes().to_vec();
    let (history, more_after) = history_page(conn, &id, page)?;
    let timers = timers_of(conn, ticket.id)?;
    let incoming = conn
        .prepare_cached(
            "SELECT t.number, l.kind FROM links l JOIN tickets t ON t.id = l.from_id
             WHERE l.to_id = ?1 ORDER BY t.number",
        )?
        .query_map([&id], |r| {
            Ok(IncomingLink {
                from_number: r.get(0)?,
                kind: r.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let referrals =
        super::exchange::list_referrals(conn, Some(ticket.id), crate::model::clock::now())?;
    Ok(Chart {
        ticket,
        history,
        more_after,
        timers,
        incoming,
        referrals,
    })
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The ticket.
    pub ticket: TicketRow,
    /// Where it matched: `subject`, `header` (a header field: circuit, node, custom field,
    /// resolution...) or `note`.
    pub matched: String,
    /// A snippet around the match.
    pub snippet: String,
}

/// Longest search text accepted, in bytes.
pub const MAX_SEARCH_BYTES: usize = 1024;

/// Turns operator text into an FTS5 query that cannot be a syntax error: every word becomes a
/// quoted term, all of which must match.
pub fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// Full-text search over subjects, header fields and incident updates, newest first.
pub fn search(conn: &Connection, text: &str, limit: u32) -> Result<Vec<SearchHit>, StoreError> {
    let limit = check_limit(limit)?;
    if text.len() > MAX_SEARCH_BYTES {
        return Err(StoreError::Command(CommandError::Invalid(format!(
            "search text is {} bytes, at most {MAX_SEARCH_BYTES} allowed",
            text.len()
        ))));
    }
    // SQLite ends an FTS5 string at a NUL ("unterminated string"): refuse control characters
    // with a clear message instead of answering 500.
    if let Some(c) = text.chars().find(|c| c.is_control() && !c.is_whitespace()) {
        return Err(StoreError::Command(CommandError::Invalid(format!(
            "search text must not contain control characters (found U+{:04X})",
            u32::from(c)
        ))));
    }
    let query = fts_query(text).ok_or_else(|| {
        StoreError::Command(CommandError::Invalid(
            "search text must not be empty".into(),
        ))
    })?;
    // Newest first: FTS5 walks rowids in descending order and stops at the limit, so a common
    // word costs no more than a rare one. Subjects first, then updates (several per ticket).
    const SOURCES: [(&str, u32); 2] = [
        (
            "SELECT t.id,
                    CASE WHEN instr(snippet(ticket_fts, 0, '[', ']', '…', 12), '[') > 0
                         THEN 'subject' ELSE 'header' END,
                    CASE WHEN instr(snippet(ticket_fts, 0, '[', ']', '…', 12), '[') > 0
                         THEN snippet(ticket_fts, 0, '[', ']', '…', 12)
                         ELSE snippet(ticket_fts, 1, '[', ']', '…', 12) END
             FROM ticket_fts JOIN tickets t ON t.rowid = ticket_fts.rowid
             WHERE ticket_fts MATCH ?1 ORDER BY ticket_fts.rowid DESC LIMIT ?2",
            1,
        ),
        (
            "SELECT n.ticket_id, 'note', snippet(note_fts, 0, '[', ']', '…', 12)
             FROM note_fts JOIN notes n ON n.rowid = note_fts.rowid
             WHERE note_fts MATCH ?1 ORDER BY note_fts.rowid DESC LIMIT ?2",
            4,
        ),
    ];
    let mut hits: Vec<(Uuid, String, String)> = Vec::new();
    for (sql, per_ticket) in SOURCES {
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params![query, limit * per_ticket], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        for r in rows {
            hits.push(r?);
        }
    }
    let mut out: Vec<SearchHit> = Vec::new();
    let mut row_stmt =
        conn.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM tickets WHERE id = ?1"))?;
    for (id, matched, snippet) in hits {
        if out.len() >= limit as usize {
            break;
        }
        if out.iter().any(|h| h.ticket.id == id) {
            continue;
        }
        if let Some(ticket) = row_stmt.query_row([id], ticket_row).optional()? {
            out.push(SearchHit {
                ticket,
                matched,
                snippet,
            });
        }
    }
    out.sort_by_key(|h| std::cmp::Reverse(h.ticket.number));
    Ok(out)
}

/// Alerts: timers that went off and nobody acknowledged yet, on tickets still open; with
/// `all`, every timer that went off, acknowledged or not, on any ticket.
pub fn alerts(conn: &Connection, all: bool, limit: u32) -> Result<Vec<Timer>, StoreError> {
    let mut stmt = conn.prepare_cached(&alerts_sql(all, check_limit(limit)?))?;
    let timers = stmt.query_map([], timer_row)?.collect::<Result<_, _>>()?;
    Ok(timers)
}

/// The SQL of [`alerts`]. It walks the fired timers newest first by index and looks each
/// ticket up by id, so it stops after `limit` rows however many tickets are open (`CROSS
/// JOIN` fixes that order: without statistics SQLite would rather scan every open ticket and
/// probe its timers, which on a million tickets is a scan of the whole open-work index).
pub(crate) fn alerts_sql(all: bool, limit: u32) -> String {
    let (index, filter) = if all {
        ("timers_fired", "")
    } else {
        (
            "timers_alarms",
            " AND tm.acked_at IS NULL AND t.status IN ('new', 'open', 'pending', 'referred')",
        )
    };
    format!(
        "{TIMER_COLUMNS} FROM timers tm INDEXED BY {index} CROSS JOIN tickets t ON t.id = tm.ticket_id
         WHERE tm.fired_at IS NOT NULL{filter} ORDER BY tm.fired_at DESC LIMIT {limit}"
    )
}

/// When the next pending timer is due (cancelled timers are never due).
pub fn next_due(conn: &Connection) -> Result<Option<Millis>, StoreError> {
    Ok(conn.query_row(
        "SELECT MIN(due_at) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL",
        [],
        |r| r.get(0),
    )?)
}

/// Numbers of tickets (all and open) and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Tickets.
    pub tickets: i64,
    /// Tickets that are open work.
    pub open_tickets: i64,
    /// Events in the log.
    pub events: i64,
}

/// Counts for `ttx status`.
pub fn counts(conn: &Connection) -> Result<Counts, StoreError> {
    Ok(Counts {
        tickets: conn.query_row("SELECT COUNT(*) FROM tickets", [], |r| r.get(0))?,
        open_tickets: conn.query_row(
            "SELECT COUNT(*) FROM tickets WHERE status IN ('new', 'open', 'pending', 'referred')",
            [],
            |r| r.get(0),
        )?,
        events: conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?,
    })
}

/// An operator as listed (the token hash is never shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// When the token was issued.
    pub created_at: Millis,
}

/// All operators.
pub fn operators(conn: &Connection) -> Result<Vec<Operator>, StoreError> {
    conn.prepare_cached("SELECT name, role, created_at FROM operators ORDER BY name")?
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })?
        .map(|r| {
            let (name, role, created_at) = r?;
            let role = role.parse().map_err(StoreError::Corrupt)?;
            Ok(Operator {
                name,
                role,
                created_at,
            })
        })
        .collect()
}

/// The operator holding a token (by the token's SHA-256), if any.
pub fn operator_by_token(
    conn: &Connection,
    token_sha256: &str,
) -> Result<Option<(String, Role)>, StoreError> {
    let row: Option<(String, String)> = conn
        .query_row(
            "SELECT name, role FROM operators WHERE token_sha256 = ?1",
            [token_sha256],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(n, r)| Ok((n, r.parse().map_err(StoreError::Corrupt)?)))
        .transpose()
}

/// An operator's role and password hash (`None` until `ttx operator passwd` sets one), by name.
pub fn operator_login(
    conn: &Connection,
    name: &str,
) -> Result<Option<(Role, Option<String>)>, StoreError> {
    let row: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT role, password_hash FROM operators WHERE name = ?1")?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(role, hash)| Ok((role.parse().map_err(StoreError::Corrupt)?, hash)))
        .transpose()
}

/// The queues an operator watches, in its order (empty for an unknown operator).
pub fn watched_queues(conn: &Connection, name: &str) -> Result<Vec<String>, StoreError> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT watched_queues FROM operators WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    match doc {
        Some(d) => serde_json::from_str(&d)
            .map_err(|e| StoreError::Corrupt(format!("watched queues of {name:?}: {e}"))),
        None => Ok(Vec::new()),
    }
}

/// The newest open tickets nobody owns, newest first (the console's Take list).
pub fn newest_unowned(conn: &Connection, limit: u32) -> Result<Vec<TicketRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM tickets INDEXED BY tickets_unowned
         WHERE owner IS NULL AND status IN ('new', 'open', 'pending', 'referred')
         ORDER BY number DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit.clamp(1, MAX_LIMIT)], ticket_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many tickets one queue holds in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCount {
    /// Queue.
    pub queue: String,
    /// Status.
    pub status: Status,
    /// Tickets.
    pub tickets: i64,
}

/// Tickets per queue and status, open work only, by queue (kept by triggers: no table scan).
pub fn work_counts(conn: &Connection) -> Result<Vec<QueueCount>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT queue, status, n FROM work_counts
         WHERE n > 0 AND status IN ('new', 'open', 'pending', 'referred') ORDER BY queue",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(QueueCount {
            queue: r.get(0)?,
            status: r.get(1)?,
            tickets: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Events after log position `after`, in order, at most `limit` (a standby's catch-up read).
pub fn events_after(
    conn: &Connection,
    after: i64,
    limit: u32,
) -> Result<Vec<(i64, Event)>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let events = stmt.query_map(params![after, limit], event_from_row)?;
    Ok(events.collect::<Result<_, _>>()?)
}

/// Every registered or pending peer, by site.
pub fn peers(conn: &Connection) -> Result<Vec<crate::model::peer::PeerRecord>, StoreError> {
    conn.prepare_cached("SELECT doc FROM peers ORDER BY site")?
        .query_map([], |r| r.get::<_, String>(0))?
        .map(|doc| {
            serde_json::from_str(&doc?)
                .map_err(|e| StoreError::Corrupt(format!("peer record: {e}")))
        })
        .collect()
}

/// One peer's record.
pub fn peer(
    conn: &Connection,
    site: &str,
) -> Result<Option<crate::model::peer::PeerRecord>, StoreError> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM peers WHERE site = ?1")?
        .query_row([site], |r| r.get(0))
        .optional()?;
    doc.map(|d| {
        serde_json::from_str(&d).map_err(|e| StoreError::Corrupt(format!("peer record: {e}")))
    })
    .transpose()
}

/// One page of the history of the ticket with id `id`, and where the next page starts.
fn history_page(
    conn: &Connection,
    id: &[u8],
    page: HistoryPage,
) -> Result<(Vec<HistoryEntry>, Option<i64>), StoreError> {
    let limit = page
        .limit
        .unwrap_or(HISTORY_PAGE_ENTRIES)
        .clamp(1, MAX_LIMIT);
    // A long note's body becomes the same JSON with an empty text inside SQLite, so its text
    // never reaches this process; `octet_length` reads the stored length without the value.
    let by_reference = "kind = 'note' AND octet_length(body) > ?3";
    let columns = EVENT_COLUMNS.replacen(
        "body",
        &format!(
            "CASE WHEN {by_reference} THEN json_set(body, '$.NoteAdded.text', '') ELSE body END"
        ),
        1,
    );
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {columns}, CASE WHEN {by_reference} THEN
             (SELECT octet_length(n.text) FROM notes n WHERE n.event_seq = events.seq) END
         FROM events WHERE ticket_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?4"
    ))?;
    let after = page.after.unwrap_or(0);
    let mut rows = stmt.query(params![id, after, INLINE_NOTE_BYTES as i64, limit + 1])?;
    let (mut history, mut bytes) = (Vec::new(), 0usize);
    while let Some(r) = rows.next()? {
        let full = history.len() as u32 >= limit || bytes >= HISTORY_PAGE_BYTES;
        if full {
            let last = history.last().map(|h: &HistoryEntry| h.seq);
            return Ok((history, last));
        }
        let (seq, event) = event_from_row(r)?;
        let note_bytes: Option<i64> = r.get(EVENT_COLUMN_COUNT)?;
        bytes += r.get_ref(8)?.as_bytes().map_or(0, <[u8]>::len);
        history.push(HistoryEntry {
            seq,
            event,
            note_bytes: note_bytes.map(|b| b as u64),
        });
    }
    Ok((history, None))
}

/// A note in full, as fetched by reference from a ticket's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullNote {
    /// The note's id (from its `NoteAdded` event).
    pub note_id: Uuid,
    /// Its ticket's number.
    pub number: i64,
    /// Who wrote it.
    pub author: String,
    /// When it was written.
    pub at: Millis,
    /// When what it reports happened, if the author said.
    pub happened_at: Option<Millis>,
    /// Whether partners may see it.
    pub shared: bool,
    /// The text.
    pub text: String,
}

/// Note `note_id` of ticket `number`, in full.
pub fn note(conn: &Connection, number: i64, note_id: Uuid) -> Result<FullNote, StoreError> {
    conn.prepare_cached(
        "SELECT n.id, t.number, n.author, n.at, n.happened_at, n.shared, n.text
         FROM notes n JOIN tickets t ON t.id = n.ticket_id WHERE n.id = ?1 AND t.number = ?2",
    )?
    .query_row(params![note_id, number], |r| {
        Ok(FullNote {
            note_id: r.get(0)?,
            number: r.get(1)?,
            author: r.get(2)?,
            at: r.get(3)?,
            happened_at: r.get(4)?,
            shared: r.get(5)?,
            text: r.get(6)?,
        })
    })
    .optional()?
    .ok_or_else(|| {
        StoreError::Command(CommandError::NotFound(format!(
            "no note {note_id} on ticket {number}"
        )))
    })
}

//! Reads on a large store: builds it through the one applier (`WriteOp::Replicate`, the path a
//! standby replays its primary on), then times the open-work list, the chart of a long ticket
//! and full-text search, each against the same SQL through bare rusqlite on the same file.

use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use rusqlite::Connection;
use uuid::Uuid;

use super::text::{self, Rng, SEARCHES};
use super::StoreBenchOptions;
use crate::bench::{rate, rss_bytes, BenchError, Goal, Latencies, LatencySummary, Section, Target};
use crate::config::{LimitsSection, StoreSection};
use crate::model::event::{Event, EventKind};
use crate::model::lifecycle::Status;
use crate::store::query::{self, ListFilter, ROW_COLUMNS};
use crate::store::{Store, WriteOp, WriteOutcome, WriteRequest};

/// Tickets with [`LONG_UPDATES`] updates each; they are numbers `1..=LONG_TICKETS`.
pub const LONG_TICKETS: u64 = 100;
/// Updates on each long ticket.
pub const LONG_UPDATES: u64 = 100;
/// Updates on every other ticket.
const UPDATES: u64 = 3;
/// Events per `WriteOp::Replicate` batch.
const BATCH: usize = 5_000;
/// Rows a search returns.
const SEARCH_LIMIT: u32 = 50;

/// Latency targets (ms) and memory target (MB).
const TARGET_LIST_P99_MS: f64 = 5.0;
const TARGET_SHOW_P99_MS: f64 = 5.0;
const TARGET_SEARCH_P99_MS: f64 = 50.0;
const TARGET_RSS_MB: f64 = 150.0;

/// Opens (and migrates) a benchmark store.
pub(crate) fn open(path: &Path) -> Result<Store, BenchError> {
    Ok(Store::open(
        path,
        super::stamp(),
        &StoreSection::default(),
        &LimitsSection::default(),
    )?)
}

/// Builds the events of the store in order: the long tickets first, then the others.
struct Generator {
    rng: Rng,
    tickets: u64,
    next_ticket: u64,
    seq: u64,
    base: i64,
}

impl Generator {
    fn event(&mut self, ticket: Uuid, at: i64, kind: EventKind) -> Event {
        self.seq += 1;
        Event {
            id: Uuid::now_v7(),
            origin_site: "bench".into(),
            // Not this node's name: the writer's own sequence numbers stay untouched.
            origin_node: "generator".into(),
            epoch: 1,
            seq: self.seq,
            at,
            actor: format!("op{}", self.rng.below(40)),
            ticket: Some(ticket),
            kind,
        }
    }

    fn note(&mut self) -> EventKind {
        EventKind::NoteAdded {
            note_id: Uuid::now_v7(),
            text: text::note(&mut self.rng),
            shared: false,
            happened_at: None,
        }
    }

    /// The events of the next ticket, or `None` when all are out.
    fn next_ticket(&mut self) -> Option<Vec<Event>> {
        if self.next_ticket > self.tickets + LONG_TICKETS {
            return None;
        }
        let number = self.next_ticket as i64;
        self.next_ticket += 1;
        let id = Uuid::now_v7();
        let at = self.base + number * 30_000;
        let new = text::new_ticket(&mut self.rng);
        let mut events = vec![self.event(
            id,
            at,
            EventKind::TicketCreated {
                number,
                ticket: new,
            },
        )];
        let long = number as u64 <= LONG_TICKETS;
        let updates = if long { LONG_UPDATES } else { UPDATES };
        for u in 1..=updates {
            let at = at + u as i64 * 600_000;
            let kind = if u < updates || long {
                self.note()
            } else if self.rng.chance(85) {
                EventKind::Resolved {
                    resolution: "replaced optic, errors cleared".into(),
                    component: Some("optic".into()),
                    escalated_to: None,
                }
            } else {
                EventKind::StatusChanged {
                    from: Status::New,
                    to: Status::Open,
                }
            };
            events.push(self.event(id, at, kind));
        }
        Some(events)
    }
}

/// Opens a built benchmark store and counts it; refuses a store without the long tickets.
pub(crate) fn open_built(path: &Path) -> Result<(Store, query::Counts), BenchError> {
    let store = open(path)?;
    // A store built in this run may still be indexing its last notes.
    store.writer.search_index_ready_blocking();
    let counts = store.reader.read_blocking(query::counts)?;
    if (counts.tickets as u64) < LONG_TICKETS {
        return Err(BenchError::Invalid(format!(
            "{} holds {} tickets: not a benchmark store",
            path.display(),
            counts.tickets
        )));
    }
    Ok((store, counts))
}

/// Builds the store at `path` through the applier; returns a section with the build figures.
pub(crate) fn build(path: &Path, tickets: u64, progress: bool) -> Result<Section, BenchError> {
    {
        // The store follows the generator as a standby follows its primary: the generated
        // events are shipped to it and applied at positions 1, 2, 3, ...
        let mut conn = crate::store::open_connection(path, &StoreSection::default(), false)?;
        crate::store::schema::migrate(&mut conn)?;
        crate::store::site_log::claim(&conn, &super::stamp())?;
        crate::store::site_log::make_standby(&conn, &super::stamp().node, "generator")?;
    }
    let store = open(path)?;
    let (tx, rx) = mpsc::sync_channel::<Vec<Event>>(4);
    let generator = std::thread::spawn(move || {
        let mut g = Generator {
            rng: Rng::new(42),
            tickets,
            next_ticket: 1,
            seq: 0,
            base: crate::model::clock::now() - 3 * 365 * 24 * 3_600_000,
        };
        let mut batch = Vec::with_capacity(BATCH + LONG_UPDATES as usize);
        while let Some(events) = g.next_ticket() {
            batch.extend(events);
            if batch.len() >= BATCH && tx.send(std::mem::take(&mut batch)).is_err() {
                return;
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
    });
    let total = (tickets * (1 + UPDATES) + LONG_TICKETS * (1 + LONG_UPDATES)) as f64;
    let start = Instant::now();
    let (mut applied, mut shown) = (0usize, 0.0);
    for batch in rx {
        let envelopes = batch
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let body = crate::store::apply::event_body(&e.kind)?;
                Ok(crate::store::ship::envelope_of(
                    (applied + i + 1) as i64,
                    e,
                    &body,
                ))
            })
            .collect::<Result<Vec<_>, crate::store::StoreError>>()?;
        let answer = store.writer.write_blocking(WriteRequest {
            actor: "system".into(),
            idempotency: None,
            op: WriteOp::Replicate(envelopes),
        })?;
        if let WriteOutcome::Applied { applied: n } = answer {
            applied += n;
        }
        let done = applied as f64 / total;
        if progress && done - shown >= 0.05 {
            shown = done;
            eprintln!(
                "building: {:>3.0}% ({applied} events, {:.0} events/s)",
                done * 100.0,
                rate(applied as u64, start.elapsed())
            );
        }
    }
    let elapsed = start.elapsed();
    let _ = generator.join();
    // Built: the store takes over from the generator, so benchmarks may write to it.
    store.writer.write_blocking(WriteRequest {
        actor: "system".into(),
        idempotency: None,
        op: WriteOp::Promote,
    })?;
    store.writer.shutdown();
    let mut s = Section::new(format!(
        "Store build through the applier ({tickets} tickets x {UPDATES} updates + \
         {LONG_TICKETS} x {LONG_UPDATES})"
    ));
    s.figure("events applied", applied as f64, "events");
    s.figure("build time", elapsed.as_secs_f64(), "s");
    s.figure(
        "events/s through the applier",
        rate(applied as u64, elapsed),
        "events/s",
    );
    s.note(format!(
        "WriteOp::Replicate batches of ~{BATCH} events (one transaction each), generated on \
         another thread; last update: 85% resolved, 15% opened"
    ));
    Ok(s)
}

/// Times `iterations` calls of `f`, each given the iteration number.
pub(crate) fn measure(
    iterations: usize,
    mut f: impl FnMut(usize) -> Result<(), BenchError>,
) -> Result<LatencySummary, BenchError> {
    let mut lat = Latencies::with_capacity(iterations);
    for i in 0..iterations {
        let start = Instant::now();
        f(i)?;
        lat.record(start.elapsed());
    }
    Ok(lat.summary())
}

/// Runs the read benchmark on `--store` (reused if it holds tickets) or a new store in `dir`.
pub fn run(opts: &StoreBenchOptions, dir: &Path) -> Result<Vec<Section>, BenchError> {
    let path = opts.store.clone().unwrap_or_else(|| dir.join("large.db"));
    let mut sections = Vec::new();
    let existing = if path.exists() {
        let store = open(&path)?;
        let counts = store.reader.read_blocking(query::counts)?;
        store.writer.shutdown();
        counts.tickets
    } else {
        0
    };
    if existing == 0 {
        sections.push(build(&path, opts.tickets, opts.progress)?);
    }
    let rss_before = rss_bytes().unwrap_or(0);
    let (store, counts) = open_built(&path)?;
    let n = opts.iterations.max(1);
    let reader = &store.reader;
    let list = measure(n, |_| {
        reader.read_blocking(|c| query::list(c, &ListFilter::default()).map(drop))?;
        Ok(())
    })?;
    let chart = measure(n, |i| {
        let number = 1 + (i as i64 % LONG_TICKETS as i64);
        let chart = reader.read_blocking(|c| query::chart(c, number))?;
        if chart.history.len() as u64 <= LONG_UPDATES {
            return Err(BenchError::Invalid(format!(
                "ticket {number} has {} events, expected {}: not a benchmark store",
                chart.history.len(),
                LONG_UPDATES + 1
            )));
        }
        Ok(())
    })?;
    let mut by_kind: Vec<(&str, Latencies)> = Vec::new();
    let mut all = Latencies::with_capacity(n);
    for i in 0..n {
        let (kind, text) = SEARCHES[i % SEARCHES.len()];
        let start = Instant::now();
        reader.read_blocking(|c| query::search(c, text, SEARCH_LIMIT))?;
        let d = start.elapsed();
        all.record(d);
        match by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, l)) => l.record(d),
            None => by_kind.push((kind, {
                let mut l = Latencies::default();
                l.record(d);
                l
            })),
        }
    }
    let search = all.summary();
    let rss = rss_bytes().unwrap_or(0);

    // The same SQL on a bare connection: no pool, no JSON, no row types.
    let bare = crate::store::open_connection(&path, &StoreSection::default(), true)?;
    let bare_list = measure(n, |_| bare_list(&bare))?;
    let bare_chart = measure(n, |i| {
        bare_chart(&bare, 1 + (i as i64 % LONG_TICKETS as i64))
    })?;
    let bare_search = measure(n, |i| bare_search(&bare, SEARCHES[i % SEARCHES.len()].1))?;
    drop(bare);
    store.writer.shutdown();

    let mut s = Section::new(format!(
        "Reads ({} tickets, {} events, {} open; {n} iterations each)",
        counts.tickets, counts.events, counts.open_tickets
    ));
    let at_most = |value| Target {
        goal: Goal::AtMost,
        value,
    };
    let ms = |us: f64| us / 1000.0;
    s.figure("list (open work, 100 rows) p50", ms(list.p50_us), "ms");
    s.target(
        "list p99",
        ms(list.p99_us),
        "ms",
        at_most(TARGET_LIST_P99_MS),
    );
    s.figure("show (chart, 101 events) p50", ms(chart.p50_us), "ms");
    s.target(
        "show p99",
        ms(chart.p99_us),
        "ms",
        at_most(TARGET_SHOW_P99_MS),
    );
    s.figure("search p50", ms(search.p50_us), "ms");
    s.target(
        "search p99",
        ms(search.p99_us),
        "ms",
        at_most(TARGET_SEARCH_P99_MS),
    );
    for (kind, l) in &by_kind {
        let l = l.summary();
        s.figure(format!("search {kind} p50"), ms(l.p50_us), "ms");
        s.figure(format!("search {kind} p99"), ms(l.p99_us), "ms");
    }
    s.target(
        "process RSS (writer + read pool, after reads)",
        rss as f64 / 1e6,
        "MB",
        at_most(TARGET_RSS_MB),
    );
    s.figure(
        "process RSS before opening the store",
        rss_before as f64 / 1e6,
        "MB",
    );
    for (name, ttx, base) in [
        ("list", list, bare_list),
        ("show", chart, bare_chart),
        ("search", search, bare_search),
    ] {
        s.figure(format!("bare {name} p50"), ms(base.p50_us), "ms");
        s.figure(format!("bare {name} p99"), ms(base.p99_us), "ms");
        s.figure(
            format!("{name}: ttx / bare p50"),
            ttx.p50_us / base.p50_us.max(0.001),
            "x",
        );
    }
    s.note(format!(
        "searches cycle through {:?} with limit {SEARCH_LIMIT}",
        SEARCHES.iter().map(|(_, t)| *t).collect::<Vec<_>>()
    ));
    s.note(
        "bare: one read-only rusqlite connection with the store's pragmas running the SQL that \
         query::list / chart / search run, reading every column but building no types and \
         parsing no JSON; the ratio is ttx p50 over bare p50 (above 1: ttx is slower)",
    );
    sections.push(s);
    Ok(sections)
}

fn bare_list(c: &Connection) -> Result<(), BenchError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM tickets WHERE status IN ('new', 'open', 'pending', 'referred')
         ORDER BY priority, number LIMIT 100"
    ))?;
    // Every column query::list reads, as it reads them.
    let columns = stmt.column_count();
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        for i in 0..columns {
            let _ = r.get_ref(i)?;
        }
    }
    Ok(())
}

fn bare_chart(c: &Connection, number: i64) -> Result<(), BenchError> {
    let id: Vec<u8> = c
        .prepare_cached("SELECT id FROM tickets WHERE number = ?1")?
        .query_row([number], |r| r.get(0))?;
    let _doc: String = c
        .prepare_cached("SELECT doc FROM tickets WHERE id = ?1")?
        .query_row([&id], |r| r.get(0))?;
    for sql in [
        "SELECT id, origin_site, origin_node, epoch, origin_seq, ticket_id, at, actor, body, seq
         FROM events WHERE ticket_id = ?1 ORDER BY seq",
        "SELECT tm.id, t.number, t.subject, tm.due_at, tm.text, tm.set_by, tm.fired_at
         FROM timers tm JOIN tickets t ON t.id = tm.ticket_id WHERE tm.ticket_id = ?1 ORDER BY tm.due_at",
        "SELECT t.number, l.kind FROM links l JOIN tickets t ON t.id = l.from_id
         WHERE l.to_id = ?1 ORDER BY t.number",
    ] {
        let mut stmt = c.prepare_cached(sql)?;
        let cols = stmt.column_count();
        let mut rows = stmt.query([&id])?;
        while let Some(r) = rows.next()? {
            for i in 0..cols {
                let _ = r.get_ref(i)?;
            }
        }
    }
    Ok(())
}

fn bare_search(c: &Connection, text: &str) -> Result<(), BenchError> {
    let query = query::fts_query(text).unwrap_or_default();
    let mut ids: Vec<Vec<u8>> = Vec::new();
    for (sql, limit) in [
        (
            "SELECT t.rowid, t.id, 'subject', snippet(ticket_fts, 0, '[', ']', '…', 12)
         FROM ticket_fts JOIN tickets t ON t.rowid = ticket_fts.rowid
         WHERE ticket_fts MATCH ?1 ORDER BY ticket_fts.rowid DESC LIMIT ?2",
            SEARCH_LIMIT,
        ),
        (
            "SELECT n.event_seq, n.ticket_id, 'note', snippet(note_fts, 0, '[', ']', '…', 12)
         FROM note_fts JOIN notes n ON n.rowid = note_fts.rowid
         WHERE note_fts MATCH ?1 ORDER BY note_fts.rowid DESC LIMIT ?2",
            SEARCH_LIMIT * 4,
        ),
    ] {
        let mut stmt = c.prepare_cached(sql)?;
        let mut rows = stmt.query(rusqlite::params![query, limit])?;
        while let Some(r) = rows.next()? {
            let _ = r.get_ref(3)?;
            ids.push(r.get(1)?);
        }
    }
    ids.sort();
    ids.dedup();
    let mut stmt = c.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM tickets WHERE id = ?1"))?;
    for id in ids.iter().take(SEARCH_LIMIT as usize) {
        let mut rows = stmt.query([id])?;
        while let Some(r) = rows.next()? {
            let _ = r.get_ref(8)?;
        }
    }
    Ok(())
}

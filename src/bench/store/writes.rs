//! Durable note appends through the store's write path, against bare rusqlite writing the same
//! rows in transactions of the same size.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::params;
use uuid::Uuid;

use super::text::{self, Rng};
use super::StoreBenchOptions;
use crate::bench::{rate, BenchError, Goal, Latencies, Section, Target};
use crate::config::{LimitsSection, StoreSection};
use crate::model::command::{Command, CreateTicket};
use crate::model::event::{Event, EventKind};
use crate::store::{apply, schema, Store, WriteOp, WriteOutcome, WriteRequest};

/// How many tickets the notes are spread over.
const TICKETS: i64 = 8;

/// Target throughput of durable note appends.
pub const TARGET_NOTES_PER_SEC: f64 = 20_000.0;
/// Target ratio of ttx's throughput to the bare-rusqlite baseline's.
pub const TARGET_RATIO: f64 = 0.5;

/// Runs the note-append benchmark in `dir` and its baseline, adding the figures to a section.
pub fn run(opts: &StoreBenchOptions, dir: &Path) -> Result<Section, BenchError> {
    let mut section = Section::new(format!(
        "Durable note appends ({} notes, {} concurrent submitters, synchronous = full)",
        opts.notes, opts.writers
    ));
    let store = Store::open(
        &dir.join("notes.db"),
        super::stamp(),
        &StoreSection::default(),
        &LimitsSection::default(),
    )?;
    let mut rng = Rng::new(1);
    for _ in 0..TICKETS {
        store.writer.write_blocking(WriteRequest {
            actor: "bench".into(),
            idempotency: None,
            op: WriteOp::Create(Box::new(CreateTicket {
                subject: text::subject(&mut rng),
                ..Default::default()
            })),
        })?;
    }
    let stats = store.writer.stats.clone();
    let (req0, commits0) = (
        stats.requests.load(Ordering::Relaxed),
        stats.commits.load(Ordering::Relaxed),
    );
    let writers = opts.writers.max(1);
    let start = Instant::now();
    let per_thread: Vec<Result<Latencies, BenchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let count = opts.notes / writers as u64
                    + u64::from((w as u64) < opts.notes % writers as u64);
                let writer = store.writer.clone();
                s.spawn(move || -> Result<Latencies, BenchError> {
                    let mut rng = Rng::new(1000 + w as u64);
                    let mut lat = Latencies::with_capacity(count as usize);
                    for _ in 0..count {
                        let op = WriteOp::Ticket {
                            number: 1 + rng.below(TICKETS as usize) as i64,
                            command: Command::Note {
                                text: text::note(&mut rng),
                                shared: false,
                                happened_at: None,
                            },
                        };
                        let req = WriteRequest {
                            actor: "bench".into(),
                            idempotency: None,
                            op,
                        };
                        match lat.time(|| writer.write_blocking(req))? {
                            WriteOutcome::Ticket(ack) if ack.events.len() == 1 => {}
                            other => {
                                return Err(BenchError::Invalid(format!(
                                    "unexpected answer to a note: {other:?}"
                                )))
                            }
                        }
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BenchError::Invalid("a submitter panicked".into())))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let mut lat = Latencies::with_capacity(opts.notes as usize);
    for l in per_thread {
        lat.merge(l?);
    }
    let requests = stats.requests.load(Ordering::Relaxed) - req0;
    let commits = (stats.commits.load(Ordering::Relaxed) - commits0).max(1);
    store.writer.shutdown();
    let group = requests as f64 / commits as f64;
    let ttx_rate = rate(opts.notes, elapsed);
    let summary = lat.summary();

    let group_size = (group.round() as usize).max(1);
    let base_elapsed = baseline(&dir.join("baseline.db"), opts.notes, group_size)?;
    let base_rate = rate(opts.notes, base_elapsed);

    let at_least = |value| Target {
        goal: Goal::AtLeast,
        value,
    };
    section.target(
        "ttx notes/s",
        ttx_rate,
        "notes/s",
        at_least(TARGET_NOTES_PER_SEC),
    );
    section.figure("ttx wall time", elapsed.as_secs_f64(), "s");
    section.figure("average group commit (requests/commits)", group, "writes");
    section.figure("commits", commits as f64, "commits");
    section.figure("note latency p50", summary.p50_us / 1000.0, "ms");
    section.figure("note latency p99", summary.p99_us / 1000.0, "ms");
    section.figure("note latency max", summary.max_us / 1000.0, "ms");
    section.figure("baseline notes/s (bare rusqlite)", base_rate, "notes/s");
    section.target(
        "ttx / baseline",
        ttx_rate / base_rate,
        "x",
        at_least(TARGET_RATIO),
    );
    section.note(format!(
        "ttx: {writers} threads call Writer::write_blocking with Command::Note on {TICKETS} tickets; \
         the writer thread decides, applies and group-commits them (fsync per commit)"
    ));
    section.note(format!(
        "baseline: one thread, bare rusqlite on a fresh file, same pragmas (WAL, synchronous = full, \
         cache_size) and schema (store::schema::migrate); per note the rows the applier writes: \
         INSERT events (body JSON serialized before the clock starts), INSERT notes, INSERT note_fts, \
         UPDATE tickets (the note count and updated_at columns); {group_size} notes per \
         transaction (ttx's average group commit), cached prepared statements, no JSON work timed"
    ));
    Ok(section)
}

/// Bare rusqlite writing the rows of `notes` notes, `group` per transaction; returns the time
/// the inserts and commits took (the setup and the JSON serialization are not timed).
fn baseline(path: &Path, notes: u64, group: usize) -> Result<Duration, BenchError> {
    let mut conn = crate::store::open_connection(path, &StoreSection::default(), false)?;
    schema::migrate(&mut conn)?;
    // The tickets are opened through the applier (not timed), so their rows are the store's.
    let mut rng = Rng::new(1);
    let mut tickets = Vec::new();
    let tx = conn.transaction()?;
    for number in 1..=TICKETS {
        let ticket = text::new_ticket(&mut rng);
        let event = Event {
            id: Uuid::now_v7(),
            origin_site: "bench".into(),
            origin_node: "primary".into(),
            epoch: 1,
            seq: number as u64,
            at: 0,
            actor: "bench".into(),
            ticket: Some(Uuid::now_v7()),
            kind: EventKind::TicketCreated { number, ticket },
        };
        let body = apply::event_body(&event.kind)?;
        apply::apply_event(&tx, number, &event, &body)?;
        let t = apply::load_ticket(&tx, event.ticket.unwrap_or_default())?
            .ok_or_else(|| BenchError::Invalid("the baseline ticket vanished".into()))?;
        tickets.push(t);
    }
    tx.commit()?;
    // Everything the timed loop writes is prepared first.
    let mut rng = Rng::new(1000);
    let rows: Vec<(Uuid, Uuid, usize, String, String)> = (0..notes)
        .map(|_| {
            let text = text::note(&mut rng);
            let note_id = Uuid::now_v7();
            let kind = EventKind::NoteAdded {
                note_id,
                text: text.clone(),
                shared: false,
                happened_at: None,
            };
            let body = serde_json::to_string(&kind).unwrap_or_default();
            (
                Uuid::now_v7(),
                note_id,
                rng.below(TICKETS as usize),
                text,
                body,
            )
        })
        .collect();
    let start = Instant::now();
    for (chunk_no, chunk) in rows.chunks(group).enumerate() {
        let tx = conn.transaction()?;
        for (i, (event_id, note_id, ticket, text, body)) in chunk.iter().enumerate() {
            let t = &tickets[*ticket];
            let at = (chunk_no * group + i) as i64;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO events
                     (id, origin_site, origin_node, epoch, origin_seq, ticket_id, at, actor, kind, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                event_id.as_bytes(),
                "bench",
                "primary",
                1,
                at + 1 + TICKETS,
                t.id.as_bytes(),
                at,
                "bench",
                "note",
                body
            ])?;
            let seq = tx.last_insert_rowid();
            tx.prepare_cached(
                "INSERT INTO notes (id, ticket_id, event_seq, author, at, happened_at, shared, text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                note_id.as_bytes(),
                t.id.as_bytes(),
                seq,
                "bench",
                at,
                None::<i64>,
                false,
                text
            ])?;
            tx.prepare_cached(
                "INSERT INTO note_fts (rowid, text) VALUES (last_insert_rowid(), ?1)",
            )?
            .execute([text])?;
            tx.prepare_cached(
                "UPDATE tickets SET notes = notes + 1, updated_at = max(updated_at, ?2) WHERE id = ?1",
            )?
            .execute(params![t.id.as_bytes(), at])?;
        }
        tx.commit()?;
    }
    Ok(start.elapsed())
}

//! Migrations on real SQLite files: an old store, migrated, equals a fresh replay of its log.

use rusqlite::types::Value;
use rusqlite::{params, Connection};

use super::{migrate, migrate_to, VERSION};
use crate::config::StoreSection;
use crate::model::command::Command;
use crate::model::event::{Event, EventKind};
use crate::model::ticket::Ticket;
use crate::store::apply::{apply_event, load_ticket};
use crate::store::tests::{create, note, open, req};
use crate::store::{open_connection, query};

/// The events of a real store's log, written by the current writer: two tickets, notes on
/// both, a ticket event after the notes (which rewrites the ticket's document), and a timer
/// on a ticket that is then cancelled.
fn a_real_log() -> Vec<Event> {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    let a = create(&store, "core1 bgp flap");
    let b = create(&store, "edge2 optics");
    for (number, text) in [(a.number, "flapping again"), (b.number, "rx -30 dBm")] {
        store
            .writer
            .write_blocking(req(note(number, text)))
            .unwrap();
    }
    store
        .writer
        .write_blocking(req(note(a.number, "carrier ticket 991")))
        .unwrap();
    let take = crate::store::WriteOp::Ticket {
        number: a.number,
        command: Command::Take { steal: false },
    };
    store.writer.write_blocking(req(take)).unwrap();
    let timer = crate::store::WriteOp::Ticket {
        number: b.number,
        command: Command::Timer {
            due_at: crate::model::clock::now() + 3_600_000,
            text: "call the carrier".into(),
        },
    };
    store.writer.write_blocking(req(timer)).unwrap();
    let cancel = crate::store::WriteOp::Ticket {
        number: b.number,
        command: Command::Set {
            assignments: vec!["status=cancelled".into()],
        },
    };
    store.writer.write_blocking(req(cancel)).unwrap();
    // Header fields that search covers since migration 6.
    let set = crate::store::WriteOp::Ticket {
        number: b.number,
        command: Command::Set {
            assignments: vec![
                "circuit=LON-PAR-3".into(),
                "nodes=core1.lon,edge4.par".into(),
                "cf.vendor=acmeoptics".into(),
            ],
        },
    };
    store.writer.write_blocking(req(set)).unwrap();
    let events = store
        .reader
        .read_blocking(|c| query::events_after(c, 0, 1000))
        .unwrap();
    store.writer.shutdown();
    events.into_iter().map(|(_, e)| e).collect()
}

/// Writes `events` the way schema version 3 did: the note count lived only in the ticket's
/// document, which every ticket event (a note too) rewrote.
fn write_as_v3(conn: &Connection, events: &[Event]) {
    for e in events {
        let body = serde_json::to_string(&e.kind).unwrap();
        conn.execute(
            "INSERT INTO events (id, origin_site, origin_node, epoch, origin_seq, ticket_id, at,
                                 actor, kind, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                e.id,
                e.origin_site,
                e.origin_node,
                e.epoch as i64,
                e.seq as i64,
                e.ticket,
                e.at,
                e.actor,
                e.kind.name(),
                body
            ],
        )
        .unwrap();
        let seq = conn.last_insert_rowid();
        let Some(id) = e.ticket else { continue };
        let mut t = match &e.kind {
            EventKind::TicketCreated { number, ticket } => {
                let t = Ticket::created(id, &e.origin_site, *number, ticket, &e.actor, e.at);
                conn.execute(
                    "INSERT INTO tickets (id, number, status, priority, severity, queue, owner,
                                          type, subject, created_at, updated_at, doc)
                     VALUES (?1, ?2, 'new', 0, 0, '', NULL, '', ?3, ?4, ?4, '{}')",
                    params![id, t.number, t.subject, t.created_at],
                )
                .unwrap();
                conn.execute(
                    "INSERT INTO ticket_fts (rowid, subject) VALUES (last_insert_rowid(), ?1)",
                    [&t.subject],
                )
                .unwrap();
                t
            }
            kind => {
                if let EventKind::TimerSet {
                    timer_id,
                    due_at,
                    text,
                } = kind
                {
                    conn.execute(
                        "INSERT INTO timers (id, ticket_id, due_at, text, set_by)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![timer_id, id, due_at, text, e.actor],
                    )
                    .unwrap();
                }
                if let EventKind::NoteAdded {
                    note_id,
                    text,
                    shared,
                    happened_at,
                } = kind
                {
                    conn.execute(
                        "INSERT INTO notes (id, ticket_id, event_seq, author, at, happened_at,
                                            shared, text)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![note_id, id, seq, e.actor, e.at, happened_at, shared, text],
                    )
                    .unwrap();
                    conn.execute(
                        "INSERT INTO note_fts (rowid, text) VALUES (last_insert_rowid(), ?1)",
                        [text],
                    )
                    .unwrap();
                }
                let doc: String = conn
                    .query_row("SELECT doc FROM tickets WHERE id = ?1", [id], |r| r.get(0))
                    .unwrap();
                let mut t: Ticket = serde_json::from_str(&doc).unwrap();
                t.apply(kind, e.at);
                t
            }
        };
        if let EventKind::TicketCreated { .. } = &e.kind {
            t.updated_at = e.at;
        }
        // Version 3 kept every column equal to the document's field of the same name.
        conn.execute(
            "UPDATE tickets SET doc = ?2, status = ?2 ->> 'status', priority = ?2 ->> 'priority',
                 severity = ?2 ->> 'severity', queue = ?2 ->> 'queue', owner = ?2 ->> 'owner',
                 type = ?2 ->> 'type', subject = ?2 ->> 'subject',
                 updated_at = ?2 ->> 'updated_at'
             WHERE id = ?1",
            params![id, serde_json::to_string(&t).unwrap()],
        )
        .unwrap();
    }
}

/// Every row of `sql`'s answer, as SQLite values.
fn rows(conn: &Connection, sql: &str) -> Vec<Vec<Value>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The logical state of a store: every projection row (the ticket document is compared as the
/// ticket it reads back as, since which fields a document caches is a detail of each version),
/// and what full-text search finds.
fn logical_state(conn: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "SELECT id, number, status, priority, severity, queue, owner, type, subject, created_at,
                updated_at, notes, header FROM tickets ORDER BY number",
        "SELECT id, ticket_id, event_seq, author, at, happened_at, shared, text FROM notes
         ORDER BY event_seq",
        "SELECT * FROM links ORDER BY from_id, kind, to_id",
        "SELECT * FROM timers ORDER BY id",
        "SELECT * FROM operators ORDER BY name",
        "SELECT * FROM peers ORDER BY site",
        "SELECT rowid FROM note_fts WHERE note_fts MATCH 'flapping OR dBm OR carrier' ORDER BY rowid",
        "SELECT rowid FROM ticket_fts WHERE ticket_fts MATCH 'bgp OR optics' ORDER BY rowid",
        "SELECT rowid FROM ticket_fts WHERE ticket_fts MATCH '\"LON-PAR-3\" OR acmeoptics OR \"edge4.par\" OR admin'
         ORDER BY rowid",
    ] {
        out.push(format!("{sql}: {:?}", rows(conn, sql)));
    }
    let ids: Vec<uuid::Uuid> = conn
        .prepare("SELECT id FROM tickets ORDER BY number")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for id in ids {
        out.push(format!("{:?}", load_ticket(conn, id).unwrap()));
    }
    out
}

#[test]
fn a_store_migrated_from_v3_equals_a_fresh_replay_of_its_log() {
    let events = a_real_log();
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreSection::default();
    let mut old = open_connection(&dir.path().join("v3.db"), &cfg, false).unwrap();
    migrate_to(&mut old, 3).unwrap();
    write_as_v3(&old, &events);
    migrate(&mut old).unwrap();
    let version: i64 = old
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, VERSION);

    let mut fresh = open_connection(&dir.path().join("replay.db"), &cfg, false).unwrap();
    migrate(&mut fresh).unwrap();
    let tx = fresh.transaction().unwrap();
    let log = query::events_after(&old, 0, 1000).unwrap();
    for (position, event) in &log {
        let body = crate::store::apply::event_body(&event.kind).unwrap();
        apply_event(&tx, *position, event, &body).unwrap();
    }
    crate::store::note_index::catch_up(&tx).unwrap();
    tx.commit().unwrap();

    let (migrated, replayed) = (logical_state(&old), logical_state(&fresh));
    assert_eq!(migrated, replayed);
    // The note counts are the ones the log implies (3 on the first ticket, 2 on the second),
    // not the 0 that migration 4 alone left.
    let counts = rows(&old, "SELECT notes FROM tickets ORDER BY number");
    assert_eq!(counts, [[Value::Integer(3)], [Value::Integer(2)]]);
    // The cancelled ticket's pending timer is cancelled with it (migration 6), never due.
    let cancelled = rows(&old, "SELECT cancelled_at IS NOT NULL FROM timers");
    assert_eq!(cancelled, [[Value::Integer(1)]]);
    assert_eq!(query::next_due(&old).unwrap(), None);
}

/// Migration 13: a note writes no index entry by ticket (one page more per ticket in a commit),
/// and the one lookup that used it, a long note's length in a ticket's history, goes through
/// `notes_event` instead of scanning the notes.
#[test]
fn notes_have_no_index_by_ticket_and_are_found_from_their_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn =
        open_connection(&dir.path().join("s.db"), &StoreSection::default(), false).unwrap();
    migrate(&mut conn).unwrap();
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'notes' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, ["notes_event", "sqlite_autoindex_notes_1"]);
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT octet_length(n.text) FROM notes n WHERE n.event_seq = 7",
        )
        .unwrap()
        .query_map([], |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter().any(|p| p.contains("USING INDEX notes_event")),
        "{plan:?}"
    );
}

/// Migration 16: an idempotency record keeps the key, its time and its `answered` event's
/// position; the answer is read from the event. A v15 record whose event is in the log is linked
/// to it (as a replay would project it), one without an event keeps its own answer, and both
/// still answer a retry after the migration.
#[test]
fn idempotency_records_migrated_to_v16_answer_retries_from_their_event() {
    use crate::store::{Idempotency, WriteOutcome, WriteRequest};
    let dir = tempfile::tempdir().unwrap();
    let keyed = |op, key: &str| WriteRequest {
        idempotency: Some(Idempotency {
            key: key.into(),
            fingerprint: format!("fp-{key}"),
        }),
        ..req(op)
    };
    let first = {
        let store = open(dir.path(), "noc-a");
        let a = create(&store, "core1 bgp flap");
        store
            .writer
            .write_blocking(keyed(note(a.number, "flapping again"), "k1"))
            .unwrap()
    };
    let path = dir.path().join("ttx.db");
    let answered_seq: i64 = {
        let conn = Connection::open(&path).unwrap();
        let (seq, fp, answer): (i64, String, String) = conn
            .query_row(
                "SELECT seq, json_extract(body, '$.Answered.fingerprint'),
                        json_extract(body, '$.Answered.answer')
                 FROM events WHERE kind = 'answered'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        // The v15 table: the answer and fingerprint in the row, and a record from before the
        // site log whose answer is in no event (and none of the later migrations' tables or
        // columns).
        conn.execute_batch(
            "DROP TABLE attachment_inbound;
             ALTER TABLE exchange_edges DROP COLUMN out_learned;
             DROP TABLE idempotency;
             CREATE TABLE idempotency (key TEXT PRIMARY KEY, response TEXT NOT NULL,
                 at INTEGER NOT NULL, request_sha256 TEXT NOT NULL DEFAULT '') STRICT;
             CREATE INDEX idempotency_at ON idempotency (at);
             PRAGMA user_version = 15;",
        )
        .unwrap();
        let now = crate::model::clock::now();
        conn.execute(
            "INSERT INTO idempotency (key, response, at, request_sha256) VALUES
                 ('alice:k1', ?1, ?2, ?3), ('alice:old', ?1, ?2, 'fp-old')",
            params![answer, now, fp],
        )
        .unwrap();
        seq
    };
    let store = open(dir.path(), "noc-a");
    let conn = Connection::open(&path).unwrap();
    let records = rows(
        &conn,
        "SELECT key, event_seq, response IS NULL, request_sha256 IS NULL FROM idempotency ORDER BY key",
    );
    assert_eq!(
        records,
        [
            vec![
                Value::Text("alice:k1".into()),
                Value::Integer(answered_seq),
                Value::Integer(1),
                Value::Integer(1)
            ],
            vec![
                Value::Text("alice:old".into()),
                Value::Null,
                Value::Integer(0),
                Value::Integer(0)
            ],
        ]
    );
    let number = match &first {
        WriteOutcome::Ticket(ack) => ack.number,
        other => panic!("{other:?}"),
    };
    for key in ["k1", "old"] {
        let retry = store
            .writer
            .write_blocking(keyed(note(number, "flapping again"), key))
            .unwrap();
        match (&retry, &first) {
            (WriteOutcome::Ticket(r), WriteOutcome::Ticket(f)) => {
                assert!(r.replayed, "{key}: {r:?}");
                assert_eq!((r.number, r.id, &r.events), (f.number, f.id, &f.events));
            }
            other => panic!("{other:?}"),
        }
    }
    // A key used for another request is still refused.
    let mut other = keyed(note(number, "something else"), "k1");
    other.idempotency.as_mut().unwrap().fingerprint = "fp-other".into();
    let e = store.writer.write_blocking(other).unwrap_err();
    assert!(e.to_string().contains("different request"), "{e}");
    // A new keyed write after the migration is recorded by its event alone.
    store
        .writer
        .write_blocking(keyed(note(number, "new"), "k2"))
        .unwrap();
    let new = rows(
        &conn,
        "SELECT i.event_seq = e.seq, i.response IS NULL FROM idempotency i
         JOIN events e ON e.kind = 'answered' AND json_extract(e.body, '$.Answered.key') = 'k2'
         WHERE i.key = 'alice:k2'",
    );
    assert_eq!(new, [[Value::Integer(1), Value::Integer(1)]]);
}

/// Migration 18: an edge from before the mark probe counts as learned in the store's current
/// epoch (its primary has been sending in it), so an upgrade alone probes nothing and moves
/// nothing; a new edge has learned nothing yet.
#[test]
fn edges_from_before_the_mark_probe_count_as_learned_in_the_current_epoch() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), "noc-a"));
    let path = dir.path().join("ttx.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "ALTER TABLE exchange_edges DROP COLUMN out_learned;
             INSERT INTO exchange_edges (peer, out_last, out_acked) VALUES ('telco-b', 4, 2);
             UPDATE meta SET value = '3' WHERE key = 'epoch';
             PRAGMA user_version = {};",
            VERSION - 1
        ))
        .unwrap();
    }
    let mut conn = Connection::open(&path).unwrap();
    migrate(&mut conn).unwrap();
    conn.execute("INSERT INTO exchange_edges (peer) VALUES ('telco-c')", [])
        .unwrap();
    let learned = |peer: &str| {
        crate::store::exchange::learned_and_last_prev(&conn, peer, 3)
            .unwrap()
            .0
    };
    assert_eq!(learned("telco-b"), 3);
    assert!(!crate::exchange::edge::needs_probe(learned("telco-b"), 3));
    assert_eq!(learned("telco-c"), 0);
}

//! The SQLite schema and its versioned migrations (`PRAGMA user_version`).
//!
//! `events` is the log and the source of truth; every other table is a projection of it,
//! written in the same transaction by the applier.

use rusqlite::Connection;

use super::StoreError;

/// Migrations in order; migration `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- The event log: one row per event, in this node's order.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    id          BLOB NOT NULL UNIQUE,
    origin_site TEXT NOT NULL,
    origin_node TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    origin_seq  INTEGER NOT NULL,
    ticket_id   BLOB,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL
) STRICT;
CREATE INDEX events_ticket ON events (ticket_id, seq) WHERE ticket_id IS NOT NULL;
CREATE UNIQUE INDEX events_origin ON events (origin_site, origin_node, origin_seq);

-- Tickets: the columns lists filter and sort on, and the whole projected ticket as JSON.
CREATE TABLE tickets (
    id          BLOB NOT NULL UNIQUE,
    number      INTEGER NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    severity    INTEGER NOT NULL,
    queue       TEXT NOT NULL,
    owner       TEXT,
    type        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    doc         TEXT NOT NULL
) STRICT;
-- Open work by priority: partial indexes so the list stops after LIMIT rows.
CREATE INDEX tickets_work ON tickets (priority, number)
    WHERE status IN ('new', 'open', 'pending', 'referred');
CREATE INDEX tickets_work_queue ON tickets (queue, priority, number)
    WHERE status IN ('new', 'open', 'pending', 'referred');
CREATE INDEX tickets_work_owner ON tickets (owner, priority, number)
    WHERE status IN ('new', 'open', 'pending', 'referred');
CREATE INDEX tickets_status ON tickets (status, priority, number);

CREATE TABLE notes (
    id          BLOB NOT NULL UNIQUE,
    ticket_id   BLOB NOT NULL,
    event_seq   INTEGER NOT NULL,
    author      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    happened_at INTEGER,
    shared      INTEGER NOT NULL,
    text        TEXT NOT NULL
) STRICT;
CREATE INDEX notes_ticket ON notes (ticket_id, event_seq);

CREATE VIRTUAL TABLE ticket_fts USING fts5 (subject, content = 'tickets', content_rowid = 'rowid');
CREATE VIRTUAL TABLE note_fts USING fts5 (text, content = 'notes', content_rowid = 'rowid');

CREATE TABLE links (
    from_id BLOB NOT NULL,
    kind    TEXT NOT NULL,
    to_id   BLOB NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (from_id, kind, to_id)
) STRICT;
CREATE INDEX links_to ON links (to_id);

CREATE TABLE timers (
    id        BLOB PRIMARY KEY,
    ticket_id BLOB NOT NULL,
    due_at    INTEGER NOT NULL,
    text      TEXT NOT NULL,
    set_by    TEXT NOT NULL,
    fired_at  INTEGER
) STRICT;
CREATE INDEX timers_due ON timers (due_at) WHERE fired_at IS NULL;
CREATE INDEX timers_ticket ON timers (ticket_id);
CREATE INDEX timers_fired ON timers (fired_at) WHERE fired_at IS NOT NULL;

CREATE TABLE operators (
    name         TEXT PRIMARY KEY,
    role         TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL
) STRICT;

-- Answers to writes that carried an idempotency key, so a retried write is not applied twice.
CREATE TABLE idempotency (
    key      TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    at       INTEGER NOT NULL
) STRICT;
"#,
    r#"
-- The peer registry: partner sites and this site's standby, with the admin's decision.
CREATE TABLE peers (
    site TEXT PRIMARY KEY,
    doc  TEXT NOT NULL
) STRICT;
"#,
    r#"
-- A key reused for a different request is refused; keys expire after a day.
ALTER TABLE idempotency ADD COLUMN request_sha256 TEXT NOT NULL DEFAULT '';
CREATE INDEX idempotency_at ON idempotency (at);
"#,
    r#"
-- The number of updates lives in a column, so a note rewrites no ticket document.
ALTER TABLE tickets ADD COLUMN notes INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- Migration 4 added the note count as a column but left it at 0 on every ticket that already
-- had notes: count them (every note row is one NoteAdded event of its ticket). Idempotent, so
-- stores created at version 4 (already right) are unchanged.
UPDATE tickets SET notes = (SELECT COUNT(*) FROM notes WHERE notes.ticket_id = tickets.id);
"#,
    r#"
-- A timer never fires on a closed or cancelled ticket: its pending timers are cancelled with
-- it (at the time it entered that status), and are never due again.
ALTER TABLE timers ADD COLUMN cancelled_at INTEGER;
UPDATE timers SET cancelled_at = (SELECT t.doc ->> 'status_since' FROM tickets t
                                  WHERE t.id = timers.ticket_id)
 WHERE fired_at IS NULL
   AND ticket_id IN (SELECT id FROM tickets WHERE status IN ('closed', 'cancelled'));
DROP INDEX timers_due;
CREATE INDEX timers_due ON timers (due_at) WHERE fired_at IS NULL AND cancelled_at IS NULL;
"#,
    r#"
-- Web console logins: an argon2id hash (PHC string) per operator, set through the log.
ALTER TABLE operators ADD COLUMN password_hash TEXT;

-- Tickets per queue and status, kept by triggers so the console's counts cost one small scan
-- however many tickets the store holds.
CREATE TABLE work_counts (
    queue  TEXT NOT NULL,
    status TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (queue, status)
) STRICT, WITHOUT ROWID;
INSERT INTO work_counts (queue, status, n)
    SELECT queue, status, COUNT(*) FROM tickets GROUP BY queue, status;
CREATE TRIGGER work_counts_insert AFTER INSERT ON tickets BEGIN
    INSERT INTO work_counts (queue, status, n) VALUES (new.queue, new.status, 1)
        ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER work_counts_update AFTER UPDATE OF queue, status ON tickets
    WHEN old.queue IS NOT new.queue OR old.status IS NOT new.status BEGIN
    UPDATE work_counts SET n = n - 1 WHERE queue = old.queue AND status = old.status;
    INSERT INTO work_counts (queue, status, n) VALUES (new.queue, new.status, 1)
        ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER work_counts_delete AFTER DELETE ON tickets BEGIN
    UPDATE work_counts SET n = n - 1 WHERE queue = old.queue AND status = old.status;
END;
-- The newest unowned open work, for the console's Take list.
CREATE INDEX tickets_unowned ON tickets (number)
    WHERE owner IS NULL AND status IN ('new', 'open', 'pending', 'referred');
"#,
    r#"
-- Timers can also be cancelled by an operator, snoozed (due_at moves) and their alerts
-- acknowledged.
ALTER TABLE timers ADD COLUMN acked_at INTEGER;
ALTER TABLE timers ADD COLUMN acked_by TEXT;
-- Search covers the header fields (circuit, network, nodes, custom fields, resolution...):
-- `header` holds their text, kept by the applier; the subject index gains it as a column.
ALTER TABLE tickets ADD COLUMN header TEXT NOT NULL DEFAULT '';
UPDATE tickets SET header = concat_ws(' ',
    json_extract(doc, '$.queue'), json_extract(doc, '$.owner'),
    json_extract(doc, '$.network'), json_extract(doc, '$.circuit'),
    json_extract(doc, '$.next_action'),
    (SELECT group_concat(value, ' ') FROM json_each(doc, '$.nodes')),
    (SELECT group_concat(value, ' ') FROM json_each(doc, '$.custom')),
    json_extract(doc, '$.reporter.name'), json_extract(doc, '$.reporter.org'),
    json_extract(doc, '$.reporter.phone'), json_extract(doc, '$.reporter.email'),
    json_extract(doc, '$.resolution.resolution'), json_extract(doc, '$.resolution.component'),
    json_extract(doc, '$.resolution.escalated_to'), json_extract(doc, '$.resolution.checked_by'));
DROP TABLE ticket_fts;
CREATE VIRTUAL TABLE ticket_fts USING fts5 (subject, header, content = 'tickets', content_rowid = 'rowid');
INSERT INTO ticket_fts (ticket_fts) VALUES ('rebuild');
"#,
    r#"
-- The queues each operator watches (a JSON array of names), set through the log.
ALTER TABLE operators ADD COLUMN watched_queues TEXT NOT NULL DEFAULT '[]';
"#,
    r#"
-- Alarms at a glance: fired timers nobody acknowledged, newest first, found by index rather
-- than by probing the timers of every open ticket.
CREATE INDEX timers_alarms ON timers (fired_at) WHERE fired_at IS NOT NULL AND acked_at IS NULL;
"#,
    r#"
-- The referral exchange, projected from the log's exchange events: referrals at both ends,
-- the per-peer outbox (the site's own sequence per peer) and what each peer acknowledged, and
-- the per-peer inbound marks.
CREATE TABLE referrals (
    id         BLOB PRIMARY KEY,
    side       TEXT NOT NULL,
    peer       TEXT NOT NULL,
    ticket_id  BLOB NOT NULL,
    state      TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    doc        TEXT NOT NULL
) STRICT;
CREATE INDEX referrals_ticket ON referrals (ticket_id);
CREATE INDEX referrals_peer ON referrals (peer);
CREATE TABLE exchange_outbox (
    peer      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    id        BLOB NOT NULL UNIQUE,
    epoch     INTEGER NOT NULL,
    referral  BLOB NOT NULL,
    position  INTEGER NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (peer, seq)
) STRICT;
CREATE TABLE exchange_edges (
    peer        TEXT PRIMARY KEY,
    out_last    INTEGER NOT NULL DEFAULT 0,
    out_acked   INTEGER NOT NULL DEFAULT 0,
    in_applied  INTEGER NOT NULL DEFAULT 0,
    in_epoch    INTEGER NOT NULL DEFAULT 0
) STRICT;
"#,
    r#"
-- Note text is indexed in batches after the commits that add the notes: the watermark is the
-- last notes.rowid the index holds (every note so far, on a store that indexed in the commit).
INSERT INTO meta (key, value)
    SELECT 'note_fts_indexed', CAST(COALESCE(MAX(rowid), 0) AS TEXT) FROM notes WHERE true
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
"#,
    r#"
-- Fewer pages per commit: a note's row is found from its event (`event_seq`, which only
-- grows, so the index is appended to at its end), not through an index by ticket, whose
-- entries for a busy ticket sit on a page of their own that every note to it rewrote.
DROP INDEX notes_ticket;
CREATE INDEX notes_event ON notes (event_seq);
"#,
    r#"
-- The review list: a deposed primary's events that never reached the site's log, handed over
-- by `ttx standby rejoin` (one row per original event id), and the admin's decision on each.
CREATE TABLE review_items (
    number      INTEGER PRIMARY KEY,
    id          BLOB NOT NULL UNIQUE,
    position    INTEGER NOT NULL,
    epoch       INTEGER NOT NULL,
    node        TEXT NOT NULL,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    ticket_id   BLOB,
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,
    queued_seq  INTEGER NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',
    decided_by  TEXT,
    decided_at  INTEGER,
    outcome     TEXT,
    new_ticket  INTEGER
) STRICT;
"#,
    r#"
-- Attachments, projected from the log's attachment events: the chunks as written (each event's
-- bytes), and the attachment itself once every chunk is there and its digest checked.
CREATE TABLE attachment_chunks (
    attachment_id BLOB NOT NULL,
    "offset"      INTEGER NOT NULL,
    data          BLOB NOT NULL,
    PRIMARY KEY (attachment_id, "offset")
) STRICT;
CREATE TABLE attachments (
    id          BLOB PRIMARY KEY,
    ticket_id   BLOB NOT NULL,
    event_seq   INTEGER NOT NULL,
    name        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    shared      INTEGER NOT NULL,
    author      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    origin_site TEXT NOT NULL,
    origin_id   BLOB NOT NULL
) STRICT;
CREATE INDEX attachments_ticket ON attachments (ticket_id);
"#,
    r#"
-- A keyed write's answer and fingerprint are stored once, in its `answered` event: the record
-- keeps the key, its time and that event's position, in one b-tree keyed by the key (no rowid
-- table beside a key index). A record whose event is in the log is linked to it, as a replay
-- of the log would project it; one without (from before the site log) keeps its own answer.
CREATE TABLE idempotency_v16 (
    key            TEXT PRIMARY KEY,
    at             INTEGER NOT NULL,
    event_seq      INTEGER,
    response       TEXT,
    request_sha256 TEXT
) STRICT, WITHOUT ROWID;
INSERT INTO idempotency_v16 (key, at, event_seq, response, request_sha256)
    SELECT i.key, i.at, e.seq,
           CASE WHEN e.seq IS NULL THEN i.response END,
           CASE WHEN e.seq IS NULL THEN i.request_sha256 END
    FROM idempotency i
    LEFT JOIN (SELECT actor || ':' || json_extract(body, '$.Answered.key') AS key,
                      MAX(seq) AS seq
               FROM events WHERE kind = 'answered' GROUP BY 1) e ON e.key = i.key;
DROP TABLE idempotency;
ALTER TABLE idempotency_v16 RENAME TO idempotency;
CREATE INDEX idempotency_at ON idempotency (at);
"#,
    r#"
-- Attachments a partner has started sending and not finished (`ttx-exchange/2`): which peer
-- and referral each belongs to, so the bytes held for one peer are bounded
-- (`limits.max_partial_attachment_bytes`) and a referral that ends drops its unfinished ones.
CREATE TABLE attachment_inbound (
    attachment_id BLOB PRIMARY KEY,
    peer          TEXT NOT NULL,
    referral      BLOB NOT NULL
) STRICT;
CREATE INDEX attachment_inbound_peer ON attachment_inbound (peer);
CREATE INDEX attachment_inbound_referral ON attachment_inbound (referral);
"#,
    r#"
-- The epoch in which this site's primary last learned each partner's mark (a mark probe,
-- protocol 5c): once per edge per epoch, before it sends a message of its own. An edge from
-- before the probe existed counts as learned in the store's current epoch (its primary has
-- been sending in it), so an upgrade alone moves nothing.
ALTER TABLE exchange_edges ADD COLUMN out_learned INTEGER NOT NULL DEFAULT 0;
UPDATE exchange_edges
SET out_learned = COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'epoch'), 1);
"#,
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`VERSION`], each migration in its own transaction.
/// A database from a newer build is refused rather than guessed at.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, VERSION)
}

/// Brings the database up to `target` (at most [`VERSION`]); tests build old stores with it.
pub(crate) fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > VERSION {
        return Err(StoreError::Schema(format!(
            "the store has schema version {current}, this ttx knows up to {VERSION}: upgrade ttx"
        )));
    }
    let steps = MIGRATIONS.iter().enumerate().take(target as usize);
    for (i, sql) in steps.skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! The referral exchange in the store: the projection of the log's exchange records (referrals
//! at both ends, the per-peer outbox, the per-peer marks) and the reads the writer, the outbox
//! worker, the CLI and the API need.
//!
//! Tables (migration 11): `referrals` (one row per referral, the whole [`Referral`] as JSON),
//! `exchange_outbox` (messages queued for a peer and not yet acknowledged, with the log position
//! of the event that queued them, or of the rebase that last moved them) and `exchange_edges`
//! (per peer: the last sequence assigned, the highest acknowledged towards it and the epoch its
//! mark was last learned in; the highest applied and the epoch seen from it).

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;
use crate::exchange::edge::{shifted, InboundMark, Outbox};
use crate::exchange::record::ExchangeRecord;
use crate::exchange::referral::ReferralState;
use crate::exchange::Referral;
use crate::model::clock::Millis;
use crate::model::event::Event;
use crate::wire::exchange::{Body, Message};

fn corrupt(what: &str) -> impl Fn(serde_json::Error) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

fn json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Projects one exchange record at log `position`. Strict like the rest of the applier: a queued
/// message must take its peer's next sequence and a taken one must be the next of its peer.
pub(crate) fn project(
    tx: &Connection,
    event: &Event,
    position: i64,
    record: &ExchangeRecord,
) -> Result<(), StoreError> {
    let bad = |why: String| StoreError::Corrupt(format!("exchange event {}: {why}", event.id));
    match record {
        ExchangeRecord::Referral { referral, .. } => {
            tx.prepare_cached(
                "INSERT INTO referrals (id, side, peer, ticket_id, state, updated_at, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state,
                     updated_at = excluded.updated_at, doc = excluded.doc",
            )?
            .execute(params![
                referral.id.as_bytes(),
                side_name(referral),
                referral.peer,
                referral.ticket.as_bytes(),
                referral.state.as_str(),
                referral.updated_at,
                json(referral)?,
            ])?;
        }
        ExchangeRecord::Queued {
            peer,
            seq,
            id,
            epoch,
            referral,
            body,
        } => {
            let (out, _) = edge(tx, peer)?;
            if *seq != out.last + 1 {
                return Err(bad(format!(
                    "queues #{seq} for {peer}, whose next sequence is {}",
                    out.last + 1
                )));
            }
            tx.prepare_cached(
                "INSERT INTO exchange_outbox (peer, seq, id, epoch, referral, position, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                peer,
                *seq as i64,
                id.as_bytes(),
                *epoch as i64,
                referral.as_bytes(),
                position,
                json(body)?,
            ])?;
            tx.prepare_cached(
                "INSERT INTO exchange_edges (peer, out_last) VALUES (?1, ?2)
                 ON CONFLICT (peer) DO UPDATE SET out_last = excluded.out_last",
            )?
            .execute(params![peer, *seq as i64])?;
        }
        ExchangeRecord::Received {
            peer, seq, epoch, ..
        } => {
            let (_, mark) = edge(tx, peer)?;
            if *seq != mark.applied + 1 {
                return Err(bad(format!(
                    "takes #{seq} from {peer}, whose mark is at {}",
                    mark.applied
                )));
            }
            let mark = mark.advanced(*seq, *epoch);
            tx.prepare_cached(
                "INSERT INTO exchange_edges (peer, in_applied, in_epoch) VALUES (?1, ?2, ?3)
                 ON CONFLICT (peer) DO UPDATE
                 SET in_applied = excluded.in_applied, in_epoch = excluded.in_epoch",
            )?
            .execute(params![peer, mark.applied as i64, mark.epoch as i64])?;
        }
        ExchangeRecord::EpochSeen { peer, epoch } => {
            upsert_edge(tx, peer)?;
            tx.prepare_cached(
                "UPDATE exchange_edges SET in_epoch = MAX(in_epoch, ?2) WHERE peer = ?1",
            )?
            .execute(params![peer, *epoch as i64])?;
        }
        ExchangeRecord::MarkLearned {
            peer,
            epoch,
            mark,
            after,
            shift,
        } => {
            let (out, _) = edge(tx, peer)?;
            // The record must be the rebase the outbox as it stands here decides (the same
            // decision the primary made before it wrote the record).
            let rebase = out
                .rebase(*mark, *after)
                .map_err(|e| bad(format!("{peer}: {e}")))?;
            if (rebase.after, rebase.shift) != (*after, *shift) {
                return Err(bad(format!(
                    "moves {peer}'s messages after #{after} by {shift}, its outbox is at {}..={}",
                    out.acked, out.last
                )));
            }
            let out = out.rebased(&rebase);
            if *shift > 0 {
                // Two steps (through negative sequences), so no row meets another's old key.
                // A moved message leaves only once this record is shippable (its position):
                // a standby promoted later must know where it went before the partner has it.
                tx.prepare_cached(
                    "UPDATE exchange_outbox SET seq = -(seq + ?3), position = ?4
                     WHERE peer = ?1 AND seq > ?2",
                )?
                .execute(params![peer, *after as i64, *shift as i64, position])?;
                tx.prepare_cached(
                    "UPDATE exchange_outbox SET seq = -seq WHERE peer = ?1 AND seq < 0",
                )?
                .execute([peer])?;
            }
            tx.prepare_cached(
                "UPDATE exchange_edges SET out_last = ?2, out_acked = ?3,
                     out_learned = MAX(out_learned, ?4) WHERE peer = ?1",
            )?
            .execute(params![
                peer,
                out.last as i64,
                out.acked as i64,
                *epoch as i64
            ])?;
            tx.prepare_cached("DELETE FROM exchange_outbox WHERE peer = ?1 AND seq <= ?2")?
                .execute(params![peer, out.acked as i64])?;
        }
        ExchangeRecord::Acked { peer, up_to, .. } => {
            let (mut out, _) = edge(tx, peer)?;
            out.ack(*up_to).map_err(|e| bad(e.to_string()))?;
            tx.prepare_cached("UPDATE exchange_edges SET out_acked = ?2 WHERE peer = ?1")?
                .execute(params![peer, out.acked as i64])?;
            // Acknowledged messages leave the outbox (the log keeps them).
            tx.prepare_cached("DELETE FROM exchange_outbox WHERE peer = ?1 AND seq <= ?2")?
                .execute(params![peer, out.acked as i64])?;
        }
    }
    Ok(())
}

fn side_name(r: &Referral) -> &'static str {
    match r.side {
        crate::exchange::Side::Out => "out",
        crate::exchange::Side::In => "in",
    }
}

fn upsert_edge(tx: &Connection, peer: &str) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT OR IGNORE INTO exchange_edges (peer) VALUES (?1)")?
        .execute([peer])?;
    Ok(())
}

/// One peer's edge counters: ours towards it (outbox) and its towards us (mark).
pub fn edge(conn: &Connection, peer: &str) -> Result<(Outbox, InboundMark), StoreError> {
    let row: Option<(i64, i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT out_last, out_acked, in_applied, in_epoch FROM exchange_edges WHERE peer = ?1",
        )?
        .query_row([peer], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let (last, acked, applied, epoch) = row.unwrap_or_default();
    Ok((
        Outbox {
            last: last as u64,
            acked: acked as u64,
        },
        InboundMark {
            applied: applied as u64,
            epoch: epoch as u64,
        },
    ))
}

/// The epoch in which this site last learned `peer`'s mark (0: never): whether a mark probe
/// must come first ([`crate::exchange::edge::needs_probe`]). One key lookup (every outbox
/// round asks).
pub fn learned_epoch(conn: &Connection, peer: &str) -> Result<u64, StoreError> {
    let learned: Option<i64> = conn
        .prepare_cached("SELECT out_learned FROM exchange_edges WHERE peer = ?1")?
        .query_row([peer], |r| r.get(0))
        .optional()?;
    Ok(learned.unwrap_or(0) as u64)
}

/// [`learned_epoch`], and the highest sequence queued for `peer` that was decided before
/// `epoch` and is still in the outbox (0: none): what a mark probe's answer is weighed against
/// ([`crate::exchange::edge::Outbox::rebase`]). Scans the peer's outbox: only for the answer.
pub fn learned_and_last_prev(
    conn: &Connection,
    peer: &str,
    epoch: u64,
) -> Result<(u64, u64), StoreError> {
    let last_prev: Option<i64> = conn
        .prepare_cached("SELECT MAX(seq) FROM exchange_outbox WHERE peer = ?1 AND epoch < ?2")?
        .query_row(params![peer, epoch as i64], |r| r.get(0))?;
    Ok((learned_epoch(conn, peer)?, last_prev.unwrap_or(0) as u64))
}

fn referral_from(doc: String) -> Result<Referral, StoreError> {
    serde_json::from_str(&doc).map_err(corrupt("referral"))
}

/// A referral by id.
pub fn referral(conn: &Connection, id: Uuid) -> Result<Option<Referral>, StoreError> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM referrals WHERE id = ?1")?
        .query_row([id.as_bytes()], |r| r.get(0))
        .optional()?;
    doc.map(referral_from).transpose()
}

/// The referrals whose id starts with `prefix` (hex digits, as the CLI shows ids).
pub fn referrals_by_prefix(conn: &Connection, prefix: &str) -> Result<Vec<Referral>, StoreError> {
    let prefix: String = prefix
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_uppercase();
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) || prefix.len() > 32 {
        return Ok(Vec::new());
    }
    let docs: Vec<String> = conn
        .prepare_cached("SELECT doc FROM referrals WHERE substr(hex(id), 1, ?2) = ?1 LIMIT 2")?
        .query_map(params![prefix, prefix.len() as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    docs.into_iter().map(referral_from).collect()
}

/// Whether any referral (either side) is about our ticket `ticket`.
pub fn has_referrals(conn: &Connection, ticket: Uuid) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM referrals WHERE ticket_id = ?1 LIMIT 1")?
        .query_row([ticket.as_bytes()], |_| Ok(()))
        .optional()?
        .is_some())
}

/// How many referrals (either side) are about our ticket `ticket` (the index alone answers).
pub fn count_referrals(conn: &Connection, ticket: Uuid) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM referrals WHERE ticket_id = ?1")?
        .query_row([ticket.as_bytes()], |r| r.get(0))?;
    Ok(n as u64)
}

/// The sharing policy of peer `site` as its registry record holds it (only that part of the
/// record is decoded), or `None` when the peer is not in the registry.
pub fn sharing_of(
    conn: &Connection,
    site: &str,
) -> Result<Option<crate::exchange::SharingPolicy>, StoreError> {
    let sharing: Option<Option<String>> = conn
        .prepare_cached("SELECT json_extract(doc, '$.sharing') FROM peers WHERE site = ?1")?
        .query_row([site], |r| r.get(0))
        .optional()?;
    sharing
        .map(|s| match s {
            // A record written before policies existed has the default one.
            None => Ok(crate::exchange::SharingPolicy::default()),
            Some(json) => serde_json::from_str(&json).map_err(corrupt("sharing policy")),
        })
        .transpose()
}

/// The referrals of one of our tickets as forwarding needs them (id, peer, state), oldest
/// first, read from the table's columns without decoding the referrals.
pub fn edges_of_ticket(
    conn: &Connection,
    ticket: Uuid,
) -> Result<Vec<(Uuid, String, ReferralState)>, StoreError> {
    let rows: Vec<(Uuid, String, String)> = conn
        .prepare_cached("SELECT id, peer, state FROM referrals WHERE ticket_id = ?1 ORDER BY id")?
        .query_map([ticket.as_bytes()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, peer, state)| match ReferralState::from_name(&state) {
            Some(state) => Ok((id, peer, state)),
            None => Err(StoreError::Corrupt(format!(
                "referral {id} has the state {state:?}"
            ))),
        })
        .collect()
}

/// The referrals of one of our tickets (both sides), oldest first.
pub fn referrals_of_ticket(conn: &Connection, ticket: Uuid) -> Result<Vec<Referral>, StoreError> {
    let docs: Vec<String> = conn
        .prepare_cached("SELECT doc FROM referrals WHERE ticket_id = ?1 ORDER BY id")?
        .query_map([ticket.as_bytes()], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    docs.into_iter().map(referral_from).collect()
}

/// A referral as `ttx referrals` lists it: the referral, our ticket's number, and whether its
/// peer is still in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralRow {
    /// The referral id.
    pub id: Uuid,
    /// `out` (we referred) or `in` (referred to us).
    pub side: crate::exchange::Side,
    /// The other site.
    pub peer: String,
    /// Our ticket's number.
    pub ticket: i64,
    /// The partner's reference, `SITE#N`, once known.
    pub partner_ref: Option<String>,
    /// The state (`queued`, `delivered`, `accepted` …).
    pub state: String,
    /// What an operator must know first: the state, or `overdue` / `orphaned`.
    pub label: String,
    /// The respond-by time (unix ms), if one was asked for.
    pub respond_by: Option<Millis>,
    /// Past the respond-by time without an answer.
    pub overdue: bool,
    /// The peer was removed from the registry while the referral was open.
    pub orphaned: bool,
    /// When it last moved (unix ms).
    pub updated_at: Millis,
}

impl ReferralRow {
    fn of(r: Referral, ticket: i64, peer_known: bool, now: Millis) -> ReferralRow {
        let mut r = r;
        r.orphaned = !peer_known;
        ReferralRow {
            id: r.id,
            side: r.side,
            peer: r.peer.clone(),
            ticket,
            partner_ref: r.partner_ref.map(|n| format!("{}#{n}", r.peer)),
            state: r.state.as_str().to_string(),
            label: r.label(now).to_string(),
            respond_by: r.respond_by,
            overdue: r.is_overdue(now),
            orphaned: r.orphaned && !r.state.is_final(),
            updated_at: r.updated_at,
        }
    }
}

/// The most referrals one listing returns (the newest), so that a listing's size and time stay
/// bounded however many referrals a site has made.
pub const MAX_LISTED_REFERRALS: usize = 1000;

/// Every referral (or those of one ticket), newest first and at most
/// [`MAX_LISTED_REFERRALS`], with overdue and orphaned worked out at `now` (a referral is
/// orphaned while its peer is not in the registry).
pub fn list_referrals(
    conn: &Connection,
    ticket: Option<Uuid>,
    now: Millis,
) -> Result<Vec<ReferralRow>, StoreError> {
    let rows: Vec<(String, i64, bool)> = conn
        .prepare_cached(
            "SELECT r.doc, t.number, EXISTS (SELECT 1 FROM peers p WHERE p.site = r.peer)
             FROM referrals r JOIN tickets t ON t.id = r.ticket_id
             WHERE ?1 IS NULL OR r.ticket_id = ?1
             ORDER BY r.id DESC LIMIT ?2",
        )?
        .query_map(
            rusqlite::params![
                ticket.map(|t| t.as_bytes().to_vec()),
                MAX_LISTED_REFERRALS as i64
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(doc, number, known)| Ok(ReferralRow::of(referral_from(doc)?, number, known, now)))
        .collect()
}

/// Up to `limit` messages queued for `peer` after sequence `after` whose queuing event is at a
/// log position at most `shippable`, in sequence order.
pub fn outbox_after(
    conn: &Connection,
    peer: &str,
    after: u64,
    shippable: i64,
    limit: usize,
) -> Result<Vec<Message>, StoreError> {
    let rows: Vec<(i64, Uuid, i64, Uuid, String)> = conn
        .prepare_cached(
            "SELECT seq, id, epoch, referral, body FROM exchange_outbox
             WHERE peer = ?1 AND seq > ?2 AND position <= ?3 ORDER BY seq LIMIT ?4",
        )?
        .query_map(params![peer, after as i64, shippable, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    let mut attached = 0usize;
    for (seq, id, epoch, referral, body) in rows {
        let mut body: Body = serde_json::from_str(&body).map_err(corrupt("outbox message"))?;
        if let Body::Attachment(c) = &mut body {
            // A round holds at most about this many attachment bytes (a backlog of chunks is
            // read a few MiB at a time, not a round's 1024 messages of 256 KiB at once).
            if attached >= OUTBOX_ATTACHMENT_BYTES && !out.is_empty() {
                break;
            }
            c.bytes = outgoing_chunk(conn, c)?;
            attached += c.bytes.len();
        }
        out.push(Message {
            seq: seq as u64,
            id: *id.as_bytes(),
            epoch: epoch as u64,
            referral: *referral.as_bytes(),
            body,
        });
    }
    Ok(out)
}

/// Attachment bytes one read of the outbox fills in, about.
const OUTBOX_ATTACHMENT_BYTES: usize = 4 * 1024 * 1024;

/// The bytes of an outgoing chunk (queued without them): our attachment's chunk at that offset.
/// Our own attachments are stored in chunks of the size they are sent in, so it is one row.
fn outgoing_chunk(
    conn: &Connection,
    c: &crate::wire::exchange_v2::AttachmentChunk,
) -> Result<Vec<u8>, StoreError> {
    let data: Option<Vec<u8>> = conn
        .prepare_cached(
            r#"SELECT data FROM attachment_chunks WHERE attachment_id = ?1 AND "offset" = ?2"#,
        )?
        .query_row(params![c.origin_id.as_slice(), c.offset as i64], |r| {
            r.get(0)
        })
        .optional()?;
    let want = crate::exchange::attachment::chunk_len(c.offset, c.total);
    match data {
        Some(d) if d.len() == want => Ok(d),
        _ => Err(StoreError::Corrupt(format!(
            "outgoing attachment {} has no chunk of {want} bytes at offset {}",
            Uuid::from_bytes(c.origin_id),
            c.offset
        ))),
    }
}

/// How many exchange events of the log [`resend_from_log`] reads back at most.
const RESEND_SCAN: i64 = 1_000_000;

/// Messages `from..=to` queued for `peer` that have already left the outbox (acknowledged),
/// read back from the log's `Queued` records, in sequence order: what a partner lost when its
/// site failed over with asynchronous replication (its old primary acknowledged them, its new
/// primary never had them, and it asks for them again with `OutOfOrder`). The log is read from
/// its end backwards, so a recent tail costs little; an incomplete answer (the log no longer
/// holds them all) is an error.
pub fn resend_from_log(
    conn: &Connection,
    peer: &str,
    from: u64,
    to: u64,
) -> Result<Vec<Message>, StoreError> {
    let mut found = Vec::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM events WHERE kind = 'exchange' ORDER BY seq DESC LIMIT ?1",
        super::apply::EVENT_COLUMNS
    ))?;
    let mut rows = stmt.query([RESEND_SCAN])?;
    // The rebases met so far (newest first): a message queued before one moved with it.
    let mut rebases: Vec<(u64, u64)> = Vec::new();
    while let Some(row) = rows.next()? {
        let (_, event) = super::apply::event_from_row(row)?;
        let crate::model::event::EventKind::Exchange { record } = event.kind else {
            continue;
        };
        let (to_peer, seq, id, epoch, referral, body) = match record {
            ExchangeRecord::MarkLearned {
                peer: to_peer,
                after,
                shift,
                ..
            } => {
                if to_peer == peer && shift > 0 {
                    rebases.push((after, shift));
                }
                continue;
            }
            ExchangeRecord::Queued {
                peer: to_peer,
                seq,
                id,
                epoch,
                referral,
                body,
            } => (to_peer, seq, id, epoch, referral, body),
            _ => continue,
        };
        if to_peer != peer {
            continue;
        }
        let seq = rebases
            .iter()
            .rev()
            .fold(seq, |seq, (after, shift)| shifted(seq, *after, *shift));
        if seq > to {
            continue;
        }
        found.push(Message {
            seq,
            id: *id.as_bytes(),
            epoch,
            referral: *referral.as_bytes(),
            body,
        });
        if seq <= from {
            break;
        }
    }
    found.reverse();
    let complete = found.first().map(|m| m.seq) == Some(from)
        && found.windows(2).all(|w| w[1].seq == w[0].seq + 1)
        && found.last().map(|m| m.seq) == Some(to);
    if !complete {
        return Err(StoreError::Corrupt(format!(
            "the log no longer holds the messages {from}..={to} queued for {peer}"
        )));
    }
    Ok(found)
}

/// The peers with messages waiting for an acknowledgement.
pub fn peers_with_backlog(conn: &Connection) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT peer FROM exchange_edges WHERE out_last > out_acked ORDER BY peer")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// The id our store gives a partner note that arrived on `ticket` with this origin stamp: the
/// same origin on the same ticket always gets the same id, so a note that comes back around a
/// triangle is recognised and applied once.
pub fn partner_note_id(ticket: Uuid, origin_site: &str, origin_id: &[u8; 16]) -> Uuid {
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    d.update(ticket.as_bytes());
    d.update(&(origin_site.len() as u64).to_be_bytes());
    d.update(origin_site.as_bytes());
    d.update(origin_id);
    let hash = d.finish();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_ref()[..16]);
    Uuid::from_bytes(bytes)
}

/// Whether a note with this id is on the ticket already.
pub fn note_exists(conn: &Connection, note: Uuid) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM notes WHERE id = ?1")?
        .query_row([note.as_bytes()], |_| Ok(()))
        .optional()?
        .is_some())
}

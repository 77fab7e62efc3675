//! The site log on real SQLite files: positions, roles and epochs, strict apply of shipped
//! envelopes, idempotency through the log, and a property test of primary → standby shipping.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::apply::ApplyError;
use super::query;
use super::tests::{note, req};
use super::verify::Verification;
use super::*;
use crate::config::{LimitsSection, StoreSection};
use crate::model::command::{Command, CreateTicket};
use crate::model::role::{NodeRole, RoleError, RoleState};
use crate::wire::envelope::Envelope;

const SITE: &str = "noc-a";

fn open_node(path: &Path, site: &str, node: &str) -> Store {
    Store::open(
        path,
        NodeStamp {
            site: site.into(),
            node: node.into(),
        },
        &StoreSection::default(),
        &LimitsSection::default(),
    )
    .unwrap()
}

fn keyed(op: WriteOp, key: &str, fingerprint: &str) -> WriteRequest {
    WriteRequest {
        idempotency: Some(Idempotency {
            key: key.into(),
            fingerprint: fingerprint.into(),
        }),
        ..req(op)
    }
}

fn create_op(subject: &str) -> WriteOp {
    WriteOp::Create(Box::new(CreateTicket {
        subject: subject.into(),
        description: Some("first words".into()),
        ..Default::default()
    }))
}

fn ack(out: WriteOutcome) -> writer::TicketAck {
    match out {
        WriteOutcome::Ticket(a) => a,
        other => panic!("{other:?}"),
    }
}

/// A primary and a standby of it made from its snapshot (with its own node name).
struct Pair {
    dir: tempfile::TempDir,
    primary: Store,
    standby: Store,
}

impl Pair {
    fn primary_path(&self) -> PathBuf {
        self.dir.path().join("primary.db")
    }
    fn standby_path(&self) -> PathBuf {
        self.dir.path().join("standby.db")
    }

    /// A new primary; `setup` writes to it before the standby is cloned.
    fn new(setup: impl FnOnce(&Store)) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let primary = open_node(&dir.path().join("primary.db"), SITE, "primary");
        setup(&primary);
        let standby = standby_of(&primary, &dir.path().join("standby.db"));
        Pair {
            dir,
            primary,
            standby,
        }
    }

    /// Ships everything the standby lacks; returns how many envelopes went.
    fn ship(&self) -> usize {
        let envelopes = shipped_after(&self.primary, head(&self.standby));
        let n = envelopes.len();
        if n > 0 {
            self.standby
                .writer
                .write_blocking(req(WriteOp::Replicate(envelopes)))
                .unwrap();
        }
        n
    }

    fn restart_primary(&mut self) {
        self.primary.writer.shutdown();
        self.primary = open_node(&self.primary_path(), SITE, "primary");
    }

    fn restart_standby(&mut self) {
        self.standby.writer.shutdown();
        self.standby = open_node(&self.standby_path(), SITE, "standby");
    }
}

/// A standby of `primary` at `path`: snapshot, then its own name and role.
fn standby_of(primary: &Store, path: &Path) -> Store {
    primary.snapshot_into(path).unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    site_log::make_standby(&conn, "standby", "primary").unwrap();
    drop(conn);
    open_node(path, SITE, "standby")
}

fn shipped_after(store: &Store, after: i64) -> Vec<Envelope> {
    store
        .reader
        .read_blocking(|c| ship::envelopes_after(c, after, 100_000))
        .unwrap()
}

fn head(store: &Store) -> i64 {
    *store.writer.head.borrow()
}

fn verify(store: &Store) -> Verification {
    store.verify_blocking().unwrap()
}

fn replicate(store: &Store, envelopes: Vec<Envelope>) -> Result<WriteOutcome, StoreError> {
    store
        .writer
        .write_blocking(req(WriteOp::Replicate(envelopes)))
}

fn promote(store: &Store) {
    store.writer.write_blocking(req(WriteOp::Promote)).unwrap();
}

/// Opens a ticket on `store`; its number.
fn created_number(store: &Store, subject: &str) -> i64 {
    ack(store
        .writer
        .write_blocking(req(create_op(subject)))
        .unwrap())
    .number
}

/// Promotes `store` and checks the new epoch and the position of its `EpochStarted`.
fn promoted_at(store: &Store, epoch: u64, position: i64) {
    let out = store.writer.write_blocking(req(WriteOp::Promote)).unwrap();
    assert_eq!(out, WriteOutcome::Promoted { epoch, position });
}

fn apply_error(e: StoreError) -> ApplyError {
    match e {
        StoreError::Apply(a) => a,
        other => panic!("expected a refusal of shipped events, got {other:?}"),
    }
}

#[test]
fn positions_are_the_sites_and_mean_the_same_on_every_node() {
    let pair = Pair::new(|p| {
        p.writer.write_blocking(req(create_op("one"))).unwrap();
    });
    let a = ack(pair
        .primary
        .writer
        .write_blocking(req(note(1, "x")))
        .unwrap());
    let b = ack(pair
        .primary
        .writer
        .write_blocking(req(create_op("two")))
        .unwrap());
    assert_eq!((a.events.clone(), b.events.clone()), (vec![3], vec![4, 5]));
    assert_eq!(pair.ship(), 3);
    for n in [1, 2] {
        let p = pair
            .primary
            .reader
            .read_blocking(|c| query::chart(c, n))
            .unwrap();
        let s = pair
            .standby
            .reader
            .read_blocking(|c| query::chart(c, n))
            .unwrap();
        assert_eq!(p, s, "chart {n} (history positions included) differs");
    }
    let (p, s) = (verify(&pair.primary), verify(&pair.standby));
    assert_eq!((p.position, &p.digest), (5, &s.digest));
    assert_eq!(s.position, 5);
    assert!(p.ok() && s.ok(), "{p:?} {s:?}");
}

#[test]
fn a_standby_refuses_every_local_write_naming_its_primary() {
    let pair = Pair::new(|p| {
        p.writer.write_blocking(req(create_op("one"))).unwrap();
    });
    let ops = [
        create_op("local"),
        note(1, "local"),
        WriteOp::FireDueTimers,
        WriteOp::Peer(crate::model::peer::PeerOp::Seen {
            site: "noc-b".into(),
            seen: crate::model::peer::Sighting {
                node: "primary".into(),
                spki: "00".repeat(32),
                issuer: "CN=ttx federation CA default".into(),
                addr: "192.0.2.1:4433".into(),
            },
        }),
        WriteOp::AddOperator {
            name: "bob".into(),
            role: crate::model::event::Role::Operator,
            token_sha256: "11".repeat(32),
        },
        WriteOp::RemoveOperator { name: "bob".into() },
    ];
    for op in ops {
        let e = pair.standby.writer.write_blocking(req(op)).unwrap_err();
        assert!(
            matches!(&e, StoreError::NotPrimary(RoleError::Standby { primary, .. }) if primary == "primary"),
            "{e:?}"
        );
        assert!(e.to_string().contains("standby of \"primary\""), "{e}");
    }
    assert_eq!(head(&pair.standby), 2);
}

#[test]
fn a_store_keeps_its_node_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    open_node(&path, SITE, "primary").writer.shutdown();
    let e = Store::open(
        &path,
        NodeStamp {
            site: SITE.into(),
            node: "other".into(),
        },
        &StoreSection::default(),
        &LimitsSection::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("belongs to node \"primary\""), "{e}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let e = site_log::make_standby(&conn, "primary", "primary").unwrap_err();
    assert!(e.to_string().contains("needs its own node name"), "{e}");
}

// --- strict apply: one test per refusal; nothing of a refused batch is applied ---

/// A pair whose primary is two events ahead (a ticket with its description) of the standby.
fn pair_with_tail() -> (Pair, Vec<Envelope>) {
    let pair = Pair::new(|_| {});
    pair.primary
        .writer
        .write_blocking(req(create_op("one")))
        .unwrap();
    let tail = shipped_after(&pair.primary, 0);
    assert_eq!(tail.len(), 2, "created, then the description's note");
    (pair, tail)
}

fn assert_nothing_applied(pair: &Pair) {
    assert_eq!(head(&pair.standby), 0);
    let v = verify(&pair.standby);
    assert_eq!(v.position, 0);
    assert_eq!(
        pair.standby
            .reader
            .read_blocking(query::counts)
            .unwrap()
            .tickets,
        0
    );
}

#[test]
fn shipped_events_of_another_site_are_refused() {
    let (pair, mut tail) = pair_with_tail();
    tail[1].origin_site = "noc-b".into();
    let e = apply_error(replicate(&pair.standby, tail).unwrap_err());
    assert!(
        matches!(&e, ApplyError::ForeignSite { site, .. } if site == "noc-b"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("holds only the log of site \"noc-a\""),
        "{e}"
    );
    assert_nothing_applied(&pair);
}

#[test]
fn shipped_events_out_of_order_are_refused() {
    let (pair, tail) = pair_with_tail();
    // A gap: position 2 first.
    let e = apply_error(replicate(&pair.standby, tail[1..].to_vec()).unwrap_err());
    assert_eq!(
        e,
        ApplyError::OutOfOrder {
            id: uuid::Uuid::from_bytes(tail[1].id),
            got: 2,
            head: 0
        }
    );
    assert!(e.to_string().contains("accepts only position 1"), "{e}");
    // A repeat: 1, 2, then 2 again.
    let mut repeat = tail[..2].to_vec();
    repeat.push(tail[1].clone());
    let e = apply_error(replicate(&pair.standby, repeat).unwrap_err());
    assert!(
        matches!(
            e,
            ApplyError::OutOfOrder {
                got: 2,
                head: 2,
                ..
            }
        ),
        "{e}"
    );
    assert_nothing_applied(&pair);
}

#[test]
fn shipped_events_with_a_gap_in_the_writers_sequence_are_refused() {
    let (pair, mut tail) = pair_with_tail();
    tail[1].origin_seq = 500;
    let e = apply_error(replicate(&pair.standby, tail).unwrap_err());
    assert!(
        matches!(
            e,
            ApplyError::OriginSeqGap {
                got: 500,
                expected: 2,
                ..
            }
        ),
        "{e}"
    );
    assert_nothing_applied(&pair);
}

#[test]
fn shipped_events_of_a_lower_epoch_are_refused() {
    let (pair, tail) = pair_with_tail();
    // The standby has moved to epoch 3 (a frame from a newer primary said so).
    pair.standby
        .writer
        .write_blocking(req(WriteOp::Fence {
            epoch: 3,
            by: "other".into(),
        }))
        .unwrap();
    let e = apply_error(replicate(&pair.standby, tail).unwrap_err());
    assert!(
        matches!(
            e,
            ApplyError::Role {
                source: RoleError::LowerEpoch {
                    event_epoch: 1,
                    epoch: 3
                },
                ..
            }
        ),
        "{e}"
    );
    assert_nothing_applied(&pair);
}

#[test]
fn a_shipped_note_for_a_ticket_that_does_not_exist_is_refused() {
    let (pair, tail) = pair_with_tail();
    // The note without its ticket: re-stamp it at position 1, seq 1.
    let mut note = tail[1].clone();
    note.position = 1;
    note.origin_seq = 1;
    let e = apply_error(replicate(&pair.standby, vec![note]).unwrap_err());
    assert!(
        matches!(e, ApplyError::UnknownTicket { kind: "note", .. }),
        "{e}"
    );
    assert_nothing_applied(&pair);
}

/// The tail's ticket and note, then a third event of `kind` about the same ticket.
fn tail_and(tail: &[Envelope], kind: crate::model::event::EventKind) -> Vec<Envelope> {
    let mut third = tail[1].clone();
    third.position = 3;
    third.origin_seq = 3;
    third.id = *uuid::Uuid::now_v7().as_bytes();
    third.kind = kind.name().into();
    third.body = serde_json::to_vec(&kind).unwrap();
    let mut batch = tail[..2].to_vec();
    batch.push(third);
    batch
}

#[test]
fn a_shipped_timer_that_does_not_exist_is_refused() {
    let (pair, tail) = pair_with_tail();
    let batch = tail_and(
        &tail,
        crate::model::event::EventKind::TimerFired {
            timer_id: uuid::Uuid::now_v7(),
        },
    );
    let e = apply_error(replicate(&pair.standby, batch).unwrap_err());
    assert!(matches!(e, ApplyError::UnknownTimer { .. }), "{e}");
    // The ticket and note before it in the batch were not applied either.
    assert_nothing_applied(&pair);
}

#[test]
fn a_shipped_link_to_a_ticket_that_does_not_exist_is_refused() {
    let (pair, tail) = pair_with_tail();
    let missing = uuid::Uuid::now_v7();
    let batch = tail_and(
        &tail,
        crate::model::event::EventKind::Linked {
            kind: crate::model::ticket::LinkKind::RefersTo,
            target: missing,
            target_number: 9,
        },
    );
    let e = apply_error(replicate(&pair.standby, batch).unwrap_err());
    assert!(
        matches!(e, ApplyError::UnknownTicket { ticket, .. } if ticket == missing),
        "{e}"
    );
    assert_nothing_applied(&pair);
}

#[test]
fn a_shipped_body_that_is_not_the_kind_named_is_refused() {
    let (pair, mut tail) = pair_with_tail();
    tail[0].kind = "note".into();
    let e = apply_error(replicate(&pair.standby, tail.clone()).unwrap_err());
    assert!(matches!(e, ApplyError::BadBody { .. }), "{e}");
    tail[0].kind = "created".into();
    tail[0].body = b"{not json".to_vec();
    let e = apply_error(replicate(&pair.standby, tail).unwrap_err());
    assert!(matches!(e, ApplyError::BadBody { .. }), "{e}");
    assert_nothing_applied(&pair);
}

#[test]
fn a_shipped_event_already_in_the_log_is_refused() {
    let (pair, tail) = pair_with_tail();
    replicate(&pair.standby, tail[..1].to_vec()).unwrap();
    let mut again = tail[0].clone();
    again.position = 2;
    let e = apply_error(replicate(&pair.standby, vec![again]).unwrap_err());
    assert!(matches!(e, ApplyError::Duplicate { .. }), "{e}");
    assert_eq!(head(&pair.standby), 1);
}

#[test]
fn a_primary_refuses_shipped_events_of_its_own_epoch() {
    let (pair, tail) = pair_with_tail();
    let other = open_node(&pair.dir.path().join("other.db"), SITE, "other");
    let e = apply_error(replicate(&other, tail).unwrap_err());
    assert!(
        matches!(
            e,
            ApplyError::Role {
                source: RoleError::PrimaryOfEpoch { epoch: 1 },
                ..
            }
        ),
        "{e}"
    );
}

// --- role and epoch ---

#[test]
fn promotion_writes_the_epoch_start_first_and_survives_a_restart() {
    let mut pair = Pair::new(|p| {
        p.writer.write_blocking(req(create_op("one"))).unwrap();
    });
    promoted_at(&pair.standby, 2, 3);
    pair.restart_standby();
    assert_eq!(
        *pair.standby.writer.role.borrow(),
        RoleState {
            role: NodeRole::Primary,
            epoch: 2
        }
    );
    let a = ack(pair
        .standby
        .writer
        .write_blocking(req(note(1, "after")))
        .unwrap());
    assert_eq!(a.events, vec![4]);
    let log = shipped_after(&pair.standby, 2);
    assert_eq!(log[0].kind, "epoch-started");
    assert!(log
        .iter()
        .all(|e| e.epoch == 2 && e.origin_node == "standby"));
    assert_eq!(log[0].origin_seq, 1);
    let e = pair
        .standby
        .writer
        .write_blocking(req(WriteOp::Promote))
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NotPrimary(RoleError::AlreadyPrimary { epoch: 2 })
        ),
        "{e}"
    );
}

/// A standby acks `durable` once a batch is in its receipt spool and applies it behind: a
/// promotion applies whatever the spool holds past the head first, in its own transaction, so
/// an event acknowledged but not applied is in the new primary's log, before `EpochStarted`,
/// and the counters it moved (the next ticket number) are the ones the new epoch goes on from.
#[test]
fn a_promotion_applies_the_receipt_spool_first_and_numbers_after_it() {
    let mut pair = Pair::new(|p| {
        p.writer.write_blocking(req(create_op("one"))).unwrap();
    });
    pair.ship();
    for subject in ["two", "three"] {
        pair.primary
            .writer
            .write_blocking(req(create_op(subject)))
            .unwrap();
    }
    pair.primary
        .writer
        .write_blocking(req(note(2, "spooled only")))
        .unwrap();
    let spooled = shipped_after(&pair.primary, head(&pair.standby));
    let n = spooled.len() as u64;
    let last = spooled[spooled.len() - 1].position;
    assert_eq!(pair.standby.spool.append(&[spooled]).unwrap(), last);
    // The standby restarts before it applied them (the spool is all that holds them).
    pair.restart_standby();
    assert_eq!(head(&pair.standby) as u64, last - n);
    promoted_at(&pair.standby, 2, last as i64 + 1);
    assert_eq!(created_number(&pair.standby, "four"), 4);
    let p = verify(&pair.primary);
    let log = shipped_after(&pair.standby, 0);
    assert_eq!(log[..last as usize], shipped_after(&pair.primary, 0)[..]);
    assert_eq!(p.position, last as i64);
    assert!(verify(&pair.standby).ok());
}

/// Before it subscribes again, a standby applies what its spool holds past the head
/// (`WriteOp::ApplySpool`): the subscription then starts after everything it acknowledged.
/// On a primary the same write does nothing.
#[test]
fn apply_spool_applies_what_the_spool_holds_past_the_head_and_only_on_a_standby() {
    let pair = Pair::new(|p| {
        p.writer.write_blocking(req(create_op("one"))).unwrap();
    });
    pair.ship();
    pair.primary
        .writer
        .write_blocking(req(note(1, "spooled")))
        .unwrap();
    let spooled = shipped_after(&pair.primary, head(&pair.standby));
    let n = spooled.len();
    pair.standby.spool.append(&[spooled]).unwrap();
    let out = pair
        .standby
        .writer
        .write_blocking(req(WriteOp::ApplySpool))
        .unwrap();
    assert_eq!(out, WriteOutcome::Applied { applied: n });
    assert_eq!(head(&pair.standby), head(&pair.primary));
    assert_eq!(verify(&pair.standby).digest, verify(&pair.primary).digest);
    // Again: nothing left past the head.
    let out = pair
        .standby
        .writer
        .write_blocking(req(WriteOp::ApplySpool))
        .unwrap();
    assert_eq!(out, WriteOutcome::Applied { applied: 0 });
    assert!(pair
        .standby
        .spool
        .recycle(head(&pair.standby) as u64, 0)
        .unwrap());
    let out = pair
        .primary
        .writer
        .write_blocking(req(WriteOp::ApplySpool))
        .unwrap();
    assert_eq!(out, WriteOutcome::Applied { applied: 0 });
}

/// A spool whose events the store refuses (here: of another site, which the follower checks
/// before it spools; a broken primary's batch past that check) does not stop a promotion:
/// the events up to the refused one are applied (none here), the rest stays out of the log,
/// and the new epoch starts right after the head.
#[test]
fn a_promotion_over_a_spool_the_store_refuses_applies_none_of_it_and_goes_on() {
    let pair = Pair::new(|p| {
        p.writer.write_blocking(req(create_op("one"))).unwrap();
    });
    let mut foreign = shipped_after(&pair.primary, 0);
    for e in &mut foreign {
        e.position += head(&pair.standby) as u64;
        e.origin_site = "noc-z".into();
    }
    pair.standby.spool.append(&[foreign]).unwrap();
    let before = head(&pair.standby);
    promoted_at(&pair.standby, 2, before + 1);
    assert!(shipped_after(&pair.standby, 0)
        .iter()
        .all(|e| e.origin_site == SITE));
    assert!(verify(&pair.standby).ok());
}

/// A standby reads its counters (next ticket number, its own next origin sequence) again
/// only before a request that may stamp an event, not after every applied batch: a node
/// promoted after applying tickets goes on numbering after them.
#[test]
fn a_promoted_standby_numbers_tickets_after_the_ones_it_applied() {
    let pair = Pair::new(|p| {
        p.writer.write_blocking(req(create_op("one"))).unwrap();
    });
    for subject in ["two", "three"] {
        pair.primary
            .writer
            .write_blocking(req(create_op(subject)))
            .unwrap();
        assert!(pair.ship() > 0);
    }
    promote(&pair.standby);
    assert_eq!(created_number(&pair.standby, "four"), 4);
    let log = shipped_after(&pair.standby, head(&pair.primary));
    assert_eq!(log[0].kind, "epoch-started");
    assert_eq!(
        log.iter().map(|e| e.origin_seq).collect::<Vec<_>>(),
        (1..=log.len() as u64).collect::<Vec<_>>(),
        "the promoted node's own events, numbered from 1 without a gap"
    );
}

#[test]
fn after_applying_a_higher_epoch_a_primary_refuses_local_writes() {
    let mut pair = Pair::new(|p| {
        p.writer.write_blocking(req(create_op("one"))).unwrap();
    });
    promote(&pair.standby);
    // The new primary's epoch-start reaches the old primary: it is fenced at once.
    let start = shipped_after(&pair.standby, 2);
    replicate(&pair.primary, start).unwrap();
    let refused = |store: &Store| {
        let e = store
            .writer
            .write_blocking(req(note(1, "split brain")))
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::NotPrimary(RoleError::Fenced { by, epoch: 2 }) if by == "standby"),
            "{e:?}"
        );
    };
    refused(&pair.primary);
    pair.restart_primary();
    refused(&pair.primary);
    // And it applies no more of its own epoch.
    assert_eq!(head(&pair.primary), 3);
}

#[test]
fn a_fence_request_with_a_higher_epoch_fences_durably() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let p = open_node(&path, SITE, "primary");
    let out = p
        .writer
        .write_blocking(req(WriteOp::Fence {
            epoch: 1,
            by: "x".into(),
        }))
        .unwrap();
    assert_eq!(
        out,
        WriteOutcome::Role {
            role: RoleState::first_primary()
        }
    );
    p.writer
        .write_blocking(req(WriteOp::Fence {
            epoch: 99,
            by: "standby".into(),
        }))
        .unwrap();
    p.writer.shutdown();
    let p = open_node(&path, SITE, "primary");
    let e = p.writer.write_blocking(req(create_op("x"))).unwrap_err();
    assert!(
        e.to_string().contains("\"standby\" is primary at epoch 99"),
        "{e}"
    );
}

// --- idempotency through the log ---

#[test]
fn a_retried_create_on_a_promoted_standby_returns_the_original_number_and_id() {
    let pair = Pair::new(|_| {});
    let first = ack(pair
        .primary
        .writer
        .write_blocking(keyed(create_op("retried"), "k1", "fp-create"))
        .unwrap());
    pair.ship();
    promote(&pair.standby);
    let retry = ack(pair
        .standby
        .writer
        .write_blocking(keyed(create_op("retried"), "k1", "fp-create"))
        .unwrap());
    assert_eq!(
        (retry.number, retry.id, &retry.events),
        (first.number, first.id, &first.events)
    );
    assert!(retry.replayed && !first.replayed);
    assert_eq!(
        pair.standby
            .reader
            .read_blocking(query::counts)
            .unwrap()
            .tickets,
        1
    );
    // The same key for another request is refused there too.
    let e = pair
        .standby
        .writer
        .write_blocking(keyed(create_op("other"), "k1", "fp-other"))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("already used for a different request"),
        "{e}"
    );
}

#[test]
fn an_expired_key_may_be_used_for_another_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let p = open_node(&path, SITE, "primary");
    p.writer
        .write_blocking(keyed(create_op("first"), "k", "fp-1"))
        .unwrap();
    // Age the record by more than a day, as if the request was a day old.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE idempotency SET at = at - ?1 - 1",
            [idempotency::IDEMPOTENCY_TTL_MS],
        )
        .unwrap();
    let second = ack(p
        .writer
        .write_blocking(keyed(create_op("second"), "k", "fp-2"))
        .unwrap());
    assert_eq!((second.number, second.replayed), (2, false));
}

// --- the property test: a primary's log shipped to a standby made from its snapshot ---

#[derive(Debug, Clone)]
enum Step {
    Create(u8),
    Note(u8),
    Priority(u8, u8),
    Resolve(u8),
    Link(u8, u8),
    Timer(u8),
    FireTimers,
    Operator(u8),
    Keyed(u8),
    Ship,
    RestartPrimary,
    RestartStandby,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<u8>().prop_map(Step::Create),
        4 => any::<u8>().prop_map(Step::Note),
        1 => (any::<u8>(), 1u8..=4).prop_map(|(t, p)| Step::Priority(t, p)),
        1 => any::<u8>().prop_map(Step::Resolve),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Step::Link(a, b)),
        1 => any::<u8>().prop_map(Step::Timer),
        1 => Just(Step::FireTimers),
        1 => any::<u8>().prop_map(Step::Operator),
        2 => any::<u8>().prop_map(Step::Keyed),
        3 => Just(Step::Ship),
        1 => Just(Step::RestartPrimary),
        1 => Just(Step::RestartStandby),
    ]
}

fn pick(primary: &Store, n: u8) -> i64 {
    let tickets = primary.reader.read_blocking(query::counts).unwrap().tickets;
    (n as i64 % tickets.max(1)) + 1
}

/// Runs one step on the primary; refusals (an invalid transition, a duplicate link) are fine.
fn run_on_primary(primary: &Store, step: &Step) {
    let now = crate::model::clock::now();
    let pick = |n| pick(primary, n);
    let op = match step {
        Step::Create(n) => create_op(&format!("ticket {n}")),
        Step::Note(t) => note(pick(*t), &format!("update {t}")),
        Step::Priority(t, p) => WriteOp::Ticket {
            number: pick(*t),
            command: Command::Set {
                assignments: vec![format!("priority={p}")],
            },
        },
        Step::Resolve(t) => WriteOp::Ticket {
            number: pick(*t),
            command: Command::Resolve {
                resolution: "fixed".into(),
                component: None,
                escalated_to: None,
            },
        },
        Step::Link(a, b) => WriteOp::Link {
            number: pick(*a),
            kind: crate::model::ticket::LinkKind::RefersTo,
            target: pick(*b),
        },
        Step::Timer(t) => WriteOp::Ticket {
            number: pick(*t),
            command: Command::Timer {
                due_at: now + 1,
                text: "check again".into(),
            },
        },
        Step::FireTimers => {
            std::thread::sleep(std::time::Duration::from_millis(2));
            WriteOp::FireDueTimers
        }
        Step::Operator(n) => WriteOp::AddOperator {
            name: format!("op{n}"),
            role: crate::model::event::Role::Operator,
            token_sha256: format!("{n:064x}"),
        },
        Step::Keyed(n) => {
            let key = format!("k{}", n % 8);
            let _ = primary.writer.write_blocking(keyed(
                create_op(&format!("keyed {}", n % 8)),
                &key,
                &key,
            ));
            return;
        }
        Step::Ship | Step::RestartPrimary | Step::RestartStandby => return,
    };
    let _ = primary.writer.write_blocking(req(op));
}

impl Pair {
    fn run(&mut self, step: &Step) {
        match step {
            Step::Ship => {
                self.ship();
                let (p, s) = (verify(&self.primary), verify(&self.standby));
                assert_eq!(p.position, s.position, "heads differ after shipping");
                assert_eq!(
                    p.digest, s.digest,
                    "digests differ at position {}",
                    p.position
                );
                assert!(p.ok() && s.ok(), "{p:?} {s:?}");
            }
            Step::RestartPrimary => self.restart_primary(),
            Step::RestartStandby => self.restart_standby(),
            other => run_on_primary(&self.primary, other),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 50, ..ProptestConfig::default() })]

    #[test]
    fn a_standby_fed_the_primarys_envelopes_has_its_head_and_digest(
        before in prop::collection::vec(step(), 0..6),
        steps in prop::collection::vec(step(), 1..40),
    ) {
        // Some history before the snapshot the standby is made from.
        let mut pair = Pair::new(|p| before.iter().for_each(|s| run_on_primary(p, s)));
        for s in &steps {
            pair.run(s);
        }
        pair.run(&Step::Ship);
        prop_assert_eq!(verify(&pair.primary).digest, verify(&pair.standby).digest);
    }
}

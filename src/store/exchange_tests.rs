//! The exchange's store side on real SQLite files: two sites' stores in one process, messages
//! carried between their outboxes and their `Inbound` writes by hand (the transport is tested
//! with real nodes in `tests/it/exchange.rs`).

use super::exchange::{edge, list_referrals, outbox_after};
use super::tests::{create, open, req};
use super::*;
use crate::exchange::action::{ReferTicket, ReferralAction};
use crate::model::command::Command;
use crate::model::lifecycle::Status;
use crate::model::peer::PeerOp;
use crate::wire::exchange::{Answer, Body, ExchangeCode, Message};

fn add_peer(store: &Store, site: &str) {
    store
        .writer
        .write_blocking(req(WriteOp::Peer(PeerOp::Add {
            site: site.into(),
            addrs: Some(vec!["127.0.0.1:9".into()]),
            pins: None,
            allow: None,
        })))
        .unwrap();
}

struct Sites {
    _dir: tempfile::TempDir,
    a: Store,
    b: Store,
}

fn sites() -> Sites {
    sites_with(&crate::config::LimitsSection::default())
}

/// Two sites, telco-b with `limits`.
fn sites_with(limits: &crate::config::LimitsSection) -> Sites {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    let a = open(&dir.path().join("a"), "noc-a");
    let b = Store::open(
        &dir.path().join("b").join("ttx.db"),
        NodeStamp {
            site: "telco-b".into(),
            node: "primary".into(),
        },
        &crate::config::StoreSection::default(),
        limits,
    )
    .unwrap();
    add_peer(&a, "telco-b");
    add_peer(&b, "noc-a");
    Sites { _dir: dir, a, b }
}

/// Messages `from` has queued for `peer` and not had acknowledged.
fn pending(from: &Store, peer: &str) -> Vec<Message> {
    let peer = peer.to_string();
    from.reader
        .read_blocking(move |c| {
            let (out, _) = edge(c, &peer)?;
            outbox_after(c, &peer, out.acked, i64::MAX, 1000)
        })
        .unwrap()
}

fn deliver(to: &Store, from_site: &str, msg: &Message) -> Answer {
    let bytes = crate::wire::codec::encode(msg).unwrap().len();
    deliver_sized(to, from_site, msg, bytes)
}

/// [`deliver`] claiming the message is `bytes` long as encoded.
fn deliver_sized(to: &Store, from_site: &str, msg: &Message, bytes: usize) -> Answer {
    match to
        .writer
        .write_blocking(req(WriteOp::Inbound {
            peer: from_site.into(),
            messages: vec![crate::store::InboundMessage {
                bytes,
                message: msg.clone(),
            }],
            rates: std::sync::Arc::new(crate::exchange::PeerRates::new()),
        }))
        .unwrap()
    {
        WriteOutcome::Exchange { mut answers } if answers.len() == 1 => answers.remove(0),
        other => panic!("{other:?}"),
    }
}

/// Carries everything queued at `from` (site `from_site`) to `to` (site `to_site`) and the
/// acknowledgements back, as the outbox worker does; returns how many messages went.
fn pump(from: &Store, from_site: &str, to: &Store, to_site: &str) -> usize {
    let msgs = pending(from, to_site);
    for m in &msgs {
        let (up_to, refused) = match deliver(to, from_site, m) {
            Answer::Ack { up_to } => (up_to, None),
            Answer::Refused(r) => (m.seq, Some(r.code)),
        };
        from.writer
            .write_blocking(req(WriteOp::ExchangeAcked {
                peer: to_site.into(),
                up_to,
                refused,
            }))
            .unwrap();
    }
    msgs.len()
}

impl Sites {
    fn settle(&self) {
        while pump(&self.a, "noc-a", &self.b, "telco-b")
            + pump(&self.b, "telco-b", &self.a, "noc-a")
            > 0
        {}
    }
}

fn referrals(store: &Store) -> Vec<exchange::ReferralRow> {
    store
        .reader
        .read_blocking(|c| list_referrals(c, None, crate::model::clock::now()))
        .unwrap()
}

fn status(store: &Store, number: i64) -> Status {
    store
        .reader
        .read_blocking(move |c| writer::ticket_by_number(c, number))
        .unwrap()
        .unwrap()
        .status
}

fn refer(store: &Store, number: i64, to: &str) -> Result<WriteOutcome, StoreError> {
    store
        .writer
        .write_blocking(req(WriteOp::Refer(Box::new(ReferTicket {
            number,
            to: to.into(),
            respond_by: None,
            note: Some("please check your side".into()),
        }))))
}

fn act(store: &Store, id: &str, action: ReferralAction) -> Result<WriteOutcome, StoreError> {
    store.writer.write_blocking(req(WriteOp::Referral {
        id: id.into(),
        action,
    }))
}

fn ticket_cmd(store: &Store, number: i64, command: Command) {
    store
        .writer
        .write_blocking(req(WriteOp::Ticket { number, command }))
        .unwrap();
}

fn note_texts(store: &Store, number: i64) -> Vec<String> {
    store
        .reader
        .read_blocking(move |c| {
            Ok(c.prepare(
                "SELECT n.text FROM notes n JOIN tickets t ON t.id = n.ticket_id
                 WHERE t.number = ?1 ORDER BY n.event_seq",
            )?
            .query_map([number], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?)
        })
        .unwrap()
}

#[test]
fn refer_accept_progress_resolve_close_between_two_stores() {
    let s = sites();
    let t = create(&s.a, "LON-PAR-3 down");
    refer(&s.a, t.number, "telco-b").unwrap();
    assert_eq!(status(&s.a, t.number), Status::Referred);
    assert_eq!(referrals(&s.a)[0].state, "queued");
    s.settle();
    // B opened its own ticket, in its own number space, linked by the referral id.
    let theirs = &referrals(&s.b)[0];
    assert_eq!(theirs.partner_ref.as_deref(), Some("noc-a#1"));
    assert_eq!(theirs.state, "delivered");
    let ours = &referrals(&s.a)[0];
    assert_eq!(ours.id, theirs.id);
    assert_eq!(ours.partner_ref, Some(format!("telco-b#{}", theirs.ticket)));
    assert_eq!(ours.state, "delivered");
    let id = ours.id.to_string();
    // Only the handler accepts.
    let e = act(&s.a, &id, ReferralAction::Accept).unwrap_err();
    assert!(e.to_string().contains("only the handling side"), "{e}");
    act(&s.b, &id[..8], ReferralAction::Accept).unwrap();
    s.settle();
    assert_eq!(referrals(&s.a)[0].state, "accepted");
    // Progress both ways: shared notes cross, internal ones never do.
    ticket_cmd(
        &s.b,
        theirs.ticket,
        Command::Note {
            text: "dispatched field tech".into(),
            shared: true,
            happened_at: None,
        },
    );
    ticket_cmd(
        &s.b,
        theirs.ticket,
        Command::Note {
            text: "SECRET internal".into(),
            shared: false,
            happened_at: None,
        },
    );
    assert!(pending(&s.b, "noc-a")
        .iter()
        .all(|m| !format!("{m:?}").contains("SECRET")));
    s.settle();
    let notes = note_texts(&s.a, t.number);
    assert!(
        notes.contains(&"[telco-b] dispatched field tech".to_string()),
        "{notes:?}"
    );
    assert!(!notes.iter().any(|n| n.contains("SECRET")));
    // The partner resolves its own ticket: we see it, and confirm.
    ticket_cmd(
        &s.b,
        theirs.ticket,
        Command::Resolve {
            resolution: "spliced fibre".into(),
            component: Some("span 4".into()),
            escalated_to: None,
        },
    );
    s.settle();
    assert_eq!(referrals(&s.a)[0].state, "resolved");
    act(&s.a, &id, ReferralAction::Close).unwrap();
    s.settle();
    assert_eq!(referrals(&s.b)[0].state, "closed");
    assert_eq!(status(&s.b, theirs.ticket), Status::Closed);
    assert_eq!(
        status(&s.a, t.number),
        Status::Open,
        "our ticket is back with us"
    );
}

#[test]
fn duplicates_are_acked_gaps_refused_and_strangers_not_party() {
    let s = sites();
    let t = create(&s.a, "down");
    refer(&s.a, t.number, "telco-b").unwrap();
    let first = pending(&s.a, "telco-b").remove(0);
    assert_eq!(deliver(&s.b, "noc-a", &first), Answer::Ack { up_to: 1 });
    // Replayed: acknowledged again, applied once.
    assert_eq!(deliver(&s.b, "noc-a", &first), Answer::Ack { up_to: 1 });
    assert_eq!(referrals(&s.b).len(), 1);
    // A gap: refused with the sequence expected.
    let mut later = first.clone();
    later.seq = 5;
    let Answer::Refused(r) = deliver(&s.b, "noc-a", &later) else {
        panic!("a gap is refused")
    };
    assert_eq!((r.code, r.expected), (ExchangeCode::OutOfOrder, Some(2)));
    // A third site naming a referral it is not party to.
    add_peer(&s.b, "carrier-c");
    let stranger = Message {
        seq: 1,
        body: Body::Cancel { reason: "x".into() },
        ..first.clone()
    };
    let Answer::Refused(r) = deliver(&s.b, "carrier-c", &stranger) else {
        panic!("not party")
    };
    assert_eq!(r.code, ExchangeCode::NotParty);
    assert_eq!(referrals(&s.b)[0].state, "delivered");
    // Nonsense in the state: "resolved" from the referrer is refused, consumed once.
    let nonsense = Message {
        seq: 2,
        body: Body::Resolved {
            resolution: "x".into(),
            component: None,
        },
        ..first.clone()
    };
    let Answer::Refused(r) = deliver(&s.b, "noc-a", &nonsense) else {
        panic!("nonsense")
    };
    assert_eq!(r.code, ExchangeCode::InvalidState);
    assert_eq!(deliver(&s.b, "noc-a", &nonsense), Answer::Ack { up_to: 2 });
    // Once the mark is past it, a replay is acknowledged at the mark (rule 2: `Ack { up_to:
    // applied }`), not at its own sequence: both are true of a cumulative ack, and the mark
    // tells a sender whose site lost the tail of its outbox in a failover that the partner is
    // ahead of it (protocol.md §5c).
    assert_eq!(deliver(&s.b, "noc-a", &first), Answer::Ack { up_to: 2 });
    assert_eq!(referrals(&s.b).len(), 1);
    // An unknown referral id at the CLI: a clear refusal.
    let e = act(&s.b, "abcdef12", ReferralAction::Accept).unwrap_err();
    assert!(e.to_string().contains("no referral"), "{e}");
    assert!(e.is_user_error());
}

#[test]
fn reject_returns_our_ticket_and_cancel_reaches_the_partner() {
    let s = sites();
    let t = create(&s.a, "down");
    refer(&s.a, t.number, "telco-b").unwrap();
    s.settle();
    let id = referrals(&s.a)[0].id.to_string();
    act(
        &s.b,
        &id,
        ReferralAction::Reject {
            reason: "not our circuit".into(),
        },
    )
    .unwrap();
    s.settle();
    assert_eq!(referrals(&s.a)[0].state, "rejected");
    assert_eq!(status(&s.a, t.number), Status::Open);
    // Referred again, then cancelled.
    refer(&s.a, t.number, "telco-b").unwrap();
    s.settle();
    let again = referrals(&s.a)[0].id.to_string();
    act(
        &s.a,
        &again,
        ReferralAction::Cancel {
            reason: "fixed by the customer".into(),
        },
    )
    .unwrap();
    s.settle();
    let theirs = referrals(&s.b);
    assert_eq!(theirs[0].state, "cancelled");
    assert_eq!(status(&s.a, t.number), Status::Open);
}

#[test]
fn a_promoted_standby_continues_the_sequence() {
    let s = sites();
    let t = create(&s.a, "down");
    let u = create(&s.a, "also down");
    // A standby of A, cloned before any referral, then fed A's log.
    let standby_path = s._dir.path().join("a-standby.db");
    s.a.snapshot_into(&standby_path).unwrap();
    {
        let conn = rusqlite::Connection::open(&standby_path).unwrap();
        site_log::make_standby(&conn, "standby", "primary").unwrap();
    }
    let standby = Store::open(
        &standby_path,
        NodeStamp {
            site: "noc-a".into(),
            node: "standby".into(),
        },
        &crate::config::StoreSection::default(),
        &crate::config::LimitsSection::default(),
    )
    .unwrap();
    refer(&s.a, t.number, "telco-b").unwrap();
    s.settle();
    // Shared notes both ways on the referral: each is a note and a message in the log, and
    // leaves the referral as it was, so it writes no referral record of its own.
    let theirs = referrals(&s.b)[0].ticket;
    let records_before = (referral_records(&s.a), referral_records(&s.b));
    for i in 0..3 {
        shared(&s.a, t.number, &format!("ours {i}"));
        shared(&s.b, theirs, &format!("theirs {i}"));
    }
    s.settle();
    assert_eq!(
        (referral_records(&s.a), referral_records(&s.b)),
        records_before
    );
    assert_eq!(note_texts(&s.b, theirs).len(), 3 + 3);
    let head = *standby.writer.head.borrow();
    let envelopes =
        s.a.reader
            .read_blocking(move |c| ship::envelopes_after(c, head, 100_000))
            .unwrap();
    assert!(envelopes.iter().any(|e| e.kind == "exchange"));
    standby
        .writer
        .write_blocking(req(WriteOp::Replicate(envelopes)))
        .unwrap();
    assert_eq!(
        standby.verify_blocking().unwrap().digest,
        s.a.verify_blocking().unwrap().digest,
        "the referral, the outbox and the marks are state of the site"
    );
    let state = |store: &Store| -> Vec<(uuid::Uuid, String, Option<String>, i64)> {
        referrals(store)
            .into_iter()
            .map(|r| (r.id, r.state, r.partner_ref, r.updated_at))
            .collect()
    };
    assert_eq!(state(&standby), state(&s.a));
    assert_eq!(state(&standby)[0].1, "delivered");
    assert_eq!(edge_of(&standby, "telco-b"), edge_of(&s.a, "telco-b"));
    // A standby answers a partner with not primary and takes nothing.
    let probe = Message {
        seq: 1,
        id: [9; 16],
        epoch: 1,
        referral: [8; 16],
        body: Body::Accepted,
    };
    let Answer::Refused(r) = deliver(&standby, "telco-b", &probe) else {
        panic!("a standby takes no partner message")
    };
    assert_eq!(r.code, ExchangeCode::NotPrimary);
    // Promoted, it refers the next ticket with the next sequence of the edge.
    standby
        .writer
        .write_blocking(req(WriteOp::Promote))
        .unwrap();
    refer(&standby, u.number, "telco-b").unwrap();
    let next = pending(&standby, "telco-b");
    assert_eq!(next.len(), 1);
    // After the referral (1) and the three notes (2-4).
    assert_eq!(next[0].seq, 5);
    assert_eq!(next[0].epoch, 2);
    assert_eq!(deliver(&s.b, "noc-a", &next[0]), Answer::Ack { up_to: 5 });
    // The deposed primary's later message is stale.
    refer(&s.a, u.number, "telco-b").unwrap();
    let old = pending(&s.a, "telco-b");
    let Answer::Refused(r) = deliver(&s.b, "noc-a", &old[0]) else {
        panic!("stale")
    };
    assert_eq!(r.code, ExchangeCode::StaleEpoch);
}

/// A standby `node` of `s.a` (cloned now, then fed by hand).
fn standby_of(s: &Sites, node: &str) -> Store {
    let standby_path = s._dir.path().join(format!("a-{node}.db"));
    s.a.snapshot_into(&standby_path).unwrap();
    {
        let conn = rusqlite::Connection::open(&standby_path).unwrap();
        site_log::make_standby(&conn, node, "primary").unwrap();
    }
    Store::open(
        &standby_path,
        NodeStamp {
            site: "noc-a".into(),
            node: node.into(),
        },
        &crate::config::StoreSection::default(),
        &crate::config::LimitsSection::default(),
    )
    .unwrap()
}

/// Ships everything `from` has that `to` (its standby) does not.
fn ship_to(from: &Store, to: &Store) {
    let head = *to.writer.head.borrow();
    let envelopes = from
        .reader
        .read_blocking(move |c| ship::envelopes_after(c, head, 100_000))
        .unwrap();
    to.writer
        .write_blocking(req(WriteOp::Replicate(envelopes)))
        .unwrap();
}

/// The mark `store`'s primary learned from `peer`'s answer to a probe.
fn learn(store: &Store, peer: &str, mark: u64) -> WriteOutcome {
    store
        .writer
        .write_blocking(req(WriteOp::ExchangeMarkLearned {
            peer: peer.into(),
            mark,
        }))
        .unwrap()
}

/// A's primary sends three notes B takes, which its standby never gets (async); promoted, the
/// standby decides two notes of its own, whose sequences B has already taken. The probe (seq 0)
/// is answered with B's mark and applies nothing; learning it moves the standby's own notes
/// after the mark (durably: a later promotion reads the moved sequences back from the log),
/// once per epoch, and B takes each note once. Without the move B would answer the two as
/// retries and they would be lost.
#[test]
fn a_promoted_standby_moves_its_own_messages_after_a_mark_its_log_never_reached() {
    let s = sites();
    let t = create(&s.a, "down");
    let standby = standby_of(&s, "standby");
    // Another, fed only the promoted standby's log at the end: it projects the move itself.
    let replay = standby_of(&s, "replay");
    refer(&s.a, t.number, "telco-b").unwrap();
    s.settle();
    ship_to(&s.a, &standby);
    let theirs = referrals(&s.b)[0].ticket;
    for i in 0..3 {
        shared(&s.a, t.number, &format!("lost tail {i}"));
    }
    s.settle();
    assert_eq!(
        edge_of(&s.b, "noc-a").2,
        4,
        "B took the referral and the tail"
    );
    standby
        .writer
        .write_blocking(req(WriteOp::Promote))
        .unwrap();
    for i in 0..2 {
        shared(&standby, t.number, &format!("new {i}"));
    }
    let held = pending(&standby, "telco-b");
    assert_eq!(
        held.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![2, 3],
        "B took 2 and 3 already, from the old primary"
    );
    // The probe: any message with seq 0, in the new epoch. B answers its mark, takes nothing,
    // and learns the epoch.
    let probe = Message {
        seq: crate::exchange::edge::PROBE_SEQ,
        epoch: 2,
        ..held[0].clone()
    };
    let before = note_texts(&s.b, theirs);
    assert_eq!(deliver(&s.b, "noc-a", &probe), Answer::Ack { up_to: 4 });
    assert_eq!(note_texts(&s.b, theirs), before, "a probe applies nothing");
    let (_, _, applied, epoch) = edge_of(&s.b, "noc-a");
    assert_eq!((applied, epoch), (4, 2));
    assert_eq!(
        learn(&standby, "telco-b", 4),
        WriteOutcome::Applied { applied: 1 }
    );
    assert_eq!(edge_of(&standby, "telco-b").0, 6);
    assert_eq!(edge_of(&standby, "telco-b").1, 4);
    let moved = pending(&standby, "telco-b");
    assert_eq!(moved.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![5, 6]);
    assert_eq!(
        moved.iter().map(|m| m.id).collect::<Vec<_>>(),
        held.iter().map(|m| m.id).collect::<Vec<_>>(),
        "the same messages, only their edge sequence moved"
    );
    // Once per epoch: a second answer changes nothing.
    assert_eq!(
        learn(&standby, "telco-b", 9),
        WriteOutcome::Applied { applied: 0 }
    );
    assert_eq!(pending(&standby, "telco-b"), moved);
    // The log reads the moved sequences back (what a partner that lost them asks for again).
    let again = standby
        .reader
        .read_blocking(|c| exchange::resend_from_log(c, "telco-b", 5, 6))
        .unwrap();
    assert_eq!(again, moved);
    pump(&standby, "noc-a", &s.b, "telco-b");
    let at_b = note_texts(&s.b, theirs);
    for text in [
        "lost tail 0",
        "lost tail 1",
        "lost tail 2",
        "new 0",
        "new 1",
    ] {
        let n = at_b.iter().filter(|t| t.ends_with(text)).count();
        assert_eq!(n, 1, "{text:?} at B {n} times: {at_b:?}");
    }
    let (last, acked, ..) = edge_of(&standby, "telco-b");
    assert_eq!((last, acked), (6, 6));
    // The move is in the site's log: a standby fed it holds the same outbox and counters.
    ship_to(&standby, &replay);
    assert_eq!(edge_of(&replay, "telco-b"), edge_of(&standby, "telco-b"));
    assert_eq!(
        replay.verify_blocking().unwrap().digest,
        standby.verify_blocking().unwrap().digest
    );
}

/// How many referral records `store`'s log holds.
fn referral_records(store: &Store) -> usize {
    store
        .reader
        .read_blocking(|c| {
            let bodies = c
                .prepare("SELECT body FROM events WHERE kind = 'exchange'")?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(bodies
                .iter()
                .filter(|b| {
                    matches!(
                        serde_json::from_str::<crate::model::event::EventKind>(b),
                        Ok(crate::model::event::EventKind::Exchange {
                            record: crate::exchange::record::ExchangeRecord::Referral { .. }
                        })
                    )
                })
                .count())
        })
        .unwrap()
}

/// `store`'s edge counters towards `peer`: (last queued, acknowledged, applied, epoch).
fn edge_of(store: &Store, peer: &str) -> (u64, u64, u64, u64) {
    let peer = peer.to_string();
    let (out, mark) = store.reader.read_blocking(move |c| edge(c, &peer)).unwrap();
    (out.last, out.acked, mark.applied, mark.epoch)
}

/// Any number of sites, each knowing every other; messages carried until all is quiet.
struct Mesh {
    _dir: tempfile::TempDir,
    sites: Vec<(&'static str, Store)>,
}

impl Mesh {
    fn new(names: &[&'static str]) -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let mut sites = Vec::new();
        for name in names {
            let d = dir.path().join(name);
            std::fs::create_dir(&d).unwrap();
            let store = open(&d, name);
            for other in names.iter().filter(|o| *o != name) {
                add_peer(&store, other);
            }
            sites.push((*name, store));
        }
        Mesh { _dir: dir, sites }
    }

    fn at(&self, name: &str) -> &Store {
        &self.sites.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// Carries messages until none is left; returns how many went.
    fn settle(&self) -> usize {
        let mut total = 0;
        loop {
            let mut moved = 0;
            for (from, a) in &self.sites {
                for (to, b) in &self.sites {
                    if from != to {
                        moved += pump(a, from, b, to);
                    }
                }
            }
            if moved == 0 {
                return total;
            }
            total += moved;
            assert!(total < 10_000, "messages loop");
        }
    }

    /// `from` refers its ticket `number` to `to`; returns the ticket `to` opened for it.
    fn refer_on(&self, from: &str, number: i64, to: &str) -> i64 {
        refer(self.at(from), number, to).unwrap();
        self.settle();
        let r = referrals(self.at(to))
            .into_iter()
            .find(|r| r.peer == from)
            .unwrap();
        act(self.at(to), &r.id.to_string(), ReferralAction::Accept).unwrap();
        self.settle();
        r.ticket
    }
}

fn shared(store: &Store, number: i64, text: &str) {
    ticket_cmd(
        store,
        number,
        Command::Note {
            text: text.into(),
            shared: true,
            happened_at: None,
        },
    );
}

#[test]
fn a_chain_carries_notes_hop_by_hop_and_a_triangle_does_not_loop() {
    let m = Mesh::new(&["noc-a", "telco-b", "carrier-c", "noc-d"]);
    // NOC A -> telco B -> carrier C (a chain).
    let a1 = create(m.at("noc-a"), "LON-PAR-3 down").number;
    let b1 = m.refer_on("noc-a", a1, "telco-b");
    let c1 = m.refer_on("telco-b", b1, "carrier-c");
    shared(m.at("carrier-c"), c1, "fibre cut at km 42");
    m.settle();
    let at_a = note_texts(m.at("noc-a"), a1);
    assert_eq!(
        at_a.iter()
            .filter(|n| *n == "[carrier-c] fibre cut at km 42")
            .count(),
        1,
        "{at_a:?}"
    );
    shared(m.at("noc-a"), a1, "customer asks for an ETA");
    m.settle();
    let at_c = note_texts(m.at("carrier-c"), c1);
    assert_eq!(
        at_c.iter()
            .filter(|n| *n == "[noc-a] customer asks for an ETA")
            .count(),
        1,
        "{at_c:?}"
    );
    // No echo: A's own note did not come back to A, C's did not come back to C.
    assert_eq!(
        note_texts(m.at("noc-a"), a1)
            .iter()
            .filter(|n| n.contains("customer asks for an ETA"))
            .count(),
        1
    );
    assert_eq!(
        note_texts(m.at("carrier-c"), c1)
            .iter()
            .filter(|n| n.contains("fibre cut"))
            .count(),
        1
    );
    // Close the triangle: C refers its ticket on to D, and D refers its ticket back to A.
    let d1 = m.refer_on("carrier-c", c1, "noc-d");
    let a2 = m.refer_on("noc-d", d1, "noc-a");
    let before = m.settle();
    assert_eq!(before, 0);
    shared(m.at("telco-b"), b1, "splicing crew on site");
    let carried = m.settle();
    assert!(carried < 40, "{carried} messages: something loops");
    for (site, ticket) in [
        ("noc-a", a1),
        ("carrier-c", c1),
        ("noc-d", d1),
        ("noc-a", a2),
    ] {
        let notes = note_texts(m.at(site), ticket);
        let n = notes
            .iter()
            .filter(|t| *t == "[telco-b] splicing crew on site")
            .count();
        assert!(
            n <= 1,
            "{site} ticket {ticket} holds it {n} times: {notes:?}"
        );
    }
    // Each of the other sites got it on the ticket it reached first, exactly once.
    for (site, ticket) in [("carrier-c", c1), ("noc-d", d1)] {
        let notes = note_texts(m.at(site), ticket);
        assert!(
            notes.contains(&"[telco-b] splicing crew on site".to_string()),
            "{site}: {notes:?}"
        );
    }
    let at_b = note_texts(m.at("telco-b"), b1);
    assert_eq!(
        at_b.iter()
            .filter(|n| n.contains("splicing crew on site"))
            .count(),
        1,
        "never back to its origin: {at_b:?}"
    );
}

#[test]
fn an_oversize_message_is_refused_once_and_does_not_block_the_edge() {
    let s = sites();
    let t = create(&s.a, "down");
    refer(&s.a, t.number, "telco-b").unwrap();
    let first = pending(&s.a, "telco-b").remove(0);
    let Answer::Refused(r) = deliver_sized(&s.b, "noc-a", &first, (1 << 20) + 1) else {
        panic!("too large")
    };
    assert_eq!(r.code, ExchangeCode::TooLarge);
    assert!(referrals(&s.b).is_empty(), "nothing of it applied");
    // The sender records the refusal: the edge moves on and our ticket gets an alert.
    s.a.writer
        .write_blocking(req(WriteOp::ExchangeAcked {
            peer: "telco-b".into(),
            up_to: 1,
            refused: Some(ExchangeCode::TooLarge),
        }))
        .unwrap();
    let alerts =
        s.a.reader
            .read_blocking(|c| {
                Ok(c.prepare("SELECT text FROM timers")?
                    .query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
    assert!(
        alerts
            .iter()
            .any(|t| t == "telco-b refused our refer: too large"),
        "{alerts:?}"
    );
    assert!(pending(&s.a, "telco-b").is_empty());
}

#[test]
fn an_acknowledgement_beyond_what_was_sent_is_refused() {
    let s = sites();
    let e =
        s.a.writer
            .write_blocking(req(WriteOp::ExchangeAcked {
                peer: "telco-b".into(),
                up_to: 3,
                refused: None,
            }))
            .unwrap_err();
    assert!(e.to_string().contains("acknowledged 3"), "{e}");
}

/// A chunk of attachment `name` (`total` bytes hashing to `sha`) from noc-a on referral `r`.
fn chunk_msg(
    seq: u64,
    r: uuid::Uuid,
    name: &str,
    total: u64,
    sha: [u8; 32],
    offset: u64,
    bytes: &[u8],
) -> Message {
    Message {
        seq,
        id: *uuid::Uuid::now_v7().as_bytes(),
        epoch: 1,
        referral: *r.as_bytes(),
        body: Body::Attachment(crate::wire::exchange_v2::AttachmentChunk {
            origin_site: "noc-a".into(),
            origin_id: [0x66; 16],
            name: name.into(),
            author: "al".into(),
            at: 1,
            total,
            sha256: sha,
            offset,
            bytes: bytes.to_vec(),
        }),
    }
}

fn kept(store: &Store) -> (i64, i64) {
    store
        .reader
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT (SELECT COUNT(*) FROM attachment_chunks), (SELECT COUNT(*) FROM attachments)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .unwrap()
}

#[test]
fn a_shared_attachment_crosses_in_chunks_and_an_internal_one_never_does() {
    let s = sites();
    let t = create(&s.a, "capture attached");
    refer(&s.a, t.number, "telco-b").unwrap();
    s.settle();
    let theirs = referrals(&s.b)[0].ticket;
    let attach = |name: &str, data: Vec<u8>, shared: bool| {
        s.a.writer
            .write_blocking(req(WriteOp::Attach {
                number: t.number,
                name: name.into(),
                data: std::sync::Arc::new(data),
                shared,
            }))
            .unwrap()
    };
    attach("secret.cfg", b"SECRET".repeat(100), false);
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
    attach("cap.pcap", data.clone(), true);
    let queued = pending(&s.a, "telco-b");
    let chunks: Vec<_> = queued
        .iter()
        .filter_map(|m| match &m.body {
            Body::Attachment(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(chunks.len(), 3, "600000 bytes in 256 KiB chunks");
    assert!(chunks.iter().all(|c| c.name == "cap.pcap"));
    assert_eq!(
        chunks.iter().map(|c| c.bytes.len()).sum::<usize>(),
        data.len()
    );
    s.settle();
    let got =
        s.b.reader
            .read_blocking(move |c| attachment::list(c, theirs))
            .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].sha256, crate::model::attachment::sha256_hex(&data));
    let id = got[0].id;
    let (_, bytes) =
        s.b.reader
            .read_blocking(move |c| attachment::get(c, id))
            .unwrap();
    assert_eq!(bytes, data);
}

#[test]
fn bad_attachment_chunks_are_refused_with_stable_codes_and_nothing_is_kept_half_way() {
    let s = sites();
    let t = create(&s.a, "attachments");
    refer(&s.a, t.number, "telco-b").unwrap();
    s.settle();
    let r = referrals(&s.b)[0].id;
    let mut seq = {
        let b = s.b.clone();
        b.reader
            .read_blocking(|c| Ok(edge(c, "noc-a")?.1.applied))
            .unwrap()
    };
    let mut send = |m: &dyn Fn(u64) -> Message| {
        seq += 1;
        deliver(&s.b, "noc-a", &m(seq))
    };
    let bad = |a: Answer| match a {
        Answer::Refused(r) => r.code,
        other => panic!("taken: {other:?}"),
    };
    let hello = b"hello";
    let sha: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, hello)
        .as_ref()
        .try_into()
        .unwrap();
    // A first chunk is kept; one at the wrong offset drops it.
    assert!(matches!(
        send(&|q| chunk_msg(q, r, "c.txt", 5, sha, 0, b"hel")),
        Answer::Ack { .. }
    ));
    assert_eq!(kept(&s.b), (1, 0));
    assert_eq!(
        bad(send(&|q| chunk_msg(q, r, "c.txt", 5, sha, 4, b"o"))),
        ExchangeCode::BadAttachment
    );
    assert_eq!(kept(&s.b), (0, 0), "nothing kept half way");
    // Past the total; a wrong digest; too large; a bad name; a chunk of nothing started.
    assert_eq!(
        bad(send(&|q| chunk_msg(q, r, "c.txt", 5, sha, 0, b"hello!"))),
        ExchangeCode::BadAttachment
    );
    assert_eq!(
        bad(send(&|q| chunk_msg(q, r, "c.txt", 5, [0; 32], 0, b"hello"))),
        ExchangeCode::BadAttachment
    );
    assert_eq!(
        bad(send(&|q| chunk_msg(q, r, "c.txt", 9 << 20, sha, 0, b"hel"))),
        ExchangeCode::TooLarge
    );
    assert_eq!(
        bad(send(&|q| chunk_msg(q, r, "../c.txt", 5, sha, 0, b"hello"))),
        ExchangeCode::BadAttachment
    );
    assert_eq!(
        bad(send(&|q| chunk_msg(q, r, "c.txt", 5, sha, 3, b"lo"))),
        ExchangeCode::BadAttachment
    );
    // A chunk for a referral that does not exist.
    assert_eq!(
        bad(send(&|q| chunk_msg(
            q,
            uuid::Uuid::now_v7(),
            "c.txt",
            5,
            sha,
            0,
            b"hello"
        ))),
        ExchangeCode::UnknownReferral
    );
    assert_eq!(kept(&s.b), (0, 0));
    // Two good chunks make the attachment; the last one again (a new message) adds nothing.
    for (offset, part) in [(0, &b"hel"[..]), (3, &b"lo"[..])] {
        assert!(matches!(
            send(&|q| chunk_msg(q, r, "c.txt", 5, sha, offset, part)),
            Answer::Ack { .. }
        ));
    }
    assert_eq!(kept(&s.b), (2, 1));
    assert!(matches!(
        send(&|q| chunk_msg(q, r, "c.txt", 5, sha, 3, b"lo")),
        Answer::Ack { .. }
    ));
    assert_eq!(kept(&s.b), (2, 1), "applied once");
}

/// The referral of a ticket of noc-a referred to telco-b, as telco-b knows it, and the next
/// sequence noc-a's messages take on that edge.
fn referred_to_b(s: &Sites) -> (uuid::Uuid, u64) {
    let t = create(&s.a, "attachments");
    refer(&s.a, t.number, "telco-b").unwrap();
    s.settle();
    let r = referrals(&s.b)[0].id;
    let b = s.b.clone();
    let applied = b
        .reader
        .read_blocking(|c| Ok(edge(c, "noc-a")?.1.applied))
        .unwrap();
    (r, applied + 1)
}

fn partials(store: &Store) -> i64 {
    store
        .reader
        .read_blocking(|c| {
            Ok(c.query_row("SELECT COUNT(*) FROM attachment_inbound", [], |r| r.get(0))?)
        })
        .unwrap()
}

#[test]
fn unfinished_attachments_are_bounded_per_peer_and_dropped_when_the_referral_ends() {
    let limits = crate::config::LimitsSection {
        max_attachment_bytes: 100,
        max_partial_attachment_bytes: 150,
        ..Default::default()
    };
    let s = sites_with(&limits);
    let (r, mut seq) = referred_to_b(&s);
    let mut send = |m: &dyn Fn(u64) -> Message| {
        let a = deliver(&s.b, "noc-a", &m(seq));
        seq += 1;
        a
    };
    let sha = [0u8; 32];
    let ok = |a: Answer| assert!(matches!(a, Answer::Ack { .. }), "{a:?}");
    // Two attachments started, 60 bytes each: 120 held, within 150.
    ok(send(&|q| chunk_msg(q, r, "x.bin", 100, sha, 0, &[1; 60])));
    ok(send(&|q| chunk_msg(q, r, "y.bin", 100, sha, 0, &[2; 60])));
    assert_eq!((kept(&s.b), partials(&s.b)), ((2, 0), 2));
    // A third would hold 160: refused, nothing of it kept.
    let Answer::Refused(refused) = send(&|q| chunk_msg(q, r, "z.bin", 100, sha, 0, &[3; 40]))
    else {
        panic!("over the per-peer bound")
    };
    assert_eq!(refused.code, ExchangeCode::TooLarge);
    // A chunk that continues one over the bound is refused too, and drops that attachment.
    let Answer::Refused(refused) = send(&|q| chunk_msg(q, r, "y.bin", 100, sha, 60, &[2; 35]))
    else {
        panic!("over the per-peer bound")
    };
    assert_eq!(refused.code, ExchangeCode::TooLarge);
    assert_eq!((kept(&s.b), partials(&s.b)), ((1, 0), 1));
    // A chunk that finishes its attachment frees what it held, so it is taken.
    let full: Vec<u8> = [vec![4; 60], vec![5; 40]].concat();
    let full_sha: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &full)
        .as_ref()
        .try_into()
        .unwrap();
    ok(send(&|q| {
        chunk_msg(q, r, "w.bin", 100, full_sha, 0, &full[..60])
    }));
    assert_eq!(partials(&s.b), 2, "x and w unfinished, 120 bytes");
    ok(send(&|q| {
        chunk_msg(q, r, "w.bin", 100, full_sha, 60, &full[60..])
    }));
    assert_eq!((kept(&s.b), partials(&s.b)), ((3, 1), 1));
    // The referral ends (noc-a cancels it): x, never finished, is dropped; w stays.
    ok(send(&|q| Message {
        body: Body::Cancel {
            reason: "done".into(),
        },
        ..chunk_msg(q, r, "-", 1, sha, 0, b"-")
    }));
    assert_eq!(referrals(&s.b)[0].state, "cancelled");
    assert_eq!((kept(&s.b), partials(&s.b)), ((2, 1), 0));
}

#[test]
fn an_attachment_chunk_on_a_referral_the_peer_is_not_party_to_is_refused_and_not_kept() {
    let s = sites();
    let (r, _) = referred_to_b(&s);
    add_peer(&s.b, "carrier-c");
    let sha = [0u8; 32];
    let Answer::Refused(refused) = deliver(
        &s.b,
        "carrier-c",
        &chunk_msg(1, r, "c.txt", 5, sha, 0, b"hel"),
    ) else {
        panic!("not party")
    };
    assert_eq!(refused.code, ExchangeCode::NotParty);
    assert_eq!((kept(&s.b), partials(&s.b)), ((0, 0), 0));
}

#[test]
fn the_sharing_policy_read_alone_is_the_registry_records() {
    let s = sites();
    s.b.writer
        .write_blocking(req(WriteOp::PeerSharing {
            site: "noc-a".into(),
            change: crate::exchange::policy::SharingChange {
                auto_accept: Some(true),
                rate_per_sec: Some(77),
                ..Default::default()
            },
        }))
        .unwrap();
    let (alone, record, none) =
        s.b.reader
            .read_blocking(|c| {
                Ok((
                    exchange::sharing_of(c, "noc-a")?,
                    query::peer(c, "noc-a")?.map(|p| p.sharing),
                    exchange::sharing_of(c, "nobody")?,
                ))
            })
            .unwrap();
    assert_eq!(alone, record);
    assert_eq!(
        alone.map(|p| (p.auto_accept, p.rate_per_sec)),
        Some((true, 77))
    );
    assert_eq!(none, None);
}

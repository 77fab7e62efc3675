//! Store tests on real SQLite files in temp dirs.

use super::query::{self, ListFilter};
use super::*;
use crate::config::{LimitsSection, StoreSection};
use crate::model::command::{Command, CreateTicket};
use crate::model::lifecycle::Status;

pub(crate) fn open(dir: &Path, site: &str) -> Store {
    Store::open(
        &dir.join("ttx.db"),
        NodeStamp {
            site: site.into(),
            node: "primary".into(),
        },
        &StoreSection::default(),
        &LimitsSection::default(),
    )
    .unwrap()
}

pub(crate) fn req(op: WriteOp) -> WriteRequest {
    WriteRequest {
        actor: "alice".into(),
        idempotency: None,
        op,
    }
}

pub(crate) fn create(store: &Store, subject: &str) -> writer::TicketAck {
    match store
        .writer
        .write_blocking(req(WriteOp::Create(Box::new(CreateTicket {
            subject: subject.into(),
            description: Some("first words".into()),
            ..Default::default()
        }))))
        .unwrap()
    {
        WriteOutcome::Ticket(ack) => ack,
        other => panic!("{other:?}"),
    }
}

pub(crate) fn note(number: i64, text: &str) -> WriteOp {
    WriteOp::Ticket {
        number,
        command: Command::Note {
            text: text.into(),
            shared: false,
            happened_at: None,
        },
    }
}

#[test]
fn numbers_notes_history_and_search() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    let a = create(&store, "core1 bgp flap");
    let b = create(&store, "customer complains about latency");
    assert_eq!((a.number, b.number, a.status), (1, 2, Status::New));
    store
        .writer
        .write_blocking(req(note(1, "traceroute shows loss at ams-ix")))
        .unwrap();
    let chart = store.reader.read_blocking(|c| query::chart(c, 1)).unwrap();
    assert_eq!(chart.ticket.notes, 2);
    assert_eq!(chart.history.len(), 3);
    assert!(chart.history.windows(2).all(|w| w[0].seq < w[1].seq));
    let hits = store.search_blocking("ams-ix", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].ticket.number, 1);
    let hits = store.search_blocking("latency", 10).unwrap();
    assert_eq!(hits[0].ticket.number, 2);
    // Operator text with FTS syntax in it is searched as words, never a syntax error.
    assert!(store.search_blocking("\"AND ( -", 10).is_ok());
    let long = "loss ".repeat(300);
    let e = store.search_blocking(&long, 10).unwrap_err();
    assert!(e.to_string().contains("at most 1024 allowed"), "{e}");
    let list = store
        .reader
        .read_blocking(|c| query::list(c, &ListFilter::default()))
        .unwrap();
    assert_eq!(list.len(), 2);
    store.writer.shutdown();
}

#[test]
fn unknown_ticket_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    create(&store, "x");
    let before = store.reader.read_blocking(query::counts).unwrap();
    let e = store
        .writer
        .write_blocking(req(note(99, "hello")))
        .unwrap_err();
    assert_eq!(e.to_string(), "no ticket 99");
    let e = store
        .writer
        .write_blocking(req(WriteOp::Ticket {
            number: 1,
            command: Command::Close { checked_by: None },
        }))
        .unwrap_err();
    assert!(
        e.to_string().contains("cannot go from new to closed"),
        "{e}"
    );
    assert_eq!(store.reader.read_blocking(query::counts).unwrap(), before);
    // The next ticket still gets the next number.
    assert_eq!(create(&store, "y").number, 2);
}

#[test]
fn idempotency_key_answers_a_retry_without_applying_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    let mut r = req(WriteOp::Create(Box::new(CreateTicket {
        subject: "retried".into(),
        ..Default::default()
    })));
    r.idempotency = Some(Idempotency {
        key: "k1".into(),
        fingerprint: "create retried".into(),
    });
    let first = store.writer.write_blocking(r.clone()).unwrap();
    let second = store.writer.write_blocking(r).unwrap();
    let (WriteOutcome::Ticket(a), WriteOutcome::Ticket(b)) = (first, second) else {
        panic!()
    };
    assert_eq!((a.number, a.id), (b.number, b.id));
    assert!(!a.replayed && b.replayed);
    // The same key for another request is refused, not answered with the first result.
    let mut other = req(WriteOp::Create(Box::new(CreateTicket {
        subject: "another".into(),
        ..Default::default()
    })));
    other.idempotency = Some(Idempotency {
        key: "k1".into(),
        fingerprint: "create another".into(),
    });
    let e = store.writer.write_blocking(other).unwrap_err();
    assert!(
        e.to_string()
            .contains("already used for a different request"),
        "{e}"
    );
    assert_eq!(
        store.reader.read_blocking(query::counts).unwrap().tickets,
        1
    );
}

#[test]
fn concurrent_writers_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    create(&store, "busy");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let w = store.writer.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    w.write_blocking(req(note(1, &format!("t{t} n{i}"))))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let chart = store.reader.read_blocking(|c| query::chart(c, 1)).unwrap();
    assert_eq!(chart.ticket.notes, 401);
    let commits = store
        .writer
        .stats
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(commits <= 402, "{commits} commits for 402 writes");
}

#[test]
fn refused_writes_in_a_shared_commit_spoil_none_of_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    create(&store, "busy");
    // Good and refused writes from many threads land in the same group commits: the batch
    // is retried with a savepoint per request, and only the refused ones are left out.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let w = store.writer.clone();
            std::thread::spawn(move || {
                let mut numbers = Vec::new();
                for i in 0..30 {
                    let op = match i % 3 {
                        0 => note(1, &format!("t{t} n{i}")),
                        1 => note(99, "nowhere"),
                        _ => WriteOp::Create(Box::new(CreateTicket {
                            subject: if i % 2 == 0 {
                                format!("t{t} c{i}")
                            } else {
                                String::new()
                            },
                            description: Some("desc".into()),
                            ..Default::default()
                        })),
                    };
                    match (i % 3, i % 2, w.write_blocking(req(op))) {
                        (0, _, Ok(_)) | (1, _, Err(_)) | (2, 1, Err(_)) => {}
                        (2, 0, Ok(WriteOutcome::Ticket(ack))) => numbers.push(ack.number),
                        (k, p, other) => panic!("kind {k} parity {p}: {other:?}"),
                    }
                }
                numbers
            })
        })
        .collect();
    let mut numbers: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    numbers.sort();
    // Ticket numbers and the node's sequence numbers have no gaps.
    assert_eq!(numbers, (2..=numbers.len() as i64 + 1).collect::<Vec<_>>());
    let chart = store.reader.read_blocking(|c| query::chart(c, 1)).unwrap();
    assert_eq!(chart.ticket.notes, 1 + 8 * 10);
    let counts = store.reader.read_blocking(query::counts).unwrap();
    let seqs: (i64, i64) = store
        .reader
        .read_blocking(|c| {
            Ok(
                c.query_row("SELECT COUNT(*), MAX(origin_seq) FROM events", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?,
            )
        })
        .unwrap();
    assert_eq!(seqs.0, counts.events);
    assert_eq!(seqs.1 - seqs.0, 0, "origin_seq has gaps");
}

#[test]
fn a_store_of_another_site_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    store.writer.shutdown();
    let e = Store::open(
        &dir.path().join("ttx.db"),
        NodeStamp {
            site: "noc-b".into(),
            node: "primary".into(),
        },
        &StoreSection::default(),
        &LimitsSection::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("belongs to site \"noc-a\""), "{e}");
}

#[test]
fn queue_counts_and_the_unowned_list_follow_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    for subject in ["a", "b", "c"] {
        create(&store, subject);
    }
    let set = |number: i64, a: &str| {
        store
            .writer
            .write_blocking(req(WriteOp::Ticket {
                number,
                command: Command::Set {
                    assignments: vec![a.into()],
                },
            }))
            .unwrap();
    };
    set(2, "queue=core");
    store
        .writer
        .write_blocking(req(WriteOp::Ticket {
            number: 3,
            command: Command::Take { steal: false },
        }))
        .unwrap();
    let counts = store.reader.read_blocking(query::work_counts).unwrap();
    let by_hand: Vec<(String, Status, i64)> = store
        .reader
        .read_blocking(|c| {
            Ok(c.prepare(
                "SELECT queue, status, COUNT(*) FROM tickets GROUP BY queue, status ORDER BY queue, status",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?)
        })
        .unwrap();
    let mut got: Vec<(String, Status, i64)> = counts
        .into_iter()
        .map(|c| (c.queue, c.status, c.tickets))
        .collect();
    got.sort_by(|a, b| (&a.0, a.1.as_str()).cmp(&(&b.0, b.1.as_str())));
    assert_eq!(got, by_hand, "the trigger-kept counts match a full count");
    assert_eq!(
        got,
        vec![
            ("core".into(), Status::New, 1),
            ("general".into(), Status::New, 1),
            ("general".into(), Status::Open, 1)
        ]
    );
    let unowned = store
        .reader
        .read_blocking(|c| query::newest_unowned(c, 10))
        .unwrap();
    let numbers: Vec<i64> = unowned.iter().map(|r| r.number).collect();
    assert_eq!(numbers, vec![2, 1], "newest first, the taken one gone");
    store.writer.shutdown();
}

/// The plan of a query on `store`: the `detail` column of `EXPLAIN QUERY PLAN`, one line each.
fn query_plan(store: &Store, sql: &str) -> Vec<String> {
    let sql = format!("EXPLAIN QUERY PLAN {sql}");
    store
        .reader
        .read_blocking(move |c| {
            Ok(c.prepare(&sql)?
                .query_map([], |r| r.get::<_, String>(3))?
                .collect::<Result<_, _>>()?)
        })
        .unwrap()
}

#[test]
fn alarms_are_found_by_index_not_by_probing_every_open_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    for subject in ["a", "b", "c"] {
        create(&store, subject);
    }
    for all in [false, true] {
        let plan = query_plan(&store, &query::alerts_sql(all, 10));
        let index = if all { "timers_fired" } else { "timers_alarms" };
        assert!(
            plan[0].contains(&format!("tm USING INDEX {index}")),
            "the outer loop walks the fired timers by {index}: {plan:?}"
        );
        assert!(
            plan.iter().all(|l| !l.contains("TEMP B-TREE")),
            "the index gives the order, no sort of all the rows: {plan:?}"
        );
        assert!(
            plan.iter()
                .any(|l| l.contains("SEARCH t USING INDEX sqlite_autoindex_tickets_1")),
            "each ticket is looked up by id: {plan:?}"
        );
    }
    store.writer.shutdown();
}

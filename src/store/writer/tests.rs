//! The writer's commit mechanics under faults, on real SQLite files in temp dirs.

use std::sync::atomic::{AtomicBool, Ordering};

use super::Faults;

use crate::store::query;
use crate::store::tests::{create, note, open, req};
use crate::store::{Store, StoreError};

/// Every note text of ticket `number`, in order.
fn note_texts(store: &Store, number: i64) -> Vec<String> {
    let chart = store
        .reader
        .read_blocking(|c| query::chart(c, number))
        .unwrap();
    chart
        .history
        .iter()
        .filter_map(|h| match &h.event.kind {
            crate::model::event::EventKind::NoteAdded { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// A store in a temp dir with one ticket (and its first note), the fault chosen by `fault`
/// armed for the next batch.
fn store_with_fault(
    fault: impl Fn(&Faults) -> &AtomicBool,
) -> (tempfile::TempDir, Store, crate::store::writer::TicketAck) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    let t = create(&store, "core1 bgp flap");
    fault(&store.writer.faults).store(true, Ordering::SeqCst);
    (dir, store, t)
}

#[test]
fn a_commit_reported_failed_is_never_durable() {
    let (dir, store, t) = store_with_fault(|f| &f.fail_next_commit);
    let failed = store.writer.write_blocking(req(note(t.number, "lost")));
    let err = failed.expect_err("the commit failed, so the write must be refused");
    assert!(
        err.to_string().contains("not committed"),
        "unexpected error: {err}"
    );
    // The writer goes on, and the refused note is not in the store, not even after a restart.
    store
        .writer
        .write_blocking(req(note(t.number, "kept")))
        .unwrap();
    assert_eq!(note_texts(&store, t.number), ["first words", "kept"]);
    store.writer.shutdown();
    drop(store);
    let store = open(dir.path(), "noc-a");
    assert_eq!(note_texts(&store, t.number), ["first words", "kept"]);
}

#[test]
fn a_writer_panic_is_reported_and_rolls_back() {
    let (dir, store, t) = store_with_fault(|f| &f.panic_next_batch);
    let err = store
        .writer
        .write_blocking(req(note(t.number, "in the panicking batch")))
        .expect_err("a write in a panicking batch is not acknowledged");
    assert!(matches!(err, StoreError::Closed), "{err}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reason = rt
        .block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), store.writer.failed()).await
        })
        .expect("the writer reports its failure");
    assert!(reason.contains("injected writer panic"), "{reason}");
    // Later writes fail at once instead of waiting on a thread that is gone.
    let later = store.writer.write_blocking(req(note(t.number, "after")));
    assert!(matches!(later, Err(StoreError::Closed)), "{later:?}");
    store.writer.shutdown();
    drop(store);
    let store = open(dir.path(), "noc-a");
    assert_eq!(note_texts(&store, t.number), ["first words"]);
}

/// A timer due `ms` from now on ticket `number`.
fn timer_in(number: i64, ms: i64, text: &str) -> crate::store::WriteOp {
    crate::store::WriteOp::Ticket {
        number,
        command: crate::model::command::Command::Timer {
            due_at: crate::model::clock::now() + ms,
            text: text.into(),
        },
    }
}

/// Runs a command on ticket `number`.
fn run(store: &Store, number: i64, command: crate::model::command::Command) {
    let op = crate::store::WriteOp::Ticket { number, command };
    store.writer.write_blocking(req(op)).unwrap();
}

#[test]
fn timers_never_fire_on_closed_or_cancelled_tickets() {
    use crate::model::command::Command;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    let open_one = create(&store, "core1 bgp flap");
    let closed = create(&store, "edge2 optics");
    let cancelled = create(&store, "duplicate of core1");
    for t in [&open_one, &closed, &cancelled] {
        store
            .writer
            .write_blocking(req(timer_in(t.number, 300, "call the carrier")))
            .unwrap();
    }
    let resolve = Command::Resolve {
        resolution: "optic replaced".into(),
        component: None,
        escalated_to: None,
    };
    run(&store, closed.number, resolve);
    run(&store, closed.number, Command::Close { checked_by: None });
    let cancel = Command::Set {
        assignments: vec!["status=cancelled".into()],
    };
    run(&store, cancelled.number, cancel);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let fired = store
        .writer
        .write_blocking(req(crate::store::WriteOp::FireDueTimers))
        .unwrap();
    assert_eq!(
        fired,
        crate::store::WriteOutcome::Applied { applied: 1 },
        "only the open ticket's timer goes off"
    );
    // Nothing is due any more: the alarm clock sleeps instead of spinning on dead timers.
    let next = store.reader.read_blocking(query::next_due).unwrap();
    assert_eq!(next, None);
    for t in [&closed, &cancelled] {
        let chart = store
            .reader
            .read_blocking(|c| query::chart(c, t.number))
            .unwrap();
        let timer = &chart.timers[0];
        assert_eq!(timer.fired_at, None, "{timer:?}");
        assert!(timer.cancelled_at.is_some(), "{timer:?}");
    }
}

#[test]
fn batches_and_the_queue_are_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::StoreSection {
        write_queue_bytes: 3 * 1024 * 1024,
        group_commit_max_bytes: 1024 * 1024,
        ..Default::default()
    };
    let store = Store::open(
        &dir.path().join("ttx.db"),
        crate::store::NodeStamp {
            site: "noc-a".into(),
            node: "primary".into(),
        },
        &cfg,
        &crate::config::LimitsSection::default(),
    )
    .unwrap();
    let t = create(&store, "core1 bgp flap");
    let text = "show log | include BGP\n".repeat(12_000); // about 280 KiB
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..4 {
                    store
                        .writer
                        .write_blocking(req(note(t.number, &text)))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(note_texts(&store, t.number).len(), 1 + 32);
    let max = store.writer.stats.max_batch_bytes.load(Ordering::Relaxed);
    assert!(max <= 1024 * 1024, "a batch held {max} bytes");
    assert!(max >= text.len() as u64, "{max}");
}

/// `ttx verify` while notes are being written: the search index check must never call a
/// sound index malformed. It ran in the writer's batch, after notes of the same batch that the
/// indexer (which runs between batches) had not indexed yet, so FTS5's check against the notes
/// table found rows missing from the index and said "database disk image is malformed".
#[test]
fn verify_under_concurrent_notes_finds_the_index_sound() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    let t = create(&store, "core1 bgp flap");
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let (store, t) = (&store, &t);
                s.spawn(move || {
                    for i in 0..300 {
                        let text =
                            format!("writer {w} note {i}: BGP session to 192.0.2.{w} flapped");
                        store
                            .writer
                            .write_blocking(req(note(t.number, &text)))
                            .unwrap();
                    }
                })
            })
            .collect();
        let checker = s.spawn(|| {
            let mut checks = 0;
            while !done.load(Ordering::SeqCst) {
                let v = store.verify_blocking().unwrap();
                assert_eq!(v.search_index, "ok", "after {checks} checks: {v:?}");
                assert_eq!(v.quick_check, "ok", "after {checks} checks: {v:?}");
                checks += 1;
            }
            checks
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let checks = checker.join().unwrap();
        assert!(checks > 0);
    });
    let v = store.verify_blocking().unwrap();
    assert!(v.ok(), "{v:?}");
    let notes: i64 = store
        .reader
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM notes", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(notes, 1 + 6 * 300);
}

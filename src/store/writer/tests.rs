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

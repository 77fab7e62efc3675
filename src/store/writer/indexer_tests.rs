//! Note text indexed after the commits: found as soon as answered, caught up after a crash.

use crate::store::note_index;
use crate::store::tests::{create, note, open, req};

#[test]
fn a_note_is_found_by_search_as_soon_as_it_is_answered_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    let t = create(&store, "core1 bgp flap");
    // Eight writers keep the queue busy, so the writer indexes by count and time, not when
    // idle; each searches for its own note right after the answer.
    std::thread::scope(|s| {
        for w in 0..8 {
            let store = store.clone();
            s.spawn(move || {
                for i in 0..40 {
                    let word = format!("w{w}x{i}marker");
                    store
                        .writer
                        .write_blocking(req(note(t.number, &format!("seen {word} on core1"))))
                        .unwrap();
                    let hits = store.search_blocking(&word, 10).unwrap();
                    assert_eq!(hits.len(), 1, "{word} is searchable once answered");
                }
            });
        }
    });
    let v = store.verify_blocking().unwrap();
    assert_eq!(v.search_index, "ok");
    store.writer.shutdown();
}

#[test]
fn notes_committed_but_not_indexed_before_a_crash_are_indexed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    let t = create(&store, "core1 bgp flap");
    for text in ["optics rx low", "carrier case 4711"] {
        store
            .writer
            .write_blocking(req(note(t.number, text)))
            .unwrap();
    }
    store.writer.shutdown();
    drop(store);
    // What a crash between the notes' commit and their index transaction leaves: the notes
    // durable, the index and its watermark from before them.
    let conn = rusqlite::Connection::open(dir.path().join("ttx.db")).unwrap();
    conn.execute_batch(
        "INSERT INTO note_fts (note_fts) VALUES ('delete-all');
         UPDATE meta SET value = '0' WHERE key = 'note_fts_indexed';",
    )
    .unwrap();
    assert_eq!(note_index::watermark(&conn).unwrap(), 0);
    drop(conn);

    let store = open(dir.path(), "noc-a");
    let hits = store.search_blocking("4711", 10).unwrap();
    assert_eq!(hits.len(), 1, "the note is indexed again at start");
    assert_eq!(store.search_blocking("optics", 10).unwrap().len(), 1);
    let watermark = store.reader.read_blocking(note_index::watermark).unwrap();
    assert_eq!(watermark, 3, "the description and both notes");
    assert_eq!(store.verify_blocking().unwrap().search_index, "ok");
    store.writer.shutdown();
}

#[test]
fn the_writer_indexes_at_a_quiet_moment_not_at_every_empty_queue() {
    use super::{IndexProgress, Indexer, IDLE_WAIT, MAX_LAG, MAX_PENDING_NOTES};
    use std::time::{Duration, Instant};
    let (progress, _) = tokio::sync::watch::channel(IndexProgress::default());
    let mut indexer = Indexer {
        pending: 0,
        oldest: None,
        retry_at: None,
        progress,
    };
    assert_eq!(
        indexer.idle_wait(),
        None,
        "nothing to index: wait for the next job"
    );
    indexer.committed(8);
    // A gap between two group commits is not a reason to index...
    assert!(!indexer.due(false));
    let wait = indexer.idle_wait().expect("notes wait");
    assert!(wait > Duration::ZERO && wait <= IDLE_WAIT, "{wait:?}");
    // ...but a search waiting, or a quiet queue, is.
    assert!(indexer.due(true));
    // Under load: by count, and by the oldest note's age (never waits past MAX_LAG).
    indexer.committed(MAX_PENDING_NOTES);
    assert!(indexer.due(false));
    indexer.pending = 8;
    indexer.oldest = Some(Instant::now() - MAX_LAG);
    assert!(indexer.due(false));
    assert_eq!(indexer.idle_wait(), Some(Duration::ZERO));
}

#[test]
fn an_idle_node_indexes_its_notes_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "noc-a");
    let t = create(&store, "core1 bgp flap");
    store
        .writer
        .write_blocking(req(note(t.number, "optics rx low on et-0/0/1")))
        .unwrap();
    // No search asks for it: the writer's quiet-moment wait alone brings the index up to date.
    let mut progress = store.writer.search_index.clone();
    let target = progress.borrow().written;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            progress.wait_for(|p| p.indexed >= target),
        )
        .await
        .expect("indexed within a moment of going quiet")
        .unwrap();
    });
    let conn = rusqlite::Connection::open(dir.path().join("ttx.db")).unwrap();
    assert_eq!(
        note_index::watermark(&conn).unwrap(),
        2,
        "the description and the note"
    );
    store.writer.shutdown();
}

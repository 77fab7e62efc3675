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

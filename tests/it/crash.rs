//! A node killed with SIGKILL in the middle of a stream of writes: on restart every
//! acknowledged write is there, and nothing is half-written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{http, open_db, TestNode};

#[test]
fn sigkill_mid_write_loses_no_acknowledged_update() {
    let mut node = TestNode::start_new("noc-a");
    node.cli(&["new", "crash target"]).ok();
    let addr = node.api_addr();
    let token = node.admin_token();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (acked, stop, token) = (acked.clone(), stop.clone(), token.clone());
            std::thread::spawn(move || {
                for i in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let text = format!("w{w}-n{i}");
                    let body = serde_json::json!({"text": text}).to_string();
                    let (status, _) = std::panic::catch_unwind(|| {
                        http(
                            addr,
                            "POST",
                            "/v1/tickets/1/notes",
                            Some(&token),
                            Some(body.as_bytes()),
                        )
                    })
                    .unwrap_or((0, serde_json::Value::Null));
                    if status == 200 {
                        acked.lock().unwrap().push(text);
                    } else {
                        break;
                    }
                }
            })
        })
        .collect();
    // Let writes flow, then kill the node without warning.
    while acked.lock().unwrap().len() < 300 {
        std::thread::sleep(Duration::from_millis(10));
    }
    node.kill();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    node.start();
    let db = open_db(&node.dir);
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let mut stmt = db.prepare("SELECT text FROM notes").unwrap();
    let stored: std::collections::HashSet<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|t| !stored.contains(*t)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged notes lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Nothing partial: every note event has its note row and vice versa, and the ticket's
    // projected count agrees with the log.
    let note_events: i64 = db
        .query_row("SELECT COUNT(*) FROM events WHERE kind = 'note'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let notes: i64 = db
        .query_row("SELECT COUNT(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(note_events, notes);
    let chart = node.cli(&["--json", "show", "1"]).json();
    assert_eq!(chart["ticket"]["notes"].as_i64().unwrap(), notes);
    // And the node takes writes again, numbering on from where it was.
    assert_eq!(
        node.cli(&["--json", "new", "after the crash"]).json()["number"],
        2
    );
}

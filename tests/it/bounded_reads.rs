//! `show` is bounded in memory however long a ticket's history and however large its notes:
//! pages of history, long notes by reference (a real node, over its HTTP API and CLI).

use crate::common::TestNode;

/// Posts a note with `text` to ticket 1.
fn post_note(node: &TestNode, token: &str, text: &str) {
    let body = serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap();
    let (status, answer) = node.http("POST", "/v1/tickets/1/notes", Some(token), Some(&body));
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn show_pages_history_and_gives_long_notes_by_reference() {
    let node = TestNode::start_new("noc-a");
    let token = node.admin_token();
    node.cli(&["new", "core1 bgp flap"]).ok();
    // Six maximal (2 MiB) notes, then 40 notes of 30 KiB: 13 MiB of text on one ticket.
    let big = "show ip bgp neighbors 192.0.2.1\n".repeat(2 * 1024 * 1024 / 32);
    for _ in 0..6 {
        post_note(&node, &token, &big);
    }
    let medium = "x".repeat(30 * 1024);
    for _ in 0..40 {
        post_note(&node, &token, &medium);
    }
    // Six viewers at once: each answer is one bounded page, not 13 MiB.
    let pages: Vec<serde_json::Value> = std::thread::scope(|s| {
        let viewers: Vec<_> = (0..6)
            .map(|_| s.spawn(|| node.http("GET", "/v1/tickets/1", Some(&token), None)))
            .collect();
        viewers.into_iter().map(|v| v.join().unwrap().1).collect()
    });
    for page in &pages {
        let size = serde_json::to_vec(page).unwrap().len();
        assert!(size < 1200 * 1024, "a page of show is {size} bytes");
        let history = page["history"].as_array().unwrap();
        // The six long notes are there by reference: no text, their size, their id.
        let by_ref: Vec<_> = history
            .iter()
            .filter(|h| h.get("note_bytes").is_some())
            .collect();
        assert_eq!(by_ref.len(), 6, "{page}");
        for h in &by_ref {
            assert_eq!(h["note_bytes"], big.len());
            assert_eq!(h["event"]["kind"]["NoteAdded"]["text"], "");
        }
        assert!(
            page["more_after"].is_i64(),
            "the history goes on: {size} bytes"
        );
    }
    // The pages walk to the end, each bounded, every event once and in order.
    let mut seqs = Vec::new();
    let mut after = None;
    loop {
        let path = match after {
            Some(a) => format!("/v1/tickets/1?after={a}"),
            None => "/v1/tickets/1".into(),
        };
        let (status, page) = node.http("GET", &path, Some(&token), None);
        assert_eq!(status, 200, "{page}");
        assert!(serde_json::to_vec(&page).unwrap().len() < 1200 * 1024);
        seqs.extend(
            page["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["seq"].as_i64().unwrap()),
        );
        match page["more_after"].as_i64() {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    assert_eq!(seqs.len(), 1 + 6 + 40, "created + notes");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // A note by reference, in full.
    let first = &pages[0]["history"].as_array().unwrap()[1];
    let note_id = first["event"]["kind"]["NoteAdded"]["note_id"]
        .as_str()
        .unwrap();
    let (status, note) = node.http(
        "GET",
        &format!("/v1/tickets/1/notes/{note_id}"),
        Some(&token),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(note["text"].as_str().unwrap(), big);
    // Bad references are clear errors.
    let (status, e) = node.http("GET", "/v1/tickets/1/notes/nope", Some(&token), None);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("invalid"))
    );
    let missing = "/v1/tickets/1/notes/01890000-0000-7000-8000-000000000000";
    let (status, e) = node.http("GET", missing, Some(&token), None);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    // The CLI follows the pages, and fetches long notes when asked.
    let shown = node.cli(&["show", "1"]);
    let text = shown.ok();
    assert!(
        text.contains("bytes, not shown: ttx show 1 --full"),
        "{}",
        &text[..2000.min(text.len())]
    );
    let full = node.cli(&["--json", "show", "1", "--full"]).json();
    let history = full["history"].as_array().unwrap();
    assert_eq!(history.len(), 47);
    assert_eq!(
        history[1]["event"]["kind"]["NoteAdded"]["text"]
            .as_str()
            .unwrap(),
        big
    );
}

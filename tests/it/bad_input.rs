//! Bad input at the CLI and the API: a clear message, a precise exit code or status, and a
//! store left exactly as it was.

use crate::common::{http_with, open_db, run, ttx, TestNode};

fn event_count(node: &TestNode) -> i64 {
    node.cli(&["--json", "status"]).json()["events"]
        .as_i64()
        .unwrap()
}

#[test]
fn refused_commands_leave_the_store_intact() {
    let node = TestNode::start_new("noc-a");
    node.cli(&["new", "ticket one"]).ok();
    let before = event_count(&node);
    node.cli(&["note", "42", "hello"]).fails(3, "no ticket 42");
    node.cli(&["show", "42"]).fails(3, "no ticket 42");
    node.cli(&["close", "1"]).fails(4, "cannot go from new to closed: from new a ticket may go to open, pending, referred, resolved, cancelled");
    node.cli(&["reopen", "1", "--reason", "x"])
        .fails(4, "only a resolved or closed ticket can be reopened");
    node.cli(&["new", "x", "--severity", "5"])
        .fails(2, "severity must be 1 to 4, got 5");
    node.cli(&["new", "x", "--priority", "0"])
        .fails(2, "priority must be 1 to 4, got 0");
    node.cli(&["set", "1", "colour=red"])
        .fails(2, "unknown field \"colour\"");
    node.cli(&["set", "1", "status=resolved"])
        .fails(4, "ttx resolve");
    node.cli(&["set", "1", "status=bogus"])
        .fails(2, "unknown status");
    node.cli(&["set", "1", "noequals"])
        .fails(2, "is not FIELD=VALUE");
    node.cli(&["new", ""]).fails(2, "subject must not be empty");
    node.cli(&["new", "   "])
        .fails(2, "subject must not be empty");
    node.cli(&["new", "x", "--type", "incident"])
        .fails(2, "unknown ticket type");
    node.cli(&["note", "1", ""])
        .fails(2, "note must not be empty");
    node.cli(&["note", "1", "x", "--at", "yesterday"])
        .fails(2, "invalid time");
    node.cli(&["timer", "1", "--in", "soon", "x"])
        .fails(2, "invalid duration");
    node.cli(&["timer", "1", "--at", "2001-01-01 00:00", "x"])
        .fails(2, "not in the future");
    node.cli(&["link", "1", "--refers-to", "1"])
        .fails(4, "cannot be linked to itself");
    node.cli(&["link", "1", "--refers-to", "9"])
        .fails(3, "no ticket 9");
    node.cli(&["search", " "])
        .fails(2, "search text must not be empty");
    assert_eq!(event_count(&node), before);
}

#[test]
fn a_ten_mib_note_is_accepted_up_to_the_configured_maximum() {
    let mut node = TestNode::init("noc-a");
    // A 10 MiB note needs frames of up to 60 MiB once JSON-escaped (the default 2 MiB notes
    // fit the default 16 MiB frames).
    node.configure(|c| {
        c.limits.max_note_bytes = 10 * 1024 * 1024;
        c.transport.max_frame_bytes = 64 * 1024 * 1024;
    });
    node.start();
    node.cli(&["new", "paste"]).ok();
    let big: Vec<u8> = "traceroute to 192.0.2.1, 30 hops max\n"
        .bytes()
        .cycle()
        .take(10 * 1024 * 1024)
        .collect();
    node.cli_with(&["note", "1", "-"], None, Some(&big)).ok();
    let chart = node.cli(&["--json", "show", "1", "--full"]).json();
    let text = chart["history"][1]["event"]["kind"]["NoteAdded"]["text"]
        .as_str()
        .unwrap();
    assert_eq!(text.len(), big.len());
    node.stop();
    node.configure(|c| c.limits.max_note_bytes = 4 * 1024 * 1024);
    node.start();
    let before = event_count(&node);
    node.cli_with(&["note", "1", "-"], None, Some(&big)).fails(
        2,
        "note is 10485760 bytes, at most 4194304 allowed (limits.max_note_bytes)",
    );
    // Past the body limit (which must exceed the note limit) the API refuses before reading
    // it all.
    node.stop();
    node.configure(|c| {
        c.limits.max_note_bytes = 1024 * 1024;
        c.api.max_body_bytes = 2 * 1024 * 1024;
        // A maximal attachment (as base64) must fit in the body too.
        c.limits.max_attachment_bytes = 1024 * 1024;
    });
    node.start();
    let mut body = br#"{"text":""#.to_vec();
    body.extend_from_slice(&big[..big.len() / 2]);
    body.extend_from_slice(br#""}"#);
    let (status, answer) = node.http(
        "POST",
        "/v1/tickets/1/notes",
        Some(&node.admin_token()),
        Some(&body),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{answer}"
    );
    assert_eq!(event_count(&node), before);
}

#[test]
fn the_api_refuses_malformed_and_unauthorized_requests() {
    let node = TestNode::start_new("noc-a");
    let admin = node.admin_token();
    node.cli(&["new", "x"]).ok();
    let (s, body) = node.http("POST", "/v1/tickets", Some(&admin), Some(b"{\"subject\": "));
    assert_eq!(s, 400);
    assert_eq!(body["error"]["code"], "invalid");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body"),
        "{body}"
    );
    let (s, body) = node.http(
        "POST",
        "/v1/tickets",
        Some(&admin),
        Some(b"{\"subject\": 7}"),
    );
    assert_eq!((s, body["error"]["code"].as_str()), (400, Some("invalid")));
    let (s, _) = node.http(
        "POST",
        "/v1/tickets",
        Some(&admin),
        Some(b"{\"subject\": \"x\", \"bogus\": 1}"),
    );
    assert_eq!(s, 400);
    let (s, body) = node.http(
        "POST",
        "/v1/tickets/abc/notes",
        Some(&admin),
        Some(b"{\"text\":\"x\"}"),
    );
    assert_eq!(s, 400, "{body}");
    let (s, body) = node.http("GET", "/v1/tickets", None, None);
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, _) = node.http("GET", "/v1/tickets", Some("nope"), None);
    assert_eq!(s, 401);
    let (s, body) = node.http("GET", "/v1/nothing", Some(&admin), None);
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let huge = vec![b'a'; 17 * 1024 * 1024];
    let (s, body) = node.http("POST", "/v1/tickets/1/notes", Some(&admin), Some(&huge));
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (413, Some("too_large"))
    );
    let (s, body) = node.http(
        "POST",
        "/v1/tickets",
        Some(&admin),
        Some(b"{\"subject\":\"ok\"}"),
    );
    assert_eq!((s, body["number"].as_i64()), (201, Some(2)));
    let (s, body) = node.http("GET", "/v1/tickets?limit=abc", Some(&admin), None);
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (400, Some("invalid")),
        "{body}"
    );
    let (s, body) = node.http("GET", "/v1/tickets?colour=red", Some(&admin), None);
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (400, Some("invalid")),
        "{body}"
    );
    let (s, body) = node.http("DELETE", "/v1/tickets", Some(&admin), None);
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{body}"
    );
    // A retried write with the same key is applied once; the key reused for another request
    // is refused.
    let key = [("Idempotency-Key", "retry-1")];
    let note = br#"{"text": "once", "at": "-5m"}"#;
    let post = |body: &[u8]| {
        http_with(
            node.api_addr(),
            "POST",
            "/v1/tickets/2/notes",
            Some(&admin),
            Some(body),
            &key,
        )
    };
    let (first, again) = (post(note), post(note));
    assert_eq!((first.0, again.0), (200, 200));
    assert_eq!(first.1["events"], again.1["events"]);
    assert_eq!(again.1["replayed"], true);
    let other = post(br#"{"text": "twice"}"#);
    assert_eq!(
        (other.0, other.1["error"]["code"].as_str()),
        (409, Some("refused")),
        "{:?}",
        other.1
    );
    // Endpoints whose fields are all optional take an empty body.
    let (s, body) = node.http("POST", "/v1/tickets/2/take", Some(&admin), None);
    assert_eq!(s, 200, "{body}");
}

#[test]
fn one_writer_per_store_and_init_never_overwrites() {
    let node = TestNode::start_new("noc-a");
    let second = run(
        {
            let mut c = ttx();
            c.args(["serve", node.dir.to_str().unwrap()]);
            c
        },
        None,
    );
    second.fails(4, "already serving");
    let again = run(
        {
            let mut c = ttx();
            c.args(["init", node.dir.to_str().unwrap(), "--site", "noc-a"]);
            c
        },
        None,
    );
    again.fails(4, "already holds a ttx node");
    let bad = run(
        {
            let mut c = ttx();
            c.args([
                "init",
                node.tmp.path().join("other").to_str().unwrap(),
                "--site",
                "NOC A",
            ]);
            c
        },
        None,
    );
    bad.fails(2, "invalid site name");
    let none = run(
        {
            let mut c = ttx();
            c.args(["serve", node.tmp.path().join("missing").to_str().unwrap()]);
            c
        },
        None,
    );
    none.fails(2, "cannot read config");
    // The first node is unharmed.
    node.cli(&["new", "still here"]).ok();
    let mut c = ttx();
    c.args(["list"]);
    run(c, None).fails(2, "no node chosen");
    drop(open_db(&node.dir));
}

/// The cases a fuzzing pass of the API found accepted: each is now a clear 400 (or, for the
/// bearer scheme, accepted as RFC 9110 says), and none changes the store.
#[test]
fn init_is_all_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("noc-a");
    // A failure at the last step, the admin token: a directory is where the token goes.
    std::fs::create_dir_all(dir.join("admin.token")).unwrap();
    let init = || {
        let mut c = ttx();
        c.args(["init", dir.to_str().unwrap(), "--site", "noc-a"]);
        run(c, None)
    };
    init().fails(
        4,
        &format!(
            "{} is in the way (nothing was made",
            dir.join("admin.token").display()
        ),
    );
    // Nothing half made: DIR holds only what was there, and no staging directory is left.
    let entries = |p: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(entries(&dir), ["admin.token"]);
    assert_eq!(entries(tmp.path()), ["noc-a"]);
    // Once the obstacle is gone, a second init works, and the node can be administered.
    std::fs::remove_dir(dir.join("admin.token")).unwrap();
    init().ok();
    let mut node = TestNode::at(tmp, dir.clone());
    node.start();
    node.cli(&["operator", "list"]).ok();
    // A directory that does not exist yet is created whole, by one rename.
    let fresh = node.tmp.path().join("deep/er/noc-b");
    let mut c = ttx();
    c.args(["init", fresh.to_str().unwrap(), "--site", "noc-b"]);
    run(c, None).ok();
    let made = entries(&fresh);
    for file in ["admin.token", "ttx.db", "ttx.toml"] {
        assert!(made.iter().any(|m| m == file), "{file}: {made:?}");
    }
    assert_eq!(entries(&node.tmp.path().join("deep/er")), ["noc-b"]);
}

#[test]
fn the_api_refuses_what_the_fuzzing_pass_found() {
    let node = TestNode::start_new("noc-a");
    let admin = node.admin_token();
    node.cli(&["new", "x"]).ok();
    let before = event_count(&node);
    let post =
        |path: &str, body: &str| node.http("POST", path, Some(&admin), Some(body.as_bytes()));
    let refused = |(status, body): (u16, serde_json::Value), needle: &str| {
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    };
    refused(
        post(
            "/v1/tickets",
            r#"{"subject":"x","reporter":{"phnoe":"+44 20"}}"#,
        ),
        "unknown field `phnoe`",
    );
    for limit in ["0", "1001", "5000"] {
        refused(
            node.http(
                "GET",
                &format!("/v1/tickets?limit={limit}"),
                Some(&admin),
                None,
            ),
            "limit must be 1 to 1000",
        );
        refused(
            node.http(
                "GET",
                &format!("/v1/search?q=x&limit={limit}"),
                Some(&admin),
                None,
            ),
            "limit must be 1 to 1000",
        );
    }
    refused(
        node.http("GET", "/v1/tickets/+1", Some(&admin), None),
        "invalid ticket number \"+1\"",
    );
    refused(
        node.http("GET", "/v1/search?q=%FF%FE", Some(&admin), None),
        "\"q\" is not percent-encoded UTF-8",
    );
    refused(
        post(
            "/v1/tickets/1/timers",
            r#"{"in":"9223372036854775s","text":"x"}"#,
        ),
        "is too long",
    );
    refused(
        post("/v1/tickets/1/notes", r#"{"text":"x","at":"-1000000y"}"#),
        "out of range",
    );
    refused(
        post(
            "/v1/tickets/1/notes",
            r#"{"text":"x","at":"0000-01-01T00:00:00Z"}"#,
        ),
        "out of range",
    );
    assert_eq!(event_count(&node), before);
    // A lowercase scheme is the same scheme.
    let (s, _) = crate::common::http_with(
        node.api_addr(),
        "GET",
        "/v1/tickets",
        None,
        None,
        &[("Authorization", &format!("bearer {admin}"))],
    );
    assert_eq!(s, 200);
}

#[test]
fn config_limits_that_cannot_work_are_refused_before_start() {
    for (edit, needle) in [
        (
            (|c: &mut ttx::config::Config| {
                c.limits.max_note_bytes = 1 << 20;
                c.api.max_body_bytes = 64 * 1024;
            }) as fn(&mut ttx::config::Config),
            "api.max_body_bytes must be larger than limits.max_note_bytes",
        ),
        (
            |c: &mut ttx::config::Config| c.limits.max_timers_per_ticket = 0,
            "limits.max_timers_per_ticket must be at least 1",
        ),
        (
            |c: &mut ttx::config::Config| c.limits.max_attachment_bytes = 16 * 1024 * 1024,
            "limits.max_attachment_bytes (16777216) must be positive, and as base64",
        ),
    ] {
        let node = TestNode::init("noc-a");
        node.configure(edit);
        let mut c = ttx();
        c.args(["serve", node.dir.to_str().unwrap()]);
        run(c, None).fails(2, needle);
    }
}

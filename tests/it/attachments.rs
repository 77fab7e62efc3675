//! Attachments on tickets through the real CLI and API: attach, list, show, download (the
//! digest checked, a download never rendered), the refusals (oversize, bad name, closed
//! ticket, unknown id), and the bytes reaching the standby through the site log.

use crate::common::TestNode;
use crate::repl::{wait_caught_up, Pair};

/// Bytes that are not all alike (so a chunk out of place would change the digest).
fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn sha256(data: &[u8]) -> String {
    ttx::model::attachment::sha256_hex(data)
}

#[test]
fn attach_list_show_and_download_a_file_over_several_chunks() {
    let mut n = TestNode::start_new("noc-a");
    n.cli(&["new", "packet loss on core-1"]).ok();
    // Three chunks (256 KiB each at most), the last one short.
    let data = sample(600 * 1024 + 11);
    let file = n.tmp.path().join("capture.pcap");
    std::fs::write(&file, &data).unwrap();
    let ack = n
        .cli(&["--json", "attach", "1", file.to_str().unwrap()])
        .json();
    assert_eq!(ack["name"], "capture.pcap");
    assert_eq!(ack["size"], data.len() as u64);
    assert_eq!(ack["sha256"], sha256(&data));
    assert_eq!(ack["shared"], false, "internal by default: {ack}");
    assert_eq!(ack["events"].as_array().unwrap().len(), 4, "{ack}");
    let id = ack["attachment"].as_str().unwrap().to_string();

    let listed = n.cli(&["--json", "attachments", "1"]).json();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["author"], "admin");
    let text = n.cli(&["attachments", "1"]).ok().to_string();
    assert!(
        text.contains("capture.pcap") && text.contains("internal"),
        "{text}"
    );
    let chart = n.cli(&["show", "1", "--no-pager"]).ok().to_string();
    assert!(
        chart.contains("ATTACHMENTS") && chart.contains(&id),
        "{chart}"
    );
    assert!(chart.contains("attached capture.pcap"), "history: {chart}");
    let shown = n.cli(&["--json", "show", "1"]).json();
    assert_eq!(shown["attachments"][0]["sha256"], sha256(&data));
    // The chunks are site events: the ticket's history has the one attachment event only.
    assert!(
        !shown["history"].to_string().contains("attachment-chunk"),
        "{shown}"
    );

    let out = n.tmp.path().join("got.pcap");
    n.cli(&["attachment", "get", &id, "-o", out.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // An existing file is never overwritten.
    n.cli(&["attachment", "get", &id, "-o", out.to_str().unwrap()])
        .fails(2, "never overwritten");

    // A download is never rendered by a browser.
    let resp = ttx::cli::client::agent()
        .get(format!(
            "http://{}/v1/attachments/{id}/content",
            n.api_addr()
        ))
        .header("Authorization", format!("Bearer {}", n.admin_token()))
        .call()
        .unwrap();
    let h = resp.headers();
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"capture.pcap\"; filename*=UTF-8''capture.pcap"
    );

    // The node restarts with it.
    n.stop();
    n.start();
    let out2 = n.tmp.path().join("again.pcap");
    n.cli(&["attachment", "get", &id, "-o", out2.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read(&out2).unwrap(), data);
}

#[test]
fn oversize_empty_badly_named_and_unknown_attachments_are_refused_and_nothing_is_stored() {
    let mut n = TestNode::init("noc-a");
    n.configure(|c| c.limits.max_attachment_bytes = 300 * 1024);
    n.start();
    n.cli(&["new", "x"]).ok();
    let big = n.tmp.path().join("big.bin");
    std::fs::write(&big, sample(300 * 1024 + 1)).unwrap();
    n.cli(&["attach", "1", big.to_str().unwrap()]).fails(
        2,
        "is 307201 bytes, at most 307200 allowed (limits.max_attachment_bytes)",
    );
    let empty = n.tmp.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    n.cli(&["attach", "1", empty.to_str().unwrap()])
        .fails(2, "is empty");
    let ok = n.tmp.path().join("ok.txt");
    std::fs::write(&ok, b"interface ge-0/0/1\n").unwrap();
    n.cli(&[
        "attach",
        "1",
        ok.to_str().unwrap(),
        "--name",
        "../etc/passwd",
    ])
    .fails(2, "names a directory");
    n.cli(&["attach", "9", ok.to_str().unwrap()])
        .fails(3, "no ticket 9");
    n.cli(&["attachment", "get", "0190a0a0-0000-7000-8000-000000000000"])
        .fails(3, "no attachment");
    n.cli(&["attachment", "get", "nope"])
        .fails(2, "invalid attachment id");
    // Nothing of the refused ones was stored, not even a chunk.
    assert_eq!(
        n.cli(&["--json", "attachments", "1"]).json(),
        serde_json::json!([])
    );
    let db = crate::common::open_db(&n.dir);
    let chunks: i64 = db
        .query_row("SELECT COUNT(*) FROM attachment_chunks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(chunks, 0);
    // A closed ticket takes no attachments.
    n.cli(&["resolve", "1", "--resolution", "fixed"]).ok();
    n.cli(&["close", "1"]).ok();
    n.cli(&["attach", "1", ok.to_str().unwrap()])
        .fails(4, "reopen it to attach files");
}

#[test]
fn an_attachment_reaches_the_standby_through_the_site_log() {
    let p = Pair::new(|_| {});
    p.primary.cli(&["new", "fibre cut"]).ok();
    let data = sample(700 * 1024);
    let file = p.primary.tmp.path().join("otdr.sor");
    std::fs::write(&file, &data).unwrap();
    let ack = p
        .primary
        .cli(&["--json", "attach", "1", file.to_str().unwrap(), "--shared"])
        .json();
    let id = ack["attachment"].as_str().unwrap().to_string();
    wait_caught_up(&p);
    let out = p.standby.tmp.path().join("otdr.sor");
    p.standby
        .cli(&["attachment", "get", &id, "-o", out.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let listed = p.standby.cli(&["--json", "attachments", "1"]).json();
    assert_eq!(listed[0]["shared"], true);
    // Writes stay the primary's.
    p.standby
        .cli(&["attach", "1", file.to_str().unwrap()])
        .fails(4, "standby");
}

#[test]
fn the_console_links_an_attachment_as_a_download_never_rendered() {
    let node = TestNode::start_new("noc-a");
    crate::common::web::set_password(&node, "admin", "correct horse battery");
    node.cli(&["new", "bad config pushed"]).ok();
    // Untrusted content that a browser would run if it rendered it.
    let evil = b"<html><script>alert(document.cookie)</script></html>";
    let file = node.tmp.path().join("report.html");
    std::fs::write(&file, evil).unwrap();
    let id = node
        .cli(&["--json", "attach", "1", file.to_str().unwrap()])
        .json()["attachment"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = crate::common::web::WebClient::new(&node);
    assert_eq!(c.login("admin", "correct horse battery").status, 303);
    let page = c.get("/tickets/1");
    let link = format!("/tickets/1/attachments/{id}");
    assert!(page.body.contains(&link), "{}", page.body);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    let r = c.get(&link);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"report.html\"; filename*=UTF-8''report.html")
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.body.as_bytes(), evil);
    // An attachment is served only under its own ticket.
    node.cli(&["new", "other"]).ok();
    assert_eq!(c.get(&format!("/tickets/2/attachments/{id}")).status, 400);
}

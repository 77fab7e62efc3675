//! Limits of the local API against a real `ttx serve`: header-read and idle timeout, the
//! connection cap, hyper's own 400/431 in the JSON shape, control bytes in search text.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::TestNode;

/// Reads until the server closes the connection (bounded); the bytes it sent.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(got),
        }
    }
    None
}

fn json_body(answer: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(answer);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
}

fn node_with_short_timeouts() -> TestNode {
    let mut node = TestNode::init("noc-a");
    node.configure(|c| {
        c.api.header_read_timeout_secs = 2;
        c.api.max_connections = 40;
    });
    node.start();
    node
}

/// Before: a client sending one header byte per second kept its connection for 75 s and
/// counting. Now it is closed at the header-read timeout, and so is an idle keep-alive one.
#[test]
fn slow_headers_and_idle_connections_are_closed() {
    let node = node_with_short_timeouts();
    let mut slow = TcpStream::connect(node.api_addr()).unwrap();
    let start = Instant::now();
    let mut closed = false;
    for b in b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaa".iter() {
        if slow.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        if start.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    assert!(
        closed || read_until_closed(&mut slow, Duration::from_secs(10)).is_some(),
        "a slow header connection stayed open"
    );
    // An idle connection that never sends anything is closed too.
    let mut idle = TcpStream::connect(node.api_addr()).unwrap();
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(15)).is_some(),
        "an idle connection stayed open"
    );
}

/// Before: 1,100 idle connections with no token made `status`, writes and search time out.
/// Now connections beyond the cap are answered 503 (JSON) at once, the idle ones are closed
/// at the header timeout, and the node answers again.
#[test]
fn idle_connections_beyond_the_cap_are_answered_and_the_node_recovers() {
    let node = node_with_short_timeouts();
    let held: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(node.api_addr()).unwrap())
        .collect();
    // The ones past the cap (40) were answered 503 with the JSON error and closed.
    let mut refused = 0;
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 1024];
        if let Ok(n) = s.read(&mut buf) {
            if n > 0 {
                let answer = &buf[..n];
                assert!(answer.starts_with(b"HTTP/1.1 503"), "{answer:?}");
                assert_eq!(json_body(answer)["error"]["code"], "unavailable");
                refused += 1;
            }
        }
    }
    assert!(refused >= 15, "{refused} refused");
    // Bounded: the node answers again once the idle ones time out.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = node.cli(&["--json", "status"]);
        if out.code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "status never recovered: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// hyper's own answers (a malformed request, headers over the limit) carry the API's JSON
/// error shape, not an empty body.
#[test]
fn hyper_errors_are_json() {
    let node = node_with_short_timeouts();
    let mut s = TcpStream::connect(node.api_addr()).unwrap();
    s.write_all(b"G(T /v1/status HTTP/1.1\r\n\r\n").unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(10)).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{answer:?}");
    assert_eq!(json_body(&answer)["error"]["code"], "invalid");

    let mut s = TcpStream::connect(node.api_addr()).unwrap();
    let big = "a".repeat(100 * 1024);
    let req = format!("GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(req.as_bytes());
    let answer = read_until_closed(&mut s, Duration::from_secs(10)).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 431"), "{answer:?}");
    assert_eq!(json_body(&answer)["error"]["code"], "too_large");
}

/// Before: `GET /v1/search?q=a%00b` answered 500 (`unterminated string` from SQLite) to any
/// token. Now it is a 400 with a message, for a viewer too; other bytes are searched for.
#[test]
fn control_bytes_in_search_text_are_a_clear_400() {
    let node = TestNode::start_new("noc-a");
    let viewer = node
        .cli(&["--json", "operator", "add", "vera", "--role", "viewer"])
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    for q in ["a%00b", "%00", "a%01b", "x%7F"] {
        let (status, body) = node.http("GET", &format!("/v1/search?q={q}"), Some(&viewer), None);
        assert_eq!(status, 400, "{q}: {body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("control characters"), "{msg}");
    }
    for q in ["%E2%9C%93", "a%22b", "%2A", "a%09b"] {
        let (status, body) = node.http("GET", &format!("/v1/search?q={q}"), Some(&viewer), None);
        assert_eq!(status, 200, "{q}: {body}");
    }
}

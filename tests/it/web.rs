//! The web console over plain HTTP against a real `ttx serve`: logins, sessions, CSRF, roles,
//! escaping, headers, live stream, start-up refusals. The browser tests are in `browser.rs`.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use crate::common::web::{add_operator, set_password, WebClient};
use crate::common::{open_db, TestNode};

const PW: &str = "correct horse battery";

fn node_with_admin_password() -> TestNode {
    let node = TestNode::start_new("noc-a");
    set_password(&node, "admin", PW);
    node
}

fn note_count(node: &TestNode, number: i64) -> i64 {
    open_db(&node.dir)
        .query_row(
            "SELECT notes FROM tickets WHERE number = ?1",
            [number],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn web_login_sets_a_strict_session_cookie_and_logout_ends_it() {
    let node = node_with_admin_password();
    let mut c = WebClient::new(&node);
    let r = c.get("/");
    assert_eq!(r.status, 303, "not logged in: to the login page");
    assert_eq!(r.header("location"), Some("/login?next=/"));

    let r = c.login("admin", "wrong password!");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("wrong name or password"));
    let r = c.login("nobody", PW);
    assert_eq!(
        r.status, 401,
        "an unknown name answers like a wrong password"
    );

    let r = c.login("admin", PW);
    assert_eq!(r.status, 303, "{r:?}");
    let cookie = r
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("ttx_session="))
        .map(|(_, v)| v.clone())
        .expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: no Secure flag"
    );

    let home = c.get("/");
    assert_eq!(home.status, 200);
    assert!(home.body.contains("At a glance"));
    let csp = home.header("content-security-policy").expect("CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(home.header("x-frame-options"), Some("DENY"));
    assert!(
        !home.body.contains("http://") && !home.body.contains("https://"),
        "no external asset"
    );

    let csrf = home.hidden("csrf");
    let session = c.cookies.get("ttx_session").cloned().unwrap();
    assert_eq!(c.post("/logout", &[("csrf", &csrf)]).status, 303);
    c.cookies.insert("ttx_session".into(), session);
    assert_eq!(
        c.get("/").status,
        303,
        "the old cookie no longer opens a session"
    );
}

#[test]
fn web_logins_are_rate_limited_per_name() {
    let node = node_with_admin_password();
    let mut c = WebClient::new(&node);
    for _ in 0..5 {
        assert_eq!(c.login("admin", "wrong password!").status, 401);
    }
    let r = c.login("admin", PW);
    assert_eq!(
        r.status, 429,
        "the sixth try within a minute is refused, right or wrong"
    );
    assert!(r.body.contains("too many failed logins"), "{}", r.body);
}

#[test]
fn web_forms_need_the_session_csrf_token_and_a_same_site_origin() {
    let node = node_with_admin_password();
    node.cli(&["new", "fiber cut", "--queue", "core"]).ok();
    let mut c = WebClient::new(&node);
    assert_eq!(c.login("admin", PW).status, 303);
    let csrf = c.csrf();
    let r = c.post("/tickets/1/note", &[("text", "no token")]);
    assert_eq!(r.status, 403, "{r:?}");
    let r = c.post(
        "/tickets/1/note",
        &[("csrf", "00ff"), ("text", "a wrong token")],
    );
    assert_eq!(r.status, 403);
    let body = format!("csrf={csrf}&text=cross-site");
    let r = c.request(
        "POST",
        "/tickets/1/note",
        &body,
        &[("Sec-Fetch-Site", "cross-site")],
    );
    assert_eq!(
        r.status, 403,
        "a cross-site post is refused even with the token"
    );
    assert_eq!(note_count(&node, 1), 0, "nothing was written");
    let r = c.post(
        "/tickets/1/note",
        &[("csrf", &csrf), ("text", "with the token")],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/tickets/1"));
    assert_eq!(note_count(&node, 1), 1);
}

#[test]
fn web_a_viewer_sees_but_cannot_change_anything() {
    let node = node_with_admin_password();
    node.cli(&["new", "fiber cut"]).ok();
    let token = add_operator(&node, "vera", "viewer");
    set_password(&node, "vera", PW);
    let mut c = WebClient::new(&node);
    assert_eq!(c.login("vera", PW).status, 303);
    let page = c.get("/tickets/1");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("fiber cut"));
    assert!(
        !page.body.contains("note-form") && !page.body.contains("/take\""),
        "no forms for a viewer"
    );
    let csrf = page.hidden("csrf");
    for (path, fields) in [
        ("/tickets/1/note", vec![("text", "sneaky")]),
        ("/tickets/1/take", vec![]),
        ("/tickets", vec![("subject", "sneaky ticket")]),
    ] {
        let mut f = vec![("csrf", csrf.as_str())];
        f.extend(fields);
        let r = c.post(path, &f);
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(r.body.contains("viewer"), "{}", r.body);
    }
    // The same through a bearer token, which needs no CSRF token but the role all the same.
    let mut bearer = WebClient::new(&node);
    bearer.token = Some(token);
    assert_eq!(
        bearer.post("/tickets/1/note", &[("text", "sneaky")]).status,
        403
    );
    let mut admin = WebClient::new(&node);
    admin.token = Some(node.admin_token());
    assert_eq!(
        admin
            .post("/tickets/1/note", &[("text", "by script")])
            .status,
        303
    );
    assert_eq!(note_count(&node, 1), 1);
}

#[test]
fn web_ticket_text_is_escaped_and_notes_are_kept_verbatim() {
    let node = node_with_admin_password();
    let mut c = WebClient::new(&node);
    assert_eq!(c.login("admin", PW).status, 303);
    let csrf = c.csrf();
    let r = c.post(
        "/tickets",
        &[
            ("csrf", &csrf),
            ("subject", "<script>alert('s')</script>"),
            ("priority", "1"),
        ],
    );
    assert_eq!(r.status, 303, "{r:?}");
    let note = "<img src=x onerror=\"alert(1)\">\r\n  <script>alert(2)</script>\r\n\ttabbed & \"quoted\"  ";
    let r = c.post("/tickets/1/note", &[("csrf", &csrf), ("text", note)]);
    assert_eq!(r.status, 303, "{r:?}");
    let page = c.get("/tickets/1");
    assert!(
        !page.body.contains("<script>alert"),
        "raw script in the page"
    );
    assert!(!page.body.contains("<img src=x"), "raw img in the page");
    assert!(
        page.body
            .contains("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains("&lt;script&gt;alert('s')&lt;/script&gt;"));
    let stored: String = open_db(&node.dir)
        .query_row("SELECT text FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        stored,
        note.replace("\r\n", "\n"),
        "the text as pasted (browser CRLF back to LF)"
    );
    let glance = c.get("/");
    assert!(
        !glance.body.contains("<script>alert"),
        "escaped at a glance too"
    );
}

#[test]
fn web_a_resent_form_writes_once() {
    let node = node_with_admin_password();
    let mut c = WebClient::new(&node);
    assert_eq!(c.login("admin", PW).status, 303);
    let form = c.get("/tickets/new");
    let (csrf, idem) = (form.hidden("csrf"), form.hidden("idem"));
    let fields = [
        ("csrf", csrf.as_str()),
        ("idem", idem.as_str()),
        ("subject", "double click"),
    ];
    let a = c.post("/tickets", &fields);
    let b = c.post("/tickets", &fields);
    assert_eq!((a.status, b.status), (303, 303));
    assert_eq!(
        a.header("location"),
        b.header("location"),
        "the second post answers the first"
    );
    let tickets: i64 = open_db(&node.dir)
        .query_row("SELECT COUNT(*) FROM tickets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tickets, 1);
}

#[test]
fn web_bad_form_input_gets_a_clear_error_and_writes_nothing() {
    let node = node_with_admin_password();
    node.cli(&["new", "fiber cut"]).ok();
    let mut c = WebClient::new(&node);
    assert_eq!(c.login("admin", PW).status, 303);
    let csrf = c.csrf();
    for (path, fields, needle) in [
        (
            "/tickets",
            vec![("subject", "x"), ("priority", "9")],
            "priority must be 1 to 4",
        ),
        ("/tickets", vec![("subject", "")], "subject"),
        (
            "/tickets/1/timer",
            vec![("text", "call"), ("in", "soon")],
            "duration",
        ),
        (
            "/tickets/1/link",
            vec![("kind", "likes"), ("target", "1")],
            "unknown link kind",
        ),
        (
            "/tickets/1/set",
            vec![("assignments", "colour=red")],
            "colour",
        ),
        ("/tickets/99/note", vec![("text", "x")], "no ticket 99"),
        (
            "/tickets/abc/note",
            vec![("text", "x")],
            "invalid ticket number",
        ),
    ] {
        let mut f = vec![("csrf", csrf.as_str())];
        f.extend(fields);
        let r = c.post(path, &f);
        assert!(matches!(r.status, 400 | 404), "{path}: {r:?}");
        assert!(
            r.body.contains(needle),
            "{path}: {needle:?} not in {}",
            r.body
        );
    }
    let r = c.get("/tickets?status=sleeping");
    assert_eq!(r.status, 400);
    let r = c.get("/tickets?sort=colour");
    assert_eq!(r.status, 400);
    let big = "x".repeat(3 * 1024 * 1024);
    let r = c.post("/tickets/1/note", &[("csrf", &csrf), ("text", &big)]);
    assert_eq!(r.status, 413, "over web.max_body_bytes");
    let events: i64 = open_db(&node.dir)
        .query_row(
            // The idempotency answer of the keyed create is an event too (`answered`).
            "SELECT COUNT(*) FROM events WHERE kind NOT LIKE 'operator%' AND kind != 'answered'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(events, 1, "only the first ticket's creation");
}

#[test]
fn web_live_stream_announces_each_commit() {
    let node = node_with_admin_password();
    let mut c = WebClient::new(&node);
    assert_eq!(c.login("admin", PW).status, 303);
    let mut s = std::net::TcpStream::connect(c.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let cookie = format!("ttx_session={}", c.cookies["ttx_session"]);
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    node.cli(&["new", "fiber cut"]).ok();
    let mut seen = String::new();
    while !seen.contains("event: change") {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended");
        seen.push_str(&line);
    }
    let mut anonymous = WebClient::new(&node);
    assert_eq!(
        anonymous.get("/events").status,
        303,
        "no stream without a session"
    );
}

#[test]
fn web_console_off_loopback_needs_tls_or_a_proxy_setting() {
    let node = TestNode::init("noc-a");
    node.configure(|c| c.web.addr = "0.0.0.0:0".parse().unwrap());
    let out = crate::common::run(
        {
            let mut c = crate::common::ttx();
            c.args(["serve", node.dir.to_str().unwrap()]);
            c
        },
        None,
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("web.behind_proxy"), "{}", out.stderr);
}

#[test]
fn web_password_rules_and_who_may_set_them() {
    let node = TestNode::start_new("noc-a");
    node.cli_with(&["operator", "passwd", "admin"], None, Some(b"short\n"))
        .fails(2, "a password must be 10 to 1024 bytes");
    node.cli_with(
        &["operator", "passwd", "ghost"],
        None,
        Some(b"long enough password\n"),
    )
    .fails(3, "no operator");
    let bob = add_operator(&node, "bob", "operator");
    node.cli_with(
        &["operator", "passwd", "bob"],
        Some(&bob),
        Some(b"bob's own password\n"),
    )
    .ok();
    node.cli_with(
        &["operator", "passwd", "admin"],
        Some(&bob),
        Some(b"taking over admin\n"),
    )
    .fails(5, "not an admin");
    let hash: String = open_db(&node.dir)
        .query_row(
            "SELECT password_hash FROM operators WHERE name = 'bob'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let body: String = open_db(&node.dir)
        .query_row(
            "SELECT body FROM events WHERE kind = 'operator-password'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        !body.contains("bob's own password"),
        "the log holds the hash, never the password"
    );
    let mut c = WebClient::new(&node);
    assert_eq!(c.login("bob", "bob's own password").status, 303);
}

#[test]
fn web_console_serves_https_with_its_own_certificate_and_refuses_an_open_key() {
    use std::os::unix::fs::PermissionsExt;
    let mut node = TestNode::init("noc-a");
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert_pem, key_pem) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    std::fs::write(node.dir.join("web.crt"), &cert_pem).unwrap();
    let key = node.dir.join("web.key");
    std::fs::write(&key, &key_pem).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    node.configure(|c| {
        c.web.addr = "0.0.0.0:0".parse().unwrap();
        c.web.tls_cert = Some("web.crt".into());
        c.web.tls_key = Some("web.key".into());
    });
    let out = crate::common::run(
        {
            let mut c = crate::common::ttx();
            c.args(["serve", node.dir.to_str().unwrap()]);
            c
        },
        None,
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("web.key"), "{}", out.stderr);

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    node.start();
    let info = ttx::node::RuntimeInfo::read(&node.data()).unwrap();
    let url = info.web_url.unwrap();
    assert!(url.starts_with("https://0.0.0.0:"), "{url}");
    let port: u16 = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // A TLS 1.3 client that trusts only this certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut tls, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let login_cookie = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: ttx_login="))
        .unwrap_or_default();
    assert!(
        login_cookie.contains("Secure"),
        "cookies are Secure on TLS: {login_cookie}"
    );
    // Plain HTTP on the TLS port gets no page.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(plain, "GET /login HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut raw);
    assert!(!String::from_utf8_lossy(&raw).contains("200 OK"));
    node.stop();
}

#[test]
fn web_watched_queues_are_kept_per_operator_in_the_log() {
    let node = node_with_admin_password();
    node.cli(&[
        "new",
        "core router down",
        "--queue",
        "core",
        "--priority",
        "1",
    ])
    .ok();
    node.cli(&["new", "customer cannot browse", "--queue", "customer"])
        .ok();
    add_operator(&node, "vera", "viewer");
    set_password(&node, "vera", PW);
    let mut c = WebClient::new(&node);
    assert_eq!(c.login("vera", PW).status, 303);
    let csrf = c.get("/").hidden("csrf");
    let r = c.post("/watch", &[("csrf", &csrf), ("queues", "core, backbone")]);
    assert_eq!(r.status, 303, "a viewer may choose what it watches: {r:?}");
    let home = c.get("/");
    let watched = home
        .body
        .split("id=\"watched\"")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    assert!(
        watched.contains("core router down") && watched.contains("backbone"),
        "{watched}"
    );
    assert!(!watched.contains("customer cannot browse"));
    let too_many: Vec<String> = (0..21).map(|i| format!("q{i}")).collect();
    let r = c.post(
        "/watch",
        &[("csrf", &csrf), ("queues", &too_many.join(","))],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("at most 20"), "{}", r.body);
    let r = c.post("/watch", &[("queues", "core")]);
    assert_eq!(r.status, 403, "no CSRF token, no change");
    let (kind, body): (String, String) = open_db(&node.dir)
        .query_row(
            "SELECT kind, body FROM events WHERE kind = 'operator-watch' ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(kind, "operator-watch");
    assert!(body.contains("backbone"), "{body}");
    let mut admin = WebClient::new(&node);
    assert_eq!(admin.login("admin", PW).status, 303);
    let home = admin.get("/");
    assert!(
        !home.body.contains("backbone"),
        "each operator has its own list"
    );
}

#[test]
fn web_steal_timers_reopen_long_notes_and_list_filters() {
    let node = node_with_admin_password();
    let bob = add_operator(&node, "bob", "operator");
    node.cli(&["new", "core down", "--priority", "1", "--queue", "core"])
        .ok();
    node.cli(&["new", "minor thing", "--priority", "4"]).ok();
    node.cli_with(&["take", "1"], Some(&bob), None).ok();
    let mut c = WebClient::new(&node);
    assert_eq!(c.login("admin", PW).status, 303);
    let page = c.get("/tickets/1");
    assert!(
        page.body.contains("Steal (t)") && page.body.contains("name=\"steal\""),
        "the button says Steal"
    );
    let csrf = page.hidden("csrf");
    let r = c.post("/tickets/1/take", &[("csrf", &csrf)]);
    assert_eq!(
        r.status, 409,
        "a take of bob's ticket without steal is refused"
    );
    assert!(r.body.contains("owned by bob"), "{}", r.body);
    assert_eq!(
        c.post("/tickets/1/take", &[("csrf", &csrf), ("steal", "on")])
            .status,
        303
    );
    assert!(c.get("/tickets/1").body.contains("owner: bob -&gt; admin"));

    assert_eq!(
        c.post(
            "/tickets/1/timer",
            &[("csrf", &csrf), ("in", "2h"), ("text", "call carrier")]
        )
        .status,
        303
    );
    let r = c.post(
        "/tickets/1/timers/1/snooze",
        &[("csrf", &csrf), ("in", "soon")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        c.post(
            "/tickets/1/timers/1/snooze",
            &[("csrf", &csrf), ("in", "3h")]
        )
        .status,
        303
    );
    assert_eq!(
        c.post("/tickets/1/timers/1/cancel", &[("csrf", &csrf)])
            .status,
        303
    );
    assert!(c
        .get("/tickets/1")
        .body
        .contains("class=\"timer-cancelled\""));
    let r = c.post("/tickets/1/timers/1/cancel", &[("csrf", &csrf)]);
    assert_eq!(
        r.status, 409,
        "a cancelled timer cannot be cancelled again: {r:?}"
    );
    assert_eq!(
        c.post("/tickets/1/timers/9/ack", &[("csrf", &csrf)]).status,
        404
    );

    assert_eq!(
        c.post(
            "/tickets/1/resolve",
            &[("csrf", &csrf), ("resolution", "rebooted")]
        )
        .status,
        303
    );
    assert_eq!(c.post("/tickets/1/close", &[("csrf", &csrf)]).status, 303);
    let closed = c.get("/tickets/1");
    assert!(
        closed.body.contains("action=\"/tickets/1/reopen\""),
        "a closed ticket can be reopened"
    );
    assert_eq!(
        c.post(
            "/tickets/1/reopen",
            &[("csrf", &csrf), ("reason", "flapping again")]
        )
        .status,
        303
    );
    assert!(c
        .get("/tickets/1")
        .body
        .contains("reopened: flapping again"));

    let long = format!(
        "{}\nend of log",
        "syslog line with <b>markup</b>\n".repeat(3000)
    );
    assert_eq!(
        c.post("/tickets/2/note", &[("csrf", &csrf), ("text", &long)])
            .status,
        303
    );
    let page = c.get("/tickets/2");
    assert!(
        page.body.len() < 100_000,
        "the long note is not inlined: {} bytes",
        page.body.len()
    );
    let start = page
        .body
        .find("/tickets/2/notes/")
        .expect("a link to the full note");
    let link: String = page.body[start..].split('"').next().unwrap().to_string();
    let full = c.get(&link);
    assert_eq!(full.status, 200);
    assert_eq!(
        full.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(full.body, long);

    let p1 = c.get("/tickets?priority=1&status=open");
    assert!(
        p1.body.contains("core down") && !p1.body.contains("minor thing"),
        "{}",
        p1.body
    );
    assert_eq!(c.get("/tickets?priority=9").status, 400);
    assert_eq!(c.get("/tickets?priority=x").status, 400);
    let p = c.get("/tickets?sort=updated&dir=desc&priority=4");
    assert!(
        p.body.contains("minor thing") && p.body.contains("priority=4&amp;sort="),
        "sort links keep filters"
    );
}

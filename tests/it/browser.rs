//! The web console in a real browser: Debian's Chromium, headless, through ChromeDriver, against
//! a real `ttx serve`. Log in, create, note, take, resolve; a second session sees the change at
//! a glance without a reload; an XSS note stays text; a forged cross-site post is refused; a
//! viewer cannot write; a narrow window needs no sideways scrolling; the keyboard shortcuts work
//! and never fire while typing.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};

use crate::common::browser::{login, screenshot, wait_css, Driver};
use crate::common::web::{add_operator, set_password, web_addr};
use crate::common::{open_db, TestNode};

const PW: &str = "correct horse battery";
const XSS: &str = "<script>window.__xss = 1</script>\n<img src=x onerror=\"window.__xss = 2\">";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn node() -> (TestNode, String) {
    let node = TestNode::start_new("noc-a");
    set_password(&node, "admin", PW);
    let base = format!("http://{}", web_addr(&node));
    (node, base)
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn fill(c: &Client, id: &str, value: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .send_keys(value)
        .await
        .unwrap();
}

async fn click(c: &Client, id: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits until the page's body text contains `needle`, without reloading it.
async fn wait_text(c: &Client, css: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if e.text().await.unwrap_or_default().contains(needle) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared in {css}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn browser_operator_works_a_ticket_and_another_session_sees_it_live() {
    let (node, base) = node();
    let bob = add_operator(&node, "bob", "operator");
    set_password(&node, "bob", PW);
    // A floor with some work on it, for the screenshots: bob owns two, one alarm went off.
    for (subject, queue, priority) in [
        ("ams-ix port flapping on core2.ams", "core", "2"),
        ("customer 4711 reports packet loss to AWS", "customer", "3"),
        ("transit AS3356 BGP session down at lon", "transit", "1"),
        ("dslam-17 card reboot loop", "access", "2"),
        ("planned: optic swap pop-3 tonight", "core", "4"),
    ] {
        node.cli_with(
            &["new", subject, "--queue", queue, "--priority", priority],
            Some(&bob),
            None,
        )
        .ok();
    }
    for n in ["1", "3"] {
        node.cli_with(&["take", n], Some(&bob), None).ok();
    }
    node.cli_with(
        &["timer", "3", "--in", "1s", "call the carrier back"],
        Some(&bob),
        None,
    )
    .ok();
    runtime().block_on(async {
        let driver = Driver::start();
        let (a, b) = (driver.session().await, driver.session().await);
        login(&b, &base, "bob", PW).await;
        b.find(Locator::Id("watch-queues"))
            .await
            .unwrap()
            .send_keys("core, transit")
            .await
            .unwrap();
        b.find(Locator::Css("#watched button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_text(&b, "#watched", "planned: optic swap").await;
        wait_text(&b, "#alarms", "call the carrier back").await;
        // A mark on bob's page: it survives only if the page is never reloaded.
        b.execute("window.__mark = 'kept'; return 1", vec![])
            .await
            .unwrap();
        wait_css(&b, "body.live").await;

        login(&a, &base, "admin", PW).await;
        a.goto(&format!("{base}/tickets/new")).await.unwrap();
        fill(&a, "new-subject", "core-1 fiber cut toward pop-7").await;
        a.find(Locator::Id("new-priority"))
            .await
            .unwrap()
            .select_by_value("1")
            .await
            .unwrap();
        fill(&a, "new-queue", "core").await;
        fill(&a, "new-reporter_name", "Ana at pop-7").await;
        fill(&a, "new-nodes", "core-1, pop-7").await;
        screenshot(&a, "create").await;
        click(&a, "create-submit").await;
        wait_css(&a, "#ticket").await;
        assert_eq!(text(&a, "#subject").await, "core-1 fiber cut toward pop-7");

        // Bob's at-a-glance page shows the new unowned ticket without a reload.
        wait_text(&b, "#unowned", "core-1 fiber cut").await;
        let mark = b.execute("return window.__mark", vec![]).await.unwrap();
        assert_eq!(mark, serde_json::json!("kept"), "bob's page was reloaded");
        screenshot(&b, "glance").await;

        // A note holding markup is shown as text, and nothing in it runs.
        fill(&a, "note-text", XSS).await;
        click(&a, "note-submit").await;
        wait_css(&a, "li.note.internal").await;
        assert_eq!(text(&a, "li.note pre.note").await, XSS);
        assert_eq!(text(&a, "li.note .badge").await, "INTERNAL");
        let ran = a
            .execute("return window.__xss === undefined", vec![])
            .await
            .unwrap();
        assert_eq!(ran, serde_json::json!(true), "the note's script ran");
        assert!(a
            .find_all(Locator::Css("li.note img"))
            .await
            .unwrap()
            .is_empty());

        click(&a, "take-submit").await;
        wait_text(&a, "dl.header", "admin").await;
        wait_text(&a, "dl.header", "open").await;
        // Taken: bob's unowned list loses it, again without a reload.
        let deadline = Instant::now() + Duration::from_secs(20);
        while text(&b, "#unowned").await.contains("core-1 fiber cut") {
            assert!(Instant::now() < deadline, "bob still sees it unowned");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        wait_text(&a, "#history", "owner: (none) -> admin").await;

        // Bob opens the ticket; the resolve shows up in his chart without a reload.
        b.goto(&format!("{base}/tickets/6")).await.unwrap();
        wait_css(&b, "#chart").await;
        b.execute("window.__mark = 'kept'; return 1", vec![])
            .await
            .unwrap();
        wait_css(&b, "body.live").await;
        fill(&a, "resolution", "spliced the fiber at km 12").await;
        screenshot(&a, "ticket").await;
        click(&a, "resolve-submit").await;
        wait_text(&a, "dl.header", "resolved").await;
        wait_text(&a, "#history", "resolved: spliced the fiber at km 12").await;
        wait_text(&b, "#history", "resolved: spliced the fiber at km 12").await;
        let mark = b.execute("return window.__mark", vec![]).await.unwrap();
        assert_eq!(
            mark,
            serde_json::json!("kept"),
            "bob's ticket page was reloaded"
        );

        a.goto(&format!(
            "{base}/tickets?status=resolved&sort=number&dir=desc"
        ))
        .await
        .unwrap();
        wait_text(&a, "table.tickets", "core-1 fiber cut").await;
        screenshot(&a, "list").await;
        a.goto(&format!("{base}/admin/peers")).await.unwrap();
        wait_css(&a, "#peers").await;
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
    let status: String = open_db(&node.dir)
        .query_row("SELECT status FROM tickets WHERE number = 6", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "resolved");
}

/// Serves one page (the attacker's) on 127.0.0.1, to every request, until dropped.
fn attacker_site(page: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten().take(20) {
            let mut s = s;
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    port
}

#[test]
fn browser_a_forged_cross_site_post_is_refused() {
    let (node, base) = node();
    node.cli(&["new", "fiber cut"]).ok();
    let target = format!("{base}/tickets/1/note");
    let page = format!(
        "<html><body><form id=f method=post action=\"{target}\">\
         <input name=text value=\"forged by another site\"></form>\
         <script>document.getElementById('f').submit()</script></body></html>"
    );
    let port = attacker_site(page);
    runtime().block_on(async {
        let driver = Driver::start();
        let c = driver.session().await;
        login(&c, &base, "admin", PW).await;
        // Same site, another origin (the cookie goes along; the CSRF token is missing), and
        // another site (localhost: SameSite=Strict keeps the cookie home).
        for host in ["127.0.0.1", "localhost"] {
            c.goto(&format!("http://{host}:{port}/")).await.unwrap();
            wait_css(&c, "body").await;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let url = c.current_url().await.unwrap();
                if url.as_str().starts_with(&base) {
                    break;
                }
                assert!(Instant::now() < deadline, "the forged form never posted");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let body = text(&c, "body").await;
            assert!(
                body.contains("Error 403") || body.contains("Log in"),
                "{host}: the forged post was not refused: {body}"
            );
        }
        c.close().await.unwrap();
    });
    let notes: i64 = open_db(&node.dir)
        .query_row("SELECT COUNT(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(notes, 0, "the forged note was written");
}

#[test]
fn browser_a_viewer_cannot_write_and_a_narrow_window_fits() {
    let (node, base) = node();
    node.cli(&["new", "fiber cut", "--queue", "core"]).ok();
    add_operator(&node, "vera", "viewer");
    set_password(&node, "vera", PW);
    runtime().block_on(async {
        let driver = Driver::start();
        let c = driver.session().await;
        login(&c, &base, "vera", PW).await;
        c.goto(&format!("{base}/tickets/1")).await.unwrap();
        wait_css(&c, "#ticket").await;
        assert!(
            c.find_all(Locator::Css("form.act"))
                .await
                .unwrap()
                .is_empty(),
            "forms for a viewer"
        );
        assert!(c.find(Locator::Id("take-form")).await.is_err());
        // Even with the session's own CSRF token, a viewer's post is refused.
        let status = c
            .execute(
                "const csrf = document.querySelector('input[name=csrf]').value;
                 const r = await fetch('/tickets/1/note', { method: 'POST',
                     body: new URLSearchParams({ csrf, text: 'viewer note' }) });
                 return r.status;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(status, serde_json::json!(403));
        c.set_window_size(420, 800).await.unwrap();
        c.goto(&base).await.unwrap();
        wait_css(&c, "#glance").await;
        let fits = c
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            fits,
            serde_json::json!(true),
            "the narrow page scrolls sideways"
        );
        screenshot(&c, "glance-narrow").await;
        c.close().await.unwrap();
    });
    let notes: i64 = open_db(&node.dir)
        .query_row("SELECT COUNT(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(notes, 0);
}

/// Presses and releases one key on whatever has the focus (the page, if nothing does).
async fn press(c: &Client, key: char) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(keys).await.unwrap();
}

/// Waits until the browser is at `path`.
async fn wait_path(c: &Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = c.current_url().await.unwrap();
        if url.path() == path {
            return;
        }
        assert!(Instant::now() < deadline, "never went to {path}: at {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The id of the focused element (empty when it is the page).
async fn focused(c: &Client) -> String {
    let id = c
        .execute(
            "return document.activeElement ? document.activeElement.id : ''",
            vec![],
        )
        .await
        .unwrap();
    id.as_str().unwrap_or_default().to_string()
}

/// The value of the form field with id `id`.
async fn value_of(c: &Client, id: &str) -> String {
    let v = c
        .execute(
            "return document.getElementById(arguments[0]).value",
            vec![serde_json::json!(id)],
        )
        .await
        .unwrap();
    v.as_str().unwrap_or_default().to_string()
}

#[test]
fn browser_keyboard_shortcuts_go_focus_and_take_but_never_while_typing() {
    let (node, base) = node();
    node.cli(&["new", "fiber cut toward pop-7", "--queue", "core"])
        .ok();
    let owner = || -> Option<String> {
        open_db(&node.dir)
            .query_row("SELECT owner FROM tickets WHERE number = 1", [], |r| {
                r.get(0)
            })
            .unwrap()
    };
    runtime().block_on(async {
        let driver = Driver::start();
        let c = driver.session().await;
        login(&c, &base, "admin", PW).await;
        wait_css(&c, "#glance").await;
        // l, c, g: the ticket list, quick create, at a glance.
        for (key, path) in [('l', "/tickets"), ('c', "/tickets/new"), ('g', "/")] {
            press(&c, key).await;
            wait_path(&c, path).await;
        }
        wait_css(&c, "#glance").await;
        // /: the search box has the focus, and the slash is not typed into it.
        press(&c, '/').await;
        assert_eq!(focused(&c).await, "search");
        // Keys typed into a field are text, never shortcuts: 'g' stays here.
        press(&c, 'g').await;
        assert_eq!(value_of(&c, "search").await, "g");
        assert_eq!(c.current_url().await.unwrap().path(), "/");

        c.goto(&format!("{base}/tickets/1")).await.unwrap();
        wait_css(&c, "#take-form").await;
        // n: the note box has the focus; a 't' typed there takes nothing.
        press(&c, 'n').await;
        assert_eq!(focused(&c).await, "note-text");
        press(&c, 't').await;
        assert_eq!(value_of(&c, "note-text").await, "t");
        c.execute("document.activeElement.blur(); return 1", vec![])
            .await
            .unwrap();
        // ?: the key list, shown and hidden again.
        press(&c, '?').await;
        let help = wait_css(&c, "#help").await;
        assert!(help.text().await.unwrap().contains("t take"));
        press(&c, '?').await;
        assert!(c.find(Locator::Id("help")).await.is_err(), "help stays up");
        assert_eq!(owner(), None, "nothing took the ticket yet");
        // t: take the ticket (the Take form is submitted).
        press(&c, 't').await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while owner().is_none() {
            assert!(Instant::now() < deadline, "t did not take the ticket");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(owner().as_deref(), Some("admin"));
        c.close().await.unwrap();
    });
}

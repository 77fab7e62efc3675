//! The web console's views of the hot standby and the referral exchange, against real nodes:
//! the admin page shows the role, the mode and the standby's health on the primary and the
//! stream on the standby; the referrals page and the ticket page show referrals in and out.

use crate::common::web::WebClient;
use crate::common::TestNode;
use crate::federation::{add_peer, Ca};
use crate::repl::{wait_caught_up, wait_until, Pair};

fn admin_client(node: &TestNode) -> WebClient {
    let mut c = WebClient::new(node);
    c.token = Some(node.admin_token());
    c
}

fn page(node: &TestNode, path: &str) -> String {
    let r = admin_client(node).get(path);
    assert_eq!(r.status, 200, "{path}: {r:?}");
    r.body
}

#[test]
fn web_admin_page_shows_the_standby_health_on_both_nodes() {
    let p = Pair::new(|_| {});
    wait_caught_up(&p);
    wait_until("the primary to see its standby", || {
        page(&p.primary, "/admin/peers").contains("connected since")
    });
    let primary = page(&p.primary, "/admin/peers");
    assert!(primary.contains("primary · epoch 1"), "{primary}");
    assert!(primary.contains("Mode"), "{primary}");
    assert!(primary.contains("standby at"), "{primary}");
    let standby = page(&p.standby, "/admin/peers");
    assert!(standby.contains("Follows"), "{standby}");
    assert!(standby.contains(&p.primary_addr.to_string()), "{standby}");
    assert!(standby.contains("0 events behind"), "{standby}");
}

#[test]
fn web_referrals_show_in_and_out_and_on_the_ticket_page() {
    let ca = Ca::new("eu");
    let a = ca.node("eu", "noc-a");
    let b = ca.node("eu", "telco-b");
    add_peer(&a, &b, "telco-b", &[]);
    add_peer(&b, &a, "noc-a", &[]);
    let empty = page(&a, "/referrals");
    assert!(empty.contains("no referrals"), "{empty}");
    let ours = a.cli(&["--json", "new", "LON-PAR-3 down"]).json()["number"]
        .as_i64()
        .unwrap();
    a.cli(&["refer", &ours.to_string(), "--to", "telco-b"]).ok();
    wait_until("telco-b to open its ticket", || {
        page(&a, "/referrals").contains("telco-b#")
    });
    let out = page(&a, "/referrals");
    assert!(out.contains("to telco-b"), "{out}");
    assert!(out.contains(&format!("href=\"/tickets/{ours}\"")), "{out}");
    let inbound = page(&b, "/referrals");
    assert!(inbound.contains("from noc-a"), "{inbound}");
    assert!(inbound.contains(&format!("noc-a#{ours}")), "{inbound}");
    let chart = page(&a, &format!("/tickets/{ours}"));
    assert!(chart.contains("id=\"referrals\""), "{chart}");
    assert!(chart.contains("to telco-b"), "{chart}");
}

//! `ttx verify --against HOST:PORT` across real processes: two nodes of a site at one position
//! compare equal; a standby whose store was altered offline is named, down to the ticket.

use crate::repl::{wait_caught_up, Pair};

#[test]
fn verify_against_finds_equal_nodes_equal_and_names_the_ticket_altered_on_the_standby() {
    let mut p = Pair::new(|_| {});
    for i in 0..150 {
        p.primary.cli(&["new", &format!("ticket {i}")]).ok();
    }
    wait_caught_up(&p);
    let primary_addr = p.primary_addr.to_string();
    let standby_addr = p.standby.listen_addr().to_string();
    let v = p
        .standby
        .cli(&["--json", "verify", "--against", &primary_addr])
        .json();
    let c = &v["against"];
    assert_eq!(c["same"], true, "{v}");
    assert_eq!(c["node"], "ttx://fed/noc-a/primary", "{v}");
    assert_eq!(c["position"], v["position"], "{v}");
    // Either node can ask: the primary against its standby.
    let text = p
        .primary
        .cli(&["verify", "--against", &standby_addr])
        .ok()
        .to_string();
    assert!(text.contains("the same state at position"), "{text}");
    // `ttx verify` alone is unchanged.
    let plain = p.standby.cli(&["--json", "verify"]).json();
    assert!(plain.get("against").is_none(), "{plain}");

    // Alter ticket 123 on the stopped standby's store behind ttx's back.
    p.standby.stop();
    rusqlite::Connection::open(p.standby.dir.join("ttx.db"))
        .unwrap()
        .execute(
            "UPDATE tickets SET owner = 'mallory' WHERE number = 123",
            [],
        )
        .unwrap();
    p.standby.start();
    let out = p.standby.cli(&["verify", "--against", &primary_addr]);
    out.fails(1, "first difference tickets: ticket #123 differs");
    assert!(out.stdout.contains("DIFFERENT at position"), "{out:?}");
    let out = p
        .primary
        .cli(&["--json", "verify", "--against", &standby_addr]);
    assert_eq!(out.code, 1, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let d = &v["against"]["first_difference"];
    assert_eq!(
        (d["table"].as_str(), d["row"].as_str()),
        (Some("tickets"), Some("ticket #123")),
        "{v}"
    );
    p.standby.stop();
    p.primary.stop();
}

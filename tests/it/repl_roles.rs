//! Role changes of a site's two nodes with real `ttx` processes: a deposed primary whose log
//! diverged is refused when it tries to follow the new primary.

use ttx::replication::{Mode, WhenGone};

use crate::repl::{assert_old_primary_fenced, wait_caught_up, wait_until, Pair};

fn async_mode(c: &mut ttx::config::Config) {
    c.replication.mode = Some(Mode::Async);
    c.replication.when_standby_gone = WhenGone::Degrade;
}

/// Lists the subjects of a node's tickets (JSON text, for `contains`).
fn listed(n: &crate::common::TestNode) -> String {
    n.cli(&["--json", "list"]).json().to_string()
}

#[test]
fn a_deposed_async_primary_with_a_tail_is_refused_as_diverged_when_it_follows_the_new_primary() {
    let mut p = Pair::new(async_mode);
    wait_caught_up(&p);
    // The standby goes away; the async primary acknowledges writes it alone has.
    p.standby.stop();
    for i in 0..3 {
        p.primary.cli(&["new", &format!("tail {i}")]).ok();
    }
    let old_head = p.primary.cli(&["--json", "status"]).json()["events"]
        .as_u64()
        .unwrap();
    p.primary.kill();
    p.standby.start();
    let promoted = p.standby.cli(&["--json", "promote"]).json();
    assert_eq!(promoted["epoch"], 2, "{promoted}");
    for i in 0..5 {
        p.standby
            .cli(&["new", &format!("on the new primary {i}")])
            .ok();
    }
    // The old primary comes back told to follow the new one: its log is not a prefix.
    let new_primary = p.standby_addr.to_string();
    p.primary
        .configure(|c| c.replication.primary = Some(new_primary.clone()));
    p.primary.start();
    wait_until("the old primary to see that it diverged", || {
        let s = p.primary.cli(&["--json", "status"]).json();
        s["role"] == "fenced:standby"
            && s["replication"]["following"]["diverged_at"].as_u64() == Some(old_head)
    });
    let s = p.primary.cli(&["--json", "status"]).json();
    let error = s["replication"]["following"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains(&format!(
            "holds events the primary never had at or below position {old_head}"
        )) && error.contains("ttx standby rejoin"),
        "{s}"
    );
    let text = p.primary.cli(&["status"]).ok().to_string();
    assert!(text.contains("DIVERGED"), "{text}");
    // Nothing of the tail reached the new primary, and the old one still refuses writes.
    assert!(!listed(&p.standby).contains("tail 0"));
    assert!(listed(&p.primary).contains("tail 2"));
    p.primary
        .cli(&["new", "on the deposed primary"])
        .fails(4, "fenced");
    // The new primary stopped knocking once the old one answered.
    assert_old_primary_fenced(&p.standby);
    p.primary.stop();
    p.standby.stop();
}

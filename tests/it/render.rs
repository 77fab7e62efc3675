//! The text renderers, line by line, with a fixed clock and zone: what an operator reads must
//! stay aligned under its headers (the peer list once printed a header no row filled).

use time::UtcOffset;
use ttx::cli::render;
use ttx::cli::times::{Times, Zone};
use ttx::federation::PeerStatus;
use ttx::model::lifecycle::Status;
use ttx::model::peer::PeerState;
use ttx::store::query::{TicketRow, Timer};
use ttx::store::writer::TicketAck;

/// 2026-12-01T10:00:00Z, shown at +01:00.
fn times() -> Times {
    Times {
        zone: Zone::Fixed(UtcOffset::from_hms(1, 0, 0).unwrap()),
        now: 1_796_119_200_000,
    }
}

const MIN: i64 = 60_000;

fn row(number: i64, subject: &str) -> TicketRow {
    let now = times().now;
    TicketRow {
        number,
        id: uuid::Uuid::now_v7(),
        status: Status::Open,
        priority: 1,
        severity: 2,
        queue: "backbone".into(),
        owner: Some("alice".into()),
        ticket_type: "trouble".into(),
        subject: subject.into(),
        updated_at: now - 5 * MIN,
        created_at: now - 120 * MIN,
        next_action: Some("call telco".into()),
        next_due: Some(now + 40 * MIN),
    }
}

/// The start column of `word` in `line`, in characters.
fn column(line: &str, word: &str) -> usize {
    let byte = line
        .find(word)
        .unwrap_or_else(|| panic!("{word:?} not in {line:?}"));
    line[..byte].chars().count()
}

#[test]
fn the_ticket_list_keeps_every_value_under_its_header() {
    let rows = [
        row(7, "core1.ams BGP flap"),
        TicketRow {
            owner: None,
            next_due: None,
            queue: "a-queue-name-far-too-long".into(),
            ..row(12, "customer complaint")
        },
    ];
    let text = render::rows(&rows, &times(), 100);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let head = lines[0];
    assert_eq!(column(lines[1], "2h"), column(head, "AGE") + 1);
    assert_eq!(column(lines[1], "5m"), column(head, "UPDATED") + 5);
    assert_eq!(
        column(lines[1], "40m"),
        column(head, "NEXT DUE") + 5,
        "{text}"
    );
    assert_eq!(column(lines[1], "core1.ams"), column(head, "SUBJECT"));
    assert!(
        lines[1].ends_with("core1.ams BGP flap — next: call telco"),
        "{text}"
    );
    // Long names are cut, and the row stays aligned.
    assert!(lines[2].contains("a-queue-nam… -"), "{text}");
    assert_eq!(column(lines[2], "customer"), column(head, "SUBJECT"));
    // A narrow terminal cuts the subject, not the columns.
    let narrow = render::rows(&rows, &times(), 90);
    assert!(narrow.lines().all(|l| l.chars().count() <= 90), "{narrow}");
    assert_eq!(render::rows(&[], &times(), 80), "no tickets\n");
}

#[test]
fn the_peer_list_fills_every_column_it_names() {
    let now = times().now;
    let peer = |site: &str, state: PeerState, seen: Option<i64>| PeerStatus {
        site: site.into(),
        state,
        addrs: vec!["192.0.2.7:7701".into()],
        pins: vec![],
        exchange: true,
        standby: false,
        witness: false,
        connected: seen.is_some(),
        identity: Some(format!("ttx://default/{site}/primary")),
        version: seen.map(|_| "ttx-exchange/1".into()),
        last_seen: seen,
        rtt_ms: seen.map(|_| 1.25),
        cert_days_left: Some(300),
        warning: None,
        seen_spki: Some("ab12".into()),
        seen_node: None,
        seen_issuer: None,
        seen_addr: None,
        first_seen: None,
    };
    let text = render::peers(
        &[
            peer("telco-c", PeerState::Accepted, Some(now - 3 * MIN)),
            peer("stranger", PeerState::Pending, None),
        ],
        &times(),
    );
    let lines: Vec<&str> = text.lines().collect();
    let head = lines[0];
    let row = lines[1];
    assert_eq!(
        column(row, "3m ago") + "3m ago".len(),
        column(head, "SEEN") + "SEEN".len()
    );
    assert_eq!(
        column(row, "300") + 3,
        column(head, "CERT days") + "CERT days".len()
    );
    assert_eq!(column(row, "192.0.2.7"), column(head, "ADDRESSES"));
    assert_eq!(column(lines[2], "192.0.2.7"), column(head, "ADDRESSES"));
    assert!(
        lines[3]
            .trim_start()
            .starts_with("identity ttx://default/stranger/primary  key ab12"),
        "{text}"
    );
}

#[test]
fn write_answers_say_what_changed() {
    let ack = |events: Vec<i64>, changes: Vec<&str>| TicketAck {
        number: 3,
        id: uuid::Uuid::now_v7(),
        status: Status::Pending,
        events,
        changes: changes.into_iter().map(String::from).collect(),
        replayed: false,
    };
    assert_eq!(
        render::ack(&ack(vec![9], vec!["status new -> pending"]), "updated"),
        "TT 3: status new -> pending\n"
    );
    assert_eq!(
        render::ack(
            &ack(
                vec![9, 10],
                vec!["owner (none) -> bob", "status new -> open"]
            ),
            "x"
        ),
        "TT 3: owner (none) -> bob; status new -> open\n"
    );
    assert_eq!(
        render::ack(&ack(vec![], vec![]), "x"),
        "TT 3: nothing changed (pending)\n"
    );
}

#[test]
fn timers_and_alerts_read_in_the_operators_zone() {
    let now = times().now;
    let timer = |ordinal: u32, fired: Option<i64>, acked: Option<i64>| Timer {
        id: uuid::Uuid::now_v7(),
        number: 4,
        subject: "waiting on telco".into(),
        due_at: now - 10 * MIN,
        text: "call telco".into(),
        set_by: "alice".into(),
        fired_at: fired,
        ordinal,
        cancelled_at: None,
        acked_at: acked,
        acked_by: acked.map(|_| "bob".into()),
    };
    let alerts = render::alerts(&[timer(2, Some(now - 10 * MIN), None)], &times());
    assert_eq!(
        alerts,
        "2026-12-01 10:50 +01:00 (10m ago)  TT 4 timer 2  call telco  (set by alice, due \
         2026-12-01 10:50 +01:00 (10m ago); waiting on telco)\n"
    );
    let list = render::timers(
        4,
        &[
            timer(1, Some(now - 10 * MIN), Some(now - 5 * MIN)),
            Timer {
                due_at: now + 30 * MIN,
                ..timer(2, None, None)
            },
        ],
        &times(),
    );
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines[0], "  #  STATE     TEXT");
    assert!(
        lines[1].starts_with("  1  acked     call telco (went off"),
        "{list}"
    );
    assert!(
        lines[1].ends_with("acknowledged 2026-12-01 10:55 +01:00 (5m ago) by bob, set by alice)"),
        "{list}"
    );
    assert!(
        lines[2].contains("pending   call telco (due 2026-12-01 11:30 +01:00 (in 30m)"),
        "{list}"
    );
    assert_eq!(render::timers(4, &[], &times()), "ticket 4 has no timers\n");
}

#[test]
fn colour_marks_urgent_tickets_and_alarms_only() {
    let chart = "TT 4  [trouble] core1 down\nstatus open\n  10:00  system  ALARM: call telco\n";
    let p1 = render::colour_chart(chart, 1);
    let lines: Vec<&str> = p1.lines().collect();
    assert_eq!(lines[0], "\x1b[1;31mTT 4  [trouble] core1 down\x1b[0m");
    assert_eq!(lines[1], "status open");
    assert_eq!(
        lines[2],
        "\x1b[31m  10:00  system  ALARM: call telco\x1b[0m"
    );
    let p3 = render::colour_chart(chart, 3);
    assert_eq!(p3.lines().next(), Some("TT 4  [trouble] core1 down"));
}

/// A resolved chart with every section filled: header fields, a next action and a timer,
/// links both ways, two history entries, a resolution and durations.
fn resolved_chart() -> ttx::store::query::Chart {
    let now = times().now;
    let ticket = uuid::Uuid::now_v7();
    let event = |seq: u64, at: i64, kind: serde_json::Value| {
        serde_json::json!({
            "seq": seq,
            "event": {
                "id": uuid::Uuid::now_v7(), "origin_site": "noc-a", "origin_node": "primary",
                "epoch": 1, "seq": seq, "at": at, "actor": "alice", "ticket": ticket,
                "kind": kind,
            },
        })
    };
    serde_json::from_value(serde_json::json!({
        "ticket": {
            "id": ticket, "number": 4, "site": "noc-a", "type": "trouble",
            "subject": "core1.ams BGP flap", "status": "resolved", "severity": 2, "priority": 1,
            "queue": "backbone", "owner": "alice", "opened_by": "alice",
            "problem_start": now - 150 * MIN, "created_at": now - 120 * MIN,
            "updated_at": now - 5 * MIN, "status_since": now - 5 * MIN, "customer_ms": 0,
            "watchers": {"requestors": ["ops@telco-b.example"], "cc": [], "admin_cc": []},
            "reporter": {"name": "Bob", "org": "telco-b", "phone": null, "email": null},
            "nodes": ["core1.ams"], "network": "AS64500", "circuit": "AMS-LON-7",
            "next_action": "call telco", "custom": {"ticket_ref": "TB-991"},
            "links": [{"kind": "depends-on", "target": uuid::Uuid::now_v7(), "target_number": 3}],
            "resolution": {
                "resolved_at": now - 5 * MIN, "resolution": "spliced the fiber",
                "component": "fiber", "escalated_to": null, "checked_by": null,
                "closed_at": null, "total_ms": 145 * MIN, "noc_ms": 125 * MIN,
                "customer_ms": 20 * MIN,
            },
            "notes": 1,
        },
        "history": [
            event(1, now - 120 * MIN, serde_json::json!({"TicketCreated": {"number": 4,
                "ticket": {"type": "trouble", "subject": "core1.ams BGP flap", "severity": 2,
                           "priority": 1, "queue": "backbone", "owner": null,
                           "problem_start": null, "reporter": {}, "nodes": [],
                           "network": null, "circuit": null}}})),
            event(2, now - 60 * MIN, serde_json::json!({"NoteAdded": {
                "note_id": uuid::Uuid::now_v7(), "text": "loss after ae0", "shared": false,
                "happened_at": null}})),
        ],
        "timers": [{
            "id": uuid::Uuid::now_v7(), "number": 4, "subject": "core1.ams BGP flap",
            "due_at": now + 30 * MIN, "text": "escalate", "set_by": "alice", "fired_at": null,
            "ordinal": 1,
        }],
        "incoming": [{"from_number": 2, "kind": "member-of"}],
    }))
    .expect("a chart")
}

#[test]
fn show_lays_the_chart_out_in_sections() {
    let layout = render::ChartLayout {
        width: 100,
        full: false,
    };
    let text = render::chart(&resolved_chart(), "4", &times(), &layout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "TT 4  [trouble] core1.ams BGP flap", "{text}");
    // Every section once, under its own title, in the order RFC 1297 gives a ticket.
    let titles = [
        "Header",
        "Next action and alarm clock",
        "Links",
        "History",
        "Resolution",
        "Durations",
    ];
    let at: Vec<usize> = titles
        .iter()
        .map(|t| {
            lines
                .iter()
                .position(|l| l == t)
                .unwrap_or_else(|| panic!("no section {t}:\n{text}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    let section = |title: &str| -> Vec<&str> {
        let i = lines.iter().position(|l| *l == title).unwrap() + 1;
        lines[i..]
            .iter()
            .take_while(|l| !l.is_empty())
            .copied()
            .collect()
    };
    let header = section("Header");
    assert!(
        header.contains(&"  problem start 2026-12-01 08:30 +01:00 (2h ago)"),
        "{text}"
    );
    assert!(header.contains(&"  circuit       AMS-LON-7"), "{text}");
    assert!(header.contains(&"  cf.ticket_ref TB-991"), "{text}");
    assert_eq!(
        section("Next action and alarm clock"),
        [
            "  next action   call telco",
            "  timer 1       escalate (due 2026-12-01 11:30 +01:00 (in 30m), set by alice)",
        ],
        "{text}"
    );
    assert_eq!(
        section("Links"),
        ["  depends-on    TT 3", "  <- member-of  TT 2"],
        "{text}"
    );
    let history = section("History");
    assert_eq!(history.len(), 3, "{text}");
    assert!(history[1].ends_with("alice  update (internal):"), "{text}");
    assert_eq!(history[2], "      loss after ae0", "{text}");
    assert_eq!(
        section("Resolution"),
        [
            "  resolved      2026-12-01 10:55 +01:00 (5m ago)",
            "  resolution    spliced the fiber",
            "  component     fiber",
        ],
        "{text}"
    );
    assert_eq!(
        section("Durations"),
        [
            "  total         2h 25m (from problem start)",
            "  NOC time      2h 5m",
            "  customer time 20m 0s",
        ],
        "{text}"
    );
}

#[test]
fn show_leaves_out_the_sections_a_new_ticket_does_not_have() {
    let mut chart = resolved_chart();
    chart.ticket.links.clear();
    chart.incoming.clear();
    chart.timers.clear();
    chart.ticket.next_action = None;
    chart.ticket.resolution = Default::default();
    let layout = render::ChartLayout {
        width: 100,
        full: false,
    };
    let text = render::chart(&chart, "4", &times(), &layout);
    for gone in [
        "Next action and alarm clock",
        "Links",
        "Resolution",
        "Durations",
    ] {
        assert!(!text.lines().any(|l| l == gone), "{gone}:\n{text}");
    }
    assert!(text.lines().any(|l| l == "Header"), "{text}");
    assert!(text.lines().any(|l| l == "History"), "{text}");
}

#[test]
fn the_pending_list_says_who_knocked_from_where_and_when() {
    let now = times().now;
    let stranger = PeerStatus {
        site: "carrier-c".into(),
        state: PeerState::Pending,
        addrs: vec![],
        pins: vec![],
        exchange: false,
        witness: false,
        standby: false,
        connected: false,
        identity: Some("ttx://eu/carrier-c/primary".into()),
        version: None,
        last_seen: Some(now - MIN),
        rtt_ms: None,
        cert_days_left: None,
        warning: None,
        seen_spki: Some("ab12".into()),
        seen_node: Some("primary".into()),
        seen_issuer: Some("CN=ttx federation CA eu".into()),
        seen_addr: Some("192.0.2.9:4433".into()),
        first_seen: Some(now - 90 * MIN),
    };
    let text = render::pending(&[stranger], &times());
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "carrier-c",
            "  identity   ttx://eu/carrier-c/primary",
            "  issuer     CN=ttx federation CA eu",
            "  address    192.0.2.9:4433",
            "  first seen 2026-12-01 09:30 +01:00 (1h ago)",
            "  last seen  2026-12-01 10:59 +01:00 (1m ago)",
            "  key        ab12",
            "  accept with `ttx peer accept carrier-c --addr HOST:PORT`, or `ttx peer deny carrier-c`",
        ],
        "{text}"
    );
    assert_eq!(render::pending(&[], &times()), "no pending peers\n");
}

#[test]
fn replication_status_names_the_standby_its_lag_and_a_degraded_state() {
    use ttx::replication::{FollowStatus, Lag, Mode, PrimaryStatus, ReplicationStatus, WhenGone};
    let now = times().now;
    let mut primary = PrimaryStatus {
        mode: Mode::Sync,
        when_standby_gone: WhenGone::Degrade,
        standby: Some(ttx::replication::primary::StandbyView {
            node: "standby".into(),
            addr: "127.0.0.1:7801".into(),
            since: now - 5 * MIN,
        }),
        acked_durable: 41,
        acked_applied: 40,
        last_ack_at: Some(now),
        lag: Lag { events: 2, ms: 3 },
        degraded_since: None,
        waiting: 1,
    };
    let r = ReplicationStatus {
        primary: primary.clone(),
        following: None,
        old_primary_fenced: false,
        lease: None,
    };
    assert_eq!(
        render::replication(&r, "primary", &times()),
        "replication mode sync (when the standby is gone: degrade)  standby standby at 127.0.0.1:7801 connected since 2026-12-01 10:55 +01:00\n\
         \x20 acked durable 41 applied 40  lag 2 events 3 ms  waiting answers 1\n"
    );
    // With a witness: who holds the lease, for how long, and the witness's last refusal.
    let with_lease = ReplicationStatus {
        lease: Some(ttx::replication::witness::LeaseStatus {
            witness: "telco-w".into(),
            witness_reachable: false,
            holder: Some("primary".into()),
            epoch: 3,
            expires_in_ms: Some(0),
            may_write: false,
            last_refusal: Some("witness telco-w not reachable: timed out".into()),
        }),
        ..r.clone()
    };
    let text = render::replication(&with_lease, "primary", &times());
    assert!(
        text.ends_with(
            "witness telco-w: NOT reachable  lease holder primary (epoch 3)  expires in 0 ms\n  \
             witness: witness telco-w not reachable: timed out\n"
        ),
        "{text}"
    );
    primary.standby = None;
    primary.degraded_since = Some(now - 2 * MIN);
    let text = render::replication(
        &ReplicationStatus {
            primary: primary.clone(),
            following: None,
            old_primary_fenced: false,
            lease: None,
        },
        "primary",
        &times(),
    );
    assert!(text.contains("standby NOT connected"), "{text}");
    assert!(
        text.contains("DEGRADED to async since 2026-12-01 10:58 +01:00 (2m ago)"),
        "{text}"
    );
    let following = FollowStatus {
        primary_addr: "10.0.0.1:7800".into(),
        primary_node: Some("primary".into()),
        connected: false,
        applied: 40,
        durable: 41,
        primary_head: 42,
        lag_events: 2,
        lag_ms: Some(1_250),
        last_batch_committed_at: None,
        last_heard_at: Some(now - 3 * MIN),
        last_error: Some("the primary closed the stream".into()),
        old_primary_fenced: false,
        diverged_at: None,
    };
    let text = render::replication(
        &ReplicationStatus {
            primary: primary.clone(),
            following: Some(following.clone()),
            old_primary_fenced: false,
            lease: None,
        },
        "standby:primary",
        &times(),
    );
    assert!(
        text.starts_with("following primary primary at 10.0.0.1:7800: NOT connected  applied 40  spooled 41  primary head 42  lag 2 events 1250 ms\n"),
        "{text}"
    );
    assert!(
        text.contains("last error: the primary closed the stream"),
        "{text}"
    );
    // A primary's follower (it only knocks at its old primary) is not shown as following;
    // a primary handing over says so.
    let text = render::replication(
        &ReplicationStatus {
            primary,
            following: Some(following),
            old_primary_fenced: false,
            lease: None,
        },
        "handing-over:standby",
        &times(),
    );
    assert!(
        text.starts_with("SWITCHOVER in progress: handing the primary role to standby; local writes pause\nreplication mode sync"),
        "{text}"
    );
}

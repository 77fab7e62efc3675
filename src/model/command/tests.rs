use super::*;

fn limits() -> LimitsSection {
    LimitsSection::default()
}

fn ctx(l: &LimitsSection) -> Context<'_> {
    Context {
        actor: "alice",
        now: 1_000_000,
        limits: l,
    }
}

fn ticket() -> Ticket {
    let l = limits();
    let (new, _) = decide_create(
        &CreateTicket {
            subject: "core1 down".into(),
            ..Default::default()
        },
        &ctx(&l),
    )
    .unwrap();
    Ticket::created(Uuid::now_v7(), "noc-a", 7, &new, "alice", 0)
}

fn run(t: &mut Ticket, cmd: Command, at: Millis) -> Decision {
    let l = limits();
    let c = Context {
        actor: "alice",
        now: at,
        limits: &l,
    };
    let events = decide(t, &cmd, &c)?;
    for e in &events {
        t.apply(e, at);
    }
    Ok(events)
}

fn set(t: &mut Ticket, a: &[&str]) -> Decision {
    run(
        t,
        Command::Set {
            assignments: a.iter().map(|s| s.to_string()).collect(),
        },
        10,
    )
}

#[test]
fn create_validates_header() {
    let l = limits();
    let bad = |req: CreateTicket| decide_create(&req, &ctx(&l)).unwrap_err().to_string();
    assert_eq!(bad(CreateTicket::default()), "subject must not be empty");
    assert_eq!(
        bad(CreateTicket {
            subject: "x".into(),
            severity: Some(5),
            ..Default::default()
        }),
        "severity must be 1 to 4, got 5"
    );
    assert!(bad(CreateTicket {
        subject: "x".into(),
        ticket_type: Some("incident".into()),
        ..Default::default()
    })
    .starts_with("unknown ticket type"));
    assert!(bad(CreateTicket {
        subject: "two\nlines".into(),
        ..Default::default()
    })
    .contains("one line"));
}

#[test]
fn set_changes_fields_and_refuses_unknown_ones() {
    let mut t = ticket();
    let ev = set(
        &mut t,
        &["priority=1", "cc=bob,carol", "cc+=dave", "cf.vendor=acme"],
    )
    .unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(t.priority, 1);
    assert_eq!(t.watchers.cc, vec!["bob", "carol", "dave"]);
    assert_eq!(t.custom.get("vendor").map(String::as_str), Some("acme"));
    set(&mut t, &["cc-=bob"]).unwrap();
    assert_eq!(t.watchers.cc, vec!["carol", "dave"]);
    let e = set(&mut t, &["colour=red"]).unwrap_err().to_string();
    assert!(e.starts_with("unknown field \"colour\""), "{e}");
    assert_eq!(
        set(&mut t, &["severity=0"]).unwrap_err().to_string(),
        "severity must be 1 to 4, got 0"
    );
    assert!(set(&mut t, &["priority+=1"]).is_err());
    // Setting the same value again records nothing.
    assert!(set(&mut t, &["priority=1"]).unwrap().is_empty());
}

#[test]
fn lifecycle_and_customer_time() {
    let mut t = ticket();
    run(&mut t, Command::Take, 100).unwrap();
    assert_eq!(
        (t.status, t.owner.as_deref()),
        (Status::Open, Some("alice"))
    );
    run(
        &mut t,
        Command::Set {
            assignments: vec!["status=pending".into()],
        },
        1_000,
    )
    .unwrap();
    run(
        &mut t,
        Command::Set {
            assignments: vec!["status=open".into()],
        },
        4_000,
    )
    .unwrap();
    let e = run(&mut t, Command::Close { checked_by: None }, 5_000).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ticket 7: cannot go from open to closed: from open a ticket may go to pending, referred, resolved, cancelled"
    );
    run(
        &mut t,
        Command::Resolve {
            resolution: "replaced optic".into(),
            component: Some("xe-0/0/1".into()),
            escalated_to: None,
        },
        10_000,
    )
    .unwrap();
    assert_eq!(t.resolution.total_ms, Some(10_000));
    assert_eq!(t.resolution.customer_ms, Some(3_000));
    assert_eq!(t.resolution.noc_ms, Some(7_000));
    let e = set(&mut t, &["status=open"]).unwrap_err().to_string();
    assert!(e.contains("ttx reopen"), "{e}");
    run(
        &mut t,
        Command::Reopen {
            reason: "flapping again".into(),
        },
        11_000,
    )
    .unwrap();
    assert_eq!(t.status, Status::Open);
    assert_eq!(t.resolution.resolved_at, None);
}

#[test]
fn notes_respect_the_limit() {
    let mut t = ticket();
    let mut l = limits();
    l.max_note_bytes = 10;
    let c = Context {
        actor: "a",
        now: 0,
        limits: &l,
    };
    let note = |text: &str| Command::Note {
        text: text.into(),
        shared: false,
        happened_at: None,
    };
    assert!(decide(&t, &note("0123456789"), &c).is_ok());
    assert_eq!(
        decide(&t, &note("0123456789a"), &c)
            .unwrap_err()
            .to_string(),
        "note is 11 bytes, at most 10 allowed (limits.max_note_bytes)"
    );
    assert!(decide(&t, &note("   "), &c).is_err());
    assert!(run(&mut t, note("ok"), 0).is_ok());
    assert_eq!(t.notes, 1);
}

#[test]
fn links_follow_the_hierarchy() {
    let t = ticket();
    let mut meta = ticket();
    meta.ticket_type = TicketType::Meta;
    meta.id = Uuid::now_v7();
    assert!(decide_link(&t, LinkKind::MemberOf, &meta).is_ok());
    assert!(decide_link(&meta, LinkKind::MemberOf, &t).is_err());
    assert!(decide_link(&t, LinkKind::RefersTo, &t).is_err());
}

#[test]
fn partner_tickets_are_named_with_their_site() {
    let mut t = ticket();
    assert_eq!(t.reference("noc-a"), "7");
    t.site = "telco-b".into();
    assert_eq!(t.reference("noc-a"), "telco-b#7");
}

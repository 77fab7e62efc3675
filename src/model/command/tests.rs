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
    run(&mut t, Command::Take { steal: false }, 100).unwrap();
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

#[test]
fn taking_another_operators_ticket_needs_steal() {
    let mut t = ticket();
    set(&mut t, &["owner=bob"]).unwrap();
    let e = run(&mut t, Command::Take { steal: false }, 100).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ticket 7 is owned by bob: take it anyway with `ttx take 7 --steal`"
    );
    run(&mut t, Command::Take { steal: true }, 100).unwrap();
    assert_eq!(t.owner.as_deref(), Some("alice"));
    // Taking one's own ticket again changes nothing and needs no steal.
    assert!(run(&mut t, Command::Take { steal: false }, 200)
        .unwrap()
        .is_empty());
}

#[test]
fn a_closed_ticket_can_be_reopened() {
    let mut t = ticket();
    let resolve = Command::Resolve {
        resolution: "fixed".into(),
        component: None,
        escalated_to: None,
    };
    run(&mut t, resolve, 100).unwrap();
    run(&mut t, Command::Close { checked_by: None }, 200).unwrap();
    let e = set(&mut t, &["status=open"]).unwrap_err().to_string();
    assert!(e.contains("ttx reopen"), "{e}");
    run(
        &mut t,
        Command::Reopen {
            reason: "flapping again".into(),
        },
        300,
    )
    .unwrap();
    assert_eq!(t.status, Status::Open);
    assert_eq!(t.resolution.closed_at, None);
    let mut c = ticket();
    set(&mut c, &["status=cancelled"]).unwrap();
    let e = run(&mut c, Command::Reopen { reason: "x".into() }, 10).unwrap_err();
    assert!(e.to_string().contains("only a resolved or closed"), "{e}");
}

#[test]
fn durations_count_from_the_problem_start_and_a_future_start_is_refused() {
    let l = limits();
    let c = Context {
        now: 1_796_119_200_000,
        ..ctx(&l)
    };
    let req = |start: &str| CreateTicket {
        subject: "x".into(),
        problem_start: Some(start.into()),
        ..Default::default()
    };
    let e = decide_create(&req("+1h"), &c).unwrap_err().to_string();
    assert!(e.contains("is in the future"), "{e}");
    let future = clock::format(c.now + 3_600_000);
    let e = decide_create(&req(&future), &c).unwrap_err().to_string();
    assert!(e.contains("is in the future"), "{e}");
    let (new, _) = decide_create(&req("-30m"), &c).unwrap();
    let mut t = Ticket::created(Uuid::now_v7(), "noc-a", 8, &new, "alice", c.now);
    let e = set(&mut t, &[&format!("problem-start={future}")]).unwrap_err();
    assert!(e.to_string().contains("in the future"), "{e}");
    let resolve = Command::Resolve {
        resolution: "fixed".into(),
        component: None,
        escalated_to: None,
    };
    run(&mut t, resolve, c.now + 5_000).unwrap();
    assert_eq!(t.resolution.total_ms, Some(30 * 60_000 + 5_000));
}

#[test]
fn a_merge_resolves_and_closes_the_duplicate() {
    let mut dup = ticket();
    let mut survivor = ticket();
    survivor.number = 9;
    let events = decide_link(&dup, LinkKind::MergedInto, &survivor).unwrap();
    assert_eq!(events.len(), 3);
    for e in &events {
        dup.apply(e, 50);
    }
    assert_eq!(dup.status, Status::Closed);
    assert_eq!(merged_into(&dup), Some(9));
    assert_eq!(
        dup.resolution.resolution.as_deref(),
        Some("merged into TT 9")
    );
    let e = decide_link(&dup, LinkKind::MergedInto, &survivor).unwrap_err();
    assert!(e.to_string().contains("already merged into 9"), "{e}");
    let other = ticket();
    let e = decide_link(&other, LinkKind::MergedInto, &dup).unwrap_err();
    assert!(e.to_string().contains("merge into 9 instead"), "{e}");
}

//! What a peer may see and how much it may send: the sharing policy filter (run when a message is
//! decided, before anything is queued), and the per-peer caps on size and rate.
//!
//! The policy lives in the peer registry (so it replicates and a promoted standby sends exactly
//! what the old primary would); this module only decides.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::model::clock::Millis;
use crate::model::ticket::Ticket;
use crate::wire::exchange::{ExchangeCode, Refer};

/// What one peer may see of our tickets and how it may use the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingPolicy {
    /// Header fields sent with a referral, by canonical name (`severity`, `priority`,
    /// `problem-start`, `network`, `circuit`, `nodes`, `next-action`, `reporter.org`, `cf.NAME`).
    /// The subject always goes: a referral without one is useless.
    pub fields: BTreeSet<String>,
    /// Whether shared notes go to this peer. Internal notes never leave the site, whatever
    /// this says.
    pub shared_notes: bool,
    /// Accept the peer's referrals without an operator (e.g. a contracted telco).
    pub auto_accept: bool,
    /// The largest message this peer may send us, in bytes of its encoding.
    pub max_message_bytes: u32,
    /// Messages per second this peer may send us on average.
    pub rate_per_sec: u32,
    /// How many messages it may send in a burst above that rate.
    pub burst: u32,
}

impl Default for SharingPolicy {
    /// What a new peer gets: the fields a telco needs to find the fault, shared notes, no
    /// reporter contact, no custom fields, operator acceptance, 1 MiB messages,
    /// [`DEFAULT_RATE`] messages a second in bursts of [`DEFAULT_BURST`].
    fn default() -> Self {
        SharingPolicy {
            fields: [
                "severity",
                "priority",
                "problem-start",
                "circuit",
                "network",
                "nodes",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            shared_notes: true,
            auto_accept: false,
            max_message_bytes: 1 << 20,
            rate_per_sec: DEFAULT_RATE,
            burst: DEFAULT_BURST,
        }
    }
}

impl SharingPolicy {
    /// The referral header this peer may see of `ticket`.
    pub fn refer_header(
        &self,
        ticket: &Ticket,
        respond_by: Option<Millis>,
        note: Option<String>,
    ) -> Refer {
        let may = |f: &str| self.fields.contains(f);
        let mut fields = Vec::new();
        let mut put = |name: &str, value: Option<String>| {
            if may(name) {
                if let Some(v) = value.filter(|v| !v.is_empty()) {
                    fields.push((name.to_string(), v));
                }
            }
        };
        put("network", ticket.network.clone());
        put("circuit", ticket.circuit.clone());
        put(
            "nodes",
            (!ticket.nodes.is_empty()).then(|| ticket.nodes.join(", ")),
        );
        put("next-action", ticket.next_action.clone());
        put("reporter.org", ticket.reporter.org.clone());
        for (name, value) in &ticket.custom {
            put(&format!("cf.{name}"), Some(value.clone()));
        }
        fields.sort();
        Refer {
            number: ticket.number,
            subject: ticket.subject.clone(),
            severity: may("severity").then_some(ticket.severity),
            priority: may("priority").then_some(ticket.priority),
            problem_start: ticket.problem_start.filter(|_| may("problem-start")),
            fields,
            respond_by,
            note: note.filter(|_| self.shared_notes),
        }
    }

    /// Whether a note goes to this peer: only a shared note, and only if the policy shares notes.
    pub fn passes_note(&self, shared: bool) -> bool {
        shared && self.shared_notes
    }

    /// Checks an arriving message's encoded size against the cap.
    pub fn check_size(&self, bytes: usize) -> Result<(), ExchangeCode> {
        if bytes as u64 > u64::from(self.max_message_bytes) {
            Err(ExchangeCode::TooLarge)
        } else {
            Ok(())
        }
    }
}

/// The header fields a policy may name (besides `cf.NAME`, any custom field).
pub const FIELDS: &[&str] = &[
    "severity",
    "priority",
    "problem-start",
    "network",
    "circuit",
    "nodes",
    "next-action",
    "reporter.org",
];

/// A change an admin makes to a peer's policy (`ttx referral policy SITE …`): what is `None`
/// stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharingChange {
    /// Accept the peer's referrals without an operator.
    pub auto_accept: Option<bool>,
    /// Send shared notes to the peer.
    pub shared_notes: Option<bool>,
    /// The header fields sent with a referral (replaces the list).
    pub fields: Option<Vec<String>>,
    /// The largest message the peer may send us, in bytes (1 to [`MAX_MESSAGE_CAP`]).
    pub max_message_bytes: Option<u32>,
    /// Messages a second the peer may send us on average (1 to [`MAX_RATE`]).
    pub rate_per_sec: Option<u32>,
    /// Messages it may send in a burst above that rate (1 to [`MAX_RATE`]).
    pub burst: Option<u32>,
}

/// The highest message-size cap a policy may set: the transport's default frame limit (a larger
/// message could not arrive anyway).
pub const MAX_MESSAGE_CAP: u32 = 16 * 1024 * 1024;

/// The highest rate or burst a policy may set (messages a second).
pub const MAX_RATE: u32 = 1_000_000;

impl SharingChange {
    /// The policy after the change, or why the change is invalid (an unknown field name).
    pub fn apply(&self, policy: &SharingPolicy) -> Result<SharingPolicy, String> {
        let mut next = policy.clone();
        if let Some(v) = self.auto_accept {
            next.auto_accept = v;
        }
        if let Some(v) = self.shared_notes {
            next.shared_notes = v;
        }
        let within = |what: &str, v: Option<u32>, max: u32| match v {
            Some(v) if v == 0 || v > max => Err(format!("{what} {v} is out of range: 1 to {max}")),
            _ => Ok(v),
        };
        if let Some(v) = within("max message bytes", self.max_message_bytes, MAX_MESSAGE_CAP)? {
            next.max_message_bytes = v;
        }
        if let Some(v) = within("rate", self.rate_per_sec, MAX_RATE)? {
            next.rate_per_sec = v;
        }
        if let Some(v) = within("burst", self.burst, MAX_RATE)? {
            next.burst = v;
        }
        if let Some(fields) = &self.fields {
            let mut set = BTreeSet::new();
            for f in fields.iter().map(|f| f.trim()).filter(|f| !f.is_empty()) {
                let custom = f
                    .strip_prefix("cf.")
                    .is_some_and(|n| !n.is_empty() && n.len() <= 200);
                if !custom && !FIELDS.contains(&f) {
                    return Err(format!(
                        "unknown field {f:?}: use {} or cf.NAME",
                        FIELDS.join(", ")
                    ));
                }
                set.insert(f.to_string());
            }
            next.fields = set;
        }
        Ok(next)
    }
}

/// The default cap on what a new peer may send us, in messages a second: twice the exchange's
/// sustained target (10,000 shared notes a second on one edge), so neither a busy edge nor a
/// backlog after an outage (100,000 messages in well under 30 s) is throttled by default, while a
/// runaway or hostile partner still meets a wall well below what the writer takes.
pub const DEFAULT_RATE: u32 = 20_000;

/// The default burst above [`DEFAULT_RATE`]: one second's worth.
pub const DEFAULT_BURST: u32 = 20_000;

/// A policy's rate caps: (messages a second, burst).
type Caps = (u32, u32);

/// Every peer's token bucket, each made from that peer's policy on its first message (and again
/// when the policy's caps change). Shared by all of a node's connections, so a peer cannot
/// escape its cap by opening more of them.
#[derive(Debug, Default)]
pub struct PeerRates {
    buckets: std::sync::Mutex<std::collections::HashMap<String, (Caps, RateLimit)>>,
}

impl PeerRates {
    /// No bucket yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a token from `site`'s bucket at `now`, with `policy`'s caps, or says
    /// `RateLimited`.
    pub fn take(
        &self,
        site: &str,
        policy: &SharingPolicy,
        now: Millis,
    ) -> Result<(), ExchangeCode> {
        let caps = (policy.rate_per_sec, policy.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (held, bucket) = buckets
            .entry(site.to_string())
            .or_insert_with(|| (caps, RateLimit::new(caps.0, caps.1, now)));
        // The admin changed the peer's caps: a new, full bucket at the new rate.
        if *held != caps {
            (*held, *bucket) = (caps, RateLimit::new(caps.0, caps.1, now));
        }
        bucket.take(now)
    }
}

/// A token bucket: `rate` tokens a second up to `burst`; each message takes one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    rate_per_ms: f64,
    burst: f64,
    tokens: f64,
    last: Millis,
}

impl RateLimit {
    /// A full bucket at `now`.
    pub fn new(rate_per_sec: u32, burst: u32, now: Millis) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimit {
            rate_per_ms: f64::from(rate_per_sec) / 1000.0,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token for a message at `now`, or says `RateLimited`.
    pub fn take(&mut self, now: Millis) -> Result<(), ExchangeCode> {
        let elapsed = (now - self.last).max(0) as f64;
        self.tokens = (self.tokens + elapsed * self.rate_per_ms).min(self.burst);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(ExchangeCode::RateLimited)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::NewTicket;
    use crate::model::ticket::{Contact, TicketType};

    fn ticket() -> Ticket {
        let mut t = Ticket::created(
            uuid::Uuid::now_v7(),
            "noc-a",
            7,
            &NewTicket {
                ticket_type: TicketType::Trouble,
                subject: "LON-PAR-3 down".into(),
                severity: 1,
                priority: 2,
                queue: "backbone".into(),
                owner: Some("al".into()),
                problem_start: Some(1_000),
                reporter: Contact {
                    name: Some("Jo Customer".into()),
                    org: Some("ACME".into()),
                    phone: Some("+44 20 7946 0000".into()),
                    email: None,
                },
                nodes: vec!["core1.lon".into(), "core2.par".into()],
                network: Some("AS64500".into()),
                circuit: Some("LON-PAR-3".into()),
            },
            "al",
            2_000,
        );
        t.custom.insert("vendor".into(), "Acme Optics".into());
        t.next_action = Some("call the customer".into());
        t
    }

    #[test]
    fn the_default_policy_sends_what_a_telco_needs_and_no_contact() {
        let h = SharingPolicy::default().refer_header(&ticket(), Some(9), Some("hi".into()));
        assert_eq!(h.subject, "LON-PAR-3 down");
        assert_eq!(
            (h.severity, h.priority, h.problem_start),
            (Some(1), Some(2), Some(1_000))
        );
        assert_eq!(
            h.fields,
            vec![
                ("circuit".to_string(), "LON-PAR-3".to_string()),
                ("network".to_string(), "AS64500".to_string()),
                ("nodes".to_string(), "core1.lon, core2.par".to_string()),
            ]
        );
        let text = format!("{h:?}");
        for secret in [
            "Jo Customer",
            "+44",
            "ACME",
            "Acme Optics",
            "call the customer",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(h.note.as_deref(), Some("hi"));
    }

    #[test]
    fn a_narrow_policy_sends_only_the_subject() {
        let policy = SharingPolicy {
            fields: BTreeSet::new(),
            shared_notes: false,
            ..SharingPolicy::default()
        };
        let h = policy.refer_header(&ticket(), None, Some("internal detail".into()));
        assert_eq!(
            (h.severity, h.priority, h.problem_start),
            (None, None, None)
        );
        assert!(h.fields.is_empty());
        assert_eq!(h.note, None);
        assert!(!policy.passes_note(true));
    }

    #[test]
    fn custom_fields_go_only_when_named() {
        let mut policy = SharingPolicy::default();
        policy.fields.insert("cf.vendor".into());
        let h = policy.refer_header(&ticket(), None, None);
        assert!(h
            .fields
            .contains(&("cf.vendor".into(), "Acme Optics".into())));
    }

    #[test]
    fn internal_notes_never_pass() {
        assert!(!SharingPolicy::default().passes_note(false));
        assert!(SharingPolicy::default().passes_note(true));
    }

    #[test]
    fn a_change_keeps_what_it_does_not_name_and_refuses_unknown_fields() {
        let base = SharingPolicy::default();
        let next = SharingChange {
            auto_accept: Some(true),
            fields: Some(vec!["severity".into(), "cf.vendor".into()]),
            ..SharingChange::default()
        }
        .apply(&base)
        .unwrap();
        assert!(next.auto_accept && next.shared_notes);
        assert_eq!(
            next.fields.iter().map(String::as_str).collect::<Vec<_>>(),
            ["cf.vendor", "severity"]
        );
        let e = SharingChange {
            fields: Some(vec!["phone".into()]),
            ..SharingChange::default()
        }
        .apply(&base)
        .unwrap_err();
        assert!(e.contains("unknown field \"phone\""), "{e}");
    }

    #[test]
    fn caps_change_within_their_ranges() {
        let base = SharingPolicy::default();
        let next = SharingChange {
            max_message_bytes: Some(4096),
            rate_per_sec: Some(5),
            burst: Some(10),
            ..SharingChange::default()
        }
        .apply(&base)
        .unwrap();
        assert_eq!(
            (next.max_message_bytes, next.rate_per_sec, next.burst),
            (4096, 5, 10)
        );
        assert_eq!(next.fields, base.fields, "the rest is kept");
        for bad in [
            SharingChange {
                rate_per_sec: Some(0),
                ..SharingChange::default()
            },
            SharingChange {
                max_message_bytes: Some(MAX_MESSAGE_CAP + 1),
                ..SharingChange::default()
            },
            SharingChange {
                burst: Some(0),
                ..SharingChange::default()
            },
        ] {
            let e = bad.apply(&base).unwrap_err();
            assert!(e.contains("out of range"), "{e}");
        }
    }

    #[test]
    fn size_and_rate_caps() {
        let policy = SharingPolicy {
            max_message_bytes: 10,
            ..SharingPolicy::default()
        };
        assert_eq!(policy.check_size(10), Ok(()));
        assert_eq!(policy.check_size(11), Err(ExchangeCode::TooLarge));
        let mut rl = RateLimit::new(10, 2, 0);
        assert_eq!(rl.take(0), Ok(()));
        assert_eq!(rl.take(0), Ok(()));
        assert_eq!(rl.take(0), Err(ExchangeCode::RateLimited));
        assert_eq!(rl.take(99), Err(ExchangeCode::RateLimited));
        assert_eq!(rl.take(100), Ok(()), "10/s refills one token in 100 ms");
        // A clock that steps back does not mint tokens.
        assert_eq!(rl.take(50), Err(ExchangeCode::RateLimited));
    }
}

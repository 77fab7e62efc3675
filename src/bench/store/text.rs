//! Seeded, realistic NOC text for the store benchmark: subjects such as
//! "core3.ams BGP session flap to AS3356" and incident updates with traceroutes, router and
//! interface names, drawn from a vocabulary of common words plus a few rare ones.

/// A tiny xorshift64* generator: deterministic for a seed, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

use crate::model::event::NewTicket;
use crate::model::ticket::{Contact, TicketType};

const SITES: &[&str] = &[
    "ams", "fra", "lon", "par", "nyc", "sjc", "sin", "tyo", "mad", "waw", "sto", "mil",
];
const ROLES: &[&str] = &["core", "edge", "br", "agg", "pe"];
const ASNS: &[&str] = &[
    "AS3356", "AS1299", "AS174", "AS2914", "AS6939", "AS6453", "AS3257", "AS6762", "AS6830",
];
const PORTS: &[&str] = &["xe-0/0/", "et-1/0/", "Hu0/0/0/", "ge-2/1/", "TenGigE0/1/0/"];
const PARTNERS: &[&str] = &["Colt", "Lumen", "Telia", "Cogent", "Zayo", "GTT", "Orange"];

/// Words that appear in about one update in thirty: what a "rare word" search finds.
pub const RARE: &[&str] = &[
    "flowspec",
    "quagga",
    "microburst",
    "bufferbloat",
    "hairpinning",
    "tcam",
    "bogon",
    "zeroized",
    "ghostroute",
    "polarization",
];

/// Search texts the benchmark cycles through, with their kind.
pub const SEARCHES: &[(&str, &str)] = &[
    ("rare", "flowspec"),
    ("rare", "quagga"),
    ("rare", "microburst"),
    ("rare", "bogon"),
    ("common", "loss"),
    ("common", "traceroute"),
    ("common", "bgp"),
    ("common", "core1"),
    ("two-word", "bgp flap"),
    ("two-word", "packet loss"),
    ("two-word", "fiber cut"),
    ("two-word", "tcam loss"),
];

fn router(rng: &mut Rng) -> String {
    format!(
        "{}{}.{}",
        rng.pick(ROLES),
        1 + rng.below(4),
        rng.pick(SITES)
    )
}

fn port(rng: &mut Rng) -> String {
    format!("{}{}", rng.pick(PORTS), rng.below(48))
}

fn ip(rng: &mut Rng) -> String {
    format!("203.0.{}.{}", rng.below(256), 1 + rng.below(254))
}

fn circuit(rng: &mut Rng) -> String {
    format!(
        "{}-{:06}",
        rng.pick(PARTNERS).to_uppercase(),
        rng.below(1_000_000)
    )
}

/// A one-line ticket subject.
pub fn subject(rng: &mut Rng) -> String {
    let r = router(rng);
    match rng.below(10) {
        0 => format!("{r} BGP session flap to {}", rng.pick(ASNS)),
        1 => format!("packet loss towards {} via {r}", rng.pick(ASNS)),
        2 => format!("high latency on {r} {}", port(rng)),
        3 => format!("LOS on circuit {} at {r}", circuit(rng)),
        4 => format!("CRC errors on {r} {}", port(rng)),
        5 => format!("OSPF adjacency down between {r} and {}", router(rng)),
        6 => format!("optic rx power low on {r} {}", port(rng)),
        7 => format!("fiber cut affecting {} ({r})", circuit(rng)),
        8 => format!("DDoS towards {} behind {r}", ip(rng)),
        _ => format!("customer reports slow transfers via {r}"),
    }
}

/// A ticket header with a [`subject`], random levels and queue, no owner.
pub fn new_ticket(rng: &mut Rng) -> NewTicket {
    NewTicket {
        ticket_type: TicketType::Trouble,
        subject: subject(rng),
        severity: 1 + rng.below(4) as u8,
        priority: 1 + rng.below(4) as u8,
        queue: rng.pick(&["core", "access", "transit", "customer"]).into(),
        owner: None,
        problem_start: None,
        reporter: Contact::default(),
        nodes: Vec::new(),
        network: None,
        circuit: None,
    }
}

/// An incident update of one to three sentences.
pub fn note(rng: &mut Rng) -> String {
    let mut out = String::with_capacity(256);
    for i in 0..1 + rng.below(3) {
        if i > 0 {
            out.push(' ');
        }
        let (r, r2) = (router(rng), router(rng));
        let s = match rng.below(7) {
            0 => format!(
                "traceroute from {r} to {}: loss starts at hop {} {r2} ({}), {}% packet loss, rtt {} ms.",
                ip(rng),
                2 + rng.below(12),
                port(rng),
                1 + rng.below(60),
                5 + rng.below(300)
            ),
            1 => format!(
                "opened case with {} NOC, ref TT#{}; they see the session flap since {:02}:{:02} UTC.",
                rng.pick(PARTNERS),
                rng.below(10_000_000),
                rng.below(24),
                rng.below(60)
            ),
            2 => format!(
                "{r} {} rx power -{}.{} dBm below threshold; dispatching field tech.",
                port(rng),
                10 + rng.below(20),
                rng.below(10)
            ),
            3 => format!(
                "BGP neighbor {} ({}) state Idle, Hold Timer Expired, {} flaps in the last hour.",
                ip(rng),
                rng.pick(ASNS),
                1 + rng.below(40)
            ),
            4 => format!(
                "customer confirms service restored at {:02}:{:02}; monitoring for 24h.",
                rng.below(24),
                rng.below(60)
            ),
            5 => format!(
                "drained {r} {}, traffic moved to {r2}, no customer impact.",
                port(rng)
            ),
            _ => format!(
                "fiber cut confirmed by {} on {}, ETA for splice {} h.",
                rng.pick(PARTNERS),
                circuit(rng),
                1 + rng.below(8)
            ),
        };
        out.push_str(&s);
    }
    if rng.chance(3) {
        out.push_str(" suspect ");
        out.push_str(rng.pick(RARE));
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_realistic() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(note(&mut a), note(&mut b));
        assert_eq!(subject(&mut a), subject(&mut b));
        let mut rng = Rng::new(1);
        let rare = (0..3000)
            .filter(|_| RARE.iter().any(|w| note(&mut rng).contains(w)))
            .count();
        assert!((30..300).contains(&rare), "{rare}");
    }
}

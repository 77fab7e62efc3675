//! Chains without echoes: where a shared note goes next.
//!
//! A ticket may be referred to us (an *in* edge) and referred on by us (an *out* edge), as in
//! NOC A → telco B → carrier C. A shared note written at any site travels hop by hop to every
//! other open edge of the ticket it lands on, each hop filtered by that edge's policy. Loops are
//! stopped by identity, never by timing:
//! - a note is never sent back on the edge it came from, nor to the site that wrote it;
//! - a note carries its origin site and id, and a site applies a given origin id once per
//!   ticket, so a triangle A → B → C → A delivers it to A at most once and sends it no further.

use uuid::Uuid;

use super::referral::ReferralState;

/// One referral of a ticket as forwarding sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The referral.
    pub referral: Uuid,
    /// The site at its other end.
    pub peer: String,
    /// Its state (final edges carry nothing).
    pub state: ReferralState,
    /// Its peer is removed from the registry (nothing is queued until it returns).
    pub orphaned: bool,
    /// The peer's policy lets shared notes through.
    pub shares_notes: bool,
}

/// The referrals a shared note written at `origin_site` goes to, having arrived on `arrived_on`
/// (`None`: written here). `seen_before` says this site already applied the note's origin id on
/// this ticket, in which case it goes nowhere (and the caller applies nothing).
pub fn targets(
    edges: &[Edge],
    arrived_on: Option<Uuid>,
    origin_site: &str,
    seen_before: bool,
) -> Vec<Uuid> {
    if seen_before {
        return Vec::new();
    }
    edges
        .iter()
        .filter(|e| Some(e.referral) != arrived_on)
        .filter(|e| e.peer != origin_site)
        .filter(|e| !e.state.is_final() && !e.orphaned && e.shares_notes)
        .map(|e| e.referral)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, VecDeque};

    use super::*;

    fn edge(id: u128, peer: &str) -> Edge {
        Edge {
            referral: Uuid::from_u128(id),
            peer: peer.into(),
            state: ReferralState::Accepted,
            orphaned: false,
            shares_notes: true,
        }
    }

    #[test]
    fn a_note_goes_everywhere_but_back() {
        let edges = [edge(1, "noc-a"), edge(2, "carrier-c"), edge(3, "telco-d")];
        // Written here: every edge.
        assert_eq!(targets(&edges, None, "telco-b", false).len(), 3);
        // Came from A on edge 1: C and D, never A.
        assert_eq!(
            targets(&edges, Some(Uuid::from_u128(1)), "noc-a", false),
            vec![Uuid::from_u128(2), Uuid::from_u128(3)]
        );
        // Seen before (a triangle brought it back): nowhere.
        assert!(targets(&edges, Some(Uuid::from_u128(2)), "noc-a", true).is_empty());
    }

    #[test]
    fn closed_orphaned_and_non_sharing_edges_carry_nothing() {
        let mut closed = edge(1, "x");
        closed.state = ReferralState::Closed;
        let mut orphan = edge(2, "y");
        orphan.orphaned = true;
        let mut quiet = edge(3, "z");
        quiet.shares_notes = false;
        assert!(targets(&[closed, orphan, quiet], None, "me", false).is_empty());
    }

    /// A triangle A → B → C → A and a chain: simulate every site forwarding by the rules and
    /// count deliveries. Each site gets each note exactly once; nothing loops.
    #[test]
    fn triangle_and_chain_deliver_each_note_once() {
        // Referral edges: (id, from, to). A referred to B, B to C, C to A (a triangle), and
        // A also to D (a chain branch).
        let referrals = [
            (1u128, "a", "b"),
            (2, "b", "c"),
            (3, "c", "a"),
            (4, "a", "d"),
        ];
        let sites = ["a", "b", "c", "d"];
        let edges_of = |site: &str| -> Vec<Edge> {
            referrals
                .iter()
                .filter_map(|&(id, from, to)| {
                    if from == site {
                        Some(edge(id, to))
                    } else if to == site {
                        Some(edge(id, from))
                    } else {
                        None
                    }
                })
                .collect()
        };
        for origin in sites {
            let mut applied: BTreeMap<&str, u32> = BTreeMap::new();
            let mut seen: BTreeSet<&str> = BTreeSet::from([origin]);
            let mut wire: VecDeque<(u128, &str)> = targets(&edges_of(origin), None, origin, false)
                .into_iter()
                .map(|r| (r.as_u128(), origin))
                .collect();
            let mut hops = 0;
            while let Some((rid, sender)) = wire.pop_front() {
                hops += 1;
                assert!(hops < 100, "a loop");
                let &(_, from, to) = referrals.iter().find(|r| r.0 == rid).unwrap();
                let receiver = if from == sender { to } else { from };
                let seen_before = !seen.insert(receiver);
                if !seen_before {
                    *applied.entry(receiver).or_default() += 1;
                }
                for next in targets(
                    &edges_of(receiver),
                    Some(Uuid::from_u128(rid)),
                    origin,
                    seen_before,
                ) {
                    wire.push_back((next.as_u128(), receiver));
                }
            }
            for site in sites.iter().filter(|s| **s != origin) {
                assert_eq!(applied.get(site), Some(&1), "{site} from {origin}");
            }
        }
    }
}

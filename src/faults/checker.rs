//! The campaign's checker (pure): every write a client saw acknowledged is present exactly
//! once everywhere it must be, a write whose outcome the client never learned is present at
//! most once, and the standby's digest equals the primary's (Jepsen's set check, per node).

use std::collections::{BTreeMap, HashMap};

/// One write a client made, and what the client learned about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The note's text (unique in the campaign; also its idempotency key).
    pub text: String,
    /// The nodes' labels it must end up on (its own site's primary, and the partner's
    /// when it is a shared note on a referred ticket).
    pub on: Vec<String>,
    /// The client got a success answer.
    pub acked: bool,
}

/// How many notes with each text a node holds (a partner's stamp `[site] ` taken off).
pub type Counts = HashMap<String, usize>;

/// Strips the `[site] ` stamp a note gets when it arrives from a partner.
pub fn unstamped(text: &str) -> &str {
    match (text.strip_prefix('['), text.find("] ")) {
        (Some(_), Some(end)) => &text[end + 2..],
        _ => text,
    }
}

/// What the checker found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Acknowledged writes checked (each on every node it must be on).
    pub acked: usize,
    /// Writes whose outcome the client never learned.
    pub unknown: usize,
    /// `node: text` of acknowledged writes missing there.
    pub lost: Vec<String>,
    /// `node: text xN` of writes present more than once.
    pub duplicated: Vec<String>,
    /// Unknown writes that made it (at most once) to their own site.
    pub unknown_present: usize,
}

impl Verdict {
    /// Nothing lost, nothing doubled.
    pub fn holds(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty()
    }
}

/// Checks `writes` against each node's counts (by node label).
pub fn check(writes: &[Write], counts: &BTreeMap<String, Counts>) -> Verdict {
    let mut v = Verdict::default();
    for w in writes {
        if w.acked {
            v.acked += 1;
        } else {
            v.unknown += 1;
        }
        for (i, node) in w.on.iter().enumerate() {
            let n = counts
                .get(node)
                .and_then(|c| c.get(&w.text))
                .copied()
                .unwrap_or(0);
            if n > 1 {
                v.duplicated.push(format!("{node}: {} x{n}", w.text));
            } else if n == 0 && w.acked {
                v.lost.push(format!("{node}: {}", w.text));
            } else if n == 1 && !w.acked && i == 0 {
                v.unknown_present += 1;
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(node: &str, texts: &[(&str, usize)]) -> (String, Counts) {
        (
            node.to_string(),
            texts.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
        )
    }

    fn write(text: &str, on: &[&str], acked: bool) -> Write {
        Write {
            text: text.into(),
            on: on.iter().map(|s| s.to_string()).collect(),
            acked,
        }
    }

    #[test]
    fn acked_writes_must_be_everywhere_once_and_unknown_ones_at_most_once() {
        let c: BTreeMap<_, _> = [
            counts("a", &[("w1", 1), ("w2", 1), ("w3", 2), ("u1", 1)]),
            counts("b", &[("w1", 1)]),
        ]
        .into_iter()
        .collect();
        let writes = [
            write("w1", &["a", "b"], true),
            write("w2", &["a", "b"], true),
            write("w3", &["a"], true),
            write("u1", &["a"], false),
            write("u2", &["a"], false),
        ];
        let v = check(&writes, &c);
        assert_eq!(v.lost, vec!["b: w2"]);
        assert_eq!(v.duplicated, vec!["a: w3 x2"]);
        assert_eq!((v.acked, v.unknown, v.unknown_present), (3, 2, 1));
        assert!(!v.holds());
        let good = check(&writes[..1], &c);
        assert!(good.holds(), "{good:?}");
    }

    #[test]
    fn a_partners_stamp_is_not_part_of_the_text() {
        assert_eq!(unstamped("[noc-a] c1-7"), "c1-7");
        assert_eq!(unstamped("c1-7"), "c1-7");
        assert_eq!(unstamped("[broken c1-7"), "[broken c1-7");
    }
}

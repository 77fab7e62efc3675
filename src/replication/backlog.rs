//! What the primary ships next: from memory right after a commit, from the log only to catch up.
//!
//! The primary keeps the most recent committed envelopes in a [`Backlog`] bounded in bytes. When
//! the standby wants position `p`, [`Backlog::plan`] says whether `p` onwards is still in memory
//! (ship it without touching the disk) or older than what memory holds (read the log from `p`
//! up to the first position memory has, then continue from memory).

use std::collections::VecDeque;

/// Where the next envelopes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The standby has everything committed; wait for the next commit.
    UpToDate,
    /// Ship from memory ([`Backlog::from`]).
    Memory {
        /// The first position to ship.
        from: u64,
    },
    /// Read the log for positions `from..=to`, then plan again.
    Log {
        /// The first position to read.
        from: u64,
        /// The last position to read (the one before memory starts).
        to: u64,
    },
}

/// Recently committed items (encoded envelopes), in position order, bounded in bytes.
pub struct Backlog<T> {
    items: VecDeque<(u64, T)>,
    bytes: usize,
    max_bytes: usize,
    head: u64,
}

/// The size in bytes an item counts for.
pub trait ByteSize {
    /// Bytes.
    fn bytes(&self) -> usize;
}

impl ByteSize for Vec<u8> {
    fn bytes(&self) -> usize {
        self.len()
    }
}

impl ByteSize for crate::wire::envelope::Envelope {
    /// About its encoded size: the fixed fields, then each string and the body.
    fn bytes(&self) -> usize {
        128 + self.origin_site.len()
            + self.origin_node.len()
            + self.actor.len()
            + self.kind.len()
            + self.body.len()
    }
}

/// Keeps the longest prefix of `items` within `max_bytes` (always the first one, however
/// large: a single larger item still goes alone).
pub fn keep_within<T: ByteSize>(items: &mut Vec<T>, max_bytes: usize) {
    let mut bytes = 0;
    let keep = items
        .iter()
        .take_while(|e| {
            bytes += e.bytes();
            bytes <= max_bytes
        })
        .count()
        .max(1);
    items.truncate(keep);
}

impl<T: ByteSize> Backlog<T> {
    /// An empty backlog whose log head is `head`, keeping at most `max_bytes` of items (always
    /// at least the newest one).
    pub fn new(head: u64, max_bytes: usize) -> Self {
        Backlog {
            items: VecDeque::new(),
            bytes: 0,
            max_bytes,
            head,
        }
    }

    /// The last committed position.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// A committed item at `pos`. Positions normally arrive in order without gaps; an item that
    /// does not follow the head (the node applied events from its old primary, which are not
    /// published, then was promoted) starts memory afresh at `pos`: what came before is read
    /// from the log.
    pub fn push(&mut self, pos: u64, item: T) {
        if pos != self.head + 1 {
            self.items.clear();
            self.bytes = 0;
        }
        self.head = pos;
        self.bytes += item.bytes();
        self.items.push_back((pos, item));
        while self.bytes > self.max_bytes && self.items.len() > 1 {
            let (_, old) = self.items.pop_front().expect("more than one");
            self.bytes -= old.bytes();
        }
    }

    /// Where to get position `want` (the standby's head + 1) and what follows.
    pub fn plan(&self, want: u64) -> Plan {
        if want > self.head {
            return Plan::UpToDate;
        }
        match self.items.front() {
            Some(&(first, _)) if want >= first => Plan::Memory { from: want },
            Some(&(first, _)) => Plan::Log {
                from: want,
                to: first - 1,
            },
            None => Plan::Log {
                from: want,
                to: self.head,
            },
        }
    }

    /// The items from position `from` on (an empty iterator if memory no longer has it).
    pub fn from(&self, from: u64) -> impl Iterator<Item = &(u64, T)> {
        let skip = match self.items.front() {
            Some(&(first, _)) if from >= first => (from - first) as usize,
            _ => self.items.len(),
        };
        self.items.iter().skip(skip)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_positions_ship_from_memory_older_ones_from_the_log() {
        let mut b: Backlog<Vec<u8>> = Backlog::new(10, 300);
        assert_eq!(b.plan(11), Plan::UpToDate);
        assert_eq!(b.plan(5), Plan::Log { from: 5, to: 10 });
        for pos in 11..=15 {
            b.push(pos, vec![0; 100]);
        }
        // 300 bytes: 13, 14, 15 remain.
        assert_eq!(b.bytes(), 300);
        assert_eq!(b.plan(16), Plan::UpToDate);
        assert_eq!(b.plan(14), Plan::Memory { from: 14 });
        assert_eq!(
            b.from(14).map(|(p, _)| *p).collect::<Vec<_>>(),
            vec![14, 15]
        );
        assert_eq!(b.plan(11), Plan::Log { from: 11, to: 12 });
        assert_eq!(b.from(11).count(), 0);
    }

    #[test]
    fn an_item_past_a_gap_starts_memory_afresh() {
        let mut b: Backlog<Vec<u8>> = Backlog::new(3, 1_000);
        b.push(4, vec![0; 10]);
        // Positions 5..=8 were applied from another primary and never published here.
        b.push(9, vec![0; 10]);
        assert_eq!((b.head(), b.bytes()), (9, 10));
        assert_eq!(b.plan(4), Plan::Log { from: 4, to: 8 });
        assert_eq!(b.plan(9), Plan::Memory { from: 9 });
    }

    #[test]
    fn the_newest_item_stays_even_if_it_alone_is_over_the_budget() {
        let mut b: Backlog<Vec<u8>> = Backlog::new(0, 10);
        b.push(1, vec![0; 50]);
        assert_eq!(b.plan(1), Plan::Memory { from: 1 });
        b.push(2, vec![0; 5]);
        assert_eq!(b.plan(1), Plan::Log { from: 1, to: 1 });
        assert_eq!(b.bytes(), 5);
    }
}

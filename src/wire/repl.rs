//! The frames of `ttx-repl/1`: the hot standby's long-lived stream to its primary.
//!
//! The standby opens one long-lived stream (`Open` with a [`Subscribe`] body) and the primary
//! answers `Opened` with a [`Subscribed`] body or refuses. From then on the primary sends
//! [`ToStandby`] frames (batches of envelopes in position order, heartbeats when idle) and the
//! standby sends [`ToPrimary`] frames (acks of what it has durably and what it applied). Every
//! frame carries the sender's epoch: a node that sees a higher epoch than its own stops writing.
//!
//! Cloning uses the same ALPN: `Open` with a [`SnapshotRequest`] body (told apart from a
//! [`Subscribe`] by its first eight bytes, [`SNAPSHOT_TAG`]), answered `Opened` with a
//! [`SnapshotAccepted`] body; then the primary streams [`SnapshotFrame`]s (`Preparing` while it
//! makes the copy, a `Header` with the snapshot's position, length and SHA-256, the chunks, an
//! `End`).

use serde::{Deserialize, Serialize};

use super::envelope::Envelope;

/// `Open` body: the standby asks for the log from `from` on, naming the event it holds at
/// `from - 1` (its head) so the primary can refuse a log that is not a prefix of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    /// The standby's epoch.
    pub epoch: u64,
    /// The first position it wants (its head + 1).
    pub from: u64,
    /// The id of the standby's event at `from - 1` (all zero when its log is empty).
    pub head_id: [u8; 16],
    /// The epoch of that event (0 when its log is empty).
    pub head_epoch: u64,
}

/// `Opened` body: the primary's epoch and head when the stream started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The primary's epoch.
    pub epoch: u64,
    /// Its last committed position.
    pub head: u64,
}

/// Primary → standby. Variant indexes are stable: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToStandby {
    /// Index 0: envelopes at consecutive positions, starting right after the last one sent.
    Batch(Batch),
    /// Index 1: nothing new; the primary's head and clock, so the standby's lag stays fresh.
    Heartbeat {
        /// Epoch.
        epoch: u64,
        /// Last committed position.
        head: u64,
        /// The primary's clock (unix ms) when sent.
        at: i64,
    },
    /// Index 2: a planned switchover. The primary takes no more writes; its log ends at `head`.
    /// The standby, once it has applied `head`, promotes itself (epoch + 1) and answers
    /// [`ToPrimary::Promoted`].
    TakeOver {
        /// The primary's epoch (the one handed over).
        epoch: u64,
        /// The primary's last position: the standby must have exactly this head.
        head: u64,
    },
}

/// A run of envelopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The primary's epoch.
    pub epoch: u64,
    /// When the primary committed the last of them (unix ms, its own clock).
    pub committed_at: i64,
    /// The envelopes, positions consecutive.
    pub envelopes: Vec<Envelope>,
}

/// Standby → primary. Variant indexes are stable: append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToPrimary {
    /// Index 0: how far the standby has the log.
    Ack {
        /// The standby's epoch.
        epoch: u64,
        /// Every position up to here is durable on the standby.
        durable: u64,
        /// Every position up to here is applied there.
        applied: u64,
    },
    /// Index 1: the answer to [`ToStandby::TakeOver`]: the standby is the primary of `epoch`
    /// (durably), its `EpochStarted` at `position`. The old primary becomes its standby.
    Promoted {
        /// The new epoch.
        epoch: u64,
        /// The position of its `EpochStarted` event.
        position: u64,
    },
    /// Index 2: `ttx switchover` was run on the standby: it asks the primary to hand over.
    Switchover {
        /// The standby's epoch.
        epoch: u64,
    },
}

/// The first eight bytes of a [`SnapshotRequest`] (`ttx-snap`): an `Open` body starting with
/// them asks for a snapshot, any other is a [`Subscribe`]. Read as a `Subscribe`, they would be an
/// epoch above 8 * 10^18, which no site reaches.
pub const SNAPSHOT_TAG: [u8; 8] = *b"ttx-snap";

/// `Open` body: a new standby asks for a consistent copy of the primary's store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// Always [`SNAPSHOT_TAG`].
    pub tag: [u8; 8],
    /// The largest snapshot the asker will take (bytes): a larger one is refused by the
    /// primary before it makes the copy, if it knows its store is larger.
    pub max_bytes: u64,
}

impl SnapshotRequest {
    /// A request for a snapshot of at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        SnapshotRequest {
            tag: SNAPSHOT_TAG,
            max_bytes,
        }
    }
}

/// What a `ttx-repl/1` `Open` body asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenRequest {
    /// The log from a position on (a standby following its primary).
    Subscribe(Subscribe),
    /// A snapshot (a standby being cloned).
    Snapshot(SnapshotRequest),
}

/// Reads an `Open` body: a [`SnapshotRequest`] when it starts with [`SNAPSHOT_TAG`], else a
/// [`Subscribe`].
pub fn decode_open(body: &[u8]) -> Result<OpenRequest, super::WireError> {
    if body.starts_with(&SNAPSHOT_TAG) {
        super::codec::decode(body).map(OpenRequest::Snapshot)
    } else {
        super::codec::decode(body).map(OpenRequest::Subscribe)
    }
}

/// `Opened` body of a snapshot stream: the primary's epoch when it accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotAccepted {
    /// The primary's epoch.
    pub epoch: u64,
}

/// What the snapshot holds, sent once before its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// The primary's epoch in the snapshot.
    pub epoch: u64,
    /// The site position the snapshot holds (its last event): the standby follows from the
    /// next one.
    pub position: u64,
    /// The snapshot's length in bytes.
    pub len: u64,
    /// The SHA-256 of its bytes.
    pub sha256: [u8; 32],
    /// The largest chunk that follows.
    pub chunk_bytes: u32,
}

/// Primary → new standby on a snapshot stream. Variant indexes are stable: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotFrame {
    /// Index 0: the copy is being made (sent every second until the header, so the stream's
    /// idle timeout does not end it).
    Preparing {
        /// Milliseconds since the primary started the copy.
        elapsed_ms: u64,
    },
    /// Index 1: the snapshot's position, length and digest.
    Header(SnapshotHeader),
    /// Index 2: the next bytes of the snapshot, in order.
    Chunk(#[serde(with = "super::bytes")] Vec<u8>),
    /// Index 3: every byte was sent.
    End,
}

/// One-shot requests on `ttx-repl/1` (a `Request` frame, answered by a `Response` with a
/// [`ReplAnswer`]): comparing two nodes of a site (`ttx verify --against`). Variant indexes are
/// stable: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplRequest {
    /// Index 0: the digest of the state, once the head is at least `at_least` (waiting at
    /// most `wait_ms`, capped by the answering node).
    Digest {
        /// The position the asker is at.
        at_least: u64,
        /// How long to wait for it.
        wait_ms: u64,
    },
    /// Index 1: the digests of `parts` consecutive slices of the rows `[lo, hi)` (in the
    /// table's canonical order) of the state table number `table`, at `position`.
    Ranges {
        /// The position both nodes are at.
        position: u64,
        /// The table, by its index in [`StateDigest::tables`].
        table: u32,
        /// First row.
        lo: u64,
        /// One past the last row.
        hi: u64,
        /// Slices (at most [`MAX_PARTS`]).
        parts: u32,
    },
    /// Index 2: each row of `[lo, hi)` (at most [`MAX_ROWS`]) of table `table`, at `position`:
    /// its key and digest.
    Rows {
        /// The position both nodes are at.
        position: u64,
        /// The table.
        table: u32,
        /// First row.
        lo: u64,
        /// One past the last row.
        hi: u64,
    },
    /// Index 3: `ttx standby rejoin` looks for where its log forks from this node's: the id
    /// and epoch of the event at each of `positions` (at most [`MAX_POSITIONS`]), with this
    /// node's role and head.
    EventIds {
        /// The positions asked about.
        positions: Vec<u64>,
    },
    /// Index 4: `ttx standby rejoin` hands this primary the deposed node's own events past the
    /// fork, to keep as review items (`ttx review`). Idempotent by each event's id: a rerun
    /// queues nothing twice.
    Review {
        /// The node they come from (its log), for the review list.
        node: String,
        /// The events, as the deposed node's log holds them (at most [`MAX_REVIEW_BATCH`]).
        envelopes: Vec<Envelope>,
    },
}

/// Most positions one [`ReplRequest::EventIds`] asks about.
pub const MAX_POSITIONS: usize = 64;
/// Most envelopes one [`ReplRequest::Review`] carries.
pub const MAX_REVIEW_BATCH: usize = 256;
/// Soft limit of the envelopes' bytes in one shipped batch or one [`ReplRequest::Review`]: a
/// single larger envelope still goes alone (a request is refused only past the frame limit).
pub const BATCH_BYTES: usize = 256 * 1024;

/// The event at a position: its id and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventId {
    /// The event's id (16 bytes).
    pub id: [u8; 16],
    /// Its epoch.
    pub epoch: u64,
}

/// Most slices one [`ReplRequest::Ranges`] asks for.
pub const MAX_PARTS: u32 = 64;
/// Most rows one [`ReplRequest::Rows`] asks for.
pub const MAX_ROWS: u64 = 64;

/// The answer to a [`ReplRequest`], of the same index. Every answer names the position it was
/// computed at: an asker that finds it moved starts again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplAnswer {
    /// Index 0: the state's digest.
    Digest(StateDigest),
    /// Index 1: one digest per slice.
    Ranges {
        /// The position they are of.
        position: u64,
        /// SHA-256 of each slice's rows.
        digests: Vec<[u8; 32]>,
    },
    /// Index 2: the rows.
    Rows {
        /// The position they are of.
        position: u64,
        /// Each row's key and digest.
        rows: Vec<RowDigest>,
    },
    /// Index 3: the events at the positions asked, `None` where this node's log has none.
    EventIds {
        /// This node's role (`primary`, `standby:NODE`, `fenced:NODE`, `handing-over:NODE`).
        role: String,
        /// Its epoch.
        epoch: u64,
        /// Its head.
        head: u64,
        /// One per position asked, in order.
        ids: Vec<Option<EventId>>,
    },
    /// Index 4: the review items were recorded (`queued` new ones, `known` already held or
    /// in this node's log).
    Reviewed {
        /// Items recorded now.
        queued: u32,
        /// Items this node already had.
        known: u32,
    },
}

/// The digest of a node's state at a site position (as `ttx verify`), per table too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDigest {
    /// The site position.
    pub position: u64,
    /// The id of the event there (zero for an empty log).
    pub head_id: [u8; 16],
    /// Its epoch.
    pub head_epoch: u64,
    /// The digest `ttx verify` shows.
    pub digest: [u8; 32],
    /// Each state table's part, in the digest's order.
    pub tables: Vec<TableDigest>,
}

/// One state table's rows and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDigest {
    /// The table's name.
    pub name: String,
    /// How many rows it has.
    pub rows: u64,
    /// SHA-256 of its rows.
    pub sha256: [u8; 32],
}

/// One row: what names it (a ticket's number, a note's id) and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowDigest {
    /// What names the row, for people (`ticket #12`, `note 0190…`).
    pub key: String,
    /// SHA-256 of its values.
    pub sha256: [u8; 32],
}

#[cfg(test)]
mod golden {
    //! Golden bytes of the replication frames: a change here is a protocol break.
    use super::*;

    use crate::wire::codec::{decode, encode};
    use crate::wire::golden::check_body as check;

    #[test]
    fn subscribe_and_subscribed() {
        check(
            Subscribe {
                epoch: 2,
                from: 8,
                head_id: [0xab; 16],
                head_epoch: 1,
            },
            "0200000000000000 0800000000000000
             abababababababababababababababab 0100000000000000",
        );
        check(
            Subscribed { epoch: 2, head: 7 },
            "0200000000000000 0700000000000000",
        );
    }

    #[test]
    fn ack_heartbeat_and_an_empty_batch() {
        check(
            ToPrimary::Ack {
                epoch: 2,
                durable: 9,
                applied: 8,
            },
            "00000000 0200000000000000 0900000000000000 0800000000000000",
        );
        check(
            ToStandby::Heartbeat {
                epoch: 2,
                head: 9,
                at: 1_728_000_000_000,
            },
            "01000000 0200000000000000 0900000000000000 0080d35492010000",
        );
        check(
            ToStandby::Batch(Batch {
                epoch: 2,
                committed_at: 1_728_000_000_000,
                envelopes: Vec::new(),
            }),
            "00000000 0200000000000000 0080d35492010000 0000000000000000",
        );
    }

    #[test]
    fn the_switchover_frames() {
        check(
            ToStandby::TakeOver { epoch: 2, head: 9 },
            "02000000 0200000000000000 0900000000000000",
        );
        check(
            ToPrimary::Promoted {
                epoch: 3,
                position: 10,
            },
            "01000000 0300000000000000 0a00000000000000",
        );
        check(
            ToPrimary::Switchover { epoch: 2 },
            "02000000 0200000000000000",
        );
    }

    #[test]
    fn a_batch_carries_envelopes_byte_for_byte() {
        let env = Envelope {
            position: 7,
            id: [1; 16],
            origin_site: "a".into(),
            origin_node: "p".into(),
            epoch: 2,
            origin_seq: 5,
            at: 1,
            actor: "x".into(),
            ticket: None,
            kind: "k".into(),
            body: b"{}".to_vec(),
        };
        let batch = ToStandby::Batch(Batch {
            epoch: 2,
            committed_at: 1,
            envelopes: vec![env.clone()],
        });
        let bytes = encode(&batch).unwrap();
        // variant, epoch, committed_at, count 1, then the envelope exactly as it encodes alone.
        let head = "00000000 0200000000000000 0100000000000000 0100000000000000";
        let head: String = head.split_whitespace().collect();
        assert_eq!(hex::encode(&bytes[..28]), head);
        assert_eq!(&bytes[28..], &encode(&env).unwrap()[..]);
        assert_eq!(decode::<ToStandby>(&bytes).unwrap(), batch);
    }

    #[test]
    fn snapshot_frames() {
        check(
            SnapshotRequest::new(1 << 30),
            "7474782d736e6170 0000004000000000",
        );
        check(SnapshotAccepted { epoch: 2 }, "0200000000000000");
        check(
            SnapshotFrame::Preparing { elapsed_ms: 1000 },
            "00000000 e803000000000000",
        );
        check(
            SnapshotFrame::Header(SnapshotHeader {
                epoch: 2,
                position: 7,
                len: 4096,
                sha256: [0xab; 32],
                chunk_bytes: 262_144,
            }),
            "01000000 0200000000000000 0700000000000000 0010000000000000
             abababababababababababababababababababababababababababababababab
             00000400",
        );
        check(
            SnapshotFrame::Chunk(vec![1, 2, 3]),
            "02000000 0300000000000000 010203",
        );
        check(SnapshotFrame::End, "03000000");
    }

    #[test]
    fn an_open_body_is_a_subscription_unless_it_carries_the_snapshot_tag() {
        let sub = Subscribe {
            epoch: 2,
            from: 8,
            head_id: [7; 16],
            head_epoch: 2,
        };
        assert_eq!(
            decode_open(&encode(&sub).unwrap()).unwrap(),
            OpenRequest::Subscribe(sub)
        );
        let req = SnapshotRequest::new(5);
        assert_eq!(
            decode_open(&encode(&req).unwrap()).unwrap(),
            OpenRequest::Snapshot(req)
        );
        assert!(decode_open(b"ttx-snap").is_err());
        assert!(decode_open(&[1, 2, 3]).is_err());
    }

    #[test]
    fn verify_requests_and_answers() {
        check(
            ReplRequest::Digest {
                at_least: 7,
                wait_ms: 5000,
            },
            "00000000 0700000000000000 8813000000000000",
        );
        check(
            ReplRequest::Ranges {
                position: 7,
                table: 0,
                lo: 0,
                hi: 100,
                parts: 16,
            },
            "01000000 0700000000000000 00000000 0000000000000000 6400000000000000 10000000",
        );
        check(
            ReplRequest::Rows {
                position: 7,
                table: 1,
                lo: 96,
                hi: 100,
            },
            "02000000 0700000000000000 01000000 6000000000000000 6400000000000000",
        );
        check(
            ReplAnswer::Rows {
                position: 7,
                rows: vec![RowDigest {
                    key: "ticket #1".into(),
                    sha256: [0xcd; 32],
                }],
            },
            "02000000 0700000000000000 0100000000000000
             0900000000000000 7469636b6574202331
             cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
        );
    }

    #[test]
    fn rejoin_requests_and_answers() {
        check(
            ReplRequest::EventIds {
                positions: vec![7, 9],
            },
            "03000000 0200000000000000 0700000000000000 0900000000000000",
        );
        check(
            ReplAnswer::EventIds {
                role: "primary".into(),
                epoch: 2,
                head: 9,
                ids: vec![
                    Some(EventId {
                        id: [0xab; 16],
                        epoch: 1,
                    }),
                    None,
                ],
            },
            "03000000 0700000000000000 7072696d617279 0200000000000000 0900000000000000
             0200000000000000
             01 abababababababababababababababab 0100000000000000
             00",
        );
        check(
            ReplRequest::Review {
                node: "p".into(),
                envelopes: Vec::new(),
            },
            "04000000 0100000000000000 70 0000000000000000",
        );
        check(
            ReplAnswer::Reviewed {
                queued: 3,
                known: 1,
            },
            "04000000 03000000 01000000",
        );
    }

    #[test]
    fn unknown_variants_and_trailing_bytes_are_malformed() {
        let mut bytes = encode(&ToPrimary::Ack {
            epoch: 1,
            durable: 1,
            applied: 1,
        })
        .unwrap();
        assert!(decode::<ToPrimary>(&[bytes.as_slice(), &[0]].concat()).is_err());
        bytes[0] = 7;
        assert!(decode::<ToPrimary>(&bytes).is_err());
    }
}

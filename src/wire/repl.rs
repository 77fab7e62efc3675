//! The frames of `ttx-repl/1`: the hot standby's long-lived stream to its primary.
//!
//! The standby opens one long-lived stream (`Open` with a [`Subscribe`] body) and the primary
//! answers `Opened` with a [`Subscribed`] body or refuses. From then on the primary sends
//! [`ToStandby`] frames (batches of envelopes in position order, heartbeats when idle) and the
//! standby sends [`ToPrimary`] frames (acks of what it has durably and what it applied). Every
//! frame carries the sender's epoch: a node that sees a higher epoch than its own stops writing.
//!
//! Cloning uses the same ALPN: `Open` with a [`CloneRequest`] body, then the primary streams
//! [`SnapshotFrame`]s (a header with the snapshot's position, length and SHA-256, chunks, an end).

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
}

#[cfg(test)]
mod golden {
    //! Golden bytes of the replication frames: a change here is a protocol break.
    use super::*;
    use crate::wire::codec::{decode, encode};

    fn check<T>(msg: T, golden: &str)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let bytes = encode(&msg).unwrap();
        let want: String = golden.split_whitespace().collect();
        assert_eq!(hex::encode(&bytes), want, "{msg:?}");
        assert_eq!(decode::<T>(&bytes).unwrap(), msg);
    }

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

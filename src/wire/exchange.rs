//! The messages of the referral exchange (`ttx-exchange/1` request bodies): plain types only, so
//! the bytes are the contract. Ids are 16 raw bytes (a UUID in network byte order), times are unix
//! milliseconds, text is UTF-8.
//!
//! Every message travels on one directed edge (site → peer site) and carries that edge's sequence
//! number, its own id, the sender site's epoch and the referral it is about. The receiver applies a
//! message exactly once, in sequence order, and answers with the highest contiguous sequence it has
//! applied ([`Answer::Ack`]) or a refusal with a stable code ([`Refused`]).
//!
//! Evolution rule (as for every frame): bincode cannot add fields to a struct, so new content is a
//! new [`Body`] variant appended at the end, and a new protocol version where that is not enough.

use serde::{Deserialize, Serialize};

/// One message on a directed edge between two sites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The edge's sequence number: 1, 2, 3 … without gaps. It belongs to the sending site, so a
    /// promoted standby continues it. 0 is a *mark probe* (protocol §5c): below every real
    /// sequence, so the receiver answers it `Ack { up_to: applied }` and applies nothing.
    pub seq: u64,
    /// The message's own id (UUIDv7 bytes).
    pub id: [u8; 16],
    /// The sending site's epoch as the sending node knows it when it sends the message (at
    /// least the epoch the message was decided in): a promoted standby's retries of its
    /// predecessor's messages carry the new epoch, so the receiver learns it from them.
    pub epoch: u64,
    /// The referral the message is about (UUIDv7 bytes, chosen by the referring site).
    pub referral: [u8; 16],
    /// What the message says.
    pub body: Body,
}

/// What a message says. Variant indexes are stable: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Index 0, referrer → handler: please open a ticket of your own for this.
    Refer(Refer),
    /// Index 1, handler → referrer: stored durably, opened as our ticket `reference`.
    Opened {
        /// The handler's own ticket number.
        reference: i64,
    },
    /// Index 2, handler → referrer: accepted; work has started or will.
    Accepted,
    /// Index 3, handler → referrer: not ours to handle.
    Rejected {
        /// Why, for the referrer's history.
        reason: String,
    },
    /// Index 4, either way: a shared incident update, immutable and source-stamped.
    Note(SharedNote),
    /// Index 5, handler → referrer: the handler's ticket changed status.
    Status {
        /// The handler's status, mapped to the exchange's lifecycle.
        status: PartnerStatus,
    },
    /// Index 6, handler → referrer: fixed on the handler's side.
    Resolved {
        /// One line saying what fixed it.
        resolution: String,
        /// The key component, if the handler shares it.
        component: Option<String>,
    },
    /// Index 7, referrer → handler: the resolution holds; the referral is done.
    Close,
    /// Index 8, referrer → handler: the problem is back; reopen your ticket.
    Reopen {
        /// Why.
        reason: String,
    },
    /// Index 9, referrer → handler: withdrawn; no more work is wanted.
    Cancel {
        /// Why.
        reason: String,
    },
    /// Index 10, either way: a question; the other side answers with a shared note.
    InfoRequest {
        /// The question.
        question: String,
    },
    /// Index 11, either way, `ttx-exchange/2` only: one chunk of a shared attachment.
    Attachment(super::exchange_v2::AttachmentChunk),
}

impl Body {
    /// The message's name as logs and refusals print it.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Refer(_) => "refer",
            Body::Opened { .. } => "opened",
            Body::Accepted => "accepted",
            Body::Rejected { .. } => "rejected",
            Body::Note(_) => "note",
            Body::Status { .. } => "status",
            Body::Resolved { .. } => "resolved",
            Body::Close => "close",
            Body::Reopen { .. } => "reopen",
            Body::Cancel { .. } => "cancel",
            Body::InfoRequest { .. } => "info-request",
            Body::Attachment(_) => "attachment",
        }
    }
}

/// The referred ticket, as the referrer's sharing policy for this peer lets it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refer {
    /// The referrer's own ticket number (shown at the handler as `SITE#N`).
    pub number: i64,
    /// One-line subject.
    pub subject: String,
    /// Customer severity 1-4, if shared.
    pub severity: Option<u8>,
    /// NOC priority 1-4, if shared.
    pub priority: Option<u8>,
    /// When the problem started, if shared.
    pub problem_start: Option<i64>,
    /// The other shared header fields, by their canonical names (`circuit`, `cf.NAME` …), in
    /// name order.
    pub fields: Vec<(String, String)>,
    /// When the referrer wants an answer (accept or reject) by.
    pub respond_by: Option<i64>,
    /// A first shared note, if the referrer wrote one.
    pub note: Option<String>,
}

/// A shared note, stamped with the site and id it was first written with, so a chain of
/// referrals carries it without duplicating it and never sends it back where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedNote {
    /// The site where the note was written.
    pub origin_site: String,
    /// The note's id at that site.
    pub origin_id: [u8; 16],
    /// Who wrote it there.
    pub author: String,
    /// When it was written.
    pub at: i64,
    /// The text, verbatim.
    pub text: String,
}

/// A handler's ticket status as the exchange shows it. Variant indexes are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartnerStatus {
    /// Index 0: being worked.
    InProgress,
    /// Index 1: waiting on someone else (its own customer, or a partner further on).
    Waiting,
}

/// The receiver's answer to a [`Message`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// Index 0: everything up to and including `up_to` on this edge is applied durably.
    Ack {
        /// The highest contiguous sequence applied.
        up_to: u64,
    },
    /// Index 1: the message was not applied.
    Refused(Refused),
}

/// Why a message was not applied, with what the sender needs to recover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The stable code.
    pub code: ExchangeCode,
    /// For `OutOfOrder`: the sequence the receiver expects next.
    pub expected: Option<u64>,
    /// For `NotPrimary`: the address of the site's primary, when known.
    pub primary: Option<String>,
    /// For `Fenced` and `StaleEpoch`: the epoch the receiver knows; for `OutOfOrder`, the
    /// receiving node's own epoch (ttx sets it; a sender must accept `None`).
    pub epoch: Option<u64>,
}

/// Stable refusal codes of the exchange. Variant indexes are stable: append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExchangeCode {
    /// Index 0: this node is not its site's primary; try `primary`.
    NotPrimary,
    /// Index 1: this node was deposed (a higher epoch exists); it takes nothing.
    Fenced,
    /// Index 2: a gap: the receiver expects `expected` first.
    OutOfOrder,
    /// Index 3: the peer sends faster than its cap; retry later.
    RateLimited,
    /// Index 4: the referral exists but the sender is not party to it.
    NotParty,
    /// Index 5: no such referral.
    UnknownReferral,
    /// Index 6: the message makes no sense in the referral's state (e.g. resolved after a
    /// rejection).
    InvalidState,
    /// Index 7: the message is over the peer's size cap.
    TooLarge,
    /// Index 8: the sender's epoch is older than one already seen from its site (a deposed
    /// primary of the sending site).
    StaleEpoch,
    /// Index 9, `ttx-exchange/2` only: an attachment chunk that does not fit the attachment (a
    /// chunk past its total, over 256 KiB, not at the next offset, not matching the first
    /// chunk's description, a bad name) or whose bytes do not hash to its SHA-256. Nothing of
    /// the attachment is kept.
    BadAttachment,
}

impl ExchangeCode {
    /// The fixed, lowercase text sent with the code. Details stay in the receiver's log.
    pub fn text(self) -> &'static str {
        match self {
            ExchangeCode::NotPrimary => "not primary",
            ExchangeCode::Fenced => "fenced",
            ExchangeCode::OutOfOrder => "out of order",
            ExchangeCode::RateLimited => "rate limited",
            ExchangeCode::NotParty => "not party to this referral",
            ExchangeCode::UnknownReferral => "unknown referral",
            ExchangeCode::InvalidState => "invalid in the referral's state",
            ExchangeCode::TooLarge => "too large",
            ExchangeCode::StaleEpoch => "stale epoch",
            ExchangeCode::BadAttachment => "bad attachment",
        }
    }
}

impl Refused {
    /// A refusal with only its code.
    pub fn code(code: ExchangeCode) -> Self {
        Refused {
            code,
            expected: None,
            primary: None,
            epoch: None,
        }
    }
}

#[cfg(test)]
mod golden {
    //! Golden bytes for the exchange messages: a change here is a protocol break.
    use super::*;
    use crate::wire::codec::{decode, encode};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn check<T>(msg: T, golden: &str)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let bytes = encode(&msg).unwrap();
        let want: String = golden.split_whitespace().collect();
        assert_eq!(hex(&bytes), want, "{msg:?}");
        assert_eq!(decode::<T>(&bytes).unwrap(), msg);
    }

    const ID: [u8; 16] = [0x11; 16];
    const REF: [u8; 16] = [0x22; 16];

    #[test]
    fn opened() {
        check(
            Message {
                seq: 3,
                id: ID,
                epoch: 1,
                referral: REF,
                body: Body::Opened { reference: 42 },
            },
            "0300000000000000
             11111111111111111111111111111111
             0100000000000000
             22222222222222222222222222222222
             01000000 2a00000000000000",
        );
    }

    #[test]
    fn note() {
        check(
            Message {
                seq: 1,
                id: ID,
                epoch: 2,
                referral: REF,
                body: Body::Note(SharedNote {
                    origin_site: "b".into(),
                    origin_id: [0x33; 16],
                    author: "al".into(),
                    at: 1,
                    text: "up".into(),
                }),
            },
            "0100000000000000
             11111111111111111111111111111111
             0200000000000000
             22222222222222222222222222222222
             04000000
             0100000000000000 62
             33333333333333333333333333333333
             0200000000000000 616c
             0100000000000000
             0200000000000000 7570",
        );
    }

    #[test]
    fn refused_out_of_order() {
        check(
            Answer::Refused(Refused {
                code: ExchangeCode::OutOfOrder,
                expected: Some(7),
                primary: None,
                epoch: None,
            }),
            "01000000 02000000 01 0700000000000000 00 00",
        );
        check(Answer::Ack { up_to: 9 }, "00000000 0900000000000000");
    }

    /// The worked example of docs/protocol.md §5c: a referral with a shared field, a
    /// respond-by time and a first note.
    #[test]
    fn refer() {
        check(
            Message {
                seq: 1,
                id: ID,
                epoch: 1,
                referral: REF,
                body: Body::Refer(Refer {
                    number: 42,
                    subject: "down".into(),
                    severity: Some(1),
                    priority: None,
                    problem_start: None,
                    fields: vec![("circuit".into(), "C7".into())],
                    respond_by: Some(1_728_000_000_000),
                    note: Some("hi".into()),
                }),
            },
            "0100000000000000
             11111111111111111111111111111111
             0100000000000000
             22222222222222222222222222222222
             00000000
             2a00000000000000
             0400000000000000 646f776e
             01 01
             00
             00
             0100000000000000
             0700000000000000 63697263756974
             0200000000000000 4337
             01 0080d35492010000
             01 0200000000000000 6869",
        );
    }

    #[test]
    fn rejected_and_refusals_with_their_details() {
        check(
            Message {
                seq: 2,
                id: [0x33; 16],
                epoch: 1,
                referral: REF,
                body: Body::Rejected {
                    reason: "no".into(),
                },
            },
            "0200000000000000
             33333333333333333333333333333333
             0100000000000000
             22222222222222222222222222222222
             03000000 0200000000000000 6e6f",
        );
        check(
            Answer::Refused(Refused {
                epoch: Some(3),
                ..Refused::code(ExchangeCode::StaleEpoch)
            }),
            "01000000 08000000 00 00 01 0300000000000000",
        );
        check(
            Answer::Refused(Refused {
                primary: Some("b2".into()),
                ..Refused::code(ExchangeCode::NotPrimary)
            }),
            "01000000 00000000 00 01 0200000000000000 6232 00",
        );
    }

    /// The refusal a standby gives (docs/protocol.md §5c, "A site with a standby"): it names
    /// the primary's address and its epoch.
    #[test]
    fn not_primary_naming_the_primary() {
        check(
            Answer::Refused(Refused {
                primary: Some("10.0.0.1:4433".into()),
                epoch: Some(2),
                ..Refused::code(ExchangeCode::NotPrimary)
            }),
            "01000000 00000000 00 01 0d00000000000000 31302e302e302e313a34343333
             01 0200000000000000",
        );
    }

    /// The worked example's `Accepted`: seq 3, message id `44…44`, epoch 1.
    fn accepted_seq_3() -> Message {
        Message {
            seq: 3,
            id: [0x44; 16],
            epoch: 1,
            referral: REF,
            body: Body::Accepted,
        }
    }

    /// A whole `ttx-exchange/1` request frame as it goes on a QUIC stream: the frame length,
    /// `ClientFrame::Request` with its id, the message as the request body.
    #[test]
    fn accepted_in_a_request_frame() {
        let msg = accepted_seq_3();
        let req = crate::wire::ClientFrame::Request(crate::wire::Request {
            id: 5,
            body: encode(&msg).unwrap(),
        });
        let frame = crate::wire::codec::encode_framed(&req, 1 << 20).unwrap();
        let want: String = "00000048 02000000 0500000000000000 3400000000000000
             0300000000000000 44444444444444444444444444444444
             0100000000000000 22222222222222222222222222222222
             02000000"
            .split_whitespace()
            .collect();
        assert_eq!(hex(&frame), want);
    }

    /// An edge stream (§5c) as it goes on a QUIC stream: `Open` with request id 9 and an empty
    /// body, its `Opened`, then each frame the bare message (no `Request` wrapper) one way and
    /// the bare answer the other.
    #[test]
    fn an_edge_stream_open_a_message_and_a_cumulative_ack() {
        let framed = |frame: &dyn erased::Frame| hex(&frame.framed());
        let open = crate::wire::ClientFrame::Open(crate::wire::StreamOpen {
            id: 9,
            body: vec![],
        });
        let opened = crate::wire::ServerFrame::Opened(crate::wire::StreamOpened {
            id: 9,
            body: vec![],
        });
        let msg = accepted_seq_3();
        let want = |s: &str| s.split_whitespace().collect::<String>();
        assert_eq!(
            framed(&open),
            want("00000014 03000000 0900000000000000 0000000000000000")
        );
        assert_eq!(
            framed(&opened),
            want("00000014 05000000 0900000000000000 0000000000000000")
        );
        assert_eq!(
            framed(&msg),
            want(
                "00000034
                 0300000000000000 44444444444444444444444444444444
                 0100000000000000 22222222222222222222222222222222
                 02000000"
            )
        );
        assert_eq!(
            framed(&Answer::Ack { up_to: 3 }),
            want("0000000c 00000000 0300000000000000")
        );
    }

    mod erased {
        //! Any encodable frame, for the edge stream's golden test.
        pub trait Frame {
            fn framed(&self) -> Vec<u8>;
        }
        impl<T: serde::Serialize> Frame for T {
            fn framed(&self) -> Vec<u8> {
                crate::wire::codec::encode_framed(self, 1 << 20).unwrap()
            }
        }
    }

    #[test]
    fn unknown_body_variant_is_malformed() {
        let mut bytes = encode(&Message {
            seq: 1,
            id: ID,
            epoch: 1,
            referral: REF,
            body: Body::Accepted,
        })
        .unwrap();
        let at = bytes.len() - 4;
        bytes[at..].copy_from_slice(&99u32.to_le_bytes());
        assert!(decode::<Message>(&bytes).is_err());
    }
}

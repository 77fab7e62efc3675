//! Attachments on the exchange (`ttx-exchange/2`): what a partner's chunk does here, the
//! chunks a shared attachment is sent as, and what a `ttx-exchange/1` peer gets instead.
//!
//! The edge already delivers each chunk exactly once and in order (it is a message like any
//! other); this decides whether a chunk fits the attachment being received: the next offset,
//! within the total, within the size limits, a plain name. The writer checks the digest when
//! the last chunk is in, and drops the chunks so far on any refusal, so nothing is kept half way.

use uuid::Uuid;

use crate::model::attachment::{check_name, AttachmentMeta, CHUNK_BYTES};
use crate::wire::alpn::ProtocolId;
use crate::wire::exchange::{Body, ExchangeCode, Message};
use crate::wire::exchange_v2::{AttachmentChunk, MAX_CHUNK_BYTES};

/// What to do with a partner's attachment chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkDecision {
    /// Keep it; `last`: it completes the attachment (check the digest, then add it).
    Take {
        /// Whether it is the attachment's last chunk.
        last: bool,
    },
    /// The attachment is already on the ticket (it came another way round a chain): take the
    /// message, keep nothing.
    AlreadyHave,
    /// Refuse the message for good with this code; drop what was kept of the attachment.
    Refuse(ExchangeCode),
}

/// Decides a partner's chunk, given how many bytes of that attachment are kept (`written`),
/// whether it is complete already, and the largest attachment this site takes.
pub fn decide_chunk(
    c: &AttachmentChunk,
    written: u64,
    complete: bool,
    max_bytes: usize,
) -> ChunkDecision {
    use ChunkDecision::Refuse;
    if complete {
        return ChunkDecision::AlreadyHave;
    }
    if c.total > max_bytes as u64 {
        return Refuse(ExchangeCode::TooLarge);
    }
    let len = c.bytes.len() as u64;
    let bad = c.total == 0
        || len == 0
        || c.bytes.len() > MAX_CHUNK_BYTES
        || check_name(&c.name).is_err()
        || c.offset != written
        || c.offset.checked_add(len).is_none_or(|end| end > c.total);
    if bad {
        return Refuse(ExchangeCode::BadAttachment);
    }
    ChunkDecision::Take { last: c.is_last() }
}

/// The id this site gives an attachment arriving on `ticket`: derived from where it came from
/// and what it says it is, so the chunks of one attachment land together, the same attachment
/// arriving twice (round a chain) is recognised, and a chunk describing another attachment
/// never joins it.
pub fn receiving_id(ticket: Uuid, c: &AttachmentChunk) -> Uuid {
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    d.update(b"ttx-attachment\0");
    d.update(ticket.as_bytes());
    d.update(c.origin_site.as_bytes());
    d.update(&[0]);
    d.update(&c.origin_id);
    d.update(c.name.as_bytes());
    d.update(&[0]);
    d.update(&c.total.to_le_bytes());
    d.update(&c.sha256);
    let digest = d.finish();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest.as_ref()[..16]);
    Uuid::from_bytes(id)
}

/// The chunks a shared attachment is sent as, in order, written by `author` at `at`. They are
/// queued without their bytes (`bytes` empty): the outbox reads those from the store when the
/// message leaves, so the log holds the bytes once.
pub fn chunks_to_send(m: &AttachmentMeta, author: &str, at: i64) -> Vec<AttachmentChunk> {
    let mut sha256 = [0u8; 32];
    if let Ok(d) = hex::decode(&m.sha256) {
        if d.len() == 32 {
            sha256.copy_from_slice(&d);
        }
    }
    (0..m.size.div_ceil(CHUNK_BYTES as u64))
        .map(|i| AttachmentChunk {
            origin_site: m.origin_site.clone(),
            origin_id: *m.origin_id.as_bytes(),
            name: m.name.clone(),
            author: author.to_string(),
            at,
            total: m.size,
            sha256,
            offset: i * CHUNK_BYTES as u64,
            bytes: Vec::new(),
        })
        .collect()
}

/// How many bytes the chunk at `offset` of an attachment of `total` bytes holds.
pub fn chunk_len(offset: u64, total: u64) -> usize {
    total.saturating_sub(offset).min(CHUNK_BYTES as u64) as usize
}

/// `msg` as the negotiated protocol carries it: on `ttx-exchange/1` an attachment chunk becomes
/// the shared note naming the attachment (each chunk the same note, which the peer applies
/// once); everything else goes as it is.
pub fn for_protocol(msg: Message, protocol: ProtocolId) -> Message {
    match msg.body {
        Body::Attachment(c) if protocol.version < 2 => Message {
            body: Body::Note(c.as_v1_note()),
            ..msg
        },
        _ => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::alpn::{EXCHANGE_V1, EXCHANGE_V2};

    fn chunk(offset: u64, len: usize, total: u64) -> AttachmentChunk {
        AttachmentChunk {
            origin_site: "a".into(),
            origin_id: [1; 16],
            name: "cap.pcap".into(),
            author: "al".into(),
            at: 1,
            total,
            sha256: [2; 32],
            offset,
            bytes: vec![0; len],
        }
    }

    #[test]
    fn chunks_in_order_are_taken_and_the_last_completes() {
        assert_eq!(
            decide_chunk(&chunk(0, 10, 15), 0, false, 100),
            ChunkDecision::Take { last: false }
        );
        assert_eq!(
            decide_chunk(&chunk(10, 5, 15), 10, false, 100),
            ChunkDecision::Take { last: true }
        );
        assert_eq!(
            decide_chunk(&chunk(0, 15, 15), 15, true, 100),
            ChunkDecision::AlreadyHave
        );
    }

    #[test]
    fn bad_chunks_are_refused_with_stable_codes() {
        let bad = ChunkDecision::Refuse(ExchangeCode::BadAttachment);
        // past the total, out of order, duplicated, empty, over the chunk size
        assert_eq!(decide_chunk(&chunk(10, 6, 15), 10, false, 100), bad);
        assert_eq!(decide_chunk(&chunk(10, 5, 15), 0, false, 100), bad);
        assert_eq!(decide_chunk(&chunk(0, 10, 15), 10, false, 100), bad);
        assert_eq!(decide_chunk(&chunk(0, 0, 15), 0, false, 100), bad);
        let big = MAX_CHUNK_BYTES + 1;
        assert_eq!(
            decide_chunk(&chunk(0, big, big as u64), 0, false, 1 << 30),
            bad
        );
        let mut named = chunk(0, 1, 1);
        named.name = "../x".into();
        assert_eq!(decide_chunk(&named, 0, false, 100), bad);
        assert_eq!(
            decide_chunk(&chunk(0, 10, 101), 0, false, 100),
            ChunkDecision::Refuse(ExchangeCode::TooLarge)
        );
    }

    #[test]
    fn another_description_is_another_attachment() {
        let t = Uuid::from_u128(7);
        let a = chunk(0, 1, 15);
        let mut b = a.clone();
        assert_eq!(receiving_id(t, &a), receiving_id(t, &b));
        b.total = 16;
        assert_ne!(receiving_id(t, &a), receiving_id(t, &b));
        assert_ne!(receiving_id(t, &a), receiving_id(Uuid::from_u128(8), &a));
    }

    #[test]
    fn a_v1_peer_gets_the_same_named_note_for_every_chunk() {
        let msg = |offset| Message {
            seq: 1,
            id: [0; 16],
            epoch: 1,
            referral: [0; 16],
            body: Body::Attachment(chunk(offset, 1, 2)),
        };
        let (Body::Note(n0), Body::Note(n1)) = (
            for_protocol(msg(0), EXCHANGE_V1).body,
            for_protocol(msg(1), EXCHANGE_V1).body,
        ) else {
            panic!("not notes")
        };
        assert_eq!(n0, n1);
        assert!(
            n0.text.contains("attachment cap.pcap (2 bytes"),
            "{}",
            n0.text
        );
        assert!(matches!(
            for_protocol(msg(0), EXCHANGE_V2).body,
            Body::Attachment(_)
        ));
    }

    #[test]
    fn chunks_cover_the_attachment() {
        let m = AttachmentMeta {
            attachment_id: Uuid::from_u128(1),
            name: "x".into(),
            size: CHUNK_BYTES as u64 * 2 + 1,
            sha256: "ab".repeat(32),
            shared: true,
            origin_site: "a".into(),
            origin_id: Uuid::from_u128(1),
        };
        let c = chunks_to_send(&m, "al", 5);
        assert_eq!(c.len(), 3);
        assert_eq!(c[2].offset, CHUNK_BYTES as u64 * 2);
        assert_eq!(chunk_len(c[2].offset, m.size), 1);
        assert_eq!(c[0].sha256, [0xab; 32]);
    }
}

//! The shipping envelope: how one event of a site's log travels between the nodes of the site.
//!
//! The envelope is frozen for `ttx-repl/1`: eleven fields in a fixed order, encoded with the
//! protocol's codec (bincode legacy: fixed-size little-endian integers, `u64` length prefixes).
//! What happened travels as `kind` (the event kind's stable name) and `body` (the store's own
//! JSON bytes for it), so the model's event types can grow new fields and kinds without a new
//! protocol version; a change to the envelope itself needs a new ALPN (`ttx-repl/2`).
//! `docs/protocol.md` shows its bytes; the golden test below pins them.

use serde::{Deserialize, Serialize};

/// One event as shipped: its site position and identity, then the body as JSON bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Position in the site's log (1, 2, 3, ... without gaps, the same on every node).
    pub position: u64,
    /// The event's UUIDv7, as its 16 bytes.
    pub id: [u8; 16],
    /// The site it was written in.
    pub origin_site: String,
    /// The node that wrote it.
    pub origin_node: String,
    /// The epoch it was written in.
    pub epoch: u64,
    /// The writing node's own sequence number for it (gapless per node).
    pub origin_seq: u64,
    /// When it was written (unix milliseconds).
    pub at: i64,
    /// The operator (or `system`) it was written for.
    pub actor: String,
    /// The ticket it is about, as its 16 bytes; `None` for site-level events.
    pub ticket: Option<[u8; 16]>,
    /// The event kind's stable name (`created`, `note`, ...).
    pub kind: String,
    /// The event kind's JSON, exactly as the writing node's store holds it.
    #[serde(with = "super::bytes")]
    pub body: Vec<u8>,
}

/// An envelope of site `a` at `position` with a `body_len`-byte body, for unit tests that need
/// envelopes, not events (the backlog, the spool).
#[cfg(test)]
pub(crate) fn sample(position: u64, body_len: usize) -> Envelope {
    Envelope {
        position,
        id: [position as u8; 16],
        origin_site: "a".into(),
        origin_node: "p".into(),
        epoch: 1,
        origin_seq: position,
        at: 1,
        actor: "x".into(),
        ticket: None,
        kind: "k".into(),
        body: vec![b'x'; body_len],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::{decode, encode};
    use crate::wire::golden::unhex;

    /// The example of `docs/protocol.md`, "The shipping envelope".
    const GOLDEN_NOTE: &str = "
        0700000000000000
        0192d2f0a0007000800000000000002a
        0500000000000000 6e6f632d61
        0700000000000000 7072696d617279
        0200000000000000
        0500000000000000
        0080d35492010000
        0500000000000000 616c696365
        01 0192d2f0a00070008000000000000001
        0400000000000000 6e6f7465
        1000000000000000 7b224e6f74654164646564223a7b7d7d";

    fn note() -> Envelope {
        Envelope {
            position: 7,
            id: [
                0x01, 0x92, 0xd2, 0xf0, 0xa0, 0x00, 0x70, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0x2a,
            ],
            origin_site: "noc-a".into(),
            origin_node: "primary".into(),
            epoch: 2,
            origin_seq: 5,
            at: 1_728_000_000_000,
            actor: "alice".into(),
            ticket: Some([
                0x01, 0x92, 0xd2, 0xf0, 0xa0, 0x00, 0x70, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0x01,
            ]),
            kind: "note".into(),
            body: br#"{"NoteAdded":{}}"#.to_vec(),
        }
    }

    #[test]
    fn golden_bytes_of_the_envelope() {
        let bytes = encode(&note()).unwrap();
        assert_eq!(hex::encode(&bytes), hex::encode(unhex(GOLDEN_NOTE)));
        assert_eq!(decode::<Envelope>(&bytes).unwrap(), note());
    }

    /// `docs/protocol.md` shows exactly these bytes.
    #[test]
    fn the_protocol_doc_shows_the_golden_envelope() {
        let doc = include_str!("../../docs/protocol.md");
        let section = doc
            .split("### The shipping envelope")
            .nth(1)
            .expect("the envelope's section");
        let block = section.split("```").nth(1).expect("its example");
        let is_byte = |t: &&str| t.len() == 2 && t.bytes().all(|b| b.is_ascii_hexdigit());
        let shown: String = block
            .lines()
            .flat_map(|l| l.split_whitespace().take_while(is_byte).collect::<Vec<_>>())
            .collect();
        assert_eq!(shown, hex::encode(unhex(GOLDEN_NOTE)));
    }

    #[test]
    fn a_site_level_envelope_has_a_zero_ticket_tag() {
        let mut e = note();
        e.ticket = None;
        let bytes = encode(&e).unwrap();
        // position(8) id(16) site(8+5) node(8+7) epoch(8) seq(8) at(8) actor(8+5), then the tag.
        assert_eq!(bytes[8 + 16 + 13 + 15 + 8 + 8 + 8 + 13], 0);
        assert_eq!(decode::<Envelope>(&bytes).unwrap(), e);
    }

    #[test]
    fn truncated_or_padded_envelopes_are_malformed() {
        let bytes = encode(&note()).unwrap();
        assert!(decode::<Envelope>(&bytes[..bytes.len() - 1]).is_err());
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(decode::<Envelope>(&padded).is_err());
    }
}

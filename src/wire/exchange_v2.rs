//! What `ttx-exchange/2` adds to `ttx-exchange/1`: attachments, sent in chunks.
//!
//! Every `ttx-exchange/1` message is valid in `ttx-exchange/2`, byte for byte. Version 2 adds
//! one [`Body`](super::exchange::Body) variant, `Attachment` (index 11), carrying one
//! [`AttachmentChunk`], and one refusal code, `BadAttachment` (index 9). An attachment of `total`
//! bytes travels as consecutive messages of the edge (each with its own `seq`, applied exactly
//! once and in order like any other), their `offset`s 0, then the previous offset plus the
//! previous chunk's length, until `offset + len(bytes) == total`; every chunk repeats the
//! attachment's description (`origin_*`, `name`, `author`, `at`, `total`, `sha256`). The
//! receiver holds the chunks durably and the attachment exists on its ticket only once the last
//! chunk is in and the bytes hash to `sha256`. A peer that speaks only `ttx-exchange/1` is sent
//! a shared note naming the attachment instead of each chunk: the same origin stamp in each, so
//! it applies the note once (`docs/protocol.md` §5e).

use serde::{Deserialize, Serialize};

/// The largest `bytes` of one chunk a receiver takes (256 KiB); a longer one is refused
/// `BadAttachment`.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// One chunk of an attachment (`Body::Attachment`, index 11, `ttx-exchange/2` only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentChunk {
    /// The site where the file was attached.
    pub origin_site: String,
    /// Its id there (a UUID's 16 bytes).
    pub origin_id: [u8; 16],
    /// The file name (a plain name: no `/`, `\`, control characters, not `.` or `..`).
    pub name: String,
    /// Who attached it there.
    pub author: String,
    /// When it was attached (unix ms).
    pub at: i64,
    /// The attachment's whole length in bytes.
    pub total: u64,
    /// SHA-256 of all `total` bytes.
    pub sha256: [u8; 32],
    /// Where `bytes` start in the attachment.
    pub offset: u64,
    /// The chunk: at most [`MAX_CHUNK_BYTES`], and `offset + len <= total`.
    pub bytes: Vec<u8>,
}

impl AttachmentChunk {
    /// Whether this is the attachment's last chunk.
    pub fn is_last(&self) -> bool {
        self.offset.saturating_add(self.bytes.len() as u64) == self.total
    }

    /// The shared note a `ttx-exchange/1` peer gets instead of this chunk: the attachment's
    /// origin stamp (so a peer applies it once however many chunks it stands for) and a text
    /// naming it.
    pub fn as_v1_note(&self) -> super::exchange::SharedNote {
        super::exchange::SharedNote {
            origin_site: self.origin_site.clone(),
            origin_id: self.origin_id,
            author: self.author.clone(),
            at: self.at,
            text: v1_note_text(&self.name, self.total, &self.sha256),
        }
    }
}

/// The text of the shared note that stands for an attachment on `ttx-exchange/1`.
pub fn v1_note_text(name: &str, total: u64, sha256: &[u8; 32]) -> String {
    format!(
        "attachment {name} ({total} bytes, sha256 {}): attachment not sent: peer speaks ttx-exchange/1",
        hex::encode(sha256)
    )
}

#[cfg(test)]
mod golden {
    //! Golden bytes of what `ttx-exchange/2` adds: a change here is a protocol break.
    use super::*;
    use crate::wire::codec::{decode, encode};
    use crate::wire::exchange::{Answer, Body, ExchangeCode, Message, Refused};

    fn check<T>(msg: T, golden: &str)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let bytes = encode(&msg).unwrap();
        let want: String = golden.split_whitespace().collect();
        assert_eq!(hex::encode(&bytes), want, "{msg:?}");
        assert_eq!(decode::<T>(&bytes).unwrap(), msg);
    }

    /// The worked example of docs/protocol.md §5e: a 5-byte file `hello` sent as two chunks.
    fn chunk(offset: u64, bytes: &[u8]) -> Message {
        Message {
            seq: 4 + offset / 3,
            id: [0x55; 16],
            epoch: 1,
            referral: [0x22; 16],
            body: Body::Attachment(AttachmentChunk {
                origin_site: "a".into(),
                origin_id: [0x66; 16],
                name: "c.txt".into(),
                author: "al".into(),
                at: 1,
                total: 5,
                sha256: [0xab; 32],
                offset,
                bytes: bytes.to_vec(),
            }),
        }
    }

    #[test]
    fn first_chunk() {
        check(
            chunk(0, b"hel"),
            "0400000000000000
             55555555555555555555555555555555
             0100000000000000
             22222222222222222222222222222222
             0b000000
             0100000000000000 61
             66666666666666666666666666666666
             0500000000000000 632e747874
             0200000000000000 616c
             0100000000000000
             0500000000000000
             abababababababababababababababababababababababababababababababab
             0000000000000000
             0300000000000000 68656c",
        );
    }

    #[test]
    fn last_chunk() {
        let m = chunk(3, b"lo");
        let Body::Attachment(c) = &m.body else {
            unreachable!()
        };
        assert!(c.is_last());
        check(
            m,
            "0500000000000000
             55555555555555555555555555555555
             0100000000000000
             22222222222222222222222222222222
             0b000000
             0100000000000000 61
             66666666666666666666666666666666
             0500000000000000 632e747874
             0200000000000000 616c
             0100000000000000
             0500000000000000
             abababababababababababababababababababababababababababababababab
             0300000000000000
             0200000000000000 6c6f",
        );
    }

    /// The frame of docs/protocol.md §5e: the first chunk as request 9 on its stream.
    #[test]
    fn first_chunk_in_a_request_frame() {
        let body = encode(&chunk(0, b"hel")).unwrap();
        assert_eq!(body.len(), 167);
        let req = crate::wire::ClientFrame::Request(crate::wire::Request { id: 9, body });
        let frame = crate::wire::codec::encode_framed(&req, 1 << 20).unwrap();
        assert_eq!(
            hex::encode(&frame[..24]),
            "000000bb 02000000 0900000000000000 a700000000000000".replace(' ', "")
        );
        assert_eq!(frame.len(), 4 + 187);
    }

    #[test]
    fn bad_attachment_refusal() {
        check(
            Answer::Refused(Refused::code(ExchangeCode::BadAttachment)),
            "01000000 09000000 00 00 00",
        );
    }

    #[test]
    fn the_v1_note_names_the_attachment() {
        let Body::Attachment(c) = chunk(0, b"hel").body else {
            unreachable!()
        };
        let note = c.as_v1_note();
        assert_eq!(
            (note.origin_site.as_str(), note.origin_id),
            ("a", [0x66; 16])
        );
        assert_eq!(
            note.text,
            format!(
                "attachment c.txt (5 bytes, sha256 {}): attachment not sent: peer speaks ttx-exchange/1",
                "ab".repeat(32)
            )
        );
    }
}

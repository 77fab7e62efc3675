//! Attachments: a file on a ticket (a pasted capture, a router config), bounded in size, stored
//! in the site log as events so that a promoted standby holds them too.
//!
//! An attachment is written as `AttachmentChunk` events (at most [`CHUNK_BYTES`] each, the
//! bytes as base64 in the event's JSON, so every event fits the shipping envelope's frame) and
//! then one `AttachmentAdded` event naming its size and SHA-256; all of them in one transaction.
//! The applier checks the chunks against the size and digest before the attachment exists, so a
//! half-written attachment is never visible. Like notes, an attachment is internal unless made
//! shared: internal attachments never leave the site.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::CommandError;
use super::event::EventKind;

/// The largest chunk of an attachment in one event (and in one `ttx-exchange/2` message):
/// 256 KiB, about 342 KiB as base64.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Longest attachment name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// What an attachment event records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttachmentRecord {
    /// The next bytes of an attachment being written (a site event, not shown in the history).
    Chunk {
        /// The attachment.
        attachment_id: Uuid,
        /// Where these bytes start.
        offset: u64,
        /// The bytes.
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// Every chunk is written: the attachment exists on the ticket.
    Added(AttachmentMeta),
    /// A partner starts sending an attachment (`ttx-exchange/2`, a site event written with its
    /// first chunk): until it is added or discarded, its chunks count against what this site
    /// holds for that peer, and it is dropped if the referral ends first.
    Receiving {
        /// The attachment (its id here).
        attachment_id: Uuid,
        /// The partner site sending it.
        peer: String,
        /// The referral it arrives on.
        referral: Uuid,
    },
    /// An attachment a partner was sending was refused part way (a bad chunk, a wrong digest):
    /// its chunks so far are dropped, so nothing of it is kept (a site event).
    Discarded {
        /// The attachment.
        attachment_id: Uuid,
    },
}

/// An attachment as a ticket lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    /// Its id at this site.
    pub attachment_id: Uuid,
    /// The file name it was attached as (no directories).
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// Shared with partners (false: internal, the default).
    pub shared: bool,
    /// The site where it was first attached (this site, or the partner it came from).
    pub origin_site: String,
    /// Its id at that site.
    pub origin_id: Uuid,
}

impl AttachmentRecord {
    /// The event kind's stable name.
    pub fn name(&self) -> &'static str {
        match self {
            AttachmentRecord::Chunk { .. } => "attachment-chunk",
            AttachmentRecord::Added(_) => "attachment",
            AttachmentRecord::Receiving { .. } => "attachment-receiving",
            AttachmentRecord::Discarded { .. } => "attachment-discarded",
        }
    }

    /// The history line (`attached capture.pcap (1234 bytes, internal)`).
    pub fn describe(&self) -> Option<String> {
        match self {
            AttachmentRecord::Chunk { .. }
            | AttachmentRecord::Receiving { .. }
            | AttachmentRecord::Discarded { .. } => None,
            AttachmentRecord::Added(m) => Some(format!(
                "attached {} ({} bytes, {}, sha256 {})",
                m.name,
                m.size,
                if m.shared { "shared" } else { "internal" },
                &m.sha256[..m.sha256.len().min(12)]
            )),
        }
    }
}

/// SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// Checks an attachment's name: a plain file name (no `/`, `\`, control characters, not `.` or
/// `..`), 1 to [`MAX_NAME_BYTES`] bytes.
pub fn check_name(name: &str) -> Result<(), CommandError> {
    let bad = |why: &str| {
        Err(CommandError::Invalid(format!(
            "attachment name {name:?} {why}: give a plain file name (no directories)"
        )))
    };
    if name.is_empty() || name.trim() != name {
        return bad("is empty or has leading or trailing spaces");
    }
    if name.len() > MAX_NAME_BYTES {
        return bad(&format!("is over {MAX_NAME_BYTES} bytes"));
    }
    if name == "." || name == ".." || name.contains(['/', '\\']) {
        return bad("names a directory");
    }
    if name.chars().any(char::is_control) {
        return bad("has control characters");
    }
    Ok(())
}

/// Decides the events of attaching `data` as `name` at site `site`: the chunks, then the
/// attachment. Refuses an empty or oversize file (`max_bytes`, `limits.max_attachment_bytes`)
/// and a bad name.
pub fn decide_attach(
    site: &str,
    name: &str,
    data: &[u8],
    shared: bool,
    max_bytes: usize,
) -> Result<(Uuid, Vec<EventKind>), CommandError> {
    check_name(name)?;
    if data.is_empty() {
        return Err(CommandError::Invalid(format!(
            "attachment {name:?} is empty: nothing to attach"
        )));
    }
    if data.len() > max_bytes {
        return Err(CommandError::Invalid(format!(
            "attachment {name:?} is {} bytes, at most {max_bytes} allowed (limits.max_attachment_bytes)",
            data.len()
        )));
    }
    let attachment_id = Uuid::now_v7();
    let mut events: Vec<EventKind> = data
        .chunks(CHUNK_BYTES)
        .enumerate()
        .map(|(i, chunk)| EventKind::Attachment {
            record: AttachmentRecord::Chunk {
                attachment_id,
                offset: (i * CHUNK_BYTES) as u64,
                data: chunk.to_vec(),
            },
        })
        .collect();
    events.push(EventKind::Attachment {
        record: AttachmentRecord::Added(AttachmentMeta {
            attachment_id,
            name: name.to_string(),
            size: data.len() as u64,
            sha256: sha256_hex(data),
            shared,
            origin_site: site.to_string(),
            origin_id: attachment_id,
        }),
    });
    Ok((attachment_id, events))
}

/// Serde for bytes as one base64 string (standard alphabet, padded): a third larger than the
/// bytes, where serde_json's default (an array of numbers) is up to four times.
pub mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the bytes as base64.
    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    /// Reads base64 into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_then_the_attachment() {
        let data = vec![7u8; CHUNK_BYTES * 2 + 5];
        let (id, events) = decide_attach("noc-a", "cap.pcap", &data, false, 1 << 24).unwrap();
        assert_eq!(events.len(), 4);
        let mut joined = Vec::new();
        for (i, e) in events[..3].iter().enumerate() {
            let EventKind::Attachment {
                record:
                    AttachmentRecord::Chunk {
                        attachment_id,
                        offset,
                        data,
                    },
            } = e
            else {
                panic!("not a chunk: {e:?}")
            };
            assert_eq!((*attachment_id, *offset), (id, (i * CHUNK_BYTES) as u64));
            joined.extend_from_slice(data);
        }
        assert_eq!(joined, data);
        let EventKind::Attachment {
            record: AttachmentRecord::Added(m),
        } = &events[3]
        else {
            panic!("not the attachment")
        };
        assert_eq!(
            (m.size, m.sha256.as_str()),
            (data.len() as u64, &*sha256_hex(&data))
        );
        assert!(!m.shared);
    }

    #[test]
    fn bad_names_empty_and_oversize_are_refused() {
        for name in ["", " a", "a/b", "..", "a\\b", "a\nb", &"x".repeat(256)] {
            assert!(
                decide_attach("s", name, b"x", false, 10).is_err(),
                "{name:?}"
            );
        }
        let err = decide_attach("s", "a", b"", false, 10).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = decide_attach("s", "a", &[0; 11], false, 10).unwrap_err();
        assert!(
            err.to_string()
                .contains("at most 10 allowed (limits.max_attachment_bytes)"),
            "{err}"
        );
    }

    #[test]
    fn chunk_json_is_base64() {
        let e = EventKind::Attachment {
            record: AttachmentRecord::Chunk {
                attachment_id: Uuid::nil(),
                offset: 0,
                data: b"hi!".to_vec(),
            },
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""data":"aGkh""#), "{json}");
        assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), e);
    }
}

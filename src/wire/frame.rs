//! Framing: a 4-byte big-endian length prefix, then that many payload bytes.
//!
//! Decoding checks the announced length against the configured maximum *before* allocating or
//! waiting for the payload, and refuses truncated input.

use super::WireError;

/// Size of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Hard ceiling on any frame whatever the configuration says (64 MiB); the codec's size limit.
pub const FRAME_CEILING: u32 = 64 * 1024 * 1024;

/// The effective maximum: the configured one, never above [`FRAME_CEILING`].
pub fn effective_max(max: u32) -> u32 {
    max.min(FRAME_CEILING)
}

/// Reads and checks a length prefix: the payload length, or `TooLarge` if it exceeds `max`.
pub fn read_len_prefix(prefix: [u8; LEN_PREFIX], max: u32) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix);
    let max = effective_max(max);
    if len > max {
        return Err(WireError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    Ok(len as usize)
}

/// Prefixes `payload` with its length; refuses a payload over `max`.
pub fn encode_frame(payload: &[u8], max: u32) -> Result<Vec<u8>, WireError> {
    let max = effective_max(max);
    if payload.len() as u64 > u64::from(max) {
        return Err(WireError::TooLarge {
            len: payload.len() as u64,
            max,
        });
    }
    let mut out = Vec::with_capacity(LEN_PREFIX + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Splits one frame off the front of `buf`: the payload and the number of bytes consumed.
pub fn decode_frame(buf: &[u8], max: u32) -> Result<(&[u8], usize), WireError> {
    let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
        return Err(WireError::Truncated {
            needed: LEN_PREFIX - buf.len(),
        });
    };
    let len = read_len_prefix(*prefix, max)?;
    let rest = &buf[LEN_PREFIX..];
    if rest.len() < len {
        return Err(WireError::Truncated {
            needed: len - rest.len(),
        });
    }
    Ok((&rest[..len], LEN_PREFIX + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let f = encode_frame(b"abc", 1024).unwrap();
        assert_eq!(f, [0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(decode_frame(&f, 1024).unwrap(), (&b"abc"[..], 7));
    }

    #[test]
    fn refuses_oversize_before_payload() {
        // Only the prefix is present: the size is refused without waiting for the payload.
        let e = decode_frame(&[0xff, 0xff, 0xff, 0xff], 1024).unwrap_err();
        assert_eq!(
            e,
            WireError::TooLarge {
                len: u64::from(u32::MAX),
                max: 1024
            }
        );
        assert!(encode_frame(&[0; 2000], 1024).is_err());
    }

    #[test]
    fn refuses_truncated() {
        assert_eq!(
            decode_frame(&[0, 0], 1024).unwrap_err(),
            WireError::Truncated { needed: 2 }
        );
        assert_eq!(
            decode_frame(&[0, 0, 0, 5, 1], 1024).unwrap_err(),
            WireError::Truncated { needed: 4 }
        );
    }
}

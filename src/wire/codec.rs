//! The one place bincode is called.
//!
//! bincode 2.0.1 (pinned) through its serde layer with the legacy (bincode 1.x) configuration:
//! little-endian fixed-size integers, `u64` length prefixes for strings and sequences, `u32` enum
//! variant indexes, plus an explicit size limit so a claimed length can never make the decoder
//! allocate more than [`FRAME_CEILING`](super::FRAME_CEILING) bytes. wincode writes the same bytes
//! and can replace this module without touching the message types.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use serde::{de::DeserializeOwned, Serialize};

use super::frame::{effective_max, LEN_PREFIX};
use super::WireError;

/// The codec's size limit in bytes (the frame ceiling).
pub const CODEC_LIMIT: usize = super::FRAME_CEILING as usize;

type Config = Configuration<LittleEndian, Fixint, Limit<CODEC_LIMIT>>;

fn config() -> Config {
    bincode::config::legacy().with_limit::<CODEC_LIMIT>()
}

/// Encodes a message to its payload bytes.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    bincode::serde::encode_to_vec(msg, config()).map_err(|e| WireError::Encode(e.to_string()))
}

/// Decodes a payload; every byte must be used (trailing bytes are malformed).
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, WireError> {
    let (msg, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(WireError::Malformed(format!(
            "{} bytes left over after the message",
            payload.len() - used
        )));
    }
    Ok(msg)
}

/// Encodes a message as a whole frame (length prefix + payload), refusing one over `max`.
pub fn encode_framed<T: Serialize>(msg: &T, max: u32) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    encode_framed_into(msg, max, &mut out)?;
    Ok(out)
}

/// [`encode_framed`] into a buffer the caller reuses (cleared first), for streams that send
/// many frames.
pub fn encode_framed_into<T: Serialize>(
    msg: &T,
    max: u32,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    // Encode behind a placeholder prefix, then patch the length in: one buffer, no copy.
    out.clear();
    out.extend_from_slice(&[0u8; LEN_PREFIX]);
    bincode::serde::encode_into_std_write(msg, &mut *out, config())
        .map_err(|e| WireError::Encode(e.to_string()))?;
    let len = out.len() - LEN_PREFIX;
    let max = effective_max(max);
    if len as u64 > u64::from(max) {
        return Err(WireError::TooLarge {
            len: len as u64,
            max,
        });
    }
    out[..LEN_PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Decodes exactly one whole frame from `buf` (nothing may follow it).
pub fn decode_framed<T: DeserializeOwned>(buf: &[u8], max: u32) -> Result<T, WireError> {
    let (payload, used) = super::frame::decode_frame(buf, effective_max(max))?;
    if used != buf.len() {
        return Err(WireError::Malformed(format!(
            "{} bytes after the frame",
            buf.len() - used
        )));
    }
    decode(payload)
}

//! Reading and writing one frame on a QUIC stream, bounded by the configured maximum.

use serde::{de::DeserializeOwned, Serialize};

use super::NetError;
use crate::wire::codec;
use crate::wire::{read_len_prefix, WireError, LEN_PREFIX};

/// Reads one frame: the prefix first (refused before the payload if it is too large), then
/// exactly the announced payload.
pub(crate) async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: u32,
) -> Result<T, NetError> {
    let mut prefix = [0u8; LEN_PREFIX];
    read_exact(recv, &mut prefix).await?;
    let len = read_len_prefix(prefix, max)?;
    let mut payload = vec![0u8; len];
    read_exact(recv, &mut payload).await?;
    Ok(codec::decode(&payload)?)
}

/// Reads the one frame a request stream carries, then its end: bytes after the frame are
/// `malformed` (one frame per stream), and the frame is used only once the sender finished.
pub(crate) async fn read_only_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: u32,
) -> Result<T, NetError> {
    let frame = read_frame(recv, max).await?;
    match recv.read(&mut [0u8; 1]).await? {
        None => Ok(frame),
        Some(_) => Err(NetError::Wire(WireError::Malformed(
            "bytes after the frame (one frame per stream)".into(),
        ))),
    }
}

async fn read_exact(recv: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<(), NetError> {
    match recv.read_exact(buf).await {
        Ok(()) => Ok(()),
        Err(quinn::ReadExactError::FinishedEarly(n)) => Err(NetError::Wire(WireError::Truncated {
            needed: buf.len() - n,
        })),
        Err(quinn::ReadExactError::ReadError(e)) => Err(e.into()),
    }
}

/// Writes one frame and finishes the stream.
pub(crate) async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
    max: u32,
) -> Result<(), NetError> {
    let bytes = codec::encode_framed(msg, max)?;
    send.write_all(&bytes).await?;
    // Finishing twice or after a reset is harmless here.
    let _ = send.finish();
    Ok(())
}

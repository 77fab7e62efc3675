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

/// Fills `buf` from the stream; the stream ending first is a truncated frame.
pub(crate) async fn read_exact(
    recv: &mut quinn::RecvStream,
    buf: &mut [u8],
) -> Result<(), NetError> {
    match recv.read_exact(buf).await {
        Ok(()) => Ok(()),
        Err(quinn::ReadExactError::FinishedEarly(n)) => Err(NetError::Wire(WireError::Truncated {
            needed: buf.len() - n,
        })),
        Err(quinn::ReadExactError::ReadError(e)) => Err(e.into()),
    }
}

/// Writes one frame and leaves the stream open (the first frame of a long-lived stream).
pub(crate) async fn write_frame_open<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
    max: u32,
) -> Result<(), NetError> {
    let bytes = codec::encode_framed(msg, max)?;
    send.write_all(&bytes).await?;
    Ok(())
}

/// Writes one frame and finishes the stream.
pub(crate) async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
    max: u32,
) -> Result<(), NetError> {
    write_frame_open(send, msg, max).await?;
    // Finishing twice or after a reset is harmless here.
    let _ = send.finish();
    Ok(())
}

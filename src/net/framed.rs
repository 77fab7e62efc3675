//! Long-lived framed streams: many frames each way on one QUIC bidirectional stream, for
//! replication batches and acks, a snapshot sent in chunks, or pushes the server starts.
//!
//! A stream is opened by either side of a connection after Hello with
//! [`Peer::open_stream`](super::Peer::open_stream): the opener sends `Open` (a protocol-defined
//! body), the other side's [`Handler::stream`](super::Handler::stream) accepts it and gets the
//! other end. After `Opened`, each frame is the usual 4-byte big-endian length prefix and a
//! payload encoded by the codec, with the protocol's own message type. A side that has nothing
//! more to send finishes its half; the other then reads `None`.
//!
//! Flow control and backpressure are QUIC's: [`FramedSend::send`] waits while the peer's stream
//! and connection windows are full, so a slow reader slows the writer down instead of filling
//! memory. Every received frame is bounded by the protocol's [`ProtocolLimits`], checked from the
//! prefix before anything is allocated, and every wait for a frame by its idle timeout.

use std::marker::PhantomData;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use super::registry::code_varint;
use super::stream::read_exact;
use super::NetError;
use crate::wire::{codec, read_len_prefix, ErrorCode, LEN_PREFIX};

/// Frame limits a protocol declares for itself (the transport's `max_frame_bytes` still caps
/// requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolLimits {
    /// Largest request or response frame of the protocol.
    pub max_request_bytes: u32,
    /// Largest frame on the protocol's long-lived streams.
    pub max_stream_frame_bytes: u32,
    /// Longest wait for the next frame on a long-lived stream (the protocol sends heartbeats
    /// when it has nothing else to say).
    pub stream_idle_timeout: Duration,
}

impl Default for ProtocolLimits {
    /// 16 MiB requests, 1 MiB stream frames, 60 s between frames.
    fn default() -> Self {
        Self {
            max_request_bytes: 16 * 1024 * 1024,
            max_stream_frame_bytes: 1024 * 1024,
            stream_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Both halves of a long-lived stream carrying `Out` frames out and `In` frames in.
#[derive(Debug)]
pub struct FramedStream<Out, In> {
    /// The sending half.
    pub send: FramedSend<Out>,
    /// The receiving half.
    pub recv: FramedRecv<In>,
}

/// The sending half of a long-lived stream.
#[derive(Debug)]
pub struct FramedSend<T> {
    stream: quinn::SendStream,
    max: u32,
    buf: Vec<u8>,
    _frames: PhantomData<fn(T)>,
}

/// The receiving half of a long-lived stream.
#[derive(Debug)]
pub struct FramedRecv<T> {
    stream: quinn::RecvStream,
    max: u32,
    idle: Duration,
    buf: Vec<u8>,
    _frames: PhantomData<fn() -> T>,
}

impl<Out: Serialize, In: DeserializeOwned> FramedStream<Out, In> {
    /// Wraps an open QUIC stream whose `Open`/`Opened` exchange is done.
    pub(crate) fn new(
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        limits: &ProtocolLimits,
    ) -> Self {
        Self {
            send: FramedSend {
                stream: send,
                max: limits.max_stream_frame_bytes,
                buf: Vec::new(),
                _frames: PhantomData,
            },
            recv: FramedRecv {
                stream: recv,
                max: limits.max_stream_frame_bytes,
                idle: limits.stream_idle_timeout,
                buf: Vec::new(),
                _frames: PhantomData,
            },
        }
    }

    /// Splits into halves (one task sends, another receives).
    pub fn split(self) -> (FramedSend<Out>, FramedRecv<In>) {
        (self.send, self.recv)
    }
}

impl<T: Serialize> FramedSend<T> {
    /// Sends one frame; waits while QUIC's flow control says the peer is not keeping up.
    pub async fn send(&mut self, frame: &T) -> Result<(), NetError> {
        codec::encode_framed_into(frame, self.max, &mut self.buf)?;
        self.stream.write_all(&self.buf).await?;
        Ok(())
    }

    /// Writes `bytes` as they are, bypassing the codec and the frame limit: only for tests
    /// that play a broken peer (a truncated frame, a bad length prefix, garbage).
    #[doc(hidden)]
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Says that no more frames follow (the peer reads `None` after the last one).
    pub fn finish(&mut self) {
        // Finishing twice or after a reset is harmless.
        let _ = self.stream.finish();
    }

    /// Abandons the stream with a code (QUIC `RESET_STREAM`): frames not yet delivered are lost.
    pub fn reset(&mut self, code: ErrorCode) {
        let _ = self.stream.reset(code_varint(code));
    }

    /// Waits until the peer has received everything sent (or stopped the stream).
    pub async fn flushed(&mut self) -> Result<(), NetError> {
        match self.stream.stopped().await {
            Ok(_) => Ok(()),
            Err(quinn::StoppedError::ConnectionLost(e)) => Err(NetError::from_connection(e)),
            Err(e) => Err(NetError::Stream(e.to_string())),
        }
    }
}

impl<T: DeserializeOwned> FramedRecv<T> {
    /// The next frame, or `None` once the peer finished its half. A frame over the protocol's
    /// limit, a truncated or undecodable frame, or no frame within the idle timeout is an error
    /// (and the peer is told to stop sending, with the code).
    pub async fn recv(&mut self) -> Result<Option<T>, NetError> {
        Ok(self.recv_sized().await?.map(|(frame, _)| frame))
    }

    /// [`FramedRecv::recv`], with the frame's payload size (for caps on what a peer sends).
    pub async fn recv_sized(&mut self) -> Result<Option<(T, usize)>, NetError> {
        let outcome = match tokio::time::timeout(self.idle, self.next()).await {
            Ok(r) => r,
            Err(_) => Err(NetError::Timeout("the next frame on a stream")),
        };
        if let Err(e) = &outcome {
            let code = match e {
                NetError::Wire(w) => Some(w.code()),
                NetError::Timeout(_) => Some(ErrorCode::Timeout),
                _ => None,
            };
            if let Some(code) = code {
                let _ = self.stream.stop(code_varint(code));
            }
        }
        outcome
    }

    async fn next(&mut self) -> Result<Option<(T, usize)>, NetError> {
        let mut prefix = [0u8; LEN_PREFIX];
        // A clean end is the end of the stream exactly between frames.
        match self.stream.read(&mut prefix).await? {
            None => return Ok(None),
            Some(n) if n < LEN_PREFIX => read_exact(&mut self.stream, &mut prefix[n..]).await?,
            Some(_) => {}
        }
        let len = read_len_prefix(prefix, self.max)?;
        let mut payload = std::mem::take(&mut self.buf);
        payload.resize(len, 0);
        let read = read_exact(&mut self.stream, &mut payload).await;
        let frame = read.and_then(|()| Ok(codec::decode(&payload)?));
        self.buf = payload;
        frame.map(|f| Some((f, len)))
    }

    /// Tells the peer to stop sending (QUIC `STOP_SENDING`) with a code.
    pub fn stop(&mut self, code: ErrorCode) {
        let _ = self.stream.stop(code_varint(code));
    }
}

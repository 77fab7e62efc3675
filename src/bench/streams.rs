//! `ttx bench transport`'s long-lived stream phase: one [`FramedStream`] carrying frames one way
//! with an ack back for every frame, against a raw quinn bidirectional stream carrying exactly
//! the same bytes (the same length-prefixed frames one way, the same ack frames back) in the same
//! run. Two sizes: 1 KiB frames (replication batches and their acks) and 64 KiB chunks (a
//! snapshot sent in chunks).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::transport::Ctx;
use crate::net::{FramedStream, IncomingStream, Peer};
use crate::wire::{codec, read_len_prefix, ErrorCode, StreamOpen, LEN_PREFIX};

type Result<T, E = super::BenchError> = std::result::Result<T, E>;

/// The `Open` body of the bench's streams.
pub(super) const OPEN: &[u8] = b"sink";

/// A frame of the bench's streams: a sequence number and a payload.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Chunk {
    seq: u64,
    #[serde(with = "crate::wire::bytes")]
    data: Vec<u8>,
}

/// The receiver's acknowledgement of one frame.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Ack {
    upto: u64,
}

/// The server side: accepts a stream opened with [`OPEN`] and acks every frame it reads.
pub(super) async fn sink(open: StreamOpen, incoming: IncomingStream) {
    if open.body != OPEN {
        return incoming.refuse(ErrorCode::NotAuthorized).await;
    }
    let Ok(stream) = incoming.accept::<Ack, Chunk>(Vec::new()).await else {
        return;
    };
    let (mut send, mut recv) = stream.split();
    while let Ok(Some(chunk)) = recv.recv().await {
        if send.send(&Ack { upto: chunk.seq }).await.is_err() {
            return;
        }
    }
    send.finish();
}

/// What one stream run moved.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct StreamRun {
    /// Frames sent and acknowledged.
    pub frames: u64,
    /// Payload bytes per second, from the first frame to the last ack.
    pub bytes_per_sec: f64,
}

/// Sends `size`-byte frames on one new stream of `peer` for `secs`, reading the acks on
/// another task; returns when the last frame is acknowledged.
pub(super) async fn framed(peer: &Peer, size: usize, secs: f64) -> Result<StreamRun> {
    let (_, stream): (_, FramedStream<Chunk, Ack>) =
        peer.open_stream(OPEN.to_vec()).await.ctx("open a stream")?;
    let (mut send, mut recv) = stream.split();
    let acks = tokio::spawn(async move {
        let mut last = 0;
        while let Some(ack) = recv.recv().await.ctx("read an ack")? {
            last = ack.upto;
        }
        Ok::<u64, super::BenchError>(last)
    });
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let mut seq = 0;
    let data = vec![0x5au8; size];
    while Instant::now() < until {
        seq += 1;
        let chunk = Chunk {
            seq,
            data: data.clone(),
        };
        send.send(&chunk).await.ctx("send a frame")?;
    }
    send.finish();
    let last = acks.await.ctx("the ack task")??;
    if last != seq {
        return Err(super::BenchError::Invalid(format!(
            "the stream acknowledged {last} of {seq} frames"
        )));
    }
    Ok(finish(seq, size, start))
}

fn finish(frames: u64, size: usize, start: Instant) -> StreamRun {
    StreamRun {
        frames,
        bytes_per_sec: (frames * size as u64) as f64 / start.elapsed().as_secs_f64().max(1e-9),
    }
}

/// The raw quinn server side of a stream: reads each length-prefixed frame and writes the same
/// ack frame bytes [`sink`] writes.
pub(super) async fn raw_sink(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let mut payload = Vec::new();
    loop {
        let mut prefix = [0u8; LEN_PREFIX];
        if recv.read_exact(&mut prefix).await.is_err() {
            break;
        }
        let Ok(len) = read_len_prefix(prefix, u32::MAX) else {
            return;
        };
        payload.resize(len, 0);
        if recv.read_exact(&mut payload).await.is_err() {
            return;
        }
        // The sequence number is the frame's first field (a little-endian u64).
        let seq = u64::from_le_bytes(payload[..8].try_into().unwrap_or_default());
        let Ok(ack) = codec::encode_framed(&Ack { upto: seq }, u32::MAX) else {
            return;
        };
        if send.write_all(&ack).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// The raw quinn client side: the same frames, encoded once before the clock starts, written
/// for `secs` on one stream of `conn`, and the acks read back on another task.
pub(super) async fn raw(conn: &quinn::Connection, size: usize, secs: f64) -> Result<StreamRun> {
    let frames: Vec<Vec<u8>> = (1..=256u64)
        .map(|seq| {
            codec::encode_framed(
                &Chunk {
                    seq,
                    data: vec![0x5au8; size],
                },
                u32::MAX,
            )
        })
        .collect::<std::result::Result<_, _>>()
        .ctx("encode a frame")?;
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let (sent, start) = raw_send(conn, |sent| {
        (Instant::now() < until).then(|| &frames[(sent % 256) as usize])
    })
    .await?;
    Ok(finish(sent, size, start))
}

/// Writes the already framed `frames` once each, in order, on one raw quinn stream of `conn`
/// (served by [`raw_sink`], which acks every frame by its leading `u64`), and returns once every
/// frame is acknowledged: the frames, and when the first was written.
pub(super) async fn raw_frames(
    conn: &quinn::Connection,
    frames: &[Vec<u8>],
) -> Result<(u64, Instant)> {
    raw_send(conn, |sent| frames.get(sent as usize)).await
}

/// The body of [`raw`] and [`raw_frames`]: writes `next(n)` until it says `None`, reads the
/// acks on another task, checks that every frame was acknowledged.
async fn raw_send<'a>(
    conn: &quinn::Connection,
    mut next: impl FnMut(u64) -> Option<&'a Vec<u8>>,
) -> Result<(u64, Instant)> {
    let (mut send, mut recv) = conn.open_bi().await.ctx("open a raw stream")?;
    let ack_len = codec::encode_framed(&Ack { upto: 0 }, u32::MAX)
        .ctx("encode an ack")?
        .len();
    let acks = tokio::spawn(async move {
        let mut buf = vec![0u8; ack_len];
        let mut n = 0u64;
        while recv.read_exact(&mut buf).await.is_ok() {
            n += 1;
        }
        n
    });
    let start = Instant::now();
    let mut sent = 0u64;
    while let Some(frame) = next(sent) {
        send.write_all(frame).await.ctx("write a raw frame")?;
        sent += 1;
    }
    send.finish().ctx("finish the raw stream")?;
    let acked = acks.await.ctx("the raw ack task")?;
    if acked != sent {
        return Err(super::BenchError::Invalid(format!(
            "the raw stream acknowledged {acked} of {sent} frames"
        )));
    }
    Ok((sent, start))
}

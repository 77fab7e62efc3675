//! Long-lived framed streams through the public API: many frames each way, pushes from the
//! server, per-protocol limits, refusals, backpressure.

use serde::{Deserialize, Serialize};

use super::*;
use crate::net::{FramedStream, IncomingStream, ProtocolLimits};
use crate::wire::StreamOpen;

/// A replication-like batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Batch {
    seq: u64,
    data: Vec<u8>,
}

/// Its acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ack {
    upto: u64,
}

/// Accepts a stream whose open body is `b"batches"` and acks every batch with its sequence
/// number; refuses any other body with `not_authorized`.
struct Batches;
impl Handler for Batches {
    fn handle<'a>(
        &'a self,
        peer: &'a PeerCtx,
        request: crate::wire::Request,
    ) -> BoxFuture<'a, Result<Vec<u8>, ErrorCode>> {
        Echo.handle(peer, request)
    }

    fn stream<'a>(
        &'a self,
        _peer: &'a PeerCtx,
        open: StreamOpen,
        incoming: IncomingStream,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if open.body != b"batches" {
                return incoming.refuse(ErrorCode::NotAuthorized).await;
            }
            let Ok(stream) = incoming.accept::<Ack, Batch>(b"ready".to_vec()).await else {
                return;
            };
            let (mut send, mut recv) = stream.split();
            while let Ok(Some(batch)) = recv.recv().await {
                if send.send(&Ack { upto: batch.seq }).await.is_err() {
                    return;
                }
            }
            send.finish();
        })
    }
}

fn limits_for_streams() -> ProtocolLimits {
    ProtocolLimits {
        max_stream_frame_bytes: 8 * 1024,
        stream_idle_timeout: Duration::from_secs(5),
        ..ProtocolLimits::default()
    }
}

/// Two nodes serving `Batches` on `ttx-exchange/1` with small stream frames.
fn batch_pair(ca: &mut TestCa) -> (Node, Node) {
    let a = ca.node(FED, "noc-a", "primary");
    let b = ca.node(FED, "telco-b", "primary");
    let router = || {
        Router::new().route_limited(
            EXCHANGE_V1,
            Permission::Exchange,
            limits_for_streams(),
            Arc::new(Batches),
        )
    };
    let na = node_with(&a, trust_of(&[ca]), limits(), router());
    let nb = node_with(&b, trust_of(&[ca]), limits(), router());
    na.policy
        .set(b.identity.clone(), Some(Permissions::EXCHANGE));
    nb.policy
        .set(a.identity.clone(), Some(Permissions::EXCHANGE));
    (na, nb)
}

/// The server's side of the connection the client just made (registered once its HelloAck is
/// written, which the client may see first).
async fn server_side(n: &mut Node) -> Peer {
    let id = wait_event(&mut n.events, |e| match e {
        EndpointEvent::Connected { peer, .. } => Some(peer.clone()),
        _ => None,
    })
    .await;
    n.ep.peer(&id).expect("the server tracks the connection")
}

#[tokio::test]
async fn a_long_lived_stream_carries_many_frames_each_way() {
    let mut ca = TestCa::new("fed-ca");
    let (na, nb) = batch_pair(&mut ca);
    let peer = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    let (answer, stream): (_, FramedStream<Batch, Ack>) =
        peer.open_stream(b"batches".to_vec()).await.unwrap();
    assert_eq!(answer, b"ready");
    let (mut send, mut recv) = stream.split();
    // One task writes 500 batches while this one reads the acks as they come.
    let writer = tokio::spawn(async move {
        for seq in 1..=500u64 {
            let data = vec![(seq % 251) as u8; 1024];
            send.send(&Batch { seq, data }).await.unwrap();
        }
        send.finish();
    });
    let mut expected = 1;
    while let Some(ack) = recv.recv().await.unwrap() {
        assert_eq!(ack.upto, expected);
        expected += 1;
    }
    assert_eq!(expected, 501, "every batch was acked, in order");
    writer.await.unwrap();
    // Requests still work beside the stream.
    assert_eq!(peer.request(b"x".to_vec()).await.unwrap(), b"x");
}

/// The server opens a stream towards the client (a push) on the connection the client made.
#[tokio::test]
async fn the_server_can_push_on_a_stream_it_opens() {
    let mut ca = TestCa::new("fed-ca");
    let (na, mut nb) = batch_pair(&mut ca);
    let _client = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    let at_server = server_side(&mut nb).await;
    let (_, stream): (_, FramedStream<Batch, Ack>) =
        at_server.open_stream(b"batches".to_vec()).await.unwrap();
    let (mut send, mut recv) = stream.split();
    send.send(&Batch {
        seq: 42,
        data: b"pushed".to_vec(),
    })
    .await
    .unwrap();
    assert_eq!(recv.recv().await.unwrap(), Some(Ack { upto: 42 }));
    send.finish();
    assert_eq!(recv.recv().await.unwrap(), None, "a clean end");
}

#[tokio::test]
async fn a_stream_the_handler_refuses_gets_its_code() {
    let mut ca = TestCa::new("fed-ca");
    let (na, nb) = batch_pair(&mut ca);
    let peer = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    let e = peer
        .open_stream::<Batch, Ack>(b"something else".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(e, NetError::Remote(ErrorCode::NotAuthorized)),
        "{e:?}"
    );
    // A protocol without long-lived streams refuses them as malformed.
    let (_a, na2, _b, nb2) = pair(&mut ca);
    let echo = na2.ep.connect(nb2.addr, "telco-b", EXCHANGE).await.unwrap();
    let e = echo
        .open_stream::<Batch, Ack>(b"batches".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(e, NetError::Remote(ErrorCode::Malformed)), "{e:?}");
}

/// A frame over the protocol's stream limit is refused from its prefix by the receiver, which
/// stops the stream with `frame_too_large`; the sender learns it on its next writes.
#[tokio::test]
async fn a_stream_frame_over_the_protocol_limit_is_refused() {
    let mut ca = TestCa::new("fed-ca");
    let (na, nb) = batch_pair(&mut ca);
    let peer = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    // Our own limit refuses to send it.
    let (_, stream): (_, FramedStream<Batch, Ack>) =
        peer.open_stream(b"batches".to_vec()).await.unwrap();
    let (mut send, mut recv) = stream.split();
    let big = Batch {
        seq: 1,
        data: vec![0; 16 * 1024],
    };
    let e = send.send(&big).await.unwrap_err();
    assert!(
        matches!(e, NetError::Wire(crate::wire::WireError::TooLarge { .. })),
        "{e:?}"
    );
    // Raw bytes announcing 16 KiB reach the peer, which refuses them: the stream ends for
    // us without an ack.
    let (mut raw_send, mut raw_recv) = peer.connection().open_bi().await.unwrap();
    let open = ClientFrame::Open(StreamOpen {
        id: 9,
        body: b"batches".to_vec(),
    });
    raw_send
        .write_all(&codec::encode_framed(&open, 1 << 16).unwrap())
        .await
        .unwrap();
    let mut opened = [0u8; 4];
    raw_recv.read_exact(&mut opened).await.unwrap();
    raw_send
        .write_all(&(16 * 1024u32 + 1).to_be_bytes())
        .await
        .unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), raw_send.stopped())
        .await
        .expect("the receiver stops the stream");
    assert_eq!(
        stopped.unwrap(),
        Some(quinn::VarInt::from_u32(u32::from(
            ErrorCode::FrameTooLarge.as_u16()
        )))
    );
    recv.stop(ErrorCode::Malformed);
}

/// Accepts a stream but reads nothing until the gate opens; then counts the batches and acks
/// the last one at the end.
struct Gated(Arc<tokio::sync::Notify>);
impl Handler for Gated {
    fn handle<'a>(
        &'a self,
        peer: &'a PeerCtx,
        request: crate::wire::Request,
    ) -> BoxFuture<'a, Result<Vec<u8>, ErrorCode>> {
        Echo.handle(peer, request)
    }

    fn stream<'a>(
        &'a self,
        _peer: &'a PeerCtx,
        _open: StreamOpen,
        incoming: IncomingStream,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Ok(stream) = incoming.accept::<Ack, Batch>(vec![]).await else {
                return;
            };
            let (mut send, mut recv) = stream.split();
            self.0.notified().await;
            let mut last = 0;
            while let Ok(Some(batch)) = recv.recv().await {
                last = batch.seq;
            }
            let _ = send.send(&Ack { upto: last }).await;
            send.finish();
        })
    }
}

/// QUIC flow control is the backpressure: a reader that does not read stops the writer once
/// the stream window is full, and the writer resumes when the reader drains.
#[tokio::test]
async fn a_slow_reader_holds_the_writer_back() {
    let mut ca = TestCa::new("fed-ca");
    let a = ca.node(FED, "noc-a", "primary");
    let b = ca.node(FED, "telco-b", "primary");
    let gate = Arc::new(tokio::sync::Notify::new());
    let router = Router::new().route_limited(
        EXCHANGE_V1,
        Permission::Exchange,
        limits_for_streams(),
        Arc::new(Gated(gate.clone())),
    );
    let na = node(&a, trust_of(&[&ca]), limits());
    let nb = node_with(&b, trust_of(&[&ca]), limits(), router);
    na.policy
        .set(b.identity.clone(), Some(Permissions::EXCHANGE));
    nb.policy
        .set(a.identity.clone(), Some(Permissions::EXCHANGE));
    let peer = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    let (_, stream): (_, FramedStream<Batch, Ack>) = peer.open_stream(vec![]).await.unwrap();
    let (mut send, mut recv) = stream.split();
    // 2,000 frames of 4 KiB (8 MiB) against a stream window of QUIC's default 1.25 MB.
    const FRAMES: u64 = 2_000;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let progress = sent.clone();
    let writer = tokio::spawn(async move {
        for seq in 1..=FRAMES {
            let batch = Batch {
                seq,
                data: vec![7; 4096],
            };
            send.send(&batch).await.unwrap();
            progress.store(seq, std::sync::atomic::Ordering::Relaxed);
        }
        send.finish();
    });
    // However long we wait, the writer cannot get through while nobody reads.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!writer.is_finished(), "the writer was never held back");
    let held_at = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(held_at < FRAMES, "{held_at}");
    // Opening the gate drains the stream and the writer completes.
    gate.notify_one();
    writer.await.unwrap();
    assert_eq!(recv.recv().await.unwrap(), Some(Ack { upto: FRAMES }));
}

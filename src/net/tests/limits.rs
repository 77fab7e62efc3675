//! Limits of the transport: the small Hello maximum, the Hello deadline with its `Refusal`, the
//! handler deadline, one frame per stream.

use super::*;

/// Opens the first stream of a TLS-complete connection, sends `bytes` and reads the answer.
async fn first_stream(conn: &quinn::Connection, bytes: &[u8]) -> ServerFrame {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 16))
        .await
        .expect("an answer in time")
        .expect("an answer, not a bare close");
    codec::decode_framed(&answer, 1 << 16).unwrap()
}

fn refusal_code(f: &ServerFrame) -> ErrorCode {
    match f {
        ServerFrame::Refusal(r) => r.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A Hello announcing more than 4 KiB (well below the 64 KiB request limit of these nodes) is
/// refused from its prefix: the node does not buffer it for a peer that is not admitted.
#[tokio::test]
async fn an_oversize_hello_is_refused_from_its_prefix() {
    let mut ca = TestCa::new("fed-ca");
    let (a, _na, _b, mut nb) = pair(&mut ca);
    let conn = raw_connect(&a, &ca, nb.addr, "telco-b", &["ttx-exchange/1"]).await;
    let announced = (crate::wire::HELLO_MAX_BYTES + 1).to_be_bytes();
    let answer = first_stream(&conn, &announced).await;
    assert_eq!(refusal_code(&answer), ErrorCode::FrameTooLarge);
    assert_eq!(
        server_refusal(&mut nb).await,
        (Some(a.identity.clone()), ErrorCode::FrameTooLarge)
    );
    let closed = NetError::from_connection(conn.closed().await);
    assert!(
        matches!(closed, NetError::Refused(ErrorCode::FrameTooLarge)),
        "{closed:?}"
    );
}

/// A Hello that does not complete by the handshake deadline is answered with a `Refusal`
/// (`timeout`) on its stream before the connection is closed with the same code.
#[tokio::test]
async fn a_late_hello_gets_a_refusal_frame() {
    let mut ca = TestCa::new("fed-ca");
    let (a, _na, _b, mut nb) = pair(&mut ca);
    let conn = raw_connect(&a, &ca, nb.addr, "telco-b", &["ttx-exchange/1"]).await;
    let answer = first_stream(&conn, &[0, 0]).await;
    assert_eq!(refusal_code(&answer), ErrorCode::Timeout);
    assert_eq!(
        server_refusal(&mut nb).await,
        (Some(a.identity.clone()), ErrorCode::Timeout)
    );
}

struct Stuck;
impl Handler for Stuck {
    fn handle<'a>(
        &'a self,
        _peer: &'a PeerCtx,
        _request: crate::wire::Request,
    ) -> BoxFuture<'a, Result<Vec<u8>, ErrorCode>> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(vec![])
        })
    }
}

/// A handler that never finishes is cut off at `handler_timeout_ms` and the peer is told
/// `timeout` (before, only reading the request was timed and the stream hung).
#[tokio::test]
async fn a_handler_past_its_deadline_is_answered_timeout() {
    let mut ca = TestCa::new("fed-ca");
    let a = ca.node(FED, "noc-a", "primary");
    let b = ca.node(FED, "telco-b", "primary");
    let mut slow_limits = limits();
    slow_limits.handler_timeout_ms = 100;
    // The client waits longer than the server's handler deadline.
    let mut client_limits = limits();
    client_limits.stream_timeout_ms = 5_000;
    let na = node(&a, trust_of(&[&ca]), client_limits);
    let router = Router::new().route(EXCHANGE_V1, Permission::Exchange, Arc::new(Stuck));
    let mut nb = node_with(&b, trust_of(&[&ca]), slow_limits, router);
    na.policy
        .set(b.identity.clone(), Some(Permissions::EXCHANGE));
    nb.policy
        .set(a.identity.clone(), Some(Permissions::EXCHANGE));
    let peer = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    let e = peer.request(b"work".to_vec()).await.unwrap_err();
    assert!(matches!(e, NetError::Remote(ErrorCode::Timeout)), "{e:?}");
    assert_eq!(stream_refusal(&mut nb).await, ErrorCode::Timeout);
    peer.ping().await.expect("the connection is still good");
}

/// A stream carries one frame: a second one is refused as `malformed`, not silently dropped.
#[tokio::test]
async fn a_second_frame_on_a_stream_is_malformed() {
    let mut ca = TestCa::new("fed-ca");
    let (_a, na, _b, mut nb) = pair(&mut ca);
    let peer = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    let ping =
        codec::encode_framed(&ClientFrame::Ping(crate::wire::Ping { nonce: 7 }), 1 << 16).unwrap();
    let two = [ping.clone(), ping].concat();
    let f = raw_exchange(&peer, &two, true).await;
    assert_eq!(error_code(&f), ErrorCode::Malformed);
    assert_eq!(stream_refusal(&mut nb).await, ErrorCode::Malformed);
    peer.ping().await.unwrap();
}

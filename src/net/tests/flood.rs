//! A handshake flood: one UDP socket sends real QUIC Initials (each with a ClientHello) and
//! never completes them, while a real peer connects.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;

/// Sends Initials for new connections to `target` from one socket until `stop`, counting them.
fn flood(target: std::net::SocketAddr, stop: Arc<AtomicBool>, sent: Arc<AtomicUsize>) {
    let rustls = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer))
        .with_no_client_auth();
    let mut rustls = rustls;
    rustls.alpn_protocols = vec![b"ttx-exchange/1".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(rustls)).unwrap();
    let config = quinn_proto::ClientConfig::new(Arc::new(crypto));
    let mut ep = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = Vec::new();
    let mut held = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = std::time::Instant::now();
        let (_, mut conn) = ep.connect(now, config.clone(), target, "telco-b").unwrap();
        buf.clear();
        if let Some(t) = conn.poll_transmit(now, 1, &mut buf) {
            socket.send_to(&buf[..t.size], target).unwrap();
            sent.fetch_add(1, Ordering::Relaxed);
        }
        // Never driven again: the handshake is left unfinished. Keep the state so no
        // CONNECTION_CLOSE is ever produced for it.
        held.push(conn);
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Before: 210 unfinished Initials from one socket filled `max_connections` and a real peer's
/// dial failed for the next handshake timeout. Now the flooding source gets stateless Retries
/// beyond its share, and the real peer (on the same IP here: loopback) answers its Retry and
/// connects within its normal handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_peer_connects_while_one_socket_floods_unfinished_handshakes() {
    let mut ca = TestCa::new("fed-ca");
    let (_a, na, _b, nb) = pair(&mut ca);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let flooder = {
        let (stop, sent, target) = (stop.clone(), sent.clone(), nb.addr);
        std::thread::spawn(move || flood(target, stop, sent))
    };
    // Let the flood pass the old cap (100 connections in these tests) before dialing.
    while sent.load(Ordering::Relaxed) < 210 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..3 {
        // `connect` is bounded by the handshake timeout (1 s here).
        let peer = na
            .ep
            .connect(nb.addr, "telco-b", EXCHANGE)
            .await
            .expect("a real peer connects during the flood");
        peer.ping().await.unwrap();
        peer.close(ErrorCode::Closed);
    }
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    assert!(sent.load(Ordering::Relaxed) >= 210);
    // The flood held at most its share of handshake slots.
    let in_progress = nb.ep.handshakes_in_progress();
    assert!(
        in_progress <= 8,
        "{in_progress} handshakes held by the flood"
    );
}

//! Real QUIC on 127.0.0.1:0 with real certificates: every refusal asserted on both sides.

use std::sync::Arc;
use std::time::Duration;

use rustls::AlertDescription;
use tokio::sync::broadcast;

use super::testing::{self_signed_node, self_signed_node_valid, TestCa, TestNode};
use super::*;
use crate::config::TransportSection;
use crate::wire::alpn::{EXCHANGE, EXCHANGE_V1};
use crate::wire::{codec, ClientFrame, ErrorCode, Hello, Role, ServerFrame};

mod flood;
mod limits;
mod streams;

const FED: &str = "eu";

struct Echo;
impl Handler for Echo {
    fn handle<'a>(
        &'a self,
        _peer: &'a PeerCtx,
        request: crate::wire::Request,
    ) -> BoxFuture<'a, Result<Vec<u8>, ErrorCode>> {
        Box::pin(async move { Ok(request.body) })
    }
}

fn limits() -> TransportSection {
    TransportSection {
        listen: None,
        max_frame_bytes: 64 * 1024,
        exchange_versions: vec![2, 1],
        idle_timeout_ms: 10_000,
        keep_alive_ms: 2_000,
        stream_timeout_ms: 300,
        handshake_timeout_ms: 1_000,
        handler_timeout_ms: 200,
        tls_timeout_ms: 1_000,
        max_handshaking: 64,
        retry_above_handshaking: 16,
        max_handshaking_per_source: 8,
        max_connections_per_peer: 4,
        max_connections: 100,
        max_streams_per_connection: 16,
    }
}

fn trust_of(cas: &[&TestCa]) -> TrustConfig {
    TrustConfig {
        ca_certs: cas.iter().map(|c| c.cert.clone()).collect(),
        ..TrustConfig::default()
    }
}

/// Trust that pins `site` to `n`'s key, without any CA.
fn pinned(site: &str, n: &TestNode) -> TrustConfig {
    TrustConfig {
        pins: [(site.to_string(), [n.spki()].into())].into(),
        ..TrustConfig::default()
    }
}

struct Node {
    ep: Endpoint,
    policy: Arc<StaticPolicy>,
    addr: std::net::SocketAddr,
    events: broadcast::Receiver<EndpointEvent>,
}

fn node(n: &TestNode, trust: TrustConfig, limits: TransportSection) -> Node {
    let router = Router::new().route(EXCHANGE_V1, Permission::Exchange, Arc::new(Echo));
    node_with(n, trust, limits, router)
}

fn node_with(n: &TestNode, trust: TrustConfig, limits: TransportSection, router: Router) -> Node {
    let policy = Arc::new(StaticPolicy::new());
    let opts = EndpointOptions {
        identity: n.identity.clone(),
        role: Role::Partner,
        features: 0,
        transport: limits,
        local: n.local.clone(),
        trust,
    };
    let ep = Endpoint::bind("127.0.0.1:0".parse().unwrap(), opts, policy.clone(), router).unwrap();
    let addr = ep.local_addr().unwrap();
    let events = ep.events();
    Node {
        ep,
        policy,
        addr,
        events,
    }
}

/// Two nodes of one CA that know each other.
fn pair(ca: &mut TestCa) -> (TestNode, Node, TestNode, Node) {
    let a = ca.node(FED, "noc-a", "primary");
    let b = ca.node(FED, "telco-b", "primary");
    let na = node(&a, trust_of(&[ca]), limits());
    let nb = node(&b, trust_of(&[ca]), limits());
    na.policy
        .set(b.identity.clone(), Some(Permissions::EXCHANGE));
    nb.policy
        .set(a.identity.clone(), Some(Permissions::EXCHANGE));
    (a, na, b, nb)
}

/// Waits for the first event that `f` picks out.
async fn wait_event<T>(
    rx: &mut broadcast::Receiver<EndpointEvent>,
    mut f: impl FnMut(&EndpointEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let e = rx.recv().await.expect("event stream open");
            if let Some(t) = f(&e) {
                return t;
            }
        }
    })
    .await
    .expect("expected event")
}

async fn server_tls_failure(n: &mut Node) -> HandshakeFailure {
    wait_event(&mut n.events, |e| match e {
        EndpointEvent::HandshakeFailed { failure, .. } => Some(failure.clone()),
        _ => None,
    })
    .await
}

async fn server_refusal(n: &mut Node) -> (Option<crate::identity::NodeIdentity>, ErrorCode) {
    wait_event(&mut n.events, |e| match e {
        EndpointEvent::Refused { peer, code, .. } => Some((peer.clone(), *code)),
        _ => None,
    })
    .await
}

/// Dials `site` at `addr` for the exchange protocol, expecting the TLS handshake to fail.
async fn dial_refused(ep: &Endpoint, addr: std::net::SocketAddr, site: &str) -> HandshakeFailure {
    handshake(ep.connect(addr, site, EXCHANGE).await.unwrap_err())
}

fn handshake(e: NetError) -> HandshakeFailure {
    match e {
        NetError::Handshake(h) => h,
        other => panic!("expected a tls failure, got {other:?}"),
    }
}

/// Asserts a TLS refusal: the refusing side sent `alert` with the fixed reason `why`, the
/// refused side received `alert` and that same text, which names no federation, site, key, pin
/// or time (the details stay in the refusing node's log).
/// Dials `b` (as `telco-b`) from `a`, each with its own trust, and returns the handshake
/// failure seen by the dialer and the one seen by the server.
async fn refused_handshake(
    a: &TestNode,
    trust_a: TrustConfig,
    b: &TestNode,
    trust_b: TrustConfig,
) -> (HandshakeFailure, HandshakeFailure) {
    let na = node(a, trust_a, limits());
    let mut nb = node(b, trust_b, limits());
    let c = dial_refused(&na.ep, nb.addr, "telco-b").await;
    let s = server_tls_failure(&mut nb).await;
    (c, s)
}

fn assert_tls(
    local: &HandshakeFailure,
    remote: &HandshakeFailure,
    alert: AlertDescription,
    why: &str,
) {
    assert!(local.local, "{local}");
    assert_eq!(local.alert, Some(alert), "{local}");
    assert!(local.reason.contains(why), "{local} lacks {why:?}");
    assert!(!remote.local, "{remote}");
    assert_eq!(remote.alert, Some(alert), "{remote}");
    assert_eq!(remote.reason, local.reason, "the peer saw another text");
    let leaks = ['"', '{', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
    assert!(
        !remote.reason.contains(leaks) && !remote.reason.contains(FED),
        "the close reason leaks details: {remote}"
    );
}

#[tokio::test]
async fn happy_path_ping_both_ways() {
    let mut ca = TestCa::new("fed-ca");
    let (a, na, b, nb) = pair(&mut ca);
    let peer = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    assert_eq!(peer.ctx().identity, b.identity);
    let pong = peer.ping().await.unwrap();
    assert_eq!(pong.version, "ttx-exchange/1");
    assert_eq!(peer.request(b"hi".to_vec()).await.unwrap(), b"hi");
    // The server reaches the client over the same connection.
    let back = nb.ep.ping(&a.identity).await.unwrap();
    assert_eq!(back.version, "ttx-exchange/1");
    assert_eq!(
        nb.ep
            .peer(&a.identity)
            .unwrap()
            .request(vec![1, 2])
            .await
            .unwrap(),
        vec![1, 2]
    );
    let list = nb.ep.peers();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].identity, a.identity);
    assert_eq!(list[0].version, "ttx-exchange/1");
    assert_eq!(list[0].direction, Direction::Inbound);
    assert!(list[0].cert_not_after > 0);
    assert_eq!(na.ep.peers()[0].direction, Direction::Outbound);
}

#[tokio::test]
async fn pinned_peer_without_shared_ca() {
    let a = self_signed_node(FED, "noc-a", "primary");
    let b = self_signed_node(FED, "telco-b", "primary");
    let (peer, _nodes) = ping_as_partners(&a, pinned("telco-b", &b), &b, pinned("noc-a", &a)).await;
    assert_eq!(peer.ctx().spki, b.spki());
}

/// Starts `a` and `b` with their trust, registers each as the other's exchange partner, and
/// pings `b` (as `telco-b`) from `a`: the live peer, and both nodes (keep them alive).
async fn ping_as_partners(
    a: &TestNode,
    trust_a: TrustConfig,
    b: &TestNode,
    trust_b: TrustConfig,
) -> (Peer, [Node; 2]) {
    let na = node(a, trust_a, limits());
    let nb = node(b, trust_b, limits());
    na.policy
        .set(b.identity.clone(), Some(Permissions::EXCHANGE));
    nb.policy
        .set(a.identity.clone(), Some(Permissions::EXCHANGE));
    let peer = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    peer.ping().await.unwrap();
    (peer, [na, nb])
}

#[tokio::test]
async fn pinned_peer_of_another_federation_is_accepted_by_its_key() {
    // Each NOC runs its own PKI under its own federation name; the pins are the trust.
    let mut ours = TestCa::new("ours");
    let mut theirs = TestCa::new("theirs");
    let a = ours.node(FED, "noc-a", "primary");
    let b = theirs.node("us", "telco-b", "primary");
    let mut trust_a = trust_of(&[&ours]);
    trust_a.pins = pinned("telco-b", &b).pins;
    let mut trust_b = trust_of(&[&theirs]);
    trust_b.pins = pinned("noc-a", &a).pins;
    let (peer, _nodes) = ping_as_partners(&a, trust_a, &b, trust_b).await;
    assert_eq!(peer.ctx().identity.federation, "us");
    // Unpinned, the other federation is refused as before.
    let (cl, sv) =
        refused_handshake(&a, trust_of(&[&ours, &theirs]), &b, trust_of(&[&theirs])).await;
    assert_tls(
        &cl,
        &sv,
        AlertDescription::CertificateUnknown,
        "CertificateUnknown",
    );
}

#[tokio::test]
async fn pinned_peer_with_another_key_is_refused() {
    let a = self_signed_node(FED, "noc-a", "primary");
    let b = self_signed_node(FED, "telco-b", "primary");
    let impostor = self_signed_node(FED, "telco-b", "primary");
    let na = node(&a, pinned("telco-b", &b), limits());
    let mut nb = node(&impostor, pinned("noc-a", &a), limits());
    let e = dial_refused(&na.ep, nb.addr, "telco-b").await;
    let s = server_tls_failure(&mut nb).await;
    assert_tls(
        &e,
        &s,
        AlertDescription::CertificateUnknown,
        "CertificateUnknown",
    );
}

#[tokio::test]
async fn expired_pinned_peer_is_refused() {
    let a = self_signed_node_valid(FED, "noc-a", "primary", -7200, -3600);
    let b = self_signed_node(FED, "telco-b", "primary");
    let (c, s) = refused_handshake(&a, pinned("telco-b", &b), &b, pinned("noc-a", &a)).await;
    assert_tls(&s, &c, AlertDescription::CertificateExpired, "Expired");
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let mut ca = TestCa::new("fed-ca");
    let mut other = TestCa::new("rogue-ca");
    let b = ca.node(FED, "telco-b", "primary");
    let a = other.node(FED, "noc-a", "primary");
    let (c, s) = refused_handshake(&a, trust_of(&[&ca, &other]), &b, trust_of(&[&ca])).await;
    assert_tls(&s, &c, AlertDescription::UnknownCA, "UnknownIssuer");
}

#[tokio::test]
async fn revoked_at_connect_is_refused() {
    let mut ca = TestCa::new("fed-ca");
    let a = ca.node(FED, "noc-a", "primary");
    let b = ca.node(FED, "telco-b", "primary");
    let mut trust = trust_of(&[&ca]);
    trust.crls = vec![ca.crl(&[a.serial])];
    let (c, s) = refused_handshake(&a, trust_of(&[&ca]), &b, trust).await;
    assert_tls(&s, &c, AlertDescription::CertificateRevoked, "Revoked");
}

#[tokio::test]
async fn revoked_while_connected_is_closed_by_reload() {
    let mut ca = TestCa::new("fed-ca");
    let (a, na, _b, mut nb) = pair(&mut ca);
    let peer = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    peer.ping().await.unwrap();
    let mut trust = trust_of(&[&ca]);
    trust.crls = vec![ca.crl(&[a.serial])];
    let report = nb.ep.reload(trust).unwrap();
    assert_eq!(report.closed.len(), 1);
    assert_eq!(report.closed[0].0, a.identity);
    assert!(
        report.closed[0].1.contains("Revoked"),
        "{:?}",
        report.closed
    );
    let reason = wait_event(&mut nb.events, |e| match e {
        EndpointEvent::TrustClosed { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("Revoked"));
    assert!(matches!(
        peer.closed().await,
        NetError::Refused(ErrorCode::TrustRevoked)
    ));
    // And a new connection is refused by the new config.
    let c = dial_refused(&na.ep, nb.addr, "telco-b").await;
    assert_eq!(c.alert, Some(AlertDescription::CertificateRevoked));
}

#[tokio::test]
async fn denied_key_is_closed_by_reload() {
    let mut ca = TestCa::new("fed-ca");
    let (a, na, _b, nb) = pair(&mut ca);
    let peer = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    let mut trust = trust_of(&[&ca]);
    trust.deny_spki = [a.spki()].into();
    let report = nb.ep.reload(trust).unwrap();
    assert_eq!(report.closed.len(), 1);
    assert!(matches!(
        peer.closed().await,
        NetError::Refused(ErrorCode::TrustRevoked)
    ));
    let c = dial_refused(&na.ep, nb.addr, "telco-b").await;
    assert_eq!(c.alert, Some(AlertDescription::AccessDenied));
}

#[tokio::test]
async fn expired_and_not_yet_valid_are_refused() {
    for (from, to, why) in [(-7200, -3600, "Expired"), (3600, 7200, "NotValidYet")] {
        let mut ca = TestCa::new("fed-ca");
        let a = ca.node_valid(FED, "noc-a", "primary", from, to);
        let b = ca.node(FED, "telco-b", "primary");
        let (c, s) = refused_handshake(&a, trust_of(&[&ca]), &b, trust_of(&[&ca])).await;
        assert_tls(&s, &c, AlertDescription::CertificateExpired, why);
    }
}

#[tokio::test]
async fn server_claiming_another_site_than_dialed_is_refused() {
    let mut ca = TestCa::new("fed-ca");
    let a = ca.node(FED, "noc-a", "primary");
    let b = ca.node(FED, "noc-x", "primary");
    let (c, s) = refused_handshake(&a, trust_of(&[&ca]), &b, trust_of(&[&ca])).await;
    assert_tls(
        &c,
        &s,
        AlertDescription::CertificateUnknown,
        "CertificateUnknown",
    );
}

#[tokio::test]
async fn another_federation_is_refused() {
    let mut ca = TestCa::new("fed-ca");
    let a = ca.node("us", "noc-a", "primary");
    let b = ca.node(FED, "telco-b", "primary");
    // Our side refuses the server first (it is not in our federation).
    let (c, s) = refused_handshake(&a, trust_of(&[&ca]), &b, trust_of(&[&ca])).await;
    assert_tls(
        &c,
        &s,
        AlertDescription::CertificateUnknown,
        "CertificateUnknown",
    );
}

#[tokio::test]
async fn hello_naming_another_identity_is_refused() {
    let mut ca = TestCa::new("fed-ca");
    let (a, _na, _b, mut nb) = pair(&mut ca);
    let conn = raw_connect(&a, &ca, nb.addr, "telco-b", &["ttx-exchange/1"]).await;
    let reply = raw_hello(&conn, "noc-z", "primary", vec!["ttx-exchange/1".into()]).await;
    assert!(matches!(reply, ServerFrame::Refusal(r) if r.code == ErrorCode::IdentityMismatch));
    assert_eq!(
        server_refusal(&mut nb).await,
        (Some(a.identity.clone()), ErrorCode::IdentityMismatch)
    );
    let closed = conn.closed().await;
    assert!(matches!(
        NetError::from_connection(closed),
        NetError::Refused(ErrorCode::IdentityMismatch)
    ));
}

#[tokio::test]
async fn hello_with_unsupported_versions_is_refused() {
    let mut ca = TestCa::new("fed-ca");
    let (a, na, _b, mut nb) = pair(&mut ca);
    let opts = ConnectOptions {
        alpns: vec!["ttx-exchange/1".into()],
        hello_versions: vec!["ttx-exchange/7".into()],
        role: Role::Partner,
    };
    let e = na
        .ep
        .connect_with(nb.addr, "telco-b", opts)
        .await
        .unwrap_err();
    assert!(
        matches!(e, NetError::Refused(ErrorCode::UnsupportedVersion)),
        "{e:?}"
    );
    assert_eq!(
        server_refusal(&mut nb).await,
        (Some(a.identity), ErrorCode::UnsupportedVersion)
    );
}

#[tokio::test]
async fn no_common_alpn_fails_the_handshake() {
    let mut ca = TestCa::new("fed-ca");
    let (_a, na, _b, mut nb) = pair(&mut ca);
    let opts = ConnectOptions {
        alpns: vec!["ttx-exchange/9".into()],
        hello_versions: vec!["ttx-exchange/9".into()],
        role: Role::Partner,
    };
    let c = handshake(
        na.ep
            .connect_with(nb.addr, "telco-b", opts)
            .await
            .unwrap_err(),
    );
    let s = server_tls_failure(&mut nb).await;
    assert_tls(&s, &c, AlertDescription::NoApplicationProtocol, "");
}

#[tokio::test]
async fn unknown_and_denied_peers_are_refused() {
    let mut ca = TestCa::new("fed-ca");
    let (a, na, _b, mut nb) = pair(&mut ca);
    let stranger = ca.node(FED, "noc-s", "primary");
    let ns = node(&stranger, trust_of(&[&ca]), limits());
    ns.policy
        .set(_b.identity.clone(), Some(Permissions::EXCHANGE));
    let e = ns
        .ep
        .connect(nb.addr, "telco-b", EXCHANGE)
        .await
        .unwrap_err();
    assert!(
        matches!(e, NetError::Refused(ErrorCode::UnknownPeer)),
        "{e:?}"
    );
    assert_eq!(server_refusal(&mut nb).await.1, ErrorCode::UnknownPeer);
    assert_eq!(
        nb.policy.pending(),
        vec![(stranger.identity.clone(), stranger.spki())]
    );

    nb.policy.set(a.identity.clone(), None);
    let e = na
        .ep
        .connect(nb.addr, "telco-b", EXCHANGE)
        .await
        .unwrap_err();
    assert!(matches!(e, NetError::Refused(ErrorCode::Denied)), "{e:?}");
    assert_eq!(
        server_refusal(&mut nb).await,
        (Some(a.identity.clone()), ErrorCode::Denied)
    );

    // Registered, but only as a standby: not authorized for the exchange.
    nb.policy
        .set(a.identity.clone(), Some(Permissions::STANDBY));
    let e = na
        .ep
        .connect(nb.addr, "telco-b", EXCHANGE)
        .await
        .unwrap_err();
    assert!(
        matches!(e, NetError::Refused(ErrorCode::NotAuthorized)),
        "{e:?}"
    );
}

#[tokio::test]
async fn request_not_authorized_is_refused() {
    let mut ca = TestCa::new("fed-ca");
    let (a, na, _b, mut nb) = pair(&mut ca);
    let peer = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    peer.request(vec![1]).await.unwrap();
    nb.policy
        .set(a.identity.clone(), Some(Permissions::STANDBY));
    let e = peer.request(vec![1]).await.unwrap_err();
    assert!(
        matches!(e, NetError::Remote(ErrorCode::NotAuthorized)),
        "{e:?}"
    );
    assert_eq!(stream_refusal(&mut nb).await, ErrorCode::NotAuthorized);
}

async fn stream_refusal(n: &mut Node) -> ErrorCode {
    wait_event(&mut n.events, |e| match e {
        EndpointEvent::StreamRefused { code, .. } => Some(*code),
        _ => None,
    })
    .await
}

/// Sends raw bytes on a new stream of an established connection and reads the answer.
async fn raw_exchange(peer: &Peer, bytes: &[u8], finish: bool) -> ServerFrame {
    let (mut send, mut recv) = peer.connection().open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    if finish {
        send.finish().unwrap();
    }
    let answer = recv.read_to_end(1 << 16).await.unwrap();
    let frame = codec::decode_framed::<ServerFrame>(&answer, 1 << 16).unwrap();
    drop(send);
    frame
}

fn error_code(f: &ServerFrame) -> ErrorCode {
    match f {
        ServerFrame::Error(e) => e.refusal.code,
        other => panic!("expected an error frame, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_frames_are_refused_on_the_stream() {
    let mut ca = TestCa::new("fed-ca");
    let (_a, na, _b, mut nb) = pair(&mut ca);
    let peer = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();

    // Oversize: refused from the prefix alone.
    let f = raw_exchange(&peer, &[0x7f, 0xff, 0xff, 0xff], false).await;
    assert_eq!(error_code(&f), ErrorCode::FrameTooLarge);
    assert_eq!(stream_refusal(&mut nb).await, ErrorCode::FrameTooLarge);

    // Truncated: the stream ends inside the payload.
    let f = raw_exchange(&peer, &[0, 0, 0, 10, 1, 2, 3], true).await;
    assert_eq!(error_code(&f), ErrorCode::Malformed);
    assert_eq!(stream_refusal(&mut nb).await, ErrorCode::Malformed);

    // Random bytes behind a valid prefix.
    let mut junk = vec![0, 0, 0, 32];
    junk.extend((0..32u8).map(|i| i.wrapping_mul(97).wrapping_add(13)));
    let f = raw_exchange(&peer, &junk, true).await;
    assert_eq!(error_code(&f), ErrorCode::Malformed);
    assert_eq!(stream_refusal(&mut nb).await, ErrorCode::Malformed);

    // A Hello after the handshake is out of place.
    let hello = codec::encode_framed(
        &ClientFrame::Hello(Hello {
            federation: FED.into(),
            site: "noc-a".into(),
            node: "primary".into(),
            role: Role::Partner,
            versions: vec![],
            features: 0,
        }),
        1 << 16,
    )
    .unwrap();
    assert_eq!(
        error_code(&raw_exchange(&peer, &hello, true).await),
        ErrorCode::Malformed
    );

    // The connection is still good.
    peer.ping().await.unwrap();
}

#[tokio::test]
async fn stalled_stream_and_silent_connection_time_out() {
    let mut ca = TestCa::new("fed-ca");
    let (a, na, _b, mut nb) = pair(&mut ca);
    let peer = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    // Two bytes of a prefix, then nothing.
    let f = raw_exchange(&peer, &[0, 0], false).await;
    assert_eq!(error_code(&f), ErrorCode::Timeout);
    assert_eq!(stream_refusal(&mut nb).await, ErrorCode::Timeout);

    // TLS completes but no Hello ever comes: closed with `timeout`.
    let conn = raw_connect(&a, &ca, nb.addr, "telco-b", &["ttx-exchange/1"]).await;
    let closed = NetError::from_connection(conn.closed().await);
    assert!(
        matches!(closed, NetError::Refused(ErrorCode::Timeout)),
        "{closed:?}"
    );
    assert_eq!(
        server_refusal(&mut nb).await,
        (Some(a.identity), ErrorCode::Timeout)
    );
}

#[tokio::test]
async fn connection_caps_are_enforced() {
    let mut ca = TestCa::new("fed-ca");
    let a = ca.node(FED, "noc-a", "primary");
    let b = ca.node(FED, "telco-b", "primary");
    let c = ca.node(FED, "noc-c", "primary");
    let mut l = limits();
    l.max_connections = 2;
    l.max_connections_per_peer = 1;
    let na = node(&a, trust_of(&[&ca]), limits());
    let nc = node(&c, trust_of(&[&ca]), limits());
    let mut nb = node(&b, trust_of(&[&ca]), l);
    for n in [&na, &nc] {
        n.policy
            .set(b.identity.clone(), Some(Permissions::EXCHANGE));
    }
    nb.policy
        .set(a.identity.clone(), Some(Permissions::EXCHANGE));
    nb.policy
        .set(c.identity.clone(), Some(Permissions::EXCHANGE));

    let _first = na.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    // Per peer: a second connection from the same identity is refused at Hello.
    let e = na
        .ep
        .connect(nb.addr, "telco-b", EXCHANGE)
        .await
        .unwrap_err();
    assert!(
        matches!(e, NetError::Refused(ErrorCode::Overloaded)),
        "{e:?}"
    );
    assert_eq!(
        server_refusal(&mut nb).await,
        (Some(a.identity.clone()), ErrorCode::Overloaded)
    );

    let _second = nc.ep.connect(nb.addr, "telco-b", EXCHANGE).await.unwrap();
    // Total: the third attempt is refused before the handshake.
    let d = ca.node(FED, "noc-d", "primary");
    let nd = node(&d, trust_of(&[&ca]), limits());
    let e = nd
        .ep
        .connect(nb.addr, "telco-b", EXCHANGE)
        .await
        .unwrap_err();
    match &e {
        NetError::Connection(quinn::ConnectionError::ConnectionClosed(c)) => {
            assert_eq!(c.error_code, quinn::TransportErrorCode::CONNECTION_REFUSED)
        }
        other => panic!("expected CONNECTION_REFUSED, got {other:?}"),
    }
    assert_eq!(server_refusal(&mut nb).await, (None, ErrorCode::Overloaded));
}

#[tokio::test]
async fn missing_client_certificate_is_refused() {
    let mut ca = TestCa::new("fed-ca");
    let (_a, _na, _b, mut nb) = pair(&mut ca);
    let ep = raw_endpoint(None, &["ttx-exchange/1"]);
    let conn = ep.connect(nb.addr, "telco-b").unwrap().await.unwrap();
    // TLS 1.3: the client's handshake completes; the refusal arrives on the first stream.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let _ = send.write_all(&[0, 0, 0, 0]).await;
    let _ = send.finish();
    let err = recv.read_to_end(1024).await.unwrap_err();
    let quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(lost)) = err else {
        panic!("expected a lost connection, got {err:?}");
    };
    let c = handshake(NetError::from_connection(lost));
    let s = server_tls_failure(&mut nb).await;
    assert_tls(
        &s,
        &c,
        AlertDescription::CertificateRequired,
        "no certificates",
    );
}

// ---- raw clients (a peer that does not follow the protocol) ----

#[derive(Debug)]
struct AcceptAnyServer;
impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("no tls 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &tls::provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn raw_endpoint(client: Option<&LocalCert>, alpns: &[&str]) -> quinn::Endpoint {
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer));
    let mut config = match client {
        Some(l) => builder
            .with_client_auth_cert(l.chain.clone(), l.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpns.iter().map(|a| a.as_bytes().to_vec()).collect();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(config)).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    ep
}

async fn raw_connect(
    n: &TestNode,
    _ca: &TestCa,
    addr: std::net::SocketAddr,
    site: &str,
    alpns: &[&str],
) -> quinn::Connection {
    let ep = raw_endpoint(Some(&n.local), alpns);
    ep.connect(addr, site).unwrap().await.unwrap()
}

async fn raw_hello(
    conn: &quinn::Connection,
    site: &str,
    node: &str,
    versions: Vec<String>,
) -> ServerFrame {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = ClientFrame::Hello(Hello {
        federation: FED.into(),
        site: site.into(),
        node: node.into(),
        role: Role::Partner,
        versions,
        features: 0,
    });
    send.write_all(&codec::encode_framed(&hello, 1 << 16).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    let bytes = recv.read_to_end(1 << 16).await.unwrap();
    codec::decode_framed(&bytes, 1 << 16).unwrap()
}

/// Each connection is closed at its own certificate's `notAfter`, without a reload or a sweep,
/// and a connection of the same identity with a healthy certificate stays up.
#[tokio::test]
async fn a_certificate_that_expires_while_connected_is_closed_at_its_not_after() {
    let mut ca = TestCa::new("fed-ca");
    // A dials twice with the same identity: once with a certificate valid for two more
    // seconds, once with one valid for a month.
    let short = ca.node_valid(FED, "noc-a", "primary", -3600, 2);
    let long = ca.node(FED, "noc-a", "primary");
    let b = ca.node(FED, "telco-b", "primary");
    let na_short = node(&short, trust_of(&[&ca]), limits());
    let na_long = node(&long, trust_of(&[&ca]), limits());
    let mut nb = node(&b, trust_of(&[&ca]), limits());
    for n in [&na_short, &na_long] {
        n.policy
            .set(b.identity.clone(), Some(Permissions::EXCHANGE));
    }
    nb.policy
        .set(short.identity.clone(), Some(Permissions::EXCHANGE));
    let expiring = na_short
        .ep
        .connect(nb.addr, "telco-b", EXCHANGE)
        .await
        .unwrap();
    let healthy = na_long
        .ep
        .connect(nb.addr, "telco-b", EXCHANGE)
        .await
        .unwrap();
    expiring.ping().await.unwrap();
    let closed = wait_event(&mut nb.events, |e| match e {
        EndpointEvent::TrustClosed { id, reason, .. } => Some((*id, reason.clone())),
        _ => None,
    })
    .await;
    assert!(closed.1.contains("expired"), "{closed:?}");
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(5), expiring.closed()).await,
        Ok(NetError::Refused(ErrorCode::TrustRevoked))
    ));
    healthy
        .ping()
        .await
        .expect("the healthy connection stays up");
    let left = nb.ep.peers();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left[0].connection_id, closed.0);
}

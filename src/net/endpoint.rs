//! The QUIC endpoint: one quinn endpoint serving and dialing, with caps, timeouts, Hello,
//! requests, ping, live trust reload and runtime peer state.
//!
//! Life of a connection:
//! 1. over the total cap, an incoming attempt is refused before the handshake
//!    (`Incoming::refuse`);
//! 2. TLS 1.3 with client certificates, judged by [`Trust`](super::tls::Trust) on both sides;
//! 3. the client opens the first stream and sends `Hello`; the server checks that it names the
//!    certificate's identity, offers the negotiated version, that the policy admits the peer with
//!    the protocol's permission, and that the per-peer cap allows it, then answers `HelloAck` or
//!    `Refusal` (and closes with the same code). Steps 2-3 run under the handshake timeout. A peer
//!    counts as connected only after `HelloAck`;
//! 4. every later stream carries one request (or ping) and its answer; the request must arrive
//!    within the stream timeout, and the policy authorizes every request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::sync::{broadcast, Notify};
use tracing::Instrument;

use super::handler::{PeerCtx, Route, Router};
use super::policy::{Admission, PeerPolicy, Permission};
use super::stream::{read_frame, write_frame};
use super::tls::{self, LocalCert, PeerSide, TlsConfigError, Trust, TrustConfig};
use super::NetError;
use crate::config::TransportSection;
use crate::identity::NodeIdentity;
use crate::wire::alpn::{self, ProtocolId};
use crate::wire::{
    ClientFrame, ErrorCode, Hello, HelloAck, Ping, Refusal, Request, Role, ServerFrame,
};

/// Everything an endpoint is built from.
#[derive(Debug, Clone)]
pub struct EndpointOptions {
    /// Our identity; must be the identity of `local`'s certificate.
    pub identity: NodeIdentity,
    /// The role we declare when we dial.
    pub role: Role,
    /// The feature bits we support.
    pub features: u64,
    /// Limits and timeouts.
    pub transport: TransportSection,
    /// Our certificate chain and key.
    pub local: LocalCert,
    /// Whom we trust.
    pub trust: TrustConfig,
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The peer dialed us.
    Inbound,
    /// We dialed the peer.
    Outbound,
}

/// Something that happened on the endpoint, for logs, metrics, the pending list and tests.
#[derive(Debug, Clone)]
pub enum EndpointEvent {
    /// A peer completed Hello/HelloAck.
    Connected {
        /// Connection id.
        id: u64,
        /// The peer.
        peer: NodeIdentity,
        /// Who dialed.
        direction: Direction,
    },
    /// A TLS handshake failed.
    HandshakeFailed {
        /// The peer's address.
        remote: SocketAddr,
        /// What failed.
        failure: super::HandshakeFailure,
    },
    /// A connection attempt or Hello was refused by us with a code.
    Refused {
        /// The peer's address.
        remote: SocketAddr,
        /// The peer's identity, when TLS got that far.
        peer: Option<NodeIdentity>,
        /// Why.
        code: ErrorCode,
    },
    /// A request stream failed and the peer was told so.
    StreamRefused {
        /// Connection id.
        id: u64,
        /// The peer.
        peer: NodeIdentity,
        /// Why.
        code: ErrorCode,
    },
    /// A live connection was closed by a trust reload.
    TrustClosed {
        /// Connection id.
        id: u64,
        /// The peer.
        peer: NodeIdentity,
        /// Why (rustls' reason for refusing the certificate now).
        reason: String,
    },
    /// A connection ended.
    Closed {
        /// Connection id.
        id: u64,
        /// The peer.
        peer: NodeIdentity,
        /// How it ended.
        reason: String,
    },
}

/// Runtime state of one connection, for `ttx peer list`.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Connection id.
    pub connection_id: u64,
    /// The peer.
    pub identity: NodeIdentity,
    /// The peer's key fingerprint.
    pub spki: String,
    /// The negotiated version (ALPN).
    pub version: String,
    /// The role the connecting side declared.
    pub role: Role,
    /// Who dialed.
    pub direction: Direction,
    /// The peer's address.
    pub remote: SocketAddr,
    /// When HelloAck completed.
    pub connected_since: SystemTime,
    /// When the peer was last heard from on a stream.
    pub last_seen: SystemTime,
    /// QUIC's current RTT estimate.
    pub rtt: Duration,
    /// The peer certificate's `notAfter`, UNIX seconds.
    pub cert_not_after: i64,
}

/// The result of a ping.
#[derive(Debug, Clone)]
pub struct PingResult {
    /// The protocol version of the connection.
    pub version: String,
    /// The measured round trip.
    pub latency: Duration,
}

/// What a trust reload did to live connections.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// Connections still trusted.
    pub kept: usize,
    /// Connections closed, with the peer and the reason.
    pub closed: Vec<(NodeIdentity, String)>,
}

/// Options of one dial (most callers use [`Endpoint::connect`]).
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The ALPNs offered in TLS, preferred first.
    pub alpns: Vec<String>,
    /// The versions listed in Hello (normally the same as `alpns`).
    pub hello_versions: Vec<String>,
    /// The role declared in Hello.
    pub role: Role,
}

struct LiveConn {
    conn: quinn::Connection,
    ctx: Arc<PeerCtx>,
    chain: Vec<CertificateDer<'static>>,
    side: PeerSide,
    direction: Direction,
    since: SystemTime,
    last_seen: Arc<AtomicU64>,
    not_after: i64,
}

struct Inner {
    quinn: quinn::Endpoint,
    identity: NodeIdentity,
    role: Role,
    features: u64,
    limits: TransportSection,
    local: RwLock<LocalCert>,
    transport: Arc<TransportConfig>,
    trust: RwLock<Arc<Trust>>,
    client_configs: Mutex<HashMap<Vec<String>, quinn::ClientConfig>>,
    policy: Arc<dyn PeerPolicy>,
    router: Router,
    conns: Mutex<HashMap<u64, LiveConn>>,
    handshaking: AtomicUsize,
    next_id: AtomicU64,
    next_request: AtomicU64,
    events: broadcast::Sender<EndpointEvent>,
    shutdown: Notify,
}

/// A QUIC endpoint that serves the routed protocols and dials peers. Cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

/// A connection to a peer (either direction) after Hello/HelloAck. Cheap to clone.
#[derive(Clone)]
pub struct Peer {
    inner: Arc<Inner>,
    conn: quinn::Connection,
    ctx: Arc<PeerCtx>,
    last_seen: Arc<AtomicU64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ms_to_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn code_varint(code: ErrorCode) -> VarInt {
    VarInt::from_u32(u32::from(code.as_u16()))
}

fn transport_config(t: &TransportSection) -> Result<TransportConfig, NetError> {
    let mut c = TransportConfig::default();
    let idle = IdleTimeout::try_from(Duration::from_millis(t.idle_timeout_ms))
        .map_err(|_| NetError::TlsConfig(TlsConfigError::Quic("idle timeout too large".into())))?;
    c.max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(Duration::from_millis(t.keep_alive_ms)))
        .max_concurrent_bidi_streams(VarInt::from_u32(t.max_streams_per_connection))
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    Ok(c)
}

fn peer_chain(conn: &quinn::Connection) -> Option<Vec<CertificateDer<'static>>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()
        .map(|b| *b)
}

fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

impl Inner {
    fn trust(&self) -> Arc<Trust> {
        self.trust.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn emit(&self, e: EndpointEvent) {
        let _ = self.events.send(e);
    }

    fn server_config(&self, trust: Arc<Trust>) -> Result<quinn::ServerConfig, NetError> {
        let local = self.local.read().unwrap_or_else(|e| e.into_inner()).clone();
        let rustls = tls::server_config(&local, trust, &self.router.alpns())?;
        let crypto = QuicServerConfig::try_from(Arc::new(rustls))
            .map_err(|e| TlsConfigError::Quic(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        Ok(config)
    }

    fn client_config(&self, alpns: &[String]) -> Result<quinn::ClientConfig, NetError> {
        let mut cache = self
            .client_configs
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(alpns) {
            return Ok(c.clone());
        }
        let local = self.local.read().unwrap_or_else(|e| e.into_inner()).clone();
        let rustls = tls::client_config(&local, self.trust(), alpns)?;
        let crypto = QuicClientConfig::try_from(Arc::new(rustls))
            .map_err(|e| TlsConfigError::Quic(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        cache.insert(alpns.to_vec(), config.clone());
        Ok(config)
    }

    fn live_count(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn count_for(&self, id: &NodeIdentity) -> usize {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|c| &c.ctx.identity == id)
            .count()
    }

    /// The admission checks shared by both sides: the policy admits the peer with `permission`
    /// (and the standby permission for a standby), and the per-peer cap allows one more.
    fn admit(
        &self,
        id: &NodeIdentity,
        spki: &str,
        permission: Permission,
        role: Role,
    ) -> Result<(), ErrorCode> {
        let perms = match self.policy.admit(id, spki) {
            Admission::Accepted(p) => p,
            Admission::Pending => return Err(ErrorCode::UnknownPeer),
            Admission::Denied => return Err(ErrorCode::Denied),
        };
        let standby_ok = role != Role::Standby || (perms.standby && id.site == self.identity.site);
        if !perms.contains(permission) || !standby_ok || !self.policy.authorize(id, permission) {
            return Err(ErrorCode::NotAuthorized);
        }
        if self.count_for(id) >= self.limits.max_connections_per_peer as usize {
            return Err(ErrorCode::Overloaded);
        }
        Ok(())
    }

    /// Registers a connection that completed Hello and starts serving its streams.
    fn register(
        self: &Arc<Self>,
        conn: quinn::Connection,
        ctx: PeerCtx,
        chain: Vec<CertificateDer<'static>>,
        side: PeerSide,
        direction: Direction,
        route: Route,
    ) -> Peer {
        let not_after = chain
            .first()
            .and_then(|c| tls::validity(c).ok())
            .map(|v| v.1)
            .unwrap_or(0);
        let ctx = Arc::new(ctx);
        let last_seen = Arc::new(AtomicU64::new(now_ms()));
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(
            ctx.connection_id,
            LiveConn {
                conn: conn.clone(),
                ctx: ctx.clone(),
                chain,
                side,
                direction,
                since: SystemTime::now(),
                last_seen: last_seen.clone(),
                not_after,
            },
        );
        self.emit(EndpointEvent::Connected {
            id: ctx.connection_id,
            peer: ctx.identity.clone(),
            direction,
        });
        tracing::info!(version = %ctx.protocol, ?direction, "peer connected");
        let peer = Peer {
            inner: self.clone(),
            conn,
            ctx,
            last_seen,
        };
        let span = tracing::Span::current();
        tokio::spawn(serve_streams(peer.clone(), route).instrument(span));
        peer
    }
}

/// Refuses our own certificate unless its URI SAN names exactly `identity` (the endpoint's
/// identity never changes, not even when its certificate is renewed).
fn check_own_certificate(local: &LocalCert, identity: &NodeIdentity) -> Result<(), NetError> {
    let own = local.chain.first().ok_or(TlsConfigError::EmptyChain)?;
    let own_id = NodeIdentity::from_cert_der(own).map_err(TlsConfigError::Identity)?;
    if &own_id != identity {
        return Err(
            TlsConfigError::Identity(crate::identity::IdentityError::BadUri(format!(
                "own certificate names {own_id}, this node is {identity}"
            )))
            .into(),
        );
    }
    Ok(())
}

impl Endpoint {
    /// Binds the endpoint on `addr` (port 0 picks a free port) and starts accepting peers for the
    /// routed protocols. The endpoint can also dial (`connect`).
    pub fn bind(
        addr: SocketAddr,
        opts: EndpointOptions,
        policy: Arc<dyn PeerPolicy>,
        router: Router,
    ) -> Result<Self, NetError> {
        check_own_certificate(&opts.local, &opts.identity)?;
        let trust = Arc::new(Trust::new(&opts.identity.federation, opts.trust)?);
        let transport = Arc::new(transport_config(&opts.transport)?);
        let (events, _) = broadcast::channel(1024);
        let socket = std::net::UdpSocket::bind(addr).map_err(NetError::Bind)?;
        let quinn = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(NetError::Bind)?;
        let inner = Arc::new(Inner {
            quinn,
            identity: opts.identity,
            role: opts.role,
            features: opts.features,
            limits: opts.transport,
            local: RwLock::new(opts.local),
            transport,
            trust: RwLock::new(trust.clone()),
            client_configs: Mutex::new(HashMap::new()),
            policy,
            router,
            conns: Mutex::new(HashMap::new()),
            handshaking: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            next_request: AtomicU64::new(1),
            events,
            shutdown: Notify::new(),
        });
        if !inner.router.alpns().is_empty() {
            inner
                .quinn
                .set_server_config(Some(inner.server_config(trust)?));
        }
        let span = tracing::info_span!("endpoint", node = %inner.identity);
        tokio::spawn(accept_loop(inner.clone()).instrument(span));
        Ok(Self { inner })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.inner.quinn.local_addr().map_err(NetError::Bind)
    }

    /// Our identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.inner.identity
    }

    /// Subscribes to endpoint events.
    pub fn events(&self) -> broadcast::Receiver<EndpointEvent> {
        self.inner.events.subscribe()
    }

    /// Dials `site` at `addr` for a protocol family (for example `ttx-exchange`), offering every
    /// version of the family routed here (or, if none is routed, every version this build
    /// speaks), and completes Hello.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        site: &str,
        family: &str,
    ) -> Result<Peer, NetError> {
        let mut alpns = self.inner.router.family_alpns(family);
        if alpns.is_empty() {
            alpns = alpn::versions_of(family).iter().map(|p| p.alpn()).collect();
        }
        if alpns.is_empty() {
            return Err(NetError::UnknownProtocol(family.to_string()));
        }
        let opts = ConnectOptions {
            hello_versions: alpns.clone(),
            alpns,
            role: self.inner.role,
        };
        self.connect_with(addr, site, opts).await
    }

    /// Dials with explicit options (tests use this to offer odd version lists).
    pub async fn connect_with(
        &self,
        addr: SocketAddr,
        site: &str,
        opts: ConnectOptions,
    ) -> Result<Peer, NetError> {
        let inner = &self.inner;
        let span = tracing::info_span!("connection", peer_site = %site, %addr, dir = "out");
        async move {
            let config = inner.client_config(&opts.alpns)?;
            let deadline = Duration::from_millis(inner.limits.handshake_timeout_ms);
            let connecting = inner.quinn.connect_with(config, addr, site)?;
            let conn = tokio::time::timeout(deadline, connecting)
                .await
                .map_err(|_| NetError::Timeout("the tls handshake"))?
                .map_err(NetError::from_connection)?;
            match tokio::time::timeout(deadline, client_hello(inner, &conn, site, &opts)).await {
                Ok(Ok(peer)) => Ok(peer),
                Ok(Err(e)) => {
                    if let NetError::RefusedPeer(code) = &e {
                        conn.close(code_varint(*code), code.text().as_bytes());
                    }
                    Err(e)
                }
                Err(_) => {
                    conn.close(code_varint(ErrorCode::Timeout), b"timeout");
                    Err(NetError::Timeout("the hello"))
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The live connection to `id`, if any (either direction).
    pub fn peer(&self, id: &NodeIdentity) -> Option<Peer> {
        let conns = self.inner.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns
            .values()
            .find(|c| &c.ctx.identity == id)
            .map(|c| Peer {
                inner: self.inner.clone(),
                conn: c.conn.clone(),
                ctx: c.ctx.clone(),
                last_seen: c.last_seen.clone(),
            })
    }

    /// Runtime state of every live connection, for `ttx peer list`.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let conns = self.inner.conns.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<PeerInfo> = conns
            .values()
            .map(|c| PeerInfo {
                connection_id: c.ctx.connection_id,
                identity: c.ctx.identity.clone(),
                spki: c.ctx.spki.clone(),
                version: c.ctx.protocol.alpn(),
                role: c.ctx.role,
                direction: c.direction,
                remote: c.ctx.remote,
                connected_since: c.since,
                last_seen: ms_to_time(c.last_seen.load(Ordering::Relaxed)),
                rtt: c.conn.rtt(),
                cert_not_after: c.not_after,
            })
            .collect();
        list.sort_by_key(|p| p.connection_id);
        list
    }

    /// Pings the connected peer `id`.
    pub async fn ping(&self, id: &NodeIdentity) -> Result<PingResult, NetError> {
        self.peer(id)
            .ok_or_else(|| NetError::NotConnected(id.to_string()))?
            .ping()
            .await
    }

    /// Swaps the trust (CAs, CRLs, deny list, pins): new connections use it at once, and every
    /// live connection whose peer certificate it no longer accepts is closed with
    /// `trust_revoked`.
    pub fn reload(&self, trust: TrustConfig) -> Result<ReloadReport, NetError> {
        self.reload_with(None, trust)
    }

    /// [`Self::reload`], and also swaps our own certificate and key (a renewed or re-keyed
    /// certificate) for new connections. The new certificate must name the same identity.
    pub fn reload_with(
        &self,
        local: Option<LocalCert>,
        trust: TrustConfig,
    ) -> Result<ReloadReport, NetError> {
        let inner = &self.inner;
        let trust = Arc::new(Trust::new(&inner.identity.federation, trust)?);
        if let Some(local) = local {
            check_own_certificate(&local, &inner.identity)?;
            *inner.local.write().unwrap_or_else(|e| e.into_inner()) = local;
        }
        if !inner.router.alpns().is_empty() {
            inner
                .quinn
                .set_server_config(Some(inner.server_config(trust.clone())?));
        }
        *inner.trust.write().unwrap_or_else(|e| e.into_inner()) = trust.clone();
        inner
            .client_configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let mut report = ReloadReport::default();
        let now = UnixTime::now();
        let conns = inner.conns.lock().unwrap_or_else(|e| e.into_inner());
        for c in conns.values() {
            let Some((ee, rest)) = c.chain.split_first() else {
                continue;
            };
            match trust.check(ee, rest, &c.side, now) {
                Ok(_) => report.kept += 1,
                Err(e) => {
                    let reason = e.to_string();
                    tracing::warn!(peer = %c.ctx.identity, %reason, "closing connection: peer no longer trusted");
                    c.conn.close(
                        code_varint(ErrorCode::TrustRevoked),
                        ErrorCode::TrustRevoked.text().as_bytes(),
                    );
                    inner.emit(EndpointEvent::TrustClosed {
                        id: c.ctx.connection_id,
                        peer: c.ctx.identity.clone(),
                        reason: reason.clone(),
                    });
                    report.closed.push((c.ctx.identity.clone(), reason));
                }
            }
        }
        Ok(report)
    }

    /// Closes every connection with `shutting_down`, stops accepting, and waits (bounded by the
    /// handshake timeout) for the peers to be told.
    pub async fn shutdown(&self) {
        self.inner.shutdown.notify_waiters();
        self.inner.quinn.close(
            code_varint(ErrorCode::ShuttingDown),
            ErrorCode::ShuttingDown.text().as_bytes(),
        );
        let grace = Duration::from_millis(self.inner.limits.handshake_timeout_ms);
        let _ = tokio::time::timeout(grace, self.inner.quinn.wait_idle()).await;
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("ctx", &self.ctx).finish()
    }
}

impl Peer {
    /// Who the peer is and what was negotiated.
    pub fn ctx(&self) -> &PeerCtx {
        &self.ctx
    }

    /// Sends one request of the negotiated protocol on a new stream and waits for its answer
    /// (bounded by the stream timeout).
    pub async fn request(&self, body: Vec<u8>) -> Result<Vec<u8>, NetError> {
        let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        match self
            .round_trip(ClientFrame::Request(Request { id, body }))
            .await?
        {
            ServerFrame::Response(r) if r.id == id => Ok(r.body),
            ServerFrame::Error(e) => Err(NetError::Remote(e.refusal.code)),
            _ => Err(NetError::Unexpected),
        }
    }

    /// A Hello-level round trip: the version in use and the latency.
    pub async fn ping(&self) -> Result<PingResult, NetError> {
        let nonce = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        match self.round_trip(ClientFrame::Ping(Ping { nonce })).await? {
            ServerFrame::Pong(p) if p.nonce == nonce => Ok(PingResult {
                version: self.ctx.protocol.alpn(),
                latency: start.elapsed(),
            }),
            ServerFrame::Error(e) => Err(NetError::Remote(e.refusal.code)),
            _ => Err(NetError::Unexpected),
        }
    }

    async fn round_trip(&self, frame: ClientFrame) -> Result<ServerFrame, NetError> {
        let max = self.inner.limits.max_frame_bytes;
        let deadline = Duration::from_millis(self.inner.limits.stream_timeout_ms);
        let work = async {
            let (mut send, mut recv) = self.conn.open_bi().await?;
            write_frame(&mut send, &frame, max).await?;
            let reply = read_frame::<ServerFrame>(&mut recv, max).await?;
            self.last_seen.store(now_ms(), Ordering::Relaxed);
            Ok(reply)
        };
        tokio::time::timeout(deadline, work)
            .await
            .map_err(|_| NetError::Timeout("the answer"))?
    }

    /// Closes the connection with a code.
    pub fn close(&self, code: ErrorCode) {
        self.conn.close(code_varint(code), code.text().as_bytes());
    }

    /// Waits until the connection is closed, and says how.
    pub async fn closed(&self) -> NetError {
        NetError::from_connection(self.conn.closed().await)
    }

    /// QUIC's RTT estimate.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// The underlying QUIC connection, for tests and benchmarks that need raw streams.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }
}

async fn accept_loop(inner: Arc<Inner>) {
    loop {
        let incoming = tokio::select! {
            i = inner.quinn.accept() => i,
            _ = inner.shutdown.notified() => None,
        };
        let Some(incoming) = incoming else { break };
        let in_use = inner.live_count() + inner.handshaking.load(Ordering::Relaxed);
        if in_use >= inner.limits.max_connections as usize {
            let remote = incoming.remote_address();
            tracing::warn!(%remote, "connection cap reached: refusing before the handshake");
            incoming.refuse();
            inner.emit(EndpointEvent::Refused {
                remote,
                peer: None,
                code: ErrorCode::Overloaded,
            });
            continue;
        }
        inner.handshaking.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("connection", remote = %incoming.remote_address(), dir = "in", peer = tracing::field::Empty);
        tokio::spawn(accept_one(inner.clone(), incoming).instrument(span));
    }
}

struct HandshakeGuard<'a>(&'a AtomicUsize);
impl Drop for HandshakeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_one(inner: Arc<Inner>, incoming: quinn::Incoming) {
    let guard = HandshakeGuard(&inner.handshaking);
    let remote = incoming.remote_address();
    let deadline = Duration::from_millis(inner.limits.handshake_timeout_ms);
    let tls_failed =
        |e: quinn::ConnectionError| match super::HandshakeFailure::from_connection_error(&e) {
            Some(failure) => {
                tracing::warn!(%failure, "tls handshake failed");
                inner.emit(EndpointEvent::HandshakeFailed { remote, failure });
            }
            None => tracing::debug!(error = %e, "handshake failed"),
        };
    // The ClientHello (ALPN included) is processed in `accept`, the rest of TLS after it.
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => return tls_failed(e),
    };
    let conn = match tokio::time::timeout(deadline, connecting).await {
        Err(_) => {
            inner.emit(EndpointEvent::Refused {
                remote,
                peer: None,
                code: ErrorCode::Timeout,
            });
            return;
        }
        Ok(Err(e)) => return tls_failed(e),
        Ok(Ok(conn)) => conn,
    };
    match tokio::time::timeout(deadline, server_hello(&inner, &conn)).await {
        Ok(Ok((ctx, chain, route))) => {
            tracing::Span::current().record("peer", tracing::field::display(&ctx.identity));
            drop(guard);
            inner.register(
                conn,
                ctx,
                chain,
                PeerSide::Client,
                Direction::Inbound,
                route,
            );
        }
        Ok(Err((peer, code))) => {
            tracing::warn!(peer = ?peer.as_ref().map(|p| p.to_string()), %code, "refused peer");
            conn.close(code_varint(code), code.text().as_bytes());
            inner.emit(EndpointEvent::Refused { remote, peer, code });
        }
        Err(_) => {
            tracing::warn!("peer sent no hello in time");
            conn.close(code_varint(ErrorCode::Timeout), b"timeout");
            inner.emit(EndpointEvent::Refused {
                remote,
                peer: peer_chain(&conn)
                    .and_then(|c| c.first().and_then(|c| NodeIdentity::from_cert_der(c).ok())),
                code: ErrorCode::Timeout,
            });
        }
    }
}

type HelloOutcome =
    Result<(PeerCtx, Vec<CertificateDer<'static>>, Route), (Option<NodeIdentity>, ErrorCode)>;

/// Server side of Hello. On refusal, the `Refusal` frame has been sent; the caller closes.
async fn server_hello(inner: &Arc<Inner>, conn: &quinn::Connection) -> HelloOutcome {
    let max = inner.limits.max_frame_bytes;
    let chain = peer_chain(conn).ok_or((None, ErrorCode::Internal))?;
    let ee = chain.first().ok_or((None, ErrorCode::Internal))?;
    let id = NodeIdentity::from_cert_der(ee).map_err(|_| (None, ErrorCode::IdentityMismatch))?;
    let spki = tls::spki_sha256(ee).map_err(|_| (None, ErrorCode::IdentityMismatch))?;
    let fail = |code| (Some(id.clone()), code);
    let alpn = negotiated_alpn(conn).ok_or_else(|| fail(ErrorCode::UnsupportedVersion))?;
    let route = inner
        .router
        .get(&alpn)
        .cloned()
        .ok_or_else(|| fail(ErrorCode::UnsupportedVersion))?;
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|_| fail(ErrorCode::Malformed))?;
    let hello = match read_frame::<ClientFrame>(&mut recv, max).await {
        Ok(ClientFrame::Hello(h)) => Ok(h),
        Ok(_) => Err(ErrorCode::Malformed),
        Err(NetError::Wire(w)) => Err(w.code()),
        Err(_) => Err(ErrorCode::Malformed),
    };
    let verdict =
        hello.and_then(|hello| check_hello(inner, &id, &spki, &hello, &route).map(|()| hello));
    match verdict {
        Ok(hello) => {
            let ack = ServerFrame::HelloAck(HelloAck {
                version: route.protocol.alpn(),
                federation: inner.identity.federation.clone(),
                site: inner.identity.site.clone(),
                node: inner.identity.node.clone(),
                features: inner.features & hello.features,
            });
            write_frame(&mut send, &ack, max)
                .await
                .map_err(|_| fail(ErrorCode::Internal))?;
            let ctx = PeerCtx {
                connection_id: inner.next_id.fetch_add(1, Ordering::Relaxed),
                identity: id,
                spki,
                protocol: route.protocol,
                role: hello.role,
                features: inner.features & hello.features,
                remote: conn.remote_address(),
            };
            Ok((ctx, chain, route))
        }
        Err(code) => {
            let _ = write_frame(&mut send, &ServerFrame::Refusal(Refusal::new(code)), max).await;
            // Let the refusal reach the peer before the connection is closed.
            let _ = send.stopped().await;
            Err(fail(code))
        }
    }
}

fn check_hello(
    inner: &Inner,
    id: &NodeIdentity,
    spki: &str,
    hello: &Hello,
    route: &Route,
) -> Result<(), ErrorCode> {
    if hello.federation != id.federation || hello.site != id.site || hello.node != id.node {
        return Err(ErrorCode::IdentityMismatch);
    }
    if !hello
        .versions
        .iter()
        .any(|v| v.as_bytes() == route.protocol.alpn().as_bytes())
    {
        return Err(ErrorCode::UnsupportedVersion);
    }
    inner.admit(id, spki, route.permission, hello.role)
}

/// Client side of Hello, on an established TLS connection.
async fn client_hello(
    inner: &Arc<Inner>,
    conn: &quinn::Connection,
    site: &str,
    opts: &ConnectOptions,
) -> Result<Peer, NetError> {
    let max = inner.limits.max_frame_bytes;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = ClientFrame::Hello(Hello {
        federation: inner.identity.federation.clone(),
        site: inner.identity.site.clone(),
        node: inner.identity.node.clone(),
        role: opts.role,
        versions: opts.hello_versions.clone(),
        features: inner.features,
    });
    write_frame(&mut send, &hello, max).await?;
    let ack = match read_frame::<ServerFrame>(&mut recv, max).await? {
        ServerFrame::HelloAck(a) => a,
        ServerFrame::Refusal(r) => return Err(NetError::Refused(r.code)),
        _ => return Err(NetError::Unexpected),
    };
    let chain = peer_chain(conn).ok_or(NetError::RefusedPeer(ErrorCode::Internal))?;
    let ee = chain
        .first()
        .ok_or(NetError::RefusedPeer(ErrorCode::Internal))?;
    let id = NodeIdentity::from_cert_der(ee)
        .map_err(|_| NetError::RefusedPeer(ErrorCode::IdentityMismatch))?;
    let spki =
        tls::spki_sha256(ee).map_err(|_| NetError::RefusedPeer(ErrorCode::IdentityMismatch))?;
    if ack.federation != id.federation
        || ack.site != id.site
        || ack.node != id.node
        || id.site != site
    {
        return Err(NetError::RefusedPeer(ErrorCode::IdentityMismatch));
    }
    let alpn = negotiated_alpn(conn).unwrap_or_default();
    let protocol = ProtocolId::from_alpn(&alpn)
        .filter(|p| p.alpn() == ack.version && opts.alpns.contains(&ack.version))
        .ok_or(NetError::RefusedPeer(ErrorCode::UnsupportedVersion))?;
    let route = inner.router.get(&alpn).cloned().unwrap_or_else(|| Route {
        protocol,
        permission: permission_of(protocol),
        handler: Arc::new(NoHandler),
    });
    inner
        .admit(&id, &spki, route.permission, Role::Partner)
        .map_err(NetError::RefusedPeer)?;
    let ctx = PeerCtx {
        connection_id: inner.next_id.fetch_add(1, Ordering::Relaxed),
        identity: id,
        spki,
        protocol,
        role: opts.role,
        features: ack.features,
        remote: conn.remote_address(),
    };
    let side = PeerSide::Server {
        site: site.to_string(),
    };
    Ok(inner.register(conn.clone(), ctx, chain, side, Direction::Outbound, route))
}

/// The permission a protocol family needs.
pub fn permission_of(p: ProtocolId) -> Permission {
    if p.family == alpn::REPL {
        Permission::Standby
    } else {
        Permission::Exchange
    }
}

/// Answers every request with `not_authorized` (a dialer that serves no protocol).
struct NoHandler;
impl super::Handler for NoHandler {
    fn handle<'a>(
        &'a self,
        _peer: &'a PeerCtx,
        _request: Request,
    ) -> super::BoxFuture<'a, Result<Vec<u8>, ErrorCode>> {
        Box::pin(async { Err(ErrorCode::NotAuthorized) })
    }
}

/// Serves the streams the peer opens on a connection until it closes.
async fn serve_streams(peer: Peer, route: Route) {
    let inner = peer.inner.clone();
    loop {
        let (send, recv) = match peer.conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                let reason = e.to_string();
                inner
                    .conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&peer.ctx.connection_id);
                tracing::info!(%reason, "connection closed");
                inner.emit(EndpointEvent::Closed {
                    id: peer.ctx.connection_id,
                    peer: peer.ctx.identity.clone(),
                    reason,
                });
                return;
            }
        };
        let span = tracing::info_span!("request", peer = %peer.ctx.identity, stream = %send.id());
        tokio::spawn(serve_stream(peer.clone(), route.clone(), send, recv).instrument(span));
    }
}

async fn serve_stream(
    peer: Peer,
    route: Route,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let inner = &peer.inner;
    let max = inner.limits.max_frame_bytes;
    let deadline = Duration::from_millis(inner.limits.stream_timeout_ms);
    let frame =
        match tokio::time::timeout(deadline, read_frame::<ClientFrame>(&mut recv, max)).await {
            Err(_) => Err(ErrorCode::Timeout),
            Ok(Err(NetError::Wire(w))) => Err(w.code()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "request stream failed");
                return;
            }
            Ok(Ok(f)) => Ok(f),
        };
    peer.last_seen.store(now_ms(), Ordering::Relaxed);
    let reply = match frame {
        Err(code) => ServerFrame::error(0, code),
        Ok(ClientFrame::Ping(p)) => ServerFrame::Pong(crate::wire::Pong { nonce: p.nonce }),
        Ok(ClientFrame::Hello(_)) => ServerFrame::error(0, ErrorCode::Malformed),
        Ok(ClientFrame::Request(req)) => {
            let id = req.id;
            if !inner.policy.authorize(&peer.ctx.identity, route.permission) {
                ServerFrame::error(id, ErrorCode::NotAuthorized)
            } else {
                match route.handler.handle(&peer.ctx, req).await {
                    Ok(body) => ServerFrame::Response(crate::wire::Response { id, body }),
                    Err(code) => ServerFrame::error(id, code),
                }
            }
        }
    };
    if let ServerFrame::Error(e) = &reply {
        tracing::warn!(code = %e.refusal.code, "request refused");
        inner.emit(EndpointEvent::StreamRefused {
            id: peer.ctx.connection_id,
            peer: peer.ctx.identity.clone(),
            code: e.refusal.code,
        });
        // Stop reading what the peer may still send (an oversize or stalled frame).
        let _ = recv.stop(code_varint(e.refusal.code));
    }
    if let Err(e) = write_frame(&mut send, &reply, max).await {
        tracing::debug!(error = %e, "could not answer");
    }
}

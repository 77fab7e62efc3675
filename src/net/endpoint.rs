//! The QUIC endpoint: one quinn endpoint serving and dialing, with its TLS configs, caps,
//! timeouts, live trust reload and the closing of peers.
//!
//! Life of a connection (each step in its own module):
//! 1. [`accept`](super::accept): over the total cap, an incoming attempt is refused before the
//!    handshake (`Incoming::refuse`);
//! 2. TLS 1.3 with client certificates, judged by [`Trust`](super::tls::Trust) on both sides;
//! 3. [`hello`](super::hello): the client opens the first stream and sends `Hello`; the server
//!    checks that it names the certificate's identity, offers the negotiated version, that the
//!    policy admits the peer with the protocol's permission, and that the per-peer cap allows
//!    it, then answers `HelloAck` or `Refusal` (and closes with the same code). Steps 2-3 run
//!    under the handshake timeout. A peer counts as connected only after `HelloAck`;
//! 4. [`registry`](super::registry): the connection is tracked on its own, with identity, role
//!    and protocol;
//! 5. [`peer`](super::peer): every later stream carries one request (or ping) and its answer;
//!    the request must arrive within the stream timeout, and the policy authorizes every
//!    request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::sync::{broadcast, Notify};
use tracing::Instrument;

use super::accept::accept_loop;
use super::admission::{HandshakeGate, LogLimiter};
use super::event::{Direction, EndpointEvent, PeerInfo, PingResult, ReloadReport};
use super::handler::{PeerCtx, Route, Router};
use super::hello::client_hello;
use super::peer::{close_at_expiry, serve_streams, Peer};
use super::policy::{Admission, Candidate, PeerPolicy, Permission};
use super::registry::{close_with, now_ms, LiveConn, Registry};
use super::tls::{self, LocalCert, PeerSide, TlsConfigError, Trust, TrustConfig};
use super::NetError;
use crate::config::TransportSection;
use crate::identity::NodeIdentity;
use crate::wire::alpn;
use crate::wire::{ErrorCode, Role};

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

/// The state every part of the endpoint shares (accept path, Hello, registry, peers).
pub(crate) struct Inner {
    pub(crate) quinn: quinn::Endpoint,
    pub(crate) identity: NodeIdentity,
    pub(crate) role: Role,
    pub(crate) features: u64,
    pub(crate) limits: TransportSection,
    local: RwLock<LocalCert>,
    transport: Arc<TransportConfig>,
    trust: RwLock<Arc<Trust>>,
    client_configs: Mutex<HashMap<Vec<String>, quinn::ClientConfig>>,
    pub(crate) policy: Arc<dyn PeerPolicy>,
    pub(crate) router: Router,
    pub(crate) registry: Registry,
    pub(crate) gate: Mutex<HandshakeGate>,
    pub(crate) refusal_log: Mutex<LogLimiter>,
    pub(crate) next_id: AtomicU64,
    pub(crate) next_request: AtomicU64,
    events: broadcast::Sender<EndpointEvent>,
    pub(crate) shutdown: Notify,
}

/// A QUIC endpoint that serves the routed protocols and dials peers. Cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
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

impl Inner {
    fn trust(&self) -> Arc<Trust> {
        self.trust.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn emit(&self, e: EndpointEvent) {
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

    pub(crate) fn live_count(&self) -> usize {
        self.registry.len()
    }

    /// The admission checks shared by both sides: the policy admits the peer with `permission`
    /// (and the standby permission for a standby), and the per-peer cap allows one more.
    pub(crate) fn admit(
        &self,
        peer: &Candidate<'_>,
        permission: Permission,
        role: Role,
    ) -> Result<(), ErrorCode> {
        let id = peer.identity;
        let perms = match self.policy.admit(peer) {
            Admission::Accepted(p) => p,
            Admission::Pending => return Err(ErrorCode::UnknownPeer),
            Admission::Denied => return Err(ErrorCode::Denied),
        };
        // A standby is a node of this very site and federation (a pinned partner of another
        // federation with the same site name is not).
        let own_site = id.site == self.identity.site && id.federation == self.identity.federation;
        let standby_ok = role != Role::Standby || (perms.standby && own_site);
        if !perms.contains(permission) || !standby_ok || !self.policy.authorize(id, permission) {
            return Err(ErrorCode::NotAuthorized);
        }
        if self.registry.count_for(id) >= self.limits.max_connections_per_peer as usize {
            return Err(ErrorCode::Overloaded);
        }
        Ok(())
    }

    /// Registers a connection that completed Hello and starts serving its streams.
    pub(crate) fn register(
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
        self.registry.insert(LiveConn {
            conn: conn.clone(),
            ctx: ctx.clone(),
            chain,
            side,
            direction,
            since: SystemTime::now(),
            last_seen: last_seen.clone(),
            not_after,
        });
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
            limits: route.limits,
        };
        let span = tracing::Span::current();
        tokio::spawn(serve_streams(peer.clone(), route).instrument(span.clone()));
        tokio::spawn(close_at_expiry(peer.clone(), not_after).instrument(span));
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
            registry: Registry::default(),
            gate: Mutex::new(HandshakeGate::default()),
            refusal_log: Mutex::new(LogLimiter::new(10, Duration::from_secs(60))),
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
                        close_with(&conn, *code);
                    }
                    Err(e)
                }
                Err(_) => {
                    close_with(&conn, ErrorCode::Timeout);
                    Err(NetError::Timeout("the hello"))
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The live connection to `id`, if any (either direction; the oldest when it holds
    /// several).
    pub fn peer(&self, id: &NodeIdentity) -> Option<Peer> {
        let (conn, ctx, last_seen) = self.inner.registry.find(id)?;
        let limits = self
            .inner
            .router
            .get(ctx.protocol.alpn().as_bytes())
            .map(|r| r.limits)
            .unwrap_or_default();
        Some(Peer {
            inner: self.inner.clone(),
            conn,
            ctx,
            last_seen,
            limits,
        })
    }

    /// Handshakes (TLS or Hello) in progress on the accept path.
    pub fn handshakes_in_progress(&self) -> usize {
        self.inner
            .gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .in_progress()
    }

    /// Runtime state of every live connection, for `ttx peer list`.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.inner.registry.infos()
    }

    /// Closes every live connection of `site` (all its nodes, both directions) with `code`, and
    /// no other; returns how many were closed.
    pub fn close_site(&self, site: &str, code: ErrorCode) -> usize {
        self.close_where(code, |c| (c.ctx.identity.site == site).then(String::new))
    }

    /// Closes every live connection whose peer certificate's `notAfter` is before `now` (UNIX
    /// seconds) with `trust_revoked`; returns how many were closed. The registry also schedules
    /// this for each connection at its own `notAfter`; this is the catch-all sweep.
    pub fn close_expired(&self, now: i64) -> usize {
        self.close_where(ErrorCode::TrustRevoked, |c| {
            (c.not_after < now).then(|| "certificate expired".to_string())
        })
    }

    fn close_where(
        &self,
        code: ErrorCode,
        doomed: impl FnMut(&LiveConn) -> Option<String>,
    ) -> usize {
        let (closed, _) = self.inner.registry.close_where(code, doomed);
        for (id, peer, reason) in &closed {
            tracing::warn!(%peer, connection = id, %code, %reason, "closing a peer's connection");
            if code == ErrorCode::TrustRevoked {
                self.inner.emit(EndpointEvent::TrustClosed {
                    id: *id,
                    peer: peer.clone(),
                    reason: reason.clone(),
                });
            }
        }
        closed.len()
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
        let now = UnixTime::now();
        let (closed, kept) = inner.registry.close_where(ErrorCode::TrustRevoked, |c| {
            let (ee, rest) = c.chain.split_first()?;
            trust
                .check(ee, rest, &c.side, now)
                .err()
                .map(|e| e.to_string())
        });
        let mut report = ReloadReport {
            kept,
            closed: Vec::new(),
        };
        for (id, peer, reason) in closed {
            tracing::warn!(%peer, %reason, "closing connection: peer no longer trusted");
            inner.emit(EndpointEvent::TrustClosed {
                id,
                peer: peer.clone(),
                reason: reason.clone(),
            });
            report.closed.push((peer, reason));
        }
        Ok(report)
    }

    /// Closes every connection with `shutting_down`, stops accepting, and waits (bounded by the
    /// handshake timeout) for the peers to be told.
    pub async fn shutdown(&self) {
        self.inner.shutdown.notify_waiters();
        self.inner.quinn.close(
            super::registry::code_varint(ErrorCode::ShuttingDown),
            ErrorCode::ShuttingDown.text().as_bytes(),
        );
        let grace = Duration::from_millis(self.inner.limits.handshake_timeout_ms);
        let _ = tokio::time::timeout(grace, self.inner.quinn.wait_idle()).await;
    }
}

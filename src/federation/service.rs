//! The federation service of a node: endpoint, policy, trust, reload, peer status and ping.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::policy::StorePolicy;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::identity::NodeIdentity;
use crate::model::peer::{PeerOp, PeerRecord, PeerState};
use crate::net::handler::Route;
use crate::net::{
    ConnectOptions, Endpoint, EndpointEvent, EndpointOptions, LocalCert, NetError, Peer,
    Permission, Router, TrustConfig,
};
use crate::pki::inspect::{days_left, expiry_warning};
use crate::pki::{PkiError, TrustMaterial};
use crate::store::{query, Store, StoreError, WriteOp, WriteRequest};
use crate::wire::alpn::{EXCHANGE, EXCHANGE_V1, EXCHANGE_V2};
use crate::wire::{ErrorCode, Role};

/// Why the federation service could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// Certificates, keys, CAs, CRLs or the deny list could not be loaded.
    #[error("tls: {0}")]
    Pki(#[from] PkiError),
    /// The QUIC endpoint failed.
    #[error("transport: {0}")]
    Net(#[from] NetError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The config could not be re-read on reload.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The certificate names another node than the config.
    #[error("the node certificate names {cert}, but the config says {config}: install the right certificate")]
    WrongIdentity {
        /// From the certificate.
        cert: String,
        /// From the config.
        config: String,
    },
    /// `transport.listen` is not set.
    #[error("this node does not listen for peers: set transport.listen in ttx.toml and install a certificate")]
    NotListening,
    /// Nothing is known of that peer.
    #[error("no peer {0:?} (see `ttx peer list`)")]
    UnknownPeer(String),
    /// No address of the peer answered (timed out, no route, cannot resolve): a failure.
    #[error("cannot reach {site}: {reasons}")]
    Unreachable {
        /// The site.
        site: String,
        /// What happened at each address.
        reasons: String,
    },
    /// The peer answered and refused (TLS or Hello), or we refused its certificate.
    #[error("{site} refused: {reasons}")]
    Refused {
        /// The site.
        site: String,
        /// What each address answered.
        reasons: String,
    },
    /// The registry has no address for the peer (accepted from the pending list without one).
    #[error("no address for {0}: give one with `ttx peer add {0} --addr HOST:PORT`")]
    NoAddress(String),
}

/// A peer as `ttx peer list` shows it: the registry record and the live connection, if any.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Site.
    pub site: String,
    /// Admin decision.
    pub state: PeerState,
    /// Addresses.
    pub addrs: Vec<String>,
    /// Pinned keys.
    pub pins: Vec<String>,
    /// May exchange referrals.
    pub exchange: bool,
    /// May be this site's standby.
    pub standby: bool,
    /// The witness relation (this node's witness, or a site this node witnesses).
    #[serde(default)]
    pub witness: bool,
    /// Connected now.
    pub connected: bool,
    /// The connected node's identity URI.
    pub identity: Option<String>,
    /// Negotiated protocol version.
    pub version: Option<String>,
    /// Last heard from (unix ms).
    pub last_seen: Option<i64>,
    /// Round-trip time in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Days until the peer's certificate expires.
    pub cert_days_left: Option<i64>,
    /// Expiry warning (30, 14, 7 days ahead; expired).
    pub warning: Option<String>,
    /// The key last seen from it (pending peers).
    pub seen_spki: Option<String>,
    /// The node last seen from it (pending peers: `ttx://FEDERATION/SITE/NODE` is `identity`).
    #[serde(default)]
    pub seen_node: Option<String>,
    /// The issuer of the certificate last seen from it (pending peers).
    #[serde(default)]
    pub seen_issuer: Option<String>,
    /// The address it was last seen from (pending peers).
    #[serde(default)]
    pub seen_addr: Option<String>,
    /// When it was first seen (pending peers; unix ms).
    #[serde(default)]
    pub first_seen: Option<i64>,
}

/// The answer of `ttx peer ping`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PingAnswer {
    /// The peer's identity.
    pub identity: String,
    /// Negotiated protocol version.
    pub version: String,
    /// Round trip of the ping, in milliseconds.
    pub latency_ms: f64,
    /// The address used.
    pub addr: String,
}

/// The answer of `ttx pki reload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadAnswer {
    /// Live connections still trusted.
    pub kept: usize,
    /// Live connections closed, with the reason.
    pub closed: Vec<(String, String)>,
    /// Trusted CAs now.
    pub cas: usize,
    /// CRLs now.
    pub crls: usize,
    /// Denied keys now.
    pub denied_keys: usize,
}

/// The node's federation service.
#[derive(Clone)]
pub struct Federation {
    endpoint: Endpoint,
    policy: Arc<StorePolicy>,
    store: Store,
    dir: DataDir,
    identity: NodeIdentity,
    /// When this node's certificate in use expires (updated by reload).
    own_not_after: Arc<std::sync::Mutex<OffsetDateTime>>,
    /// The pins the TLS trust was last built with: a registry change that leaves them alone
    /// needs no trust reload.
    applied_pins: Arc<std::sync::Mutex<Pins>>,
}

/// This node's side of the federation, for `ttx status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FederationStatus {
    /// This node's identity URI.
    pub identity: String,
    /// Days until this node's certificate expires.
    pub cert_days_left: i64,
    /// Expiry warning (30, 14, 7 days ahead; expired).
    pub cert_warning: Option<String>,
    /// Peers connected now.
    pub peers_connected: usize,
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Pinned keys of accepted peers, by site: the registry's part of the TLS trust.
type Pins = BTreeMap<String, BTreeSet<String>>;

fn pins_of(records: &[PeerRecord]) -> Pins {
    records
        .iter()
        .filter(|r| r.state == PeerState::Accepted && !r.pins.is_empty())
        .map(|r| (r.site.clone(), r.pins.iter().cloned().collect()))
        .collect()
}

fn trust_config(material: &TrustMaterial, records: &[PeerRecord]) -> TrustConfig {
    let pins = pins_of(records);
    TrustConfig {
        ca_certs: material.ca_certs.clone(),
        crls: material.crls.clone(),
        deny_spki: material.deny_spki.clone(),
        pins,
    }
}

fn warn_expiry(what: &str, not_after: OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    if let Some(w) = expiry_warning(OffsetDateTime::UNIX_EPOCH, not_after, now) {
        tracing::warn!(
            days_left = days_left(not_after, now),
            "{what} certificate {w}: renew it (`ttx pki request`)"
        );
    }
}

impl Federation {
    /// Binds the QUIC endpoint if `transport.listen` is set. Missing or unsafe TLS material
    /// (a key readable by others, no certificate) or a taken port is an error; the node's
    /// [`FederationSlot`](super::FederationSlot) keeps serving without the federation then.
    /// `routes` are the node's other protocols (the standby's `ttx-repl/1`), served beside
    /// `ttx-exchange/1`.
    pub async fn start(
        dir: &DataDir,
        config: &Config,
        store: Store,
        shutdown: watch::Receiver<bool>,
        routes: &[Route],
        site: &super::exchange::SiteLink,
    ) -> Result<Option<(Federation, Vec<JoinHandle<()>>)>, FederationError> {
        let Some(listen) = config.transport.listen else {
            return Ok(None);
        };
        let material = TrustMaterial::load(dir.root(), &config.tls)?;
        let wanted = NodeIdentity::new(
            &config.node.federation,
            &config.node.site,
            &config.node.node,
        )
        .map_err(crate::config::ConfigError::Name)?;
        if material.identity != wanted {
            return Err(FederationError::WrongIdentity {
                cert: material.identity.to_string(),
                config: wanted.to_string(),
            });
        }
        let records = store.reader.read(query::peers).await?;
        let (policy, seen) = StorePolicy::new(&wanted.site, records.clone());
        let policy = Arc::new(policy);
        let handler = Arc::new(super::exchange::ExchangeV1::new(
            store.clone(),
            site.clone(),
        ));
        // The exchange versions this node speaks, in its order of preference (newest first by
        // default); one handler serves them all.
        let mut router = Router::new();
        for version in &config.transport.exchange_versions {
            let protocol = match version {
                2 => EXCHANGE_V2,
                _ => EXCHANGE_V1,
            };
            router = router.route_limited(
                protocol,
                Permission::Exchange,
                super::exchange::limits(),
                handler.clone(),
            );
        }
        for r in routes {
            router = router.route_limited(r.protocol, r.permission, r.limits, r.handler.clone());
        }
        let options = EndpointOptions {
            identity: wanted.clone(),
            role: Role::Partner,
            features: 0,
            transport: config.transport.clone(),
            local: LocalCert {
                chain: material.cert_chain.clone(),
                key: material.key.clone_key(),
            },
            trust: trust_config(&material, &records),
        };
        let endpoint = Endpoint::bind(listen, options, policy.clone(), router)?;
        warn_expiry("this node's", material.not_after);
        let fed = Federation {
            endpoint,
            policy,
            store,
            dir: dir.clone(),
            identity: wanted,
            own_not_after: Arc::new(std::sync::Mutex::new(material.not_after)),
            applied_pins: Arc::new(std::sync::Mutex::new(pins_of(&records))),
        };
        let tasks = vec![
            tokio::spawn(fed.clone().record_pending(seen)),
            tokio::spawn(fed.clone().follow_registry(shutdown.clone())),
            tokio::spawn(fed.clone().log_events(shutdown.clone())),
            tokio::spawn(fed.clone().watch_expiry(shutdown)),
        ];
        Ok(Some((fed, tasks)))
    }

    /// The UDP address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, FederationError> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Closes every connection.
    pub async fn shutdown(&self) {
        self.endpoint.shutdown().await;
    }

    async fn record_pending(self, mut seen: mpsc::Receiver<super::policy::Seen>) {
        while let Some((id, sighting)) = seen.recv().await {
            // Only the primary records sightings; a standby's would fork the site's log.
            if !self.store.writer.role.borrow().is_primary() {
                tracing::info!(peer = %id, "unknown peer seen on a node that is not the primary: not recorded");
                continue;
            }
            let req = WriteRequest {
                actor: "system".into(),
                idempotency: None,
                op: WriteOp::Peer(PeerOp::Seen {
                    site: id.site.clone(),
                    seen: sighting,
                }),
            };
            match self.store.writer.write(req).await {
                Ok(_) => {
                    tracing::info!(peer = %id, "unknown peer put on the pending list (`ttx peer pending`)")
                }
                Err(StoreError::Closed) => return,
                Err(e) => tracing::error!(peer = %id, error = %e, "cannot record a pending peer"),
            }
        }
    }

    /// Keeps the policy, the pins and the live connections in step with the registry.
    async fn follow_registry(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.store.writer.peers_changed.notified() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if let Err(e) = self.apply_registry().await {
                tracing::error!(error = %e, "cannot apply the peer registry");
            }
        }
    }

    /// Applies the registry after a change: the policy, closing peers no longer accepted, and
    /// the TLS trust only when the pins changed (the common change, a pending sighting or an
    /// accept, needs no re-read of the TLS files).
    async fn apply_registry(&self) -> Result<(), FederationError> {
        let records = self.apply_policy().await?;
        let applied = self
            .applied_pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if applied != pins_of(&records) {
            self.reload_trust(&records).await?;
        }
        Ok(())
    }

    /// Loads the registry into the policy and closes live connections of peers that are no
    /// longer accepted; returns the registry.
    async fn apply_policy(&self) -> Result<Vec<PeerRecord>, FederationError> {
        let records = self.store.reader.read(query::peers).await?;
        self.policy.replace(records.clone());
        let mut sites: Vec<String> = self
            .endpoint
            .peers()
            .into_iter()
            .map(|p| p.identity.site)
            .collect();
        sites.sort();
        sites.dedup();
        for site in sites {
            let code = match records.iter().find(|r| r.site == site) {
                Some(r) if r.state == PeerState::Accepted => continue,
                Some(_) => ErrorCode::Denied,
                None => ErrorCode::Removed,
            };
            {
                let n = self.endpoint.close_site(&site, code);
                tracing::warn!(%site, connections = n, "closed the connections of a peer no longer accepted");
            }
        }
        Ok(records)
    }

    async fn reload_trust(&self, records: &[PeerRecord]) -> Result<ReloadAnswer, FederationError> {
        let dir = self.dir.clone();
        let material =
            tokio::task::spawn_blocking(move || -> Result<TrustMaterial, FederationError> {
                let config = Config::load(&dir.config())?;
                Ok(TrustMaterial::load(dir.root(), &config.tls)?)
            })
            .await
            .map_err(|_| FederationError::Store(StoreError::Closed))??;
        warn_expiry("this node's", material.not_after);
        *self.own_not_after.lock().unwrap_or_else(|e| e.into_inner()) = material.not_after;
        let trust = trust_config(&material, records);
        let pins = trust.pins.clone();
        let answer = (
            trust.ca_certs.len(),
            trust.crls.len(),
            trust.deny_spki.len(),
        );
        let local = LocalCert {
            chain: material.cert_chain.clone(),
            key: material.key.clone_key(),
        };
        let report = self.endpoint.reload_with(Some(local), trust)?;
        *self.applied_pins.lock().unwrap_or_else(|e| e.into_inner()) = pins;
        for (peer, reason) in &report.closed {
            tracing::warn!(%peer, %reason, "closed a live connection after the trust reload");
        }
        Ok(ReloadAnswer {
            kept: report.kept,
            closed: report
                .closed
                .into_iter()
                .map(|(p, r)| (p.to_string(), r))
                .collect(),
            cas: answer.0,
            crls: answer.1,
            denied_keys: answer.2,
        })
    }

    /// Re-reads certificates, CAs, CRLs, the deny list and the registry's pins, applies them to
    /// new connections, and closes live connections that are no longer trusted.
    pub async fn reload(&self) -> Result<ReloadAnswer, FederationError> {
        let records = self.apply_policy().await?;
        self.reload_trust(&records).await
    }

    /// Every six hours, warns in the log about this node's certificate and live peers'
    /// certificates that expire within 30, 14 or 7 days (or have expired). (Connections are
    /// closed at their peer certificate's own `notAfter` by the endpoint.)
    async fn watch_expiry(self, mut shutdown: watch::Receiver<bool>) {
        const EVERY: Duration = Duration::from_secs(6 * 3600);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            self.warn_about_expiry().await;
        }
    }

    /// The QUIC endpoint (tests look at and dial through it).
    #[cfg(test)]
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn warn_about_expiry(&self) {
        let dir = self.dir.clone();
        let own = tokio::task::spawn_blocking(move || {
            let config = Config::load(&dir.config()).ok()?;
            TrustMaterial::load(dir.root(), &config.tls)
                .ok()
                .map(|m| m.not_after)
        })
        .await
        .ok()
        .flatten();
        if let Some(not_after) = own {
            warn_expiry("this node's", not_after);
        }
        for p in self.endpoint.peers() {
            if let Ok(not_after) = OffsetDateTime::from_unix_timestamp(p.cert_not_after) {
                warn_expiry(&format!("peer {}'s", p.identity), not_after);
            }
        }
    }

    async fn log_events(self, mut shutdown: watch::Receiver<bool>) {
        let mut events = self.endpoint.events();
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match event {
                Ok(EndpointEvent::Connected {
                    peer, direction, ..
                }) => {
                    tracing::info!(%peer, ?direction, "peer connected")
                }
                Ok(EndpointEvent::HandshakeFailed { remote, failure }) => {
                    tracing::warn!(%remote, %failure, "peer handshake failed")
                }
                Ok(EndpointEvent::Refused { remote, peer, code }) => {
                    tracing::warn!(%remote, peer = %peer.map_or_else(|| "-".to_string(), |p| p.to_string()), ?code, "peer refused")
                }
                Ok(EndpointEvent::TrustClosed { peer, reason, .. }) => {
                    tracing::warn!(%peer, %reason, "peer no longer trusted; connection closed")
                }
                Ok(EndpointEvent::Closed { peer, reason, .. }) => {
                    tracing::info!(%peer, %reason, "peer disconnected")
                }
                Ok(EndpointEvent::StreamRefused { peer, code, .. }) => {
                    tracing::warn!(%peer, ?code, "peer request refused")
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "peer event log fell behind")
                }
                Err(_) => return,
            }
        }
    }

    /// The registry joined with the live connections.
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, FederationError> {
        let records = self.store.reader.read(query::peers).await?;
        let live = self.endpoint.peers();
        let now = OffsetDateTime::now_utc();
        Ok(records
            .into_iter()
            .map(|r| {
                let conn = live.iter().find(|p| p.identity.site == r.site);
                let not_after =
                    conn.and_then(|c| OffsetDateTime::from_unix_timestamp(c.cert_not_after).ok());
                let pending = r.state == PeerState::Pending;
                // Not connected: the last refused sighting (memory), else the recorded one.
                let (seen_at, seen_addr) = match self.policy.last_seen(&r.site) {
                    Some((at, addr)) if r.seen_at.is_none_or(|s| at > s) => (Some(at), Some(addr)),
                    _ => (r.seen_at, r.seen_addr.clone()),
                };
                let seen_identity = r
                    .seen_node
                    .as_ref()
                    .map(|n| format!("ttx://{}/{}/{n}", self.identity.federation, r.site));
                PeerStatus {
                    connected: conn.is_some(),
                    identity: conn.map(|c| c.identity.to_string()).or(seen_identity),
                    version: conn.map(|c| c.version.clone()),
                    last_seen: conn.map(|c| unix_ms(c.last_seen)).or(seen_at),
                    seen_node: r.seen_node,
                    seen_issuer: r.seen_issuer,
                    seen_addr: seen_addr.filter(|_| pending || conn.is_none()),
                    first_seen: pending.then_some(r.since),
                    rtt_ms: conn.map(|c| c.rtt.as_secs_f64() * 1000.0),
                    cert_days_left: not_after.map(|n| days_left(n, now)),
                    warning: not_after
                        .and_then(|n| expiry_warning(OffsetDateTime::UNIX_EPOCH, n, now)),
                    site: r.site,
                    state: r.state,
                    addrs: r.addrs,
                    pins: r.pins,
                    exchange: r.exchange,
                    standby: r.standby,
                    witness: r.witness,
                    seen_spki: r.seen_spki,
                }
            })
            .collect())
    }

    /// A Hello-level round trip to `site`: over the live connection, or a new one to each of
    /// its addresses in turn.
    pub async fn ping(&self, site: &str) -> Result<PingAnswer, FederationError> {
        let record = self.record(site).await?;
        let live = self
            .endpoint
            .peers()
            .into_iter()
            .find(|p| p.identity.site == site);
        if let Some(info) = live {
            if let Ok(pong) = self.endpoint.ping(&info.identity).await {
                return Ok(PingAnswer {
                    identity: info.identity.to_string(),
                    version: pong.version,
                    latency_ms: pong.latency.as_secs_f64() * 1000.0,
                    addr: info.remote.to_string(),
                });
            }
        }
        let ((peer, pong), addr) = self
            .over_addrs(&record, |peer| async move {
                let pong = peer.ping().await?;
                Ok((peer, pong))
            })
            .await?;
        Ok(PingAnswer {
            identity: peer.ctx().identity.to_string(),
            version: pong.version,
            latency_ms: pong.latency.as_secs_f64() * 1000.0,
            addr,
        })
    }

    /// The address of a live connection with `node` of this node's own site (the node that
    /// fenced this one, say), if there is one.
    pub(crate) fn own_node_addr(&self, node: &str) -> Option<SocketAddr> {
        self.endpoint
            .peers()
            .into_iter()
            .find(|p| p.identity.site == self.identity.site && p.identity.node == node)
            .map(|p| p.remote)
    }

    /// The live connection to `site` for the exchange, if there is one (either direction):
    /// to its node at address `at` when given (a site's nodes share its name), else to any.
    pub(crate) fn live_exchange_peer(&self, site: &str, at: Option<&str>) -> Option<Peer> {
        let info = self.endpoint.peers().into_iter().find(|p| {
            p.identity.site == site
                && p.version.starts_with(EXCHANGE)
                && at.is_none_or(|a| p.remote.to_string() == a)
        })?;
        self.endpoint.peer(&info.identity)
    }

    /// A new connection to `site` (speaking the exchange), trying `first` (where the site's
    /// standby or deposed primary said its primary is; the certificate check still decides
    /// whether the node there is of that site), then each registered address in turn; returns
    /// it with the address that answered.
    pub(crate) async fn dial_from(
        &self,
        site: &str,
        first: Option<&str>,
    ) -> Result<(Peer, String), FederationError> {
        let mut record = self.record(site).await?;
        if let Some(first) = first {
            record.addrs.retain(|a| a != first);
            record.addrs.insert(0, first.to_string());
        }
        self.over_addrs(&record, |peer| async move { Ok(peer) })
            .await
    }

    /// A new connection to `site` as this site's witness (`ttx-witness/1`), at `addr` when
    /// given, else at each of its registered addresses in turn. The registry must allow it
    /// `witness` either way (the certificate there must name `site`).
    pub(crate) async fn dial_witness(
        &self,
        site: &str,
        addr: Option<&str>,
    ) -> Result<Peer, FederationError> {
        let mut record = self.record(site).await?;
        if let Some(addr) = addr {
            record.addrs = vec![addr.to_string()];
        }
        self.over_addrs_of(&record, crate::wire::alpn::WITNESS, |peer| async move {
            Ok(peer)
        })
        .await
        .map(|(peer, _)| peer)
    }

    /// The registry's record of `site`.
    async fn record(&self, site: &str) -> Result<PeerRecord, FederationError> {
        let found = {
            let site = site.to_string();
            self.store
                .reader
                .read(move |c| query::peer(c, &site))
                .await?
        };
        found.ok_or_else(|| FederationError::UnknownPeer(site.to_string()))
    }

    /// Dials each of the peer's addresses in turn and runs `then` on the new connection, each
    /// attempt within 10 s; the first success wins, with the address that answered. When all
    /// fail: refused (a TLS or Hello refusal) or unreachable, with every address's reason.
    async fn over_addrs<T, F, Fut>(
        &self,
        record: &PeerRecord,
        then: F,
    ) -> Result<(T, String), FederationError>
    where
        F: Fn(Peer) -> Fut,
        Fut: std::future::Future<Output = Result<T, NetError>>,
    {
        self.over_addrs_of(record, EXCHANGE, then).await
    }

    /// [`Self::over_addrs`] speaking the protocol `family`.
    async fn over_addrs_of<T, F, Fut>(
        &self,
        record: &PeerRecord,
        family: &str,
        then: F,
    ) -> Result<(T, String), FederationError>
    where
        F: Fn(Peer) -> Fut,
        Fut: std::future::Future<Output = Result<T, NetError>>,
    {
        let site = record.site.as_str();
        if record.addrs.is_empty() {
            return Err(FederationError::NoAddress(site.to_string()));
        }
        let (mut reasons, mut refused) = (Vec::new(), false);
        for addr in &record.addrs {
            let resolved = match tokio::net::lookup_host(addr.as_str())
                .await
                .map(|mut a| a.next())
            {
                Ok(Some(a)) => a,
                _ => {
                    reasons.push(format!("{addr}: cannot resolve"));
                    continue;
                }
            };
            let attempt = tokio::time::timeout(Duration::from_secs(10), async {
                let peer = self.endpoint.connect(resolved, site, family).await?;
                then(peer).await
            })
            .await;
            match attempt {
                Ok(Ok(done)) => return Ok((done, addr.clone())),
                Ok(Err(e)) => {
                    refused |= matches!(
                        e,
                        NetError::Handshake(_) | NetError::Refused(_) | NetError::RefusedPeer(_)
                    );
                    reasons.push(format!("{addr}: {e}"))
                }
                Err(_) => reasons.push(format!("{addr}: no answer within 10 s")),
            }
        }
        let (site, reasons) = (site.to_string(), reasons.join("; "));
        Err(if refused {
            FederationError::Refused { site, reasons }
        } else {
            FederationError::Unreachable { site, reasons }
        })
    }

    /// Dials this site's primary at `addr` as its standby: `ttx-repl/1` only, role `Standby`
    /// in Hello (the primary admits only a node of its own site holding the standby
    /// permission).
    pub async fn connect_as_standby(&self, addr: SocketAddr) -> Result<Peer, NetError> {
        let alpns = vec![crate::wire::alpn::REPL_V1.alpn()];
        let opts = ConnectOptions {
            hello_versions: alpns.clone(),
            alpns,
            role: Role::Standby,
        };
        self.endpoint
            .connect_with(addr, &self.identity.site, opts)
            .await
    }

    /// This node's identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// Identity, certificate expiry and connected peers, for `ttx status`.
    pub fn status(&self) -> FederationStatus {
        let now = OffsetDateTime::now_utc();
        let not_after = *self.own_not_after.lock().unwrap_or_else(|e| e.into_inner());
        let mut connected: Vec<NodeIdentity> = self
            .endpoint
            .peers()
            .into_iter()
            .map(|p| p.identity)
            .collect();
        connected.sort();
        connected.dedup();
        FederationStatus {
            identity: self.identity.to_string(),
            cert_days_left: days_left(not_after, now),
            cert_warning: expiry_warning(OffsetDateTime::UNIX_EPOCH, not_after, now),
            peers_connected: connected.len(),
        }
    }
}

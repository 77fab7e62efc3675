//! `ttx standby clone DIR --from HOST:PORT`: a new standby's data dir made from a running
//! primary, all or nothing.
//!
//! 1. DIR must not hold a node (a config or a store).
//! 2. The node key (`DIR/tls/node.key`, 0600) and CSR (`DIR/tls/node.csr`) are made for
//!    `ttx://FEDERATION/SITE/NODE` (an existing key is kept, so the fingerprint given to the
//!    CA stays valid across attempts). Trust is bootstrapped explicitly ([`CloneTrust`]): a
//!    certificate the federation CA issued for that identity and key (with the CA's
//!    certificate), or one installed earlier; the primary admits the clone only if its
//!    registry authorizes this site's standby (`ttx peer add SITE --allow standby`, optionally
//!    `--pin` with the standby's key fingerprint so that only this key may be the standby).
//! 3. The clone dials the primary over `ttx-repl/1` as `Standby` (with an endpoint of its own,
//!    not a node) and asks for a snapshot; the primary streams a consistent copy
//!    ([`super::send_snapshot`]). Its length and SHA-256 are checked as it arrives
//!    ([`crate::store::snapshot::Receiver`]).
//! 4. The copy is made this site's standby of the primary (`site_log::make_standby`), the
//!    config (with `replication.primary`) is written, and both are moved into DIR only then
//!    (the staging of `ttx init`). A failure or a kill at any step leaves no config and no
//!    store in DIR (only the key material of step 2).
//!
//! `ttx serve DIR` then follows the primary from the snapshot's position. The standby's
//! operators and tokens are the site's (they came with the snapshot): no `admin.token` is
//! written; the site's admin token works on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::datadir::DataDir;
use crate::identity::NodeIdentity;
use crate::net::{
    Admission, Candidate, ConnectOptions, Endpoint, EndpointOptions, FramedRecv, LocalCert,
    NetError, PeerPolicy, Permission, Permissions, Router, TrustConfig,
};
use crate::node::init::{refuse_existing, write_config, Staging};
use crate::node::NodeError;
use crate::pki::trust::TrustMaterial;
use crate::pki::PkiError;
use crate::store::snapshot::{Receiver, SnapshotError};
use crate::store::{site_log, StoreError};
use crate::wire::codec;
use crate::wire::repl::{SnapshotAccepted, SnapshotFrame, SnapshotRequest, ToPrimary};
use crate::wire::{ErrorCode, Role};

/// The largest snapshot a clone takes unless told otherwise (64 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 64 << 30;
/// The longest silence of the primary on the snapshot stream (it sends `Preparing` every
/// second while it makes the copy).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long dialing the primary may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How the new standby is trusted by its primary (and trusts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloneTrust {
    /// `DIR/tls/node.crt` and `DIR/tls/ca.pem` are in place already (installed with
    /// `ttx pki install` after an earlier attempt, or by hand).
    Installed,
    /// A certificate the federation CA issued for `SITE/NODE` and the key in
    /// `DIR/tls/node.key` (`ttx pki sign` on the CSR), with the CA's certificate.
    Certificate {
        /// The node certificate (PEM).
        cert: PathBuf,
        /// The CA certificate that issued it (PEM).
        ca_cert: PathBuf,
    },
    /// The federation CA's directory is at hand (labs and tests): sign the CSR with it.
    CaDir(PathBuf),
}

/// What to clone, from where, into where.
#[derive(Debug, Clone)]
pub struct CloneOptions {
    /// The data directory to create.
    pub dir: PathBuf,
    /// The primary's QUIC address (`HOST:PORT`); it becomes `replication.primary`.
    pub from: String,
    /// The new node's config (site, node name, federation, addresses); `replication.primary`
    /// is set from `from`.
    pub config: Config,
    /// How trust is bootstrapped.
    pub trust: CloneTrust,
    /// The largest snapshot taken (bytes).
    pub max_bytes: u64,
}

/// How far a clone is, for a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloneProgress {
    /// The primary accepted: it is making the copy.
    Preparing {
        /// Milliseconds since it started.
        elapsed_ms: u64,
    },
    /// Bytes received of the snapshot.
    Receiving {
        /// Received so far.
        received: u64,
        /// The snapshot's length.
        total: u64,
    },
}

/// A finished clone.
#[derive(Debug, Clone, Serialize)]
pub struct Cloned {
    /// The new data dir.
    pub dir: PathBuf,
    /// The new standby's identity URI.
    pub identity: String,
    /// The primary's identity URI.
    pub primary: String,
    /// The primary's address (`replication.primary`).
    pub primary_addr: String,
    /// The site position the snapshot holds: the standby follows from the next one.
    pub position: u64,
    /// The epoch of the snapshot.
    pub epoch: u64,
    /// The snapshot's length in bytes.
    pub bytes: u64,
    /// How long the clone took, in milliseconds.
    pub elapsed_ms: u64,
    /// The new standby's key fingerprint (SPKI SHA-256).
    pub spki_sha256: String,
}

/// Why a clone failed. Every variant leaves DIR without a config or a store.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// DIR already holds a node.
    #[error("{0} already holds a node (a config or a store): a clone never overwrites one")]
    Exists(PathBuf),
    /// The new node's config is invalid.
    #[error("invalid config for the new standby: {0}")]
    Config(String),
    /// No certificate yet: the key and CSR are in DIR/tls, waiting for a CA.
    #[error(
        "no certificate for {identity} yet: the key and CSR are in {csr} (key fingerprint {spki}); \
         have the federation CA sign it (`ttx pki sign --ca CA_DIR {csr} --site {site} --node {node} --out standby.crt`), \
         then run the clone again with --cert standby.crt --ca-cert CA.crt (or --ca CA_DIR where the CA is at hand); \
         on the primary, authorize the standby: `ttx peer add {site} --allow standby` (add --pin {spki} to admit only this key)"
    )]
    NeedsCertificate {
        /// The identity asked for.
        identity: String,
        /// Its site.
        site: String,
        /// Its node name.
        node: String,
        /// The CSR file.
        csr: PathBuf,
        /// The key's fingerprint.
        spki: String,
    },
    /// The key, certificate or trust material is wrong.
    #[error("{0}")]
    Pki(#[from] PkiError),
    /// The primary's address does not resolve.
    #[error("cannot resolve the primary's address {0}")]
    Resolve(String),
    /// Nothing answered at the primary's address.
    #[error("the primary at {addr} is unreachable: {reason}")]
    Unreachable {
        /// The address dialed.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The primary (or the TLS handshake) refused this node as its standby.
    #[error("the primary at {addr} refused this node as its standby: {reason}")]
    Refused {
        /// The address dialed.
        addr: String,
        /// Why (the stable code's text, or the TLS failure).
        reason: String,
        /// The stable code, when the primary sent one.
        code: Option<ErrorCode>,
    },
    /// The snapshot stream failed or carried something else than a snapshot.
    #[error("the snapshot stream failed: {0}")]
    Stream(String),
    /// The snapshot announced is larger than allowed.
    #[error("the primary's snapshot is {len} bytes, more than the {max} allowed (--max-bytes)")]
    TooLarge {
        /// Its length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// The snapshot arrived truncated, corrupted or too long.
    #[error("the snapshot was refused: {0}")]
    Snapshot(#[from] SnapshotError),
    /// The snapshot is of another site than the clone's.
    #[error("the primary's snapshot belongs to site {found:?}, not {want:?}")]
    WrongSite {
        /// The clone's site.
        want: String,
        /// The snapshot's.
        found: String,
    },
    /// The copy could not be made a standby.
    #[error("cannot make the snapshot a standby: {0}")]
    Store(#[from] StoreError),
    /// Writing the data dir failed.
    #[error("{0}")]
    Node(#[from] NodeError),
}

impl From<rusqlite::Error> for CloneError {
    fn from(e: rusqlite::Error) -> Self {
        CloneError::Store(StoreError::from(e))
    }
}

/// Clones a standby from the running primary at `opts.from` into `opts.dir` (see the module
/// doc), calling `progress` as the snapshot comes. The one entry point for the CLI and other
/// tools; its signature is stable.
pub async fn clone_standby(
    opts: &CloneOptions,
    progress: &mut (dyn FnMut(CloneProgress) + Send),
) -> Result<Cloned, CloneError> {
    let started = Instant::now();
    let dir = DataDir::new(&opts.dir);
    refuse_existing(&dir).map_err(|_| CloneError::Exists(opts.dir.clone()))?;
    let mut config = opts.config.clone();
    config.replication.primary = Some(opts.from.clone());
    config
        .validate()
        .map_err(|e| CloneError::Config(e.to_string()))?;
    let identity = NodeIdentity::new(
        &config.node.federation,
        &config.node.site,
        &config.node.node,
    )
    .map_err(|e| CloneError::Config(e.to_string()))?;
    let spki_sha256 = bootstrap_trust(&dir, &identity, &opts.trust)?;
    let material = TrustMaterial::load(dir.root(), &config.tls)?;
    if material.identity != identity {
        return Err(CloneError::Pki(PkiError::IdentityMismatch {
            cert: material.identity.to_uri(),
            node: identity.to_uri(),
        }));
    }

    let addr = resolve(&opts.from).await?;
    let endpoint = client_endpoint(&identity, &config, &material, addr)?;
    let result = fetch(&endpoint, addr, opts, &identity, &config, progress).await;
    endpoint.shutdown().await;
    let (primary, header, staging) = result?;
    staging.install(dir.root())?;
    Ok(Cloned {
        dir: opts.dir.clone(),
        identity: identity.to_uri(),
        primary,
        primary_addr: opts.from.clone(),
        position: header.position,
        epoch: header.epoch,
        bytes: header.len,
        elapsed_ms: started.elapsed().as_millis() as u64,
        spki_sha256,
    })
}

/// Makes the key and CSR (keeping an existing key) and installs the certificate the trust
/// mode brings. Returns the key's fingerprint.
fn bootstrap_trust(
    dir: &DataDir,
    identity: &NodeIdentity,
    trust: &CloneTrust,
) -> Result<String, CloneError> {
    let requested = crate::pki::request(dir, identity)?;
    match trust {
        CloneTrust::Installed if !dir.node_cert().exists() => {
            return Err(CloneError::NeedsCertificate {
                identity: identity.to_uri(),
                site: identity.site.clone(),
                node: identity.node.clone(),
                csr: dir.node_csr(),
                spki: requested.spki_sha256,
            })
        }
        CloneTrust::Installed => {}
        CloneTrust::Certificate { cert, ca_cert } => {
            let read = |p: &Path| {
                std::fs::read(p)
                    .map_err(|e| CloneError::Config(format!("cannot read {}: {e}", p.display())))
            };
            crate::pki::install(dir, identity, &read(cert)?, &read(ca_cert)?)?;
        }
        CloneTrust::CaDir(ca) => {
            crate::pki::issue(ca, identity, dir, crate::pki::DEFAULT_NODE_DAYS)?;
        }
    }
    Ok(requested.spki_sha256)
}

pub(crate) async fn resolve(from: &str) -> Result<SocketAddr, CloneError> {
    tokio::net::lookup_host(from)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| CloneError::Resolve(from.to_string()))
}

/// The clone's own QUIC endpoint: it only dials (no protocol is served), trusts what the
/// node's trust material says, and admits a node of its own site as the primary it dialed.
pub(crate) fn client_endpoint(
    identity: &NodeIdentity,
    config: &Config,
    material: &TrustMaterial,
    primary: SocketAddr,
) -> Result<Endpoint, CloneError> {
    let bind: SocketAddr = if primary.is_ipv6() {
        "[::]:0".parse().expect("address")
    } else {
        "0.0.0.0:0".parse().expect("address")
    };
    let options = EndpointOptions {
        identity: identity.clone(),
        role: Role::Standby,
        features: 0,
        transport: config.transport.clone(),
        local: LocalCert {
            chain: material.cert_chain.clone(),
            key: material.key.clone_key(),
        },
        trust: TrustConfig {
            ca_certs: material.ca_certs.clone(),
            crls: material.crls.clone(),
            deny_spki: material.deny_spki.clone(),
            pins: Default::default(),
        },
    };
    let policy = Arc::new(OwnSite {
        site: identity.site.clone(),
        federation: identity.federation.clone(),
    });
    Endpoint::bind(bind, options, policy, Router::new()).map_err(|e| CloneError::Unreachable {
        addr: primary.to_string(),
        reason: e.to_string(),
    })
}

/// The clone's peer policy: the primary it dials is a node of its own site and federation.
struct OwnSite {
    site: String,
    federation: String,
}

impl PeerPolicy for OwnSite {
    fn admit(&self, peer: &Candidate<'_>) -> Admission {
        if peer.identity.site == self.site && peer.identity.federation == self.federation {
            Admission::Accepted(Permissions::STANDBY)
        } else {
            Admission::Denied
        }
    }

    fn authorize(&self, id: &NodeIdentity, action: Permission) -> bool {
        action == Permission::Standby && id.site == self.site
    }
}

/// Dials, asks for the snapshot, receives it into a staging dir and makes it a standby.
async fn fetch(
    endpoint: &Endpoint,
    addr: SocketAddr,
    opts: &CloneOptions,
    identity: &NodeIdentity,
    config: &Config,
    progress: &mut (dyn FnMut(CloneProgress) + Send),
) -> Result<(String, crate::wire::repl::SnapshotHeader, Staging), CloneError> {
    let peer = dial(endpoint, addr, &identity.site, &opts.from).await?;
    let primary = peer.ctx().identity.clone();
    let staging = Staging::create(&opts.dir)?;
    let header = snapshot_into(&peer, &opts.from, &staging.dir(), opts.max_bytes, progress).await;
    peer.close(ErrorCode::Closed);
    let header = header?;
    make_standby(&staging.dir(), config, &primary.node)?;
    write_config(&staging.dir(), config)?;
    Ok((primary.to_uri(), header, staging))
}

/// Dials the node at `addr` (`from` as the operator typed it) over `ttx-repl/1` as this site's
/// standby, within [`DIAL_TIMEOUT`].
pub(crate) async fn dial(
    endpoint: &Endpoint,
    addr: SocketAddr,
    site: &str,
    from: &str,
) -> Result<crate::net::Peer, CloneError> {
    let alpns = vec![crate::wire::alpn::REPL_V1.alpn()];
    let dial = endpoint.connect_with(
        addr,
        site,
        ConnectOptions {
            hello_versions: alpns.clone(),
            alpns,
            role: Role::Standby,
        },
    );
    match tokio::time::timeout(DIAL_TIMEOUT, dial).await {
        Err(_) => Err(CloneError::Unreachable {
            addr: from.to_string(),
            reason: format!("no answer within {} s", DIAL_TIMEOUT.as_secs()),
        }),
        Ok(Err(e)) => Err(dial_error(from, e)),
        Ok(Ok(peer)) => Ok(peer),
    }
}

/// Asks `peer` (the primary) for a snapshot and receives it as `dir`'s store (length and
/// SHA-256 checked; nothing is left at `dir`'s store path unless it is whole).
pub(crate) async fn snapshot_into(
    peer: &crate::net::Peer,
    from: &str,
    dir: &DataDir,
    max_bytes: u64,
    progress: &mut (dyn FnMut(CloneProgress) + Send),
) -> Result<crate::wire::repl::SnapshotHeader, CloneError> {
    let body = codec::encode(&SnapshotRequest::new(max_bytes)).expect("encodes");
    let (answer, stream) = peer
        .open_stream::<ToPrimary, SnapshotFrame>(body)
        .await
        .map_err(|e| dial_error(from, e))?;
    let _accepted: SnapshotAccepted = codec::decode(&answer)
        .map_err(|e| CloneError::Stream(format!("the primary's answer does not decode: {e}")))?;
    let (_send, recv) = stream.split();
    receive(recv, dir, max_bytes, progress).await
}

fn dial_error(addr: &str, e: NetError) -> CloneError {
    let addr = addr.to_string();
    match e {
        NetError::Refused(code) | NetError::Remote(code) | NetError::RefusedPeer(code) => {
            let hint = match code {
                ErrorCode::UnknownPeer | ErrorCode::NotAuthorized => {
                    ": on the primary, authorize this site's standby with `ttx peer add SITE --allow standby`"
                }
                ErrorCode::NotPrimary => ": that node is not its site's primary",
                ErrorCode::Overloaded => ": another snapshot is being sent; try again shortly",
                _ => "",
            };
            CloneError::Refused {
                addr,
                reason: format!("{e}{hint}"),
                code: Some(code),
            }
        }
        NetError::Handshake(_) => CloneError::Refused {
            addr,
            reason: e.to_string(),
            code: None,
        },
        other => CloneError::Unreachable {
            addr,
            reason: other.to_string(),
        },
    }
}

/// Receives `Preparing`, `Header`, the chunks and `End` into `DIR/ttx.db` of the staging dir.
async fn receive(
    mut recv: FramedRecv<SnapshotFrame>,
    dir: &DataDir,
    max_bytes: u64,
    progress: &mut (dyn FnMut(CloneProgress) + Send),
) -> Result<crate::wire::repl::SnapshotHeader, CloneError> {
    let header = loop {
        match next_frame(&mut recv).await? {
            SnapshotFrame::Preparing { elapsed_ms } => {
                progress(CloneProgress::Preparing { elapsed_ms })
            }
            SnapshotFrame::Header(h) => break h,
            other => {
                return Err(CloneError::Stream(format!(
                    "expected the snapshot's header, got {}",
                    frame_name(&other)
                )))
            }
        }
    };
    if header.len > max_bytes {
        return Err(CloneError::TooLarge {
            len: header.len,
            max: max_bytes,
        });
    }
    let mut rx = Receiver::new(&dir.database(), header.len, header.sha256)?;
    progress(CloneProgress::Receiving {
        received: 0,
        total: header.len,
    });
    loop {
        match next_frame(&mut recv).await? {
            SnapshotFrame::Chunk(bytes) => {
                if bytes.len() > header.chunk_bytes as usize {
                    return Err(CloneError::Stream(format!(
                        "a chunk of {} bytes, more than the {} announced",
                        bytes.len(),
                        header.chunk_bytes
                    )));
                }
                rx.push(&bytes)?;
                progress(CloneProgress::Receiving {
                    received: rx.received(),
                    total: header.len,
                });
            }
            SnapshotFrame::End => break,
            other => {
                return Err(CloneError::Stream(format!(
                    "expected a chunk, got {}",
                    frame_name(&other)
                )))
            }
        }
    }
    rx.finish()?;
    Ok(header)
}

/// The next frame within [`IDLE_TIMEOUT`]; the stream ending first is an error.
async fn next_frame(recv: &mut FramedRecv<SnapshotFrame>) -> Result<SnapshotFrame, CloneError> {
    match tokio::time::timeout(IDLE_TIMEOUT, recv.recv()).await {
        Err(_) => Err(CloneError::Stream(format!(
            "the primary sent nothing for {} s",
            IDLE_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) => Err(CloneError::Stream(e.to_string())),
        Ok(Ok(None)) => Err(CloneError::Stream(
            "the primary ended the stream before the snapshot was whole".into(),
        )),
        Ok(Ok(Some(frame))) => Ok(frame),
    }
}

fn frame_name(f: &SnapshotFrame) -> &'static str {
    match f {
        SnapshotFrame::Preparing { .. } => "preparing",
        SnapshotFrame::Header(_) => "a second header",
        SnapshotFrame::Chunk(_) => "a chunk",
        SnapshotFrame::End => "the end",
    }
}

/// Makes the received copy this site's standby named as the config says, of `primary`.
pub(crate) fn make_standby(
    dir: &DataDir,
    config: &Config,
    primary: &str,
) -> Result<(), CloneError> {
    let conn = rusqlite::Connection::open(dir.database())?;
    let holds = site_log::holds(&conn)?;
    if holds.site != config.node.site {
        return Err(CloneError::WrongSite {
            want: config.node.site.clone(),
            found: holds.site,
        });
    }
    site_log::make_standby(&conn, &config.node.node, primary)?;
    let ok: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if ok != "ok" {
        return Err(CloneError::Store(StoreError::Corrupt(format!(
            "the snapshot fails quick_check: {ok}"
        ))));
    }
    Ok(())
}

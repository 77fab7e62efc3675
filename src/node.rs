//! The composition root: start a node on its data dir, run it, drain it and stop it.
//!
//! Start-up goes in phases, and anything wrong stops it before a port is bound:
//! 1. read and validate `DIR/ttx.toml`;
//! 2. take the single-writer lock `DIR/node.lock` (a second `ttx serve` is refused);
//! 3. open and migrate the store, start the writer thread;
//! 4. if `transport.listen` is set, load the TLS material (refusing a key others can read or a
//!    certificate naming another node) and bind the QUIC endpoint; a problem with the TLS
//!    material or the UDP port leaves the federation down (logged, shown by `ttx status`, brought
//!    up by `ttx pki reload` or SIGHUP once fixed) and the node serving its tickets;
//! 5. bind the API (port 0 allowed) and record the bound addresses in `DIR/run/node.json`;
//! 6. start the alarm clock and the exchange's outbox workers, and serve.
//!
//! Shutdown, in order: stop accepting API requests and let in-flight ones finish (bounded by
//! `api.shutdown_grace_secs`), stop the alarm clock and the outbox workers, close peer connections, let the writer
//! commit what is queued,
//! remove `run/node.json`, release the lock.
//!
//! Fail-stop: if the store's writer thread fails (a panic, a transaction it cannot roll back),
//! the node stops the same way and [`RunningNode::run_until`] returns
//! [`NodeError::WriterFailed`]; `ttx serve` then exits 1 so the service manager restarts it.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, AppState, Bound};
use crate::config::{Config, ConfigError};
use crate::datadir::DataDir;
use crate::federation::FederationSlot;
use crate::model::clock;
use crate::replication::{Mode, Primary, Replication};
use crate::store::{query, NodeStamp, Store, StoreError, WriteOp, WriteOutcome, WriteRequest};

/// Why a node could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The config is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `ttx init` on a directory that already holds a node.
    #[error("{0} already holds a ttx node: refusing to touch it")]
    Exists(PathBuf),
    /// `ttx init` on a directory where something is in the way of a file it makes.
    #[error("cannot create the node in {dir}: {path} is in the way (nothing was made; remove it, or choose another directory)")]
    InTheWay {
        /// The data directory.
        dir: PathBuf,
        /// What is in the way.
        path: PathBuf,
    },
    /// No store in the directory.
    #[error("{0} holds no ttx store: create one with `ttx init {0} --site SITE`")]
    NoStore(PathBuf),
    /// Another process serves this directory.
    #[error("another ttx node is already serving {0} (it holds node.lock): one writer per store")]
    Locked(PathBuf),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An address could not be bound.
    #[error("cannot bind {what} address {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The web console could not start (address, TLS material).
    #[error(transparent)]
    Web(#[from] crate::web::serve::ServeError),
    /// The QUIC endpoint or its TLS material could not be set up.
    #[error(transparent)]
    Federation(#[from] crate::federation::FederationError),
    /// The store's writer thread failed (a panic, or a transaction it could not roll back):
    /// the node stopped rather than serve reads with every write refused.
    #[error("the store's writer failed: {0}; the node stopped (its service manager restarts it)")]
    WriterFailed(String),
    /// A file in the data dir could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a running node records in `DIR/run/node.json` for the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// Process id.
    pub pid: u32,
    /// Site.
    pub site: String,
    /// Node.
    pub node: String,
    /// API address actually bound.
    pub api_addr: SocketAddr,
    /// QUIC address actually bound.
    pub listen_addr: Option<SocketAddr>,
    /// Web console address actually bound (`https://` when it speaks TLS).
    #[serde(default)]
    pub web_url: Option<String>,
    /// Start time (unix ms).
    pub started_at: i64,
}

impl RuntimeInfo {
    /// Reads `DIR/run/node.json`.
    pub fn read(dir: &DataDir) -> std::io::Result<RuntimeInfo> {
        let text = std::fs::read_to_string(dir.runtime_info())?;
        serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// Writes a file atomically: a temp file beside it, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// A node that is running.
pub struct RunningNode {
    /// Addresses actually bound.
    pub bound: Bound,
    /// Its store (tests and tools read through it).
    pub store: Store,
    /// Its config.
    pub config: Arc<Config>,
    /// The QUIC side (partners, standby), when `transport.listen` is set.
    pub federation: Arc<FederationSlot>,
    dir: DataDir,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _lock: File,
}

/// Opens the directory's store for a one-off tool (`ttx init`), holding the single-writer lock.
pub fn open_exclusive(dir: &DataDir, config: &Config) -> Result<(Store, File), NodeError> {
    let lock_path = dir.lock();
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    if lock.try_lock().is_err() {
        return Err(NodeError::Locked(dir.root().to_path_buf()));
    }
    let stamp = NodeStamp {
        site: config.node.site.clone(),
        node: config.node.node.clone(),
    };
    let store = Store::open(&dir.database(), stamp, &config.store, &config.limits)?;
    Ok((store, lock))
}

pub use init::init_data_dir;

impl RunningNode {
    /// Starts the node on `dir` (phases in the module doc). Must run inside a tokio runtime.
    pub async fn start(dir: impl Into<PathBuf>) -> Result<RunningNode, NodeError> {
        let dir = DataDir::new(dir.into());
        let config = Arc::new(Config::load(&dir.config())?);
        if !dir.database().exists() {
            return Err(NodeError::NoStore(dir.root().to_path_buf()));
        }
        warn_if_shared(dir.root());
        match crate::fdlimit::raise_nofile() {
            Ok((before, soft, hard)) => {
                tracing::info!(
                    soft_before = before,
                    soft,
                    hard,
                    "descriptor limit (RLIMIT_NOFILE)"
                )
            }
            Err(e) => tracing::warn!(error = %e, "cannot raise the descriptor limit"),
        }
        let (store, lock) = {
            let (dir, config) = (dir.clone(), config.clone());
            tokio::task::spawn_blocking(move || open_exclusive(&dir, &config))
                .await
                .map_err(|e| NodeError::Io {
                    path: PathBuf::from("store"),
                    source: std::io::Error::other(e),
                })??
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let primary = start_primary(&config, &store).await?;
        let routes = vec![
            repl_route(&config, &store, &primary),
            witness_route(&dir, &config)?,
        ];
        let hint = crate::replication::PrimaryHint::default();
        let federation = FederationSlot::start(
            &dir,
            &config,
            store.clone(),
            shutdown_rx.clone(),
            routes,
            crate::federation::exchange::SiteLink {
                primary: primary.clone(),
                hint: hint.clone(),
            },
        )
        .await?;
        let follower = crate::replication::Follower::new(
            store.clone(),
            federation.clone(),
            &config.node.site,
            config.replication.primary.as_deref(),
            primary.timeline().clone(),
            config.replication.receipt_spool,
        );
        let switchover = crate::replication::Switchover::new(
            &config.node.node,
            store.clone(),
            primary.clone(),
            follower.clone(),
            Duration::from_millis(config.replication.block_timeout_ms.max(1_000)),
        );
        let timing = crate::replication::LeaseTiming {
            term_ms: config.replication.lease_term_ms as i64,
            margin_ms: config.replication.lease_margin_ms as i64,
        };
        let lease = config.replication.witness.as_deref().map(|witness| {
            crate::replication::witness::LeaseClient::new(
                store.clone(),
                federation.clone(),
                primary.clone(),
                (&config.node.site, &config.node.node),
                (witness, config.replication.witness_addr.as_deref()),
                timing,
            )
        });
        let replication = Arc::new(Replication {
            primary: primary.clone(),
            follower: Some(follower.clone()),
            switchover: Some(switchover.clone()),
            lease: lease.clone(),
        });
        let listener = tokio::net::TcpListener::bind(config.api.addr)
            .await
            .map_err(|source| NodeError::Bind {
                what: "api",
                addr: config.api.addr,
                source,
            })?;
        let api_addr = listener.local_addr().map_err(io_err(dir.root()))?;
        let mut bound = Bound {
            api_addr: Some(api_addr),
            listen_addr: match federation.get() {
                Some(f) => Some(f.local_addr()?),
                None => None,
            },
            web_addr: None,
        };
        let state = AppState {
            store: store.clone(),
            config: config.clone(),
            auth: Arc::default(),
            started: Instant::now(),
            bound: Arc::new(bound.clone()),
            federation: federation.clone(),
            replication,
        };
        let web_state = crate::web::WebState::new(state.clone(), shutdown_rx.clone());
        let web = crate::web::serve::start(dir.root(), web_state, shutdown_rx.clone()).await?;
        bound.web_addr = web.as_ref().map(|w| w.addr);
        let info = RuntimeInfo {
            pid: std::process::id(),
            site: config.node.site.clone(),
            node: config.node.node.clone(),
            api_addr,
            listen_addr: bound.listen_addr,
            web_url: web.as_ref().map(|w| w.url()),
            started_at: clock::now(),
        };
        std::fs::create_dir_all(dir.run_dir()).map_err(io_err(&dir.run_dir()))?;
        let info_json = serde_json::to_vec_pretty(&info).expect("runtime info serializes");
        write_atomic(&dir.runtime_info(), &info_json).map_err(io_err(&dir.runtime_info()))?;
        tracing::info!(
            site = %config.node.site,
            node = %config.node.node,
            %api_addr,
            listen_addr = %display_addr(bound.listen_addr),
            web_addr = %display_addr(bound.web_addr),
            dir = %dir.root().display(),
            "node started"
        );
        let state = AppState {
            bound: Arc::new(bound.clone()),
            ..state
        };
        // What may leave for partners: the position the standby holds durably while one is
        // attached (so a partner never holds a message a promoted standby does not know was
        // sent), the local head otherwise.
        let shippable = primary.shippable();
        let mut tasks = vec![
            tokio::spawn(serve_api(listener, state, shutdown_rx.clone())),
            tokio::spawn(crate::federation::exchange::run_outboxes(
                federation.clone(),
                store.clone(),
                shippable,
                shutdown_rx.clone(),
            )),
            tokio::spawn(alarm_clock(store.clone(), shutdown_rx.clone())),
            tokio::spawn(primary.run_deadlines(shutdown_rx.clone())),
            tokio::spawn(hint.follow_role(
                store.clone(),
                federation.clone(),
                follower.clone(),
                shutdown_rx.clone(),
            )),
        ];
        tasks.push(tokio::spawn(switchover.serve_requests(shutdown_rx.clone())));
        if let Some(lease) = lease {
            tasks.push(tokio::spawn(lease.run(shutdown_rx.clone())));
        }
        tasks.push(tokio::spawn(follower.run(shutdown_rx)));
        tasks.extend(web.map(|w| w.task));
        Ok(RunningNode {
            bound,
            store,
            config,
            dir,
            federation,
            shutdown,
            tasks,
            _lock: lock,
        })
    }

    /// Runs until `stop` resolves (the CLI passes its signal handling) or the store's writer
    /// fails, then drains and stops. Fail-stop: a writer failure stops the node with
    /// [`NodeError::WriterFailed`], so `ttx serve` exits non-zero and its service manager
    /// starts a fresh process on the same store.
    pub async fn run_until<T>(
        self,
        stop: impl std::future::Future<Output = T>,
    ) -> Result<T, NodeError> {
        let writer = self.store.writer.clone();
        let outcome = tokio::select! {
            asked = stop => Ok(asked),
            reason = writer.failed() => Err(reason),
        };
        if let Err(reason) = &outcome {
            tracing::error!(%reason, "the store's writer failed: stopping the node");
        }
        self.stop().await;
        outcome.map_err(NodeError::WriterFailed)
    }

    /// Drains and stops the node (order in the module doc).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.federation.shutdown().await;
        let writer = self.store.writer.clone();
        let _ = tokio::task::spawn_blocking(move || writer.shutdown()).await;
        let _ = std::fs::remove_file(self.dir.runtime_info());
        tracing::info!("node stopped");
    }
}

/// The replication hub, installed as the writer's commit hook before anything writes. The mode
/// left out of the config is `sync` when the registry authorizes a standby of this site (or
/// this node follows a primary), `async` otherwise.
async fn start_primary(config: &Config, store: &Store) -> Result<Arc<Primary>, NodeError> {
    let site = config.node.site.clone();
    let has_standby = store
        .reader
        .read(move |c| {
            Ok(query::peers(c)?.iter().any(|r| {
                r.site == site && r.standby && r.state == crate::model::peer::PeerState::Accepted
            }))
        })
        .await?;
    let r = &config.replication;
    let mode = r.mode.unwrap_or(if has_standby || r.primary.is_some() {
        Mode::Sync
    } else {
        Mode::Async
    });
    let head = *store.writer.head.borrow() as u64;
    let primary = Primary::new(r, mode, head);
    store.writer.set_commit_hook(primary.clone());
    tracing::info!(?mode, when_standby_gone = ?r.when_standby_gone, "replication");
    Ok(primary)
}

/// The `ttx-repl/1` route: the standby permission, frames up to the transport's limit (any
/// note the node accepts fits), and an idle timeout of ten heartbeats (at least 10 s).
fn repl_route(
    config: &Config,
    store: &Store,
    primary: &Arc<Primary>,
) -> crate::net::handler::Route {
    let heartbeat = Duration::from_millis(config.replication.heartbeat_ms);
    let handler = crate::replication::serve::ReplV1::new(
        &config.node.site,
        store.clone(),
        primary.clone(),
        heartbeat,
    );
    crate::net::handler::Route {
        protocol: crate::wire::alpn::REPL_V1,
        permission: crate::net::Permission::Standby,
        handler: Arc::new(handler),
        // A request may carry a review batch: its largest event must fit, so requests are
        // held to the frame limit like the stream's frames (only the site's authorized
        // standby reaches this route).
        limits: crate::net::ProtocolLimits {
            max_request_bytes: crate::wire::frame::effective_max(config.transport.max_frame_bytes),
            max_stream_frame_bytes: crate::wire::frame::effective_max(
                config.transport.max_frame_bytes,
            ),
            stream_idle_timeout: (heartbeat * 10).max(Duration::from_secs(10)),
        },
    }
}

/// The `ttx-witness/1` route every node serves: the lease on the primary role of each site
/// its registry allows `witness`, kept in `DIR/witness.db`. Small frames, one-shot requests.
fn witness_route(dir: &DataDir, config: &Config) -> Result<crate::net::handler::Route, NodeError> {
    let timing = crate::replication::LeaseTiming {
        term_ms: config.replication.lease_term_ms as i64,
        margin_ms: config.replication.lease_margin_ms as i64,
    };
    let path = dir.root().join("witness.db");
    let book =
        crate::replication::witness_serve::WitnessBook::open(&path, timing).map_err(|e| {
            NodeError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            }
        })?;
    let handler = crate::replication::witness_serve::WitnessV1::new(Arc::new(book));
    Ok(crate::net::handler::Route {
        protocol: crate::wire::alpn::WITNESS_V1,
        permission: crate::net::Permission::Witness,
        handler: Arc::new(handler),
        limits: crate::net::ProtocolLimits {
            max_request_bytes: 4 * 1024,
            max_stream_frame_bytes: 4 * 1024,
            stream_idle_timeout: Duration::from_secs(10),
        },
    })
}

/// Warns when the data dir is open to group or others (tickets hold candid internal notes).
fn warn_if_shared(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "data dir is readable by group or others: chmod 700 it");
        }
    }
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// The API's connection cap for the current descriptor limit.
fn connection_cap(configured: usize) -> usize {
    let soft = crate::fdlimit::raise_nofile().map(|l| l.1).unwrap_or(1024);
    let cap = crate::fdlimit::api_connection_cap(configured, soft);
    if cap < configured {
        tracing::warn!(
            configured,
            cap,
            "api.max_connections lowered below the descriptor limit"
        );
    }
    cap
}

async fn serve_api(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: watch::Receiver<bool>,
) {
    let api = &state.config.api;
    let limits = api::server::ServeLimits {
        header_read_timeout: Duration::from_secs(api.header_read_timeout_secs),
        max_connections: connection_cap(api.max_connections),
        grace: Duration::from_secs(api.shutdown_grace_secs),
    };
    api::server::serve(listener, api::router(state), limits, shutdown).await;
}

/// The alarm clock: sleeps until the next timer is due (or one is set), then fires every due
/// timer through the writer; it runs only while the node is its site's primary. Timers live in the store, so they survive restarts; firing is an
/// event, so each fires once.
async fn alarm_clock(store: Store, shutdown: watch::Receiver<bool>) {
    const MAX_SLEEP_MS: i64 = 60_000;
    let stop = wait_for(shutdown);
    tokio::pin!(stop);
    let mut role = store.writer.role.clone();
    loop {
        // Only the primary decides that a timer went off; a standby gets `TimerFired` from it.
        if !role.borrow_and_update().is_primary() {
            tokio::select! {
                r = role.wait_for(|r| r.is_primary()) => if r.is_err() { return } else { continue },
                _ = &mut stop => return,
            }
        }
        let next = match store.reader.read(query::next_due).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "alarm clock cannot read timers");
                None
            }
        };
        let now = clock::now();
        if next.is_some_and(|due| due <= now) {
            let req = WriteRequest {
                actor: "system".into(),
                idempotency: None,
                op: WriteOp::FireDueTimers,
            };
            match store.writer.write(req).await {
                Ok(WriteOutcome::Applied { applied }) if applied > 0 => {
                    tracing::warn!(
                        fired = applied,
                        "alarm clock: timers went off (see `ttx alerts`)"
                    )
                }
                Ok(_) => {}
                Err(StoreError::Closed) => return,
                Err(e) => {
                    // Without the witness's lease nothing fires; the lease client says why.
                    if matches!(e, StoreError::NoLease) {
                        tracing::debug!("alarm clock: timers due, waiting for the lease");
                    } else {
                        tracing::error!(error = %e, "alarm clock cannot fire timers");
                    }
                    // Retried in a second, unless the node stops meanwhile.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = &mut stop => return,
                    }
                }
            }
            continue;
        }
        let wait = next
            .map(|d| (d - now).clamp(1, MAX_SLEEP_MS))
            .unwrap_or(MAX_SLEEP_MS);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            _ = store.writer.timers_changed.notified() => {}
            _ = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests;

pub mod init;

/// An optional bound address for logs and messages: the address, or `off`.
pub fn display_addr(addr: Option<std::net::SocketAddr>) -> String {
    addr.map_or_else(|| "off".to_string(), |a| a.to_string())
}

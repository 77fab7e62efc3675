//! The node's federation as it stands: off (no `transport.listen`), up, or broken. Broken TLS
//! material or a taken UDP port does not stop the node: it keeps serving its tickets, `ttx
//! status` and the log say what is wrong and how to fix it, and `ttx pki reload` (or SIGHUP)
//! starts the federation once it is fixed, without a restart.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::exchange::SiteLink;
use super::service::{Federation, FederationError, ReloadAnswer};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::net::handler::Route;
use crate::net::NetError;
use crate::store::Store;

enum State {
    Off,
    Up(Box<Federation>, Vec<JoinHandle<()>>),
    Broken(String),
}

/// The federation of a running node, swapped in place when a reload brings it up.
pub struct FederationSlot {
    state: Mutex<State>,
    dir: DataDir,
    store: Store,
    shutdown: watch::Receiver<bool>,
    routes: Vec<Route>,
    site: SiteLink,
}

/// Whether a start failure is the federation's own (the node goes on without it) rather than
/// the node's (the store: the node stops).
fn federation_only(e: &FederationError) -> bool {
    !matches!(e, FederationError::Store(_))
}

/// What to do about a failure, for the log and `ttx status`.
fn hint(e: &FederationError) -> &'static str {
    match e {
        FederationError::Net(NetError::Bind(_)) => {
            "free the UDP port or change transport.listen in ttx.toml, then `ttx pki reload`"
        }
        FederationError::WrongIdentity { .. } => {
            "install the certificate issued for this node (`ttx pki install`), then `ttx pki reload`"
        }
        _ => "fix the certificate, key (mode 0600), CA bundle or CRLs named in [tls] (`ttx pki show FILE`), then `ttx pki reload`",
    }
}

impl FederationSlot {
    /// Starts the federation if `transport.listen` is set. A problem with the TLS material or
    /// the UDP port leaves it broken (logged with how to fix it) and the node running; a store
    /// failure is returned.
    /// `routes` are served beside the exchange (see [`Federation::start`]); `site` is what
    /// the exchange needs of the site's replication (the gate, the primary's address).
    pub async fn start(
        dir: &DataDir,
        config: &Config,
        store: Store,
        shutdown: watch::Receiver<bool>,
        routes: Vec<Route>,
        site: SiteLink,
    ) -> Result<Arc<Self>, FederationError> {
        let started =
            Federation::start(dir, config, store.clone(), shutdown.clone(), &routes, &site);
        let state = match started.await {
            Ok(None) => State::Off,
            Ok(Some((f, tasks))) => State::Up(Box::new(f), tasks),
            Err(e) if federation_only(&e) => {
                let problem = format!("{e}: {}", hint(&e));
                tracing::error!(problem = %problem, "federation is down; the node serves its tickets without it");
                State::Broken(problem)
            }
            Err(e) => return Err(e),
        };
        Ok(Arc::new(Self {
            state: Mutex::new(state),
            dir: dir.clone(),
            store,
            shutdown,
            routes,
            site,
        }))
    }

    /// A federation that is off (a node, or a benchmark, that does not listen for peers).
    pub fn off(dir: &DataDir, store: Store, shutdown: watch::Receiver<bool>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::Off),
            dir: dir.clone(),
            store,
            shutdown,
            routes: Vec::new(),
            site: SiteLink::standalone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The federation, when it is up.
    pub fn get(&self) -> Option<Federation> {
        match &*self.lock() {
            State::Up(f, _) => Some((**f).clone()),
            _ => None,
        }
    }

    /// What is wrong with the federation and how to fix it, when it is broken.
    pub fn problem(&self) -> Option<String> {
        match &*self.lock() {
            State::Broken(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// Reloads the federation's trust when it is up; when it is broken (or was off and the
    /// config now sets `transport.listen`), tries to start it again from the current config.
    pub async fn reload(&self) -> Result<ReloadAnswer, FederationError> {
        if let Some(f) = self.get() {
            return f.reload().await;
        }
        let config = Config::load(&self.dir.config())?;
        let started = Federation::start(
            &self.dir,
            &config,
            self.store.clone(),
            self.shutdown.clone(),
            &self.routes,
            &self.site,
        )
        .await;
        match started {
            Ok(Some((f, tasks))) => {
                let addr = f.local_addr().ok();
                tracing::info!(addr = %crate::node::display_addr(addr), "federation is up");
                *self.lock() = State::Up(Box::new(f.clone()), tasks);
                self.record_listen_addr(addr);
                f.reload().await
            }
            Ok(None) => {
                *self.lock() = State::Off;
                Err(FederationError::NotListening)
            }
            Err(e) => {
                let problem = format!("{e}: {}", hint(&e));
                tracing::error!(problem = %problem, "federation is still down");
                *self.lock() = State::Broken(problem);
                Err(e)
            }
        }
    }

    /// Records the QUIC address the federation bound after start in `DIR/run/node.json`, where
    /// the CLI and scripts look for it (a failure is logged: the node runs on).
    fn record_listen_addr(&self, addr: Option<std::net::SocketAddr>) {
        let path = self.dir.runtime_info();
        let result = crate::node::RuntimeInfo::read(&self.dir).and_then(|mut info| {
            info.listen_addr = addr;
            let json = serde_json::to_vec_pretty(&info).map_err(std::io::Error::other)?;
            crate::node::write_atomic(&path, &json)
        });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot record the QUIC address");
        }
    }

    /// Closes every peer connection and stops the federation's tasks.
    pub async fn shutdown(&self) {
        let up = match std::mem::replace(&mut *self.lock(), State::Off) {
            State::Up(f, tasks) => Some((f, tasks)),
            _ => None,
        };
        if let Some((f, tasks)) = up {
            f.shutdown().await;
            for t in tasks {
                t.abort();
            }
        }
    }
}

//! Node commands: `ttx init`, `ttx serve`, `ttx status`, `ttx operator add|list|remove`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::json;

use super::client::{print_json, NodeDir};
use super::{Failure, FailureKind};
use crate::api::admin::{NewOperator, Status};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::node::{NodeError, RunningNode};
use crate::store::query::Operator;

/// Arguments of `ttx init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The data directory to create.
    #[arg(value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Site, federation and API address.
    #[command(flatten)]
    pub new: NewNodeArgs,
    /// This node's name within the site.
    #[arg(long, default_value = "primary")]
    pub node: String,
    /// UDP address partners will reach (QUIC).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

/// What every new node is given (`ttx init`, `ttx standby clone`).
#[derive(Debug, clap::Args)]
pub struct NewNodeArgs {
    /// This site's name (a-z, 0-9, '-').
    #[arg(long)]
    pub site: String,
    /// The federation whose CA will sign this node's certificate.
    #[arg(long, default_value = "default")]
    pub federation: String,
    /// Local API address (port 0: any free port).
    #[arg(long = "api-addr", value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub api_addr: SocketAddr,
}

impl NewNodeArgs {
    /// The config of the new node `node` listening (QUIC) on `listen`; everything else is
    /// the default.
    pub fn config(&self, node: &str, listen: Option<SocketAddr>) -> Config {
        let mut config = Config::new(&self.site, node);
        config.node.federation = self.federation.clone();
        config.api.addr = self.api_addr;
        config.transport.listen = listen;
        config
    }
}

/// `ttx init DIR --site SITE`: a new data dir with config, store and admin token, all or
/// nothing (a failure leaves DIR as it was).
pub fn init(a: InitArgs, json: bool) -> anyhow::Result<()> {
    let dir = DataDir::new(&a.data_dir);
    let config = a.new.config(&a.node, a.listen);
    crate::node::init_data_dir(&dir, &config).map_err(|e| match e {
        NodeError::Exists(_) | NodeError::InTheWay { .. } => {
            Failure::new(FailureKind::Refused, e.to_string()).into()
        }
        NodeError::Config(_) => Failure::new(FailureKind::Invalid, e.to_string()).into(),
        other => anyhow::Error::from(other),
    })?;
    if json {
        return print_json(&json!({
            "dir": a.data_dir, "site": config.node.site, "node": config.node.node,
            "federation": config.node.federation, "admin_token_file": dir.admin_token(),
        }));
    }
    outln!(
        "initialised {} for site {} node {}",
        a.data_dir.display(),
        config.node.site,
        config.node.node
    );
    outln!(
        "admin token in {} (owner-only)",
        dir.admin_token().display()
    );
    outln!("next: ttx serve {}", a.data_dir.display());
    Ok(())
}

/// Arguments of `ttx serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The data directory (or --dir / TTX_DIR).
    #[arg(value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Create the node on first run (as `ttx init DIR --site SITE`) if DIR holds none yet.
    #[arg(long)]
    pub site: Option<String>,
    /// Which node, when DIR is not given.
    #[command(flatten)]
    pub node: NodeDir,
}

/// `ttx serve DIR`: run the node until SIGINT or SIGTERM, then drain and stop.
pub fn serve(a: ServeArgs, json: bool) -> anyhow::Result<()> {
    let dir = match a.data_dir {
        Some(d) => d,
        None => a.node.resolve()?.root().to_path_buf(),
    };
    let data = DataDir::new(&dir);
    match &a.site {
        Some(site) if !data.config().exists() => {
            let config = Config::new(site, "primary");
            crate::node::init_data_dir(&data, &config).map_err(|e| match e {
                NodeError::Config(_) => Failure::new(FailureKind::Invalid, e.to_string()).into(),
                NodeError::InTheWay { .. } => {
                    Failure::new(FailureKind::Refused, e.to_string()).into()
                }
                other => anyhow::Error::from(other),
            })?;
            eprintln!(
                "ttx: created node {} for site {site}; admin token in {} (owner-only)",
                dir.display(),
                data.admin_token().display()
            );
            eprintln!(
                "ttx: in another terminal: export TTX_DIR={}; ttx new \"first ticket\"",
                dir.display()
            );
        }
        Some(site) => {
            let config = Config::load(&data.config())
                .map_err(|e| Failure::new(FailureKind::Invalid, e.to_string()))?;
            if &config.node.site != site {
                return Err(Failure::new(
                    FailureKind::Refused,
                    format!(
                        "{} belongs to site {}, not {site}",
                        dir.display(),
                        config.node.site
                    ),
                )
                .into());
            }
        }
        None => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(log_filter()?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stop_signals = StopSignals::register()?;
        let node = RunningNode::start(&dir).await.map_err(|e| match e {
            crate::node::NodeError::Locked(_) => {
                Failure::new(FailureKind::Refused, e.to_string()).into()
            }
            crate::node::NodeError::NoStore(_) => {
                Failure::new(FailureKind::NotFound, e.to_string()).into()
            }
            crate::node::NodeError::Config(_)
            | crate::node::NodeError::Federation(_)
            | crate::node::NodeError::Web(crate::web::serve::ServeError::Tls(_)) => {
                Failure::new(FailureKind::Invalid, e.to_string()).into()
            }
            other => anyhow::Error::from(other),
        })?;
        let b = &node.bound;
        if json {
            print_json(&json!({
                "site": node.config.node.site, "node": node.config.node.node,
                "api_addr": b.api_addr, "listen_addr": b.listen_addr, "web_addr": b.web_addr,
                "pid": std::process::id(),
            }))?;
        } else {
            eprintln!(
                "ttx: serving site {} node {}: api {}, quic {}, web {}",
                node.config.node.site,
                node.config.node.node,
                crate::node::display_addr(b.api_addr),
                crate::node::display_addr(b.listen_addr),
                crate::node::display_addr(b.web_addr),
            );
        }
        let signals = wait_for_stop_signal(stop_signals, node.federation.clone());
        node.run_until(async {
            let signalled = signals.await;
            tracing::info!("stop signal received, draining");
            signalled
        })
        .await??;
        Ok(())
    })
}

/// The log filter from `TTX_LOG` (default `info`); an invalid one is an error, not `info`.
fn log_filter() -> anyhow::Result<tracing_subscriber::EnvFilter> {
    match std::env::var("TTX_LOG") {
        Ok(v) if !v.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(&v).map_err(|e| {
            Failure::new(
                FailureKind::Invalid,
                format!(
                    "invalid TTX_LOG {v:?}: {e} (use e.g. info, warn, ttx=debug or info,ttx::net=debug)"
                ),
            )
            .into()
        }),
        _ => Ok(tracing_subscriber::EnvFilter::new("info")),
    }
}

/// SIGTERM, SIGINT and SIGHUP, caught from before the node starts: a stop signal that arrives
/// while it starts (or right after it wrote `run/node.json`) drains it instead of killing it.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn register() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// Waits for SIGINT or SIGTERM; on SIGHUP reloads the node's TLS material and pins.
async fn wait_for_stop_signal(
    signals: StopSignals,
    federation: std::sync::Arc<crate::federation::FederationSlot>,
) -> anyhow::Result<()> {
    let StopSignals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            // A reload also brings up a federation that is down once its material is fixed.
            _ = hup.recv() => match federation.reload().await {
                Ok(r) => tracing::info!(kept = r.kept, closed = r.closed.len(), "SIGHUP: trust reloaded"),
                Err(crate::federation::FederationError::NotListening) => {
                    tracing::info!("SIGHUP: this node does not listen for peers; nothing to reload")
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: trust reload failed; the previous trust stays in force"),
            },
        }
    }
}

/// `ttx status`.
pub fn status(node: NodeDir, json: bool) -> anyhow::Result<()> {
    let s: Status = node.client()?.get("/v1/status", &[])?;
    if json {
        return print_json(&s);
    }
    let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
    outln!(
        "site {}  node {}  federation {}  ttx {}",
        s.site,
        s.node,
        s.federation,
        s.version
    );
    outln!(
        "api {}  listen {}  web {}  pid {}  up {}s",
        addr(s.api_addr),
        addr(s.listen_addr),
        addr(s.web_addr),
        s.pid,
        s.uptime_secs
    );
    outln!(
        "tickets {} ({} open)  events {}  role {}  epoch {}",
        s.tickets,
        s.open_tickets,
        s.events,
        s.role,
        s.epoch
    );
    if let Some(t) = &s.transport {
        outln!(
            "identity {}  certificate {} days left{}  peers connected {}",
            t.identity,
            t.cert_days_left,
            t.cert_warning
                .as_ref()
                .map(|w| format!(" (WARNING: {w})"))
                .unwrap_or_default(),
            t.peers_connected
        );
    }
    if let Some(r) = &s.replication {
        out!(
            "{}",
            super::render::replication(r, &s.role, &super::times())
        );
    }
    Ok(())
}

/// `ttx operator ...`.
#[derive(Debug, clap::Subcommand)]
pub enum OperatorCommand {
    /// Add an operator and print its new token (shown once).
    Add {
        /// Name (a-z, 0-9, '.', '_', '-').
        name: String,
        /// admin, operator or viewer.
        #[arg(long)]
        role: String,
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
    /// List operators.
    List {
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
    /// Set an operator's web console password: typed at the prompt (not echoed), or the first
    /// line of standard input when it is not a terminal. Admins set anyone's; others their own.
    Passwd {
        /// Name.
        name: String,
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
    /// Remove an operator (its token stops working at once).
    Remove {
        /// Name.
        name: String,
        /// Which node.
        #[command(flatten)]
        node: NodeDir,
    },
}

/// Reads a new password: twice at a terminal prompt (not echoed), else the first line of stdin.
fn read_password(name: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("new password for {name}: "))?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            return Err(super::Failure::new(
                super::FailureKind::Invalid,
                "the two passwords differ",
            )
            .into());
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Runs an operator command.
pub fn operator(cmd: OperatorCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        OperatorCommand::Add { name, role, node } => {
            let r: NewOperator = node
                .client()?
                .post("/v1/operators", &json!({"name": name, "role": role}))?;
            if json {
                return print_json(&r);
            }
            outln!("operator {} ({})", r.name, r.role.as_str());
            outln!("{}", r.token);
        }
        OperatorCommand::List { node } => {
            let ops: Vec<Operator> = node.client()?.get("/v1/operators", &[])?;
            if json {
                return print_json(&ops);
            }
            for o in ops {
                outln!(
                    "{:<24} {:<8} since {}",
                    o.name,
                    o.role.as_str(),
                    crate::model::clock::format(o.created_at)
                );
            }
        }
        OperatorCommand::Passwd { name, node } => {
            let password = read_password(&name)?;
            let _: serde_json::Value = node.client()?.post(
                &format!("/v1/operators/{name}/password"),
                &json!({ "password": password }),
            )?;
            if json {
                return print_json(&json!({"password_set": name}));
            }
            println!("password set for operator {name}");
        }
        OperatorCommand::Remove { name, node } => {
            node.client()?.delete(&format!("/v1/operators/{name}"))?;
            if json {
                return print_json(&json!({"removed": name}));
            }
            outln!("operator {name} removed");
        }
    }
    Ok(())
}

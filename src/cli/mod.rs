//! The `ttx` command line: one module per command group, human or `--json` output, and the one
//! place that maps errors to exit codes.
//!
//! Exit codes (stable, for scripts):
//! - 0 success
//! - 1 the command failed (I/O, a node that is not running, an unexpected answer)
//! - 2 usage or invalid input (bad field value, empty subject, oversize note, bad config)
//! - 3 not found (unknown ticket number, operator, peer, file)
//! - 4 refused by the node's rules (invalid status transition, conflict, a store that exists)
//! - 5 not authorized (bad token, a viewer writing, a peer not allowed)

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod bench;
pub mod client;
pub mod node;
pub mod peers;
pub mod pki;
pub mod render;
pub mod tickets;

/// The kinds of failure the CLI distinguishes by exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Usage or invalid input: exit 2.
    Invalid,
    /// Something named does not exist: exit 3.
    NotFound,
    /// Refused by the node's rules: exit 4.
    Refused,
    /// Not authorized: exit 5.
    Unauthorized,
}

impl FailureKind {
    /// The process exit code for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Invalid => 2,
            FailureKind::NotFound => 3,
            FailureKind::Refused => 4,
            FailureKind::Unauthorized => 5,
        }
    }
}

/// An error the CLI reports with a specific exit code; any other error exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// Which exit code.
    pub kind: FailureKind,
    /// The message shown to the operator (lowercase, no trailing period).
    pub message: String,
}

impl Failure {
    /// Builds a failure of `kind` with `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// `ttx`: a trouble-ticket node for Network Operations Centers.
#[derive(Debug, Parser)]
#[command(name = "ttx", version, about, propagate_version = true)]
pub struct Cli {
    /// Print a stable machine-readable JSON answer instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a node's data directory (config, store, admin token).
    Init(node::InitArgs),
    /// Run the node until SIGINT/SIGTERM.
    Serve(node::ServeArgs),
    /// Show the running node's site, addresses, uptime and counts.
    Status(client::NodeDir),
    /// Manage operators and their tokens.
    Operator {
        /// What to do.
        #[command(subcommand)]
        cmd: node::OperatorCommand,
    },
    /// Open a ticket.
    New(tickets::NewArgs),
    /// Add an incident update to a ticket ("update this ticket with this message").
    Note(tickets::NoteArgs),
    /// Show a ticket's whole chart, history in order.
    Show(tickets::TicketArg),
    /// List open work by priority.
    List(tickets::ListArgs),
    /// Full-text search over subjects and updates.
    Search(tickets::SearchArgs),
    /// Set header fields or status: FIELD=VALUE...
    Set(tickets::SetArgs),
    /// Take a ticket (become its owner).
    Take(tickets::TicketArg),
    /// Link a ticket to another.
    Link(tickets::LinkArgs),
    /// Set an alarm clock on a ticket.
    Timer(tickets::TimerArgs),
    /// Show timers that have gone off.
    Alerts(tickets::AlertsArgs),
    /// Resolve a ticket.
    Resolve(tickets::ResolveArgs),
    /// Close a resolved ticket.
    Close(tickets::CloseArgs),
    /// Reopen a resolved ticket.
    Reopen(tickets::ReopenArgs),
    /// Partner sites and this site's standby: add, list, ping, pending, accept, deny.
    Peer {
        /// What to do.
        #[command(subcommand)]
        cmd: peers::PeerCommand,
    },
    /// Federation PKI: CA, requests, signing, revocation, inspection, reload.
    Pki {
        /// What to do.
        #[command(subcommand)]
        cmd: pki::PkiCommand,
    },
    /// Benchmarks, each against a baseline measured in the same run.
    Bench {
        /// The benchmark.
        #[command(subcommand)]
        cmd: bench::BenchCommand,
    },
}

/// Parses the command line, runs the command, and maps any error to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err, json),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Init(a) => node::init(a, json),
        Command::Serve(a) => node::serve(a),
        Command::Status(a) => node::status(a, json),
        Command::Operator { cmd } => node::operator(cmd, json),
        Command::New(a) => tickets::new(a, json),
        Command::Note(a) => tickets::note(a, json),
        Command::Show(a) => tickets::show(a, json),
        Command::List(a) => tickets::list(a, json),
        Command::Search(a) => tickets::search(a, json),
        Command::Set(a) => tickets::set(a, json),
        Command::Take(a) => tickets::take(a, json),
        Command::Link(a) => tickets::link(a, json),
        Command::Timer(a) => tickets::timer(a, json),
        Command::Alerts(a) => tickets::alerts(a, json),
        Command::Resolve(a) => tickets::resolve(a, json),
        Command::Close(a) => tickets::close(a, json),
        Command::Reopen(a) => tickets::reopen(a, json),
        Command::Peer { cmd } => peers::run(cmd, json),
        Command::Pki { cmd } => pki::run(cmd, json),
        Command::Bench { cmd } => bench::run(cmd, json),
    }
}

/// Prints an error (as `{"error": ...}` with `--json`) and returns its exit code.
fn report(err: &anyhow::Error, json: bool) -> ExitCode {
    let kind = err
        .chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .map(|f| f.kind);
    let code = kind.map(FailureKind::exit_code).unwrap_or(1);
    let message = format!("{err:#}");
    if json {
        let body = serde_json::json!({"error": {"exit_code": code, "message": message}});
        eprintln!("{body}");
    } else {
        eprintln!("ttx: error: {message}");
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

//! The `ttx` command line: one module per command group, human or `--json` output, and the one
//! place that maps errors to exit codes.
//!
//! Exit codes (stable, for scripts):
//! - 0 success
//! - 1 the command failed (I/O, a node that is not running, an unexpected answer, a peer
//!   that does not answer)
//! - 2 usage or invalid input (bad field value, empty subject, oversize note, bad config)
//! - 3 not found (unknown ticket number, operator, peer, file)
//! - 4 refused by the node's rules (invalid status transition, conflict, a store that exists)
//! - 5 not authorized (bad token, a viewer writing, a peer not allowed)

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use clap::{Parser, Subcommand};

/// Writes to standard output; a closed pipe (`ttx show 6 | head -1`, quitting `less`) ends the
/// run quietly with success instead of a panic.
pub fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("ttx: error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `print!` through [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_stdout(&format!($($arg)*)) };
}

/// `println!` through [`write_stdout`].
macro_rules! outln {
    () => { $crate::cli::write_stdout("\n") };
    ($($arg:tt)*) => { $crate::cli::write_stdout(&format!("{}\n", format!($($arg)*))) };
}

pub mod attach;
pub mod bench;
pub mod client;
pub mod node;
pub mod pager;
pub mod peers;
pub mod pki;
pub mod profile;
pub mod referral;
pub mod render;
pub mod review;
pub mod site;
pub mod standby;
pub mod tickets;
pub mod times;
pub mod trust;

/// The kinds of failure the CLI distinguishes by exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The command failed (a peer that does not answer, the node's internal error): exit 1.
    Failed,
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
            FailureKind::Failed => 1,
            FailureKind::Invalid => 2,
            FailureKind::NotFound => 3,
            FailureKind::Refused => 4,
            FailureKind::Unauthorized => 5,
        }
    }
}

impl FailureKind {
    /// The stable error code of `--json` errors, the API's own for the same failure.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::Failed => "failed",
            FailureKind::Invalid => "invalid",
            FailureKind::NotFound => "not_found",
            FailureKind::Refused => "refused",
            FailureKind::Unauthorized => "unauthorized",
        }
    }
}

/// An error the CLI reports with a specific exit code; any other error exits 1.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// Which exit code.
    pub kind: FailureKind,
    /// The message shown to the operator (lowercase, no trailing period).
    pub message: String,
    /// The node's error code when the node answered (`too_large`, `forbidden`), else the
    /// kind's own.
    pub code: Option<String>,
}

impl Failure {
    /// Builds a failure of `kind` with `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            code: None,
        }
    }

    /// The same failure, with the node's own error code.
    pub fn with_code(mut self, code: Option<String>) -> Self {
        self.code = code;
        self
    }
}

/// The options every command takes, in any position (`ttx --dir X status` and
/// `ttx status --dir X` are the same).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Global {
    /// Print a stable machine-readable JSON answer (and JSON errors) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The node's data directory (its run/node.json gives the address, admin.token the token).
    #[arg(long, global = true, env = "TTX_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The node's API URL, for operators who cannot read the data dir.
    #[arg(long, global = true, env = "TTX_API", value_name = "URL")]
    pub api: Option<String>,
    /// A file holding your operator token (TTX_TOKEN, if set, wins).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// A profile of ~/.config/ttx/config.toml (its api, dir and token_file).
    #[arg(long, global = true, env = "TTX_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Show times in UTC instead of your time zone (TZ).
    #[arg(long, global = true)]
    pub utc: bool,
}

static TIMES: OnceLock<times::Times> = OnceLock::new();

/// How this run shows and reads times (`--utc` or the operator's zone).
pub fn times() -> times::Times {
    *TIMES.get_or_init(|| times::Times::new(false))
}

/// The text after every `--help`: environment variables, time forms, an example.
pub const AFTER_HELP: &str = "\
Environment:
  TTX_DIR      the node's data directory (as --dir)
  TTX_API      the node's API URL (as --api), e.g. http://127.0.0.1:7700
  TTX_TOKEN    your operator token (wins over --token-file and admin.token)
  TTX_PROFILE  a profile of ~/.config/ttx/config.toml (as --profile)
  TTX_LOG      log filter of `ttx serve` (e.g. info, ttx=debug); an invalid one is an error
  TZ           the time zone times are shown and read in (--utc for UTC)
  NO_COLOR     no colour even on a terminal

Times: 14:00, tomorrow 09:00, +2h, -15m, 2026-12-01, 2026-12-01 14:00 (your zone), RFC 3339.

Example:
  ttx --dir /srv/ttx new \"core1.ams BGP flap\" -p 1 --circuit AMS-LON-7";

/// `ttx`: a trouble-ticket node for Network Operations Centers.
#[derive(Debug, Parser)]
#[command(name = "ttx", version, about, propagate_version = true, after_help = AFTER_HELP)]
pub struct Cli {
    /// The options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a node's data directory (config, store, admin token), all or nothing.
    Init(node::InitArgs),
    /// Run the node until SIGINT/SIGTERM.
    Serve(node::ServeArgs),
    /// Show the running node's site, addresses, uptime and counts.
    Status(client::NodeDir),
    /// The site position, a digest of the state there, quick_check and the search index check;
    /// --against another node of the site: the first difference.
    Verify(site::VerifyArgs),
    /// Make this standby the site's primary (a new epoch; the old primary is fenced by it).
    Promote(client::NodeDir),
    /// This site's hot standby: clone one from a running primary; rejoin a deposed primary.
    Standby {
        /// What to do.
        #[command(subcommand)]
        cmd: standby::StandbyCommand,
    },
    /// A deposed primary's events that never reached the site's log (kept by `ttx standby
    /// rejoin`): list, show, apply or discard each (admin).
    Review {
        /// What to do.
        #[command(subcommand)]
        cmd: review::ReviewCommand,
    },
    /// Hand the primary role to the standby, planned and lossless (run on either node): writes
    /// pause, the standby catches up and is promoted, this primary becomes its standby.
    Switchover(site::SwitchoverArgs),
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
    /// Attach a file to a ticket (internal unless --shared), bounded by limits.max_attachment_bytes.
    Attach(attach::AttachArgs),
    /// List a ticket's attachments.
    Attachments(attach::ListArgs),
    /// Download an attachment.
    Attachment {
        /// What to do.
        #[command(subcommand)]
        cmd: attach::AttachmentCommand,
    },
    /// Show a ticket's chart in sections (header, next action, links, history, resolution).
    Show(tickets::ShowArgs),
    /// List open work by priority.
    List(tickets::ListArgs),
    /// Full-text search over subjects and updates.
    Search(tickets::SearchArgs),
    /// Set header fields or status: FIELD=VALUE...
    Set(tickets::SetArgs),
    /// Take a ticket (become its owner); `--steal` one another operator owns.
    Take(tickets::TakeArgs),
    /// Link a ticket to another.
    Link(tickets::LinkArgs),
    /// Set an alarm clock on a ticket.
    Timer(tickets::TimerArgs),
    /// List a ticket's timers, numbered, with their state.
    Timers(tickets::TicketArg),
    /// Call off a pending timer.
    CancelTimer(tickets::TimerRef),
    /// Move a timer later (a fired one goes off again then).
    Snooze(tickets::SnoozeArgs),
    /// Acknowledge a ticket's alerts (one, or all unacknowledged).
    Ack(tickets::AckArgs),
    /// Show alerts (timers that went off) nobody has acknowledged yet.
    Alerts(tickets::AlertsArgs),
    /// Resolve a ticket.
    Resolve(tickets::ResolveArgs),
    /// Close a resolved ticket.
    Close(tickets::CloseArgs),
    /// Reopen a resolved or closed ticket (the problem came back).
    Reopen(tickets::ReopenArgs),
    /// Refer a ticket to a partner site (a telco or partner NOC opens its own ticket for it).
    Refer(referral::ReferArgs),
    /// Act on a referral: accept, reject, close, reopen, cancel, ask.
    Referral {
        /// What to do.
        #[command(subcommand)]
        cmd: referral::ReferralCommand,
    },
    /// List referrals in and out: state, partner reference, overdue, orphaned.
    Referrals(referral::ListArgs),
    /// Partner sites and this site's standby: add, list, remove, ping, pending, accept, deny.
    Peer {
        /// What to do.
        #[command(subcommand)]
        cmd: peers::PeerCommand,
    },
    /// Federation PKI: CA, requests, signing, revocation, inspection; trust on a node (CRLs,
    /// deny list, CAs) and reload.
    Pki {
        /// What to do.
        #[command(subcommand)]
        cmd: pki::PkiCommand,
    },
    /// The whole system on this machine: a NOC with a standby, a telco and a carrier; an
    /// outage referred along the chain, a failover, nothing lost (each claim checked).
    Demo(crate::demo::DemoArgs),
    /// Benchmarks, each against a baseline measured in the same run.
    Bench {
        /// The benchmark.
        #[command(subcommand)]
        cmd: bench::BenchCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages for ttx and every subcommand into DIR.
    Man {
        /// Where to write them (created if needed).
        dir: PathBuf,
    },
}

/// Parses the command line, runs the command, and maps any error to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let json = cli.global.json;
    let _ = TIMES.set(times::Times::new(cli.global.utc));
    profile::init(&cli.global);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err, json),
    }
}

/// A command line clap refused (or `--help` / `--version`): with `--json` anywhere on the
/// line, the error is JSON on the same shape as every other error.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) || !json
    {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
    }
    let message = e.kind().as_str().map_or_else(
        || e.to_string(),
        |kind| {
            // clap's first line names the problem; the rest is usage and tips.
            let first = e.to_string().lines().next().unwrap_or(kind).to_string();
            first.trim_start_matches("error: ").to_string()
        },
    );
    print_error_json("invalid", 2, &message);
    ExitCode::from(2)
}

/// `{"error": {"code", "exit_code", "message"}}` on standard error, pretty-printed like every
/// JSON answer.
fn print_error_json(code: &str, exit_code: u8, message: &str) {
    let body =
        serde_json::json!({"error": {"code": code, "exit_code": exit_code, "message": message}});
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&body).unwrap_or_default()
    );
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.global.json;
    match cli.command {
        Command::Init(a) => node::init(a, json),
        Command::Serve(a) => node::serve(a, json),
        Command::Status(a) => node::status(a, json),
        Command::Verify(a) => site::verify(a, json),
        Command::Promote(a) => site::promote(a, json),
        Command::Standby { cmd } => standby::run(cmd, json),
        Command::Review { cmd } => review::run(cmd, json),
        Command::Switchover(a) => site::switchover(a, json),
        Command::Operator { cmd } => node::operator(cmd, json),
        Command::New(a) => tickets::new(a, json),
        Command::Note(a) => tickets::note(a, json),
        Command::Show(a) => tickets::show(a, json),
        Command::Attach(a) => attach::attach(a, json),
        Command::Attachments(a) => attach::list(a, json),
        Command::Attachment {
            cmd: attach::AttachmentCommand::Get(a),
        } => attach::get(a, json),
        Command::List(a) => tickets::list(a, json),
        Command::Search(a) => tickets::search(a, json),
        Command::Set(a) => tickets::set(a, json),
        Command::Take(a) => tickets::take(a, json),
        Command::Link(a) => tickets::link(a, json),
        Command::Timer(a) => tickets::timer(a, json),
        Command::Timers(a) => tickets::timers(a, json),
        Command::CancelTimer(a) => tickets::cancel_timer(a, json),
        Command::Snooze(a) => tickets::snooze(a, json),
        Command::Ack(a) => tickets::acknowledge(a, json),
        Command::Alerts(a) => tickets::alerts(a, json),
        Command::Resolve(a) => tickets::resolve(a, json),
        Command::Close(a) => tickets::close(a, json),
        Command::Reopen(a) => tickets::reopen(a, json),
        Command::Refer(a) => referral::refer(a, json),
        Command::Referral { cmd } => referral::run(cmd, json),
        Command::Referrals(a) => referral::list(a, json),
        Command::Peer { cmd } => peers::run(cmd, json),
        Command::Pki { cmd } => pki::run(cmd, json),
        Command::Demo(a) => crate::demo::run(a),
        Command::Bench { cmd } => bench::run(cmd, json),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ttx", &mut buf);
            write_stdout(&String::from_utf8_lossy(&buf));
            Ok(())
        }
        Command::Man { dir } => man_pages(&dir, json),
    }
}

/// Writes `ttx.1` and one page per subcommand (`ttx-new.1`, `ttx-peer-add.1`, ...).
fn man_pages(dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    let mut stack = vec![(String::from("ttx"), Cli::command())];
    while let Some((name, cmd)) = stack.pop() {
        let cmd = cmd.name(name.clone());
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                stack.push((format!("{name}-{}", sub.get_name()), sub.clone()));
            }
        }
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    written.sort();
    if json {
        return client::print_json(&serde_json::json!({"written": written}));
    }
    outln!("wrote {} man pages to {}", written.len(), dir.display());
    Ok(())
}

/// Prints an error (as `{"error": ...}` with `--json`) and returns its exit code.
fn report(err: &anyhow::Error, json: bool) -> ExitCode {
    let kind = err
        .chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .map(|f| f.kind);
    let failure = err.chain().find_map(|e| e.downcast_ref::<Failure>());
    let code = kind.map(FailureKind::exit_code).unwrap_or(1);
    let message = format!("{err:#}");
    if json {
        let api_code = failure
            .and_then(|f| f.code.clone())
            .or_else(|| kind.map(|k| k.code().to_string()))
            .unwrap_or_else(|| "failed".into());
        print_error_json(&api_code, code, &message);
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

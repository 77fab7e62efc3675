//! `ttx standby clone`: make this site's hot standby from a running primary.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::client::print_json;
use super::{Failure, FailureKind};
use crate::replication::clone::{
    clone_standby, CloneError, CloneOptions, CloneProgress, CloneTrust, Cloned, DEFAULT_MAX_BYTES,
};
use crate::replication::rejoin::{RejoinError, RejoinOptions};
use crate::wire::ErrorCode;

/// `ttx standby ...`.
#[derive(Debug, clap::Subcommand)]
pub enum StandbyCommand {
    /// Make a new standby in DIR from the running primary at --from: key and CSR, trust, a
    /// consistent snapshot streamed over ttx-repl/1, the config; all or nothing.
    Clone(Box<CloneArgs>),
    /// Make this deposed primary (stopped) the new primary's standby: its events that never
    /// reached the new primary go to the primary's review list (`ttx review`), its store is
    /// replaced by a snapshot of the primary and kept as ttx.db.deposed-epochN.
    Rejoin(RejoinArgs),
}

/// Arguments of `ttx standby rejoin`.
#[derive(Debug, clap::Args)]
pub struct RejoinArgs {
    /// The deposed node's data directory (default: --dir / TTX_DIR).
    #[arg(value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The site's primary's QUIC address, HOST:PORT (default: the address the node follows,
    /// replication.primary or its site's registry record); written as replication.primary.
    #[arg(long, value_name = "HOST:PORT")]
    pub from: Option<String>,
    /// The largest snapshot to take, in bytes.
    #[arg(long = "max-bytes", value_name = "BYTES", default_value_t = DEFAULT_MAX_BYTES)]
    pub max_bytes: u64,
    /// Which node (when DIR is not given).
    #[command(flatten)]
    pub node: super::client::NodeDir,
}

/// Arguments of `ttx standby clone`.
#[derive(Debug, clap::Args)]
pub struct CloneArgs {
    /// The data directory to create (it may hold DIR/tls from an earlier attempt, no node).
    #[arg(value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The primary's QUIC address (its transport.listen), HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub from: String,
    /// Site (the primary's), federation and API address.
    #[command(flatten)]
    pub new: super::node::NewNodeArgs,
    /// The standby's node name within the site.
    #[arg(long, default_value = "standby")]
    pub node: String,
    /// UDP address the standby listens on (QUIC): partners and a future standby reach it
    /// there once it is promoted.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The certificate the federation CA issued for SITE/NODE and the key in DIR/tls/node.key
    /// (from `ttx pki sign` on DIR/tls/node.csr).
    #[arg(long, value_name = "FILE", requires = "ca_cert", conflicts_with = "ca")]
    pub cert: Option<PathBuf>,
    /// The CA certificate that issued --cert.
    #[arg(long = "ca-cert", value_name = "FILE", requires = "cert")]
    pub ca_cert: Option<PathBuf>,
    /// The federation CA's directory, where it is at hand (labs): sign the CSR with it.
    #[arg(long, value_name = "CA_DIR")]
    pub ca: Option<PathBuf>,
    /// The largest snapshot to take, in bytes.
    #[arg(long = "max-bytes", value_name = "BYTES", default_value_t = DEFAULT_MAX_BYTES)]
    pub max_bytes: u64,
}

/// Runs a standby command.
pub fn run(cmd: StandbyCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        StandbyCommand::Clone(a) => clone(*a, json),
        StandbyCommand::Rejoin(a) => rejoin(a, json),
    }
}

fn rejoin(a: RejoinArgs, json: bool) -> anyhow::Result<()> {
    let dir = match a.data_dir {
        Some(d) => d,
        None => a.node.resolve()?.root().to_path_buf(),
    };
    let opts = RejoinOptions {
        dir,
        from: a.from,
        max_bytes: a.max_bytes,
    };
    let done = with_progress(json, async |p| {
        crate::replication::rejoin::rejoin(&opts, p).await
    })?
    .map_err(rejoin_failure)?;
    if json {
        return print_json(&done);
    }
    if done.already_standby {
        outln!(
            "{} is already the standby of {} ({}): nothing to do",
            done.dir.display(),
            done.primary,
            done.primary_addr
        );
        return Ok(());
    }
    outln!(
        "rejoined {} to {} ({}, epoch {}): the logs agree up to position {}",
        done.dir.display(),
        done.primary,
        done.primary_addr,
        done.epoch,
        done.fork
    );
    if done.tail == 0 {
        outln!("this node's log was a prefix of the primary's: no event of its own to review; it is a standby now");
    } else {
        outln!(
            "{} event(s) of this node never reached the primary: kept for review there ({} new, {} already held): `ttx review list` on the primary",
            done.tail,
            done.queued,
            done.known
        );
    }
    if let Some(kept) = &done.kept {
        outln!(
            "the store was replaced by a snapshot of the primary; the deposed store is kept as {}",
            kept.display()
        );
    }
    outln!(
        "next: ttx serve {} (it follows the primary as its standby)",
        done.dir.display()
    );
    Ok(())
}

/// Maps a rejoin error to the CLI's exit codes.
fn rejoin_failure(e: RejoinError) -> anyhow::Error {
    let e = match e {
        RejoinError::Clone(c) => return failure(c),
        other => other,
    };
    let kind = match &e {
        RejoinError::Clone(_) => FailureKind::Failed,
        RejoinError::Running(_)
        | RejoinError::IsPrimary { .. }
        | RejoinError::NotPrimary { .. }
        | RejoinError::Itself(_)
        | RejoinError::Older { .. } => FailureKind::Refused,
        RejoinError::NoNode(_) => FailureKind::NotFound,
        RejoinError::NoTarget => FailureKind::Invalid,
        RejoinError::Remote {
            source: crate::net::NetError::Remote(ErrorCode::NotAuthorized),
            ..
        } => FailureKind::Unauthorized,
        RejoinError::Remote {
            source: crate::net::NetError::Remote(ErrorCode::NotPrimary),
            ..
        } => FailureKind::Refused,
        RejoinError::Remote { .. }
        | RejoinError::BadAnswer(_)
        | RejoinError::Store(_)
        | RejoinError::Io { .. } => FailureKind::Failed,
    };
    Failure::new(kind, e.to_string()).into()
}

fn clone(a: CloneArgs, json: bool) -> anyhow::Result<()> {
    let trust = match (a.cert, a.ca_cert, a.ca) {
        (Some(cert), Some(ca_cert), _) => CloneTrust::Certificate { cert, ca_cert },
        (_, _, Some(ca)) => CloneTrust::CaDir(ca),
        _ => CloneTrust::Installed,
    };
    let opts = CloneOptions {
        dir: a.data_dir,
        from: a.from,
        config: a.new.config(&a.node, Some(a.listen)),
        trust,
        max_bytes: a.max_bytes,
    };
    let cloned = with_progress(json, async |p| clone_standby(&opts, p).await)?.map_err(failure)?;
    if json {
        return print_json(&cloned);
    }
    report(&cloned);
    Ok(())
}

/// Runs `work` on a runtime of its own, showing the snapshot's progress on a terminal (not
/// with --json).
fn with_progress<T>(
    json: bool,
    work: impl AsyncFnOnce(&mut (dyn FnMut(CloneProgress) + Send)) -> T,
) -> anyhow::Result<T> {
    let bar = (!json && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(progress_bar);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let mut on_progress = |p: CloneProgress| {
            if let Some(bar) = &bar {
                show(bar, p)
            }
        };
        work(&mut on_progress).await
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    Ok(result)
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    bar.set_message("waiting for the primary's snapshot");
    bar
}

fn show(bar: &indicatif::ProgressBar, p: CloneProgress) {
    match p {
        CloneProgress::Preparing { elapsed_ms } => bar.set_message(format!(
            "the primary is making the snapshot ({} s)",
            elapsed_ms / 1000
        )),
        CloneProgress::Receiving { received, total } => {
            if bar.length() != Some(total) {
                bar.set_length(total);
                bar.set_message("receiving the snapshot");
            }
            bar.set_position(received);
        }
    }
}

fn report(c: &Cloned) {
    outln!(
        "cloned {} from {} ({}) at site position {} (epoch {}): {} bytes in {:.1} s",
        c.dir.display(),
        c.primary,
        c.primary_addr,
        c.position,
        c.epoch,
        c.bytes,
        c.elapsed_ms as f64 / 1000.0
    );
    outln!("standby {} key {}", c.identity, c.spki_sha256);
    outln!(
        "the site's operators and tokens came with the snapshot: use your site token (TTX_TOKEN or --token-file)"
    );
    outln!(
        "next: ttx serve {} (it follows the primary from position {})",
        c.dir.display(),
        c.position + 1
    );
}

/// Maps a clone error to the CLI's exit codes.
fn failure(e: CloneError) -> anyhow::Error {
    let e = match e {
        CloneError::Pki(p) => return super::pki::failure(p),
        other => other,
    };
    let kind = match &e {
        CloneError::Exists(_) | CloneError::WrongSite { .. } => FailureKind::Refused,
        CloneError::Config(_) | CloneError::NeedsCertificate { .. } | CloneError::Resolve(_) => {
            FailureKind::Invalid
        }
        CloneError::Pki(_) => FailureKind::Refused,
        CloneError::Refused { code, .. } => match code {
            Some(ErrorCode::NotPrimary | ErrorCode::Overloaded) => FailureKind::Refused,
            _ => FailureKind::Unauthorized,
        },
        CloneError::TooLarge { .. } => FailureKind::Refused,
        CloneError::Unreachable { .. }
        | CloneError::Stream(_)
        | CloneError::Snapshot(_)
        | CloneError::Store(_)
        | CloneError::Node(_) => FailureKind::Failed,
    };
    let code = match &e {
        CloneError::Refused { code: Some(c), .. } => Some(c.text().to_string()),
        _ => None,
    };
    Failure::new(kind, e.to_string()).with_code(code).into()
}

//! `ttx standby clone`: make this site's hot standby from a running primary.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::client::print_json;
use super::{Failure, FailureKind};
use crate::replication::clone::{
    clone_standby, CloneError, CloneOptions, CloneProgress, CloneTrust, Cloned, DEFAULT_MAX_BYTES,
};
use crate::wire::ErrorCode;

/// `ttx standby ...`.
#[derive(Debug, clap::Subcommand)]
pub enum StandbyCommand {
    /// Make a new standby in DIR from the running primary at --from: key and CSR, trust, a
    /// consistent snapshot streamed over ttx-repl/1, the config; all or nothing.
    Clone(CloneArgs),
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
        StandbyCommand::Clone(a) => clone(a, json),
    }
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
        clone_standby(&opts, &mut on_progress).await
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let cloned = result.map_err(failure)?;
    if json {
        return print_json(&cloned);
    }
    report(&cloned);
    Ok(())
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

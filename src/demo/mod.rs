//! `ttx demo`: the whole system in one command, on this machine. A fresh federation CA, a NOC
//! with a primary and a hot standby, a telco and a carrier, each a `ttx serve` process of this
//! binary on loopback in a temp dir, set up through the same commands an operator uses; then
//! the story of one outage ([`story`]): referred along the chain, updates both ways, the NOC's
//! primary killed and its standby promoted with nothing acknowledged lost, the referral
//! carrying on, resolved and closed. Each claim the story prints is checked ([`claims`]).
//!
//! The nodes keep running afterwards so a person can try commands beside them, until Ctrl-C;
//! `--exit` stops after the story, and exits 0 only if every claim held.

pub mod claims;
pub mod story;

use std::path::PathBuf;
use std::sync::mpsc;

use claims::{line, Narrator};

use crate::bench::ScratchDir;
use crate::cli::{Failure, FailureKind};
use crate::cluster::Ttx;

/// `ttx demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Stop the nodes and exit after the story: 0 only if every claim it printed held.
    #[arg(long)]
    pub exit: bool,
    /// Where the demo's temp dir goes (the system temp dir otherwise); removed at the end.
    #[arg(long, value_name = "DIR")]
    pub temp: Option<PathBuf>,
}

/// Waits for SIGINT or SIGTERM on a thread of its own; the receiver gets a message then.
fn interrupts() -> anyhow::Result<mpsc::Receiver<()>> {
    let (tx, rx) = mpsc::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut term = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    })?;
    std::thread::spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        let _ = tx.send(());
    });
    Ok(rx)
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let interrupted = interrupts()?;
    let ttx = Ttx::current()?;
    let scratch = ScratchDir::named(args.temp.as_deref(), "ttx-demo")?;
    line(format!(
        "ttx demo: one NOC with a hot standby, a telco and a carrier, in {}",
        scratch.path().display()
    ));
    let mut n = Narrator::default();
    let mut cast = None;
    let told = story::set_up(&mut n, &ttx, scratch.path()).and_then(|mut c| {
        let told = story::tell(&mut n, &mut c);
        cast = Some(c);
        told
    });
    match &told {
        Ok(()) => line(format!(
            "\nThe story holds: {} claims checked, all true.",
            n.held()
        )),
        Err(e) => line(format!(
            "\nThe story stopped after {} claims held: {e}",
            n.held()
        )),
    }
    if let (false, Some(c)) = (args.exit, cast.as_ref()) {
        line(
            "\nThe nodes keep running (noc-a/primary stays dead: it was killed). Try, beside this:"
                .into(),
        );
        line(format!(
            "   TTX_DIR={} ttx referrals",
            c.noc.standby.dir().display()
        ));
        line(format!("   TTX_DIR={} ttx show 1", c.telco.dir().display()));
        line(format!(
            "   TTX_DIR={} ttx status",
            c.carrier.dir().display()
        ));
        line("Press Ctrl-C to stop them and remove the temp dir.".into());
        let _ = interrupted.recv();
    }
    if let Some(mut c) = cast {
        for node in c.nodes_mut() {
            node.stop();
        }
    }
    drop(scratch);
    told.map_err(|e| Failure::new(FailureKind::Failed, format!("ttx demo: {e}")).into())
}

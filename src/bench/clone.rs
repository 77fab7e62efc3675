//! `ttx bench clone`: `ttx standby clone` of a large store, end to end as a separate process,
//! against two baselines on the same store in the same run: a local `VACUUM INTO` (the copy the
//! primary makes) and a raw copy of the file.
//!
//! The store is built as `ttx bench store` builds its read store (N tickets, three updates
//! each, plus 100 long tickets, through the one applier) as the store of a fresh `ttx init`
//! node `bench/primary` (or `--store` is copied there), its admin re-added; the node is served
//! with real QUIC and a certificate from a fresh CA, the site's standby authorized (`ttx peer
//! add bench --allow standby`), and cloned with `ttx standby clone --ca` (the clone makes its
//! key, the CA signs it, the primary makes a `VACUUM INTO` snapshot and streams it in 256 KiB
//! chunks with SHA-256, the clone checks, `quick_check`s and installs it). The baselines run on
//! the primary's store before it is served.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::store::reads;
use super::{BenchError, MachineInfo, Report, ScratchDir, Section};
use crate::cluster::federation::add_peer;
use crate::cluster::{Ca, ClusterError, Ttx};
use crate::model::event::Role;
use crate::store::{WriteOp, WriteRequest};

/// The bound for cloning a standby from a 1,000,000-ticket store.
const TARGET_SECS: f64 = 60.0;

/// What `ttx bench clone` runs.
#[derive(Debug, Clone)]
pub struct CloneBenchOptions {
    /// The `ttx` binary to run the primary and the clone with (the running one).
    pub exe: PathBuf,
    /// Tickets in the store when it has to be built.
    pub tickets: u64,
    /// A store to clone (copied, left as it is) when it holds tickets; else one is built.
    pub store: Option<PathBuf>,
    /// Where scratch files go (the system temp dir otherwise); removed afterwards.
    pub dir: Option<PathBuf>,
}

fn cluster(e: ClusterError) -> BenchError {
    BenchError::Invalid(e.to_string())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Runs the benchmark.
pub fn run(opts: &CloneBenchOptions) -> Result<Report, BenchError> {
    let scratch = ScratchDir::new(opts.dir.as_deref())?;
    let machine = MachineInfo::collect(scratch.path(), 200)?;
    let root = scratch.path();
    let mut sections = Vec::new();
    let ttx = Ttx::at(&opts.exe);
    let ca_dir = root.join("ca");
    let ca = Ca::create(&ttx, &ca_dir, "bench").map_err(cluster)?;
    let mut primary = ca.node(root, "bench", "primary").map_err(cluster)?;
    let data = primary.data();
    let db = data.database();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    // The primary's store: a copy of `--store` when it holds tickets, else built in place
    // (one store of several GB on disk, not two).
    match &opts.store {
        Some(store) if super::web::has_tickets(store)? => {
            std::fs::copy(store, &db).map_err(BenchError::io("copy the store"))?;
        }
        _ => sections.push(reads::build(&db, opts.tickets, true)?),
    }
    let tickets = {
        let (store, counts) = reads::open_built(&db)?;
        store.writer.shutdown();
        counts.tickets
    };
    let bytes = std::fs::metadata(&db)
        .map_err(BenchError::io("stat the store"))?
        .len();

    // Baseline 1: a raw copy of the file, with its fsync (removed at once).
    let copied = root.join("copy.db");
    let started = Instant::now();
    std::fs::copy(&db, &copied).map_err(BenchError::io("copy the store"))?;
    std::fs::File::open(&copied)
        .and_then(|f| f.sync_all())
        .map_err(BenchError::io("sync the copy"))?;
    let copy = started.elapsed();
    let _ = std::fs::remove_file(&copied);
    add_admin(&db, &data.admin_token())?;

    // Baseline 2: the snapshot the primary makes, locally.
    let vacuumed = root.join("vacuum.db");
    let started = Instant::now();
    crate::store::snapshot::take(&db, &vacuumed)
        .map_err(|e| BenchError::Invalid(format!("VACUUM INTO: {e}")))?;
    let vacuum = started.elapsed();
    let _ = std::fs::remove_file(&vacuumed);

    primary.start().map_err(cluster)?;
    let result = clone_from(&ttx, &primary, root, &ca_dir);
    primary.stop();
    let (clone, cloned) = result?;

    let mb = bytes as f64 / 1e6;
    let mut s = Section::new(format!(
        "ttx standby clone of {tickets} tickets ({mb:.0} MB), a separate process, end to end"
    ));
    s.at_most("ttx standby clone", secs(clone), "s", TARGET_SECS);
    s.figure("baseline: VACUUM INTO of the same store", secs(vacuum), "s");
    s.figure("baseline: raw copy of the file (+ fsync)", secs(copy), "s");
    s.figure(
        "clone / VACUUM INTO",
        secs(clone) / secs(vacuum).max(1e-9),
        "x",
    );
    s.figure(
        "snapshot",
        cloned["bytes"].as_f64().unwrap_or(0.0) / 1e6,
        "MB",
    );
    s.figure(
        "clone throughput",
        cloned["bytes"].as_f64().unwrap_or(0.0) / 1e6 / secs(clone).max(1e-9),
        "MB/s",
    );
    s.note(format!(
        "the clone reached site position {}; the primary served it idle (no writes during the copy)",
        cloned["position"]
    ));
    sections.push(s);
    Ok(Report {
        bench: "clone".into(),
        machine,
        sections,
    })
}

/// Gives the copied store the node's admin (the token `ttx init` wrote), so the CLI beside it
/// can authorize the standby.
fn add_admin(db: &Path, token_file: &Path) -> Result<(), BenchError> {
    let token = std::fs::read_to_string(token_file).map_err(BenchError::io("read admin.token"))?;
    let store = reads::open(db)?;
    let result = store.writer.write_blocking(WriteRequest {
        actor: "bench".into(),
        idempotency: None,
        op: WriteOp::AddOperator {
            name: "admin".into(),
            role: Role::Admin,
            token_sha256: crate::api::auth::token_sha256(token.trim()),
        },
    });
    store.writer.shutdown();
    result.map(drop).map_err(BenchError::from)
}

/// Authorizes the site's standby on the running primary and times `ttx standby clone`.
fn clone_from(
    ttx: &Ttx,
    primary: &crate::cluster::Node,
    root: &Path,
    ca_dir: &Path,
) -> Result<(Duration, serde_json::Value), BenchError> {
    add_peer(
        primary,
        "bench",
        &["127.0.0.1:1".into()],
        &["--allow", "standby"],
    )
    .map_err(cluster)?;
    let from = primary.listen_addr().map_err(cluster)?.to_string();
    let dir = root.join("bench-standby");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let started = Instant::now();
    let out = ttx
        .ok(
            None,
            &[
                "--json",
                "standby",
                "clone",
                &s(&dir),
                "--from",
                &from,
                "--site",
                "bench",
                "--federation",
                "bench",
                "--ca",
                &s(ca_dir),
                "--listen",
                "127.0.0.1:0",
            ],
        )
        .map_err(cluster)?;
    let elapsed = started.elapsed();
    let cloned: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| BenchError::Invalid(format!("the clone's answer: {e}")))?;
    Ok((elapsed, cloned))
}

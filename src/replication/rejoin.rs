//! `ttx standby rejoin [--from HOST:PORT]`: a deposed primary (stopped) becomes the new
//! primary's standby, and the events it wrote that never reached the site's log go to the new
//! primary's review list instead of being dropped (LiteFS and pg_rewind discard them).
//!
//! On the deposed node's data dir, with the node stopped (the command takes `node.lock`):
//!
//! 1. It dials the primary (`--from`, else the address the node follows: `replication.primary`,
//!    else its site's registry record) over `ttx-repl/1` as this site's standby, with the
//!    node's own key and certificate, and asks for the primary's role, epoch and head
//!    ([`ReplRequest::EventIds`] with no positions). A node that is not the primary is
//!    refused (naming what it is); so is a run on a node that is itself the primary of the
//!    newest epoch (nothing changes).
//! 2. It finds the fork: the highest position where both logs hold the same event (id and
//!    epoch). Logs of one site agree up to the fork and differ after it, so a search asking
//!    up to [`MAX_POSITIONS`] positions a round finds it in a few rounds (a log of a million
//!    events: 4).
//! 3. Its own events past the fork (the tail) go to the primary as review items
//!    ([`ReplRequest::Review`], [`MAX_REVIEW_BATCH`] a request); the primary records each
//!    once by its original id, so a rerun after a crash adds nothing twice.
//! 4. With an empty tail, the store is made a standby of the primary in place (its log is a
//!    prefix: the follower catches it up). Otherwise a snapshot of the primary is received
//!    into `DIR/.rejoin/` (as `ttx standby clone` does) and made this node's standby store;
//!    the old store is moved aside to `DIR/ttx.db.deposed-epochN` (kept, never deleted), then
//!    the new one moved in. Key, certificate, config and `tls/` stay.
//!
//! Every step is all or nothing and the whole command is rerunnable after a kill at any
//! point: a rerun finding no `ttx.db` but a `ttx.db.deposed-epoch*` (killed between the two
//! renames) reads the tail from that file and finishes; a rerun after the end finds an empty
//! tail and says the node is already a standby.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::Connection;
use serde::Serialize;

use super::clone::{self, CloneError, CloneProgress};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::identity::NodeIdentity;
use crate::model::role::{NodeRole, RoleState};
use crate::net::{NetError, Peer, PeerCtx};
use crate::pki::trust::TrustMaterial;
use crate::store::{ship, site_log, Store, StoreError, WriteOp, WriteOutcome, WriteRequest};
use crate::wire::codec;
use crate::wire::envelope::Envelope;
use crate::wire::repl::{
    EventId, ReplAnswer, ReplRequest, BATCH_BYTES, MAX_POSITIONS, MAX_REVIEW_BATCH,
};
use crate::wire::ErrorCode;

/// The staging directory inside the data dir where the new store is received.
const STAGING: &str = ".rejoin";
/// The prefix of the deposed store kept beside the new one.
const KEPT_PREFIX: &str = "ttx.db.deposed-epoch";
/// A test hook: `TTX_REJOIN_PAUSE=queued|moved` makes the command stop (sleeping) after that
/// step, so a test can SIGKILL it at a known point. Unset in production.
const PAUSE_ENV: &str = "TTX_REJOIN_PAUSE";

/// What to rejoin.
#[derive(Debug, Clone)]
pub struct RejoinOptions {
    /// The deposed node's data dir.
    pub dir: PathBuf,
    /// The primary's QUIC address; `None`: the address the node follows.
    pub from: Option<String>,
    /// The largest snapshot taken (bytes).
    pub max_bytes: u64,
}

/// A finished rejoin.
#[derive(Debug, Clone, Serialize)]
pub struct Rejoined {
    /// The data dir.
    pub dir: PathBuf,
    /// The primary's identity URI.
    pub primary: String,
    /// The address it was reached at.
    pub primary_addr: String,
    /// The primary's epoch.
    pub epoch: u64,
    /// The highest position where both logs hold the same event.
    pub fork: u64,
    /// This node's events past the fork.
    pub tail: u64,
    /// Review items the primary recorded now.
    pub queued: u32,
    /// Tail events the primary had already (an earlier run, or in its log).
    pub known: u32,
    /// Whether the store was replaced by a snapshot of the primary (false: the log was a
    /// prefix and the store was kept, made a standby).
    pub cloned: bool,
    /// Where the deposed store was kept.
    pub kept: Option<PathBuf>,
    /// Whether the node was already the primary's standby (nothing to do).
    pub already_standby: bool,
    /// How long it took, in milliseconds.
    pub elapsed_ms: u64,
}

/// Why a rejoin failed (each step before it is done; rerun to finish).
#[derive(Debug, thiserror::Error)]
pub enum RejoinError {
    /// The node is running.
    #[error("the node at {0} is running (it holds node.lock): stop it, then run `ttx standby rejoin` again")]
    Running(PathBuf),
    /// No config, or no store.
    #[error("{0}")]
    NoNode(String),
    /// No address to reach the primary at.
    #[error("no primary to rejoin: give --from HOST:PORT (the config has no replication.primary and the site's registry record no address)")]
    NoTarget,
    /// This node is the primary of the newest epoch.
    #[error("this node is the site's primary (epoch {ours}; the node at {addr} holds epoch {theirs}): there is nothing to rejoin; nothing changed")]
    IsPrimary {
        /// Our epoch.
        ours: u64,
        /// The other node's.
        theirs: u64,
        /// Its address.
        addr: String,
    },
    /// The node dialed is not the primary.
    #[error("the node at {addr} ({node}) is not its site's primary: it is {role} at epoch {epoch}; rejoin from the primary (--from)")]
    NotPrimary {
        /// Its address.
        addr: String,
        /// Its identity.
        node: String,
        /// Its role.
        role: String,
        /// Its epoch.
        epoch: u64,
    },
    /// The node dialed is this node.
    #[error("the node at {0} is this node itself: rejoin from the site's primary (--from)")]
    Itself(String),
    /// The node dialed holds an older epoch than this node.
    #[error("the node at {addr} holds epoch {theirs}, older than this node's {ours}: it cannot be the site's primary")]
    Older {
        /// Its address.
        addr: String,
        /// Its epoch.
        theirs: u64,
        /// Ours.
        ours: u64,
    },
    /// Dialing, trust or the snapshot failed.
    #[error(transparent)]
    Clone(#[from] CloneError),
    /// The primary refused a request or answered something else.
    #[error("the primary at {addr} {what}: {source}")]
    Remote {
        /// Its address.
        addr: String,
        /// What was asked.
        what: &'static str,
        /// What happened.
        source: NetError,
    },
    /// The primary answered something that does not fit the question.
    #[error("the primary at {0} answered something else than asked")]
    BadAnswer(String),
    /// The local store failed.
    #[error("this node's store: {0}")]
    Store(#[from] StoreError),
    /// A file could not be moved or written.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

impl From<rusqlite::Error> for RejoinError {
    fn from(e: rusqlite::Error) -> Self {
        RejoinError::Store(e.into())
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RejoinError {
    let what = what.into();
    move |source| RejoinError::Io { what, source }
}

// ---- the primary's side ------------------------------------------------------------------

/// Answers [`ReplRequest::EventIds`]: this node's role, epoch, head and the event at each
/// position asked.
pub async fn answer_event_ids(store: &Store, positions: Vec<u64>) -> Result<ReplAnswer, ErrorCode> {
    if positions.len() > MAX_POSITIONS {
        return Err(ErrorCode::Malformed);
    }
    let role = store.writer.role_now();
    let (head, ids) = store
        .reader
        .read(move |c| {
            let head = ship::tip(c)?.0;
            let ids = positions
                .iter()
                .map(|&p| event_id(c, p))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((head, ids))
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot read the log for a rejoining node");
            ErrorCode::Internal
        })?;
    Ok(ReplAnswer::EventIds {
        role: role.role_text(),
        epoch: role.epoch,
        head,
        ids,
    })
}

fn event_id(c: &Connection, position: u64) -> Result<Option<EventId>, StoreError> {
    Ok(ship::event_at(c, position)?.map(|(id, epoch)| EventId { id, epoch }))
}

/// Answers [`ReplRequest::Review`] from `peer` (a node of this site dialing as its standby):
/// the tail is recorded as review items, only on the primary.
pub async fn answer_review(
    store: &Store,
    peer: &PeerCtx,
    node: String,
    envelopes: Vec<Envelope>,
) -> Result<ReplAnswer, ErrorCode> {
    if node != peer.identity.node {
        tracing::warn!(claimed = %node, "a review batch names another node than its sender");
        return Err(ErrorCode::NotAuthorized);
    }
    if envelopes.len() > MAX_REVIEW_BATCH {
        return Err(ErrorCode::Malformed);
    }
    let count = envelopes.len();
    let req = WriteRequest {
        actor: "system".into(),
        idempotency: None,
        op: WriteOp::QueueReview { node, envelopes },
    };
    match store.writer.write(req).await {
        Ok(WriteOutcome::Reviewed { queued, known }) => {
            tracing::warn!(
                queued,
                known,
                count,
                "a deposed node's unshipped events were kept for review (`ttx review list`)"
            );
            Ok(ReplAnswer::Reviewed { queued, known })
        }
        Ok(other) => {
            tracing::error!(?other, "unexpected answer to a review batch");
            Err(ErrorCode::Internal)
        }
        Err(StoreError::NotPrimary(_)) => Err(ErrorCode::NotPrimary),
        Err(e) => {
            tracing::error!(error = %e, "a review batch was refused");
            Err(ErrorCode::Malformed)
        }
    }
}

// ---- the deposed node's side --------------------------------------------------------------

/// Rejoins the stopped node in `opts.dir` to its site's primary (see the module doc), calling
/// `progress` while a snapshot comes.
pub async fn rejoin(
    opts: &RejoinOptions,
    progress: &mut (dyn FnMut(CloneProgress) + Send),
) -> Result<Rejoined, RejoinError> {
    let started = Instant::now();
    let dir = DataDir::new(&opts.dir);
    let config = Config::load(&dir.config())
        .map_err(|e| RejoinError::NoNode(format!("{}: {e}", dir.config().display())))?;
    let _lock = lock(&dir)?;
    let (source, moved) = source_store(&dir)?;
    let local = Local::open(&source)?;
    let from = match &opts.from {
        Some(a) => a.clone(),
        None => follow_target(&config, &local.conn)?.ok_or(RejoinError::NoTarget)?,
    };
    let identity = NodeIdentity::new(
        &config.node.federation,
        &config.node.site,
        &config.node.node,
    )
    .map_err(|e| RejoinError::NoNode(e.to_string()))?;
    let material = TrustMaterial::load(dir.root(), &config.tls).map_err(CloneError::Pki)?;
    let addr: SocketAddr = clone::resolve(&from).await?;
    let endpoint = clone::client_endpoint(&identity, &config, &material, addr)?;
    let result = async {
        let peer = clone::dial(&endpoint, addr, &identity.site, &from).await?;
        let source = Source {
            path: source,
            moved,
        };
        let result = with_primary(&peer, &from, &dir, &config, local, source, opts, progress).await;
        peer.close(ErrorCode::Closed);
        result
    }
    .await;
    endpoint.shutdown().await;
    let mut done = result?;
    if let Some(a) = &opts.from {
        set_follow_address(&dir, &config, a)?;
    }
    done.dir = opts.dir.clone();
    done.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(done)
}

/// Takes the single-writer lock (`ttx serve` holds it while it runs).
fn lock(dir: &DataDir) -> Result<std::fs::File, RejoinError> {
    let path = dir.lock();
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("open {}", path.display())))?;
    if file.try_lock().is_err() {
        return Err(RejoinError::Running(dir.root().to_path_buf()));
    }
    Ok(file)
}

/// The store to read the tail from: `ttx.db`, or (a run killed between moving it aside and
/// moving the new one in) the newest deposed store kept. `true` when it was moved aside.
fn source_store(dir: &DataDir) -> Result<(PathBuf, bool), RejoinError> {
    let db = dir.database();
    if db.exists() {
        return Ok((db, false));
    }
    let mut kept: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir.root())
        .map_err(io(format!("read {}", dir.root().display())))?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(KEPT_PREFIX) && !name.ends_with("-wal") && !name.ends_with("-shm")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    kept.sort();
    match kept.pop() {
        Some((_, path)) => Ok((path, true)),
        None => Err(RejoinError::NoNode(format!(
            "{} holds no store ({})",
            dir.root().display(),
            db.display()
        ))),
    }
}

/// The deposed node's store, read directly (the node is stopped).
struct Local {
    conn: Connection,
    role: RoleState,
    node: String,
    head: u64,
}

impl Local {
    fn open(path: &Path) -> Result<Local, RejoinError> {
        let conn = Connection::open(path)?;
        let role = site_log::load_role(&conn)?;
        let node = site_log::meta(&conn, "node")?.unwrap_or_default();
        let head = ship::tip(&conn)?.0;
        Ok(Local {
            conn,
            role,
            node,
            head,
        })
    }

    fn ids(&self, positions: &[u64]) -> Result<Vec<Option<EventId>>, RejoinError> {
        Ok(positions
            .iter()
            .map(|&p| event_id(&self.conn, p))
            .collect::<Result<_, _>>()?)
    }
}

/// The address the node follows when `--from` is not given: `replication.primary`, else the
/// first address of its site's registry record (as the follower reads it).
fn follow_target(config: &Config, conn: &Connection) -> Result<Option<String>, RejoinError> {
    if let Some(a) = &config.replication.primary {
        return Ok(Some(a.clone()));
    }
    Ok(crate::store::query::peers(conn)?
        .into_iter()
        .find(|r| r.site == config.node.site && r.standby)
        .and_then(|r| r.addrs.into_iter().next()))
}

/// The other node, asked over its connection.
struct Remote<'a> {
    peer: &'a Peer,
    addr: &'a str,
}

impl Remote<'_> {
    async fn ask(&self, req: &ReplRequest, what: &'static str) -> Result<ReplAnswer, RejoinError> {
        let body = codec::encode(req).expect("requests encode");
        let answer = self
            .peer
            .request(body)
            .await
            .map_err(|source| RejoinError::Remote {
                addr: self.addr.to_string(),
                what,
                source,
            })?;
        codec::decode(&answer).map_err(|_| RejoinError::BadAnswer(self.addr.to_string()))
    }

    async fn ids(
        &self,
        positions: Vec<u64>,
    ) -> Result<(String, u64, u64, Vec<Option<EventId>>), RejoinError> {
        let n = positions.len();
        match self
            .ask(
                &ReplRequest::EventIds { positions },
                "could not be asked for its log",
            )
            .await?
        {
            ReplAnswer::EventIds {
                role,
                epoch,
                head,
                ids,
            } if ids.len() == n => Ok((role, epoch, head, ids)),
            _ => Err(RejoinError::BadAnswer(self.addr.to_string())),
        }
    }
}

/// Where the tail is read from.
struct Source {
    path: PathBuf,
    /// Already moved aside by an earlier run.
    moved: bool,
}

#[allow(clippy::too_many_arguments)]
async fn with_primary(
    peer: &Peer,
    from: &str,
    dir: &DataDir,
    config: &Config,
    local: Local,
    source: Source,
    opts: &RejoinOptions,
    progress: &mut (dyn FnMut(CloneProgress) + Send),
) -> Result<Rejoined, RejoinError> {
    let remote = Remote { peer, addr: from };
    let primary = peer.ctx().identity.clone();
    if primary.node == config.node.node {
        return Err(RejoinError::Itself(from.to_string()));
    }
    let (role, epoch, their_head, _) = remote.ids(Vec::new()).await?;
    if local.role.ships() && epoch <= local.role.epoch {
        return Err(RejoinError::IsPrimary {
            ours: local.role.epoch,
            theirs: epoch,
            addr: from.to_string(),
        });
    }
    if role != "primary" {
        return Err(RejoinError::NotPrimary {
            addr: from.to_string(),
            node: primary.to_uri(),
            role,
            epoch,
        });
    }
    if epoch < local.role.epoch {
        return Err(RejoinError::Older {
            addr: from.to_string(),
            theirs: epoch,
            ours: local.role.epoch,
        });
    }
    let fork = find_fork(&remote, &local, their_head).await?;
    let (tail, queued, known) = hand_over_tail(&remote, &local, fork).await?;
    pause("queued");
    let mut done = Rejoined {
        dir: dir.root().to_path_buf(),
        primary: primary.to_uri(),
        primary_addr: from.to_string(),
        epoch,
        fork,
        tail,
        queued,
        known,
        cloned: false,
        kept: None,
        already_standby: false,
        elapsed_ms: 0,
    };
    if tail == 0 && !source.moved {
        let wanted = NodeRole::Standby {
            primary: primary.node.clone(),
        };
        done.already_standby = local.role.role == wanted;
        if !done.already_standby {
            site_log::make_standby(&local.conn, &local.node, &primary.node)?;
        }
        return Ok(done);
    }
    // A snapshot of the primary, made this node's standby store, in DIR/.rejoin.
    let staging = DataDir::new(dir.root().join(STAGING));
    let _ = std::fs::remove_dir_all(staging.root());
    crate::pki::files::create_private_dir(staging.root()).map_err(|e| RejoinError::Io {
        what: format!("create {}", staging.root().display()),
        source: std::io::Error::other(e.to_string()),
    })?;
    clone::snapshot_into(peer, from, &staging, opts.max_bytes, progress).await?;
    clone::make_standby(&staging, config, &primary.node)?;
    done.cloned = true;
    let kept = if source.moved {
        source.path
    } else {
        move_aside(dir, local)?
    };
    pause("moved");
    std::fs::rename(staging.database(), dir.database()).map_err(io(format!(
        "move the new store into {}",
        dir.root().display()
    )))?;
    sync_dir(dir.root())?;
    let _ = std::fs::remove_dir_all(staging.root());
    done.kept = Some(kept);
    Ok(done)
}

/// The search for the fork: `lo` always agrees (position 0 does), `hi` bounds what may; each
/// round asks up to [`MAX_POSITIONS`] positions spread over `(lo, hi]` and keeps the last that
/// agrees (agreement is a prefix of the log).
async fn find_fork(
    remote: &Remote<'_>,
    local: &Local,
    their_head: u64,
) -> Result<u64, RejoinError> {
    let (mut lo, mut hi) = (0u64, local.head.min(their_head));
    while lo < hi {
        let span = hi - lo;
        let n = span.min(MAX_POSITIONS as u64);
        let positions: Vec<u64> = (1..=n).map(|i| lo + (span * i).div_ceil(n)).collect();
        let ours = local.ids(&positions)?;
        let (_, _, _, theirs) = remote.ids(positions.clone()).await?;
        let agree = positions
            .iter()
            .zip(ours.iter().zip(&theirs))
            .take_while(|(_, (a, b))| a.is_some() && a == b)
            .count();
        if agree == positions.len() {
            lo = hi;
        } else {
            if agree > 0 {
                lo = positions[agree - 1];
            }
            hi = positions[agree] - 1;
        }
    }
    Ok(lo)
}

/// Sends this node's events past `fork` to the primary as review items; answers how many
/// there were, how many the primary recorded now and how many it had already.
async fn hand_over_tail(
    remote: &Remote<'_>,
    local: &Local,
    fork: u64,
) -> Result<(u64, u32, u32), RejoinError> {
    let (mut after, mut tail, mut queued, mut known) = (fork as i64, 0u64, 0u32, 0u32);
    loop {
        let mut envelopes = ship::envelopes_after(&local.conn, after, MAX_REVIEW_BATCH as u32)?;
        super::backlog::keep_within(&mut envelopes, BATCH_BYTES);
        let Some(last) = envelopes.last().map(|e| e.position) else {
            break;
        };
        tail += envelopes.len() as u64;
        let req = ReplRequest::Review {
            node: local.node.clone(),
            envelopes,
        };
        match remote.ask(&req, "refused the tail for review").await? {
            ReplAnswer::Reviewed {
                queued: q,
                known: k,
            } => {
                queued += q;
                known += k;
            }
            _ => return Err(RejoinError::BadAnswer(remote.addr.to_string())),
        }
        after = last as i64;
    }
    Ok((tail, queued, known))
}

/// Moves the deposed store (checkpointed and closed first, and any WAL left with it) to
/// `ttx.db.deposed-epochN`.
fn move_aside(dir: &DataDir, local: Local) -> Result<PathBuf, RejoinError> {
    local
        .conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let base = format!("{KEPT_PREFIX}{}", local.role.epoch);
    local
        .conn
        .close()
        .map_err(|(_, e)| RejoinError::Store(e.into()))?;
    let mut kept = dir.root().join(&base);
    let mut n = 2;
    while kept.exists() {
        kept = dir.root().join(format!("{base}-{n}"));
        n += 1;
    }
    let db = dir.database();
    for suffix in ["-wal", "-shm", "-spool"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{suffix}", kept.display()));
            std::fs::rename(&from, &to).map_err(io(format!("move {}", from.display())))?;
        }
    }
    std::fs::rename(&db, &kept).map_err(io(format!("move {} aside", db.display())))?;
    sync_dir(dir.root())?;
    Ok(kept)
}

fn sync_dir(dir: &Path) -> Result<(), RejoinError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("sync {}", dir.display())))
}

/// Makes the config follow `addr` (`replication.primary`), written beside and renamed over it.
fn set_follow_address(dir: &DataDir, config: &Config, addr: &str) -> Result<(), RejoinError> {
    if config.replication.primary.as_deref() == Some(addr) {
        return Ok(());
    }
    let mut config = config.clone();
    config.replication.primary = Some(addr.to_string());
    let staging = DataDir::new(dir.root().join(STAGING));
    crate::pki::files::create_private_dir(staging.root()).ok();
    crate::node::init::write_config(&staging, &config).map_err(|e| RejoinError::Io {
        what: "write the config".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    std::fs::rename(staging.config(), dir.config()).map_err(io("replace the config"))?;
    let _ = std::fs::remove_dir_all(staging.root());
    sync_dir(dir.root())
}

/// The test hook of [`PAUSE_ENV`].
fn pause(step: &str) {
    if std::env::var(PAUSE_ENV).as_deref() == Ok(step) {
        eprintln!("ttx standby rejoin: paused after {step} ({PAUSE_ENV})");
        std::thread::sleep(std::time::Duration::from_secs(120));
    }
}

//! `ttx verify --against HOST:PORT`: compare this node's state with another node of its site at
//! the same site position, and name the first difference.
//!
//! Both nodes compute the digest `ttx verify` shows, and beside it one digest per state table.
//! The asker dials the other node over `ttx-repl/1` (as its site's standby, so only a node of
//! the site holding the standby permission can ask) and sends one-shot [`ReplRequest`]s:
//!
//! 1. `Digest { at_least }`: the other node waits (bounded) until its head reaches ours and
//!    answers its digests; if it is further on, we wait for our own head to reach its
//!    position, and try again until both are at one position or the wait runs out.
//! 2. Equal digests: the same state. Otherwise the first table whose digest differs is
//!    searched top-down: the rows `[lo, hi)` (canonical order) are cut into 16 slices, both
//!    sides hash each slice, and the first slice that differs is cut again, until at most
//!    [`crate::wire::repl::MAX_ROWS`] rows are left; those are compared row by row, and the first row
//!    that differs (or exists on one side only) is named (`tickets: ticket #12`). Since every
//!    slice before it is equal, that is the first differing row of the table. A million
//!    rows take 5 rounds.
//!
//! Every answer carries its position: if either node moves while searching, the search says so
//! instead of naming a row that only differs because of the move.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::federation::Federation;
use crate::net::{NetError, Peer, PeerCtx};
use crate::store::{verify, Store, StoreError};
use crate::wire::codec;
use crate::wire::repl::{ReplAnswer, ReplRequest, RowDigest, StateDigest, MAX_PARTS, MAX_ROWS};
use crate::wire::{ErrorCode, Role};

/// Slices per round of the search.
const PARTS: u32 = 16;
/// The longest a node waits, answering `Digest`, for its head to reach the asker's.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// What a comparison found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// The address compared against.
    pub against: String,
    /// The other node's identity URI.
    pub node: String,
    /// The site position both were compared at.
    pub position: u64,
    /// The other node's digest there (hex).
    pub digest: String,
    /// Whether the states are the same.
    pub same: bool,
    /// The first difference, when they are not.
    pub first_difference: Option<Difference>,
}

/// The first difference found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// The state table.
    pub table: String,
    /// The row, as people name it (`ticket #12`), when one was found.
    pub row: Option<String>,
    /// What differs: `differs`, `only on this node`, `only on the other node`.
    pub what: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.row {
            Some(row) => write!(f, "{}: {} {}", self.table, row, self.what),
            None => write!(f, "{}: {}", self.table, self.what),
        }
    }
}

/// Why nodes could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// This node has no federation endpoint.
    #[error(
        "this node does not listen for peers ([transport] listen): it cannot reach another node"
    )]
    NoFederation,
    /// The address does not resolve.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// The other node could not be reached or refused.
    #[error("cannot ask {addr}: {source}")]
    Net {
        /// The address.
        addr: String,
        /// What happened.
        source: NetError,
    },
    /// The other node answered something else than asked.
    #[error("{0} answered something that is not a digest")]
    BadAnswer(String),
    /// The two nodes did not meet at one position in time.
    #[error("could not compare: this node is at position {ours}, {addr} at {theirs}, and they did not meet within {secs} s")]
    NotSamePosition {
        /// The address.
        addr: String,
        /// Our position.
        ours: u64,
        /// Theirs.
        theirs: u64,
        /// How long we waited.
        secs: u64,
    },
    /// A node moved on while the difference was being searched.
    #[error("could not name the difference: a node moved on from position {0} while searching; run it again when writes are quiet")]
    Moved(u64),
    /// This node's store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Answers a comparison request from `peer` (a node of `site` that declared `Standby`).
pub async fn answer(
    store: &Store,
    site: &str,
    peer: &PeerCtx,
    body: &[u8],
) -> Result<Vec<u8>, ErrorCode> {
    if peer.role != Role::Standby || peer.identity.site != site {
        return Err(ErrorCode::NotAuthorized);
    }
    let req: ReplRequest = codec::decode(body).map_err(|_| ErrorCode::Malformed)?;
    let answer = match req {
        ReplRequest::Digest { at_least, wait_ms } => {
            let wait = Duration::from_millis(wait_ms).min(MAX_WAIT);
            wait_for_head(store, at_least, wait).await;
            ReplAnswer::Digest(local_digest(store).await.map_err(internal)?)
        }
        ReplRequest::Ranges {
            position,
            table,
            lo,
            hi,
            parts,
        } => {
            if parts == 0 || parts > MAX_PARTS || hi < lo {
                return Err(ErrorCode::Malformed);
            }
            let digests = store
                .reader
                .read(move |c| verify::range_digests(c, position, table, lo, hi, parts))
                .await
                .map_err(stale)?;
            ReplAnswer::Ranges { position, digests }
        }
        ReplRequest::Rows {
            position,
            table,
            lo,
            hi,
        } => {
            if hi < lo || hi - lo > MAX_ROWS {
                return Err(ErrorCode::Malformed);
            }
            let rows = store
                .reader
                .read(move |c| verify::row_digests(c, position, table, lo, hi))
                .await
                .map_err(stale)?;
            ReplAnswer::Rows { position, rows }
        }
        ReplRequest::EventIds { positions } => {
            super::rejoin::answer_event_ids(store, positions).await?
        }
        ReplRequest::Review { node, envelopes } => {
            super::rejoin::answer_review(store, peer, node, envelopes).await?
        }
    };
    Ok(codec::encode(&answer).expect("answers encode"))
}

fn internal(e: StoreError) -> ErrorCode {
    tracing::error!(error = %e, "cannot compute the state digest");
    ErrorCode::Internal
}

/// A slice asked at a position this node is no longer at: `diverged` tells the asker the state
/// moved (details stay in the log).
fn stale(e: StoreError) -> ErrorCode {
    match e {
        StoreError::Stale(why) => {
            tracing::info!(%why, "comparison request for another position");
            ErrorCode::Diverged
        }
        other => internal(other),
    }
}

async fn local_digest(store: &Store) -> Result<StateDigest, StoreError> {
    store.reader.read(verify::state_digest).await
}

/// Waits (at most `wait`) until this node's head is at least `position`.
async fn wait_for_head(store: &Store, position: u64, wait: Duration) -> bool {
    let mut head = store.writer.head.clone();
    tokio::time::timeout(wait, head.wait_for(|h| *h as u64 >= position))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Compares this node's state with the node at `addr` (see the module doc), waiting at most
/// `wait` for both to be at one position.
pub async fn compare_against(
    store: &Store,
    federation: Option<Federation>,
    addr: &str,
    wait: Duration,
) -> Result<Comparison, CompareError> {
    let fed = federation.ok_or(CompareError::NoFederation)?;
    let sock: SocketAddr = tokio::net::lookup_host(addr)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| CompareError::Resolve(addr.to_string()))?;
    let net = |source| CompareError::Net {
        addr: addr.to_string(),
        source,
    };
    let peer = fed.connect_as_standby(sock).await.map_err(net)?;
    let result = compare_with(store, &peer, addr, wait).await;
    peer.close(ErrorCode::Closed);
    result
}

async fn compare_with(
    store: &Store,
    peer: &Peer,
    addr: &str,
    wait: Duration,
) -> Result<Comparison, CompareError> {
    let remote = Remote { peer, addr };
    let deadline = tokio::time::Instant::now() + wait;
    let (ours, theirs) = loop {
        let ours = local_digest(store).await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let theirs = remote.digest(ours.position, left).await?;
        if theirs.position == ours.position {
            break (ours, theirs);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero()
            || (theirs.position > ours.position
                && !wait_for_head(store, theirs.position, left).await)
            || theirs.position < ours.position
        {
            return Err(CompareError::NotSamePosition {
                addr: addr.to_string(),
                ours: ours.position,
                theirs: theirs.position,
                secs: wait.as_secs(),
            });
        }
    };
    let position = ours.position;
    let first_difference = if ours.digest == theirs.digest {
        None
    } else {
        Some(first_difference(store, &remote, &ours, &theirs).await?)
    };
    Ok(Comparison {
        against: addr.to_string(),
        node: peer.ctx().identity.to_uri(),
        position,
        digest: hex::encode(theirs.digest),
        same: first_difference.is_none(),
        first_difference,
    })
}

/// The other node, asked over its connection.
struct Remote<'a> {
    peer: &'a Peer,
    addr: &'a str,
}

impl Remote<'_> {
    async fn ask(&self, req: &ReplRequest) -> Result<ReplAnswer, CompareError> {
        let body = codec::encode(req).expect("requests encode");
        let answer = match self.peer.request(body).await {
            Ok(a) => a,
            Err(NetError::Remote(ErrorCode::Diverged)) => {
                let position = match req {
                    ReplRequest::Ranges { position, .. } | ReplRequest::Rows { position, .. } => {
                        *position
                    }
                    ReplRequest::Digest { at_least, .. } => *at_least,
                    ReplRequest::EventIds { .. } | ReplRequest::Review { .. } => 0,
                };
                return Err(CompareError::Moved(position));
            }
            Err(source) => {
                return Err(CompareError::Net {
                    addr: self.addr.to_string(),
                    source,
                })
            }
        };
        codec::decode(&answer).map_err(|_| CompareError::BadAnswer(self.addr.to_string()))
    }

    async fn digest(&self, at_least: u64, wait: Duration) -> Result<StateDigest, CompareError> {
        let wait_ms = wait.as_millis().min(u64::MAX as u128) as u64;
        match self.ask(&ReplRequest::Digest { at_least, wait_ms }).await? {
            ReplAnswer::Digest(d) => Ok(d),
            _ => Err(CompareError::BadAnswer(self.addr.to_string())),
        }
    }
}

/// Searches the first table whose digest differs, top-down, for its first differing row.
async fn first_difference(
    store: &Store,
    remote: &Remote<'_>,
    ours: &StateDigest,
    theirs: &StateDigest,
) -> Result<Difference, CompareError> {
    let position = ours.position;
    let tables = ours.tables.iter().zip(&theirs.tables).enumerate();
    let Some((index, (mine, other))) = tables.into_iter().find(|(_, (a, b))| a != b) else {
        // Same tables but another digest (or another table list): name what differs.
        return Ok(Difference {
            table: "-".into(),
            row: None,
            what: "the state digests differ but no table does (another ttx version?)".into(),
        });
    };
    let table = index as u32;
    let (mut lo, mut hi) = (0u64, mine.rows.max(other.rows));
    while hi - lo > MAX_ROWS {
        let req = ReplRequest::Ranges {
            position,
            table,
            lo,
            hi,
            parts: PARTS,
        };
        let local = store
            .reader
            .read(move |c| verify::range_digests(c, position, table, lo, hi, PARTS))
            .await
            .map_err(|e| moved(e, position))?;
        let ReplAnswer::Ranges {
            position: at,
            digests,
        } = remote.ask(&req).await?
        else {
            return Err(CompareError::BadAnswer(remote.addr.to_string()));
        };
        if at != position || digests.len() != local.len() {
            return Err(CompareError::Moved(position));
        }
        let Some(j) = (0..local.len()).find(|&j| local[j] != digests[j]) else {
            return Err(CompareError::Moved(position));
        };
        let (span, parts, j) = (hi - lo, PARTS as u64, j as u64);
        (lo, hi) = (lo + span * j / parts, lo + span * (j + 1) / parts);
    }
    let local = store
        .reader
        .read(move |c| verify::row_digests(c, position, table, lo, hi))
        .await
        .map_err(|e| moved(e, position))?;
    let ReplAnswer::Rows {
        position: at,
        rows: remote_rows,
    } = remote
        .ask(&ReplRequest::Rows {
            position,
            table,
            lo,
            hi,
        })
        .await?
    else {
        return Err(CompareError::BadAnswer(remote.addr.to_string()));
    };
    if at != position {
        return Err(CompareError::Moved(position));
    }
    Ok(first_row_difference(&mine.name, &local, &remote_rows))
}

fn moved(e: StoreError, position: u64) -> CompareError {
    match e {
        StoreError::Stale(_) => CompareError::Moved(position),
        other => other.into(),
    }
}

/// The first of two runs of rows (the same slice on both nodes) that differs.
fn first_row_difference(table: &str, ours: &[RowDigest], theirs: &[RowDigest]) -> Difference {
    let diff = |row: &RowDigest, what: &str| Difference {
        table: table.to_string(),
        row: Some(row.key.clone()),
        what: what.to_string(),
    };
    for i in 0..ours.len().max(theirs.len()) {
        match (ours.get(i), theirs.get(i)) {
            (Some(a), Some(b)) if a == b => continue,
            (Some(a), Some(b)) if a.key == b.key => return diff(a, "differs"),
            // Different rows at one place: the one that sorts first is missing on the other side.
            (Some(a), Some(_)) => return diff(a, "differs (or is only on one node)"),
            (Some(a), None) => return diff(a, "is only on this node"),
            (None, Some(b)) => return diff(b, "is only on the other node"),
            (None, None) => break,
        }
    }
    Difference {
        table: table.to_string(),
        row: None,
        what: "differs".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, b: u8) -> RowDigest {
        RowDigest {
            key: key.into(),
            sha256: [b; 32],
        }
    }

    #[test]
    fn the_first_differing_row_is_named() {
        let a = [row("ticket #1", 1), row("ticket #2", 2)];
        let b = [row("ticket #1", 1), row("ticket #2", 9)];
        let d = first_row_difference("tickets", &a, &b);
        assert_eq!(d.to_string(), "tickets: ticket #2 differs");
        let d = first_row_difference("tickets", &a, &a[..1]);
        assert_eq!(d.to_string(), "tickets: ticket #2 is only on this node");
        let d = first_row_difference("tickets", &a[..1], &a);
        assert_eq!(
            d.to_string(),
            "tickets: ticket #2 is only on the other node"
        );
    }
}

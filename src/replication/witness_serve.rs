//! The witness's side of `ttx-witness/1`: any `ttx serve` node holds the lease on the primary
//! role of the sites its registry allows `witness`, and decides renewals and promotions with
//! the pure [`Witness`] state machine.
//!
//! Who may ask: the endpoint admits only a peer whose registry record allows `witness` (and
//! never a node of this node's own site); the handler then checks that the request names the
//! very site and node of the asker's certificate, so a node can only ever renew or take the
//! lease of its own site. Anything else fails with `not_authorized`.
//!
//! What survives a restart: each site's holder, epoch and degraded flag are written to
//! `DIR/witness.db` (its own SQLite file, not this node's site log) before an answer that
//! changed them leaves. A restarted witness counts every stored lease as granted at its
//! restart, so it grants no promotion until a whole term and margin later, and never a second
//! one in an epoch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension};

use super::lease::{LeaseError, LeaseTiming, Witness};
use crate::model::clock::Millis;
use crate::net::{BoxFuture, Handler, PeerCtx};
use crate::wire::codec;
use crate::wire::witness::{RefusalReason, WitnessAnswer, WitnessRefusal, WitnessRequest};
use crate::wire::{ErrorCode, Request};

/// The most sites one witness keeps (a registry allows only so many; a bound all the same).
const MAX_SITES: usize = 1024;

/// Why the witness's book could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    /// SQLite failed.
    #[error("witness.db: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// A monotonic clock in milliseconds (since the process started): the lease is counted on
/// each side's own monotonic clock, never by comparing two hosts' wall clocks.
pub fn mono_now() -> Millis {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as Millis
}

struct Book {
    conn: Connection,
    sites: HashMap<String, Witness>,
}

/// The witness's durable lease book: one [`Witness`] per site, persisted in `witness.db`.
pub struct WitnessBook {
    timing: LeaseTiming,
    book: Mutex<Book>,
}

impl WitnessBook {
    /// Opens (or creates) the book at `path`, restoring every site's lease as granted now.
    pub fn open(path: &Path, timing: LeaseTiming) -> Result<WitnessBook, BookError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS leases (
                 site     TEXT PRIMARY KEY,
                 holder   TEXT NOT NULL,
                 epoch    INTEGER NOT NULL,
                 degraded INTEGER NOT NULL
             ) STRICT;",
        )?;
        let now = mono_now();
        let mut sites = HashMap::new();
        {
            let mut stmt = conn.prepare("SELECT site, holder, epoch, degraded FROM leases")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            for row in rows {
                let (site, holder, epoch, degraded) = row?;
                let w = Witness::restore(timing, Some((holder, epoch as u64)), degraded != 0, now);
                sites.insert(site, w);
            }
        }
        Ok(WitnessBook {
            timing,
            book: Mutex::new(Book { conn, sites }),
        })
    }

    /// What the witness knows of `site`: holder, epoch, degraded.
    pub fn lease_of(&self, site: &str) -> Option<(String, u64, bool)> {
        let book = self.book.lock().unwrap_or_else(|e| e.into_inner());
        let w = book.sites.get(site)?;
        w.holder().map(|(n, e)| (n.to_string(), e, w.degraded()))
    }

    /// Decides a request from `node` of `site` (already checked to be the asker's own) and
    /// persists any change before answering. Blocking (SQLite): call off the async threads.
    pub fn decide(&self, req: &WitnessRequest) -> Result<WitnessAnswer, BookError> {
        let now = mono_now();
        let mut book = self.book.lock().unwrap_or_else(|e| e.into_inner());
        let site = match req {
            WitnessRequest::Renew(r) => &r.site,
            WitnessRequest::Promote(p) => &p.site,
        };
        if !book.sites.contains_key(site) && book.sites.len() >= MAX_SITES {
            return Ok(refusal(
                RefusalReason::Held,
                &Witness::new(self.timing),
                now,
            ));
        }
        let before = book.sites.get(site).map(stored);
        let w = book
            .sites
            .entry(site.clone())
            .or_insert_with(|| Witness::new(self.timing));
        let result = match req {
            WitnessRequest::Renew(r) => {
                w.renew(&r.node, r.epoch, r.degraded, now)
                    .map(|()| WitnessAnswer::Granted {
                        epoch: r.epoch,
                        term_ms: self.timing.term_ms as u64,
                        margin_ms: self.timing.margin_ms as u64,
                    })
            }
            WitnessRequest::Promote(p) => w
                .promote(&p.node, p.epoch, now)
                .map(|epoch| WitnessAnswer::Promoted { epoch }),
        };
        let answer = match result {
            Ok(a) => a,
            Err(e) => refusal(reason(&e), w, now),
        };
        let after = stored(w);
        if before.as_ref() != Some(&after) {
            if let (Some((holder, epoch)), degraded) = (&after.0, after.1) {
                book.conn.execute(
                    "INSERT INTO leases (site, holder, epoch, degraded) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (site) DO UPDATE SET holder = ?2, epoch = ?3, degraded = ?4",
                    params![site, holder, *epoch as i64, degraded as i64],
                )?;
            }
        }
        Ok(answer)
    }
}

/// What of a site's lease is durable: the holder with its epoch, and the degraded flag.
fn stored(w: &Witness) -> (Option<(String, u64)>, bool) {
    (w.holder().map(|(n, e)| (n.to_string(), e)), w.degraded())
}

fn reason(e: &LeaseError) -> RefusalReason {
    match e {
        LeaseError::Held { .. } => RefusalReason::Held,
        LeaseError::Fenced { .. } => RefusalReason::Fenced,
        LeaseError::Degraded => RefusalReason::Degraded,
    }
}

fn refusal(reason: RefusalReason, w: &Witness, now: Millis) -> WitnessAnswer {
    let (holder, epoch) = w.holder().unwrap_or(("", 0));
    WitnessAnswer::Refused(WitnessRefusal {
        reason,
        epoch,
        holder: holder.to_string(),
        expires_in_ms: w.expires_in(now) as u64,
    })
}

/// The `ttx-witness/1` handler.
pub struct WitnessV1 {
    book: Arc<WitnessBook>,
}

impl WitnessV1 {
    /// A handler deciding with `book`.
    pub fn new(book: Arc<WitnessBook>) -> Self {
        WitnessV1 { book }
    }

    async fn answer(&self, peer: &PeerCtx, body: &[u8]) -> Result<Vec<u8>, ErrorCode> {
        let req: WitnessRequest = codec::decode(body).map_err(|_| ErrorCode::Malformed)?;
        let (site, node) = match &req {
            WitnessRequest::Renew(r) => (&r.site, &r.node),
            WitnessRequest::Promote(p) => (&p.site, &p.node),
        };
        // A node may renew or take only its own site's lease, as itself.
        if *site != peer.identity.site || *node != peer.identity.node {
            tracing::warn!(asked_for = %site, node = %node, "witness request for another site or node: refused");
            return Err(ErrorCode::NotAuthorized);
        }
        let book = self.book.clone();
        let decided = tokio::task::spawn_blocking(move || book.decide(&req))
            .await
            .map_err(|_| ErrorCode::Internal)?;
        let answer = decided.map_err(|e| {
            tracing::error!(error = %e, "cannot record the witness's lease");
            ErrorCode::Internal
        })?;
        match &answer {
            WitnessAnswer::Promoted { epoch } => {
                tracing::warn!(
                    epoch,
                    "witness: promoted the site's standby (the primary's lease ran out)"
                )
            }
            WitnessAnswer::Refused(r) if r.reason != RefusalReason::Held => {
                tracing::info!(reason = r.reason.as_str(), epoch = r.epoch, holder = %r.holder, "witness refused")
            }
            _ => {}
        }
        Ok(codec::encode(&answer).expect("witness answer encodes"))
    }
}

impl Handler for WitnessV1 {
    fn handle<'a>(
        &'a self,
        peer: &'a PeerCtx,
        request: Request,
    ) -> BoxFuture<'a, Result<Vec<u8>, ErrorCode>> {
        let span = tracing::info_span!("witness", peer = %peer.identity, remote = %peer.remote);
        Box::pin(tracing::Instrument::instrument(
            async move { self.answer(peer, &request.body).await },
            span,
        ))
    }
}

/// Reads a stored lease without a running witness (tests and `ttx status` of the witness).
pub fn stored_lease(path: &Path, site: &str) -> Result<Option<(String, u64)>, BookError> {
    let conn = Connection::open(path)?;
    Ok(conn
        .query_row(
            "SELECT holder, epoch FROM leases WHERE site = ?1",
            [site],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)),
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::witness::{PromoteAsk, Renew};

    const T: LeaseTiming = LeaseTiming {
        term_ms: 300,
        margin_ms: 100,
    };

    fn renew(node: &str, epoch: u64, degraded: bool) -> WitnessRequest {
        WitnessRequest::Renew(Renew {
            site: "noc-a".into(),
            node: node.into(),
            epoch,
            degraded,
        })
    }

    fn promote(node: &str, epoch: u64) -> WitnessRequest {
        WitnessRequest::Promote(PromoteAsk {
            site: "noc-a".into(),
            node: node.into(),
            epoch,
        })
    }

    fn ctx(site: &str, node: &str) -> PeerCtx {
        PeerCtx {
            connection_id: 1,
            identity: crate::identity::NodeIdentity::new("fed", site, node).unwrap(),
            spki: String::new(),
            protocol: crate::wire::alpn::WITNESS_V1,
            role: crate::wire::Role::Partner,
            features: 0,
            remote: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn a_node_may_renew_and_take_only_its_own_sites_lease_as_itself() {
        let dir = tempfile::tempdir().unwrap();
        let book = WitnessBook::open(&dir.path().join("witness.db"), T).unwrap();
        let h = WitnessV1::new(Arc::new(book));
        let body = codec::encode(&renew("primary", 1, false)).unwrap();
        // A node of another site asking for noc-a, and another node of noc-a naming a peer.
        assert_eq!(
            h.answer(&ctx("noc-b", "primary"), &body).await,
            Err(ErrorCode::NotAuthorized)
        );
        assert_eq!(
            h.answer(&ctx("noc-a", "standby"), &body).await,
            Err(ErrorCode::NotAuthorized)
        );
        let ask = codec::encode(&promote("standby", 1)).unwrap();
        assert_eq!(
            h.answer(&ctx("noc-b", "standby"), &ask).await,
            Err(ErrorCode::NotAuthorized)
        );
        assert_eq!(
            h.answer(&ctx("noc-a", "primary"), b"\x07garbage").await,
            Err(ErrorCode::Malformed)
        );
        let granted: WitnessAnswer =
            codec::decode(&h.answer(&ctx("noc-a", "primary"), &body).await.unwrap()).unwrap();
        assert!(matches!(granted, WitnessAnswer::Granted { epoch: 1, .. }));
        assert_eq!(h.book.lease_of("noc-b"), None);
    }

    #[test]
    fn a_restarted_witness_never_grants_a_second_promotion_in_an_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness.db");
        let book = WitnessBook::open(&path, T).unwrap();
        assert!(matches!(
            book.decide(&renew("primary", 1, false)).unwrap(),
            WitnessAnswer::Granted { epoch: 1, .. }
        ));
        std::thread::sleep(std::time::Duration::from_millis(450));
        assert_eq!(
            book.decide(&promote("standby", 1)).unwrap(),
            WitnessAnswer::Promoted { epoch: 2 }
        );
        drop(book);
        assert_eq!(
            stored_lease(&path, "noc-a").unwrap(),
            Some(("standby".into(), 2))
        );
        // Restarted: another node of the site asking at the old epoch is fenced, at the new
        // one it waits for the holder's lease; the old primary is fenced.
        let book = WitnessBook::open(&path, T).unwrap();
        assert!(matches!(
            book.decide(&promote("primary", 1)).unwrap(),
            WitnessAnswer::Refused(WitnessRefusal {
                reason: RefusalReason::Fenced,
                epoch: 2,
                ..
            })
        ));
        assert!(matches!(
            book.decide(&promote("primary", 2)).unwrap(),
            WitnessAnswer::Refused(WitnessRefusal {
                reason: RefusalReason::Held,
                ..
            })
        ));
        assert!(matches!(
            book.decide(&renew("primary", 1, false)).unwrap(),
            WitnessAnswer::Refused(WitnessRefusal {
                reason: RefusalReason::Fenced,
                ..
            })
        ));
        // The promoted node renews at its epoch.
        assert!(matches!(
            book.decide(&renew("standby", 2, true)).unwrap(),
            WitnessAnswer::Granted { epoch: 2, .. }
        ));
        drop(book);
        // Degraded survives a restart too.
        let book = WitnessBook::open(&path, T).unwrap();
        assert_eq!(book.lease_of("noc-a"), Some(("standby".into(), 2, true)));
        std::thread::sleep(std::time::Duration::from_millis(450));
        assert!(matches!(
            book.decide(&promote("primary", 2)).unwrap(),
            WitnessAnswer::Refused(WitnessRefusal {
                reason: RefusalReason::Degraded,
                ..
            })
        ));
    }
}

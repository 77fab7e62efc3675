//! The node's place in its site's log: the head position, the next numbers it will stamp, and
//! its role and epoch.
//!
//! Positions belong to the site: the primary stamps `head + 1` on each event it writes, and a
//! node applying shipped events accepts exactly `head + 1`; the head is the log's last position,
//! so it is recorded in the very transaction that appends the event. The role and epoch live in
//! `meta` (`role`, `epoch`) and change only in the transaction that writes or applies the event
//! causing the change, so a restarted node is in the role and epoch its log says.

use rusqlite::{Connection, OptionalExtension};

use super::{NodeStamp, StoreError};
use crate::model::role::RoleState;

/// What the writer stamps from, copied per request so a refused request leaves it unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SiteLog {
    /// The last position in the log (0: empty).
    pub head: i64,
    /// This node's next origin sequence number.
    pub next_seq: u64,
    /// The next ticket number.
    pub next_number: i64,
    /// Role and epoch.
    pub role: RoleState,
}

pub(crate) fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([key, value])?;
    Ok(())
}

/// Checks the store belongs to `stamp` (site and node), claiming a new store for it as the
/// first primary of the site.
pub(crate) fn claim(conn: &Connection, stamp: &NodeStamp) -> Result<(), StoreError> {
    match (meta(conn, "site")?, meta(conn, "node")?) {
        (Some(site), _) if site != stamp.site => Err(StoreError::Schema(format!(
            "this store belongs to site {site:?}, not {:?}",
            stamp.site
        ))),
        (Some(_), Some(node)) if node != stamp.node => Err(StoreError::Schema(format!(
            "this store belongs to node {node:?} of site {:?}, not {:?}: a node keeps its name (a standby is made from a snapshot with its own name)",
            stamp.site, stamp.node
        ))),
        (Some(_), _) => Ok(()),
        (None, _) => {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let first = RoleState::first_primary();
            for (k, v) in [
                ("site", stamp.site.as_str()),
                ("node", stamp.node.as_str()),
                ("epoch", &first.epoch.to_string()),
                ("role", &first.role_text()),
            ] {
                set_meta(conn, k, v)?;
            }
            conn.execute_batch("COMMIT")?;
            Ok(())
        }
    }
}

/// The stored role and epoch. A store from before roles were kept is its site's primary.
pub(crate) fn load_role(conn: &Connection) -> Result<RoleState, StoreError> {
    let epoch = match meta(conn, "epoch")? {
        Some(e) => e
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("meta.epoch is {e:?}, not a number")))?,
        None => 1,
    };
    match meta(conn, "role")? {
        Some(role) => RoleState::parse(&role, epoch).map_err(StoreError::Corrupt),
        None => Ok(RoleState {
            epoch,
            ..RoleState::first_primary()
        }),
    }
}

/// Records a role and epoch in `meta`, inside the caller's transaction.
pub(crate) fn save_role(conn: &Connection, role: &RoleState) -> Result<(), StoreError> {
    set_meta(conn, "epoch", &role.epoch.to_string())?;
    set_meta(conn, "role", &role.role_text())
}

/// Makes the store a standby of `primary` under the node name `node`: what a snapshot of the
/// primary needs before a standby opens it. Refuses the primary's own name.
pub fn make_standby(conn: &Connection, node: &str, primary: &str) -> Result<(), StoreError> {
    if node == primary {
        return Err(StoreError::Schema(format!(
            "a standby needs its own node name: {node:?} is the primary's"
        )));
    }
    let epoch = load_role(conn)?.epoch;
    let role = RoleState {
        role: crate::model::role::NodeRole::Standby {
            primary: primary.into(),
        },
        epoch,
    };
    conn.execute_batch("BEGIN IMMEDIATE")?;
    set_meta(conn, "node", node)?;
    save_role(conn, &role)?;
    conn.execute_batch("COMMIT")?;
    Ok(())
}

/// What a store (or a snapshot of one) holds of its site's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holds {
    /// The site it belongs to.
    pub site: String,
    /// Its last site position (0: empty).
    pub position: u64,
    /// Its epoch.
    pub epoch: u64,
}

/// Reads site, head position and epoch.
pub fn holds(conn: &Connection) -> Result<Holds, StoreError> {
    let position: i64 =
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
    Ok(Holds {
        site: meta(conn, "site")?.unwrap_or_default(),
        position: position as u64,
        epoch: load_role(conn)?.epoch,
    })
}

impl SiteLog {
    /// Reads head, counters and role from the store.
    pub(crate) fn load(conn: &Connection, stamp: &NodeStamp) -> Result<SiteLog, StoreError> {
        let head = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        let next_number = conn.query_row(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM tickets",
            [],
            |r| r.get(0),
        )?;
        let seq: i64 = conn.query_row(
            "SELECT COALESCE(MAX(origin_seq), 0) + 1 FROM events WHERE origin_site = ?1 AND origin_node = ?2",
            [&stamp.site, &stamp.node],
            |r| r.get(0),
        )?;
        Ok(SiteLog {
            head,
            next_seq: seq as u64,
            next_number,
            role: load_role(conn)?,
        })
    }

    /// Moves to `role`, recording it in the caller's transaction.
    pub(crate) fn set_role(
        &mut self,
        conn: &Connection,
        role: RoleState,
    ) -> Result<(), StoreError> {
        save_role(conn, &role)?;
        self.role = role;
        Ok(())
    }
}

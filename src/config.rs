//! The node config (`DIR/ttx.toml`): typed, defaulted, and validated before any port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::identity::{validate_name, IdentityError};

/// Why a config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What the TOML parser said.
        message: String,
    },
    /// A name is not a valid identity part.
    #[error("invalid config: {0}")]
    Name(#[from] IdentityError),
    /// A value is out of its allowed range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole node config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this node is.
    pub node: NodeSection,
    /// The local operator API.
    #[serde(default)]
    pub api: ApiSection,
    /// The QUIC transport partners and the standby reach.
    #[serde(default)]
    pub transport: TransportSection,
    /// Certificates and trust.
    #[serde(default)]
    pub tls: TlsSection,
    /// Store tuning.
    #[serde(default)]
    pub store: StoreSection,
    /// Limits on what operators may send.
    #[serde(default)]
    pub limits: LimitsSection,
    /// The web console.
    #[serde(default)]
    pub web: crate::web::WebSection,
    /// The hot standby: which primary a standby follows, and when a primary's answers leave.
    #[serde(default)]
    pub replication: ReplicationSection,
}

/// `[replication]`: the hot standby (see `docs/replication.md`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationSection {
    /// On a standby: the primary's QUIC address (`HOST:PORT`) to follow over `ttx-repl/1`.
    /// Left out on a primary.
    pub primary: Option<String>,
    /// When a primary acknowledges an operator's write: `async` (after its own commit),
    /// `sync` (once the standby has it durably) or `sync-visible` (once the standby applied
    /// it). Left out: `sync` when the peer registry authorizes a standby of this site,
    /// otherwise `async`.
    pub mode: Option<crate::replication::Mode>,
    /// What sync modes do while the standby is gone: `degrade` (go on as async, loudly; the
    /// default) or `block` (answers wait, then fail after `block_timeout_ms`).
    pub when_standby_gone: crate::replication::WhenGone,
    /// How long a sync answer waits for the standby before `block` fails it (or `degrade`
    /// gives up on the standby and goes on as async).
    pub block_timeout_ms: u64,
    /// Committed envelopes kept in memory for shipping; a standby further behind is caught up
    /// from the log.
    pub backlog_bytes: usize,
    /// How often the primary tells an idle standby its head and clock, and the standby re-acks.
    pub heartbeat_ms: u64,
    /// On a standby: acknowledge `durable` once a batch is in the receipt spool
    /// (`DIR/ttx.db-spool`, one `fdatasync`) and apply it behind, instead of once it is
    /// applied. Off by default: on one disk the spool's flush queues behind the applier's and
    /// costs CPU for no measured gain (`docs/benchmarks.md`); whatever a spool holds is applied
    /// before a subscription and by a promotion whether this is on or off.
    pub receipt_spool: bool,
    /// Automatic failover: the site (a peer in this site's registry with the `witness`
    /// permission) whose node holds the lease on this site's primary role over
    /// `ttx-witness/1`. Left out: no automatic failover, ever (promotion is `ttx promote`).
    /// With one, the primary takes writes only while it holds the lease.
    pub witness: Option<String>,
    /// Where this node reaches the witness (`HOST:PORT`), when not at the addresses of the
    /// witness's registry record (a node on another network path). Only this address then.
    pub witness_addr: Option<String>,
    /// How long a lease granted by the witness lasts (the witness's own term is what counts:
    /// it answers it with every grant).
    pub lease_term_ms: u64,
    /// The clock drift allowed between the nodes and the witness over one term.
    pub lease_margin_ms: u64,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        Self {
            primary: None,
            mode: None,
            when_standby_gone: crate::replication::WhenGone::Degrade,
            block_timeout_ms: 5_000,
            backlog_bytes: 64 * 1024 * 1024,
            heartbeat_ms: 1_000,
            receipt_spool: false,
            witness: None,
            witness_addr: None,
            lease_term_ms: 2_000,
            lease_margin_ms: 500,
        }
    }
}

/// `[node]`: the node's identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The site (NOC) name, for example `noc-a`.
    pub site: String,
    /// The node name within the site, for example `primary`.
    #[serde(default = "default_node_name")]
    pub node: String,
    /// The federation this node's certificates come from.
    #[serde(default = "default_federation")]
    pub federation: String,
}

fn default_node_name() -> String {
    "primary".into()
}
fn default_federation() -> String {
    "default".into()
}

/// `[api]`: the local JSON API for operators.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Address to bind; port 0 picks a free port (recorded in `run/node.json`).
    pub addr: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Seconds a request may take before it is answered with a timeout.
    pub request_timeout_secs: u64,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Seconds a client has to send a request's headers; also the longest a kept-alive
    /// connection may wait idle for its next request.
    pub header_read_timeout_secs: u64,
    /// Most API connections open at once (kept below the descriptor limit at start).
    pub max_connections: usize,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:0".parse().expect("literal address"),
            max_body_bytes: 16 * 1024 * 1024 + 64 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 10,
            header_read_timeout_secs: 10,
            max_connections: 512,
        }
    }
}

/// `[transport]`: the QUIC endpoint for partners and the standby.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSection {
    /// UDP address to listen on; absent means the node does not listen for peers.
    pub listen: Option<SocketAddr>,
    /// Largest frame accepted, in bytes.
    pub max_frame_bytes: u32,
    /// The `ttx-exchange` versions this node speaks, in its order of preference: offered in
    /// that order when dialing, chosen in that order when dialed. `[2, 1]` by default; `[1]`
    /// turns version 2 (attachments) off, so partners get a note naming each attachment.
    pub exchange_versions: Vec<u16>,
    /// Idle timeout of a connection, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Keep-alive interval, in milliseconds (below the idle timeout).
    pub keep_alive_ms: u64,
    /// Time a peer gets to send a request on a stream it opened, in milliseconds.
    pub stream_timeout_ms: u64,
    /// Time a handshake (TLS + Hello together) may take, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Time a handler may take to answer one request, in milliseconds (answered `timeout`).
    pub handler_timeout_ms: u64,
    /// Most connections from one peer identity at once.
    pub max_connections_per_peer: u32,
    /// Most connections in all (live plus handshaking).
    pub max_connections: u32,
    /// Most connections still handshaking (TLS or Hello) at once; beyond it attempts are
    /// refused before any crypto.
    pub max_handshaking: u32,
    /// Handshakes in progress from which unvalidated sources must first answer a QUIC Retry.
    pub retry_above_handshaking: u32,
    /// Handshakes in progress per source IP before its unvalidated attempts get a Retry (and
    /// twice this, its validated ones are dropped).
    pub max_handshaking_per_source: u32,
    /// Time the TLS part of a handshake may take, in milliseconds (within
    /// `handshake_timeout_ms`).
    pub tls_timeout_ms: u64,
    /// Most concurrent bidirectional streams a peer may open on one connection.
    pub max_streams_per_connection: u32,
}

impl Default for TransportSection {
    fn default() -> Self {
        Self {
            listen: None,
            max_frame_bytes: 16 * 1024 * 1024,
            exchange_versions: vec![2, 1],
            idle_timeout_ms: 30_000,
            keep_alive_ms: 10_000,
            stream_timeout_ms: 10_000,
            handshake_timeout_ms: 5_000,
            handler_timeout_ms: 30_000,
            max_connections_per_peer: 8,
            max_connections: 2_000,
            max_handshaking: 128,
            retry_above_handshaking: 16,
            max_handshaking_per_source: 8,
            tls_timeout_ms: 2_000,
            max_streams_per_connection: 256,
        }
    }
}

/// `[tls]`: certificates, trust anchors, revocation. Relative paths are inside the data dir.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// The node certificate (PEM).
    pub cert: PathBuf,
    /// The node private key (PEM, must be 0600).
    pub key: PathBuf,
    /// The bundle of trusted CA certificates (PEM, several allowed for rotation).
    pub ca_bundle: PathBuf,
    /// CRL files (PEM); every trusted CA needs one once any is configured.
    pub crls: Vec<PathBuf>,
    /// SPKI SHA-256 fingerprints (hex) that are refused whatever their certificate says.
    pub deny_spki: Vec<String>,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            cert: "tls/node.crt".into(),
            key: "tls/node.key".into(),
            ca_bundle: "tls/ca.pem".into(),
            crls: Vec::new(),
            deny_spki: Vec::new(),
        }
    }
}

/// `[store]`: SQLite tuning.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Most writes committed together in one transaction (group commit).
    pub group_commit_max: usize,
    /// Depth of the queue in front of the writer; writers wait when it is full.
    pub write_queue: usize,
    /// Bytes the queued and in-flight writes may hold together; writers wait beyond it.
    pub write_queue_bytes: usize,
    /// Most bytes of requests committed together in one transaction.
    pub group_commit_max_bytes: usize,
    /// Read connections kept open.
    pub read_connections: usize,
    /// `full` (fsync every commit: acknowledged means durable) or `normal`.
    pub synchronous: Synchronous,
}

/// SQLite's `synchronous` setting for the WAL.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync at every commit: an acknowledged write survives power loss.
    Full,
    /// fsync at checkpoints only: an acknowledged write survives a process crash, not power loss.
    Normal,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            group_commit_max: 1024,
            write_queue: 4096,
            write_queue_bytes: 64 * 1024 * 1024,
            group_commit_max_bytes: 16 * 1024 * 1024,
            read_connections: 4,
            synchronous: Synchronous::Full,
        }
    }
}

/// `[limits]`: what an operator may send.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest incident update (note) text, in bytes.
    pub max_note_bytes: usize,
    /// Largest subject, in bytes.
    pub max_subject_bytes: usize,
    /// Largest value of a header or custom field, in bytes.
    pub max_field_bytes: usize,
    /// Most timers pending on one ticket.
    pub max_timers_per_ticket: usize,
    /// Largest attachment (`ttx attach`, or from a partner), in bytes.
    pub max_attachment_bytes: usize,
    /// Most bytes held, per partner, of the attachments it has started sending and not
    /// finished (`ttx-exchange/2`); a chunk over it is refused `TooLarge`. At least
    /// `max_attachment_bytes`; 16 MiB by default.
    pub max_partial_attachment_bytes: usize,
}

/// Worst-case growth of a note's text when it is JSON-escaped in its event's body: a control
/// character becomes `\u00XX`, six bytes for one.
pub const JSON_ESCAPE_FACTOR: usize = 6;

/// Room in a frame for everything of a note's event but its text: the frame header, the
/// shipping envelope (position, ids, site and node names, epoch, times, actor, kind) and the
/// rest of the JSON body. Generous: names are at most 63 bytes and the body adds about 150.
pub const NOTE_EVENT_OVERHEAD_BYTES: usize = 16 * 1024;

impl LimitsSection {
    /// The largest request an attachment the node accepts makes: its bytes as base64 (4 for
    /// every 3) with 64 KiB for the JSON and names around them.
    pub fn largest_attachment_request_bytes(&self) -> usize {
        (self.max_attachment_bytes / 3 + 1)
            .saturating_mul(4)
            .saturating_add(64 * 1024)
    }

    /// The largest frame a note the node accepts can need, as a shipped event.
    pub fn largest_note_event_bytes(&self) -> usize {
        self.max_note_bytes
            .saturating_mul(JSON_ESCAPE_FACTOR)
            .saturating_add(NOTE_EVENT_OVERHEAD_BYTES)
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_note_bytes: 2 * 1024 * 1024,
            max_subject_bytes: 1024,
            max_field_bytes: 64 * 1024,
            max_timers_per_ticket: 100,
            max_attachment_bytes: 8 * 1024 * 1024,
            max_partial_attachment_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Config {
    /// A config for a new node with defaults everywhere else.
    pub fn new(site: &str, node: &str) -> Self {
        Self {
            node: NodeSection {
                site: site.into(),
                node: node.into(),
                federation: default_federation(),
            },
            api: ApiSection::default(),
            transport: TransportSection::default(),
            tls: TlsSection::default(),
            store: StoreSection::default(),
            limits: LimitsSection::default(),
            web: crate::web::WebSection::default(),
            replication: ReplicationSection::default(),
        }
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Checks names and ranges; called before anything is bound or opened.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name("site", &self.node.site)?;
        validate_name("node", &self.node.node)?;
        validate_name("federation", &self.node.federation)?;
        let t = &self.transport;
        let checks = [
            (
                self.api.addr.ip().is_loopback(),
                "api.addr must be a loopback address (127.0.0.1 or ::1): the local API is plain HTTP with bearer tokens; partners and the standby use the QUIC transport",
            ),
            (
                self.api.max_body_bytes >= 1024,
                "api.max_body_bytes must be at least 1024",
            ),
            (
                self.api.request_timeout_secs > 0 && self.api.request_timeout_secs <= 3600,
                "api.request_timeout_secs must be 1 to 3600",
            ),
            (
                self.api.header_read_timeout_secs > 0 && self.api.header_read_timeout_secs <= 3600,
                "api.header_read_timeout_secs must be 1 to 3600",
            ),
            (
                self.api.max_connections > 0,
                "api.max_connections must be positive",
            ),
            (
                self.api.shutdown_grace_secs <= 3600,
                "api.shutdown_grace_secs must be at most 3600",
            ),
            (
                t.max_frame_bytes >= 1024 && t.max_frame_bytes <= crate::wire::frame::FRAME_CEILING,
                "transport.max_frame_bytes must be 1024 to 67108864 (64 MiB)",
            ),
            (
                t.handshake_timeout_ms > 0
                    && t.stream_timeout_ms > 0
                    && t.idle_timeout_ms > 0
                    && t.handler_timeout_ms > 0
                    && t.tls_timeout_ms > 0,
                "transport timeouts (handshake_timeout_ms, tls_timeout_ms, stream_timeout_ms, idle_timeout_ms, handler_timeout_ms) must be positive",
            ),
            (
                t.keep_alive_ms > 0 && t.keep_alive_ms < t.idle_timeout_ms,
                "transport.keep_alive_ms must be positive and below idle_timeout_ms",
            ),
            (
                t.max_connections > 0 && t.max_connections_per_peer > 0,
                "transport connection caps must be positive",
            ),
            (
                t.max_streams_per_connection > 0,
                "transport.max_streams_per_connection must be positive",
            ),
            (
                self.store.group_commit_max > 0 && self.store.write_queue > 0,
                "store.group_commit_max and store.write_queue must be positive",
            ),
            (
                self.store.read_connections > 0 && self.store.read_connections <= 64,
                "store.read_connections must be 1 to 64",
            ),
            (
                self.limits.max_note_bytes > 0
                    && self.limits.max_subject_bytes > 0
                    && self.limits.max_field_bytes > 0,
                "limits must be positive",
            ),
            (
                !t.exchange_versions.is_empty()
                    && t.exchange_versions.len() <= 2
                    && t.exchange_versions.iter().all(|v| matches!(v, 1 | 2))
                    && t.exchange_versions.first() != t.exchange_versions.get(1),
                "transport.exchange_versions must list 1, 2 or both, each once (in the order \
                 preferred): [2, 1] (the default), [1] or [2]",
            ),
            (
                self.limits.max_timers_per_ticket > 0,
                "limits.max_timers_per_ticket must be at least 1 (0 would refuse every timer)",
            ),
            (
                self.replication.block_timeout_ms > 0
                    && self.replication.block_timeout_ms <= 3_600_000,
                "replication.block_timeout_ms must be 1 to 3600000",
            ),
            (
                self.replication.heartbeat_ms >= 10 && self.replication.heartbeat_ms <= 60_000,
                "replication.heartbeat_ms must be 10 to 60000",
            ),
            (
                self.replication.backlog_bytes >= 1024 * 1024,
                "replication.backlog_bytes must be at least 1048576 (1 MiB)",
            ),
            (
                self.replication.primary.as_deref().is_none_or(|a| {
                    a.rsplit_once(':').is_some_and(|(h, p)| {
                        !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)
                    })
                }),
                "replication.primary must be HOST:PORT (the primary's transport.listen address)",
            ),
            (
                self.replication.lease_term_ms >= 300
                    && self.replication.lease_term_ms <= 60_000
                    && self.replication.lease_margin_ms > 0
                    && self.replication.lease_margin_ms * 3 <= self.replication.lease_term_ms,
                "replication.lease_term_ms must be 300 to 60000 and lease_margin_ms 1 to a third \
                 of it",
            ),
            (
                self.replication.witness_addr.as_deref().is_none_or(|a| {
                    a.rsplit_once(':').is_some_and(|(h, p)| {
                        !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)
                    })
                }) && (self.replication.witness_addr.is_none()
                    || self.replication.witness.is_some()),
                "replication.witness_addr must be HOST:PORT, and only beside replication.witness",
            ),
            (
                self.replication.witness.as_deref().is_none_or(|w| {
                    crate::identity::validate_name("site", w).is_ok() && w != self.node.site
                }),
                "replication.witness must name another site (a peer of this site's registry \
                 allowed `witness`)",
            ),
            (
                self.api.max_body_bytes > self.limits.max_note_bytes,
                "api.max_body_bytes must be larger than limits.max_note_bytes: the largest note \
                 the store accepts must fit in a request body with its JSON around it",
            ),
        ];
        for (ok, message) in checks {
            if !ok {
                return Err(ConfigError::Invalid(message.into()));
            }
        }
        self.validate_byte_budgets()?;
        self.web.validate()
    }

    /// Any note the node accepts must fit in one frame once it is an event (JSON-escaped, in
    /// its envelope), and in the writer's queue: otherwise a maximal note is accepted, then
    /// can never be shipped to the standby or a partner, or waits forever for room.
    fn validate_byte_budgets(&self) -> Result<(), ConfigError> {
        let (max_note, frame) = (
            self.limits.max_note_bytes,
            crate::wire::frame::effective_max(self.transport.max_frame_bytes) as usize,
        );
        if self.limits.largest_note_event_bytes() > frame {
            return Err(ConfigError::Invalid(format!(
                "limits.max_note_bytes ({max_note}) does not fit in transport.max_frame_bytes \
                 ({frame}): a note's event, JSON-escaped (up to {JSON_ESCAPE_FACTOR} bytes per \
                 byte) in its envelope ({NOTE_EVENT_OVERHEAD_BYTES} bytes), must fit in one \
                 frame; set max_note_bytes to at most {} or raise max_frame_bytes",
                frame.saturating_sub(NOTE_EVENT_OVERHEAD_BYTES) / JSON_ESCAPE_FACTOR
            )));
        }
        let s = &self.store;
        let largest_request = max_note + 64 * 1024;
        if s.write_queue_bytes < largest_request || s.write_queue_bytes > u32::MAX as usize {
            return Err(ConfigError::Invalid(format!(
                "store.write_queue_bytes ({}) must be at least limits.max_note_bytes + 64 KiB \
                 ({largest_request}), so the largest note fits, and at most {}",
                s.write_queue_bytes,
                u32::MAX
            )));
        }
        let attachment = self.limits.largest_attachment_request_bytes();
        if self.limits.max_attachment_bytes == 0
            || self.api.max_body_bytes < attachment
            || s.write_queue_bytes < self.limits.max_attachment_bytes / 3 * 7 + 64 * 1024
        {
            return Err(ConfigError::Invalid(format!(
                "limits.max_attachment_bytes ({}) must be positive, and as base64 with its JSON \
                 ({attachment} bytes) fit in api.max_body_bytes ({}); the writer holds it as bytes and base64 (7 bytes for \
                 every 3) in store.write_queue_bytes ({})",
                self.limits.max_attachment_bytes, self.api.max_body_bytes, s.write_queue_bytes
            )));
        }
        if self.limits.max_partial_attachment_bytes < self.limits.max_attachment_bytes {
            return Err(ConfigError::Invalid(format!(
                "limits.max_partial_attachment_bytes ({}) must be at least \
                 limits.max_attachment_bytes ({}), or a partner's largest attachment could never \
                 arrive",
                self.limits.max_partial_attachment_bytes, self.limits.max_attachment_bytes
            )));
        }
        if s.group_commit_max_bytes == 0 {
            return Err(ConfigError::Invalid(
                "store.group_commit_max_bytes must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Serializes to TOML (used by `ttx init`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }

    /// Resolves a path from the config against the data dir.
    pub fn resolve(dir: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            dir.join(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_validates() {
        let c = Config::new("noc-a", "primary");
        let back = Config::parse(&c.to_toml(), Path::new("x")).unwrap();
        assert_eq!(c, back);
    }

    #[test]
    fn a_partial_section_takes_defaults_for_the_rest() {
        let c = Config::parse(
            "[node]\nsite='noc-a'\n[api]\naddr='127.0.0.1:8080'\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.api.addr.port(), 8080);
        assert_eq!(c.api.max_body_bytes, ApiSection::default().max_body_bytes);
        let e = Config::parse(
            "[node]\nsite='a'\n[transport]\nhandshake_timeout_ms=0\n",
            Path::new("x"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("timeouts"), "{e}");
        let e = Config::parse(
            "[node]\nsite='a'\n[api]\naddr='0.0.0.0:80'\n",
            Path::new("x"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
    }

    #[test]
    fn a_note_the_node_accepts_fits_in_one_frame() {
        // The old defaults (16 MiB notes, 16 MiB frames) accepted notes that could never ship.
        let mut c = Config::new("noc-a", "primary");
        c.limits.max_note_bytes = c.transport.max_frame_bytes as usize;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("does not fit in transport.max_frame_bytes"),
            "{e}"
        );
        assert!(e.contains("at most 2793472"), "{e}");
        // The defaults hold: the worst note (every byte a control character) as its event's
        // JSON body is within the frame with the envelope's room to spare.
        let c = Config::new("noc-a", "primary");
        c.validate().unwrap();
        let text = "\u{1}".repeat(c.limits.max_note_bytes);
        let body = serde_json::to_vec(&crate::model::event::EventKind::NoteAdded {
            note_id: uuid::Uuid::nil(),
            text,
            shared: false,
            happened_at: Some(i64::MAX),
        })
        .unwrap();
        assert!(body.len() + 1024 <= c.limits.largest_note_event_bytes());
        assert!(c.limits.largest_note_event_bytes() <= c.transport.max_frame_bytes as usize);
    }

    #[test]
    fn the_write_queue_holds_the_largest_note() {
        let mut c = Config::new("noc-a", "primary");
        c.store.write_queue_bytes = c.limits.max_note_bytes;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("store.write_queue_bytes"), "{e}");
        c.store.write_queue_bytes = 64 * 1024 * 1024;
        c.store.group_commit_max_bytes = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("group_commit_max_bytes"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_names_are_refused() {
        let e = Config::parse("[node]\nsite='noc-a'\nbogus=1\n", Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = Config::parse("[node]\nsite='NOC A'\n", Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("invalid site name"), "{e}");
    }
}

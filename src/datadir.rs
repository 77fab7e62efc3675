//! The layout of a node's data directory: one place that names every file in it.
//!
//! ```text
//! DIR/ttx.toml          node config (see config/node.example.toml)
//! DIR/ttx.db            the SQLite store (WAL mode: ttx.db-wal, ttx.db-shm beside it)
//! DIR/ttx.db-spool      a standby's receipt spool, 0600: batches acked durable, applied behind
//! DIR/admin.token       the first admin's bearer token, 0600
//! DIR/node.lock         held (flock) by the one `ttx serve` that owns the store
//! DIR/run/node.json     addresses actually bound by the running node, its pid and start time
//! DIR/tls/node.key      the node's private key, 0600, generated on the node, never leaves it
//! DIR/tls/node.csr      the certificate signing request for a federation admin
//! DIR/tls/node.crt      the node certificate (URI SAN ttx://FEDERATION/SITE/NODE)
//! DIR/tls/ca.pem        the bundle of trusted federation CA certificates (old and new overlap)
//! DIR/tls/crl/*.pem     CRLs, one per trusted CA (every file here is loaded)
//! DIR/tls/deny.txt      keys denied by `ttx pki deny` (one SPKI SHA-256 per line)
//! ```

use std::path::{Path, PathBuf};

/// Paths inside one node's data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Wraps a directory path; nothing is read or created.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The node config file.
    pub fn config(&self) -> PathBuf {
        self.root.join("ttx.toml")
    }
    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("ttx.db")
    }
    /// The first admin's token (0600).
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin.token")
    }
    /// The single-writer lock file.
    pub fn lock(&self) -> PathBuf {
        self.root.join("node.lock")
    }
    /// Runtime directory (bound addresses of the running node).
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    /// Addresses actually bound by the running node (JSON).
    pub fn runtime_info(&self) -> PathBuf {
        self.run_dir().join("node.json")
    }
    /// TLS material directory.
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    /// The node's private key (0600).
    pub fn node_key(&self) -> PathBuf {
        self.tls_dir().join("node.key")
    }
    /// The node's certificate signing request.
    pub fn node_csr(&self) -> PathBuf {
        self.tls_dir().join("node.csr")
    }
    /// The node's certificate.
    pub fn node_cert(&self) -> PathBuf {
        self.tls_dir().join("node.crt")
    }
    /// The trusted CA bundle.
    pub fn ca_bundle(&self) -> PathBuf {
        self.tls_dir().join("ca.pem")
    }
    /// The directory of CRLs: every `*.pem` in it is loaded (`ttx pki crl install` writes here).
    pub fn crl_dir(&self) -> PathBuf {
        self.tls_dir().join("crl")
    }
    /// The deny list kept by `ttx pki deny` / `undeny`: one SPKI SHA-256 per line.
    pub fn deny_list(&self) -> PathBuf {
        self.tls_dir().join("deny.txt")
    }
}

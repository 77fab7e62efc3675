//! `[web]`: the console's own listener, its TLS or reverse-proxy setting, sessions and limits.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `[web]`: the web console. Loopback by default; any other address needs TLS files or an
/// explicit `behind_proxy = true`, else the node refuses to start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebSection {
    /// Serve the console at all.
    pub enabled: bool,
    /// Address to bind; port 0 picks a free port (recorded in `run/node.json`).
    pub addr: SocketAddr,
    /// TLS certificate chain (PEM) for HTTPS; relative paths are inside the data dir.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM, must be 0600).
    pub tls_key: Option<PathBuf>,
    /// The console sits behind a TLS-terminating reverse proxy: a non-loopback address is
    /// allowed without TLS files, and cookies are marked `Secure` (the browser speaks HTTPS).
    pub behind_proxy: bool,
    /// Seconds a login session lasts.
    pub session_ttl_secs: u64,
    /// Most live sessions; a login beyond them is refused until some expire.
    pub max_sessions: usize,
    /// Failed logins allowed per operator name and per client address within a minute.
    pub login_failures_per_minute: u32,
    /// Most open live-update streams (server-sent events) at once.
    pub max_live_streams: usize,
    /// Largest form body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Seconds a request may take.
    pub request_timeout_secs: u64,
}

impl Default for WebSection {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: "127.0.0.1:0".parse().expect("literal address"),
            tls_cert: None,
            tls_key: None,
            behind_proxy: false,
            session_ttl_secs: 12 * 3600,
            max_sessions: 10_000,
            login_failures_per_minute: 5,
            max_live_streams: 256,
            max_body_bytes: 2 * 1024 * 1024,
            request_timeout_secs: 30,
        }
    }
}

impl WebSection {
    /// Whether the console speaks HTTPS itself.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// Whether the browser reaches the console over HTTPS (cookies get `Secure`).
    pub fn secure_cookies(&self) -> bool {
        self.tls() || self.behind_proxy
    }

    /// Checks the section; part of [`crate::config::Config::validate`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return invalid("web.tls_cert and web.tls_key go together: give both or neither");
        }
        if self.enabled && !self.addr.ip().is_loopback() && !self.tls() && !self.behind_proxy {
            return invalid(
                "web.addr is not a loopback address: give web.tls_cert and web.tls_key, or set \
                 web.behind_proxy = true if a TLS-terminating reverse proxy fronts the console",
            );
        }
        if self.session_ttl_secs < 60 || self.session_ttl_secs > 30 * 24 * 3600 {
            return invalid("web.session_ttl_secs must be 60 to 2592000 (30 days)");
        }
        if self.max_sessions == 0 || self.max_live_streams == 0 {
            return invalid("web.max_sessions and web.max_live_streams must be positive");
        }
        if self.login_failures_per_minute == 0 {
            return invalid("web.login_failures_per_minute must be positive");
        }
        if self.max_body_bytes < 1024 {
            return invalid("web.max_body_bytes must be at least 1024");
        }
        if self.request_timeout_secs == 0 || self.request_timeout_secs > 3600 {
            return invalid("web.request_timeout_secs must be 1 to 3600");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn parse(web: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("[node]\nsite='a'\n[web]\n{web}\n"), Path::new("x"))
    }

    #[test]
    fn loopback_is_the_default_and_other_addresses_need_tls_or_a_proxy() {
        let c = parse("").unwrap();
        assert!(c.web.addr.ip().is_loopback() && c.web.enabled);
        let e = parse("addr='0.0.0.0:8443'").unwrap_err();
        assert!(e.to_string().contains("web.tls_cert"), "{e}");
        let c = parse("addr='0.0.0.0:8443'\nbehind_proxy=true").unwrap();
        assert!(c.web.secure_cookies());
        let c = parse("addr='0.0.0.0:8443'\ntls_cert='w.crt'\ntls_key='w.key'").unwrap();
        assert!(c.web.tls());
        let e = parse("tls_cert='w.crt'").unwrap_err();
        assert!(e.to_string().contains("go together"), "{e}");
        let e = parse("session_ttl_secs=1").unwrap_err();
        assert!(e.to_string().contains("session_ttl_secs"), "{e}");
    }
}

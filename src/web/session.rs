//! Login sessions and the login rate limiter, both in memory and bounded.
//!
//! A session id is 32 random bytes; the map keys on its SHA-256, so a memory dump does not hand
//! out live cookies. Each session carries its own CSRF token. The operator's role is not cached
//! in the session: every request reads it, so removing an operator ends its sessions at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::auth::token_sha256;

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system random source works");
    hex::encode(bytes)
}

/// One logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The operator.
    pub operator: String,
    /// The token every form of this session must carry.
    pub csrf: String,
    /// When it ends.
    pub expires: Instant,
}

/// The live sessions.
pub struct Sessions {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// An empty table: sessions last `ttl`, at most `max` at once.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Opens a session for `operator`; returns the cookie value, or `None` when the table is
    /// full of live sessions.
    pub fn open(&self, operator: &str) -> Option<String> {
        let id = random_token();
        let now = Instant::now();
        let mut map = self.map.lock().ok()?;
        if map.len() >= self.max {
            map.retain(|_, s| s.expires > now);
            if map.len() >= self.max {
                return None;
            }
        }
        map.insert(
            token_sha256(&id),
            Session {
                operator: operator.to_string(),
                csrf: random_token(),
                expires: now + self.ttl,
            },
        );
        Some(id)
    }

    /// The session behind a cookie value, if it is live.
    pub fn get(&self, id: &str) -> Option<Session> {
        let key = token_sha256(id);
        let mut map = self.map.lock().ok()?;
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session (logout).
    pub fn close(&self, id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&token_sha256(id));
        }
    }
}

/// Failed logins per operator name and per client address, in one-minute windows.
pub struct LoginLimiter {
    per_minute: u32,
    window: Duration,
    map: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Most names and addresses the limiter remembers (older windows are dropped first).
const LIMITER_ENTRIES: usize = 100_000;

impl LoginLimiter {
    /// A limiter allowing `per_minute` failures per name and per address.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            window: Duration::from_secs(60),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn keys(name: &str, ip: IpAddr) -> [String; 2] {
        [format!("name:{name}"), format!("ip:{ip}")]
    }

    /// Whether a login for `name` from `ip` may be tried now; `Err` holds the seconds to wait.
    pub fn check(&self, name: &str, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(map) = self.map.lock() else {
            return Ok(());
        };
        for key in Self::keys(name, ip) {
            if let Some((start, failures)) = map.get(&key) {
                let end = *start + self.window;
                if end > now && *failures >= self.per_minute {
                    return Err((end - now).as_secs().max(1));
                }
            }
        }
        Ok(())
    }

    /// Records a failed login.
    pub fn failed(&self, name: &str, ip: IpAddr) {
        let now = Instant::now();
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= LIMITER_ENTRIES {
            let window = self.window;
            map.retain(|_, (start, _)| *start + window > now);
        }
        for key in Self::keys(name, ip) {
            let entry = map.entry(key).or_insert((now, 0));
            if entry.0 + self.window <= now {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
    }

    /// Forgets the name's failures after a successful login.
    pub fn succeeded(&self, name: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&format!("name:{name}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_expire_close_and_are_bounded() {
        let s = Sessions::new(Duration::from_secs(60), 2);
        let a = s.open("alice").unwrap();
        let got = s.get(&a).unwrap();
        assert_eq!(got.operator, "alice");
        assert_eq!(got.csrf.len(), 64);
        assert!(s.get("forged").is_none());
        let b = s.open("bob").unwrap();
        assert!(
            s.open("carol").is_none(),
            "the table is full of live sessions"
        );
        s.close(&b);
        assert!(s.get(&b).is_none());
        assert!(s.open("carol").is_some());
        let short = Sessions::new(Duration::from_millis(1), 2);
        let c = short.open("alice").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.get(&c).is_none(), "an expired session is gone");
    }

    #[test]
    fn the_limiter_stops_a_name_and_an_address_after_the_allowed_failures() {
        let l = LoginLimiter::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(l.check("alice", ip).is_ok());
        l.failed("alice", ip);
        l.failed("alice", ip);
        assert!(l.check("alice", ip).is_err());
        assert!(
            l.check("alice", other).is_err(),
            "per name, whatever the address"
        );
        assert!(
            l.check("bob", ip).is_err(),
            "per address, whatever the name"
        );
        assert!(l.check("bob", other).is_ok());
        l.succeeded("alice");
        assert!(l.check("alice", other).is_ok());
    }
}

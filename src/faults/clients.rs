//! The campaign's clients: threads writing notes through a site's API with an idempotency key
//! per note, retrying the same key until a success answer (or giving up), and logging what
//! they learned about each write. They follow their site's current primary (the nemesis moves
//! it on a failover).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::checker::Write;
use super::schedule::Rng;
use crate::bench::http::KeepAlive;

/// How long a client keeps retrying one write before it records it as unknown.
pub const GIVE_UP: Duration = Duration::from_secs(30);

/// Where a site's writes go: its current primary's API (changed on a failover).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The API address.
    pub api: Arc<Mutex<SocketAddr>>,
    /// The admin token.
    pub token: String,
}

impl Endpoint {
    /// An endpoint at `api`.
    pub fn new(api: SocketAddr, token: String) -> Endpoint {
        Endpoint {
            api: Arc::new(Mutex::new(api)),
            token,
        }
    }

    /// The current address.
    pub fn addr(&self) -> SocketAddr {
        *self.api.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the endpoint (a failover).
    pub fn move_to(&self, api: SocketAddr) {
        *self.api.lock().unwrap_or_else(|e| e.into_inner()) = api;
    }
}

/// A ticket a client writes on, and where its notes must end up.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// Its number on the client's site.
    pub number: i64,
    /// Notes on it are shared (it is referred, and they cross to the partner).
    pub shared: bool,
    /// The node labels each note must be on (its own site first).
    pub on: Vec<String>,
}

/// One client: its name (the prefix of its notes' texts), its site, its tickets.
#[derive(Debug, Clone)]
pub struct Client {
    /// `c1`, `t1`…: every note text is `NAME-I`, unique in the campaign.
    pub name: String,
    /// Where it writes.
    pub endpoint: Endpoint,
    /// What it writes on.
    pub tickets: Vec<Ticket>,
    /// The seed of its choices.
    pub seed: u64,
    /// The pause between two writes (the campaign checks correctness, not speed: a client
    /// faster than the exchange drains would only grow the partners' backlog).
    pub pace: Duration,
}

/// What a client did, after it stopped.
#[derive(Debug, Default)]
pub struct ClientLog {
    /// Every write it made, with what it learned.
    pub writes: Vec<Write>,
    /// Answers that were refusals, not failures (a bug: the campaign writes only valid notes).
    pub refused: Vec<String>,
    /// Attempts that failed and were retried.
    pub retries: u64,
}

/// The answer classes a write attempt can get.
enum Attempt {
    Acked,
    Retry,
    Refused(String),
}

fn attempt(endpoint: &Endpoint, number: i64, body: &[u8], key: &str) -> Attempt {
    let Ok(mut conn) = KeepAlive::connect(endpoint.addr(), &endpoint.token) else {
        return Attempt::Retry;
    };
    let path = format!("/v1/tickets/{number}/notes");
    match conn.post_json_keyed(&path, body, Some(key)) {
        Ok(a) if (200..300).contains(&a.status) => Attempt::Acked,
        // Not the primary (yet), the standby not there in block mode, shutting down, a timeout.
        Ok(a) if matches!(a.status, 409 | 500 | 502 | 503 | 504) => Attempt::Retry,
        Ok(a) => Attempt::Refused(format!(
            "{key}: {} {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        )),
        Err(_) => Attempt::Retry,
    }
}

impl Client {
    /// Writes until `stop` is set (finishing the write in hand), then returns its log.
    pub fn run(self, stop: Arc<AtomicBool>) -> ClientLog {
        let mut log = ClientLog::default();
        let mut rng = Rng::new(self.seed);
        for i in 1.. {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let ticket = &self.tickets[rng.below(self.tickets.len())];
            let text = format!("{}-{i}", self.name);
            let body = serde_json::json!({"text": text, "shared": ticket.shared}).to_string();
            let deadline = Instant::now() + GIVE_UP;
            let acked = loop {
                match attempt(&self.endpoint, ticket.number, body.as_bytes(), &text) {
                    Attempt::Acked => break true,
                    Attempt::Refused(why) => {
                        log.refused.push(why);
                        break false;
                    }
                    Attempt::Retry if Instant::now() < deadline => {
                        log.retries += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Attempt::Retry => break false,
                }
            };
            log.writes.push(Write {
                text,
                on: ticket.on.clone(),
                acked,
            });
            std::thread::sleep(self.pace);
        }
        log
    }
}

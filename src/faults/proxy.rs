//! A real UDP proxy for network faults between two nodes on loopback: it forwards datagrams
//! both ways and, on command, drops a share of them, delays them, or cuts the link entirely.
//!
//! Each client address seen on the front socket gets its own upstream socket, so the node
//! behind the proxy sees one source per client, as it would across a network. Faults are drawn
//! from a seeded generator, so a run with the same seed and the same traffic drops the same
//! packets. Everything is bounded: the number of clients, the datagram size, the packets held in
//! delay, and idle clients expire.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// What the link does to packets, both directions alike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Every packet is dropped: a partition.
    pub cut: bool,
    /// The share of packets dropped, 0.0 to 1.0.
    pub drop: f64,
    /// Added one-way delay.
    pub delay: Duration,
    /// Up to this much more delay, drawn per packet (reorders packets).
    pub jitter: Duration,
}

impl Faults {
    /// A clean link.
    pub const NONE: Faults = Faults {
        cut: false,
        drop: 0.0,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
    };
    /// No packet gets through.
    pub const CUT: Faults = Faults {
        cut: true,
        ..Faults::NONE
    };
}

/// What the proxy has seen, for test assertions and bench reports.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams forwarded.
    pub forwarded: AtomicU64,
    /// Datagrams dropped by the faults.
    pub dropped: AtomicU64,
    /// Datagrams dropped because the proxy was at a limit (clients, packets in delay).
    pub refused: AtomicU64,
}

/// The proxy's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Distinct client addresses at once.
    pub max_clients: usize,
    /// Datagrams held in delay at once.
    pub max_delayed: usize,
    /// A client silent this long is forgotten (its upstream socket closed).
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_clients: 1024,
            max_delayed: 65_536,
            idle: Duration::from_secs(60),
        }
    }
}

/// Largest UDP payload forwarded (QUIC never sends more than this on loopback).
const MAX_DATAGRAM: usize = 65_535;

struct Shared {
    faults: Mutex<Faults>,
    rng: Mutex<u64>,
    counters: Counters,
    delayed: Arc<Semaphore>,
}

impl Shared {
    /// Decides a datagram's fate: `None` to drop it, or the delay to send it after.
    fn fate(&self) -> Option<Duration> {
        let f = *self.faults.lock().expect("faults lock");
        if f.cut {
            return None;
        }
        let (r1, r2) = {
            let mut s = self.rng.lock().expect("rng lock");
            (next_unit(&mut s), next_unit(&mut s))
        };
        if r1 < f.drop {
            return None;
        }
        Some(f.delay + f.jitter.mul_f64(r2))
    }
}

/// A draw in [0, 1) from a xorshift64* generator (deterministic per seed; not for secrets).
pub(crate) fn next_unit(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

/// A running proxy: clients send to [`UdpProxy::addr`], the proxy forwards to the target.
pub struct UdpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl UdpProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `target`, with faults drawn from `seed`.
    pub async fn start(target: SocketAddr, seed: u64, limits: Limits) -> std::io::Result<UdpProxy> {
        let front = Arc::new(UdpSocket::bind(("127.0.0.1", 0)).await?);
        let addr = front.local_addr()?;
        let shared = Arc::new(Shared {
            faults: Mutex::new(Faults::NONE),
            rng: Mutex::new(seed | 1),
            counters: Counters::default(),
            delayed: Arc::new(Semaphore::new(limits.max_delayed)),
        });
        let task = tokio::spawn(front_loop(front, target, shared.clone(), limits));
        Ok(UdpProxy { addr, shared, task })
    }

    /// Where clients send.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes what the link does from now on (packets already in delay keep theirs).
    pub fn set(&self, faults: Faults) {
        *self.shared.faults.lock().expect("faults lock") = faults;
    }

    /// What the proxy has seen so far.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Client {
    upstream: Arc<UdpSocket>,
    task: JoinHandle<()>,
    last: tokio::time::Instant,
}

async fn front_loop(
    front: Arc<UdpSocket>,
    target: SocketAddr,
    shared: Arc<Shared>,
    limits: Limits,
) {
    let mut clients: HashMap<SocketAddr, Client> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut sweep = tokio::time::interval(limits.idle.max(Duration::from_millis(10)));
    loop {
        let (len, from) = tokio::select! {
            got = front.recv_from(&mut buf) => match got {
                Ok(got) => got,
                Err(_) => {
                    // A transient socket error (e.g. an ICMP report); do not spin on it.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            },
            _ = sweep.tick() => {
                let now = tokio::time::Instant::now();
                clients.retain(|_, c| {
                    let keep = now.duration_since(c.last) < limits.idle;
                    if !keep {
                        c.task.abort();
                    }
                    keep
                });
                continue;
            }
        };
        if !clients.contains_key(&from) {
            if clients.len() >= limits.max_clients {
                shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Ok(upstream) = UdpSocket::bind(("127.0.0.1", 0)).await else {
                shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let upstream = Arc::new(upstream);
            // Replies from the target go back to this client through the front socket.
            let task = tokio::spawn(back_loop(
                upstream.clone(),
                front.clone(),
                from,
                shared.clone(),
            ));
            clients.insert(
                from,
                Client {
                    upstream,
                    task,
                    last: tokio::time::Instant::now(),
                },
            );
        }
        let client = clients.get_mut(&from).expect("inserted above");
        client.last = tokio::time::Instant::now();
        forward(&shared, client.upstream.clone(), target, &buf[..len]).await;
    }
}

async fn back_loop(
    upstream: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((len, _)) = upstream.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        forward(&shared, front.clone(), client, &buf[..len]).await;
    }
}

/// Sends one datagram through the faults: dropped, sent now, or sent after its delay.
async fn forward(shared: &Arc<Shared>, socket: Arc<UdpSocket>, to: SocketAddr, data: &[u8]) {
    let Some(delay) = shared.fate() else {
        shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if delay.is_zero() {
        if socket.send_to(data, to).await.is_ok() {
            shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    let Ok(permit) = shared.delayed.clone().try_acquire_owned() else {
        shared.counters.refused.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let data = data.to_vec();
    let shared = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if socket.send_to(&data, to).await.is_ok() {
            shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
        }
        drop(permit);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> (SocketAddr, JoinHandle<()>) {
        let s = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = s.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let _ = s.send_to(&buf[..n], from).await;
            }
        });
        (addr, task)
    }

    /// Sends `n` numbered datagrams and collects the echoes that come back within `wait`.
    async fn round_trips(proxy: &UdpProxy, n: u32, wait: Duration) -> Vec<u32> {
        let c = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        for i in 0..n {
            c.send_to(&i.to_be_bytes(), proxy.addr()).await.unwrap();
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Ok((len, _))) = tokio::time::timeout_at(deadline, c.recv_from(&mut buf)).await
        {
            assert_eq!(len, 4);
            got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
        }
        got
    }

    #[tokio::test]
    async fn a_clean_link_forwards_both_ways() {
        let (target, _srv) = echo_server().await;
        let p = UdpProxy::start(target, 7, Limits::default()).await.unwrap();
        let mut got = round_trips(&p, 50, Duration::from_millis(500)).await;
        got.sort();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        assert_eq!(p.counters().forwarded.load(Ordering::Relaxed), 100);
    }

    #[tokio::test]
    async fn a_cut_link_forwards_nothing_and_heals() {
        let (target, _srv) = echo_server().await;
        let p = UdpProxy::start(target, 7, Limits::default()).await.unwrap();
        p.set(Faults::CUT);
        assert!(round_trips(&p, 20, Duration::from_millis(200))
            .await
            .is_empty());
        assert_eq!(p.counters().dropped.load(Ordering::Relaxed), 20);
        p.set(Faults::NONE);
        assert_eq!(
            round_trips(&p, 5, Duration::from_millis(500)).await.len(),
            5
        );
    }

    #[tokio::test]
    async fn a_lossy_link_drops_about_its_share_deterministically() {
        // One way only, so the draws happen in the order the datagrams were sent.
        let sink = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        let target = sink.local_addr().unwrap();
        let mut counts = Vec::new();
        for _ in 0..2 {
            let p = UdpProxy::start(target, 42, Limits::default())
                .await
                .unwrap();
            p.set(Faults {
                drop: 0.3,
                ..Faults::NONE
            });
            let c = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
            for i in 0u32..400 {
                c.send_to(&i.to_be_bytes(), p.addr()).await.unwrap();
                // Let the proxy read it: a burst would overflow its socket's receive buffer.
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while p.counters().dropped.load(Ordering::Relaxed)
                + p.counters().forwarded.load(Ordering::Relaxed)
                < 400
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let dropped = p.counters().dropped.load(Ordering::Relaxed);
            let forwarded = p.counters().forwarded.load(Ordering::Relaxed);
            assert_eq!(dropped + forwarded, 400);
            counts.push(dropped);
        }
        // The same count for the same seed, near 30% of 400.
        assert_eq!(counts[0], counts[1]);
        assert!((80..160).contains(&counts[0]), "{counts:?}");
    }

    #[tokio::test]
    async fn delayed_packets_arrive_later_and_the_delay_queue_is_bounded() {
        let (target, _srv) = echo_server().await;
        let limits = Limits {
            max_delayed: 10,
            ..Limits::default()
        };
        let p = UdpProxy::start(target, 1, limits).await.unwrap();
        p.set(Faults {
            delay: Duration::from_millis(200),
            ..Faults::NONE
        });
        // Nothing within the first 100 ms (the echo needs two delayed hops).
        let early = round_trips(&p, 1, Duration::from_millis(100)).await;
        assert!(early.is_empty());
        // Past the bound, packets are refused, not queued.
        let got = round_trips(&p, 30, Duration::from_secs(2)).await;
        assert!(got.len() <= 10, "{}", got.len());
        assert!(p.counters().refused.load(Ordering::Relaxed) >= 20);
    }

    #[tokio::test]
    async fn clients_are_bounded() {
        let (target, _srv) = echo_server().await;
        let limits = Limits {
            max_clients: 1,
            ..Limits::default()
        };
        let p = UdpProxy::start(target, 1, limits).await.unwrap();
        assert_eq!(
            round_trips(&p, 1, Duration::from_millis(500)).await.len(),
            1
        );
        assert!(round_trips(&p, 1, Duration::from_millis(200))
            .await
            .is_empty());
        assert_eq!(p.counters().refused.load(Ordering::Relaxed), 1);
    }
}

//! Network faults between real nodes: a real UDP proxy (`ttx::faults::UdpProxy`) sits between two
//! `ttx serve` processes speaking QUIC with real certificates, and cuts, drops or delays their
//! packets.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ttx::faults::{Faults, Limits, UdpProxy};

use crate::common::TestNode;
use crate::federation::{add_peer, Ca};

/// Short transport timeouts, so a cut link is noticed within seconds.
fn quick_timeouts(node: &mut TestNode) {
    node.stop();
    node.configure(|c| {
        c.transport.handshake_timeout_ms = 3_000;
        c.transport.stream_timeout_ms = 3_000;
        c.transport.idle_timeout_ms = 6_000;
        c.transport.keep_alive_ms = 1_000;
    });
    node.start();
}

#[test]
fn a_cut_link_fails_pings_and_a_healed_or_lossy_one_carries_them() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca = Ca::new("eu");
    let a = ca.node("eu", "noc-a");
    let mut b = ca.node("eu", "telco-b");
    quick_timeouts(&mut b);
    let proxy = rt
        .block_on(UdpProxy::start(a.listen_addr(), 1, Limits::default()))
        .unwrap();
    // B reaches A only through the proxy.
    let via = proxy.addr().to_string();
    b.cli(&["peer", "add", "noc-a", "--addr", &via]).ok();
    add_peer(&a, &b, "telco-b", &[]);

    b.cli(&["peer", "ping", "noc-a"]).ok();
    let through = proxy.counters().forwarded.load(Ordering::Relaxed);
    assert!(through > 0, "the ping went through the proxy");

    proxy.set(Faults::CUT);
    let cut = b.cli(&["peer", "ping", "noc-a"]);
    assert_ne!(cut.code, 0, "a ping across a cut link must fail: {cut:?}");
    assert!(
        cut.stderr.contains("noc-a"),
        "the failure names the peer: {cut:?}"
    );
    assert!(proxy.counters().dropped.load(Ordering::Relaxed) > 0);

    proxy.set(Faults::NONE);
    b.cli(&["peer", "ping", "noc-a"]).ok();

    // A tenth of the packets lost and 20 ms each way: QUIC recovers, the ping succeeds.
    proxy.set(Faults {
        drop: 0.1,
        delay: Duration::from_millis(20),
        ..Faults::NONE
    });
    for _ in 0..3 {
        b.cli(&["peer", "ping", "noc-a"]).ok();
    }
}

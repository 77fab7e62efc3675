//! Two real nodes in one process (real stores, certificates from a real CA, QUIC on loopback).

use std::path::Path;

use crate::config::Config;
use crate::datadir::DataDir;
use crate::identity::NodeIdentity;
use crate::model::peer::PeerOp;
use crate::node::{init_data_dir, RunningNode};
use crate::store::{WriteOp, WriteRequest};

async fn node(root: &Path, ca: &Path, site: &str) -> RunningNode {
    let dir = DataDir::new(root.join(site));
    let mut config = Config::new(site, "primary");
    config.node.federation = "eu".into();
    config.transport.listen = Some("127.0.0.1:0".parse().unwrap());
    let id = NodeIdentity::new("eu", site, "primary").unwrap();
    tokio::task::block_in_place(|| {
        init_data_dir(&dir, &config).unwrap();
        crate::pki::issue(ca, &id, &dir, 30).unwrap();
    });
    RunningNode::start(dir.root()).await.unwrap()
}

async fn add_peer(n: &RunningNode, site: &str, other: &RunningNode) {
    let addr = other.bound.listen_addr.unwrap().to_string();
    let op = PeerOp::Add {
        site: site.into(),
        addrs: Some(vec![addr]),
        pins: None,
        allow: None,
    };
    let req = WriteRequest {
        actor: "admin".into(),
        idempotency: None,
        op: WriteOp::Peer(op),
    };
    n.store.writer.write(req).await.unwrap();
}

async fn write(n: &RunningNode, op: PeerOp) {
    let req = WriteRequest {
        actor: "admin".into(),
        idempotency: None,
        op: WriteOp::Peer(op),
    };
    n.store.writer.write(req).await.unwrap();
}

/// Waits (bounded) until `b` holds `want` connections.
async fn wait_connections(f: &crate::federation::Federation, want: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while f.endpoint().peers().len() != want {
        assert!(
            std::time::Instant::now() < deadline,
            "{} connections, expected {want}",
            f.endpoint().peers().len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Nodes `noc-a` and `telco-b` under `tmp`, with certificates from one CA, each the other's
/// registered peer.
pub(super) async fn pair(tmp: &Path) -> (RunningNode, RunningNode) {
    let ca = tmp.join("ca");
    tokio::task::block_in_place(|| crate::pki::init_ca("eu", &ca, 365).unwrap());
    let a = node(tmp, &ca, "noc-a").await;
    let b = node(tmp, &ca, "telco-b").await;
    add_peer(&a, "telco-b", &b).await;
    add_peer(&b, "noc-a", &a).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_whose_certificate_expired_are_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = pair(tmp.path()).await;
    let (fa, fb) = (a.federation.get().unwrap(), b.federation.get().unwrap());
    fa.ping("telco-b").await.unwrap();
    assert_eq!(fb.status().peers_connected, 1);
    // Nothing has expired now; at a time past every certificate's notAfter, A's has.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(fb.endpoint().close_expired(now), 0);
    assert_eq!(fb.endpoint().close_expired(now + 31 * 86_400), 1);
    wait_connections(&fb, 0).await;
    a.stop().await;
    b.stop().await;
}

/// `peer deny` and `peer remove` close every connection of the peer (four here, both
/// directions), not just the first one found, and leave other peers' connections alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_and_remove_close_every_connection_of_the_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    crate::pki::init_ca("eu", &ca, 365).unwrap();
    let a = node(tmp.path(), &ca, "noc-a").await;
    let b = node(tmp.path(), &ca, "telco-b").await;
    let c = node(tmp.path(), &ca, "telco-c").await;
    for (n, site, other) in [
        (&a, "telco-b", &b),
        (&b, "noc-a", &a),
        (&b, "telco-c", &c),
        (&c, "telco-b", &b),
    ] {
        add_peer(n, site, other).await;
    }
    let fa = a.federation.get().unwrap();
    let fb = b.federation.get().unwrap();
    let fc = c.federation.get().unwrap();
    let b_addr = b.bound.listen_addr.unwrap();
    let mut a_peers = Vec::new();
    for _ in 0..4 {
        let p = fa
            .endpoint()
            .connect(b_addr, "telco-b", crate::wire::alpn::EXCHANGE)
            .await
            .unwrap();
        a_peers.push(p);
    }
    let from_c = fc
        .endpoint()
        .connect(b_addr, "telco-b", crate::wire::alpn::EXCHANGE)
        .await
        .unwrap();
    wait_connections(&fb, 5).await;
    write(
        &b,
        PeerOp::Deny {
            site: "noc-a".into(),
        },
    )
    .await;
    wait_connections(&fb, 1).await;
    for p in &a_peers {
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), p.closed())
            .await
            .expect("a denied peer's connection stayed open");
        assert!(e.to_string().contains("denied"), "{e}");
    }
    from_c.ping().await.expect("another peer is left alone");

    // Remove closes all of a peer's connections the same way, with its own code.
    let mut c_peers = vec![from_c];
    for _ in 0..2 {
        let p = fc
            .endpoint()
            .connect(b_addr, "telco-b", crate::wire::alpn::EXCHANGE)
            .await
            .unwrap();
        c_peers.push(p);
    }
    wait_connections(&fb, 3).await;
    let remove = PeerOp::Remove {
        site: "telco-c".into(),
    };
    write(&b, remove).await;
    wait_connections(&fb, 0).await;
    for p in &c_peers {
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), p.closed())
            .await
            .expect("a removed peer's connection stayed open");
        assert!(e.to_string().contains("removed"), "{e}");
    }
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

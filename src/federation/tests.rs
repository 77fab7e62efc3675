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
        addrs: vec![addr],
        pins: vec![],
        exchange: true,
        standby: false,
    };
    let req = WriteRequest {
        actor: "admin".into(),
        idempotency: None,
        op: WriteOp::Peer(op),
    };
    n.store.writer.write(req).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_whose_certificate_expired_are_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    crate::pki::init_ca("eu", &ca, 365).unwrap();
    let a = node(tmp.path(), &ca, "noc-a").await;
    let b = node(tmp.path(), &ca, "telco-b").await;
    add_peer(&a, "telco-b", &b).await;
    add_peer(&b, "noc-a", &a).await;
    let (fa, fb) = (a.federation.clone().unwrap(), b.federation.clone().unwrap());
    fa.ping("telco-b").await.unwrap();
    assert_eq!(fb.status().peers_connected, 1);
    // Nothing has expired now; at a time past every certificate's notAfter, A's has.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(fb.close_expired_peers(now), 0);
    assert_eq!(fb.close_expired_peers(now + 31 * 86_400), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fb.status().peers_connected > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the connection stayed up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;
}

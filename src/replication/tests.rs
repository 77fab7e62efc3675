//! The `ttx-repl/1` handler over real QUIC with real certificates and a real store: who is
//! refused (another site's node, a partner, a node of this site without the standby
//! permission, a Partner-role dial), and a corrupt or truncated frame from the standby stops the
//! stream with `malformed` while a new subscription from its head resumes cleanly; what a
//! rejoining node asks (the events at positions, its tail queued for review once by id) and
//! what a node that is no longer the primary answers it.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::primary::Primary;
use super::serve::ReplV1;
use crate::config::{ReplicationSection, TransportSection};
use crate::net::testing::{TestCa, TestNode};
use crate::net::{
    ConnectOptions, Endpoint, EndpointOptions, NetError, Peer, Permission, Permissions,
    ProtocolLimits, Router, StaticPolicy, TrustConfig,
};
use crate::store::{Store, WriteOp};
use crate::wire::alpn::REPL_V1;
use crate::wire::repl::{Subscribe, Subscribed, ToStandby};
use crate::wire::{codec, ErrorCode, Role};

const FED: &str = "eu";

fn limits() -> TransportSection {
    TransportSection {
        stream_timeout_ms: 2_000,
        handshake_timeout_ms: 2_000,
        ..TransportSection::default()
    }
}

fn endpoint(n: &TestNode, ca: &TestCa, router: Router) -> (Endpoint, Arc<StaticPolicy>) {
    let policy = Arc::new(StaticPolicy::new());
    let opts = EndpointOptions {
        identity: n.identity.clone(),
        role: Role::Partner,
        features: 0,
        transport: limits(),
        local: n.local.clone(),
        trust: TrustConfig {
            ca_certs: vec![ca.cert.clone()],
            ..TrustConfig::default()
        },
    };
    let ep = Endpoint::bind("127.0.0.1:0".parse().unwrap(), opts, policy.clone(), router).unwrap();
    (ep, policy)
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    primary_ep: Endpoint,
    primary_policy: Arc<StaticPolicy>,
    primary_id: TestNode,
    ca: TestCa,
}

/// A primary `noc-a/primary` with a real store serving `ttx-repl/1`.
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::tests::open(dir.path(), "noc-a");
    let hub = Primary::new(
        &ReplicationSection::default(),
        super::Mode::Async,
        *store.writer.head.borrow() as u64,
    );
    store.writer.set_commit_hook(hub.clone());
    let handler = ReplV1::new("noc-a", store.clone(), hub, Duration::from_millis(100));
    let router = Router::new().route_limited(
        REPL_V1,
        Permission::Standby,
        ProtocolLimits::default(),
        Arc::new(handler),
    );
    let mut ca = TestCa::new("fed-ca");
    let primary_id = ca.node(FED, "noc-a", "primary");
    let (primary_ep, primary_policy) = endpoint(&primary_id, &ca, router);
    World {
        _dir: dir,
        store,
        primary_ep,
        primary_policy,
        primary_id,
        ca,
    }
}

impl World {
    /// A dialer `site/node`, registered at the primary with `perms`, dialing with `role`.
    async fn dial(
        &mut self,
        site: &str,
        node: &str,
        perms: Option<Permissions>,
        role: Role,
    ) -> Result<Peer, NetError> {
        let id = self.ca.node(FED, site, node);
        if let Some(p) = perms {
            self.primary_policy.set(id.identity.clone(), Some(p));
        }
        let (ep, policy) = endpoint(&id, &self.ca, Router::new());
        policy.set(self.primary_id.identity.clone(), Some(Permissions::STANDBY));
        let alpns = vec![REPL_V1.alpn()];
        let opts = ConnectOptions {
            hello_versions: alpns.clone(),
            alpns,
            role,
        };
        let addr = self.primary_ep.local_addr().unwrap();
        ep.connect_with(addr, "noc-a", opts).await
    }

    /// This site's authorized standby, dialed as `Standby`.
    async fn standby(&mut self) -> Peer {
        let standby = Some(Permissions::STANDBY);
        self.dial("noc-a", "standby", standby, Role::Standby)
            .await
            .unwrap()
    }

    async fn add_operators(&self, names: &[&str]) {
        for name in names {
            let req = crate::store::tests::req(WriteOp::AddOperator {
                name: name.to_string(),
                role: crate::model::event::Role::Operator,
                token_sha256: format!("{:0>64}", hex::encode(name)),
            });
            self.store.writer.write(req).await.unwrap();
        }
    }
}

/// Subscribes from `from`, naming the primary's own event at `from - 1` (a standby whose log
/// is a prefix of the primary's).
async fn subscribe(
    w: &World,
    peer: &Peer,
    from: u64,
) -> Result<(Subscribed, crate::net::FramedStream<Junk, ToStandby>), NetError> {
    let at = from.saturating_sub(1);
    let (head_id, head_epoch) = w
        .store
        .reader
        .read(move |c| crate::store::ship::event_at(c, at))
        .await
        .unwrap()
        .unwrap_or(([0; 16], 0));
    subscribe_naming(peer, from, head_id, head_epoch).await
}

async fn subscribe_naming(
    peer: &Peer,
    from: u64,
    head_id: [u8; 16],
    head_epoch: u64,
) -> Result<(Subscribed, crate::net::FramedStream<Junk, ToStandby>), NetError> {
    let sub = Subscribe {
        epoch: 1,
        from,
        head_id,
        head_epoch,
    };
    let body = codec::encode(&sub).unwrap();
    let (answer, stream) = peer.open_stream::<Junk, ToStandby>(body).await?;
    Ok((codec::decode(&answer).unwrap(), stream))
}

/// What a broken standby sends instead of an ack: an `Ack` cut short after its epoch, or a
/// variant `ToPrimary` does not have.
#[derive(Serialize)]
enum Junk {
    Ack(u64),
    Unknown(u32),
}

/// Receives batches until `upto`; returns the positions.
async fn positions_until(recv: &mut crate::net::FramedRecv<ToStandby>, upto: u64) -> Vec<u64> {
    let mut got = Vec::new();
    while got.last().copied().unwrap_or(0) < upto {
        match recv.recv().await.unwrap().unwrap() {
            ToStandby::Batch(b) => got.extend(b.envelopes.iter().map(|e| e.position)),
            ToStandby::Heartbeat { .. } | ToStandby::TakeOver { .. } => {}
        }
    }
    got
}

#[tokio::test]
async fn only_this_sites_authorized_standby_may_subscribe() {
    let mut w = world();
    let standby = Some(Permissions::STANDBY);
    // Another site's node, even with the standby permission: refused at Hello.
    let other = w.dial("noc-b", "standby", standby, Role::Standby).await;
    assert!(
        matches!(other, Err(NetError::Refused(ErrorCode::NotAuthorized))),
        "{other:?}"
    );
    // This site's node with only the exchange permission: refused at Hello.
    let exchange_only = w
        .dial("noc-a", "spare", Some(Permissions::EXCHANGE), Role::Standby)
        .await;
    assert!(
        matches!(
            exchange_only,
            Err(NetError::Refused(ErrorCode::NotAuthorized))
        ),
        "{exchange_only:?}"
    );
    // Not registered: pending, refused.
    let unknown = w.dial("noc-a", "stranger", None, Role::Standby).await;
    assert!(
        matches!(unknown, Err(NetError::Refused(ErrorCode::UnknownPeer))),
        "{unknown:?}"
    );
    // Admitted, but dialing as a partner: the handler refuses the subscription.
    let partner = w
        .dial("noc-a", "standby", standby, Role::Partner)
        .await
        .unwrap();
    let refused = subscribe(&w, &partner, 1).await.err();
    assert!(
        matches!(refused, Some(NetError::Remote(ErrorCode::NotAuthorized))),
        "{refused:?}"
    );
    // The site's standby: subscribed; past the head is diverged.
    let ok = w.standby().await;
    let (answer, _stream) = subscribe(&w, &ok, 1).await.unwrap();
    assert_eq!((answer.epoch, answer.head), (1, 0));
    let ahead = subscribe(&w, &ok, 5).await.err();
    assert!(
        matches!(ahead, Some(NetError::Remote(ErrorCode::Diverged))),
        "{ahead:?}"
    );
}

#[tokio::test]
async fn a_corrupt_or_short_frame_stops_the_stream_and_a_new_subscription_resumes() {
    let mut w = world();
    w.add_operators(&["a", "b", "c"]).await;
    let peer = w.standby().await;
    for junk in [Junk::Ack(1), Junk::Unknown(0)] {
        let head = *w.store.writer.head.borrow() as u64;
        let from = head - 2;
        let (answer, stream) = subscribe(&w, &peer, from).await.unwrap();
        assert_eq!(answer.head, head);
        let (mut send, mut recv) = stream.split();
        assert_eq!(
            positions_until(&mut recv, head).await,
            (from..=head).collect::<Vec<_>>()
        );
        send.send(&junk).await.unwrap();
        // The primary stops the stream: the next read fails (reset with `malformed`).
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(5), recv.recv()).await {
                Ok(Ok(Some(ToStandby::Heartbeat { .. }))) => continue,
                other => break other,
            }
        };
        assert!(
            matches!(&end, Ok(Err(NetError::Stream(s))) if s.contains(&ErrorCode::Malformed.as_u16().to_string())),
            "{end:?}"
        );
        // More is written; a new subscription from the standby's head gets exactly the rest.
        w.add_operators(&[&format!("after-{head}")]).await;
    }
    let head = *w.store.writer.head.borrow() as u64;
    let (_, stream) = subscribe(&w, &peer, head).await.unwrap();
    let (_send, mut recv) = stream.split();
    assert_eq!(positions_until(&mut recv, head).await, vec![head]);
}

#[tokio::test]
async fn a_subscriber_whose_head_event_differs_from_ours_is_diverged() {
    let mut w = world();
    w.add_operators(&["a", "b"]).await;
    let peer = w.standby().await;
    let head = *w.store.writer.head.borrow() as u64;
    let (id, epoch) = w
        .store
        .reader
        .read(move |c| crate::store::ship::event_at(c, head))
        .await
        .unwrap()
        .unwrap();
    // The same position with another event there (a deposed primary's own tail): diverged.
    let other = subscribe_naming(&peer, head + 1, [0x5a; 16], epoch)
        .await
        .err();
    assert!(
        matches!(other, Some(NetError::Remote(ErrorCode::Diverged))),
        "{other:?}"
    );
    // The same id under another epoch is not our event either.
    let epoch_differs = subscribe_naming(&peer, head + 1, id, epoch + 1).await.err();
    assert!(
        matches!(epoch_differs, Some(NetError::Remote(ErrorCode::Diverged))),
        "{epoch_differs:?}"
    );
}

/// A one-shot `ttx-repl/1` request, decoded.
async fn ask(
    peer: &Peer,
    req: &crate::wire::repl::ReplRequest,
) -> Result<crate::wire::repl::ReplAnswer, NetError> {
    let answer = peer.request(codec::encode(req).unwrap()).await?;
    Ok(codec::decode(&answer).unwrap())
}

/// An event of a deposed node's tail: this site's, written by `node`, never in our log.
fn tail_event(node: &str, seq: u64) -> crate::wire::envelope::Envelope {
    crate::wire::envelope::Envelope {
        position: 100 + seq,
        id: *uuid::Uuid::now_v7().as_bytes(),
        origin_site: "noc-a".into(),
        origin_node: node.into(),
        epoch: 1,
        origin_seq: seq,
        at: 1_000,
        actor: "alice".into(),
        ticket: None,
        kind: "operator-removed".into(),
        body: br#"{"OperatorRemoved":{"name":"x"}}"#.to_vec(),
    }
}

#[tokio::test]
async fn a_rejoining_node_reads_event_ids_and_its_tail_is_queued_once_by_id() {
    use crate::wire::repl::{ReplAnswer, ReplRequest, MAX_POSITIONS};
    let mut w = world();
    w.add_operators(&["a", "b"]).await;
    let peer = w.standby().await;
    let first = w
        .store
        .reader
        .read(|c| crate::store::ship::event_at(c, 1))
        .await
        .unwrap()
        .unwrap();
    let answer = ask(
        &peer,
        &ReplRequest::EventIds {
            positions: vec![1, 999],
        },
    )
    .await
    .unwrap();
    let ReplAnswer::EventIds {
        role, epoch, ids, ..
    } = answer
    else {
        panic!("{answer:?}")
    };
    assert_eq!((role.as_str(), epoch), ("primary", 1));
    assert_eq!(ids[0].map(|e| (e.id, e.epoch)), Some(first));
    assert_eq!(ids[1], None);
    let too_many = ReplRequest::EventIds {
        positions: vec![1; MAX_POSITIONS + 1],
    };
    let err = ask(&peer, &too_many).await.err();
    assert!(
        matches!(err, Some(NetError::Remote(ErrorCode::Malformed))),
        "{err:?}"
    );

    // The tail: queued once; a rerun (and an event already in the log) is known.
    let mut tail = vec![tail_event("standby", 1), tail_event("standby", 2)];
    let review = |envelopes| ReplRequest::Review {
        node: "standby".into(),
        envelopes,
    };
    let answer = ask(&peer, &review(tail.clone())).await.unwrap();
    assert_eq!(
        answer,
        ReplAnswer::Reviewed {
            queued: 2,
            known: 0
        }
    );
    let in_log = w
        .store
        .reader
        .read(|c| crate::store::ship::envelopes_after(c, 0, 1))
        .await
        .unwrap();
    tail.extend(in_log);
    let answer = ask(&peer, &review(tail)).await.unwrap();
    assert_eq!(
        answer,
        ReplAnswer::Reviewed {
            queued: 0,
            known: 3
        }
    );
    let items = w
        .store
        .reader
        .read(|c| crate::store::review::list(c, 100))
        .await
        .unwrap();
    assert_eq!(items.len(), 2);

    // Another site's event, or a batch naming another node than the sender: refused.
    let mut foreign = tail_event("standby", 3);
    foreign.origin_site = "noc-b".into();
    let err = ask(&peer, &review(vec![foreign])).await.err();
    assert!(
        matches!(err, Some(NetError::Remote(ErrorCode::Malformed))),
        "{err:?}"
    );
    let other_node = ReplRequest::Review {
        node: "primary".into(),
        envelopes: vec![tail_event("standby", 4)],
    };
    let err = ask(&peer, &other_node).await.err();
    assert!(
        matches!(err, Some(NetError::Remote(ErrorCode::NotAuthorized))),
        "{err:?}"
    );

    // A node that is no longer the primary names its role and takes no review items.
    w.store
        .writer
        .write(crate::store::tests::req(WriteOp::Fence {
            epoch: 2,
            by: "standby".into(),
        }))
        .await
        .unwrap();
    let answer = ask(&peer, &ReplRequest::EventIds { positions: vec![] })
        .await
        .unwrap();
    assert!(
        matches!(&answer, ReplAnswer::EventIds { role, epoch: 2, .. } if role == "fenced:standby"),
        "{answer:?}"
    );
    let err = ask(&peer, &review(vec![tail_event("standby", 5)]))
        .await
        .err();
    assert!(
        matches!(err, Some(NetError::Remote(ErrorCode::NotPrimary))),
        "{err:?}"
    );
}

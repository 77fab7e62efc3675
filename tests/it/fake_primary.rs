//! A broken primary: a test peer that speaks `ttx-repl/1` with a real certificate for
//! `noc-a/primary` (the crate's own QUIC endpoint) and answers a real standby process, or a
//! real `ttx standby clone`, with truncated, oversized, undecodable or wrong frames.
//!
//! Each fault must stop the standby's stream with a clear error (`ttx status`), leave its store
//! intact (`ttx verify`), and once the standby is pointed back at the real primary it resumes
//! and catches up. A clone fed a corrupted or cut snapshot fails and leaves no node.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ttx::config::TlsSection;
use ttx::identity::NodeIdentity;
use ttx::net::{
    BoxFuture, Endpoint, EndpointOptions, Handler, IncomingStream, LocalCert, PeerCtx, Permission,
    Permissions, Router, StaticPolicy, TrustConfig,
};
use ttx::pki::TrustMaterial;
use ttx::wire::envelope::Envelope;
use ttx::wire::repl::{
    decode_open, Batch, OpenRequest, SnapshotAccepted, SnapshotFrame, SnapshotHeader, Subscribed,
    ToPrimary, ToStandby,
};
use ttx::wire::{codec, Role, StreamOpen};

use crate::clone::{clone_cmd, clone_of, primary};
use crate::common::TestNode;
use crate::federation::Ca;
use crate::repl::{position_and_digest, wait_until};

/// What the broken primary sends on one stream.
#[derive(Debug, Clone)]
enum Fault {
    /// A length prefix announcing more bytes than follow, then the end of the stream.
    Truncated,
    /// A length prefix too short for any `ToStandby` frame.
    BadLength,
    /// A well-framed payload that is not bincode of `ToStandby` (an unknown variant).
    Garbage,
    /// A length prefix above every frame limit.
    Oversized,
    /// A batch whose envelope skips positions.
    BadPosition,
    /// A batch whose envelope is of another site.
    WrongSite,
    /// A snapshot whose bytes do not hash to the announced SHA-256.
    CorruptSnapshot,
    /// A snapshot stream that ends before all announced bytes.
    CutSnapshot,
}

struct Broken {
    faults: Mutex<VecDeque<Fault>>,
    /// One permit per stream the test lets through (so the standby's error stays visible).
    go: tokio::sync::Semaphore,
}

impl Broken {
    async fn serve(&self, open: StreamOpen, incoming: IncomingStream) {
        let Ok(permit) = self.go.acquire().await else {
            return;
        };
        permit.forget();
        let Some(fault) = self.faults.lock().unwrap().pop_front() else {
            incoming.refuse(ttx::wire::ErrorCode::NotPrimary).await;
            return;
        };
        let served = match decode_open(&open.body).expect("an open body") {
            OpenRequest::Subscribe(sub) => self.subscribed(sub.from, fault.clone(), incoming).await,
            OpenRequest::Snapshot(_) => self.snapshot(fault.clone(), incoming).await,
        };
        if !served {
            // The asker gave up waiting for this stream: the fault goes to the next one.
            self.faults.lock().unwrap().push_front(fault);
            self.go.add_permits(1);
        }
    }

    async fn subscribed(&self, from: u64, fault: Fault, incoming: IncomingStream) -> bool {
        let body = codec::encode(&Subscribed {
            epoch: 1,
            head: from + 10,
        })
        .unwrap();
        let Ok(stream) = incoming.accept::<ToStandby, ToPrimary>(body).await else {
            return false;
        };
        let (mut send, _recv) = stream.split();
        let envelope = |position: u64, site: &str| Envelope {
            position,
            id: [9; 16],
            origin_site: site.into(),
            origin_node: "primary".into(),
            epoch: 1,
            origin_seq: position,
            at: 1,
            actor: "admin".into(),
            ticket: None,
            kind: "operator-added".into(),
            body: b"{}".to_vec(),
        };
        let batch = |e: Envelope| {
            ToStandby::Batch(Batch {
                epoch: 1,
                committed_at: 1,
                envelopes: vec![e],
            })
        };
        let sent = match &fault {
            Fault::Truncated => send.send_raw(&[0, 0, 0, 100, 1, 2, 3, 4]).await,
            Fault::BadLength => send.send_raw(&[0, 0, 0, 2, 0, 0]).await,
            Fault::Garbage => send.send_raw(&[0, 0, 0, 8, 9, 0, 0, 0, 1, 2, 3, 4]).await,
            Fault::Oversized => send.send_raw(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]).await,
            Fault::BadPosition => send.send(&batch(envelope(from + 5, "noc-a"))).await,
            Fault::WrongSite => send.send(&batch(envelope(from, "noc-z"))).await,
            other => panic!("{other:?} is a snapshot fault"),
        };
        if sent.is_err() {
            return false;
        }
        // A truncated frame is cut by the end of the stream; every other fault keeps the
        // stream open until the standby drops it (a batch must reach the applier, not be cut
        // short by the end of the stream).
        if matches!(fault, Fault::Truncated) {
            send.finish();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), send.flushed()).await;
        true
    }

    async fn snapshot(&self, fault: Fault, incoming: IncomingStream) -> bool {
        let body = codec::encode(&SnapshotAccepted { epoch: 1 }).unwrap();
        let Ok(stream) = incoming.accept::<SnapshotFrame, ToPrimary>(body).await else {
            return false;
        };
        let (mut send, _recv) = stream.split();
        let bytes = vec![7u8; 10_000];
        let sha256: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &bytes)
            .as_ref()
            .try_into()
            .unwrap();
        let (sent, sha256) = match fault {
            Fault::CorruptSnapshot => (bytes.clone(), [0u8; 32]),
            Fault::CutSnapshot => (bytes[..4_000].to_vec(), sha256),
            other => panic!("{other:?} is a stream fault"),
        };
        let header = SnapshotHeader {
            epoch: 1,
            position: 3,
            len: bytes.len() as u64,
            sha256,
            chunk_bytes: 4096,
        };
        send.send(&SnapshotFrame::Header(header)).await.unwrap();
        for chunk in sent.chunks(4096) {
            send.send(&SnapshotFrame::Chunk(chunk.to_vec()))
                .await
                .unwrap();
        }
        send.send(&SnapshotFrame::End).await.unwrap();
        send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(5), send.flushed()).await;
        true
    }
}

impl Handler for Broken {
    fn stream<'a>(
        &'a self,
        _peer: &'a PeerCtx,
        open: StreamOpen,
        incoming: IncomingStream,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.serve(open, incoming))
    }
}

/// The broken primary, on its own runtime, with a certificate for `noc-a/primary`.
struct FakePrimary {
    _node: TestNode,
    broken: Arc<Broken>,
    endpoint: Endpoint,
    addr: SocketAddr,
    rt: tokio::runtime::Runtime,
}

impl FakePrimary {
    fn new(ca: &Ca, faults: Vec<Fault>) -> FakePrimary {
        let node =
            TestNode::init_with("noc-a", &["--federation", "fed", "--listen", "127.0.0.1:0"]);
        ca.issue(&node, "noc-a", "primary");
        let material = TrustMaterial::load(&node.dir, &TlsSection::default()).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let broken = Arc::new(Broken {
            faults: Mutex::new(faults.into()),
            go: tokio::sync::Semaphore::new(0),
        });
        let policy = Arc::new(StaticPolicy::new());
        for n in ["standby", "clone"] {
            let id = NodeIdentity::new("fed", "noc-a", n).unwrap();
            policy.set(id, Some(Permissions::STANDBY));
        }
        let endpoint = rt.block_on(async {
            let options = EndpointOptions {
                identity: material.identity.clone(),
                role: Role::Partner,
                features: 0,
                transport: Default::default(),
                local: LocalCert {
                    chain: material.cert_chain.clone(),
                    key: material.key.clone_key(),
                },
                trust: TrustConfig {
                    ca_certs: material.ca_certs.clone(),
                    crls: Vec::new(),
                    deny_spki: Default::default(),
                    pins: Default::default(),
                },
            };
            let router = Router::new().route(
                ttx::wire::alpn::REPL_V1,
                Permission::Standby,
                broken.clone(),
            );
            Endpoint::bind("127.0.0.1:0".parse().unwrap(), options, policy, router).unwrap()
        });
        let addr = endpoint.local_addr().unwrap();
        FakePrimary {
            _node: node,
            broken,
            endpoint,
            addr,
            rt,
        }
    }

    /// Lets one more stream through.
    fn go(&self) {
        self.broken.go.add_permits(1);
    }
}

impl Drop for FakePrimary {
    fn drop(&mut self) {
        self.rt.block_on(self.endpoint.shutdown());
    }
}

fn last_error(s: &TestNode) -> String {
    let status = s.cli(&["--json", "status"]).json();
    status["replication"]["following"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn broken_replication_frames_stop_the_stream_clearly_and_the_standby_resumes_from_the_real_primary()
{
    let ca = Ca::new("fed");
    let mut p = primary(&ca);
    let mut s = clone_of(&p, &ca);
    let real = p.listen_addr().to_string();
    let faults = [
        (Fault::Truncated, "truncated frame"),
        (Fault::BadLength, "malformed frame"),
        (Fault::Garbage, "malformed frame"),
        (Fault::Oversized, "exceeds the maximum"),
        (Fault::BadPosition, "shipped events refused"),
        (Fault::WrongSite, "shipped events refused"),
    ];
    let fake = FakePrimary::new(&ca, faults.iter().map(|f| f.0.clone()).collect());
    s.configure(|c| c.replication.primary = Some(fake.addr.to_string()));
    s.start();
    let before = position_and_digest(&s);
    for (fault, text) in &faults {
        fake.go();
        wait_until(&format!("the standby to report {fault:?} ({text})"), || {
            last_error(&s).contains(text)
        });
        // The store is intact: nothing of the broken frame was applied.
        let v = s.cli(&["--json", "verify"]).json();
        assert_eq!(v["ok"], true, "{fault:?}: {v}");
        assert_eq!(position_and_digest(&s), before, "{fault:?}");
    }
    // Pointed back at the real primary, it resumes and catches up.
    s.stop();
    s.configure(|c| c.replication.primary = Some(real.clone()));
    p.cli(&["new", "after the broken primary"]).ok();
    s.start();
    let want = position_and_digest(&p);
    wait_until("the standby to catch up", || {
        position_and_digest(&s) == want
    });
    assert_eq!(last_error(&s), "");
    s.stop();
    p.stop();
}

#[test]
fn a_clone_fed_a_corrupted_or_cut_snapshot_fails_and_leaves_no_node() {
    let ca = Ca::new("fed");
    let fake = FakePrimary::new(&ca, vec![Fault::CorruptSnapshot, Fault::CutSnapshot]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("clone");
    let from = fake.addr.to_string();
    for text in [
        "SHA-256 does not match",
        "the snapshot ended after 4000 of 10000 bytes",
    ] {
        fake.go();
        clone_cmd(&dir, &from, "noc-a", "clone", &["--ca", ca.path()]).fails(1, text);
        assert!(!dir.join("ttx.db").exists() && !dir.join("ttx.toml").exists());
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".init-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

//! The node's composition: a node whose writer fails stops (fail-stop), in process.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::Config;
use crate::datadir::DataDir;
use crate::model::command::CreateTicket;
use crate::node::{init_data_dir, NodeError, RunningNode};
use crate::store::{StoreError, WriteOp, WriteRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_panic_stops_the_node_with_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("node"));
    let config = Config::new("noc-a", "primary");
    tokio::task::block_in_place(|| init_data_dir(&dir, &config).unwrap());
    let node = RunningNode::start(dir.root()).await.unwrap();
    let store = node.store.clone();
    let running = tokio::spawn(node.run_until(std::future::pending::<()>()));
    store
        .writer
        .faults
        .panic_next_batch
        .store(true, Ordering::SeqCst);
    let write = store
        .writer
        .write(WriteRequest {
            actor: "admin".into(),
            idempotency: None,
            op: WriteOp::Create(Box::new(CreateTicket {
                subject: "core1 down".into(),
                ..Default::default()
            })),
        })
        .await;
    assert!(matches!(write, Err(StoreError::Closed)), "{write:?}");
    let stopped = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the node stops by itself")
        .unwrap();
    match stopped {
        Err(NodeError::WriterFailed(reason)) => {
            assert!(reason.contains("injected writer panic"), "{reason}")
        }
        other => panic!("expected a writer failure, got {other:?}"),
    }
    // It stopped cleanly: the lock is released and the runtime file removed, so the service
    // manager's restart finds the store as it was before the failed batch.
    assert!(!dir.runtime_info().exists());
    let again = RunningNode::start(dir.root()).await.unwrap();
    let tickets = again
        .store
        .reader
        .read(|c| crate::store::query::list(c, &Default::default()))
        .await
        .unwrap();
    assert!(tickets.is_empty(), "{tickets:?}");
    again.stop().await;
}

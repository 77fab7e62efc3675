//! The edge stream against bad input, between two real nodes in one process: a window sent out
//! of order, duplicated and replayed, a stale epoch, a reserved `Open` body that is not empty.

use std::time::Duration;

use super::tests::pair;
use crate::net::{FramedStream, NetError, Peer};
use crate::node::RunningNode;
use crate::wire::exchange::{Answer, Body, ExchangeCode, Message, Refer, Refused, SharedNote};
use crate::wire::ErrorCode;

const REFERRAL: [u8; 16] = [0x22; 16];

fn message(seq: u64, epoch: u64, body: Body) -> Message {
    Message {
        seq,
        id: [seq as u8; 16],
        epoch,
        referral: REFERRAL,
        body,
    }
}

fn refer() -> Body {
    Body::Refer(Refer {
        number: 42,
        subject: "down".into(),
        severity: Some(1),
        priority: None,
        problem_start: None,
        fields: vec![],
        respond_by: None,
        note: None,
    })
}

fn note(text: &str) -> Body {
    Body::Note(SharedNote {
        origin_site: "noc-a".into(),
        // Distinct for each text of this test (a note is applied once per origin id).
        origin_id: [text.as_bytes()[0] ^ text.len() as u8; 16],
        author: "al".into(),
        at: 1,
        text: text.into(),
    })
}

type Edge = FramedStream<Message, Answer>;

async fn open(link: &Peer) -> Edge {
    let (body, edge) = link.open_stream(Vec::new()).await.unwrap();
    assert!(body.is_empty(), "the Opened body is empty");
    edge
}

/// Sends `window` on `edge` and reads answers until the stream ends or `up_to` is acknowledged.
async fn exchange(edge: &mut Edge, window: &[Message], up_to: u64) -> Vec<Answer> {
    for m in window {
        edge.send.send(m).await.unwrap();
    }
    let mut answers = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), edge.recv.recv())
            .await
            .expect("an answer in time")
            .unwrap();
        let Some(a) = next else { return answers };
        let done = matches!(a, Answer::Ack { up_to: u } if u >= up_to);
        answers.push(a);
        if done {
            return answers;
        }
    }
}

async fn notes_with(b: &RunningNode, text: &str) -> i64 {
    let like = format!("%{text}%");
    b.store
        .reader
        .read(move |c| {
            Ok(c.query_row(
                "SELECT count(*) FROM notes WHERE text LIKE ?1",
                [like],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap()
}

fn acks_only(answers: &[Answer]) -> bool {
    answers.iter().all(|a| matches!(a, Answer::Ack { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_stream_takes_a_window_in_order_whatever_order_it_was_sent_in() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = pair(tmp.path()).await;
    let fa = a.federation.get().unwrap();
    let (link, _) = fa.dial_from("telco-b", None).await.unwrap();

    // Reordered: 3 overtook 2. 1 is taken, 3 is refused naming 2, and the receiver ends the
    // stream (nothing after a refusal for now is taken).
    let mut edge = open(&link).await;
    let sent = [
        message(1, 1, refer()),
        message(3, 1, note("three")),
        message(2, 1, note("two")),
    ];
    let answers = exchange(&mut edge, &sent, 3).await;
    assert_eq!(
        answers.first(),
        Some(&Answer::Ack { up_to: 1 }),
        "{answers:?}"
    );
    assert_eq!(
        answers.last(),
        Some(&Answer::Refused(Refused {
            expected: Some(2),
            epoch: Some(1),
            ..Refused::code(ExchangeCode::OutOfOrder)
        })),
        "{answers:?}"
    );
    assert_eq!(
        (notes_with(&b, "two").await, notes_with(&b, "three").await),
        (0, 0)
    );

    // Replayed and duplicated on a new stream: 1 again, 2 twice, then 3. Everything is
    // acknowledged, nothing refused, and each note is applied once.
    let mut edge = open(&link).await;
    let sent = [
        message(1, 1, refer()),
        message(2, 1, note("two")),
        message(2, 1, note("two")),
        message(3, 1, note("three")),
    ];
    let answers = exchange(&mut edge, &sent, 3).await;
    assert!(acks_only(&answers), "{answers:?}");
    assert_eq!(answers.last(), Some(&Answer::Ack { up_to: 3 }));
    // A replay of the whole window on the same stream: acknowledged at the mark, applied
    // nothing.
    let answers = exchange(&mut edge, &sent, 3).await;
    assert!(acks_only(&answers), "{answers:?}");
    assert_eq!(
        (notes_with(&b, "two").await, notes_with(&b, "three").await),
        (1, 1)
    );

    // A message from an earlier epoch than the site's (a deposed primary): refused with the
    // epoch the receiver knows, and the stream ends.
    let answers = exchange(&mut edge, &[message(4, 2, note("four"))], 4).await;
    assert_eq!(answers, vec![Answer::Ack { up_to: 4 }]);
    let answers = exchange(&mut edge, &[message(5, 1, note("fifth"))], 5).await;
    assert_eq!(
        answers,
        vec![Answer::Refused(Refused {
            epoch: Some(2),
            ..Refused::code(ExchangeCode::StaleEpoch)
        })]
    );
    assert_eq!(notes_with(&b, "fifth").await, 0);

    // The Open body is reserved: a non-empty one is malformed.
    let refused = link
        .open_stream::<Message, Answer>(vec![1])
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(refused, NetError::Remote(ErrorCode::Malformed)),
        "{refused:?}"
    );
    a.stop().await;
    b.stop().await;
}

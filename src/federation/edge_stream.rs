//! The edge stream: one ordered, long-lived `ttx-exchange/1` stream per directed edge (protocol
//! §5a, §5c), so a sender keeps many messages in flight without them overtaking each other.
//!
//! The sender opens the stream with an empty `Open` body and writes its unacknowledged
//! messages on it in sequence order, each frame one [`Message`] (the same bytes as a request
//! body). The receiver reads them in order, takes every message that has arrived together in
//! one write transaction (one decision per message, the peer's mark advanced in the same
//! transaction) and writes back [`Answer`]s: a cumulative `Ack { up_to }` for a run of taken
//! messages, a refusal for good in its place (about the message after the last `Ack`), and a
//! refusal for now last, after which it finishes the stream (nothing after it was taken). The
//! gate holds as on requests: the answers leave only once the local standby has the window.
//!
//! A receiver that does not serve edge streams answers `Open` with `Error(malformed)` (§5a);
//! the sender then sends one request per message on that connection, as before.
//!
//! What rides on the stream is only ordering and batching: the decisions are the writer's
//! ([`crate::store::WriteOp::Inbound`]), the outbox and the marks the store's.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::exchange::ExchangeV1;
use crate::exchange::edge::consumed_for_good;
use crate::model::role::RoleState;
use crate::net::{FramedRecv, IncomingStream, NetError, Peer, PeerCtx};
use crate::store::InboundMessage;
use crate::wire::exchange::{Answer, Message};
use crate::wire::{ErrorCode, StreamOpen};

/// Most messages the receiver takes in one write transaction.
const MAX_WINDOW: usize = 1024;

/// Most message bytes the receiver takes in one write transaction.
const MAX_WINDOW_BYTES: usize = 8 << 20;

/// Messages read off the stream ahead of the writer (QUIC flow control holds the rest).
const READ_AHEAD: usize = 2 * MAX_WINDOW;

/// How long a sender waits for the next answer before it gives the stream up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A sender reuses a stream only if it was used this recently (well inside the receiver's idle
/// timeout of 60 s between frames), else it opens a new one.
const REUSE_WITHIN: Duration = Duration::from_secs(20);

/// Serves one edge stream a partner opened: reads its messages in order, takes them in windows
/// through `handler`, answers each window.
pub(super) async fn serve(
    handler: &ExchangeV1,
    peer: &PeerCtx,
    open: StreamOpen,
    incoming: IncomingStream,
) {
    let site = peer.identity.site.clone();
    // The body is reserved: empty on `ttx-exchange/1`.
    if !open.body.is_empty() {
        incoming.refuse(ErrorCode::Malformed).await;
        return;
    }
    let framed = match incoming.accept::<Answer, Message>(Vec::new()).await {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(peer = %site, error = %e, "edge stream not accepted");
            return;
        }
    };
    let (mut send, mut recv) = framed.split();
    let (tx, mut rx) = mpsc::channel::<InboundMessage>(READ_AHEAD);
    let protocol = peer.protocol;
    let reader = tokio::spawn(
        async move {
            loop {
                match recv.recv_sized().await {
                    Ok(Some((message, _)))
                        if super::exchange::not_in_version(protocol, &message) =>
                    {
                        tracing::info!("edge stream: an attachment on ttx-exchange/1 (malformed)");
                        return;
                    }
                    Ok(Some((message, bytes))) => {
                        if tx.send(InboundMessage { bytes, message }).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::info!(error = %e, "edge stream: the partner's frames stop");
                        return;
                    }
                }
            }
        }
        .instrument(tracing::Span::current()),
    );
    tracing::debug!(peer = %site, "edge stream open");
    while let Some(first) = rx.recv().await {
        let mut bytes = first.bytes;
        let mut window = vec![first];
        while window.len() < MAX_WINDOW && bytes < MAX_WINDOW_BYTES {
            match rx.try_recv() {
                Ok(m) => {
                    bytes += m.bytes;
                    window.push(m);
                }
                Err(_) => break,
            }
        }
        let answers = match handler.take(&site, window).await {
            Ok(a) => a,
            Err(code) => {
                send.reset(code);
                reader.abort();
                return;
            }
        };
        let mut ended = false;
        for answer in &answers {
            ended |= matches!(answer, Answer::Refused(r) if !consumed_for_good(r.code));
            if send.send(answer).await.is_err() {
                reader.abort();
                return;
            }
        }
        if ended {
            break;
        }
    }
    reader.abort();
    send.finish();
    let _ = send.flushed().await;
}

/// The sending end of an edge stream, as the outbox worker holds it.
pub(super) struct EdgeStream {
    /// Windows of messages to the task writing them on the stream.
    out: mpsc::Sender<Vec<Message>>,
    answers: FramedRecv<Answer>,
    writer: JoinHandle<()>,
    /// The connection it runs on.
    connection: u64,
    used: Instant,
}

/// What opening an edge stream gave.
pub(super) enum Opened {
    /// A stream to send on.
    Stream(EdgeStream),
    /// The partner does not serve edge streams: send one request per message.
    Unsupported,
}

impl EdgeStream {
    /// Opens an edge stream on `link`. Its writer task stops before any message once `role`
    /// says this node is no longer its site's primary.
    pub(super) async fn open(
        link: &Peer,
        role: watch::Receiver<RoleState>,
    ) -> Result<Opened, NetError> {
        let (_, framed) = match link.open_stream::<Message, Answer>(Vec::new()).await {
            Ok(s) => s,
            Err(NetError::Remote(ErrorCode::Malformed)) => return Ok(Opened::Unsupported),
            Err(e) => return Err(e),
        };
        let (mut send, answers) = framed.split();
        let (out, mut windows) = mpsc::channel::<Vec<Message>>(4);
        let writer = tokio::spawn(
            async move {
                while let Some(window) = windows.recv().await {
                    for m in &window {
                        // A deposed primary sends nothing: checked before every message.
                        if !role.borrow().is_primary() {
                            send.reset(ErrorCode::Closed);
                            return;
                        }
                        if let Err(e) = send.send(m).await {
                            tracing::debug!(error = %e, "edge stream: cannot send");
                            return;
                        }
                    }
                }
                send.finish();
            }
            .instrument(tracing::Span::current()),
        );
        Ok(Opened::Stream(EdgeStream {
            out,
            answers,
            writer,
            connection: link.ctx().connection_id,
            used: Instant::now(),
        }))
    }

    /// Whether the stream may carry the next window on connection `connection`.
    pub(super) fn usable_on(&self, connection: u64) -> bool {
        self.connection == connection
            && !self.writer.is_finished()
            && self.used.elapsed() < REUSE_WITHIN
    }

    /// Hands a window of consecutive messages to the stream's writer.
    pub(super) async fn send(&mut self, window: Vec<Message>) -> Result<(), String> {
        self.used = Instant::now();
        self.out
            .send(window)
            .await
            .map_err(|_| "the edge stream's writer stopped".to_string())
    }

    /// The next answer (`None` once the partner finished the stream), within
    /// [`ANSWER_TIMEOUT`].
    pub(super) async fn answer(&mut self) -> Result<Option<Answer>, NetError> {
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, self.answers.recv())
            .await
            .map_err(|_| NetError::Timeout("an answer on the edge stream"))??;
        self.used = Instant::now();
        Ok(answer)
    }
}

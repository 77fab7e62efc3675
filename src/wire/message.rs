//! Frames on streams. A request stream carries exactly one client frame and one server frame:
//! the first stream of a connection carries `Hello` and its answer, every later stream one
//! request (or ping) and its answer. A long-lived stream starts with `Open` and its `Opened`
//! answer; after that it carries the protocol's own frames, many each way, until either side
//! finishes.

use serde::{Deserialize, Serialize};

use super::{ErrorCode, Hello, HelloAck, Refusal};

/// A request of a higher protocol (exchange, replication): an id chosen by the sender and the
/// protocol's own message, encoded by that protocol with the same codec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The sender's id for this request, echoed in the answer.
    pub id: u64,
    /// The protocol message.
    #[serde(with = "super::bytes")]
    pub body: Vec<u8>,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The id of the request answered.
    pub id: u64,
    /// The protocol's answer.
    #[serde(with = "super::bytes")]
    pub body: Vec<u8>,
}

/// A round trip for liveness and latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Any value; echoed in the [`Pong`].
    pub nonce: u64,
}

/// The answer to a [`Ping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The ping's nonce.
    pub nonce: u64,
}

/// A stream-level failure: the request (by id, 0 if it could not be read) was not handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// The request id, or 0 when the request could not be decoded.
    pub id: u64,
    /// Why, with its fixed text.
    pub refusal: Refusal,
}

/// Opens a long-lived stream: the protocol's own description of what the stream is for (for
/// example "replicate from position N" or "send the snapshot"), encoded by that protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOpen {
    /// The opener's id for this stream, echoed in the answer.
    pub id: u64,
    /// The protocol message.
    #[serde(with = "super::bytes")]
    pub body: Vec<u8>,
}

/// The acceptance of a [`StreamOpen`]; frames of the protocol follow on the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOpened {
    /// The id of the `StreamOpen` answered.
    pub id: u64,
    /// The protocol's answer (may be empty).
    #[serde(with = "super::bytes")]
    pub body: Vec<u8>,
}

/// Everything the side that opens a stream sends first (the client of the connection for
/// `Hello`; either side for the others). Variant indexes are stable: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// Index 0: the first frame of a connection.
    Hello(Hello),
    /// Index 1: a liveness round trip.
    Ping(Ping),
    /// Index 2: a request of the negotiated protocol.
    Request(Request),
    /// Index 3: opens a long-lived stream (either side of a connection may send it).
    Open(StreamOpen),
}

/// Everything the side that accepts a stream answers. Variant indexes are stable: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// Index 0: the `Hello` was accepted.
    HelloAck(HelloAck),
    /// Index 1: the `Hello` was refused; the connection is closed with the same code.
    Refusal(Refusal),
    /// Index 2: answer to a ping.
    Pong(Pong),
    /// Index 3: answer to a request.
    Response(Response),
    /// Index 4: the request on this stream failed.
    Error(ErrorFrame),
    /// Index 5: a long-lived stream was accepted.
    Opened(StreamOpened),
}

impl ServerFrame {
    /// The error frame for a request id and code.
    pub fn error(id: u64, code: ErrorCode) -> Self {
        ServerFrame::Error(ErrorFrame {
            id,
            refusal: Refusal::new(code),
        })
    }
}

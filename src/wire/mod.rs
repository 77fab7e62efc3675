//! Frames and codec of the ticket-transfer protocols: bytes in, messages out, no sockets.
//!
//! - [`frame`]: a 4-byte big-endian length prefix, then a payload; the length is checked against a
//!   configured maximum before anything is allocated.
//! - [`codec`]: the one place bincode is called (legacy configuration with an explicit size limit),
//!   so it can be swapped for a codec that writes the same bytes.
//! - [`alpn`]: the protocol ids (one ALPN per protocol version) and the list a node offers.
//! - [`hello`]: the connection handshake after TLS: `Hello`, `HelloAck`, `Refusal`.
//! - [`message`]: the frames sent on streams: the request/response envelope, `Ping`/`Pong`, errors.
//! - [`exchange`]: the referral exchange's messages (`ttx-exchange/1` request bodies).
//! - [`exchange_v2`]: what `ttx-exchange/2` adds: attachments in chunks.
//! - [`envelope`]: the frozen envelope one event of a site's log is shipped in (`ttx-repl/1`).
//! - [`repl`]: the hot standby's frames (`ttx-repl/1`: subscribe, batches of envelopes,
//!   heartbeats, acks), pinned by golden bytes; served by `replication::serve`.
//! - [`witness`]: the witness's frames (`ttx-witness/1`: renew the lease on a site's primary
//!   role, ask to be promoted), pinned by golden bytes; served by `replication::witness_serve`.
//! - [`error`]: stable error codes sent on the wire, and the codec's own error type.
//!
//! Evolution rule: bincode cannot add fields to a struct, so the protocol evolves only by appending
//! enum variants and by new ALPN versions. The golden-byte tests in this module pin every frame.

pub mod alpn;
pub(crate) mod bytes;
pub mod codec;
pub mod envelope;
pub mod error;
pub mod exchange;
pub mod exchange_v2;
pub mod frame;
pub mod hello;
pub mod message;
pub mod repl;
pub mod witness;

pub use error::{ErrorCode, WireError};
pub use frame::{decode_frame, encode_frame, read_len_prefix, FRAME_CEILING, LEN_PREFIX};
pub use hello::{Hello, HelloAck, Refusal, Role, HELLO_MAX_BYTES};
pub use message::{
    ClientFrame, ErrorFrame, Ping, Pong, Request, Response, ServerFrame, StreamOpen, StreamOpened,
};

#[cfg(test)]
mod golden;
#[cfg(test)]
mod prop;

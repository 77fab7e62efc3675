//! Frames and codec of the ticket-transfer protocols: bytes in, messages out, no sockets.

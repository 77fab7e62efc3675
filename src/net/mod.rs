//! The QUIC endpoint: TLS configs, certificate → identity, ALPN routing, Hello, limits.

//! Golden bytes: every frame of `ttx-exchange/1` pinned byte for byte. These are the examples of
//! `docs/protocol.md`; changing one of them is a protocol break.

use super::codec::{decode_framed, encode_framed};
use super::*;

const MAX: u32 = 1 << 20;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex with any whitespace in it (the golden tests' notation).
pub(super) fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Encodes `msg` (a frame body, no length prefix), compares it with the hex `golden` (any
/// whitespace in it ignored) and decodes it back: the golden-byte check of every protocol's
/// bodies.
pub(super) fn check_body<T>(msg: T, golden: &str)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = super::codec::encode(&msg).unwrap();
    assert_eq!(hex(&bytes), hex(&unhex(golden)), "{msg:?}");
    assert_eq!(super::codec::decode::<T>(&bytes).unwrap(), msg);
}

fn check_client(frame: ClientFrame, golden: &str) {
    let bytes = encode_framed(&frame, MAX).unwrap();
    assert_eq!(hex(&bytes), hex(&unhex(golden)), "{frame:?}");
    assert_eq!(decode_framed::<ClientFrame>(&bytes, MAX).unwrap(), frame);
}

fn check_server(frame: ServerFrame, golden: &str) {
    let bytes = encode_framed(&frame, MAX).unwrap();
    assert_eq!(hex(&bytes), hex(&unhex(golden)), "{frame:?}");
    assert_eq!(decode_framed::<ServerFrame>(&bytes, MAX).unwrap(), frame);
}

#[test]
fn hello() {
    check_client(
        ClientFrame::Hello(Hello {
            federation: "eu".into(),
            site: "noc-a".into(),
            node: "primary".into(),
            role: Role::Partner,
            versions: vec!["ttx-exchange/1".into()],
            features: 0,
        }),
        "00000054
         00000000
         0200000000000000 6575
         0500000000000000 6e6f632d61
         0700000000000000 7072696d617279
         00000000
         0100000000000000 0e00000000000000 7474782d65786368616e67652f31
         0000000000000000",
    );
}

#[test]
fn hello_standby() {
    check_client(
        ClientFrame::Hello(Hello {
            federation: "eu".into(),
            site: "noc-a".into(),
            node: "standby".into(),
            role: Role::Standby,
            versions: vec![],
            features: 3,
        }),
        "0000003e
         00000000
         0200000000000000 6575
         0500000000000000 6e6f632d61
         0700000000000000 7374616e646279
         01000000
         0000000000000000
         0300000000000000",
    );
}

#[test]
fn hello_ack() {
    check_server(
        ServerFrame::HelloAck(HelloAck {
            version: "ttx-exchange/1".into(),
            federation: "eu".into(),
            site: "telco-b".into(),
            node: "primary".into(),
            features: 0,
        }),
        "0000004a
         00000000
         0e00000000000000 7474782d65786368616e67652f31
         0200000000000000 6575
         0700000000000000 74656c636f2d62
         0700000000000000 7072696d617279
         0000000000000000",
    );
}

#[test]
fn refusal() {
    check_server(
        ServerFrame::Refusal(Refusal::new(ErrorCode::UnknownPeer)),
        "0000001a
         01000000
         0200
         0c00000000000000 756e6b6e6f776e5f70656572",
    );
}

#[test]
fn ping_pong() {
    check_client(
        ClientFrame::Ping(Ping { nonce: 0x0102 }),
        "0000000c 01000000 0201000000000000",
    );
    check_server(
        ServerFrame::Pong(Pong { nonce: 0x0102 }),
        "0000000c 02000000 0201000000000000",
    );
}

#[test]
fn request_response() {
    check_client(
        ClientFrame::Request(Request {
            id: 7,
            body: vec![0xde, 0xad],
        }),
        "00000016 02000000 0700000000000000 0200000000000000 dead",
    );
    check_server(
        ServerFrame::Response(Response {
            id: 7,
            body: vec![0xbe, 0xef, 0x01],
        }),
        "00000017 03000000 0700000000000000 0300000000000000 beef01",
    );
}

#[test]
fn error_frame() {
    check_server(
        ServerFrame::error(7, ErrorCode::NotAuthorized),
        "00000024
         04000000
         0700000000000000
         0400
         0e00000000000000 6e6f745f617574686f72697a6564",
    );
}

#[test]
fn stream_open_and_opened() {
    check_client(
        ClientFrame::Open(StreamOpen {
            id: 1,
            body: vec![1, 2],
        }),
        "00000016 03000000 0100000000000000 0200000000000000 0102",
    );
    check_server(
        ServerFrame::Opened(StreamOpened {
            id: 1,
            body: vec![],
        }),
        "00000014 05000000 0100000000000000 0000000000000000",
    );
}

#[test]
fn error_codes_are_stable() {
    let codes: Vec<(u16, &str)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.as_u16(), c.text()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (0, "closed"),
            (1, "unsupported_version"),
            (2, "unknown_peer"),
            (3, "denied"),
            (4, "not_authorized"),
            (5, "frame_too_large"),
            (6, "malformed"),
            (7, "timeout"),
            (8, "overloaded"),
            (9, "identity_mismatch"),
            (10, "internal"),
            (11, "trust_revoked"),
            (12, "shutting_down"),
            (13, "removed"),
            (14, "not_primary"),
            (15, "diverged"),
        ]
    );
    // An unknown code is malformed, not a panic.
    let bytes = unhex("0000001a 01000000 6300 0c00000000000000 756e6b6e6f776e5f70656572");
    assert!(matches!(
        decode_framed::<ServerFrame>(&bytes, MAX),
        Err(WireError::Malformed(_))
    ));
}

#[test]
fn bad_frames_are_refused() {
    // Unknown variant index.
    let bytes = unhex("00000004 09000000");
    assert!(matches!(
        decode_framed::<ClientFrame>(&bytes, MAX),
        Err(WireError::Malformed(_))
    ));
    // A string claiming 2^62 bytes: refused by the size limit, nothing allocated.
    let bytes = unhex("00000014 02000000 0700000000000000 0000000000000040");
    assert!(decode_framed::<ClientFrame>(&bytes, MAX).is_err());
    // Trailing bytes after the message.
    let bytes = unhex("0000000d 01000000 0201000000000000 00");
    assert!(matches!(
        decode_framed::<ClientFrame>(&bytes, MAX),
        Err(WireError::Malformed(_))
    ));
    // Oversize and truncated frames.
    assert!(matches!(
        decode_framed::<ClientFrame>(&unhex("7fffffff 01"), MAX),
        Err(WireError::TooLarge { .. })
    ));
    assert!(matches!(
        decode_framed::<ClientFrame>(&unhex("0000000c 01000000 02"), MAX),
        Err(WireError::Truncated { .. })
    ));
}

/// The bytes of every golden frame above appear in `docs/protocol.md`, so the document a telco
/// implements from cannot drift from the code.
#[test]
fn the_protocol_doc_shows_every_golden_frame() {
    let source = include_str!("golden.rs");
    let doc = include_str!("../../docs/protocol.md");
    // The bytes of each code block, in order: on each line, the leading run of two-digit hex
    // tokens, or after a label (`Ping  nonce 0x0102:`) the longest run; annotations are text.
    let is_byte = |t: &str| t.len() == 2 && t.bytes().all(|b| b.is_ascii_hexdigit());
    let mut streams = Vec::new();
    for (i, block) in doc.split("```").enumerate() {
        if i % 2 == 0 {
            continue;
        }
        let mut stream = String::new();
        for line in block.lines() {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            let run = |k: usize| tokens[k..].iter().take_while(|t| is_byte(t)).count();
            let start = if tokens.first().is_some_and(|t| is_byte(t)) {
                Some(0)
            } else {
                (0..tokens.len())
                    .filter(|&k| run(k) >= 2)
                    .max_by_key(|&k| (run(k), k))
            };
            if let Some(start) = start {
                tokens[start..]
                    .iter()
                    .take_while(|t| is_byte(t))
                    .for_each(|t| stream.push_str(t));
            }
        }
        streams.push(stream.to_ascii_lowercase());
    }
    let mut checked = 0;
    let calls = source
        .split("check_client(")
        .skip(1)
        .chain(source.split("check_server(").skip(1));
    for call in calls {
        let body = call.split("#[test]").next().unwrap_or_default();
        let golden = body
            .split('"')
            .skip(1)
            .step_by(2)
            .map(|lit| lit.split_whitespace().collect::<String>())
            .find(|lit| lit.len() >= 16 && lit.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(golden) = golden else { continue };
        checked += 1;
        assert!(
            streams.iter().any(|s| s.contains(&golden)),
            "docs/protocol.md does not show the golden frame {golden}"
        );
    }
    assert!(checked >= 8, "only {checked} golden frames found");
}

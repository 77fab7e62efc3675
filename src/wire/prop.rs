//! Property tests: the decoder never panics on random bytes; encode then decode is the identity.

use proptest::prelude::*;

use super::codec::{decode_framed, encode_framed};
use super::{
    frame, ClientFrame, ErrorCode, Hello, HelloAck, Ping, Pong, Refusal, Request, Response, Role,
    ServerFrame,
};

const MAX: u32 = 1 << 16;

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9-]{0,20}"
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        (
            name(),
            name(),
            name(),
            any::<bool>(),
            prop::collection::vec(name(), 0..4),
            any::<u64>()
        )
            .prop_map(|(federation, site, node, standby, versions, features)| {
                ClientFrame::Hello(Hello {
                    federation,
                    site,
                    node,
                    role: if standby {
                        Role::Standby
                    } else {
                        Role::Partner
                    },
                    versions,
                    features,
                })
            }),
        any::<u64>().prop_map(|nonce| ClientFrame::Ping(Ping { nonce })),
        (any::<u64>(), prop::collection::vec(any::<u8>(), 0..256))
            .prop_map(|(id, body)| ClientFrame::Request(Request { id, body })),
    ]
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    prop_oneof![
        (name(), name(), name(), any::<u64>()).prop_map(|(version, site, node, features)| {
            ServerFrame::HelloAck(HelloAck {
                version,
                federation: "eu".into(),
                site,
                node,
                features,
            })
        }),
        prop::sample::select(ErrorCode::ALL.to_vec())
            .prop_map(|c| ServerFrame::Refusal(Refusal::new(c))),
        any::<u64>().prop_map(|nonce| ServerFrame::Pong(Pong { nonce })),
        (any::<u64>(), prop::collection::vec(any::<u8>(), 0..256))
            .prop_map(|(id, body)| ServerFrame::Response(Response { id, body })),
        (any::<u64>(), prop::sample::select(ErrorCode::ALL.to_vec()))
            .prop_map(|(id, c)| ServerFrame::error(id, c)),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_framed::<ClientFrame>(&bytes, MAX);
        let _ = decode_framed::<ServerFrame>(&bytes, MAX);
        let _ = frame::decode_frame(&bytes, MAX);
    }

    #[test]
    fn random_payloads_never_panic(payload in prop::collection::vec(any::<u8>(), 0..512)) {
        // A valid prefix in front of random bytes reaches the message decoder.
        let framed = frame::encode_frame(&payload, MAX).unwrap();
        let _ = decode_framed::<ClientFrame>(&framed, MAX);
        let _ = decode_framed::<ServerFrame>(&framed, MAX);
    }

    #[test]
    fn client_frames_round_trip(f in client_frame()) {
        let bytes = encode_framed(&f, MAX).unwrap();
        prop_assert_eq!(decode_framed::<ClientFrame>(&bytes, MAX).unwrap(), f);
    }

    #[test]
    fn server_frames_round_trip(f in server_frame()) {
        let bytes = encode_framed(&f, MAX).unwrap();
        prop_assert_eq!(decode_framed::<ServerFrame>(&bytes, MAX).unwrap(), f);
    }
}

//! Random bytes into the frame and message decoders: errors are fine, panics are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ttx::wire::codec::decode_framed;
use ttx::wire::{decode_frame, ClientFrame, ServerFrame};

const MAX: u32 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let _ = decode_frame(data, MAX);
    let _ = decode_framed::<ClientFrame>(data, MAX);
    let _ = decode_framed::<ServerFrame>(data, MAX);
});

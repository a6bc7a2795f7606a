//! Response parsing on the client side, fed in arbitrary pieces: no panic,
//! only documented errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_proto::{BytesMut, ClientRequest, Decoded};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else { return };
    let mut out = BytesMut::new();
    let mut handshake = ClientRequest::new("example.com", "/")
        .key("dGhlIHNhbXBsZSBub25jZQ==")
        .protocol("chat")
        .write(&mut out);
    let step = usize::from(cut) + 1;
    let mut end = 0;
    while end < data.len() {
        end = (end + step).min(data.len());
        match handshake.parse_response(&data[..end]) {
            Ok(Decoded::NeedMore(_)) => {}
            Ok(Decoded::Done { consumed, .. }) => {
                assert!(consumed <= end);
                return;
            }
            Err(_) => return,
        }
    }
});

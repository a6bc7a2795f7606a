//! Response parsing on the client side, fed in arbitrary pieces: no panic,
//! only documented errors, and the same result however the input is split
//! (a rejection's body arriving in a later read must not be lost).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_proto::{BytesMut, ClientHandshake, ClientRequest, Decoded};

fn handshake() -> ClientHandshake {
    ClientRequest::new("example.com", "/")
        .key("dGhlIHNhbXBsZSBub25jZQ==")
        .protocol("chat")
        .write(&mut BytesMut::new())
        .expect("valid request")
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else { return };
    let whole = handshake().parse_response(data);
    let mut pieces = handshake();
    let step = usize::from(cut) + 1;
    let mut end = 0;
    let split = loop {
        end = (end + step).min(data.len());
        let result = pieces.parse_response(&data[..end]);
        if end == data.len() || !matches!(result, Ok(Decoded::NeedMore(_))) {
            break result;
        }
    };
    if let Ok(Decoded::Done { consumed, .. }) = &split {
        assert!(*consumed <= data.len());
    }
    match (&whole, &split) {
        (Ok(Decoded::NeedMore(_)), Ok(Decoded::NeedMore(_))) => {}
        _ => assert_eq!(whole, split, "split every {step} bytes"),
    }
});

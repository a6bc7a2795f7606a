//! Request parsing, fed in arbitrary pieces: no panic, a documented error
//! with an HTTP status, and a head never longer than the limits allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_proto::{Decoded, RequestLimits, RequestParser, validate_request};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else { return };
    let limits = RequestLimits::default();
    let cap = limits.max_request_line + 2 + limits.max_headers_size;
    let mut parser = RequestParser::new(limits);
    let step = usize::from(cut) + 1;
    let mut end = 0;
    while end < data.len() {
        end = (end + step).min(data.len());
        match parser.parse(&data[..end]) {
            Ok(Decoded::NeedMore(_)) => assert!(end <= cap),
            Ok(Decoded::Done { value, consumed }) => {
                assert!(consumed <= end && consumed <= cap);
                if let Err(error) = validate_request(&value) {
                    let _ = error.rejection();
                }
                return;
            }
            Err(error) => {
                assert!(error.status().is_client_error() || error.status().is_server_error());
                return;
            }
        }
    }
});

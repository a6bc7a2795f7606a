//! A server connection fed arbitrary bytes in arbitrary pieces: no panic,
//! and after an error the connection is closed and owes a close frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_proto_fuzz_common::drive;

mod ws_proto_fuzz_common {
    include!("common.rs");
}

fuzz_target!(|data: &[u8]| drive(ws_proto::Role::Server, data));

//! Header decoding: any input decodes, asks for more, or fails with one of
//! the two documented header errors; a decoded header re-encodes to a
//! prefix-equivalent header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_proto::{BytesMut, Decoded, FrameHeader, MAX_HEADER_LEN, ProtocolError};

fuzz_target!(|data: &[u8]| {
    match FrameHeader::decode(data) {
        Ok(Decoded::NeedMore(n)) => assert!(n > 0 && data.len() + n <= MAX_HEADER_LEN),
        Ok(Decoded::Done { value, consumed }) => {
            assert!(consumed <= MAX_HEADER_LEN && consumed <= data.len());
            let mut out = BytesMut::new();
            value.encode(&mut out);
            // Shortest form: never longer than what was decoded.
            assert!(out.len() <= consumed);
            assert_eq!(
                FrameHeader::decode(&out),
                Ok(Decoded::Done { value, consumed: out.len() })
            );
        }
        Err(ProtocolError::ReservedOpcode(_) | ProtocolError::InvalidPayloadLength) => {}
        Err(other) => panic!("undocumented header error {other:?}"),
    }
});

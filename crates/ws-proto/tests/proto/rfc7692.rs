//! RFC 7692, permessage-deflate: the section 7.2.3 examples byte for
//! byte, the RSV1 rules of section 6, context takeover, and the bounds
//! against decompression bombs and corrupt data.

use bytes::BytesMut;
use ws_proto::{
    Config, Connection, DeflateParams, Message, PerMessageDeflate, ProtocolError, Role,
};
use zlib_rs::{Deflate, DeflateFlush};

use super::{RFC_KEY, assert_fails, client_frame, frame, receive};

fn params(server_nct: bool, client_nct: bool, server_bits: u8, client_bits: u8) -> DeflateParams {
    let offer = PerMessageDeflate::default()
        .server_no_context_takeover(server_nct)
        .client_no_context_takeover(client_nct)
        .server_max_window_bits(server_bits)
        .client_max_window_bits(client_bits);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::SEC_WEBSOCKET_EXTENSIONS,
        offer.offer().parse().unwrap(),
    );
    PerMessageDeflate::default()
        .client_max_window_bits(client_bits)
        .accept(&headers)
        .expect("accepted")
}

fn pair(params: DeflateParams, config: Config) -> (Connection, Connection) {
    let client = Connection::builder(Role::Client)
        .config(config.clone())
        .mask_keys(|| RFC_KEY)
        .deflate(Some(params))
        .build();
    let server = Connection::builder(Role::Server)
        .config(config)
        .deflate(Some(params))
        .build();
    (client, server)
}

fn deflating_server() -> Connection {
    Connection::builder(Role::Server)
        .deflate(Some(DeflateParams::default()))
        .build()
}

fn deflating_client() -> Connection {
    Connection::builder(Role::Client)
        .mask_keys(|| RFC_KEY)
        .deflate(Some(DeflateParams::default()))
        .build()
}

/// Section 7.2.3.1: "Hello" compressed, in one frame, and in two.
#[test]
fn section_7_2_3_1_a_message_compressed_using_one_deflate_block() {
    let mut client = deflating_client();
    let wire = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(
        receive(&mut client, &wire).unwrap(),
        [Message::text("Hello")]
    );

    let mut client = deflating_client();
    let first = [0x41, 0x03, 0xf2, 0x48, 0xcd];
    let second = [0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(receive(&mut client, &first).unwrap(), []);
    assert_eq!(
        receive(&mut client, &second).unwrap(),
        [Message::text("Hello")]
    );
}

/// Section 7.2.3.2: the second "Hello" refers back into the first.
#[test]
fn section_7_2_3_2_sharing_the_lz77_sliding_window() {
    let mut client = deflating_client();
    let wire = [
        0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, // first
        0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00, // second
    ];
    let hello = Message::text("Hello");
    assert_eq!(receive(&mut client, &wire).unwrap(), [hello.clone(), hello]);
}

/// Sections 7.2.3.3 to 7.2.3.5: a stored block, a block with BFINAL set,
/// and two blocks in one message.
#[test]
fn section_7_2_3_other_block_shapes() {
    for wire in [
        &[
            0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ][..],
        &[0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00][..],
        &[
            0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07,
            0x00,
        ][..],
    ] {
        let mut client = deflating_client();
        assert_eq!(
            receive(&mut client, wire).unwrap(),
            [Message::text("Hello")],
            "{wire:x?}"
        );
        // After a final block, the next message starts a fresh stream.
        let again = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(
            receive(&mut client, &again).unwrap(),
            [Message::text("Hello")]
        );
    }
}

/// Section 6.1: RSV1 only on the first frame of a data message, and only
/// once the extension was negotiated.
#[test]
fn section_6_1_rsv1_only_on_a_data_messages_first_frame() {
    // Without negotiation (RFC 6455 section 5.2).
    let mut server = Connection::new(Role::Server, Config::default());
    let mut wire = client_frame(true, 0x1, b"hi");
    wire[0] |= 0x40;
    assert_fails(&mut server, &wire, ProtocolError::ReservedBits);

    // On a control frame.
    let mut wire = client_frame(true, 0x9, b"");
    wire[0] |= 0x40;
    assert_fails(&mut deflating_server(), &wire, ProtocolError::ReservedBits);

    // On a continuation frame.
    let mut server = deflating_server();
    let mut wire = client_frame(false, 0x1, b"a");
    let mut second = client_frame(true, 0x0, b"b");
    second[0] |= 0x40;
    wire.extend_from_slice(&second);
    assert_fails(&mut server, &wire, ProtocolError::ReservedBits);

    // RSV2 and RSV3 mean nothing to permessage-deflate.
    for bit in [0x20, 0x10] {
        let mut wire = client_frame(true, 0x1, b"a");
        wire[0] |= bit;
        assert_fails(&mut deflating_server(), &wire, ProtocolError::ReservedBits);
    }

    // A message without RSV1 is taken as it is.
    let mut server = deflating_server();
    let wire = client_frame(true, 0x1, b"plain");
    assert_eq!(
        receive(&mut server, &wire).unwrap(),
        [Message::text("plain")]
    );
}

/// Section 7.2.1 both ways, for every mix of context takeover and window
/// sizes: what one end compresses the other inflates, text and binary,
/// small (sent plain, under the threshold) to 1 MiB.
#[test]
fn section_7_2_1_round_trips_with_each_parameter_set() {
    let text: String = (0..40_000)
        .map(|i| format!("{{\"id\":{i},\"name\":\"user{}\"}}", i % 97))
        .collect();
    let binary: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();
    let messages = [
        Message::text("tiny"),
        Message::text(text[..200].to_owned()),
        Message::text(text.clone()),
        Message::binary(binary),
        Message::text(text[..5000].to_owned()),
    ];
    for (server_nct, client_nct, server_bits, client_bits) in [
        (false, false, 15, 15),
        (true, true, 15, 15),
        (false, true, 12, 10),
        (true, false, 9, 9),
        (false, false, 8, 8),
    ] {
        let params = params(server_nct, client_nct, server_bits, client_bits);
        let (mut client, mut server) = pair(params, Config::default());
        for message in &messages {
            for client_sends in [true, false] {
                let (from, to) = if client_sends {
                    (&mut client, &mut server)
                } else {
                    (&mut server, &mut client)
                };
                for _ in 0..2 {
                    let mut wire = BytesMut::new();
                    from.send(message, &mut wire).unwrap();
                    let compressed = wire[0] & 0x40 != 0;
                    let len = message.clone().into_data().len();
                    assert_eq!(compressed, len >= 128, "{params:?}");
                    assert_eq!(
                        receive(to, &wire).unwrap(),
                        std::slice::from_ref(message),
                        "{params:?}"
                    );
                }
            }
        }
    }
}

/// A message compressed with context takeover refers back into earlier
/// ones: the second copy is much smaller than the first. Without it, each
/// message stands alone and both copies are the same bytes.
#[test]
fn section_7_1_1_context_takeover_is_honoured_or_reset() {
    let message = Message::text("{\"event\":\"tick\",\"payload\":\"".repeat(20) + "\"}");
    for (reset, expect_same) in [(false, false), (true, true)] {
        let (_, mut server) = pair(params(reset, reset, 15, 15), Config::default());
        let mut first = BytesMut::new();
        server.send(&message, &mut first).unwrap();
        let mut second = BytesMut::new();
        server.send(&message, &mut second).unwrap();
        assert_eq!(first == second, expect_same);
        if !expect_same {
            assert!(
                second.len() * 2 < first.len(),
                "{} then {}",
                first.len(),
                second.len()
            );
        }
    }
}

#[test]
fn a_message_can_be_sent_uncompressed() {
    let (mut client, mut server) = pair(DeflateParams::default(), Config::default());
    let message = Message::binary(vec![7u8; 4096]);
    let mut wire = BytesMut::new();
    server.send_uncompressed(&message, &mut wire).unwrap();
    assert_eq!(wire[0], 0x82);
    assert_eq!(wire.len(), 4 + 4096);
    assert_eq!(
        receive(&mut client, &wire).unwrap(),
        std::slice::from_ref(&message)
    );
    // The next one is compressed again.
    let mut wire = BytesMut::new();
    server.send(&message, &mut wire).unwrap();
    assert_eq!(wire[0], 0xc2);
}

/// One DEFLATE block that inflates to 1 MiB of zeros on its own (a full
/// flush: it refers to nothing before it), so that repeating it makes a
/// valid stream of any size: a bomb.
fn bomb_block() -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut deflate = Deflate::new(9, false, 15);
    let mut out = vec![0u8; 64 * 1024];
    deflate
        .compress(&zeros, &mut out, DeflateFlush::FullFlush)
        .unwrap();
    assert_eq!(deflate.total_in(), 1 << 20);
    out.truncate(deflate.total_out() as usize);
    out
}

/// Section 8.1 leaves bounds to the endpoint: the inflated size counts
/// against `max_message_size`, checked inside the inflate loop, so 256 MiB
/// inflated from a few hundred KiB fails with 1009 at the limit, in one
/// frame or spread over 64 continuation frames.
#[test]
fn section_8_1_a_bomb_fails_with_1009_at_the_limit() {
    let block = bomb_block();
    let bomb: Vec<u8> = block.repeat(256);
    assert!(bomb.len() < 512 * 1024, "{} bytes", bomb.len());
    let limit = 4 << 20;
    let config = Config::default().max_message_size(limit);
    let too_large = |error: ProtocolError| match error {
        ProtocolError::MessageTooLarge { size, limit: l } => {
            assert_eq!(l, limit);
            // At most one chunk past the limit was ever inflated.
            assert!(size as usize <= limit + 1, "{size}");
        }
        other => panic!("expected 1009, got {other:?}"),
    };

    let mut server = Connection::builder(Role::Server)
        .config(config.clone())
        .deflate(Some(DeflateParams::default()))
        .build();
    let mut wire = client_frame(true, 0x2, &bomb);
    wire[0] |= 0x40;
    too_large(receive(&mut server, &wire).unwrap_err());

    let mut server = Connection::builder(Role::Server)
        .config(config)
        .deflate(Some(DeflateParams::default()))
        .build();
    let chunk = bomb.len().div_ceil(64);
    let pieces: Vec<&[u8]> = bomb.chunks(chunk).collect();
    let mut wire = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 { 0x2 } else { 0x0 };
        let mut frame = client_frame(i + 1 == pieces.len(), opcode, piece);
        if i == 0 {
            frame[0] |= 0x40;
        }
        wire.extend_from_slice(&frame);
    }
    too_large(receive(&mut server, &wire).unwrap_err());
}

/// A message exactly at the limit once inflated is delivered.
#[test]
fn section_8_1_a_message_at_the_limit_inflates() {
    let block = bomb_block();
    let config = Config::default().max_message_size(1 << 20);
    let mut client = Connection::builder(Role::Client)
        .config(config)
        .deflate(Some(DeflateParams::default()))
        .build();
    let mut wire = frame(true, 0x2, None, &block);
    wire[0] |= 0x40;
    let messages = receive(&mut client, &wire).unwrap();
    assert_eq!(messages, [Message::binary(vec![0u8; 1 << 20])]);
}

/// Data that is not DEFLATE fails with 1007; so does text that inflates
/// to invalid UTF-8.
#[test]
fn section_8_corrupt_data_fails_with_1007() {
    let mut wire = client_frame(true, 0x2, &[0xff, 0xff, 0xff, 0xff, 0x00]);
    wire[0] |= 0x40;
    assert_fails(
        &mut deflating_server(),
        &wire,
        ProtocolError::InvalidCompressedData,
    );

    // A stored block holding 0xff 0xfe, as text.
    let mut wire = client_frame(true, 0x1, &[0x00, 0x02, 0x00, 0xfd, 0xff, 0xff, 0xfe]);
    wire[0] |= 0x40;
    assert_fails(&mut deflating_server(), &wire, ProtocolError::InvalidUtf8);
}

/// Whatever the bytes, a compressed frame never panics: every truncation
/// and corruption of a valid compressed message is either a message or
/// an error.
#[test]
fn section_8_mangled_compressed_messages_never_panic() {
    let (_, mut sender) = pair(DeflateParams::default(), Config::default());
    let mut wire = BytesMut::new();
    let text = "all work and no play makes a dull socket ".repeat(50);
    sender.send(&Message::text(text), &mut wire).unwrap();
    let start = if wire[1] & 0x7f < 126 { 2 } else { 4 };
    let payload = &wire[start..];
    for i in 0..payload.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut mangled = payload.to_vec();
            mangled[i] ^= flip;
            let mut frame = frame(true, 0x1, None, &mangled);
            frame[0] |= 0x40;
            let _ = receive(&mut deflating_client(), &frame);
        }
        let mut frame = frame(true, 0x1, None, &payload[..i]);
        frame[0] |= 0x40;
        let _ = receive(&mut deflating_client(), &frame);
    }
}

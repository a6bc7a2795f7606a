//! Property tests: round trips with every split of the input, arbitrary
//! frames decoded whole and byte by byte, and the fast mask against the
//! reference.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use ws_proto::{
    Config, Connection, Message, Role, Utf8Validator, apply_mask_at, apply_mask_reference,
};

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        ".{0,40}".prop_map(Message::text),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Message::binary),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(|d| Message::Ping(Bytes::from(d))),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(|d| Message::Pong(Bytes::from(d))),
    ]
}

fn decode_in_two(wire: &[u8], split: usize, role: Role) -> Vec<Message> {
    let mut conn = Connection::builder(role).config(Config::default()).build();
    let mut messages = Vec::new();
    for part in [&wire[..split], &wire[split..]] {
        conn.handle_bytes(part);
        while let Some(message) = conn.poll_message().unwrap() {
            messages.push(message);
        }
    }
    messages
}

/// A frame of any kind, well-formed or not, for a connection in `role`:
/// any first byte (FIN, RSV and opcode), masked or not, with a payload that is often valid UTF-8 and
/// sometimes not, and short enough to need no extended length unless it
/// passes 125 bytes.
fn raw_frame(role: Role) -> impl Strategy<Value = Vec<u8>> {
    let b0 = prop_oneof![
        4 => prop_oneof![Just(0x81u8), Just(0x82)],
        1 => prop_oneof![Just(0x01u8), Just(0x02), Just(0x00), Just(0x80), Just(0x89), Just(0x8A)],
        1 => any::<u8>(),
    ];
    let payload = prop_oneof![
        ".{0,20}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..130),
    ];
    // Mostly masked as the role expects (a server, masked frames).
    let masked = prop::bool::weighted(if role == Role::Server { 0.9 } else { 0.1 });
    (b0, payload, masked, any::<[u8; 4]>()).prop_map(|(b0, payload, masked, key)| {
        let mut frame = vec![b0];
        let mask_bit = if masked { 0x80 } else { 0 };
        if payload.len() <= 125 {
            frame.push(mask_bit | payload.len() as u8);
        } else {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        if masked {
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            frame.extend_from_slice(&payload);
        }
        frame
    })
}

/// What a connection makes of `wire` fed in pieces of at most `piece`
/// bytes, after sending a close frame of its own if `closing`: each
/// message, or the close code of the error that ended it, then the frames
/// it wrote in answer.
fn outcome(
    wire: &[u8],
    piece: usize,
    role: Role,
    config: &Config,
    closing: bool,
) -> (Vec<Result<Message, u16>>, BytesMut) {
    let mut conn = Connection::builder(role)
        .config(config.clone())
        .mask_keys(|| [1, 2, 3, 4])
        .build();
    let mut out = BytesMut::new();
    if closing {
        conn.close(None, &mut out).unwrap();
    }
    let mut results = Vec::new();
    for part in wire.chunks(piece) {
        conn.handle_bytes(part);
        loop {
            match conn.poll_message() {
                Ok(Some(message)) => results.push(Ok(message)),
                Ok(None) => break,
                Err(error) => results.push(Err(error.close_code().0)),
            }
        }
    }
    conn.poll_transmit(&mut out);
    (results, out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Frames that arrive whole (taken in one step when short and simple)
    /// and the same frames one byte at a time (always through the general
    /// path) give the same messages, the same error and the same answer.
    #[test]
    fn arbitrary_frames_decode_alike_whole_and_byte_by_byte(
        (role, frames) in prop_oneof![Just(Role::Server), Just(Role::Client)].prop_flat_map(|role| {
            (Just(role), proptest::collection::vec(raw_frame(role), 1..6))
        }),
        frame_limit in prop_oneof![Just(usize::MAX), 0usize..140],
        message_limit in prop_oneof![Just(usize::MAX), 1usize..140],
        closing in prop::bool::weighted(0.2),
    ) {
        let wire = frames.concat();
        let config = Config::default()
            .max_frame_size(frame_limit)
            .max_message_size(message_limit);
        prop_assert_eq!(
            outcome(&wire, wire.len(), role, &config, closing),
            outcome(&wire, 1, role, &config, closing)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn encode_then_decode_at_every_split(messages in proptest::collection::vec(message(), 1..4)) {
        for (sender, receiver) in [(Role::Client, Role::Server), (Role::Server, Role::Client)] {
            let mut conn = Connection::new(sender, Config::default());
            let mut wire = BytesMut::new();
            for message in &messages {
                conn.send(message, &mut wire).unwrap();
            }
            for split in 0..=wire.len() {
                prop_assert_eq!(&decode_in_two(&wire, split, receiver), &messages);
            }
        }
    }

    #[test]
    fn fast_mask_equals_reference(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        key in any::<[u8; 4]>(),
        offset in 0usize..8,
        start in 0usize..16,
    ) {
        let start = start.min(data.len());
        let mut fast = data.clone();
        let mut reference = data;
        apply_mask_at(&mut fast[start..], key, offset);
        apply_mask_reference(&mut reference[start..], key, offset);
        prop_assert_eq!(fast, reference);
    }

    #[test]
    fn incremental_utf8_agrees_with_std_at_every_split(
        bytes in proptest::collection::vec(any::<u8>(), 0..12),
        text in ".{0,6}",
    ) {
        // Mix valid text with arbitrary bytes so that both outcomes occur.
        let mut input = text.into_bytes();
        input.extend_from_slice(&bytes[..bytes.len() / 2]);
        let expected = std::str::from_utf8(&input).is_ok();
        for split in 0..=input.len() {
            let mut validator = Utf8Validator::new();
            let ok = validator.feed(&input[..split]).is_ok()
                && validator.feed(&input[split..]).is_ok()
                && validator.finish().is_ok();
            prop_assert_eq!(ok, expected, "split at {}", split);
        }
    }
}

#[test]
fn fast_mask_equals_reference_for_every_length_and_alignment() {
    let key = [0x12, 0x34, 0x56, 0x78];
    let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
    for start in 0..8 {
        for len in 0..data.len() - start {
            for offset in 0..4 {
                let mut fast = data.clone();
                let mut reference = data.clone();
                apply_mask_at(&mut fast[start..start + len], key, offset);
                apply_mask_reference(&mut reference[start..start + len], key, offset);
                assert_eq!(fast, reference, "start {start} len {len} offset {offset}");
            }
        }
    }
}

/// A server's answer to the opening request: a 101 that may be followed by
/// frames, or a rejection with a body, with or without `Content-Length`,
/// with CRLF or bare LF line endings, or bytes that are not HTTP at all.
fn response_bytes() -> impl Strategy<Value = Vec<u8>> {
    let accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    let head = prop_oneof![
        Just(format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
        )),
        (100u16..600, 0usize..3000).prop_map(|(status, len)| format!(
            "HTTP/1.1 {status} Whatever\r\nContent-Length: {len}\r\n"
        )),
        Just("HTTP/1.1 403 Forbidden\r\nX-Why: no\r\n".to_owned()),
    ];
    let lf = any::<bool>();
    let tail = proptest::collection::vec(any::<u8>(), 0..3000);
    let garbage = proptest::collection::vec(any::<u8>(), 0..200);
    prop_oneof![
        8 => (head, lf, tail).prop_map(|(head, lf, tail)| {
            let mut head = format!("{head}\r\n");
            if lf {
                head = head.replace("\r\n", "\n");
            }
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&tail);
            bytes
        }),
        1 => garbage,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Issue 25, item 1: the client's response parser gives the same result
    /// whole and fed in pieces of any size (a rejection's body arriving in
    /// a later read included).
    #[test]
    fn response_parsing_is_the_same_however_the_input_is_split(
        bytes in response_bytes(),
        step in 1usize..2000,
    ) {
        let fresh = || {
            ws_proto::ClientRequest::new("example.com", "/")
                .key("dGhlIHNhbXBsZSBub25jZQ==")
                .write(&mut BytesMut::new())
                .unwrap()
        };
        let whole = fresh().parse_response(&bytes);
        let mut pieces = fresh();
        let mut end = 0;
        let split = loop {
            end = (end + step).min(bytes.len());
            let result = pieces.parse_response(&bytes[..end]);
            if end == bytes.len() || !matches!(result, Ok(ws_proto::Decoded::NeedMore(_))) {
                break result;
            }
        };
        match (&whole, &split) {
            (Ok(ws_proto::Decoded::NeedMore(_)), Ok(ws_proto::Decoded::NeedMore(_))) => {}
            _ => prop_assert_eq!(whole, split),
        }
    }
}

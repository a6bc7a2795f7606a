//! Property tests: round trips with every split of the input, and the fast
//! mask against the reference.

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

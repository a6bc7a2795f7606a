//! RFC 6455 sections 5 (framing), 7 (closing) and 8 (errors).

use bytes::{Bytes, BytesMut};
use ws_proto::{
    CloseCode, CloseFrame, Config, Connection, Decoded, FrameHeader, Message, OpCode,
    ProtocolError, Role, SendError, State,
};

use super::{RFC_KEY, assert_fails, client, client_frame, frame, receive, server, transmit};

fn sent(conn: &mut Connection, message: Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    conn.send(&message, &mut out).unwrap();
    out.to_vec()
}

mod section_5_7_examples {
    use super::*;

    #[test]
    fn single_frame_unmasked_text() {
        let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(sent(&mut server(), Message::text("Hello")), bytes);
        assert_eq!(
            receive(&mut client(), &bytes),
            Ok(vec![Message::text("Hello")])
        );
    }

    #[test]
    fn single_frame_masked_text() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(sent(&mut client(), Message::text("Hello")), bytes);
        assert_eq!(
            receive(&mut server(), &bytes),
            Ok(vec![Message::text("Hello")])
        );
    }

    #[test]
    fn fragmented_unmasked_text() {
        let bytes = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(
            receive(&mut client(), &bytes),
            Ok(vec![Message::text("Hello")])
        );
    }

    #[test]
    fn unmasked_ping_and_masked_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut client = client();
        assert_eq!(
            receive(&mut client, &ping),
            Ok(vec![Message::Ping(Bytes::from_static(b"Hello"))])
        );
        // Section 5.5.3: "A Pong frame sent in response to a Ping frame must
        // have identical "Application data" as found in the message body of
        // the Ping frame being replied to."
        assert_eq!(transmit(&mut client), pong);
    }

    #[test]
    fn binary_256_bytes_uses_16_bit_length() {
        let payload = vec![7u8; 256];
        let out = sent(&mut server(), Message::binary(payload.clone()));
        assert_eq!(&out[..4], &[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(&out[4..], &payload[..]);
    }

    #[test]
    fn binary_64_kib_uses_64_bit_length() {
        let payload = vec![9u8; 65536];
        let out = sent(&mut server(), Message::binary(payload.clone()));
        assert_eq!(&out[..10], &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(
            receive(&mut client(), &out),
            Ok(vec![Message::binary(payload)])
        );
    }
}

mod section_5_2_base_framing {
    use super::*;

    #[test]
    fn header_decode_says_how_many_bytes_it_needs() {
        let bytes = frame(true, 0x2, Some(RFC_KEY), &[0; 300]);
        assert_eq!(FrameHeader::decode(&[]), Ok(Decoded::NeedMore(2)));
        assert_eq!(FrameHeader::decode(&bytes[..1]), Ok(Decoded::NeedMore(1)));
        // 2 fixed + 2 length + 4 key = 8 bytes of header.
        assert_eq!(FrameHeader::decode(&bytes[..2]), Ok(Decoded::NeedMore(6)));
        assert_eq!(FrameHeader::decode(&bytes[..7]), Ok(Decoded::NeedMore(1)));
        let Ok(Decoded::Done { value, consumed }) = FrameHeader::decode(&bytes) else {
            panic!("complete header");
        };
        assert_eq!(consumed, 8);
        assert_eq!(value.payload_len, 300);
        assert_eq!(value.mask, Some(RFC_KEY));
        assert_eq!(value.opcode, OpCode::Binary);
        assert!(value.fin);
    }

    #[test]
    fn length_boundaries_7_16_64_bit() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let header = FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Binary,
                mask: None,
                payload_len: len,
            };
            let mut out = BytesMut::new();
            header.encode(&mut out);
            assert_eq!(out.len(), header_len, "length {len}");
            assert_eq!(header.encoded_len(), header_len);
            assert_eq!(
                FrameHeader::decode(&out),
                Ok(Decoded::Done {
                    value: header,
                    consumed: header_len
                })
            );
        }
    }

    #[test]
    fn payload_length_with_most_significant_bit_set_is_an_error() {
        let mut bytes = vec![0x82, 0x7F];
        bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(
            FrameHeader::decode(&bytes),
            Err(ProtocolError::InvalidPayloadLength)
        );
        assert_fails(&mut client(), &bytes, ProtocolError::InvalidPayloadLength);
    }

    #[test]
    fn reserved_opcodes_fail_with_1002() {
        for opcode in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let bytes = client_frame(true, opcode, b"");
            assert_fails(&mut server(), &bytes, ProtocolError::ReservedOpcode(opcode));
        }
    }

    #[test]
    fn reserved_bits_without_extension_fail_with_1002() {
        for rsv in [0x40, 0x20, 0x10] {
            let mut bytes = client_frame(true, 0x1, b"hi");
            bytes[0] |= rsv;
            assert_fails(&mut server(), &bytes, ProtocolError::ReservedBits);
        }
    }

    #[test]
    fn limits_are_checked_from_the_header_before_the_payload_arrives() {
        let config = Config::default().max_frame_size(1000);
        let mut conn = Connection::new(Role::Server, config);
        // Only the header of a 1001-byte frame: no payload has arrived.
        let header = &client_frame(true, 0x2, &[0; 1001])[..8];
        assert_fails(
            &mut conn,
            header,
            ProtocolError::FrameTooLarge {
                size: 1001,
                limit: 1000,
            },
        );
    }
}

mod section_5_1_masking_rules {
    use super::*;

    #[test]
    fn server_fails_on_unmasked_frame() {
        let bytes = frame(true, 0x1, None, b"hi");
        assert_fails(&mut server(), &bytes, ProtocolError::UnmaskedFrame);
    }

    #[test]
    fn client_fails_on_masked_frame() {
        let bytes = frame(true, 0x1, Some(RFC_KEY), b"hi");
        assert_fails(&mut client(), &bytes, ProtocolError::MaskedFrame);
    }

    #[test]
    fn client_masks_with_a_fresh_key_per_frame() {
        let mut keys = [[1, 2, 3, 4], [5, 6, 7, 8]].into_iter().cycle();
        let mut conn = Connection::builder(Role::Client)
            .mask_keys(move || keys.next().unwrap())
            .build();
        let first = sent(&mut conn, Message::text("a"));
        let second = sent(&mut conn, Message::text("a"));
        assert_eq!(&first[2..6], &[1, 2, 3, 4]);
        assert_eq!(&second[2..6], &[5, 6, 7, 8]);
        assert_eq!(first[6], b'a' ^ 1);
        assert_eq!(second[6], b'a' ^ 5);
    }

    #[test]
    fn default_client_keys_differ_between_frames() {
        let mut conn = Connection::new(Role::Client, Config::default());
        let keys: std::collections::HashSet<Vec<u8>> = (0..64)
            .map(|_| sent(&mut conn, Message::text(""))[2..6].to_vec())
            .collect();
        assert!(keys.len() > 60, "keys repeat: {}", keys.len());
    }
}

mod section_5_4_fragmentation {
    use super::*;

    #[test]
    fn fragments_are_assembled_in_order() {
        let mut bytes = client_frame(false, 0x2, b"ab");
        bytes.extend(client_frame(false, 0x0, b""));
        bytes.extend(client_frame(false, 0x0, b"cd"));
        bytes.extend(client_frame(true, 0x0, b"e"));
        assert_eq!(
            receive(&mut server(), &bytes),
            Ok(vec![Message::binary(&b"abcde"[..])])
        );
    }

    #[test]
    fn control_frames_between_fragments_are_handled_at_once() {
        let mut conn = server();
        let mut bytes = client_frame(false, 0x1, b"Hel");
        bytes.extend(client_frame(true, 0x9, b"p"));
        assert_eq!(
            receive(&mut conn, &bytes),
            Ok(vec![Message::Ping(Bytes::from_static(b"p"))])
        );
        assert_eq!(transmit(&mut conn), [0x8A, 0x01, b'p']);
        assert_eq!(
            receive(&mut conn, &client_frame(true, 0x0, b"lo")),
            Ok(vec![Message::text("Hello")])
        );
    }

    #[test]
    fn continuation_without_a_message_fails_with_1002() {
        let bytes = client_frame(true, 0x0, b"x");
        assert_fails(&mut server(), &bytes, ProtocolError::UnexpectedContinuation);
    }

    #[test]
    fn new_data_frame_inside_a_message_fails_with_1002() {
        let mut bytes = client_frame(false, 0x1, b"x");
        bytes.extend(client_frame(true, 0x2, b"y"));
        assert_fails(&mut server(), &bytes, ProtocolError::ExpectedContinuation);
    }

    #[test]
    fn empty_fragments_count_against_the_fragment_limit() {
        let config = Config::default().max_fragments(3);
        let mut conn = Connection::new(Role::Server, config);
        let mut bytes = client_frame(false, 0x1, b"");
        bytes.extend(client_frame(false, 0x0, b""));
        bytes.extend(client_frame(false, 0x0, b""));
        bytes.extend(client_frame(true, 0x0, b""));
        assert_fails(
            &mut conn,
            &bytes,
            ProtocolError::TooManyFragments { limit: 3 },
        );
    }

    #[test]
    fn message_limit_counts_every_fragment() {
        let config = Config::default().max_message_size(5);
        let mut conn = Connection::new(Role::Server, config);
        let mut bytes = client_frame(false, 0x2, b"abc");
        bytes.extend(client_frame(true, 0x0, b"def"));
        assert_fails(
            &mut conn,
            &bytes,
            ProtocolError::MessageTooLarge { size: 6, limit: 5 },
        );
    }
}

mod section_5_5_control_frames {
    use super::*;

    #[test]
    fn control_frame_over_125_bytes_fails_with_1002() {
        let bytes = client_frame(true, 0x9, &[0; 126]);
        assert_fails(
            &mut server(),
            &bytes,
            ProtocolError::ControlFrameTooLong(126),
        );
    }

    #[test]
    fn fragmented_control_frame_fails_with_1002() {
        let bytes = client_frame(false, 0x9, b"");
        assert_fails(&mut server(), &bytes, ProtocolError::FragmentedControlFrame);
    }

    #[test]
    fn only_the_latest_pong_is_kept() {
        let mut conn = server();
        let mut bytes = client_frame(true, 0x9, b"1");
        bytes.extend(client_frame(true, 0x9, b"2"));
        assert_eq!(receive(&mut conn, &bytes).unwrap().len(), 2);
        assert_eq!(transmit(&mut conn), [0x8A, 0x01, b'2']);
        assert_eq!(transmit(&mut conn), [] as [u8; 0]);
    }

    #[test]
    fn auto_pong_can_be_disabled() {
        let config = Config::default().auto_pong(false);
        let mut conn = Connection::new(Role::Server, config);
        let messages = receive(&mut conn, &client_frame(true, 0x9, b"x")).unwrap();
        assert_eq!(messages, vec![Message::Ping(Bytes::from_static(b"x"))]);
        assert!(!conn.has_pending_output());
    }

    #[test]
    fn pending_pong_leaves_before_the_next_sent_message() {
        let mut conn = server();
        receive(&mut conn, &client_frame(true, 0x9, b"p")).unwrap();
        assert_eq!(
            sent(&mut conn, Message::text("t")),
            [0x8A, 1, b'p', 0x81, 1, b't']
        );
    }

    #[test]
    fn sending_oversized_control_frames_is_refused() {
        let mut out = BytesMut::new();
        let ping = Message::Ping(Bytes::from(vec![0; 126]));
        assert_eq!(
            server().send(&ping, &mut out),
            Err(SendError::ControlFrameTooLong(126))
        );
        assert!(out.is_empty());
    }
}

mod section_8_1_utf8 {
    use super::*;

    #[test]
    fn invalid_utf8_in_a_single_frame_fails_with_1007() {
        let bytes = client_frame(true, 0x1, &[0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xff]);
        assert_fails(&mut server(), &bytes, ProtocolError::InvalidUtf8);
    }

    #[test]
    fn fails_at_the_first_invalid_fragment_not_at_the_end() {
        let mut conn = server();
        assert_eq!(
            receive(&mut conn, &client_frame(false, 0x1, "κό".as_bytes())),
            Ok(vec![])
        );
        // 0xF4 0x90 can never start a valid code point (above U+10FFFF).
        let error = receive(&mut conn, &client_frame(false, 0x0, &[0xf4, 0x90])).unwrap_err();
        assert_eq!(error, ProtocolError::InvalidUtf8);
    }

    #[test]
    fn fails_within_a_frame_whose_payload_has_not_fully_arrived() {
        let mut conn = server();
        let bytes = client_frame(true, 0x1, &[b'a', b'b', 0xff, b'c', b'd', b'e']);
        // Header and the first three payload bytes only.
        let error = receive(&mut conn, &bytes[..6 + 3]).unwrap_err();
        assert_eq!(error, ProtocolError::InvalidUtf8);
    }

    #[test]
    fn code_points_split_across_fragments_are_accepted() {
        let text = "€𝄞";
        let bytes = text.as_bytes();
        let mut conn = server();
        let mut wire = Vec::new();
        for (i, byte) in bytes.iter().enumerate() {
            let opcode = if i == 0 { 0x1 } else { 0x0 };
            wire.extend(client_frame(i == bytes.len() - 1, opcode, &[*byte]));
        }
        assert_eq!(receive(&mut conn, &wire), Ok(vec![Message::text(text)]));
    }

    #[test]
    fn message_ending_inside_a_code_point_fails_with_1007() {
        let bytes = client_frame(true, 0x1, &"€".as_bytes()[..2]);
        assert_fails(&mut server(), &bytes, ProtocolError::InvalidUtf8);
    }

    #[test]
    fn binary_messages_are_not_validated() {
        let bytes = client_frame(true, 0x2, &[0xff, 0xfe]);
        assert_eq!(
            receive(&mut server(), &bytes),
            Ok(vec![Message::binary(vec![0xff, 0xfe])])
        );
    }
}

mod section_5_5_1_and_7_close {
    use super::*;

    fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        payload
    }

    #[test]
    fn peer_close_is_answered_once_echoing_the_code() {
        let mut conn = server();
        let messages = receive(
            &mut conn,
            &client_frame(true, 0x8, &close_payload(1000, b"bye")),
        );
        assert_eq!(
            messages,
            Ok(vec![Message::Close(Some(CloseFrame::new(
                CloseCode::NORMAL,
                "bye"
            )))])
        );
        assert_eq!(conn.state(), State::Closed);
        assert_eq!(transmit(&mut conn), [0x88, 0x02, 0x03, 0xE8]);
        assert_eq!(transmit(&mut conn), [] as [u8; 0]);
        assert_eq!(conn.close_code(), CloseCode::NORMAL);
        let mut out = BytesMut::new();
        assert_eq!(
            conn.send(&Message::text("late"), &mut out),
            Err(SendError::Closed)
        );
    }

    #[test]
    fn answers_sent_after_the_peer_s_close_and_before_the_reply_go_ahead_of_it() {
        let mut conn = server();
        let mut bytes = client_frame(true, 0x1, b"ok");
        bytes.extend(client_frame(true, 0x8, &close_payload(1000, b"")));
        conn.handle_bytes(&bytes);
        assert_eq!(conn.poll_message(), Ok(Some(Message::text("ok"))));
        assert!(matches!(conn.poll_message(), Ok(Some(Message::Close(_)))));
        assert_eq!(conn.state(), State::Closed);
        // Section 5.5.1: an endpoint "MAY delay sending a Close frame until
        // its current message is sent". The answer to "ok" leaves first.
        let mut out = BytesMut::new();
        conn.send(&Message::text("ok"), &mut out).unwrap();
        assert!(conn.poll_transmit(&mut out));
        assert_eq!(&out[..], [0x81, 2, b'o', b'k', 0x88, 2, 0x03, 0xE8]);
        // Once the reply is out, nothing more, and no second close frame.
        assert_eq!(
            conn.send(&Message::text("late"), &mut out),
            Err(SendError::Closed)
        );
        assert_eq!(conn.close(None, &mut out), Err(SendError::Closed));
    }

    #[test]
    fn empty_close_is_answered_with_empty_close() {
        let mut conn = server();
        let messages = receive(&mut conn, &client_frame(true, 0x8, b"")).unwrap();
        assert_eq!(messages, vec![Message::Close(None)]);
        assert_eq!(transmit(&mut conn), [0x88, 0x00]);
        assert_eq!(conn.close_code(), CloseCode::NO_STATUS_RECEIVED);
    }

    #[test]
    fn one_byte_close_payload_fails_with_1002() {
        let bytes = client_frame(true, 0x8, &[0x03]);
        assert_fails(&mut server(), &bytes, ProtocolError::InvalidClosePayload);
    }

    #[test]
    fn invalid_close_codes_fail_with_1002() {
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let bytes = client_frame(true, 0x8, &close_payload(code, b""));
            assert_fails(&mut server(), &bytes, ProtocolError::InvalidCloseCode(code));
        }
    }

    #[test]
    fn valid_close_codes_are_accepted() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            let mut conn = server();
            let bytes = client_frame(true, 0x8, &close_payload(code, b""));
            let messages = receive(&mut conn, &bytes).unwrap();
            assert_eq!(
                messages,
                vec![Message::Close(Some(CloseFrame::new(CloseCode(code), "")))]
            );
        }
    }

    #[test]
    fn close_reason_that_is_not_utf8_fails_with_1002() {
        let bytes = client_frame(true, 0x8, &close_payload(1000, &[0xff]));
        assert_fails(&mut server(), &bytes, ProtocolError::InvalidCloseReason);
    }

    #[test]
    fn after_sending_close_data_is_ignored_until_the_peer_closes() {
        let mut conn = server();
        let mut out = BytesMut::new();
        conn.close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "")), &mut out)
            .unwrap();
        assert_eq!(&out[..], [0x88, 0x02, 0x03, 0xE9]);
        assert_eq!(conn.state(), State::Closing);
        assert!(conn.is_awaiting_close());
        let mut bytes = client_frame(true, 0x1, b"ignored");
        bytes.extend(client_frame(true, 0x8, &close_payload(1001, b"")));
        let messages = receive(&mut conn, &bytes).unwrap();
        assert_eq!(
            messages,
            vec![Message::Close(Some(CloseFrame::new(
                CloseCode::GOING_AWAY,
                ""
            )))]
        );
        assert_eq!(conn.state(), State::Closed);
        assert!(!conn.has_pending_output(), "no second close frame");
        assert_eq!(
            conn.send(&Message::text("x"), &mut out),
            Err(SendError::Closed)
        );
    }

    #[test]
    fn close_can_be_sent_once_and_only_with_a_sendable_code() {
        let mut conn = server();
        let mut out = BytesMut::new();
        assert_eq!(
            conn.close(Some(CloseFrame::new(CloseCode::ABNORMAL, "")), &mut out),
            Err(SendError::InvalidCloseCode(1006))
        );
        let long = "x".repeat(124);
        assert_eq!(
            conn.close(Some(CloseFrame::new(CloseCode::NORMAL, long)), &mut out),
            Err(SendError::CloseReasonTooLong(124))
        );
        assert!(out.is_empty());
        conn.close(None, &mut out).unwrap();
        assert_eq!(conn.close(None, &mut out), Err(SendError::Closed));
    }

    #[test]
    fn transport_end_without_close_is_abnormal() {
        let mut conn = server();
        conn.handle_eof();
        assert_eq!(conn.state(), State::Closed);
        assert_eq!(conn.close_code(), CloseCode::ABNORMAL);
    }

    #[test]
    fn answers_sent_before_a_failure_close_is_transmitted_go_ahead_of_it() {
        let mut conn = server();
        let mut bytes = client_frame(true, 0x1, b"ok");
        bytes.extend_from_slice(&client_frame(true, 0x9, b""));
        // A frame with RSV2 set after a valid message.
        let mut bad = client_frame(true, 0x1, b"bad");
        bad[0] |= 0x20;
        bytes.extend_from_slice(&bad);
        conn.handle_bytes(&bytes);
        assert_eq!(conn.poll_message(), Ok(Some(Message::text("ok"))));
        assert!(matches!(conn.poll_message(), Ok(Some(Message::Ping(_)))));
        assert_eq!(conn.poll_message(), Err(ProtocolError::ReservedBits));
        assert_eq!(conn.state(), State::Closed);
        // The answer to "ok" still leaves, before the 1002; the pong owed
        // to the ping is dropped with the failure.
        let mut out = BytesMut::new();
        conn.send(&Message::text("ok"), &mut out).unwrap();
        assert!(conn.poll_transmit(&mut out));
        assert_eq!(&out[..4], &[0x81, 2, b'o', b'k']);
        assert_eq!(&out[4..8], &[0x88, out[5], 0x03, 0xEA]);
        // Once the close frame is out, nothing more.
        assert_eq!(
            conn.send(&Message::text("late"), &mut out),
            Err(SendError::Closed)
        );
        assert_eq!(
            conn.close(None, &mut out),
            Err(SendError::Closed),
            "no second close frame"
        );
    }

    #[test]
    fn failure_closes_carry_a_reason() {
        let mut conn = server();
        receive(&mut conn, &frame(true, 0x1, None, b"x")).unwrap_err();
        let out = transmit(&mut conn);
        assert_eq!(&out[2..4], &[0x03, 0xEA]);
        assert_eq!(&out[4..], b"client frame is not masked");
    }
}

mod section_5_2_vectored_sends_and_read_sizing {
    use super::*;

    #[test]
    fn a_large_server_payload_is_returned_not_copied() {
        let mut conn = server();
        let data = Bytes::from(vec![9u8; 70_000]);
        let mut out = BytesMut::new();
        let payload = conn
            .send_vectored(&Message::Binary(data.clone()), &mut out, 16 * 1024)
            .unwrap()
            .expect("shared");
        // The header alone, with the 64-bit length; then the same bytes.
        assert_eq!(&out[..2], &[0x82, 127]);
        assert_eq!(&out[2..], &70_000u64.to_be_bytes());
        assert_eq!(payload.as_ptr(), data.as_ptr(), "not copied");
        // Header plus payload equal what `send` writes.
        let mut whole = BytesMut::new();
        server().send(&Message::Binary(data), &mut whole).unwrap();
        let mut joined = out.to_vec();
        joined.extend_from_slice(&payload);
        assert_eq!(joined, whole.to_vec());
    }

    #[test]
    fn small_control_and_client_messages_are_encoded_whole() {
        let mut conn = server();
        let mut out = BytesMut::new();
        let small = conn
            .send_vectored(&Message::text("hi"), &mut out, 16)
            .unwrap();
        assert!(small.is_none());
        assert_eq!(&out[..], &[0x81, 2, b'h', b'i']);
        let mut conn = client();
        let mut out = BytesMut::new();
        let masked = conn
            .send_vectored(&Message::binary(vec![1u8; 100]), &mut out, 16)
            .unwrap();
        assert!(masked.is_none(), "client frames are masked, never shared");
        assert_eq!(out.len(), 2 + 4 + 100);
    }

    #[test]
    fn bytes_wanted_is_the_rest_of_the_frame_after_its_header() {
        let mut conn = server();
        assert_eq!(conn.bytes_wanted(), 0);
        let bytes = client_frame(true, 0x2, &[0; 1000]);
        // The header (2 + 2 + 4 bytes) and 100 bytes of payload.
        conn.handle_bytes(&bytes[..108]);
        assert_eq!(conn.poll_message(), Ok(None));
        assert_eq!(conn.bytes_wanted(), 900);
        conn.handle_bytes(&bytes[108..]);
        assert!(matches!(conn.poll_message(), Ok(Some(Message::Binary(_)))));
        assert_eq!(conn.bytes_wanted(), 0);
    }
}

mod idle_memory {
    use super::*;

    #[test]
    fn buffers_are_released_between_messages() {
        let mut conn = server();
        let messages = receive(&mut conn, &client_frame(true, 0x2, &[1; 10_000])).unwrap();
        assert_eq!(messages.len(), 1);
        drop(messages);
        conn.release_idle_buffers();
        assert_eq!(conn.read_buffer().capacity(), 0);
    }

    /// Issue 25, item 4: a small message received after a large one, from
    /// the same read, does not share (and keep alive) the large message's
    /// buffer; each small one before the large frame may.
    #[test]
    fn a_small_message_after_a_large_one_holds_no_large_buffer() {
        let mut conn = server();
        let mut wire = client_frame(true, 0x2, &[7; 200_000]);
        wire.extend(client_frame(true, 0x1, b"x"));
        wire.extend(client_frame(true, 0x2, &[9; 3]));
        let messages = receive(&mut conn, &wire).unwrap();
        let [
            Message::Binary(large),
            Message::Text(small),
            Message::Binary(tiny),
        ] = &messages[..]
        else {
            panic!("{messages:?}")
        };
        let large_buffer = large.as_ptr() as usize..large.as_ptr() as usize + wire.len();
        for (name, payload) in [("text", small.as_bytes()), ("binary", &tiny[..])] {
            assert!(
                !large_buffer.contains(&(payload.as_ptr() as usize)),
                "the small {name} message points into the large buffer"
            );
        }
        assert_eq!((small.as_str(), &tiny[..]), ("x", &[9u8; 3][..]));
        // The rest of the large buffer was let go once empty.
        assert_eq!(conn.read_buffer().capacity(), 0);
    }
}

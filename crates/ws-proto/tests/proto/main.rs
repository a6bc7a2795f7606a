//! Tests of the sans-I/O core, one module per RFC 6455 section, plus
//! property tests. Assertions are on exact bytes and events.

mod handshake;
mod properties;
mod rfc6455;
mod rfc7692;
mod timers;

use bytes::BytesMut;
use ws_proto::{Config, Connection, Message, ProtocolError, Role};

/// The key of RFC 6455 section 5.7's masked examples.
pub(crate) const RFC_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A raw frame, built independently of the crate's encoder.
pub(crate) fn frame(fin: bool, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(fin) << 7 | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A frame as a client sends it to a server: masked.
pub(crate) fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, opcode, Some(RFC_KEY), payload)
}

pub(crate) fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

/// A client whose masking key is always [`RFC_KEY`].
pub(crate) fn client() -> Connection {
    Connection::builder(Role::Client)
        .mask_keys(|| RFC_KEY)
        .build()
}

/// Feeds `bytes` and collects every message until more bytes are needed,
/// or the error that ended the connection.
pub(crate) fn receive(conn: &mut Connection, bytes: &[u8]) -> Result<Vec<Message>, ProtocolError> {
    conn.handle_bytes(bytes);
    let mut messages = Vec::new();
    while let Some(message) = conn.poll_message()? {
        messages.push(message);
    }
    Ok(messages)
}

/// What the connection owes the peer.
pub(crate) fn transmit(conn: &mut Connection) -> Vec<u8> {
    let mut out = BytesMut::new();
    conn.poll_transmit(&mut out);
    out.to_vec()
}

/// Asserts that `bytes` fails the connection with `expected`, and that the
/// connection then owes exactly one close frame with the error's code.
pub(crate) fn assert_fails(conn: &mut Connection, bytes: &[u8], expected: ProtocolError) {
    let error = receive(conn, bytes).expect_err("the connection must fail");
    assert_eq!(error, expected);
    let out = transmit(conn);
    let code = expected.close_code().0.to_be_bytes();
    assert_eq!(out[0], 0x88, "a close frame: {out:x?}");
    let body = if conn.role() == Role::Server {
        &out[2..]
    } else {
        &out[6..]
    };
    let body: Vec<u8> = match conn.role() {
        Role::Server => body.to_vec(),
        Role::Client => body
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ RFC_KEY[i % 4])
            .collect(),
    };
    assert_eq!(&body[..2], &code, "close code of {expected:?}");
    assert_eq!(conn.state(), ws_proto::State::Closed);
    assert_eq!(conn.poll_message(), Ok(None), "nothing after a failure");
}

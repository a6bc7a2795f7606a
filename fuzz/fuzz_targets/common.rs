// Shared by the connection targets (included, not a module of its own).

use ws_proto::{BytesMut, Config, Connection, Message, Role, State};

/// The first byte picks how the rest is cut into reads; the limits are
/// small so that the limit checks are reached often.
pub fn drive(role: Role, data: &[u8]) {
    let Some((&cut, data)) = data.split_first() else { return };
    let config = Config::default()
        .max_frame_size(4096)
        .max_message_size(8192)
        .max_fragments(16);
    let mut conn = Connection::builder(role).config(config).mask_keys(|| [1, 2, 3, 4]).build();
    let step = usize::from(cut % 32) + 1;
    let mut out = BytesMut::new();
    for piece in data.chunks(step) {
        conn.handle_bytes(piece);
        loop {
            match conn.poll_message() {
                Ok(Some(Message::Text(text))) => assert!(std::str::from_utf8(text.as_bytes()).is_ok()),
                Ok(Some(Message::Binary(data))) => assert!(data.len() <= 8192),
                Ok(Some(Message::Ping(data) | Message::Pong(data))) => assert!(data.len() <= 125),
                Ok(Some(Message::Close(_))) => {}
                Ok(None) => break,
                Err(error) => {
                    assert_eq!(conn.state(), State::Closed);
                    assert!(conn.has_pending_output(), "{error} must queue a close frame");
                    let _ = error.close_code();
                    break;
                }
            }
        }
        conn.poll_transmit(&mut out);
        // The connection's own output is always decodable by the peer role.
        out.clear();
        conn.release_idle_buffers();
    }
}

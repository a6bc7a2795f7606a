//! Message handlers run inside the driver: each message is handled as it
//! is decoded, and answered straight into the connection's output.
//!
//! A [`WebSocket`](crate::WebSocket) handler and the driver are two futures
//! with a queue each way between them: every message is pushed and popped
//! under a lock, and the handler is woken for it, and so is the driver for
//! the answer. That is what lets a handler await anything (a database, a
//! timer, another connection) between two messages. A handler that answers
//! each message at once, without awaiting, needs none of it: the driver can
//! call it as it decodes, and the answer joins the same write as every
//! other answer to the same read.

use ws_proto::{CloseCode, CloseFrame, Connection, Message, SendError};

use crate::Error;
use crate::output::{Output, send_into};

/// A handler the driver calls with each message as it decodes it (see
/// [`start_inline`](crate::start_inline)).
///
/// It runs inside the driver's poll, on a runtime worker: it must not block,
/// and it cannot await. Work that must wait belongs in a task of its own,
/// which answers through a clone of the connection's
/// [`WebSocket`](crate::WebSocket).
///
/// Any `FnMut(Message, &mut Reply<'_>)` is a handler.
pub trait MessageHandler: Send + 'static {
    /// Handles one message: text and binary ones, and pings and pongs if
    /// the settings ask for control frames
    /// ([`Settings::control_frames`](crate::Settings::control_frames)).
    /// Pings are answered, and the closing handshake completed, by the
    /// driver whatever this does.
    fn handle_message(&mut self, message: Message, reply: &mut Reply<'_>);

    /// Called once, when the connection has ended: `error` is why it ended
    /// if it did not end with a closing handshake (the peer broke the
    /// protocol, the transport failed, the keepalive timed out). Does
    /// nothing unless implemented.
    fn handle_end(&mut self, error: Option<&Error>) {
        let _ = error;
    }
}

impl<F: FnMut(Message, &mut Reply<'_>) + Send + 'static> MessageHandler for F {
    fn handle_message(&mut self, message: Message, reply: &mut Reply<'_>) {
        self(message, reply);
    }
}

impl MessageHandler for Box<dyn MessageHandler> {
    fn handle_message(&mut self, message: Message, reply: &mut Reply<'_>) {
        (**self).handle_message(message, reply);
    }

    fn handle_end(&mut self, error: Option<&Error>) {
        (**self).handle_end(error);
    }
}

/// What a [`MessageHandler`] answers with: frames are encoded into the
/// connection's output as they are sent, and written once the input read
/// together with the message has been handled.
pub struct Reply<'a> {
    pub(crate) conn: &'a mut Connection,
    pub(crate) out: &'a mut Output,
}

impl std::fmt::Debug for Reply<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("state", &self.conn.state())
            .finish_non_exhaustive()
    }
}

impl Reply<'_> {
    /// Sends `message`.
    ///
    /// Nothing waits here: the frame joins the output at once. Once the
    /// output holds more than the driver writes in one go (256 KiB), the
    /// driver handles no more messages, and reads no more, until the peer
    /// has taken enough of it; so a peer that does not read cannot make
    /// the answers grow without bound.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once a close frame was sent, and
    /// [`Error::InvalidMessage`] for a message that may not be sent (a
    /// control frame over 125 bytes).
    pub fn send(&mut self, message: &Message) -> Result<(), Error> {
        send_into(self.conn, message, self.out).map_err(error)
    }

    /// Sends `message` without compressing it, on a connection that
    /// negotiated permessage-deflate (data known not to shrink, such as
    /// an image); as [`send`](Self::send) otherwise.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_uncompressed(&mut self, message: &Message) -> Result<(), Error> {
        self.conn
            .send_uncompressed(message, &mut self.out.tail)
            .map_err(error)
    }

    /// Starts the closing handshake with `code` and `reason` (the driver
    /// completes it, within the close timeout). Data frames that arrive
    /// after it, before the peer's close frame, are discarded unhandled (RFC
    /// 6455 section 1.4).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if a close frame was already sent, and
    /// [`Error::InvalidMessage`] for a code that may not be sent or a reason
    /// over 123 bytes.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let frame = CloseFrame::new(code, reason);
        self.conn
            .close(Some(frame), &mut self.out.tail)
            .map_err(error)
    }
}

fn error(error: SendError) -> Error {
    match error {
        SendError::Closed => Error::Closed(None),
        other => Error::InvalidMessage(other),
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::Poll;

    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
    use ws_proto::{Config, Connection, Message, Role, apply_mask};

    use super::Reply;
    use crate::{Handshake, Settings, start, start_inline};

    /// One frame a client sends: FIN, RSV bits, opcode (any but close),
    /// whether it is masked, and its payload.
    #[derive(Debug, Clone)]
    struct Frame {
        fin: bool,
        rsv: u8,
        opcode: u8,
        masked: bool,
        payload: Vec<u8>,
    }

    /// Any frame but a close, valid or not: a fragment, a reserved opcode
    /// or bit, an unmasked frame, invalid UTF-8, a control frame over 125
    /// bytes.
    fn frame() -> impl Strategy<Value = Frame> {
        let opcode = prop_oneof![
            12 => Just(1u8),
            8 => Just(2u8),
            3 => Just(0u8),
            3 => Just(9u8),
            2 => Just(10u8),
            1 => prop::sample::select(vec![3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15]),
        ];
        let payload = prop_oneof![
            4 => prop::collection::vec(b'a'..=b'z', 0..40),
            2 => "[a-zé€😀]{0,20}".prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..40),
            1 => prop::collection::vec(any::<u8>(), 120..300),
        ];
        let rsv = prop_oneof![60 => Just(0u8), 1 => 1..8u8];
        (
            prop::bool::weighted(0.85),
            rsv,
            opcode,
            prop::bool::weighted(0.99),
            payload,
        )
            .prop_map(|(fin, rsv, opcode, masked, payload)| Frame {
                fin,
                rsv,
                opcode,
                masked,
                payload,
            })
    }

    /// A frame any server accepts: a whole text or binary message, a ping
    /// or a pong.
    fn valid_frame() -> impl Strategy<Value = Frame> {
        let message = prop_oneof![
            3 => "[a-zé€😀]{0,30}".prop_map(|text| (1u8, text.into_bytes())),
            2 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|data| (2u8, data)),
            1 => prop::collection::vec(any::<u8>(), 0..=125).prop_map(|data| (9u8, data)),
            1 => prop::collection::vec(any::<u8>(), 0..=125).prop_map(|data| (10u8, data)),
        ];
        message.prop_map(|(opcode, payload)| Frame {
            fin: true,
            rsv: 0,
            opcode,
            masked: true,
            payload,
        })
    }

    fn encode(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            out.push(u8::from(f.fin) << 7 | f.rsv << 4 | f.opcode);
            let mask = if f.masked { 0x80 } else { 0 };
            match f.payload.len() {
                n @ 0..=125 => out.push(mask | n as u8),
                n => {
                    out.push(mask | 126);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
            }
            let mut payload = f.payload.clone();
            if f.masked {
                let key = [i as u8, 7, 0x5a, 0xc3];
                out.extend_from_slice(&key);
                apply_mask(&mut payload, key);
            }
            out.extend_from_slice(&payload);
        }
        out
    }

    /// The frames in what the server wrote, as (opcode, payload).
    fn parse(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        let mut at = 0;
        while at + 2 <= bytes.len() {
            let opcode = bytes[at] & 0x0f;
            let (len, header) = match bytes[at + 1] & 0x7f {
                126 => (
                    usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])),
                    4,
                ),
                127 => {
                    let mut len = [0u8; 8];
                    len.copy_from_slice(&bytes[at + 2..at + 10]);
                    (u64::from_be_bytes(len) as usize, 10)
                }
                n => (usize::from(n), 2),
            };
            frames.push((opcode, bytes[at + header..at + header + len].to_vec()));
            at += header + len;
        }
        assert_eq!(at, bytes.len(), "whole frames only");
        frames
    }

    /// Runs `input` through a server connection, with an echo handler
    /// either as a future beside the driver (polled in the same task, as a
    /// server runs them) or called by the driver, and returns what the
    /// server wrote.
    fn serve(input: &[u8], config: &Config, inline: bool) -> Vec<(u8, Vec<u8>)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let served = async {
            let (client, server) = duplex(1 << 20);
            let conn = Connection::new(Role::Server, config.clone().ping_interval(None));
            let handshake = Handshake::new(http::Request::new(()));
            let settings = Arc::new(Settings::default());
            let (mut client_read, mut client_write) = tokio::io::split(client);
            client_write.write_all(input).await.unwrap();
            client_write.shutdown().await.unwrap();
            let reading = tokio::spawn(async move {
                let mut bytes = Vec::new();
                client_read.read_to_end(&mut bytes).await.unwrap();
                bytes
            });
            if inline {
                let echo = |_ws| {
                    |message: Message, reply: &mut Reply<'_>| {
                        let _ = reply.send(&message);
                    }
                };
                start_inline(
                    server,
                    conn,
                    handshake,
                    &settings,
                    std::future::pending(),
                    echo,
                )
                .await;
            } else {
                let (mut ws, driver) =
                    start(server, conn, handshake, &settings, std::future::pending());
                let handler = async move {
                    while let Some(Ok(message)) = ws.recv().await {
                        if ws.send(message).await.is_err() {
                            break;
                        }
                    }
                };
                let (mut driver, mut handler) = (pin!(driver), pin!(handler));
                let (mut driver_done, mut handler_done) = (false, false);
                poll_fn(|cx| {
                    if !driver_done {
                        driver_done = driver.as_mut().poll(cx).is_ready();
                    }
                    if !handler_done {
                        handler_done = handler.as_mut().poll(cx).is_ready();
                    }
                    if driver_done && handler_done {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
            }
            parse(&reading.await.unwrap())
        };
        let limit = std::time::Duration::from_secs(10);
        runtime
            .block_on(async { tokio::time::timeout(limit, served).await })
            .expect("the connection ends by itself")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever a client sends (valid or not: fragments, invalid
        /// UTF-8, reserved opcodes and bits, unmasked frames, oversized
        /// control frames and messages), a handler the driver calls answers
        /// exactly as a handler future does: the same echoes in the same
        /// order, the same pongs, the same close frame. Messages that came
        /// before the client's own close frame are answered before the
        /// reply to it, both ways.
        #[test]
        fn an_inline_handler_answers_any_input_as_a_handler_future_does(
            valid in prop::collection::vec(valid_frame(), 0..20),
            rest in prop::collection::vec(frame(), 0..12),
            small_limits in any::<bool>(),
            close in any::<bool>(),
        ) {
            let frames = [valid, rest].concat();
            let config = if small_limits {
                Config::default().max_frame_size(150).max_message_size(200)
            } else {
                Config::default()
            };
            let mut input = encode(&frames);
            if close {
                // The client's close frame, 1000, masked with 0.
                input.extend_from_slice(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]);
            }
            let split = |frames: Vec<(u8, Vec<u8>)>| {
                let (pongs, rest): (Vec<_>, Vec<_>) =
                    frames.into_iter().partition(|(opcode, _)| *opcode == 0xA);
                (rest, pongs)
            };
            let by_future = split(serve(&input, &config, false));
            let inline = split(serve(&input, &config, true));
            prop_assert_eq!(inline, by_future);
        }
    }
}

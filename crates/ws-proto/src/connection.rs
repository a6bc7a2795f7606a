//! The connection state machine: bytes in, messages out; messages in, bytes
//! out. See `docs/design.md` for the run loop a driver follows.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use crate::close::{CloseFrame, MAX_CLOSE_REASON_LEN};
use crate::close_code::CloseCode;
use crate::config::Config;
use crate::deflate::{Codec, DeflateParams, InflateError, SharedCompression};
use crate::error::{ProtocolError, SendError};
use crate::frame::{Decoded, FrameHeader, RSV1, encode_frame};
use crate::mask::{MaskKeySource, RandomMaskKeys, apply_mask_at};
use crate::message::Message;
use crate::opcode::OpCode;
use crate::timers::{Due, Timeout, Timers};
use crate::utf8::{Utf8Bytes, Utf8Validator};

/// A payload this large grows the read buffer for itself; the rest of that
/// buffer is marked, and small payloads taken from it are copied out.
const LARGE_PAYLOAD: usize = 64 * 1024;
/// The largest payload copied out of a large buffer's rest.
const COPY_OUT_MAX: usize = 4 * 1024;

/// Which end of the connection this is. It decides the masking rules
/// (RFC 6455 section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Masks every frame it sends; fails on masked frames.
    Client,
    /// Sends unmasked frames; fails on unmasked frames.
    Server,
}

/// Where a connection is in its life (RFC 6455 section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// This end sent a close frame and is waiting for the peer's. Data
    /// frames received now are discarded. A driver applies its close timeout
    /// in this state.
    Closing,
    /// Both close frames were exchanged, the connection failed, or the
    /// transport ended. Once [`Connection::has_pending_output`] is false the
    /// driver closes the transport: at once on a server; on a client after
    /// the server has closed it or a timeout (RFC 6455 section 7.1.1).
    Closed,
}

/// One end of a WebSocket connection, without I/O.
///
/// Feed it received bytes with [`handle_bytes`](Self::handle_bytes) (or read
/// straight into [`read_buffer`](Self::read_buffer)), pull messages with
/// [`poll_message`](Self::poll_message), encode outgoing messages with
/// [`send`](Self::send) into a buffer you own, and collect the frames the
/// connection generates itself (pongs, close replies, failure closes) with
/// [`poll_transmit`](Self::poll_transmit).
///
/// Time comes in as an argument: [`handle_timeout`](Self::handle_timeout)
/// runs the keepalive and the close deadline, and
/// [`poll_timeout`](Self::poll_timeout) says when to call it next.
pub struct Connection {
    role: Role,
    /// Shared with every connection built from the same `Arc` (a server's
    /// connections all are): a pointer rather than the whole settings in
    /// each connection.
    config: Arc<Config>,
    mask_keys: Option<Box<dyn MaskKeySource>>,
    /// permessage-deflate, when the handshake settled it (boxed: most
    /// connections run without it).
    deflate: Option<Box<Codec>>,

    rx: BytesMut,
    /// `rx` is what is left of a buffer grown for a large payload, which
    /// the application may hold: small payloads taken from it are copied
    /// out, so that a message of a few bytes does not keep the large
    /// buffer alive (see [`take_payload`](Self::take_payload)).
    rx_large: bool,
    /// The header of the frame whose payload is being received.
    header: Option<FrameHeader>,
    /// How many bytes of that payload, at the front of `rx`, are already
    /// unmasked and validated.
    processed: usize,

    /// The fragmented message in progress, if any.
    partial: Option<Box<Partial>>,
    utf8: Utf8Validator,

    /// The pong owed for the latest ping (boxed, like the close frames
    /// below: rarely there, and a connection holds it for its whole life).
    pending_pong: Option<Box<Bytes>>,
    /// A keepalive ping is owed (its payload is the timers' sequence).
    ping_owed: bool,
    timers: Timers,
    // The close frames, sent and received, are boxed: a connection spends
    // nearly all its life without one, and they are the largest fields.
    pending_close: Option<Box<Option<CloseFrame>>>,
    close_sent: bool,
    close_received: Option<Box<Option<CloseFrame>>>,
    failed: bool,
    eof: bool,
    /// Derived from `failed`, `eof`, `close_sent` and `close_received` by
    /// `refresh_state`, each time one of them changes: drivers ask for it
    /// many times per message.
    state: State,
}

/// A fragmented message being assembled (RFC 6455 section 5.4). Boxed:
/// most messages arrive in one frame, and a connection spends nearly all
/// its life without one.
#[derive(Debug)]
struct Partial {
    /// `Text` or `Binary`, from the first frame.
    kind: OpCode,
    /// Payload bytes so far, counted even when discarded after a close.
    len: u64,
    /// Frames so far.
    count: usize,
    /// The message is compressed (RSV1 on its first frame): `data` holds
    /// what its frames inflated to.
    compressed: bool,
    data: BytesMut,
}

/// Builds a [`Connection`]; see [`Connection::builder`].
pub struct ConnectionBuilder {
    role: Role,
    config: Arc<Config>,
    mask_keys: Option<Box<dyn MaskKeySource>>,
    deflate: Option<DeflateParams>,
}

impl ConnectionBuilder {
    /// The limits and behaviour; default [`Config::default`].
    pub fn config(mut self, config: Config) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// The limits and behaviour, shared with other connections: a server
    /// builds all of its connections from one `Arc`, so that each holds a
    /// pointer rather than a copy.
    pub fn shared_config(mut self, config: Arc<Config>) -> Self {
        self.config = config;
        self
    }

    /// Where a client gets its masking keys; default [`RandomMaskKeys`].
    /// Ignored by a server, which does not mask.
    pub fn mask_keys(mut self, source: impl MaskKeySource + 'static) -> Self {
        self.mask_keys = Some(Box::new(source));
        self
    }

    /// permessage-deflate as the opening handshake settled it (see
    /// [`PerMessageDeflate::accept`](crate::PerMessageDeflate::accept) and
    /// [`PerMessageDeflate::check_answer`](crate::PerMessageDeflate::check_answer));
    /// default `None`, no compression. The level, memory level and
    /// threshold come from the config's
    /// [`compression`](Config::compression), or their defaults.
    pub fn deflate(mut self, params: Option<DeflateParams>) -> Self {
        self.deflate = params;
        self
    }

    /// The connection, in the [`State::Open`] state.
    pub fn build(self) -> Connection {
        let mask_keys = match self.role {
            Role::Client => Some(
                self.mask_keys
                    .unwrap_or_else(|| Box::new(RandomMaskKeys::new())),
            ),
            Role::Server => None,
        };
        let deflate = self.deflate.map(|params| {
            let settings = self.config.compression.clone().unwrap_or_default();
            Box::new(Codec::new(self.role == Role::Server, params, &settings))
        });
        Connection {
            role: self.role,
            config: self.config,
            mask_keys,
            deflate,
            rx: BytesMut::new(),
            rx_large: false,
            header: None,
            processed: 0,
            partial: None,
            utf8: Utf8Validator::new(),
            pending_pong: None,
            ping_owed: false,
            timers: Timers::new(),
            pending_close: None,
            close_sent: false,
            close_received: None,
            failed: false,
            eof: false,
            state: State::Open,
        }
    }
}

impl Connection {
    /// A connection with the given role and settings, past the opening
    /// handshake. Shortcut for `Connection::builder(role).config(config).build()`.
    pub fn new(role: Role, config: Config) -> Self {
        Self::builder(role).config(config).build()
    }

    /// A builder for a connection with the given role.
    pub fn builder(role: Role) -> ConnectionBuilder {
        ConnectionBuilder {
            role,
            config: Arc::default(),
            mask_keys: None,
            deflate: None,
        }
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The settings this connection enforces.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the connection is in its life.
    #[inline]
    pub fn state(&self) -> State {
        debug_assert_eq!(self.state, self.derived_state(), "state left stale");
        self.state
    }

    /// Recomputes [`state`](Self::state) after a change to what it derives
    /// from.
    fn refresh_state(&mut self) {
        self.state = self.derived_state();
        if self.state == State::Closed {
            self.timers.stop();
            self.ping_owed = false;
        }
    }

    fn derived_state(&self) -> State {
        if self.failed
            || self.eof
            || (self.close_sent && self.close_received.is_some())
            || self.timers.expired().is_some()
        {
            State::Closed
        } else if self.close_sent {
            State::Closing
        } else {
            State::Open
        }
    }

    /// Whether this end sent a close frame and is waiting for the peer's:
    /// the time for a driver's close timeout to run. Incoming traffic does
    /// not end the wait, only the peer's close frame or the transport's end.
    pub fn is_awaiting_close(&self) -> bool {
        self.state() == State::Closing
    }

    /// Tells the connection the time: starts the keepalive at the first
    /// call, queues a keepalive ping that is due (collected with
    /// [`poll_transmit`](Self::poll_transmit)), measures the round trip of
    /// a pong decoded since the last call, and expires the deadlines that
    /// have passed. Call it when the instant from
    /// [`poll_timeout`](Self::poll_timeout) comes, and once when the
    /// connection opens; calling it more often does no harm.
    ///
    /// Returns the deadline that expired, if one did: the connection is
    /// then [`State::Closed`]. On [`Timeout::Keepalive`] it has failed with
    /// close code 1011, and the close frame waits for `poll_transmit`; on
    /// [`Timeout::Close`] the peer never answered our close frame, and the
    /// driver closes the transport.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Timeout> {
        let open = self.state() == State::Open;
        match self.timers.handle_timeout(&self.config, now, open) {
            Due::Nothing => None,
            Due::Ping => {
                self.ping_owed = true;
                None
            }
            Due::Keepalive => {
                let frame = CloseFrame::new(CloseCode::INTERNAL_ERROR, "keepalive ping timeout");
                self.fail_with(frame);
                Some(Timeout::Keepalive)
            }
            Due::Close => {
                self.pending_pong = None;
                self.refresh_state();
                Some(Timeout::Close)
            }
        }
    }

    /// Tells the connection whether the driver has stopped reading because
    /// the application has not taken the messages received (its queue is
    /// full). The peer's pong may then be among the bytes not read, so the
    /// keepalive's pong deadline does not expire while reading is held: a
    /// slow application does not fail a healthy peer. When reading resumes
    /// after the deadline passed, a new ping is due at once (collected at
    /// the next [`handle_timeout`](Self::handle_timeout), which
    /// [`poll_timeout`](Self::poll_timeout) asks for straight away), with
    /// a whole `ping_timeout` for its pong. The close deadline runs on: it
    /// does not depend on reading. Cheap; call it as often as the state
    /// changes.
    #[inline]
    pub fn hold_reading(&mut self, held: bool) {
        self.timers.hold(held);
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next needed: the
    /// next keepalive ping, the pong deadline of the ping in flight, or the
    /// close deadline, whichever comes first. `None` when nothing is timed.
    ///
    /// A deadline that starts with an event seen without the time (our
    /// close frame sent, a pong decoded) is reported as due at the time of
    /// the last `handle_timeout`, so that the driver calls it again at once
    /// and the deadline (or the round trip) is counted from then.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let open = self.state() == State::Open;
        self.timers.poll_timeout(&self.config, open)
    }

    /// The round trip of the latest keepalive ping that was answered, as of
    /// the last [`handle_timeout`](Self::handle_timeout); `None` before the
    /// first.
    pub fn rtt(&self) -> Option<Duration> {
        self.timers.rtt()
    }

    /// The deadline that ended the connection, if one did.
    pub fn timeout(&self) -> Option<Timeout> {
        self.timers.expired()
    }

    /// The close frame received from the peer: `None` until one arrives,
    /// `Some(None)` for a close frame without a status code.
    pub fn close_received(&self) -> Option<Option<&CloseFrame>> {
        self.close_received.as_deref().map(Option::as_ref)
    }

    /// The close code a driver reports when the connection has ended: the
    /// peer's code, 1005 for a close frame without one, 1006 when none
    /// arrived (RFC 6455 section 7.1.5).
    pub fn close_code(&self) -> CloseCode {
        match self.close_received.as_deref() {
            Some(Some(frame)) => frame.code,
            Some(None) => CloseCode::NO_STATUS_RECEIVED,
            None => CloseCode::ABNORMAL,
        }
    }

    /// Whether the connection has frames of its own to send (a pong, a close
    /// reply, a failure close); collect them with
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn has_pending_output(&self) -> bool {
        self.owes_frames()
    }

    /// The buffer of received bytes not yet decoded. A driver may read from
    /// its transport straight into it (for example with Tokio's `read_buf`)
    /// instead of calling [`handle_bytes`](Self::handle_bytes).
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        &mut self.rx
    }

    /// Appends bytes received from the peer.
    pub fn handle_bytes(&mut self, data: &[u8]) {
        self.rx.extend_from_slice(data);
    }

    /// The transport ended: nothing more will be received. If the close
    /// handshake had not completed, the closure is abnormal (1006).
    pub fn handle_eof(&mut self) {
        self.eof = true;
        self.pending_pong = None;
        self.refresh_state();
    }

    /// Frees the read buffer's memory when no frame is in progress, so that
    /// an idle connection costs little (a fragmented message's buffer goes
    /// when the message completes). Cheap; a driver calls it when it is
    /// about to wait for the next read.
    pub fn release_idle_buffers(&mut self) {
        // An empty buffer with no spare capacity may still hold the
        // allocation its last payloads were split from: let it go too.
        if self.rx.is_empty() {
            self.rx = BytesMut::new();
        }
    }

    /// Decodes the next message from the bytes received so far.
    ///
    /// Returns `Ok(None)` when more bytes are needed, or for good once the
    /// connection is [`State::Closed`]. Control frames are returned as they
    /// arrive, even between the fragments of a message. A received ping
    /// queues a pong (see [`Config::auto_pong`]); a received close queues the
    /// reply; both are collected with [`poll_transmit`](Self::poll_transmit).
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] when the peer broke the protocol or a limit. The
    /// connection has then queued a close frame with the error's
    /// [close code](ProtocolError::close_code) and is [`State::Closed`].
    #[inline]
    pub fn poll_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        if self.header.is_none()
            && self.state() != State::Closed
            && let Some(message) = self.take_short()
        {
            return message.map(Some);
        }
        self.poll_frames()
    }

    /// The general path of [`poll_message`](Self::poll_message): frame by
    /// frame, each header checked in full, payloads unmasked and validated
    /// as they arrive, fragments assembled, control frames answered.
    fn poll_frames(&mut self) -> Result<Option<Message>, ProtocolError> {
        loop {
            if self.state() == State::Closed {
                return Ok(None);
            }
            let header = match self.header {
                Some(header) => header,
                None => match FrameHeader::decode(&self.rx) {
                    Ok(Decoded::NeedMore(_)) => return Ok(None),
                    Ok(Decoded::Done { value, consumed }) => {
                        if let Err(error) = self.check_header(&value) {
                            return Err(self.fail(error));
                        }
                        self.rx.advance(consumed);
                        self.header = Some(value);
                        self.processed = 0;
                        value
                    }
                    Err(error) => return Err(self.fail(error)),
                },
            };
            // Within the configured frame limit, so it fits in usize.
            let len = header.payload_len as usize;
            let available = self.rx.len().min(len);
            if available > self.processed {
                let text = self.is_text(&header);
                let new = &mut self.rx[self.processed..available];
                if let Some(key) = header.mask {
                    apply_mask_at(new, key, self.processed);
                }
                if text && self.utf8.feed(new).is_err() {
                    return Err(self.fail(ProtocolError::InvalidUtf8));
                }
                self.processed = available;
            }
            if available < len {
                return Ok(None);
            }
            let payload = self.take_payload(len);
            self.header = None;
            match self.handle_frame(header, payload) {
                Ok(Some(message)) => return Ok(Some(message)),
                Ok(None) => {}
                Err(error) => return Err(self.fail(error)),
            }
        }
    }

    /// Takes the next `len` bytes of `rx`, a received payload.
    ///
    /// Shared with the read buffer, without a copy, except while `rx` is
    /// the rest of a buffer grown for a large payload: a small payload
    /// is then copied out, so that a 1-byte message stored by the
    /// application does not keep a buffer of a megabyte alive. Once such a
    /// buffer is empty, `rx` lets go of it, and the next read starts a
    /// buffer of the usual size.
    #[inline]
    fn take_payload(&mut self, len: usize) -> Bytes {
        let payload = if self.rx_large && len <= COPY_OUT_MAX {
            let payload = Bytes::copy_from_slice(&self.rx[..len]);
            self.rx.advance(len);
            payload
        } else {
            self.rx.split_to(len).freeze()
        };
        if len >= LARGE_PAYLOAD {
            self.rx_large = true;
        }
        if self.rx_large && self.rx.is_empty() {
            self.rx = BytesMut::new();
            self.rx_large = false;
        }
        payload
    }

    /// The common case, taken whole in one step: a short text or binary
    /// message (at most 125 bytes, so no extended length) in one frame, all
    /// of it already received, outside any fragmented message. Anything
    /// else, well-formed or not, is left to the general path (`None`),
    /// which checks it in full and reports what is wrong with it: only a
    /// frame that path would accept as a whole message is taken here.
    #[inline]
    fn take_short(&mut self) -> Option<Result<Message, ProtocolError>> {
        let [b0, b1, ..] = self.rx[..] else {
            return None;
        };
        // FIN set, RSV1-3 clear, and a text (0x1) or binary (0x2) opcode.
        let text = match b0 {
            0x81 => true,
            0x82 => false,
            _ => return None,
        };
        // Section 5.1: a server takes only masked frames, a client only
        // unmasked ones.
        let masked = b1 & 0x80 != 0;
        let len = usize::from(b1 & 0x7F);
        let start = if masked { 6 } else { 2 };
        if masked != (self.role == Role::Server)
            || len > 125
            || self.rx.len() < start + len
            || self.partial.is_some()
            || self.close_sent
            || len > self.config.max_frame_size
            || len > self.config.max_message_size
        {
            return None;
        }
        if masked {
            let key = [self.rx[2], self.rx[3], self.rx[4], self.rx[5]];
            apply_mask_at(&mut self.rx[start..start + len], key, 0);
        }
        self.rx.advance(start);
        if text {
            let payload = &self.rx[..len];
            // Section 8.1: invalid UTF-8 fails the connection.
            if !payload.is_ascii() && simdutf8::basic::from_utf8(payload).is_err() {
                return Some(Err(self.fail(ProtocolError::InvalidUtf8)));
            }
        }
        let payload = self.take_payload(len);
        Some(Ok(if text {
            Message::Text(Utf8Bytes::from_validated(payload))
        } else {
            Message::Binary(payload)
        }))
    }

    /// Writes the frames the connection generated itself into `out`: the
    /// latest pong owed, then a close frame (a reply, or the close of a
    /// failure). Returns whether anything was written.
    #[inline]
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> bool {
        // Called on every pass of a driver; almost always nothing is owed.
        self.owes_frames() && self.transmit_owed(out)
    }

    fn transmit_owed(&mut self, out: &mut BytesMut) -> bool {
        let mut wrote = false;
        if let Some(payload) = self.pending_pong.take().map(|payload| *payload) {
            self.write_frame(OpCode::Pong, &payload, out);
            wrote = true;
        }
        if std::mem::take(&mut self.ping_owed) {
            let payload = self.timers.ping_payload();
            self.write_frame(OpCode::Ping, &payload, out);
            wrote = true;
        }
        if let Some(frame) = self.pending_close.take() {
            self.write_close((*frame).as_ref(), out);
            wrote = true;
        }
        wrote
    }

    /// Encodes `message` as one frame into `out`, after any frames the
    /// connection owes (see [`poll_transmit`](Self::poll_transmit)).
    /// Sending [`Message::Close`] is [`close`](Self::close).
    ///
    /// After a [`ProtocolError`], or the peer's close frame, the close frame
    /// this end owes waits for [`poll_transmit`](Self::poll_transmit); until
    /// then data may still be sent, and goes ahead of it. A driver uses this
    /// to let the application answer the messages it was given before the
    /// error or the close (RFC 6455 section 5.5.1: an endpoint "MAY delay
    /// sending a Close frame until its current message is sent").
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] once a close frame has been sent, or queued by
    /// [`close`](Self::close), and the checks of [`close`](Self::close) and
    /// of control-frame size.
    #[inline]
    pub fn send(&mut self, message: &Message, out: &mut BytesMut) -> Result<(), SendError> {
        self.send_inline(message, out)
    }

    /// [`send`](Self::send), always inlined: [`send_vectored`](Self::send_vectored)
    /// falls back to it for every small message, and a call there costs
    /// about 30 instructions per message at 16 in flight (measured with
    /// `scripts/instructions.sh`).
    #[inline(always)]
    fn send_inline(&mut self, message: &Message, out: &mut BytesMut) -> Result<(), SendError> {
        let close_owed = self.may_send()?;
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.as_bytes()),
            Message::Binary(data) => (OpCode::Binary, &data[..]),
            Message::Ping(data) => (OpCode::Ping, &data[..]),
            Message::Pong(data) => (OpCode::Pong, &data[..]),
            Message::Close(frame) => return self.close(frame.clone(), out),
        };
        // RFC 6455 section 5.5: "All control frames MUST have a payload
        // length of 125 bytes or less".
        if opcode.is_control() && payload.len() > 125 {
            return Err(SendError::ControlFrameTooLong(payload.len()));
        }
        if !close_owed {
            self.poll_transmit(out);
        }
        if self.deflate.is_some()
            && !opcode.is_control()
            && self.send_compressed(opcode, payload, out)
        {
            return Ok(());
        }
        self.write_frame(opcode, payload, out);
        Ok(())
    }

    /// Writes a data message compressed, if it is worth it; whether it did.
    /// Kept out of line: the plain path of [`send`](Self::send) stays
    /// small enough to inline.
    #[inline(never)]
    fn send_compressed(&mut self, opcode: OpCode, payload: &[u8], out: &mut BytesMut) -> bool {
        let Some(codec) = &mut self.deflate else {
            return false;
        };
        if !codec.compresses(payload.len()) {
            return false;
        }
        let mask = self.mask_keys.as_mut().map(|keys| keys.next_key());
        codec
            .compress(payload, |compressed| {
                let mut header = FrameHeader::unfragmented(opcode, mask, compressed.len());
                // RFC 7692 section 6: RSV1 on the first (here the only)
                // frame of a compressed message.
                header.rsv = RSV1;
                encode_frame(&header, compressed, out);
            })
            .is_some()
    }

    /// permessage-deflate as the handshake settled it, if it did.
    pub fn deflate_params(&self) -> Option<DeflateParams> {
        self.deflate.as_ref().map(|codec| codec.params)
    }

    /// On a server whose permessage-deflate keeps no context
    /// (`server_no_context_takeover`), the compression it shares with every
    /// such connection of the same settings: a broadcast compresses each
    /// message once with it ([`SharedCompression::compress_frame`]) and
    /// sends the same bytes to all of them. `None` otherwise.
    pub fn shared_compression(&self) -> Option<SharedCompression> {
        self.deflate.as_ref().and_then(|codec| codec.shared())
    }

    /// As [`send`](Self::send), but never compressed, whatever the
    /// message's size: for a message known not to shrink (an image, data
    /// already compressed), or one that must go out as it is.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_uncompressed(
        &mut self,
        message: &Message,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        let codec = self.deflate.take();
        let sent = self.send(message, out);
        self.deflate = codec;
        sent
    }

    /// As [`send`](Self::send), but a large server payload is not copied:
    /// only the frame's header goes into `out`, and the payload is returned,
    /// to be written right after `out` (with a vectored write, say).
    ///
    /// Applies to a server's text and binary messages of at least
    /// `min_shared` bytes; anything else (a client's frames, which are
    /// masked, and small or control messages) is encoded whole into `out`
    /// and `None` is returned.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_vectored(
        &mut self,
        message: &Message,
        out: &mut BytesMut,
        min_shared: usize,
    ) -> Result<Option<Bytes>, SendError> {
        // Only a server's plain frames leave their payload unmasked and
        // uncompressed: anything else is encoded whole by `send`.
        let shares = self.role == Role::Server && self.deflate.is_none();
        let payload = match message {
            Message::Text(text) if shares && text.as_bytes().len() >= min_shared => {
                text.clone().into_bytes()
            }
            Message::Binary(data) if shares && data.len() >= min_shared => data.clone(),
            _ => return self.send_inline(message, out).map(|()| None),
        };
        if !self.may_send()? {
            self.poll_transmit(out);
        }
        let opcode = if matches!(message, Message::Text(_)) {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        // A server's frames are not masked.
        FrameHeader::unfragmented(opcode, None, payload.len()).encode(out);
        Ok(Some(payload))
    }

    /// Whether a pong or a close frame waits for
    /// [`poll_transmit`](Self::poll_transmit).
    #[inline]
    fn owes_frames(&self) -> bool {
        self.pending_pong.is_some() || self.ping_owed || self.pending_close.is_some()
    }

    /// Whether a frame may be sent now. `Ok(true)` while a close frame is
    /// owed but not yet transmitted (a protocol error's, or the answer to
    /// the peer's close frame): the frame then goes ahead of it, and
    /// nothing owed may be flushed first.
    fn may_send(&self) -> Result<bool, SendError> {
        // Only a failure and the peer's close frame leave a close frame
        // owed; `close` writes its own at once.
        let close_owed = self.pending_close.is_some();
        if (self.close_sent && !close_owed) || self.eof {
            return Err(SendError::Closed);
        }
        Ok(close_owed)
    }

    /// How many more bytes would complete the frame being received: once
    /// its header has arrived (and passed the size limits), the rest of its
    /// payload; 0 otherwise. A driver can size its next read with it, so
    /// that a large frame arrives in few reads.
    pub fn bytes_wanted(&self) -> usize {
        match &self.header {
            Some(header) => (header.payload_len as usize).saturating_sub(self.rx.len()),
            None => 0,
        }
    }

    /// Starts the closing handshake: writes a close frame into `out` and
    /// moves to [`State::Closing`], where the driver waits for the peer's
    /// close frame. `None` sends a close frame without a status code.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] if a close frame was already sent or queued;
    /// [`SendError::InvalidCloseCode`] for a code that may not appear on the
    /// wire; [`SendError::CloseReasonTooLong`] for a reason over 123 bytes.
    pub fn close(
        &mut self,
        frame: Option<CloseFrame>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        if self.close_sent || self.eof {
            return Err(SendError::Closed);
        }
        if let Some(frame) = &frame {
            frame.check_sendable()?;
        }
        self.poll_transmit(out);
        self.write_close(frame.as_ref(), out);
        self.close_sent = true;
        // Section 7.1.1 leaves waiting for the peer's close frame to the
        // endpoint's judgement; the deadline bounds it.
        self.timers.start_close();
        self.refresh_state();
        Ok(())
    }

    /// Whether the frame's payload is text to validate as it arrives: a
    /// compressed message is validated as it inflates instead.
    fn is_text(&self, header: &FrameHeader) -> bool {
        !self.close_sent
            && header.rsv == 0
            && !self
                .partial
                .as_ref()
                .is_some_and(|partial| partial.compressed)
            && (header.opcode == OpCode::Text
                || (header.opcode == OpCode::Continuation
                    && self
                        .partial
                        .as_ref()
                        .is_some_and(|partial| partial.kind == OpCode::Text)))
    }

    /// Checks everything a header alone can break, before any payload is
    /// buffered.
    fn check_header(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        // RFC 6455 section 5.2: RSV1-3 "MUST be 0 unless an extension is
        // negotiated that defines meanings for non-zero values." RFC 7692
        // section 6: permessage-deflate gives RSV1 a meaning on the first
        // frame of a data message only; section 6.1: "An endpoint MUST NOT
        // set the 'Per-Message Compressed' bit of control frames and
        // non-first fragments of a data message."
        if header.rsv != 0
            && (header.rsv != RSV1
                || self.deflate.is_none()
                || !matches!(header.opcode, OpCode::Text | OpCode::Binary))
        {
            return Err(ProtocolError::ReservedBits);
        }
        match (self.role, header.mask.is_some()) {
            // Section 5.1: "The server MUST close the connection upon
            // receiving a frame that is not masked."
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            // "A client MUST close a connection if it detects a masked frame."
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let len = header.payload_len;
        if header.opcode.is_control() {
            // Section 5.5: "All control frames MUST have a payload length of
            // 125 bytes or less and MUST NOT be fragmented."
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if len > 125 {
                return Err(ProtocolError::ControlFrameTooLong(len));
            }
            return Ok(());
        }
        // Section 5.4: a fragmented message is one frame with FIN clear and
        // opcode other than 0, then zero or more continuation frames, then a
        // final continuation frame with FIN set.
        let continuation = header.opcode == OpCode::Continuation;
        let partial = match (continuation, &self.partial) {
            (true, None) => return Err(ProtocolError::UnexpectedContinuation),
            (false, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (_, partial) => partial,
        };
        let limit = self.config.max_frame_size;
        if len > limit as u64 {
            return Err(ProtocolError::FrameTooLarge { size: len, limit });
        }
        let size = partial.as_ref().map_or(len, |partial| partial.len + len);
        let limit = self.config.max_message_size;
        if size > limit as u64 {
            return Err(ProtocolError::MessageTooLarge { size, limit });
        }
        let limit = self.config.max_fragments;
        if partial
            .as_ref()
            .is_some_and(|partial| partial.count >= limit)
        {
            return Err(ProtocolError::TooManyFragments { limit });
        }
        Ok(())
    }

    fn handle_frame(
        &mut self,
        header: FrameHeader,
        payload: Bytes,
    ) -> Result<Option<Message>, ProtocolError> {
        match header.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let first = header.opcode != OpCode::Continuation;
                if header.rsv == RSV1
                    || (!first && self.partial.as_ref().is_some_and(|p| p.compressed))
                {
                    return self.handle_compressed(header, payload);
                }
                if first && header.fin {
                    // A whole message in one frame, the common case: no
                    // assembly. Section 1.4: after sending a Close frame,
                    // data is discarded while waiting for the peer's Close.
                    if self.close_sent {
                        return Ok(None);
                    }
                    return self.complete(header.opcode, payload).map(Some);
                }
                let Some(partial) = self.assemble(&header, payload.len(), false) else {
                    return Ok(None);
                };
                partial.data.extend_from_slice(&payload);
                if !header.fin {
                    return Ok(None);
                }
                let Partial { kind, data, .. } = *self.partial.take().expect("assembled above");
                self.complete(kind, data.freeze()).map(Some)
            }
            OpCode::Ping => {
                if self.config.auto_pong && !self.close_sent {
                    // Section 5.5.3: "If an endpoint receives a Ping frame
                    // and has not yet sent Pong frame(s) in response to
                    // previous Ping frame(s), the endpoint MAY elect to send
                    // a Pong frame for only the most recently processed Ping
                    // frame."
                    self.pending_pong = Some(Box::new(payload.clone()));
                }
                Ok(Some(Message::Ping(payload)))
            }
            OpCode::Pong => {
                // Section 5.5.3: "A response to an unsolicited Pong frame is
                // not expected." Only the latest keepalive ping's pong
                // counts.
                self.timers.handle_pong(&payload);
                Ok(Some(Message::Pong(payload)))
            }
            OpCode::Close => {
                let frame = CloseFrame::parse(payload)?;
                if !self.close_sent {
                    // Section 5.5.1: "If an endpoint receives a Close frame
                    // and did not previously send a Close frame, the endpoint
                    // MUST send a Close frame in response. (When sending a
                    // Close frame in response, the endpoint typically echos
                    // the status code it received.)"
                    let code = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                    self.pending_close = Some(Box::new(code));
                    self.close_sent = true;
                }
                self.close_received = Some(Box::new(frame.clone()));
                self.refresh_state();
                Ok(Some(Message::Close(frame)))
            }
        }
    }

    /// The fragmented message a data frame of `len` payload bytes belongs
    /// to (started by a first frame), its counts updated; `None` once this
    /// end sent its close frame: section 1.4, data is then discarded (and
    /// a message that ends is forgotten), though it still counts against
    /// the limits.
    #[inline]
    fn assemble(
        &mut self,
        header: &FrameHeader,
        len: usize,
        compressed: bool,
    ) -> Option<&mut Partial> {
        let partial = if header.opcode != OpCode::Continuation {
            self.partial.insert(Box::new(Partial {
                kind: header.opcode,
                len: 0,
                count: 0,
                compressed,
                data: BytesMut::new(),
            }))
        } else {
            self.partial.as_mut().expect("checked by check_header")
        };
        partial.len += len as u64;
        partial.count += 1;
        if self.close_sent {
            if header.fin {
                self.partial = None;
            }
            return None;
        }
        self.partial.as_deref_mut()
    }

    /// A frame of a compressed message (RFC 7692 section 6): the same
    /// assembly as a plain message's in `handle_frame`, each frame inflated
    /// as it arrives. Out of line, so that the plain path stays as small as
    /// it was (it is measured per message; `docs/benchmarks.md`).
    #[inline(never)]
    fn handle_compressed(
        &mut self,
        header: FrameHeader,
        payload: Bytes,
    ) -> Result<Option<Message>, ProtocolError> {
        let first = header.opcode != OpCode::Continuation;
        if first && header.fin {
            if self.close_sent {
                return Ok(None);
            }
            let mut data = BytesMut::new();
            self.inflate(header.opcode, &payload, true, true, &mut data)?;
            return self.complete(header.opcode, data.freeze()).map(Some);
        }
        let Some(partial) = self.assemble(&header, payload.len(), true) else {
            return Ok(None);
        };
        let (kind, mut data) = (partial.kind, std::mem::take(&mut partial.data));
        let inflated = self.inflate(kind, &payload, first, header.fin, &mut data);
        if let Some(partial) = &mut self.partial {
            partial.data = data;
        }
        inflated?;
        if !header.fin {
            return Ok(None);
        }
        let Partial { kind, data, .. } = *self.partial.take().expect("assembled above");
        self.complete(kind, data.freeze()).map(Some)
    }

    /// Inflates one frame of a compressed message onto `data` (what its
    /// earlier frames inflated to), and validates a text message's new
    /// bytes as they come.
    fn inflate(
        &mut self,
        kind: OpCode,
        payload: &[u8],
        first: bool,
        fin: bool,
        data: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        let codec = self
            .deflate
            .as_mut()
            .expect("RSV1 is refused without deflate");
        let limit = self.config.max_message_size;
        let before = data.len();
        // RFC 7692 section 8.1 leaves the bound to the endpoint: the
        // inflated message counts against `max_message_size`, checked
        // inside the inflate loop (1009), and data that does not inflate
        // fails with 1007.
        codec
            .inflate(payload, first, fin, data, limit)
            .map_err(|error| match error {
                InflateError::TooBig(size) => ProtocolError::MessageTooLarge { size, limit },
                InflateError::Corrupt => ProtocolError::InvalidCompressedData,
            })?;
        if kind == OpCode::Text && self.utf8.feed(&data[before..]).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(())
    }

    /// A complete text or binary message; a text message's UTF-8 was
    /// checked as it arrived, and must not end inside a character.
    fn complete(&mut self, kind: OpCode, data: Bytes) -> Result<Message, ProtocolError> {
        if kind == OpCode::Text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Message::Text(Utf8Bytes::from_validated(data)))
        } else {
            Ok(Message::Binary(data))
        }
    }

    /// Section 7.1.7: to _Fail the WebSocket Connection_, "an endpoint MUST
    /// _Close the WebSocket Connection_, and MAY report the problem to the
    /// user"; a close frame with the error's code is queued first unless one
    /// was already sent.
    fn fail(&mut self, error: ProtocolError) -> ProtocolError {
        let mut reason = error.to_string();
        reason.truncate(MAX_CLOSE_REASON_LEN);
        self.fail_with(CloseFrame::new(error.close_code(), reason));
        error
    }

    /// Fails the connection, queueing `frame` unless a close frame was
    /// already sent.
    fn fail_with(&mut self, frame: CloseFrame) {
        self.failed = true;
        self.pending_pong = None;
        if !self.close_sent {
            self.pending_close = Some(Box::new(Some(frame)));
            self.close_sent = true;
        }
        self.refresh_state();
    }

    fn write_close(&mut self, frame: Option<&CloseFrame>, out: &mut BytesMut) {
        let mut payload = BytesMut::new();
        if let Some(frame) = frame {
            frame.encode(&mut payload);
        }
        self.write_frame(OpCode::Close, &payload, out);
        self.pending_pong = None;
        self.ping_owed = false;
    }

    #[inline]
    fn write_frame(&mut self, opcode: OpCode, payload: &[u8], out: &mut BytesMut) {
        let mask = self.mask_keys.as_mut().map(|keys| keys.next_key());
        if mask.is_none() && payload.len() <= 125 {
            // A server's short frame, the common case: FIN and the opcode,
            // then the length in the second byte, then the payload.
            out.reserve(2 + payload.len());
            out.extend_from_slice(&[0x80 | opcode.as_u8(), payload.len() as u8]);
            out.extend_from_slice(payload);
            return;
        }
        let header = FrameHeader::unfragmented(opcode, mask, payload.len());
        encode_frame(&header, payload, out);
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state())
            .field("buffered", &self.rx.len())
            .finish_non_exhaustive()
    }
}

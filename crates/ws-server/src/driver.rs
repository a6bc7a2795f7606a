//! The connection driver: one loop that moves bytes between a socket and the
//! `ws-proto` core, and messages between the core and the application.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};
use ws_proto::{CloseCode, CloseFrame, Connection, Message, State};

use crate::error::Error;
use crate::websocket::{Command, payload_len};

/// Bytes reserved in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;
/// Outgoing bytes gathered into one write before the socket is written.
const COALESCE_LIMIT: usize = 256 * 1024;

/// The driver's timers.
#[derive(Debug, Clone)]
pub(crate) struct Timers {
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) ping_timeout: Option<Duration>,
    pub(crate) close_timeout: Duration,
}

/// The application's ends of the channels.
pub(crate) struct Channels {
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) incoming: mpsc::Sender<Result<Message, Error>>,
    pub(crate) budget: Arc<Semaphore>,
}

/// Runs the connection until it has closed, then shuts the transport down.
///
/// Reading stops while the application's incoming queue is full (TCP
/// backpressure); pings are answered, the keepalive runs and the closing
/// handshake completes meanwhile. Every outgoing message queued while the
/// previous write was in progress, or while received input was being
/// decoded, leaves in one write.
pub(crate) async fn drive<S>(
    stream: S,
    mut conn: Connection,
    mut channels: Channels,
    timers: Timers,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut out = BytesMut::new();
    let mut eof = false;
    let mut commands_open = true;
    let mut incoming_open = true;
    let mut shutdown_seen = *shutdown.borrow();
    let mut failure: Option<Error> = None;
    let mut ping_seq: u64 = 0;
    let mut next_ping = timers
        .ping_interval
        .map(|interval| Instant::now() + interval);
    let mut pong_deadline: Option<Instant> = None;
    let mut close_deadline: Option<Instant> = None;
    let far = || Instant::now() + Duration::from_secs(86_400 * 365);

    loop {
        // 1. Decode what was received, as far as the application keeps up.
        let mut blocked = false;
        while conn.state() != State::Closed {
            let permit = if incoming_open {
                match channels.incoming.try_reserve() {
                    Ok(permit) => Some(permit),
                    Err(TrySendError::Full(())) => {
                        blocked = true;
                        break;
                    }
                    Err(TrySendError::Closed(())) => {
                        incoming_open = false;
                        None
                    }
                }
            } else {
                None
            };
            match conn.poll_message() {
                Ok(Some(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    tracing::trace!(len = payload_len(&message), "received message");
                    if let Some(permit) = permit {
                        permit.send(Ok(message));
                    }
                }
                Ok(Some(Message::Pong(payload))) => {
                    if pong_deadline.is_some() && payload[..] == ping_seq.to_be_bytes() {
                        pong_deadline = None;
                    }
                }
                Ok(Some(Message::Close(frame))) => {
                    tracing::debug!(?frame, "received close");
                }
                Ok(Some(Message::Ping(_))) => {
                    // Answer each ping of a burst while the output has room;
                    // past that, the core keeps only the latest pong owed.
                    if out.len() < COALESCE_LIMIT {
                        conn.poll_transmit(&mut out);
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "protocol error");
                    failure = Some(error.into());
                    break;
                }
            }
        }

        // 2. Gather what the application queued.
        while commands_open && out.len() < COALESCE_LIMIT {
            match channels.commands.try_recv() {
                Ok(command) => apply(&mut conn, command, &mut out, &channels.budget),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    commands_open = false;
                    // Every sender is gone: the application is done.
                    let _ = conn.close(Some(CloseFrame::new(CloseCode::NORMAL, "")), &mut out);
                }
            }
        }
        conn.poll_transmit(&mut out);
        if conn.is_awaiting_close() && close_deadline.is_none() {
            close_deadline = Some(Instant::now() + timers.close_timeout);
        }

        // 3. Done once closed and flushed, or once the peer has gone.
        if eof || (conn.state() == State::Closed && out.is_empty()) {
            break;
        }
        if !out.is_empty() && conn.state() == State::Closed {
            // Flush the final frames, then stop.
            let _ = timeout(timers.close_timeout, writer.write_all(&out)).await;
            out.clear();
            break;
        }

        // Stop reading while the peer is not taking what we write: a ping
        // flood then cannot grow the output without bound.
        let can_read = !blocked && conn.state() != State::Closed && out.len() < COALESCE_LIMIT;
        if can_read && conn.read_buffer().capacity() - conn.read_buffer().len() < 1024 {
            conn.read_buffer().reserve(READ_CHUNK);
        }
        let ping_due = next_ping.filter(|_| pong_deadline.is_none() && conn.state() == State::Open);
        tokio::select! {
            biased;
            written = writer.write(&out), if !out.is_empty() => match written {
                Ok(0) => { failure.get_or_insert(Error::ConnectionLost); break; }
                Ok(n) => {
                    out.advance(n);
                    if out.is_empty() {
                        out = BytesMut::new();
                    }
                }
                Err(error) => { failure.get_or_insert(error.into()); break; }
            },
            read = reader.read_buf(conn.read_buffer()), if can_read => match read {
                Ok(0) => {
                    conn.handle_eof();
                    eof = true;
                    if conn.close_received().is_none() {
                        failure.get_or_insert(Error::ConnectionLost);
                    }
                }
                Ok(_) => {}
                Err(error) => { failure.get_or_insert(error.into()); break; }
            },
            command = channels.commands.recv(), if commands_open && out.len() < COALESCE_LIMIT => match command {
                Some(command) => apply(&mut conn, command, &mut out, &channels.budget),
                None => {
                    commands_open = false;
                    let _ = conn.close(Some(CloseFrame::new(CloseCode::NORMAL, "")), &mut out);
                }
            },
            _ = channels.incoming.reserve(), if blocked => {}
            () = sleep_until(ping_due.unwrap_or_else(far)), if ping_due.is_some() => {
                ping_seq += 1;
                let ping = Message::Ping(ping_seq.to_be_bytes().to_vec().into());
                let _ = conn.send(&ping, &mut out);
                let now = Instant::now();
                pong_deadline = timers.ping_timeout.map(|t| now + t);
                next_ping = timers.ping_interval.map(|interval| now + interval);
            }
            () = sleep_until(pong_deadline.unwrap_or_else(far)), if pong_deadline.is_some() => {
                tracing::debug!("keepalive ping timed out");
                failure = Some(Error::KeepaliveTimeout);
                let frame = CloseFrame::new(CloseCode::INTERNAL_ERROR, "keepalive ping timeout");
                let _ = conn.close(Some(frame), &mut out);
                let _ = timeout(timers.close_timeout, writer.write_all(&out)).await;
                break;
            }
            () = sleep_until(close_deadline.unwrap_or_else(far)), if close_deadline.is_some() => {
                tracing::debug!("close timeout: the peer did not answer the close frame");
                break;
            }
            changed = shutdown.changed(), if !shutdown_seen => {
                shutdown_seen = true;
                if changed.is_ok() {
                    let frame = CloseFrame::new(CloseCode::GOING_AWAY, "server shutting down");
                    let _ = conn.close(Some(frame), &mut out);
                }
            }
        }
    }

    let _ = timeout(timers.close_timeout, writer.shutdown()).await;
    channels.budget.close();
    tracing::debug!(code = %conn.close_code(), "connection closed");
    if let Some(failure) = failure
        && incoming_open
    {
        let _ = timeout(timers.close_timeout, channels.incoming.send(Err(failure))).await;
    }
}

fn apply(conn: &mut Connection, command: Command, out: &mut BytesMut, budget: &Semaphore) {
    match command {
        Command::Send(message, permit) => {
            tracing::trace!(len = payload_len(&message), "sending message");
            // A send after close is dropped: the application learns it from
            // its next send, which finds the queue closed.
            let _ = conn.send(&message, out);
            drop(permit);
        }
        Command::Close(frame) => {
            tracing::debug!(?frame, "closing");
            if conn.close(frame, out).is_ok() {
                // Nothing more will be sent: wake any sender waiting for
                // budget so that it sees the connection closing.
                budget.close();
            }
        }
    }
}

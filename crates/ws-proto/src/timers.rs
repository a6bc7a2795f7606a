//! The connection's deadlines: the keepalive ping schedule, the pong
//! deadline, and the close-handshake deadline. Time is never read here: the
//! driver passes it in with [`Connection::handle_timeout`] and asks when to
//! call again with [`Connection::poll_timeout`].
//!
//! [`Connection::handle_timeout`]: crate::Connection::handle_timeout
//! [`Connection::poll_timeout`]: crate::Connection::poll_timeout

use std::time::{Duration, Instant};

use crate::config::Config;

/// A deadline that expired, reported by
/// [`Connection::handle_timeout`](crate::Connection::handle_timeout). The
/// connection is [`State::Closed`](crate::State::Closed) once one has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timeout {
    /// The latest keepalive ping had no pong within
    /// [`Config::ping_timeout`]: the connection failed with 1011, and its
    /// close frame waits for `poll_transmit`.
    Keepalive,
    /// The peer's close frame did not come within
    /// [`Config::close_timeout`] of ours: the driver closes the transport.
    Close,
}

/// Where the keepalive stands.
#[derive(Debug, Clone, Copy)]
enum Ping {
    /// The clock has not started (no `handle_timeout` yet), or keepalive is
    /// off.
    Off,
    /// The next ping is due then.
    Due(Instant),
    /// The ping sent then awaits its pong.
    Awaiting(Instant),
    /// The pong of the ping sent then was decoded; its round trip is
    /// measured at the next `handle_timeout`.
    Answered(Instant),
}

/// Where the closing handshake's deadline stands.
#[derive(Debug, Clone, Copy)]
enum Close {
    /// No close frame of ours awaits the peer's.
    Off,
    /// Ours was sent; the deadline starts at the next `handle_timeout`.
    Unstamped,
    /// The peer's close frame must come by then.
    By(Instant),
}

/// The deadlines of one connection.
#[derive(Debug)]
pub(crate) struct Timers {
    ping: Ping,
    close: Close,
    /// The time of the latest `handle_timeout`: a deadline that still needs
    /// its start time is reported as due then, so that the driver calls
    /// again at once.
    now: Option<Instant>,
    /// The sequence number of the latest ping, its payload (8 bytes, big
    /// endian): only that ping's pong counts.
    seq: u64,
    rtt: Option<Duration>,
    expired: Option<Timeout>,
}

/// What `handle_timeout` asks the connection to do.
pub(crate) enum Due {
    Nothing,
    /// Send a keepalive ping with this payload.
    Ping,
    /// Fail the connection: the keepalive timed out.
    Keepalive,
    /// Give up on the peer's close frame.
    Close,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Self {
            ping: Ping::Off,
            close: Close::Off,
            now: None,
            seq: 0,
            rtt: None,
            expired: None,
        }
    }

    /// The latest ping's payload.
    pub(crate) fn ping_payload(&self) -> [u8; 8] {
        self.seq.to_be_bytes()
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    pub(crate) fn expired(&self) -> Option<Timeout> {
        self.expired
    }

    /// The earliest deadline, if any.
    pub(crate) fn poll_timeout(&self, config: &Config, open: bool) -> Option<Instant> {
        if self.expired.is_some() {
            return None;
        }
        let ping = match self.ping {
            Ping::Off => None,
            // No ping is sent once a close frame was.
            Ping::Due(at) => open.then_some(at),
            Ping::Awaiting(sent) => config.ping_timeout.and_then(|t| sent.checked_add(t)),
            Ping::Answered(sent) => Some(sent),
        };
        let close = match self.close {
            Close::Off => None,
            Close::Unstamped => self.now,
            Close::By(at) => Some(at),
        };
        match (ping, close) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances to `now`: returns the first thing that is due.
    pub(crate) fn handle_timeout(&mut self, config: &Config, now: Instant, open: bool) -> Due {
        self.now = Some(now);
        if self.expired.is_some() {
            return Due::Nothing;
        }
        match self.close {
            Close::Unstamped => {
                self.close = deadline(now, config.close_timeout).map_or(Close::Off, Close::By)
            }
            Close::By(at) if at <= now => {
                self.expired = Some(Timeout::Close);
                return Due::Close;
            }
            _ => {}
        }
        match self.ping {
            Ping::Off if self.seq == 0 => {
                // The clock starts: the first ping one interval from now.
                if let Some(at) = config.ping_interval.and_then(|i| deadline(now, i)) {
                    self.ping = Ping::Due(at);
                }
            }
            Ping::Answered(sent) => {
                self.rtt = Some(now.saturating_duration_since(sent));
                self.ping = next_ping(config, sent);
            }
            Ping::Awaiting(sent)
                if config
                    .ping_timeout
                    .and_then(|t| sent.checked_add(t))
                    .is_some_and(|at| at <= now) =>
            {
                self.expired = Some(Timeout::Keepalive);
                return Due::Keepalive;
            }
            Ping::Due(at) if open && at <= now => {
                self.seq = self.seq.wrapping_add(1).max(1);
                self.ping = Ping::Awaiting(now);
                return Due::Ping;
            }
            _ => {}
        }
        Due::Nothing
    }

    /// A pong was decoded: only the latest ping's counts; a stray, late or
    /// duplicate one changes nothing.
    pub(crate) fn handle_pong(&mut self, payload: &[u8]) {
        if let Ping::Awaiting(sent) = self.ping
            && payload == self.seq.to_be_bytes()
        {
            self.ping = Ping::Answered(sent);
        }
    }

    /// This end sent its close frame and awaits the peer's.
    pub(crate) fn start_close(&mut self) {
        if matches!(self.close, Close::Off) {
            self.close = Close::Unstamped;
        }
    }

    /// The connection has closed: no deadline stands.
    pub(crate) fn stop(&mut self) {
        self.ping = Ping::Off;
        self.close = Close::Off;
        // Not restarted by a later `handle_timeout`.
        self.seq = self.seq.max(1);
    }
}

/// The next ping, one interval after the previous one was sent.
fn next_ping(config: &Config, sent: Instant) -> Ping {
    config
        .ping_interval
        .and_then(|i| deadline(sent, i))
        .map_or(Ping::Off, Ping::Due)
}

/// `from + after`; `None` (no deadline) for a span beyond what an `Instant`
/// holds, such as `Duration::MAX`.
fn deadline(from: Instant, after: Duration) -> Option<Instant> {
    from.checked_add(after)
}

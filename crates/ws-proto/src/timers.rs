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

/// Where the keepalive stands; the instant it refers to is `Clock::ping_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ping {
    /// Keepalive is off (or was stopped).
    Off,
    /// The next ping is due at `ping_at`.
    Due,
    /// The ping sent at `ping_at` awaits its pong.
    Awaiting,
    /// The pong of the ping sent at `ping_at` was decoded; its round trip
    /// is measured at the next `handle_timeout`.
    Answered,
    /// The pong deadline passed while the driver was not reading (the
    /// application had not taken what was received, so the pong may be
    /// waiting unread): not a failure. A new ping goes once reading
    /// resumes.
    Overdue,
}

/// Where the closing handshake's deadline stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// No close frame of ours awaits the peer's.
    Off,
    /// Ours was sent; the deadline starts at the next `handle_timeout`.
    Unstamped,
    /// The peer's close frame must come by `close_at`.
    By,
}

/// The deadlines of one connection: nothing until the clock starts (the
/// first `handle_timeout`), since no instant can be made without reading a
/// clock. A connection holds this for its whole life, so the instants sit
/// side by side with one-byte phases rather than in enums of their own.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    clock: Option<Clock>,
    /// The sequence number of the latest ping: its payload is this as 8
    /// bytes, big endian. Only that ping's pong counts.
    seq: u32,
    /// The latest round trip, in microseconds plus one (0: none yet).
    rtt_micros: u32,
    expired: Option<Timeout>,
    /// Our close frame was sent before the clock started: its deadline
    /// starts with the clock.
    close_before_start: bool,
    /// The driver is not reading: the pong deadline does not expire.
    held: bool,
}

#[derive(Debug)]
struct Clock {
    /// The time of the latest `handle_timeout`: a deadline that still
    /// needs its start time is reported as due then, so that the driver
    /// calls again at once.
    now: Instant,
    ping_at: Instant,
    close_at: Instant,
    ping: Ping,
    close: Close,
}

/// What `handle_timeout` asks the connection to do.
pub(crate) enum Due {
    Nothing,
    /// Send a keepalive ping (its payload is `ping_payload`).
    Ping,
    /// Fail the connection: the keepalive timed out.
    Keepalive,
    /// Give up on the peer's close frame.
    Close,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The latest ping's payload.
    pub(crate) fn ping_payload(&self) -> [u8; 8] {
        u64::from(self.seq).to_be_bytes()
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt_micros
            .checked_sub(1)
            .map(|micros| Duration::from_micros(u64::from(micros)))
    }

    pub(crate) fn expired(&self) -> Option<Timeout> {
        self.expired
    }

    /// The earliest deadline, if any.
    pub(crate) fn poll_timeout(&self, config: &Config, open: bool) -> Option<Instant> {
        let clock = self.clock.as_ref().filter(|_| self.expired.is_none())?;
        let ping = match clock.ping {
            Ping::Off => None,
            // No ping is sent once a close frame was.
            Ping::Due => open.then_some(clock.ping_at),
            Ping::Awaiting => config
                .ping_timeout
                .and_then(|t| clock.ping_at.checked_add(t)),
            Ping::Answered => Some(clock.ping_at),
            // Nothing to time until reading resumes.
            Ping::Overdue => None,
        };
        let close = match clock.close {
            Close::Off => None,
            Close::Unstamped => Some(clock.now),
            Close::By => Some(clock.close_at),
        };
        match (ping, close) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances to `now`: returns the first thing that is due.
    pub(crate) fn handle_timeout(&mut self, config: &Config, now: Instant, open: bool) -> Due {
        let close_before_start = self.close_before_start;
        let clock = self.clock.get_or_insert_with(|| {
            // The clock starts: the first ping one interval from now.
            let first = config.ping_interval.and_then(|i| deadline(now, i));
            Clock {
                now,
                ping_at: first.unwrap_or(now),
                close_at: now,
                ping: if first.is_some() {
                    Ping::Due
                } else {
                    Ping::Off
                },
                close: if close_before_start {
                    Close::Unstamped
                } else {
                    Close::Off
                },
            }
        });
        clock.now = now;
        if self.expired.is_some() {
            return Due::Nothing;
        }
        match clock.close {
            Close::Unstamped => match deadline(now, config.close_timeout) {
                Some(at) => {
                    clock.close_at = at;
                    clock.close = Close::By;
                }
                // Beyond what the clock holds: no deadline.
                None => clock.close = Close::Off,
            },
            Close::By if clock.close_at <= now => {
                self.expired = Some(Timeout::Close);
                return Due::Close;
            }
            _ => {}
        }
        match clock.ping {
            Ping::Answered => {
                let rtt = now.saturating_duration_since(clock.ping_at);
                let micros = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX - 1);
                self.rtt_micros = micros.saturating_add(1);
                // The next ping, one interval after the previous one was sent.
                match config
                    .ping_interval
                    .and_then(|i| deadline(clock.ping_at, i))
                {
                    Some(at) => {
                        clock.ping_at = at;
                        clock.ping = Ping::Due;
                    }
                    None => clock.ping = Ping::Off,
                }
            }
            Ping::Awaiting
                if config
                    .ping_timeout
                    .and_then(|t| clock.ping_at.checked_add(t))
                    .is_some_and(|at| at <= now) =>
            {
                if self.held {
                    clock.ping = Ping::Overdue;
                } else {
                    self.expired = Some(Timeout::Keepalive);
                    return Due::Keepalive;
                }
            }
            Ping::Due if open && clock.ping_at <= now => {
                self.seq = self.seq.wrapping_add(1).max(1);
                clock.ping_at = now;
                clock.ping = Ping::Awaiting;
                return Due::Ping;
            }
            _ => {}
        }
        Due::Nothing
    }

    /// Whether the driver has stopped reading because the application has
    /// not taken what was received. While it has, the pong deadline does
    /// not expire: the pong may be among the bytes not read. When reading
    /// resumes after the deadline passed, a new ping is due at once, with a
    /// whole `ping_timeout` for its pong.
    pub(crate) fn hold(&mut self, held: bool) {
        if self.held == held {
            return;
        }
        self.held = held;
        if !held
            && let Some(clock) = &mut self.clock
            && clock.ping == Ping::Overdue
        {
            clock.ping_at = clock.now;
            clock.ping = Ping::Due;
        }
    }

    /// A pong was decoded: only the latest ping's counts; a stray, late or
    /// duplicate one changes nothing.
    pub(crate) fn handle_pong(&mut self, payload: &[u8]) {
        if let Some(clock) = &mut self.clock
            && matches!(clock.ping, Ping::Awaiting | Ping::Overdue)
            && payload == u64::from(self.seq).to_be_bytes()
        {
            clock.ping = Ping::Answered;
        }
    }

    /// This end sent its close frame and awaits the peer's.
    pub(crate) fn start_close(&mut self) {
        match &mut self.clock {
            Some(clock) if clock.close == Close::Off => clock.close = Close::Unstamped,
            Some(_) => {}
            None => self.close_before_start = true,
        }
    }

    /// The connection has closed: no deadline stands.
    pub(crate) fn stop(&mut self) {
        self.close_before_start = false;
        if let Some(clock) = &mut self.clock {
            clock.ping = Ping::Off;
            clock.close = Close::Off;
        }
    }
}

/// `from + after`; `None` (no deadline) for a span beyond what an `Instant`
/// holds, such as `Duration::MAX`.
fn deadline(from: Instant, after: Duration) -> Option<Instant> {
    from.checked_add(after)
}

//! The keepalive and the close deadline, on virtual time: the instants are
//! made up, and the connection never reads a clock.

use std::time::{Duration, Instant};

use ws_proto::{CloseCode, CloseFrame, Config, ConfigError, Connection, Role, State, Timeout};

use crate::{client_frame, receive, transmit};

const INTERVAL: Duration = Duration::from_secs(20);
const TIMEOUT: Duration = Duration::from_secs(10);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A server with the default heartbeat (20 s, 10 s) whose clock started at
/// the returned instant.
fn started() -> (Connection, Instant) {
    started_with(Config::default())
}

fn started_with(config: Config) -> (Connection, Instant) {
    let mut conn = Connection::new(Role::Server, config);
    let t0 = Instant::now();
    assert_eq!(conn.handle_timeout(t0), None);
    (conn, t0)
}

/// The keepalive ping the server owes: its 8-byte payload.
fn ping_sent(conn: &mut Connection) -> [u8; 8] {
    let out = transmit(conn);
    assert_eq!(
        out[..2],
        [0x89, 8],
        "a ping with an 8-byte payload: {out:x?}"
    );
    out[2..].try_into().unwrap()
}

/// A masked pong from the client.
fn pong(payload: &[u8]) -> Vec<u8> {
    client_frame(true, 0xA, payload)
}

mod keepalive_schedule {
    use super::*;

    #[test]
    fn the_first_ping_is_due_one_interval_after_the_clock_starts() {
        let (mut conn, t0) = started();
        assert_eq!(conn.poll_timeout(), Some(t0 + INTERVAL));
        assert_eq!(conn.handle_timeout(t0 + INTERVAL - secs(0.001)), None);
        assert!(transmit(&mut conn).is_empty(), "not yet");
        assert_eq!(conn.handle_timeout(t0 + INTERVAL), None);
        assert_eq!(ping_sent(&mut conn), 1u64.to_be_bytes());
        // Now the pong deadline stands, counted from the ping.
        assert_eq!(conn.poll_timeout(), Some(t0 + INTERVAL + TIMEOUT));
    }

    #[test]
    fn no_clock_no_deadline() {
        let conn = Connection::new(Role::Server, Config::default());
        assert_eq!(conn.poll_timeout(), None, "time starts at handle_timeout");
    }

    #[test]
    fn no_second_ping_while_the_first_awaits_its_pong() {
        let config = Config::default().ping_timeout(None);
        let (mut conn, t0) = started_with(config);
        conn.handle_timeout(t0 + INTERVAL);
        ping_sent(&mut conn);
        assert_eq!(conn.poll_timeout(), None, "no pong deadline, no next ping");
        assert_eq!(conn.handle_timeout(t0 + INTERVAL * 5), None);
        assert!(transmit(&mut conn).is_empty());
    }

    #[test]
    fn the_next_ping_is_counted_from_the_previous_one() {
        let (mut conn, t0) = started();
        conn.handle_timeout(t0 + INTERVAL);
        let payload = ping_sent(&mut conn);
        receive(&mut conn, &pong(&payload)).unwrap();
        conn.handle_timeout(t0 + INTERVAL + secs(3.0));
        assert_eq!(conn.poll_timeout(), Some(t0 + INTERVAL * 2));
        conn.handle_timeout(t0 + INTERVAL * 2);
        assert_eq!(ping_sent(&mut conn), 2u64.to_be_bytes(), "a new sequence");
    }

    #[test]
    fn no_ping_once_a_close_frame_was_sent() {
        let (mut conn, t0) = started();
        let mut out = bytes::BytesMut::new();
        conn.close(None, &mut out).unwrap();
        conn.handle_timeout(t0 + secs(1.0));
        assert_eq!(conn.poll_timeout(), Some(t0 + secs(1.0) + TIMEOUT));
        conn.handle_timeout(t0 + INTERVAL);
        assert!(transmit(&mut conn).is_empty(), "no ping while closing");
    }

    #[test]
    fn a_ping_owed_goes_ahead_of_the_next_message() {
        let (mut conn, t0) = started();
        conn.handle_timeout(t0 + INTERVAL);
        let mut out = bytes::BytesMut::new();
        conn.send(&ws_proto::Message::text("hi"), &mut out).unwrap();
        assert_eq!(out[..2], [0x89, 8]);
        assert_eq!(out[10..], [0x81, 2, b'h', b'i']);
    }
}

/// Section 5.5.3: "A response to an unsolicited Pong frame is not expected."
/// Only the latest keepalive ping's pong counts.
mod section_5_5_3_pong_matching {
    use super::*;

    #[test]
    fn the_pong_of_the_latest_ping_is_timed_at_the_next_call() {
        let (mut conn, t0) = started();
        conn.handle_timeout(t0 + INTERVAL);
        let payload = ping_sent(&mut conn);
        receive(&mut conn, &pong(&payload)).unwrap();
        // Decoded without the time: the connection asks for it at once.
        let due = conn.poll_timeout().unwrap();
        assert!(due <= t0 + INTERVAL, "due at once, not at {due:?}");
        assert_eq!(conn.rtt(), None);
        assert_eq!(conn.handle_timeout(t0 + INTERVAL + secs(0.25)), None);
        assert_eq!(conn.rtt(), Some(secs(0.25)));
    }

    #[test]
    fn a_stray_pong_changes_nothing() {
        let (mut conn, t0) = started();
        receive(&mut conn, &pong(&1u64.to_be_bytes())).unwrap();
        assert_eq!(conn.poll_timeout(), Some(t0 + INTERVAL));
        conn.handle_timeout(t0 + secs(1.0));
        assert_eq!(conn.rtt(), None);
    }

    #[test]
    fn a_pong_with_another_payload_does_not_stop_the_timeout() {
        let (mut conn, t0) = started();
        conn.handle_timeout(t0 + INTERVAL);
        ping_sent(&mut conn);
        receive(&mut conn, &pong(b"unrelated")).unwrap();
        assert_eq!(conn.poll_timeout(), Some(t0 + INTERVAL + TIMEOUT));
        assert_eq!(
            conn.handle_timeout(t0 + INTERVAL + TIMEOUT),
            Some(Timeout::Keepalive)
        );
    }

    #[test]
    fn a_late_pong_of_an_earlier_ping_does_not_count() {
        let (mut conn, t0) = started();
        conn.handle_timeout(t0 + INTERVAL);
        let first = ping_sent(&mut conn);
        receive(&mut conn, &pong(&first)).unwrap();
        conn.handle_timeout(t0 + INTERVAL + secs(1.0));
        conn.handle_timeout(t0 + INTERVAL * 2);
        ping_sent(&mut conn);
        // The first ping's pong again (late, or duplicated).
        receive(&mut conn, &pong(&first)).unwrap();
        assert_eq!(conn.poll_timeout(), Some(t0 + INTERVAL * 2 + TIMEOUT));
        assert_eq!(conn.rtt(), Some(secs(1.0)), "the first round trip stays");
        assert_eq!(
            conn.handle_timeout(t0 + INTERVAL * 2 + TIMEOUT),
            Some(Timeout::Keepalive)
        );
    }

    #[test]
    fn a_duplicate_pong_is_timed_once() {
        let (mut conn, t0) = started();
        conn.handle_timeout(t0 + INTERVAL);
        let payload = ping_sent(&mut conn);
        receive(&mut conn, &pong(&payload)).unwrap();
        conn.handle_timeout(t0 + INTERVAL + secs(0.5));
        receive(&mut conn, &pong(&payload)).unwrap();
        assert_eq!(conn.poll_timeout(), Some(t0 + INTERVAL * 2));
        conn.handle_timeout(t0 + INTERVAL + secs(5.0));
        assert_eq!(conn.rtt(), Some(secs(0.5)));
    }
}

mod keepalive_timeout {
    use super::*;

    #[test]
    fn a_peer_that_never_answers_fails_with_1011_at_the_deadline() {
        let (mut conn, t0) = started();
        conn.handle_timeout(t0 + INTERVAL);
        ping_sent(&mut conn);
        let deadline = t0 + INTERVAL + TIMEOUT;
        assert_eq!(conn.handle_timeout(deadline - secs(0.001)), None);
        assert_eq!(conn.state(), State::Open);
        assert_eq!(conn.handle_timeout(deadline), Some(Timeout::Keepalive));
        assert_eq!(conn.state(), State::Closed);
        assert_eq!(conn.timeout(), Some(Timeout::Keepalive));
        let out = transmit(&mut conn);
        assert_eq!(out[..4], [0x88, 24, 0x03, 0xF3], "close 1011: {out:x?}");
        assert_eq!(&out[4..], b"keepalive ping timeout");
        assert_eq!(conn.poll_timeout(), None, "nothing timed once closed");
        assert_eq!(conn.handle_timeout(deadline + INTERVAL), None);
    }

    #[test]
    fn data_from_the_peer_does_not_answer_a_ping() {
        let (mut conn, t0) = started();
        conn.handle_timeout(t0 + INTERVAL);
        ping_sent(&mut conn);
        for _ in 0..100 {
            receive(&mut conn, &client_frame(true, 0x1, b"busy")).unwrap();
        }
        assert_eq!(
            conn.handle_timeout(t0 + INTERVAL + TIMEOUT),
            Some(Timeout::Keepalive)
        );
    }
}

/// Section 7.1.1: after sending a close frame an endpoint waits for the
/// peer's; the close timeout bounds the wait.
mod section_7_1_1_close_deadline {
    use super::*;

    fn closing() -> (Connection, Instant) {
        let (mut conn, t0) = started();
        let mut out = bytes::BytesMut::new();
        conn.close(Some(CloseFrame::new(CloseCode::NORMAL, "")), &mut out)
            .unwrap();
        assert_eq!(conn.state(), State::Closing);
        // Sent without the time: the deadline starts at the next call.
        assert_eq!(conn.poll_timeout(), Some(t0));
        let t1 = t0 + secs(2.0);
        assert_eq!(conn.handle_timeout(t1), None);
        assert_eq!(conn.poll_timeout(), Some(t1 + TIMEOUT));
        (conn, t1)
    }

    #[test]
    fn a_peer_that_ignores_our_close_frame_is_given_up_at_the_deadline() {
        let (mut conn, t1) = closing();
        assert_eq!(conn.handle_timeout(t1 + TIMEOUT - secs(0.001)), None);
        assert_eq!(conn.handle_timeout(t1 + TIMEOUT), Some(Timeout::Close));
        assert_eq!(conn.state(), State::Closed);
        assert_eq!(conn.close_code(), CloseCode::ABNORMAL);
        assert!(
            transmit(&mut conn).is_empty(),
            "our close frame went already"
        );
    }

    #[test]
    fn data_from_the_peer_does_not_extend_the_deadline() {
        let (mut conn, t1) = closing();
        for n in 0..50 {
            let now = t1 + TIMEOUT * n / 50;
            assert!(
                receive(&mut conn, &client_frame(true, 0x1, b"more"))
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(conn.handle_timeout(now), None);
        }
        assert_eq!(conn.handle_timeout(t1 + TIMEOUT), Some(Timeout::Close));
    }

    #[test]
    fn the_peers_close_frame_ends_the_wait() {
        let (mut conn, t1) = closing();
        receive(&mut conn, &client_frame(true, 0x8, &1000u16.to_be_bytes())).unwrap();
        assert_eq!(conn.state(), State::Closed);
        assert_eq!(conn.poll_timeout(), None);
        assert_eq!(conn.handle_timeout(t1 + TIMEOUT * 2), None);
    }

    #[test]
    fn a_close_timeout_beyond_the_clock_means_no_deadline() {
        let config = Config::default().close_timeout(Duration::MAX);
        let (mut conn, t0) = started_with(config.ping_interval(None));
        let mut out = bytes::BytesMut::new();
        conn.close(None, &mut out).unwrap();
        assert_eq!(conn.handle_timeout(t0), None);
        assert_eq!(conn.poll_timeout(), None);
    }
}

mod heartbeat_settings {
    use super::*;

    #[test]
    fn the_interval_must_be_greater_than_the_timeout() {
        let equal = Config::default()
            .ping_interval(Some(TIMEOUT))
            .ping_timeout(Some(TIMEOUT));
        assert_eq!(
            equal.check(),
            Err(ConfigError::PingIntervalNotGreaterThanTimeout {
                interval: TIMEOUT,
                timeout: TIMEOUT
            })
        );
        let just_above = equal.clone().ping_interval(Some(TIMEOUT + secs(0.001)));
        assert_eq!(just_above.check(), Ok(()));
        assert_eq!(Config::default().check(), Ok(()), "the defaults hold");
        assert_eq!(equal.clone().ping_interval(None).check(), Ok(()));
        assert_eq!(equal.ping_timeout(None).check(), Ok(()));
    }

    #[test]
    fn keepalive_off_times_nothing() {
        let (mut conn, t0) = started_with(Config::default().ping_interval(None));
        assert_eq!(conn.poll_timeout(), None);
        assert_eq!(conn.handle_timeout(t0 + INTERVAL * 100), None);
        assert!(transmit(&mut conn).is_empty());
    }

    #[test]
    fn an_interval_beyond_the_clock_sends_no_ping() {
        let config = Config::default()
            .ping_interval(Some(Duration::MAX))
            .ping_timeout(None);
        let (conn, _) = started_with(config);
        assert_eq!(conn.poll_timeout(), None);
    }

    #[test]
    fn the_smallest_interval_still_waits_for_the_pong() {
        let config = Config::default()
            .ping_interval(Some(Duration::from_nanos(2)))
            .ping_timeout(Some(Duration::from_nanos(1)));
        let (mut conn, t0) = started_with(config);
        conn.handle_timeout(t0 + Duration::from_nanos(2));
        ping_sent(&mut conn);
        assert_eq!(
            conn.handle_timeout(t0 + Duration::from_nanos(3)),
            Some(Timeout::Keepalive)
        );
    }
}

mod before_the_clock_starts {
    use super::*;

    #[test]
    fn a_close_sent_before_the_first_call_is_timed_from_it() {
        let mut conn = Connection::new(Role::Server, Config::default());
        let mut out = bytes::BytesMut::new();
        conn.close(None, &mut out).unwrap();
        assert_eq!(conn.poll_timeout(), None, "no time yet");
        let t0 = Instant::now();
        assert_eq!(conn.handle_timeout(t0), None);
        assert_eq!(
            conn.poll_timeout(),
            Some(t0 + TIMEOUT),
            "counted from the first call"
        );
        assert_eq!(conn.handle_timeout(t0 + TIMEOUT), Some(Timeout::Close));
    }
}

/// Issue 25, item 13: while the driver holds reading (the application has
/// not taken what was received), the pong may be waiting unread: its
/// deadline passing is not a failure. Once reading resumes, a new ping goes
/// at once, with a whole timeout for its pong.
#[test]
fn the_pong_deadline_does_not_expire_while_reading_is_held() {
    let (mut conn, t0) = started();
    let ping_at = t0 + INTERVAL;
    assert_eq!(conn.handle_timeout(ping_at), None);
    let first = ping_sent(&mut conn);
    conn.hold_reading(true);
    let late = ping_at + TIMEOUT * 3;
    assert_eq!(
        conn.handle_timeout(ping_at + TIMEOUT),
        None,
        "held: no failure"
    );
    assert_eq!(conn.handle_timeout(late), None);
    assert_eq!(conn.poll_timeout(), None, "nothing timed while held");
    assert_eq!(conn.state(), State::Open);

    conn.hold_reading(false);
    // A new ping is due at once...
    assert!(conn.poll_timeout().is_some_and(|at| at <= late));
    let resumed = late + Duration::from_millis(1);
    assert_eq!(conn.handle_timeout(resumed), None);
    let second = ping_sent(&mut conn);
    assert_ne!(first, second, "a ping of its own");
    // ...and the pong of the first, read now, no longer counts...
    receive(&mut conn, &pong(&first)).unwrap();
    assert_eq!(
        conn.handle_timeout(resumed + TIMEOUT),
        Some(Timeout::Keepalive)
    );
}

/// The hold changes nothing for a peer that answers, and releasing it
/// before the deadline leaves the deadline as it was.
#[test]
fn a_hold_released_before_the_deadline_leaves_it_as_it_was() {
    let (mut conn, t0) = started();
    let ping_at = t0 + INTERVAL;
    assert_eq!(conn.handle_timeout(ping_at), None);
    let _ = ping_sent(&mut conn);
    conn.hold_reading(true);
    conn.hold_reading(false);
    assert_eq!(conn.poll_timeout(), Some(ping_at + TIMEOUT));
    assert_eq!(
        conn.handle_timeout(ping_at + TIMEOUT),
        Some(Timeout::Keepalive)
    );
}

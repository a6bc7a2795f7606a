//! The envelope a publication travels in between instances: small,
//! binary and versioned.
//!
//! ```text
//! offset  size  field
//! 0       1     version: 1
//! 1       1     flags: bit 0 binary (else text), bit 1 every member (else a room)
//! 2       8     node id, big-endian: the publishing instance
//! 10      8     sequence number, big-endian: per node and channel, from 1
//! 18      4     room length R, big-endian (0 for every member)
//! 22      R     room, UTF-8
//! 22+R    rest  the message's payload
//! ```
//!
//! A receiver drops, and counts, an envelope of another version, one cut
//! short, or one whose room or text is not UTF-8.

use bytes::{BufMut, Bytes, BytesMut};
use ws_proto::{Message, Utf8Bytes};
use ws_server::{Audience, Publication};

/// The version this build writes and reads.
pub(crate) const VERSION: u8 = 1;
const BINARY: u8 = 0b01;
const EVERYONE: u8 = 0b10;
const HEADER: usize = 22;

/// Why an envelope was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("envelope version {0}, this build reads version {VERSION}")]
    Version(u8),
    #[error("envelope cut short")]
    Truncated,
    #[error("unknown envelope flags {0:#04x}")]
    Flags(u8),
    #[error("room or text that is not UTF-8")]
    Utf8,
}

/// A decoded envelope: who sent it, its place in that sender's sequence,
/// and the publication.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) node: u64,
    pub(crate) seq: u64,
    pub(crate) publication: Publication,
}

/// Encodes `publication` from `node` as number `seq`. `None` for a
/// control message (the hub never forwards one).
pub(crate) fn encode(node: u64, seq: u64, publication: &Publication) -> Option<Bytes> {
    let (binary, payload): (bool, &[u8]) = match &publication.message {
        Message::Text(text) => (false, text.as_bytes()),
        Message::Binary(data) => (true, data),
        _ => return None,
    };
    let (everyone, room) = match &publication.audience {
        Audience::Room(room) => (false, room.as_str()),
        _ => (true, ""),
    };
    let mut out = BytesMut::with_capacity(HEADER + room.len() + payload.len());
    out.put_u8(VERSION);
    out.put_u8((u8::from(binary) * BINARY) | (u8::from(everyone) * EVERYONE));
    out.put_u64(node);
    out.put_u64(seq);
    out.put_u32(u32::try_from(room.len()).ok()?);
    out.put_slice(room.as_bytes());
    out.put_slice(payload);
    Some(out.freeze())
}

/// Decodes an envelope, sharing `bytes` for the payload.
pub(crate) fn decode(bytes: Bytes) -> Result<Envelope, EnvelopeError> {
    let version = *bytes.first().ok_or(EnvelopeError::Truncated)?;
    if version != VERSION {
        return Err(EnvelopeError::Version(version));
    }
    if bytes.len() < HEADER {
        return Err(EnvelopeError::Truncated);
    }
    let flags = bytes[1];
    if flags & !(BINARY | EVERYONE) != 0 {
        return Err(EnvelopeError::Flags(flags));
    }
    let word = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
    let (node, seq) = (word(2), word(10));
    let room_len = u32::from_be_bytes(bytes[18..22].try_into().unwrap_or_default()) as usize;
    let payload_at = HEADER
        .checked_add(room_len)
        .filter(|&end| end <= bytes.len())
        .ok_or(EnvelopeError::Truncated)?;
    let audience = if flags & EVERYONE != 0 {
        if room_len != 0 {
            return Err(EnvelopeError::Flags(flags));
        }
        Audience::All
    } else {
        let room =
            std::str::from_utf8(&bytes[HEADER..payload_at]).map_err(|_| EnvelopeError::Utf8)?;
        Audience::Room(room.to_owned())
    };
    let payload = bytes.slice(payload_at..);
    let message = if flags & BINARY != 0 {
        Message::Binary(payload)
    } else {
        Message::Text(Utf8Bytes::try_from(payload).map_err(|_| EnvelopeError::Utf8)?)
    };
    Ok(Envelope {
        node,
        seq,
        publication: Publication {
            audience,
            except: None,
            message,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(publication: Publication) -> Envelope {
        let bytes = encode(7, 42, &publication).expect("a data message");
        let envelope = decode(bytes).expect("decodes");
        assert_eq!((envelope.node, envelope.seq), (7, 42));
        assert_eq!(envelope.publication.audience, publication.audience);
        assert_eq!(envelope.publication.message, publication.message);
        envelope
    }

    #[test]
    fn text_binary_room_and_everyone_round_trip() {
        round_trip(Publication::room("chat/é", "héllo"));
        round_trip(Publication::room("", Message::binary(vec![0u8, 255, 7])));
        round_trip(Publication::all(Message::binary(Vec::new())));
        round_trip(Publication::all(""));
    }

    #[test]
    fn control_messages_are_not_encoded() {
        let ping = Publication::all(Message::Ping(Bytes::new()));
        assert!(encode(1, 1, &ping).is_none());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(1, 2, &Publication::room("room", "payload")).unwrap();
        let payload_at = HEADER + 4;
        for len in 0..payload_at {
            assert_eq!(
                decode(bytes.slice(..len)).unwrap_err(),
                EnvelopeError::Truncated,
                "{len}"
            );
        }
        // Cut inside the payload, it is a shorter message, not an error:
        // the channel carries whole envelopes.
        assert!(decode(bytes.slice(..payload_at)).is_ok());
    }

    #[test]
    fn other_versions_flags_and_bad_utf8_are_refused() {
        let good = encode(1, 2, &Publication::room("room", "text")).unwrap();
        let mut bad = good.to_vec();
        bad[0] = 2;
        assert_eq!(decode(bad.into()).unwrap_err(), EnvelopeError::Version(2));
        let mut bad = good.to_vec();
        bad[1] = 0x80;
        assert_eq!(decode(bad.into()).unwrap_err(), EnvelopeError::Flags(0x80));
        let mut bad = good.to_vec();
        bad[HEADER] = 0xff;
        assert_eq!(decode(bad.into()).unwrap_err(), EnvelopeError::Utf8);
        let mut bad = good.to_vec();
        *bad.last_mut().unwrap() = 0xc0;
        assert_eq!(decode(bad.into()).unwrap_err(), EnvelopeError::Utf8);
        let mut bad = good.to_vec();
        bad[18..22].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(bad.into()).unwrap_err(), EnvelopeError::Truncated);
        assert_eq!(
            decode(Bytes::from_static(b"garbage that is long enough to parse")).unwrap_err(),
            EnvelopeError::Version(b'g')
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200 {
            for _ in 0..50 {
                let bytes: Vec<u8> = (0..len)
                    .map(|i| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Mostly a valid header, so that the later checks run.
                        if i == 0 { VERSION } else { x as u8 }
                    })
                    .collect();
                let _ = decode(bytes.into());
            }
        }
    }
}

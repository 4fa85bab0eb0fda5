//! Frames: how messages are laid out on a stream.
//!
//! | bytes | field |
//! |---|---|
//! | 4 | payload length `n`, big-endian; at most the decoder's `max_frame_bytes` |
//! | 1 | protocol version ([`PROTOCOL_VERSION`]) |
//! | n − 1 | the message, MessagePack with named fields |
//!
//! The length is checked against the limit as soon as its four bytes arrive,
//! before any buffer is sized for the payload, so a peer announcing a 4 GiB
//! frame costs nothing but an error. Frames are appended to one buffer
//! ([`encode_frame`]) so that a writer can batch many into one write.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The protocol version this build speaks, first byte of every payload.
pub const PROTOCOL_VERSION: u8 = 1;
/// The default limit on a frame's payload, in bytes (16 MiB).
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// Bytes of the length prefix.
const LENGTH_BYTES: usize = 4;

/// A frame that cannot be sent or read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The payload is larger than the limit (announced by a peer, or produced
    /// by an encoder).
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is empty: not even a version byte.
    #[error("empty frame")]
    Empty,
    /// The peer speaks a protocol version this build does not.
    #[error("protocol version {found} is not supported (this node speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version in the frame.
        found: u8,
    },
    /// The payload does not decode as the expected message.
    #[error("malformed frame: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    /// The message does not encode (a bug in the message type).
    #[error("message does not encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// Appends one frame holding `message` to `out`. On error `out` is unchanged.
pub fn encode_frame<T: Serialize>(
    message: &T,
    max_frame_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_BYTES]);
    out.push(PROTOCOL_VERSION);
    if let Err(error) = rmp_serde::encode::write_named(out, message) {
        out.truncate(start);
        return Err(error.into());
    }
    let len = out.len() - start - LENGTH_BYTES;
    if len > max_frame_bytes || len > u32::MAX as usize {
        out.truncate(start);
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    out[start..start + LENGTH_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Reads the next frame from the front of `buffer`.
///
/// Returns `Ok(None)` while the frame is incomplete (read more and call
/// again), or the message and the number of bytes it took. An error means the
/// stream is unusable: the length prefix said too much, or the payload is not
/// a message of this version.
pub fn decode_frame<T: DeserializeOwned>(
    buffer: &[u8],
    max_frame_bytes: usize,
) -> Result<Option<(T, usize)>, FrameError> {
    match split_frame(buffer, max_frame_bytes)? {
        None => Ok(None),
        Some((message, used)) => Ok(Some((rmp_serde::from_slice(message)?, used))),
    }
}

/// Finds the next frame at the front of `buffer` without decoding its
/// message: returns `Ok(None)` while it is incomplete, or the message's
/// MessagePack and the number of bytes the frame took. An error means the
/// stream is unusable (the length prefix said too much, or the version is
/// not this one); a message that then does not decode leaves the stream
/// usable, since the next frame's start is known.
pub fn split_frame(
    buffer: &[u8],
    max_frame_bytes: usize,
) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(prefix) = buffer.get(..LENGTH_BYTES) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("four bytes")) as usize;
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    let Some(payload) = buffer.get(LENGTH_BYTES..LENGTH_BYTES + len) else {
        return Ok(None);
    };
    match payload.split_first() {
        None => Err(FrameError::Empty),
        Some((&PROTOCOL_VERSION, message)) => Ok(Some((message, LENGTH_BYTES + len))),
        Some((&found, _)) => Err(FrameError::UnsupportedVersion { found }),
    }
}

/// The request id of an envelope whose body does not decode, so that the
/// request can be answered with what is wrong with it.
pub fn envelope_id(message: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        id: u64,
    }
    rmp_serde::from_slice::<Envelope>(message)
        .ok()
        .map(|e| e.id)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;
    use crate::{ConsistencyLevel, Value};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Sample {
        id: u64,
        level: ConsistencyLevel,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        value: Value,
    }

    fn sample() -> impl Strategy<Value = Sample> {
        (
            any::<u64>(),
            0..9usize,
            proptest::collection::vec(any::<u8>(), 0..300),
            ".{0,40}",
        )
            .prop_map(|(id, level, key, text)| Sample {
                id,
                level: ConsistencyLevel::ALL_LEVELS[level],
                key,
                value: Value::Text(text),
            })
    }

    proptest! {
        #[test]
        fn batched_frames_round_trip(messages in proptest::collection::vec(sample(), 1..8)) {
            let mut buffer = Vec::new();
            for message in &messages {
                encode_frame(message, MAX_FRAME_BYTES, &mut buffer).unwrap();
            }
            let mut at = 0;
            for message in &messages {
                let (decoded, used) =
                    decode_frame::<Sample>(&buffer[at..], MAX_FRAME_BYTES).unwrap().unwrap();
                prop_assert_eq!(&decoded, message);
                at += used;
            }
            prop_assert_eq!(at, buffer.len());
        }

        #[test]
        fn every_prefix_of_a_frame_asks_for_more(message in sample()) {
            let mut buffer = Vec::new();
            encode_frame(&message, MAX_FRAME_BYTES, &mut buffer).unwrap();
            for cut in 0..buffer.len() {
                prop_assert!(decode_frame::<Sample>(&buffer[..cut], MAX_FRAME_BYTES).unwrap().is_none());
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_frame::<Sample>(&bytes, MAX_FRAME_BYTES);
            let _ = decode_frame::<Value>(&bytes, 64);
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_the_payload_arrives() {
        // Only the prefix of a 4 GiB frame: refused at once.
        let error = decode_frame::<Value>(&u32::MAX.to_be_bytes(), MAX_FRAME_BYTES).unwrap_err();
        assert_eq!(
            error.to_string(),
            "frame of 4294967295 bytes exceeds the limit of 16777216 bytes"
        );
    }

    #[test]
    fn an_oversized_message_is_not_encoded() {
        let mut buffer = vec![1, 2, 3];
        let error = encode_frame(&Value::Blob(vec![0; 100]), 64, &mut buffer).unwrap_err();
        assert!(matches!(error, FrameError::TooLarge { max: 64, .. }));
        assert_eq!(
            buffer,
            [1, 2, 3],
            "a failed encode leaves the buffer as it was"
        );
    }

    #[test]
    fn another_protocol_version_is_named_in_the_error() {
        let mut buffer = Vec::new();
        encode_frame(&Value::Null, MAX_FRAME_BYTES, &mut buffer).unwrap();
        buffer[4] = 9;
        let error = decode_frame::<Value>(&buffer, MAX_FRAME_BYTES).unwrap_err();
        assert_eq!(
            error.to_string(),
            "protocol version 9 is not supported (this node speaks 1)"
        );
        let empty = decode_frame::<Value>(&[0, 0, 0, 0], MAX_FRAME_BYTES).unwrap_err();
        assert!(matches!(empty, FrameError::Empty));
    }
}

//! Size-prefixed frames: every Kafka request is an `int32` length followed by that many bytes.

use bytes::{Buf, Bytes, BytesMut};

/// Why a frame was refused. Either way the connection is closed with a logged reason.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The size prefix exceeds `socket.request.max.bytes`.
    TooLarge { size: i64, max: u32 },
    /// The size prefix is negative or too small to hold a request header.
    Invalid(i32),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { size, max } => write!(
                f,
                "request size {size} exceeds socket.request.max.bytes {max}"
            ),
            FrameError::Invalid(size) => write!(f, "invalid request size prefix {size}"),
        }
    }
}

/// Bytes of the smallest request header: api key, version, correlation id, client id length.
pub const REQUEST_HEADER_LEN_MIN: i32 = 10;

/// Takes one complete frame (without its size prefix) off the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed; the caller then reads more, having reserved
/// at most `needed_len` bytes. The prefix is checked against `max` before anything is
/// allocated for the body, so a hostile prefix costs nothing.
pub fn take_frame(buf: &mut BytesMut, max: u32) -> Result<Option<Bytes>, FrameError> {
    let Some(size) = peek_size(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < 4 + size {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

/// The total bytes (prefix included) the frame at the front of `buf` occupies, once known.
pub fn needed_len(buf: &[u8], max: u32) -> Result<Option<usize>, FrameError> {
    Ok(peek_size(buf, max)?.map(|s| s + 4))
}

fn peek_size(buf: &[u8], max: u32) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let size = i32::from_be_bytes(prefix.try_into().expect("4 bytes"));
    if size < REQUEST_HEADER_LEN_MIN {
        return Err(FrameError::Invalid(size));
    }
    if size as u32 > max {
        return Err(FrameError::TooLarge {
            size: size as i64,
            max,
        });
    }
    Ok(Some(size as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_and_partial_frames_wait() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&12i32.to_be_bytes());
        buf.extend_from_slice(&[7u8; 10]);
        assert_eq!(take_frame(&mut buf, 100), Ok(None));
        buf.extend_from_slice(&[7u8; 2]);
        buf.extend_from_slice(&[0, 0]);
        let f = take_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(f.len(), 12);
        assert_eq!(&buf[..], &[0, 0]);
    }

    #[test]
    fn oversized_and_negative_prefixes_are_refused_before_allocation() {
        let mut buf = BytesMut::from(&i32::MAX.to_be_bytes()[..]);
        assert!(matches!(
            take_frame(&mut buf, 1000),
            Err(FrameError::TooLarge { .. })
        ));
        let mut buf = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert_eq!(take_frame(&mut buf, 1000), Err(FrameError::Invalid(-5)));
    }
}

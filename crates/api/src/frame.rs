//! `version (1 byte) | length (u32 big-endian) | payload (length bytes of UTF-8 JSON)`.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PROTOCOL_VERSION: u8 = 1;
/// Largest payload either side accepts. A longer frame is refused before any
/// of it is read into memory.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;
pub const HEADER_LEN: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame version {0} is not supported (this side speaks {PROTOCOL_VERSION})")]
    Version(u8),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge(usize),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks a frame header; returns the payload length.
pub fn parse_header(h: [u8; HEADER_LEN]) -> Result<usize, FrameError> {
    if h[0] != PROTOCOL_VERSION {
        return Err(FrameError::Version(h[0]));
    }
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, FrameError> {
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut h[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let len = parse_header(h)?;
    let mut buf = vec![0u8; len];
    match r.read_exact(&mut buf).await {
        Ok(_) => Ok(Some(buf)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(e.into()),
    }
}

/// Encodes one frame into a buffer.
pub fn encode(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(payload.len()));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(PROTOCOL_VERSION);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    payload: &[u8],
) -> Result<(), FrameError> {
    w.write_all(&encode(payload)?).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn round_trip_and_limits() {
        rt().block_on(async {
            let f = encode(b"{\"x\":1}").unwrap();
            let mut two = f.clone();
            two.extend_from_slice(&f);
            let mut r = two.as_slice();
            assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"{\"x\":1}");
            assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"{\"x\":1}");
            assert!(read_frame(&mut r).await.unwrap().is_none());

            let mut big: &[u8] = &[1, 0xff, 0xff, 0xff, 0xff];
            assert!(matches!(
                read_frame(&mut big).await,
                Err(FrameError::TooLarge(_))
            ));
            let mut v2: &[u8] = &[2, 0, 0, 0, 1, b'x'];
            assert!(matches!(
                read_frame(&mut v2).await,
                Err(FrameError::Version(2))
            ));
            let mut cut: &[u8] = &f[..f.len() - 1];
            assert!(matches!(
                read_frame(&mut cut).await,
                Err(FrameError::Truncated)
            ));
            let mut half_header: &[u8] = &[1, 0];
            assert!(matches!(
                read_frame(&mut half_header).await,
                Err(FrameError::Truncated)
            ));
            assert!(matches!(
                encode(&vec![0; MAX_FRAME_LEN + 1]),
                Err(FrameError::TooLarge(_))
            ));
        });
    }

    proptest! {
        /// Any byte stream decodes to frames or a clean error; never a panic,
        /// never a frame over the limit.
        #[test]
        fn decoder_survives_any_stream(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            rt().block_on(async {
                let mut r = bytes.as_slice();
                for _ in 0..bytes.len() + 1 {
                    match read_frame(&mut r).await {
                        Ok(Some(p)) => assert!(p.len() <= MAX_FRAME_LEN),
                        Ok(None) | Err(_) => break,
                    }
                }
            });
        }

        #[test]
        fn encode_then_decode(payload in proptest::collection::vec(any::<u8>(), 0..4096)) {
            rt().block_on(async {
                let f = encode(&payload).unwrap();
                let mut r = f.as_slice();
                assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), payload);
            });
        }
    }
}

//! The `/peddlenet/sync/1` stream protocol: one request, one response, each
//! `length (u32 BE) ‖ bytes`, at most [`peddlenet_sync::transport::MAX_FRAME`].
//! The bytes are peddlenet-sync's transport messages; this layer only frames them.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use peddlenet_sync::transport::{MAX_FRAME, frame_len};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/peddlenet/sync/1");

#[derive(Debug, Clone, Default)]
pub struct SyncCodec;

async fn read<T: AsyncRead + Unpin + Send>(io: &mut T) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = frame_len(len).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "sync frame of {} bytes exceeds the {MAX_FRAME}-byte limit",
                u32::from_be_bytes(len)
            ),
        )
    })?;
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write<T: AsyncWrite + Unpin + Send>(io: &mut T, b: Vec<u8>) -> std::io::Result<()> {
    if b.len() > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "sync frame too large",
        ));
    }
    io.write_all(&(b.len() as u32).to_be_bytes()).await?;
    io.write_all(&b).await?;
    io.close().await
}

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()> {
        write(io, req).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()> {
        write(io, res).await
    }
}

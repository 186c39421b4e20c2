//! Writing a response: memory chunks through glommio, file ranges with `sendfile(2)`.
//!
//! `sendfile` on the non-blocking socket moves record bytes from the page cache to the socket
//! without a user-space copy. When the socket buffer is full it returns EAGAIN; the shard must
//! not block, so the next small piece of the range is read into memory and handed to glommio's
//! write, which parks this task until the socket is writable while the shard serves everyone
//! else. A consumer that stops reading therefore costs one parked task, never a stalled shard.

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use crate::config::STALL_CHUNK_BYTES;
use crate::protocol::fetch::{Chunk, FileRange};

/// Writes every chunk in order.
pub async fn write_chunks(stream: &mut TcpStream, chunks: Vec<Chunk>) -> std::io::Result<()> {
    for chunk in chunks {
        match chunk {
            Chunk::Mem(b) => stream.write_all(&b).await?,
            Chunk::File(r) => send_file_range(stream, &r).await?,
        }
    }
    Ok(())
}

async fn send_file_range(stream: &mut TcpStream, r: &FileRange) -> std::io::Result<()> {
    let sock = stream.as_raw_fd();
    let file = r.file.as_raw_fd();
    let mut offset = r.position as libc::off_t;
    let end = offset + r.len as libc::off_t;
    while offset < end {
        let want = (end - offset) as usize;
        // SAFETY: both descriptors are open for the duration of the call; `offset` is ours.
        let n = unsafe { libc::sendfile(sock, file, &mut offset, want) };
        if n > 0 {
            continue;
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "segment file ended inside a fetch range",
            ));
        }
        let err = std::io::Error::last_os_error();
        match err.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => {
                let len = want.min(STALL_CHUNK_BYTES);
                let mut piece = vec![0u8; len];
                r.file.read_exact_at(&mut piece, offset as u64)?;
                stream.write_all(&piece).await?;
                offset += len as libc::off_t;
            }
            _ => return Err(err),
        }
    }
    Ok(())
}

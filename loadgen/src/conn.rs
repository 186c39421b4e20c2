//! One pipelined connection to one broker, split into a writing half and a reading half.
//!
//! glommio's `TcpStream` cannot be split, and a pipelined client wants one task writing
//! requests while another reads responses. Both halves are glommio streams over duplicates of
//! the same socket descriptor: each does plain non-blocking `send`/`recv` calls with io_uring
//! readiness polls, so they never interfere. Kafka answers requests on a connection in order,
//! which is all the matching the reader needs.

use std::os::fd::{AsRawFd, FromRawFd};

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::Decodable;

use crate::wire;

/// Largest response frame accepted (a fetch is bounded by `fetch.max.bytes`, far below it).
const RESPONSE_BYTES_MAX: usize = 256 << 20;
/// Bytes read at a time when no larger frame is pending: large reads keep syscalls few.
const READ_CHUNK_BYTES: usize = 256 << 10;

/// The writing half. Lives on one executor, used by one task.
pub struct Writer {
    stream: TcpStream,
    pub addr: String,
}

/// The reading half, with its buffer of partly received frames.
pub struct Reader {
    stream: TcpStream,
    buf: BytesMut,
    pub addr: String,
}

/// Connects to `addr` and splits the connection.
pub async fn connect(addr: &str) -> Result<(Writer, Reader), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to broker {addr}: {e}"))?;
    // Requests are written whole; Nagle would only hold back the last segment of each.
    stream
        .set_nodelay(true)
        .map_err(|e| format!("{addr}: TCP_NODELAY: {e}"))?;
    // SAFETY: dup(2) of a descriptor we own; the new descriptor is owned by the new stream.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if fd < 0 {
        return Err(format!("{addr}: dup: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh, open socket descriptor that nothing else owns.
    let writer = unsafe { TcpStream::from_raw_fd(fd) };
    Ok((
        Writer {
            stream: writer,
            addr: addr.to_owned(),
        },
        Reader {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            addr: addr.to_owned(),
        },
    ))
}

impl Writer {
    /// Writes a whole request.
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("connection to broker {} failed: {e}", self.addr))
    }
}

impl Reader {
    /// Reads the next response frame (without its size prefix).
    pub async fn frame(&mut self) -> Result<Bytes, String> {
        loop {
            if let Some(f) = wire::take_frame(&mut self.buf, RESPONSE_BYTES_MAX)
                .map_err(|e| format!("broker {}: {e}", self.addr))?
            {
                return Ok(f);
            }
            let needed = self.buf.get(..4).map_or(4, |p| {
                4 + i32::from_be_bytes(p.try_into().expect("4")) as usize
            });
            let want = needed.saturating_sub(self.buf.len()).max(READ_CHUNK_BYTES);
            let start = self.buf.len();
            self.buf.resize(start + want, 0);
            let n = self.stream.read(&mut self.buf[start..]).await;
            let n = n.map_err(|e| format!("connection to broker {} failed: {e}", self.addr))?;
            self.buf.truncate(start + n);
            if n == 0 {
                return Err(format!(
                    "broker {} closed the connection (see its log for why)",
                    self.addr
                ));
            }
        }
    }

    /// Reads the next response frame and strips its header (v1 for flexible versions),
    /// checking the correlation id.
    pub async fn response(&mut self, correlation_id: i32, flexible: bool) -> Result<Bytes, String> {
        let mut f = self.frame().await?;
        let header = ResponseHeader::decode(&mut f, if flexible { 1 } else { 0 })
            .map_err(|e| format!("broker {}: response header: {e}", self.addr))?;
        if header.correlation_id != correlation_id {
            return Err(format!(
                "broker {} answered correlation id {}, expected {correlation_id}",
                self.addr, header.correlation_id
            ));
        }
        Ok(f)
    }
}

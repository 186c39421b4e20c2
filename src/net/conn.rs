//! One client connection: read a frame, handle it, write the response, repeat.

use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use tracing::{debug, warn};

use crate::api::{self, Outcome};
use crate::config::SHARD_INFLIGHT_BYTES_MAX;
use crate::protocol::frame;
use crate::shard::Shard;

use crate::config::{READ_CHUNK_BYTES, WAIT_READ_BYTES};

/// Serves one connection until the client closes it, it misbehaves, or the broker shuts down.
pub async fn serve_connection(shard: &Rc<Shard>, mut stream: TcpStream, peer: &str) {
    if let Err(e) = prepare_socket(&stream) {
        warn!(%peer, "closing connection: socket setup failed: {e}");
        return;
    }
    let max = shard.config.socket_request_max_bytes;
    // Idle connections hold no buffer: it is allocated by the first read.
    let mut buf = BytesMut::new();
    let mut session = api::Session {
        client_id: String::new(),
        client_host: format!("/{}", peer.rsplit_once(':').map_or(peer, |(h, _)| h)),
    };
    loop {
        let (frame, _inflight) = match read_frame(shard, &mut stream, &mut buf, max).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(reason) => {
                report_close(peer, &session, &reason);
                break;
            }
        };
        if shard.shutting_down.get() {
            break;
        }
        let handling = shard.intake.request();
        let outcome = api::handle(shard, frame, &mut session).await;
        drop(handling);
        match outcome {
            Outcome::Respond(chunks) => {
                if let Err(e) = super::write_chunks(&mut stream, chunks).await {
                    debug!(%peer, client_id = %session.client_id, "closing connection: write failed: {e}");
                    break;
                }
            }
            Outcome::NoResponse => {}
            Outcome::Close(reason) => {
                report_close(peer, &session, &reason);
                break;
            }
        }
        if shard.shutting_down.get() {
            break;
        }
    }
}

/// A connection closed for what its client sent (a malformed or oversized request, a frame cut
/// short) is a client error: debug level, summarised per client (`client_errors`).
fn report_close(peer: &str, session: &api::Session, reason: &str) {
    let client = if session.client_id.is_empty() {
        &session.client_host
    } else {
        &session.client_id
    };
    super::client_errors::report(
        client,
        format_args!("closing connection from {peer}: {reason}"),
    );
}

/// Non-blocking mode lets `sendfile(2)` return EAGAIN instead of stalling the shard; glommio's
/// own reads and writes already poll for readiness and are unaffected.
fn prepare_socket(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let fd = stream.as_raw_fd();
    // SAFETY: fcntl on a descriptor this connection owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads until one whole frame is buffered. `Ok(None)`: the client closed between requests.
///
/// The frame's bytes count against the shard's in-flight budget (`SHARD_INFLIGHT_BYTES_MAX`)
/// from the moment its size is known until the returned permit is dropped, after the response is
/// written. A shard at its budget stops reading sockets, which pushes back on clients through TCP
/// instead of growing memory.
///
/// The buffer grows with the bytes that arrive, never to the size a prefix announces: a client
/// that sends `100 MiB` as a prefix and then nothing costs the broker a few KiB, not 100 MiB of
/// zeroed memory. Reads go into the buffer's spare capacity without zeroing it first.
async fn read_frame<'a>(
    shard: &'a Shard,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    max: u32,
) -> Result<Option<(Bytes, Option<glommio::sync::Permit<'a>>)>, String> {
    let mut permit = None;
    loop {
        if permit.is_none() {
            if let Some(len) = frame::needed_len(buf, max).map_err(|e| e.to_string())? {
                let bytes = len.min(SHARD_INFLIGHT_BYTES_MAX) as u64;
                let p = shard.intake.hold_bytes(bytes).await;
                permit = Some(p.map_err(|()| "shutting down".to_string())?);
            }
        }
        if let Some(f) = frame::take_frame(buf, max).map_err(|e| e.to_string())? {
            return Ok(Some((f, permit)));
        }
        let needed = frame::needed_len(buf, max)
            .map_err(|e| e.to_string())?
            .unwrap_or(4);
        reserve_for_read(buf, needed);
        let n = match read_some(stream, buf).await {
            Ok(n) => n,
            Err(e) => return Err(format!("read failed: {e}")),
        };
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(format!(
                "client closed mid-request ({} bytes of a truncated frame)",
                buf.len()
            ));
        }
    }
}

/// Makes room for the next read. The spare capacity is at least [`READ_CHUNK_BYTES`] (room for
/// small pipelined requests in one read) and at most what is buffered already, so a large
/// frame's buffer doubles as its bytes arrive instead of being sized by its prefix.
fn reserve_for_read(buf: &mut BytesMut, needed: usize) {
    let spare = buf.capacity() - buf.len();
    if spare >= READ_CHUNK_BYTES.min(needed.saturating_sub(buf.len()).max(1)) {
        return;
    }
    let missing = needed.saturating_sub(buf.len());
    let grow = missing.clamp(READ_CHUNK_BYTES, buf.len().max(READ_CHUNK_BYTES));
    buf.reserve(grow);
}

/// Appends the bytes available on the socket to `buf` (up to its spare capacity) and returns
/// how many; 0 means the client closed.
///
/// `recv(2)` writes straight into the spare capacity, which is never zeroed: zeroing 64 KiB
/// before every read cost 4.4% of the broker's CPU at 900 MiB/s (tuning.md). When nothing is
/// ready, glommio's read waits for the socket into a small stack buffer, so the task parks on
/// readiness like any other glommio read.
async fn read_some(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    loop {
        let spare = buf.spare_capacity_mut();
        // SAFETY: recv writes at most `spare.len()` bytes into memory this buffer owns; the
        // length is advanced only over the bytes it reports written.
        let n = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: recv initialised the first `n` spare bytes.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(n);
        }
        let err = std::io::Error::last_os_error();
        match err.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => {
                let mut wait = [0u8; WAIT_READ_BYTES];
                let n = stream.read(&mut wait).await?;
                buf.extend_from_slice(&wait[..n]);
                return Ok(n);
            }
            _ => return Err(err),
        }
    }
}

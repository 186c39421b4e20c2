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

/// Bytes read from the socket at a time when no larger frame is pending.
const READ_CHUNK_BYTES: usize = 64 << 10;

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
                warn!(%peer, client_id = %session.client_id, "closing connection: {reason}");
                break;
            }
        };
        if shard.shutting_down.get() {
            break;
        }
        shard
            .requests_in_flight
            .set(shard.requests_in_flight.get() + 1);
        let outcome = api::handle(shard, frame, &mut session).await;
        shard
            .requests_in_flight
            .set(shard.requests_in_flight.get() - 1);
        match outcome {
            Outcome::Respond(chunks) => {
                if let Err(e) = super::write_chunks(&mut stream, chunks).await {
                    debug!(%peer, client_id = %session.client_id, "closing connection: write failed: {e}");
                    break;
                }
            }
            Outcome::NoResponse => {}
            Outcome::Close(reason) => {
                warn!(%peer, client_id = %session.client_id, "closing connection: {reason}");
                break;
            }
        }
        if shard.shutting_down.get() {
            break;
        }
    }
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
                let p = shard.inflight_bytes.acquire_permit(bytes).await;
                permit = Some(p.map_err(|_| "shutting down".to_string())?);
            }
        }
        if let Some(f) = frame::take_frame(buf, max).map_err(|e| e.to_string())? {
            return Ok(Some((f, permit)));
        }
        let needed = frame::needed_len(buf, max)
            .map_err(|e| e.to_string())?
            .unwrap_or(4);
        let want = needed.saturating_sub(buf.len()).max(READ_CHUNK_BYTES);
        let start = buf.len();
        buf.resize(start + want, 0);
        let n = match stream.read(&mut buf[start..]).await {
            Ok(n) => n,
            Err(e) => {
                buf.truncate(start);
                return Err(format!("read failed: {e}"));
            }
        };
        buf.truncate(start + n);
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

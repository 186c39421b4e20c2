//! Connections: the accept loop and the per-connection request loop.
//!
//! A connection lives on the shard whose listener accepted it (SO_REUSEPORT spreads them) for
//! its whole life. Requests on one connection are handled one at a time and answered in order,
//! as Kafka does, which also bounds what one client can make the broker hold.

mod conn;
mod send;

pub use conn::serve_connection;
pub use send::write_chunks;

use std::rc::Rc;

use glommio::net::TcpListener;
use tracing::{info, warn};

use crate::shard::Shard;

/// Accepts connections until shutdown, enforcing this shard's share of `max.connections`
/// (a dynamic broker config: read at each accept).
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(shard = shard.id(), "accept failed: {e}");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.shutting_down.get() {
            break;
        }
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let limit = shard
            .broker_config()
            .max_connections
            .div_ceil(shard.count() as u32)
            .max(1);
        if shard.connections.get() >= limit {
            warn!(shard = shard.id(), %peer, limit, "closing connection: max.connections reached");
            continue;
        }
        shard.connections.set(shard.connections.get() + 1);
        let s = shard.clone();
        glommio::spawn_local(async move {
            serve_connection(&s, stream, &peer).await;
            s.connections.set(s.connections.get() - 1);
        })
        .detach();
    }
    info!(shard = shard.id(), "stopped accepting connections");
}

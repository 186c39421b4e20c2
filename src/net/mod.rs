//! Connections: the accept loop and the per-connection request loop.
//!
//! A connection lives on the shard whose listener accepted it (SO_REUSEPORT spreads them) for
//! its whole life. Requests on one connection are handled one at a time and answered in order,
//! as Kafka does, which also bounds what one client can make the broker hold.

pub mod client_errors;
mod conn;
mod send;

pub use conn::serve_connection;
pub use send::write_chunks;

use std::rc::Rc;

use glommio::net::TcpListener;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::{ACCEPT_BACKOFF_MS_MAX, ACCEPT_BACKOFF_MS_MIN, ACCEPT_FAILURE_LOG_INTERVAL_MS};
use crate::shard::Shard;

/// Failed accepts: an exponential back-off and a log line at most once per interval.
struct AcceptBackoff {
    wait: Duration,
    failures: u64,
    last_logged: Option<Instant>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            wait: Duration::from_millis(ACCEPT_BACKOFF_MS_MIN),
            failures: 0,
            last_logged: None,
        }
    }
}

impl AcceptBackoff {
    /// Counts a failure and returns how long to wait before the next accept.
    fn failed(&mut self, shard: usize, e: &dyn std::fmt::Display) -> Duration {
        self.failures += 1;
        let due = self
            .last_logged
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(ACCEPT_FAILURE_LOG_INTERVAL_MS));
        if due {
            warn!(
                shard,
                failures = self.failures,
                backoff_ms = self.wait.as_millis() as u64,
                "accept failed: {e} ({} failures since the last report; logged at most every {} s)",
                self.failures,
                ACCEPT_FAILURE_LOG_INTERVAL_MS / 1000
            );
            self.failures = 0;
            self.last_logged = Some(Instant::now());
        }
        let wait = self.wait;
        self.wait = (self.wait * 2).min(Duration::from_millis(ACCEPT_BACKOFF_MS_MAX));
        wait
    }

    fn succeeded(&mut self) {
        self.wait = Duration::from_millis(ACCEPT_BACKOFF_MS_MIN);
    }
}

/// Accepts connections until shutdown, enforcing this shard's share of `max.connections` (a
/// dynamic broker config: read at each accept) within the descriptor budget fixed at start.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    let budget = shard.config.fd_budget.connections_max;
    let mut backoff = AcceptBackoff::default();
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors (EMFILE) an accept fails at once for as long as the
                // connection waits in the backlog: back off, and log once per interval rather
                // than once per failure (17,600 lines in 45 s before).
                let wait = backoff.failed(shard.id(), &e);
                glommio::timer::sleep(wait).await;
                continue;
            }
        };
        backoff.succeeded();
        if shard.shutting_down.get() {
            break;
        }
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let limit = u64::from(shard.broker_config().max_connections)
            .min(budget)
            .div_ceil(shard.count() as u64)
            .max(1) as u32;
        let Some(counted) = shard.intake.admit(limit) else {
            let host = peer.rsplit_once(':').map_or(peer.as_str(), |(h, _)| h);
            client_errors::report(
                host,
                format_args!("closing connection from {peer}: max.connections reached ({limit} on this shard)"),
            );
            continue;
        };
        let s = shard.clone();
        glommio::spawn_local(async move {
            serve_connection(&s, stream, &peer).await;
            drop(counted);
        })
        .detach();
    }
    info!(shard = shard.id(), "stopped accepting connections");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EMFILE makes every accept fail at once: the waits double up to the cap, the failures
    /// are counted between reports (one per interval), and a success resets the wait.
    #[test]
    fn failed_accepts_back_off_and_report_once_per_interval() {
        let mut b = AcceptBackoff::default();
        let err = "Too many open files (os error 24)";
        let waits: Vec<u64> = (0..9)
            .map(|_| b.failed(0, &err).as_millis() as u64)
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        // The first failure was reported (and reset the count); the other 8 wait for the
        // next interval.
        assert_eq!(b.failures, 8);
        assert!(b.last_logged.is_some());
        b.succeeded();
        assert_eq!(
            b.failed(0, &err),
            Duration::from_millis(ACCEPT_BACKOFF_MS_MIN)
        );
    }
}

//! Client-caused errors in the log: every one at debug level, and per client and interval at
//! most one WARN line when the client's first error arrives plus one WARN summary of the rest.
//!
//! A malformed request or a per-partition error is the client's problem, not the operator's,
//! and any client can produce them at line rate: 34,000 bad requests wrote 9.4 MB of WARN
//! lines, and a normal franz-go test run 277k lines in 10 minutes. Bounded here, the log
//! grows by at most `CLIENT_ERROR_LOG_CLIENTS_MAX * 2 + 1` WARN lines per shard and interval
//! whatever the clients send, and still names every client that misbehaved.
//!
//! The state is per shard (a thread-local: each shard is one thread) and never crosses an
//! `.await`. Summaries are written by [`flush_due`] from the shard's timer loop, and also by the
//! first error of a new interval.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::config::{CLIENT_ERROR_LOG_CLIENTS_MAX, CLIENT_ERROR_LOG_INTERVAL_MS};

/// Characters kept of the last suppressed error's text, for its client's summary.
const LAST_ERROR_CHARS_MAX: usize = 300;

/// One client's errors in the current interval, past the one logged at WARN.
struct Suppressed {
    count: u64,
    last: String,
}

struct Limiter {
    interval_start: Instant,
    clients: HashMap<String, Suppressed>,
    /// Errors of clients beyond `CLIENT_ERROR_LOG_CLIENTS_MAX` in this interval.
    overflow: u64,
}

thread_local! {
    static LIMITER: RefCell<Limiter> = RefCell::new(Limiter {
        interval_start: Instant::now(),
        clients: HashMap::new(),
        overflow: 0,
    });
}

fn interval() -> Duration {
    Duration::from_millis(CLIENT_ERROR_LOG_INTERVAL_MS)
}

/// Records one client-caused error. `client` identifies the client (client id, or its address
/// when it sent none).
pub fn report(client: &str, error: impl Display) {
    let error = error.to_string();
    debug!(client, "client error: {error}");
    LIMITER.with(|l| {
        let mut l = l.borrow_mut();
        if l.interval_start.elapsed() >= interval() {
            l.summarise();
        }
        if let Some(s) = l.clients.get_mut(client) {
            s.count += 1;
            s.last = truncated(&error);
            return;
        }
        if l.clients.len() >= CLIENT_ERROR_LOG_CLIENTS_MAX {
            l.overflow += 1;
            return;
        }
        l.clients.insert(
            client.to_string(),
            Suppressed {
                count: 0,
                last: String::new(),
            },
        );
        warn!(
            client,
            "client error: {error} (this client's further errors are summarised every {} s; \
             each is logged at debug level)",
            CLIENT_ERROR_LOG_INTERVAL_MS / 1000
        );
    });
}

/// Writes the summaries of an interval that has ended; called from the shard's timer loop.
pub fn flush_due() {
    LIMITER.with(|l| {
        let mut l = l.borrow_mut();
        if l.interval_start.elapsed() >= interval() {
            l.summarise();
        }
    });
}

impl Limiter {
    fn summarise(&mut self) {
        let secs = self.interval_start.elapsed().as_secs();
        for (client, s) in self.clients.drain() {
            if s.count > 0 {
                warn!(
                    client,
                    errors = s.count,
                    "client errors: {} more in the last {secs} s; the last: {}",
                    s.count,
                    s.last
                );
            }
        }
        if self.overflow > 0 {
            warn!(
                errors = self.overflow,
                "client errors: {} more in the last {secs} s from clients past the first {} \
                 (see debug level)",
                self.overflow,
                CLIENT_ERROR_LOG_CLIENTS_MAX
            );
        }
        self.overflow = 0;
        self.interval_start = Instant::now();
    }
}

fn truncated(s: &str) -> String {
    s.chars().take(LAST_ERROR_CHARS_MAX).collect()
}

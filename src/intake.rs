//! A shard's intake: how much client work it has taken in (connections, requests being
//! handled, request bytes read and not yet answered) and the bounds on it.
//!
//! The shard's listener and connection loops count through it; shutdown reads it to drain. It
//! knows nothing of the shard, the router or any handler, so that a second listener (the
//! cluster's controller listener, a TLS one) counts into the same budget by holding the same
//! `Rc<Intake>`. Every count is held by a guard and given back when the guard drops, so a
//! connection task cancelled in the middle of a request (shutdown, a panic caught by the
//! executor) cannot leave a count behind that a drain would wait on.

use std::cell::Cell;
use std::rc::Rc;

use glommio::sync::{Permit, Semaphore};

/// What one shard has taken in from its clients.
pub struct Intake {
    connections: Cell<u32>,
    requests: Cell<u32>,
    /// Bytes of requests read and not yet answered (`config::SHARD_INFLIGHT_BYTES_MAX`).
    bytes: Semaphore,
}

/// One open connection, counted until it drops.
pub struct Connection {
    intake: Rc<Intake>,
}

/// One request being handled, counted until it drops.
pub struct Request<'a> {
    intake: &'a Intake,
}

impl Intake {
    /// An intake that lets at most `bytes_max` request bytes be in flight at once.
    pub fn new(bytes_max: u64) -> Intake {
        Intake {
            connections: Cell::new(0),
            requests: Cell::new(0),
            bytes: Semaphore::new(bytes_max),
        }
    }

    /// Counts a new connection in, unless `limit` are open already.
    pub fn admit(self: &Rc<Self>, limit: u32) -> Option<Connection> {
        let open = self.connections.get();
        if open >= limit {
            return None;
        }
        self.connections.set(open + 1);
        Some(Connection {
            intake: self.clone(),
        })
    }

    /// Connections open now.
    pub fn connections(&self) -> u32 {
        self.connections.get()
    }

    /// Counts a request as being handled until the guard drops.
    pub fn request(&self) -> Request<'_> {
        self.requests.set(self.requests.get() + 1);
        Request { intake: self }
    }

    /// Requests being handled now; shutdown waits for them to finish.
    pub fn requests_in_flight(&self) -> u32 {
        self.requests.get()
    }

    /// Waits until `bytes` more request bytes may be held, and holds them until the permit
    /// drops. Fails only once the budget is closed.
    pub async fn hold_bytes(&self, bytes: u64) -> Result<Permit<'_>, ()> {
        self.bytes.acquire_permit(bytes).await.map_err(|_| ())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.intake
            .connections
            .set(self.intake.connections.get() - 1);
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        self.intake.requests.set(self.intake.requests.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_past_the_limit_are_refused_and_a_dropped_one_frees_its_place() {
        let intake = Rc::new(Intake::new(1024));
        let a = intake.admit(2).expect("first");
        let _b = intake.admit(2).expect("second");
        assert!(intake.admit(2).is_none(), "a third past a limit of two");
        assert_eq!(intake.connections(), 2);
        drop(a);
        assert_eq!(intake.connections(), 1);
        assert!(intake.admit(2).is_some());
    }

    #[test]
    fn a_request_is_counted_until_its_guard_drops() {
        let intake = Intake::new(1024);
        let r1 = intake.request();
        let r2 = intake.request();
        assert_eq!(intake.requests_in_flight(), 2);
        drop(r1);
        drop(r2);
        assert_eq!(intake.requests_in_flight(), 0);
    }
}

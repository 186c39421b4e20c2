//! Broker leases: the active controller fences a broker it has not heard from for a session
//! timeout (`broker.session.timeout.ms`) and unfences it once it is heard from again.
//!
//! Kafka's brokers send BrokerHeartbeat requests to the active controller. Here every broker
//! is also a controller (`process.roles=broker,controller`), and a controller already talks to
//! the leader several times a second (Raft's heartbeats and their answers), so any message
//! from a node renews its lease: no second heartbeat protocol. A broker-only node (a Raft
//! learner) would renew it the same way once there are such nodes.
//!
//! Only the leader decides, and only once it has applied an entry of its own term, so its
//! decisions see every earlier fencing. A node that just became leader counts every broker as
//! heard from when it took over: it gives each a full session before fencing it, as a new
//! Kafka controller does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::metadata::records::MetadataRecord;
use crate::metadata::MetadataImage;

/// How long a fencing decision stays in flight before it may be proposed again (one lost to
/// an election).
const RETRY: Duration = Duration::from_secs(2);

pub struct Leases {
    session: Duration,
    heard: BTreeMap<u64, Instant>,
    /// When this node last became a ready leader; `None` while it is not one.
    leading_since: Option<Instant>,
    /// Decisions proposed and not yet seen in the image: broker -> (fenced, when).
    in_flight: BTreeMap<i32, (bool, Instant)>,
}

impl Leases {
    pub fn new(session: Duration) -> Leases {
        Leases {
            session,
            heard: BTreeMap::new(),
            leading_since: None,
            in_flight: BTreeMap::new(),
        }
    }

    /// A message from `node` arrived.
    pub fn heard_from(&mut self, node: u64, now: Instant) {
        self.heard.insert(node, now);
    }

    /// The fencing changes to propose now: none unless `ready` (this node leads and may
    /// propose). `me` is this node, always alive to itself.
    pub fn decide(
        &mut self,
        ready: bool,
        me: u64,
        image: &MetadataImage,
        now: Instant,
    ) -> Vec<MetadataRecord> {
        if !ready {
            self.leading_since = None;
            self.in_flight.clear();
            return Vec::new();
        }
        let since = *self.leading_since.get_or_insert(now);
        let mut out = Vec::new();
        for b in image.brokers.values() {
            let last = self
                .heard
                .get(&(b.id as u64))
                .copied()
                .map_or(since, |h| h.max(since));
            let alive = b.id as u64 == me || now.duration_since(last) < self.session;
            let fenced = !alive;
            if fenced == b.fenced {
                self.in_flight.remove(&b.id);
                continue;
            }
            match self.in_flight.get(&b.id) {
                Some(&(f, at)) if f == fenced && now.duration_since(at) < RETRY => continue,
                _ => {}
            }
            self.in_flight.insert(b.id, (fenced, now));
            out.push(MetadataRecord::BrokerFenced { id: b.id, fenced });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(fenced: &[(i32, bool)]) -> MetadataImage {
        MetadataImage::with_brokers(fenced)
    }

    #[test]
    fn a_silent_broker_is_fenced_after_a_session_and_unfenced_when_heard() {
        let session = Duration::from_secs(9);
        let mut leases = Leases::new(session);
        let t0 = Instant::now();
        let all_live = image(&[(1, false), (2, false), (3, false)]);
        leases.heard_from(2, t0);
        // A new leader gives everyone a full session.
        assert!(leases.decide(true, 1, &all_live, t0).is_empty());
        leases.heard_from(2, t0 + Duration::from_secs(8));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            leases.decide(true, 1, &all_live, later),
            vec![MetadataRecord::BrokerFenced {
                id: 3,
                fenced: true
            }]
        );
        // Not proposed again while in flight.
        assert!(leases.decide(true, 1, &all_live, later).is_empty());
        let three_fenced = image(&[(1, false), (2, false), (3, true)]);
        assert!(leases.decide(true, 1, &three_fenced, later).is_empty());
        leases.heard_from(3, later);
        assert_eq!(
            leases.decide(true, 1, &three_fenced, later),
            vec![MetadataRecord::BrokerFenced {
                id: 3,
                fenced: false
            }]
        );
    }

    #[test]
    fn only_a_ready_leader_decides_and_it_never_fences_itself() {
        let mut leases = Leases::new(Duration::from_millis(1));
        let t0 = Instant::now();
        let one = image(&[(1, false)]);
        let later = t0 + Duration::from_secs(60);
        assert!(leases.decide(false, 1, &one, later).is_empty());
        assert!(leases.decide(true, 1, &one, t0).is_empty());
        assert!(leases.decide(true, 1, &one, later).is_empty());
    }
}

//! Replication throttling (Kafka's replication quotas, KIP-73), what
//! `kafka-reassign-partitions.sh --throttle` sets so that moving a partition does not starve
//! producers and consumers of disk and network.
//!
//! A topic names the replicas whose traffic is throttled (`leader.replication.throttled.replicas`
//! and `follower.replication.throttled.replicas`: `*`, or `partition:broker` pairs, the broker
//! being the one that throttles); each broker caps the bytes/s its leaders send to throttled
//! followers (`leader.replication.throttled.rate`) and its followers fetch for throttled
//! partitions (`follower.replication.throttled.rate`). Over its rate, a leader answers a
//! throttled partition's follower fetch without records, and a follower leaves throttled
//! partitions out of its next fetch, as Kafka's `ReplicationQuotaManager` does; other
//! partitions are never held back. Thread per core: each shard keeps its own budget, an equal
//! share of the broker's rate, for the partitions it owns.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Instant;

use crate::error::ConfigError;

/// One shard's share of a replication rate: a budget of bytes refilled at `rate` per second, at
/// most one second's worth banked, spent by what is sent (it may go below zero: a batch is never
/// cut), exceeded while it is not above zero.
pub struct ReplicationQuota {
    /// Bytes per second; [`UNLIMITED`] or more: unlimited.
    rate: Cell<u64>,
    budget: Cell<f64>,
    refilled: Cell<Instant>,
}

/// Kafka's default rate, Long.MAX_VALUE: no throttling.
pub const UNLIMITED: u64 = i64::MAX as u64;

impl Default for ReplicationQuota {
    fn default() -> ReplicationQuota {
        ReplicationQuota {
            rate: Cell::new(UNLIMITED),
            budget: Cell::new(0.0),
            refilled: Cell::new(Instant::now()),
        }
    }
}

impl ReplicationQuota {
    /// Sets the rate (bytes per second); a new rate starts with a full second's budget.
    pub fn set_rate(&self, rate: u64) {
        if rate != self.rate.get() {
            self.rate.set(rate);
            self.budget.set(rate as f64);
            self.refilled.set(Instant::now());
        }
    }

    fn refill(&self, now: Instant) {
        let rate = self.rate.get() as f64;
        let since = now.saturating_duration_since(self.refilled.get());
        self.budget
            .set((self.budget.get() + rate * since.as_secs_f64()).min(rate));
        self.refilled.set(now);
    }

    /// Whether throttled traffic must wait: the budget is spent.
    pub fn exceeded(&self, now: Instant) -> bool {
        if self.rate.get() >= UNLIMITED {
            return false;
        }
        self.refill(now);
        self.budget.get() <= 0.0
    }

    /// Spends `bytes` of throttled traffic.
    pub fn record(&self, bytes: usize, now: Instant) {
        if self.rate.get() >= UNLIMITED {
            return;
        }
        self.refill(now);
        self.budget.set(self.budget.get() - bytes as f64);
    }
}

/// Which of a partition's replication traffic on this broker is throttled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Throttled {
    /// What this broker's leader sends to followers.
    pub leader: bool,
    /// What this broker's follower fetches.
    pub follower: bool,
}

impl Throttled {
    /// For `partition` on `broker`, by its topic's `configs`.
    pub fn of(configs: &BTreeMap<String, String>, partition: i32, broker: i32) -> Throttled {
        let named = |key: &str| {
            configs
                .get(key)
                .is_some_and(|list| names_replica(list, partition, broker))
        };
        Throttled {
            leader: named("leader.replication.throttled.replicas"),
            follower: named("follower.replication.throttled.replicas"),
        }
    }
}

/// Whether `list`, a `*.replication.throttled.replicas` value, names replica `broker` of
/// `partition`.
pub fn names_replica(list: &str, partition: i32, broker: i32) -> bool {
    let list = list.trim();
    list == "*"
        || list.split(',').any(|entry| {
            entry.split_once(':').is_some_and(|(p, b)| {
                p.trim().parse() == Ok(partition) && b.trim().parse() == Ok(broker)
            })
        })
}

/// Checks a `*.replication.throttled.replicas` value as Kafka's `ThrottledReplicaListValidator`
/// does: `*`, or a list of `partition:broker` pairs (empty: none).
pub fn check_replica_list(key: &str, value: &str) -> Result<(), ConfigError> {
    let value = value.trim();
    // Kafka's pattern allows an empty entry (a trailing comma).
    let pair = |e: &str| {
        e.trim().is_empty()
            || e.split_once(':').is_some_and(|(p, b)| {
                p.trim().parse::<i32>().is_ok() && b.trim().parse::<i32>().is_ok()
            })
    };
    if value.is_empty() || value == "*" || value.split(',').all(pair) {
        return Ok(());
    }
    Err(ConfigError::invalid(format!(
        "Invalid value {value} for configuration {key}: must be the literal '*' or a list of \
         replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_quota_lets_its_rate_through_and_no_more() {
        let q = ReplicationQuota::default();
        let t0 = Instant::now();
        // Unlimited by default: never exceeded, whatever is sent.
        q.record(1 << 30, t0);
        assert!(!q.exceeded(t0));
        q.set_rate(1000);
        let t0 = Instant::now();
        assert!(!q.exceeded(t0));
        // A batch larger than the budget is sent whole; then the sender waits.
        q.record(1500, t0);
        assert!(q.exceeded(t0));
        assert!(q.exceeded(t0 + Duration::from_millis(400)));
        assert!(!q.exceeded(t0 + Duration::from_millis(600)));
        // At most a second's worth is banked: a long pause does not allow a burst.
        let later = t0 + Duration::from_secs(60);
        q.record(1000, later);
        assert!(q.exceeded(later));
    }

    #[test]
    fn replica_lists_follow_kafkas_format() {
        assert!(names_replica("*", 3, 7));
        assert!(names_replica("0:1, 3:7", 3, 7));
        assert!(!names_replica("0:1,3:7", 3, 1));
        assert!(!names_replica("", 0, 1));
        for ok in ["", "*", "0:1", "0:1,1:2", " 0 : 1 , 2:3 ", "0:1,"] {
            check_replica_list("leader.replication.throttled.replicas", ok).unwrap();
        }
        for bad in ["x", "0", "0:a", "*,0:1", "-:1"] {
            let e = check_replica_list("leader.replication.throttled.replicas", bad);
            assert!(e.is_err(), "{bad}");
        }
    }
}

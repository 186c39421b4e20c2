//! A partition's replication on this broker (issue 13): the role the metadata image gives the
//! replica here, and, on the leader, where each follower is and what that makes the high
//! watermark and the ISR (Kafka's `Partition` with its remote replica states).
//!
//! The leader's high watermark is the lowest log end among the in-sync replicas, its own
//! written end included; it never moves back while this broker leads. A leader alone in its
//! ISR (every partition of a single node, every RF=1 partition) has its written end as the
//! high watermark, so replication costs such partitions nothing. A follower's high watermark
//! is the leader's, as its fetch responses carry it, capped at its own log end.
//!
//! A follower's position is its fetch offset (Kafka's follower fetch: the offset it asks for is
//! its log end). It counts as caught up at a fetch that asks for the leader's log end, or for
//! at least the log end the leader had when it answered the follower's previous fetch (so a
//! follower keeping pace with a busy leader stays caught up), as Kafka's `updateFetchState`
//! has it. The ISR grows by a follower whose log end reached the high watermark and shrinks by
//! one not caught up for `replica.lag.time.max.ms`; the leader proposes either change to the
//! controller as a `PartitionChange` (Kafka's AlterPartition), which fits only the partition
//! epoch it was decided from.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::metadata::{PartitionState, TopicMeta, NO_LEADER};

/// This broker's replica of a partition, as the metadata image has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    /// This broker.
    pub me: i32,
    /// The partition's leader, or [`NO_LEADER`].
    pub leader: i32,
    /// The partition's leader epoch.
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl Role {
    /// The role `topic` gives broker `me`'s replica of `partition`: on a single node (a topic
    /// without partition states) the only replica and its leader.
    pub fn of(topic: &TopicMeta, partition: i32, me: i32) -> Role {
        match topic.state(partition) {
            Some(s) => Role {
                me,
                leader: s.leader,
                leader_epoch: s.leader_epoch,
                replicas: s.replicas.clone(),
                isr: s.isr.clone(),
            },
            None => Role {
                me,
                leader: me,
                leader_epoch: topic.leader_epoch(partition),
                replicas: vec![me],
                isr: vec![me],
            },
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader == self.me
    }

    /// A follower with a leader to fetch from.
    pub fn is_follower(&self) -> bool {
        self.leader != self.me && self.leader != NO_LEADER && self.replicas.contains(&self.me)
    }

    /// The leader is the only in-sync replica: its written end is the high watermark.
    pub fn alone(&self) -> bool {
        self.isr.len() == 1 && self.isr[0] == self.me
    }
}

/// Where one follower is, as its fetches tell the leader.
#[derive(Clone, Copy, Debug)]
struct Follower {
    /// Its log end: the offset its last fetch asked for.
    leo: i64,
    /// When it was last caught up.
    caught_up: Instant,
    /// When it last fetched, and the leader's log end then.
    fetched: Instant,
    leader_leo_then: i64,
}

/// The leader's view of its followers; empty on a follower.
#[derive(Debug, Default)]
pub struct Followers {
    by_id: BTreeMap<i32, Follower>,
    /// When this broker became leader: a follower not heard from since counts as caught up
    /// then, as Kafka gives every replica a full lag time after an election.
    since: Option<Instant>,
}

impl Followers {
    /// No follower heard from yet, counting from `now` (a partition just opened).
    pub fn started(now: Instant) -> Followers {
        Followers {
            by_id: BTreeMap::new(),
            since: Some(now),
        }
    }

    /// Forgets every follower (the role changed).
    pub fn reset(&mut self, now: Instant) {
        self.by_id.clear();
        self.since = Some(now);
    }

    /// Follower `id` fetched at `offset` when the leader's log end was `leader_leo`.
    pub fn fetched(&mut self, id: i32, offset: i64, leader_leo: i64, now: Instant) {
        let since = *self.since.get_or_insert(now);
        let f = self.by_id.entry(id).or_insert(Follower {
            leo: offset,
            caught_up: since,
            fetched: now,
            leader_leo_then: i64::MAX,
        });
        if offset >= leader_leo {
            f.caught_up = now;
        } else if offset >= f.leader_leo_then {
            f.caught_up = f.caught_up.max(f.fetched);
        }
        f.leo = offset;
        f.fetched = now;
        f.leader_leo_then = leader_leo;
    }

    /// The high watermark of a leader in `role` whose written end is `written` and whose high
    /// watermark was `current`: the lowest log end in the ISR, never below `current`. A
    /// follower not heard from since the election holds it where it is.
    pub fn high_watermark(&self, role: &Role, written: i64, current: i64) -> i64 {
        if role.alone() {
            return written;
        }
        let lowest = role
            .isr
            .iter()
            .filter(|&&id| id != role.me)
            .map(|id| self.by_id.get(id).map_or(current, |f| f.leo))
            .fold(written, i64::min);
        lowest.max(current)
    }

    /// The ISR the leader should propose now, if it differs from `role.isr`: followers whose
    /// log end reached `join_from` (the high watermark, and at least where this leader's epoch
    /// began) join, in-sync followers not caught up for `lag_max` leave. In replica order.
    pub fn isr_change(
        &self,
        role: &Role,
        join_from: i64,
        now: Instant,
        lag_max: Duration,
    ) -> Option<Vec<i32>> {
        let since = self.since.unwrap_or(now);
        let keep = |id: i32| -> bool {
            if id == role.me {
                return true;
            }
            let f = self.by_id.get(&id);
            if role.isr.contains(&id) {
                let caught_up = f.map_or(since, |f| f.caught_up);
                now.saturating_duration_since(caught_up) <= lag_max
            } else {
                f.is_some_and(|f| {
                    f.leo >= join_from && now.saturating_duration_since(f.caught_up) <= lag_max
                })
            }
        };
        let isr: Vec<i32> = role
            .replicas
            .iter()
            .copied()
            .filter(|&id| keep(id))
            .collect();
        let mut a = isr.clone();
        let mut b = role.isr.clone();
        a.sort_unstable();
        b.sort_unstable();
        (a != b).then_some(isr)
    }
}

/// The state a leader proposes to change the ISR of `current` to `isr` (Kafka's AlterPartition):
/// the same leader and leader epoch, the next partition epoch.
pub fn with_isr(current: &PartitionState, isr: Vec<i32>) -> PartitionState {
    PartitionState {
        isr,
        partition_epoch: current.partition_epoch + 1,
        ..current.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(isr: &[i32]) -> Role {
        Role {
            me: 1,
            leader: 1,
            leader_epoch: 3,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn the_high_watermark_is_the_lowest_log_end_in_the_isr_and_never_moves_back() {
        let t0 = Instant::now();
        let mut f = Followers::default();
        f.reset(t0);
        let r = role(&[1, 2, 3]);
        // Nobody fetched yet: held where it is.
        assert_eq!(f.high_watermark(&r, 100, 40), 40);
        f.fetched(2, 80, 100, t0);
        assert_eq!(f.high_watermark(&r, 100, 40), 40);
        f.fetched(3, 60, 100, t0);
        assert_eq!(f.high_watermark(&r, 100, 40), 60);
        // Out of the ISR, 3 no longer holds it back; the leader's own end caps it.
        assert_eq!(f.high_watermark(&role(&[1, 2]), 100, 60), 80);
        assert_eq!(f.high_watermark(&role(&[1, 2]), 70, 60), 70);
        // Never back: a follower that truncated does not lower it.
        f.fetched(2, 10, 100, t0);
        assert_eq!(f.high_watermark(&role(&[1, 2]), 100, 70), 70);
        // Alone: the written end.
        assert_eq!(f.high_watermark(&role(&[1]), 100, 70), 100);
    }

    #[test]
    fn followers_join_once_caught_up_and_leave_after_the_lag_time() {
        let lag = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut f = Followers::default();
        f.reset(t0);
        let r = role(&[1, 2]);
        // 3 fetches but is behind the high watermark: it stays out.
        f.fetched(2, 100, 100, t0);
        f.fetched(3, 50, 100, t0);
        assert_eq!(f.isr_change(&r, 100, t0, lag), None);
        // At the high watermark: it joins.
        f.fetched(3, 100, 100, t0);
        assert_eq!(f.isr_change(&r, 100, t0, lag), Some(vec![1, 2, 3]));
        // A follower keeping pace with a moving leader stays caught up.
        let r = role(&[1, 2, 3]);
        let t1 = t0 + Duration::from_secs(20);
        f.fetched(2, 100, 200, t1);
        let t2 = t0 + Duration::from_secs(40);
        f.fetched(2, 200, 300, t2);
        // 3 has not fetched since t0: out after the lag time; 2 stays.
        assert_eq!(f.isr_change(&r, 200, t2, lag), Some(vec![1, 2]));
    }

    #[test]
    fn a_new_leader_gives_silent_followers_a_full_lag_time() {
        let lag = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut f = Followers::default();
        f.reset(t0);
        let r = role(&[1, 2, 3]);
        assert_eq!(f.isr_change(&r, 0, t0 + Duration::from_secs(29), lag), None);
        assert_eq!(
            f.isr_change(&r, 0, t0 + Duration::from_secs(31), lag),
            Some(vec![1])
        );
    }
}

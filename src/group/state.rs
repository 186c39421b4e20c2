//! A consumer group's state machine (Kafka's classic protocol), without I/O or timers.
//!
//! Empty → PreparingRebalance (a member joins or leaves) → CompletingRebalance (every known
//! member rejoined, or the rebalance timeout expired) → Stable (the leader's SyncGroup brought
//! the assignment) → PreparingRebalance again on any membership change; Dead once deleted.
//! The coordinator (`group::Coordinator`) drives the transitions and owns the timers; this
//! module only decides.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::store::Committed;
use crate::error::ErrorCode;

/// Kafka's group states, with the names DescribeGroups and ListGroups report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup caller receives once the join phase ends.
#[derive(Clone, Debug, Default)]
pub struct JoinResult {
    /// Kafka's code for the answer; `None` for success.
    pub error: Option<ErrorCode>,
    pub generation: i32,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// The members and their metadata for the chosen protocol; the leader alone gets them.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// What a SyncGroup caller receives once the leader's assignment arrives.
#[derive(Clone, Debug, Default)]
pub struct SyncResult {
    /// Kafka's code for the answer; `None` for success.
    pub error: Option<ErrorCode>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// One member of a group. Lives inside its [`Group`], on the coordinating shard.
#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_seen: Instant,
    pub awaiting_join: Option<flume::Sender<JoinResult>>,
    pub awaiting_sync: Option<flume::Sender<SyncResult>>,
    /// Keeps the task that expires this member's session; `None` while none is armed (a new
    /// member, a new id after a static rejoin, a changed session timeout).
    pub timer: Option<TimerGuard>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    pub fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == protocol)
    }

    /// When the session ends unless the member is heard from again. A member waiting in
    /// JoinGroup is alive by definition (Kafka's "satisfied heartbeat"): `None`.
    pub fn session_deadline(&self) -> Option<Instant> {
        if self.awaiting_join.is_some() {
            return None;
        }
        let timeout = Duration::from_millis(self.session_timeout_ms.max(0) as u64);
        Some(self.last_seen + timeout)
    }
}

/// A member id handed out with MEMBER_ID_REQUIRED and not yet used in a JoinGroup.
#[derive(Debug)]
pub struct Pending {
    /// Kafka drops the reservation after the session timeout the request asked for.
    pub expires: Instant,
    pub timer: Option<TimerGuard>,
}

/// Held by whatever a timer task guards (a member, a reservation, a join phase): dropping it
/// wakes the task, which then ends, so no task outlives what it guards however long its
/// deadline (a rebalance timeout may be days).
pub type TimerGuard = flume::Sender<()>;

/// One group and its committed offsets. Lives on the shard that owns its offsets partition,
/// from its first JoinGroup or OffsetCommit (or its replay at start-up) until DeleteGroups.
#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet used.
    pub pending: HashMap<String, Pending>,
    /// `group.instance.id` → the member id that currently holds it (static membership).
    pub static_members: HashMap<String, String>,
    pub offsets: HashMap<(String, i32), Committed>,
    /// When the join phase must end whoever has rejoined.
    pub rebalance_deadline: Option<Instant>,
    /// A new group waits `group.initial.rebalance.delay.ms` for more members.
    pub initial_delay_until: Option<Instant>,
    /// Keeps the timer task of the current join phase (its initial delay and rebalance
    /// timeout); `None` outside PreparingRebalance or before it is armed.
    pub join_timer: Option<TimerGuard>,
}

impl Group {
    pub fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            offsets: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            join_timer: None,
        }
    }

    /// Whether every known member has a JoinGroup waiting.
    pub fn all_joined(&self) -> bool {
        self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Whether the join phase may end now: the rebalance timeout passed, or every known member
    /// rejoined (vacuously so when the last one left) once a new group's initial delay is over.
    /// Kafka's `maybeCompleteJoinPhase` plus its DelayedJoin expiry.
    pub fn join_phase_can_end(&self, now: Instant) -> bool {
        if self.state != GroupState::PreparingRebalance {
            return false;
        }
        let delay_over = self.initial_delay_until.is_none_or(|t| now >= t);
        let timed_out = self.rebalance_deadline.is_some_and(|d| now >= d);
        timed_out || (delay_over && self.all_joined())
    }

    /// The next instant at which [`Group::join_phase_can_end`] can turn true without any
    /// request arriving: the end of the initial delay, or the rebalance timeout.
    pub fn join_phase_wake_at(&self, now: Instant) -> Option<Instant> {
        if self.state != GroupState::PreparingRebalance {
            return None;
        }
        let deadline = self.rebalance_deadline?;
        Some(match self.initial_delay_until {
            Some(t) if t > now => t.min(deadline),
            _ => deadline,
        })
    }

    /// Enters PreparingRebalance: members must rejoin within the longest rebalance timeout.
    /// Members waiting in SyncGroup are told to rejoin.
    pub fn prepare_rebalance(&mut self, now: Instant) {
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        self.rebalance_deadline =
            Some(now + std::time::Duration::from_millis(timeout.max(0) as u64));
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult {
                    error: Some(ErrorCode::RebalanceInProgress),
                    ..Default::default()
                });
            }
        }
        self.state = GroupState::PreparingRebalance;
    }

    /// The protocol every member supports that most members list first (Kafka's vote).
    pub fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let common: Vec<&str> = first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|p| self.members.values().all(|m| m.supports(p)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| common.contains(&n.as_str()))
            {
                *votes.entry(n).or_default() += 1;
            }
        }
        common
            .iter()
            .max_by_key(|p| {
                (
                    votes.get(*p).copied().unwrap_or(0),
                    std::cmp::Reverse(common.iter().position(|c| c == *p)),
                )
            })
            .map(|p| p.to_string())
    }

    /// Ends the join phase: members that did not rejoin are dropped, the generation moves on,
    /// and every waiting JoinGroup is answered (the leader with the member list).
    pub fn complete_join(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove(&id);
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        self.join_timer = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
            return;
        }
        self.protocol_name = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let roster = self.roster();
        let leader = self.leader.clone().unwrap_or_default();
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            // The JoinGroup answer counts as hearing from the member: its session restarts
            // now, not from the request it sent before a long join phase (Kafka reschedules
            // every member's heartbeat here too).
            m.last_seen = now;
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinResult {
                    error: None,
                    generation: self.generation,
                    protocol_name: self.protocol_name.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        roster.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    /// Every member with its metadata for the chosen protocol: what the leader is given.
    pub fn roster(&self) -> Vec<(String, Option<String>, Bytes)> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect()
    }

    /// The leader's SyncGroup: store every assignment, become Stable, answer waiting members.
    pub fn complete_sync(&mut self, assignments: HashMap<String, Bytes>) {
        for m in self.members.values_mut() {
            m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult {
                    error: None,
                    protocol_name: self.protocol_name.clone(),
                    assignment: m.assignment.clone(),
                });
            }
        }
        self.state = GroupState::Stable;
    }

    /// Removes a member, answering anything it was waiting on with UNKNOWN_MEMBER_ID.
    pub fn remove(&mut self, id: &str) -> Option<Member> {
        let mut m = self.members.remove(id)?;
        if let Some(iid) = &m.instance_id {
            if self.static_members.get(iid).map(String::as_str) == Some(id) {
                self.static_members.remove(iid);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        if let Some(tx) = m.awaiting_join.take() {
            let _ = tx.send(JoinResult {
                error: Some(ErrorCode::UnknownMemberId),
                member_id: id.to_string(),
                ..Default::default()
            });
        }
        if let Some(tx) = m.awaiting_sync.take() {
            let _ = tx.send(SyncResult {
                error: Some(ErrorCode::UnknownMemberId),
                ..Default::default()
            });
        }
        Some(m)
    }

    /// After members left or expired: rebalance if others remain, else become Empty.
    pub fn after_departure(&mut self, now: Instant) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance if self.members.is_empty() => {
                self.state = GroupState::Empty;
                self.leader = None;
            }
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[&str]) -> (Member, flume::Receiver<JoinResult>) {
        let (tx, rx) = flume::bounded(1);
        let m = Member {
            id: id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(p.to_string())))
                .collect(),
            assignment: Bytes::new(),
            last_seen: Instant::now(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            timer: None,
        };
        (m, rx)
    }

    #[test]
    fn join_elects_a_leader_picks_a_common_protocol_and_only_the_leader_gets_members() {
        let mut g = Group::new("g");
        let (a, ra) = member("a", &["range", "roundrobin"]);
        let (b, rb) = member("b", &["roundrobin", "range"]);
        let (c, rc) = member("c", &["range"]);
        for m in [a, b, c] {
            g.members.insert(m.id.clone(), m);
        }
        g.prepare_rebalance(Instant::now());
        assert!(g.all_joined());
        g.complete_join(Instant::now());
        assert_eq!(g.state, GroupState::CompletingRebalance);
        assert_eq!(g.generation, 1);
        assert_eq!(g.protocol_name.as_deref(), Some("range"));
        let (ja, jb, jc) = (ra.recv().unwrap(), rb.recv().unwrap(), rc.recv().unwrap());
        assert_eq!(ja.leader, "a");
        assert_eq!(ja.members.len(), 3);
        assert!(jb.members.is_empty() && jc.members.is_empty());
        assert_eq!(jb.member_id, "b");
    }

    #[test]
    fn members_that_do_not_rejoin_are_dropped_and_sync_completes_the_rebalance() {
        let mut g = Group::new("g");
        let (a, _ra) = member("a", &["range"]);
        let (mut b, _) = member("b", &["range"]);
        b.awaiting_join = None;
        g.members.insert("a".into(), a);
        g.members.insert("b".into(), b);
        g.prepare_rebalance(Instant::now());
        g.complete_join(Instant::now());
        assert_eq!(g.members.len(), 1);
        let (tx, rx) = flume::bounded(1);
        g.members.get_mut("a").unwrap().awaiting_sync = Some(tx);
        g.complete_sync(HashMap::from([(
            "a".to_string(),
            Bytes::from_static(b"p0"),
        )]));
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(&rx.recv().unwrap().assignment[..], b"p0");
        g.remove("a");
        g.after_departure(Instant::now());
        assert_eq!(g.state, GroupState::Empty);
    }

    #[test]
    fn a_departure_from_a_stable_group_starts_a_rebalance_and_releases_sync_waiters() {
        let mut g = Group::new("g");
        for id in ["a", "b"] {
            let (m, _) = member(id, &["range"]);
            g.members.insert(id.into(), m);
        }
        g.prepare_rebalance(Instant::now());
        g.complete_join(Instant::now());
        g.complete_sync(HashMap::new());
        let (tx, rx) = flume::bounded(1);
        g.members.get_mut("b").unwrap().awaiting_sync = Some(tx);
        g.remove("a");
        g.after_departure(Instant::now());
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(
            rx.recv().unwrap().error,
            Some(ErrorCode::RebalanceInProgress)
        );
    }

    #[test]
    fn the_join_phase_ends_when_the_last_member_leaves_but_waits_out_a_new_groups_delay() {
        let now = Instant::now();
        let mut g = Group::new("g");
        for id in ["a", "b"] {
            let (mut m, _) = member(id, &["range"]);
            m.awaiting_join = None;
            g.members.insert(id.into(), m);
        }
        g.state = GroupState::Stable;
        g.remove("a");
        g.after_departure(now);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert!(!g.join_phase_can_end(now), "b has not rejoined");
        let deadline = g.join_phase_wake_at(now).unwrap();
        assert!(deadline > now && g.join_phase_can_end(deadline));
        g.remove("b");
        assert!(g.join_phase_can_end(now), "nobody left to wait for");
        g.complete_join(now);
        assert_eq!(g.state, GroupState::Empty);
        assert!(g.join_timer.is_none(), "the phase's timer is released");

        // A new group (Kafka: previous state Empty) waits out its initial delay for more members.
        let mut fresh = Group::new("f");
        let (first, _rx) = member("first", &["range"]);
        fresh.members.insert("first".into(), first);
        fresh.prepare_rebalance(now);
        fresh.initial_delay_until = Some(now + std::time::Duration::from_millis(100));
        assert!(!fresh.join_phase_can_end(now));
        assert_eq!(fresh.join_phase_wake_at(now), fresh.initial_delay_until);
    }
}

//! The classic consumer-group coordinator (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, offsets).
//!
//! Each group lives on the shard that owns its partition of `__consumer_offsets`
//! ([`store::partition_for`], then `shard_for`), so ownership is a pure function of the group id
//! and survives a change of shard count. Handlers on other shards forward with `invoke_on`.
//! All state changes are synchronous under one `RefCell` borrow; waiting (a JoinGroup held until
//! the join phase ends, a follower's SyncGroup held until the leader's assignment) happens on
//! one-shot channels after the borrow is released. Groups move on events: every request that
//! changes a group ends its join phase the moment the condition holds ([`settle`]), and time
//! is driven by per-event timers ([`timers`]): one per member session, one per join phase, one
//! per reserved member id, each sleeping until its own deadline, never a periodic sweep.

pub mod offsets;
pub mod state;
pub mod store;
pub mod timers;
pub mod txn_offsets;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::info;

use crate::config::BrokerConfig;
use crate::error::ErrorCode;
use crate::metadata::MetadataImage;
use crate::partitions::{LocalFuture, Partition, PartitionListener, Partitions};
use crate::router::shard_for;
use state::{Group, GroupState, JoinResult, Member, Pending, SyncResult};
use store::OFFSETS_TOPIC;

/// The groups one shard coordinates: a service of its shard (`Shard::groups`), living there for
/// the life of the process. It holds what it uses and nothing more: the static config, the
/// shard's partition service (to write `__consumer_offsets`), and it listens to that service to
/// replay each `__consumer_offsets` partition this shard loads.
pub struct Coordinator {
    pub(crate) groups: RefCell<HashMap<String, Group>>,
    next_member: Cell<u64>,
    config: Arc<BrokerConfig>,
    partitions: Rc<Partitions>,
    /// The `__consumer_offsets` partitions this shard leads and has replayed: a group of
    /// another partition is still loading here (COORDINATOR_LOAD_IN_PROGRESS), as in the
    /// window between a new leadership's image and the end of its replay.
    ready: RefCell<std::collections::HashSet<i32>>,
    /// Offsets committed inside transactions not yet ended, by producer id
    /// ([`txn_offsets`]).
    held_txn_offsets: RefCell<HashMap<i64, Vec<txn_offsets::HeldOffset>>>,
    /// Set at shutdown ([`Coordinator::release_waiters`]): timers that wake after it end
    /// without touching their group.
    stopping: Cell<bool>,
}

impl Coordinator {
    /// The coordinator of one shard, registered as a listener of its partitions.
    pub fn new(config: Arc<BrokerConfig>, partitions: Rc<Partitions>) -> Rc<Coordinator> {
        let coord = Rc::new(Coordinator {
            groups: RefCell::new(HashMap::new()),
            next_member: Cell::new(0),
            config,
            partitions: partitions.clone(),
            held_txn_offsets: RefCell::new(HashMap::new()),
            ready: RefCell::new(std::collections::HashSet::new()),
            stopping: Cell::new(false),
        });
        let weak: Weak<Coordinator> = Rc::downgrade(&coord);
        partitions.listen(weak);
        coord
    }
}

impl PartitionListener for Coordinator {
    fn loaded<'a>(
        &'a self,
        topic: &'a str,
        index: i32,
        partition: &'a Rc<Partition>,
    ) -> LocalFuture<'a> {
        Box::pin(async move {
            if topic == OFFSETS_TOPIC {
                // What an earlier leadership of this broker left is stale: the log is the truth.
                self.resign(index);
                offsets::replay(self, index, partition).await;
                self.ready.borrow_mut().insert(index);
            }
        })
    }

    /// This broker no longer leads an offsets partition (another replica does): its groups
    /// move with it (Kafka's `onResignation`).
    fn unloaded(&self, topic: &str, index: i32) {
        if topic == OFFSETS_TOPIC {
            self.resign(index);
        }
    }
}

/// A JoinGroup, as the coordinating shard needs it (`Send`, to cross shards).
#[derive(Clone, Debug)]
pub struct JoinArgs {
    pub version: i16,
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub client_id: String,
    pub client_host: String,
}

/// A SyncGroup, as the coordinating shard needs it.
#[derive(Clone, Debug)]
pub struct SyncArgs {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

fn join_error(code: ErrorCode, member_id: &str) -> JoinResult {
    JoinResult {
        error: Some(code),
        generation: -1,
        member_id: member_id.to_string(),
        ..Default::default()
    }
}

fn sync_error(code: ErrorCode) -> SyncResult {
    SyncResult {
        error: Some(code),
        ..Default::default()
    }
}

/// The shard coordinating `group_id`: the owner of its partition of `__consumer_offsets`, or
/// `None` while that topic does not exist. A pure lookup; creating the topic on first use is
/// the caller's step (`api::group_owner`).
pub fn coordinator_shard(
    image: &MetadataImage,
    shard_count: usize,
    group_id: &str,
) -> Option<usize> {
    let meta = image.topic(OFFSETS_TOPIC)?;
    Some(shard_for(
        meta.id,
        store::partition_for(group_id),
        shard_count,
    ))
}

impl Coordinator {
    /// At shutdown: answers every JoinGroup and SyncGroup still waiting with NOT_COORDINATOR,
    /// so they do not hold up the drain and the clients go looking for the coordinator again
    /// (finding it once the broker is back).
    pub fn release_waiters(&self) {
        self.stopping.set(true);
        for g in self.groups.borrow_mut().values_mut() {
            for m in g.members.values_mut() {
                if let Some(tx) = m.awaiting_join.take() {
                    let _ = tx.send(join_error(ErrorCode::NotCoordinator, &m.id));
                }
                if let Some(tx) = m.awaiting_sync.take() {
                    let _ = tx.send(sync_error(ErrorCode::NotCoordinator));
                }
            }
        }
    }

    /// Drops the groups of offsets partition `index`, answering their waiting JoinGroup and
    /// SyncGroup with NOT_COORDINATOR (the clients look the coordinator up again).
    /// COORDINATOR_LOAD_IN_PROGRESS while `group_id`'s offsets partition is not replayed here
    /// (Kafka answers the same while it loads a partition); clients retry.
    pub fn check_loaded(&self, group_id: &str) -> Result<(), ErrorCode> {
        match self
            .ready
            .borrow()
            .contains(&store::partition_for(group_id))
        {
            true => Ok(()),
            false => Err(ErrorCode::CoordinatorLoadInProgress),
        }
    }

    fn resign(&self, index: i32) {
        self.ready.borrow_mut().remove(&index);
        self.groups.borrow_mut().retain(|id, g| {
            if store::partition_for(id) != index {
                return true;
            }
            for m in g.members.values_mut() {
                if let Some(tx) = m.awaiting_join.take() {
                    let _ = tx.send(join_error(ErrorCode::NotCoordinator, &m.id));
                }
                if let Some(tx) = m.awaiting_sync.take() {
                    let _ = tx.send(sync_error(ErrorCode::NotCoordinator));
                }
            }
            false
        });
        // Offsets held for transactions are replayed again from the log with the partition.
        for held in self.held_txn_offsets.borrow_mut().values_mut() {
            held.retain(|h| store::partition_for(h.group()) != index);
        }
    }

    fn new_member_id(&self, client_id: &str) -> String {
        let n = self.next_member.get() + 1;
        self.next_member.set(n);
        let nonce = crate::metadata::random_uuid().simple().to_string();
        format!("{client_id}-{n}-{}", &nonce[..12])
    }
}

/// JoinGroup on the coordinating shard: registers the member and waits for the join phase to end.
pub async fn join(coord: Rc<Coordinator>, args: JoinArgs) -> JoinResult {
    let registered = register_join(&coord, &args);
    // This join may be the one the phase waited for, and may have created a member, a new id
    // or a reservation that needs its timer.
    settle_and_persist(&coord, &args.group_id).await;
    match registered {
        Ok(rx) => rx
            .recv_async()
            .await
            .unwrap_or_else(|_| join_error(ErrorCode::UnknownMemberId, &args.member_id)),
        Err(result) => result,
    }
}

/// After any change to a group: ends its join phase if the condition now holds, then arms
/// the timers the group now needs. Returns whether the group just became Empty, which the
/// caller must persist.
fn settle(coord: &Rc<Coordinator>, group_id: &str) -> bool {
    let (emptied, armed) = {
        let mut groups = coord.groups.borrow_mut();
        let Some(g) = groups.get_mut(group_id) else {
            return false;
        };
        let now = Instant::now();
        let mut emptied = false;
        if g.join_phase_can_end(now) {
            g.complete_join(now);
            info!(group = %g.id, generation = g.generation, members = g.members.len(), state = g.state.name(), "join phase complete");
            emptied = g.state == GroupState::Empty;
        }
        (emptied, timers::arm(coord, g))
    };
    timers::spawn(armed);
    emptied
}

/// [`settle`], then writes the group record when the group became Empty (before the caller
/// answers, so a client that saw its LeaveGroup answered finds the group Empty and deletable).
async fn settle_and_persist(coord: &Rc<Coordinator>, group_id: &str) {
    if settle(coord, group_id) {
        offsets::persist_group(coord, group_id).await;
    }
}

fn register_join(
    coord: &Coordinator,
    a: &JoinArgs,
) -> Result<flume::Receiver<JoinResult>, JoinResult> {
    let cfg = &coord.config;
    if a.session_timeout_ms < cfg.group_min_session_timeout_ms
        || a.session_timeout_ms > cfg.group_max_session_timeout_ms
    {
        return Err(join_error(ErrorCode::InvalidSessionTimeout, &a.member_id));
    }
    if a.protocols.is_empty() || a.protocol_type.is_empty() {
        return Err(join_error(
            ErrorCode::InconsistentGroupProtocol,
            &a.member_id,
        ));
    }
    let mut groups = coord.groups.borrow_mut();
    let g = groups
        .entry(a.group_id.clone())
        .or_insert_with(|| Group::new(&a.group_id));
    if g.state == GroupState::Dead {
        *g = Group::new(&a.group_id);
    }
    if !g.members.is_empty() {
        let consistent = g.protocol_type.as_deref() == Some(a.protocol_type.as_str())
            && a.protocols
                .iter()
                .any(|(p, _)| g.members.values().all(|m| m.supports(p)));
        if !consistent {
            return Err(join_error(
                ErrorCode::InconsistentGroupProtocol,
                &a.member_id,
            ));
        }
    }
    let now = Instant::now();
    let member_id = match resolve_member(coord, g, a, now)? {
        Resolved::Id(id) => id,
        Resolved::Answer(result) => return Err(result),
    };
    let (tx, rx) = flume::bounded(1);
    let member = g
        .members
        .entry(member_id.clone())
        .or_insert_with(|| Member {
            id: member_id.clone(),
            instance_id: a.instance_id.clone(),
            client_id: a.client_id.clone(),
            client_host: a.client_host.clone(),
            session_timeout_ms: a.session_timeout_ms,
            rebalance_timeout_ms: a.rebalance_timeout_ms,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_seen: now,
            awaiting_join: None,
            awaiting_sync: None,
            timer: None,
        });
    member.protocols = a.protocols.clone();
    if member.session_timeout_ms != a.session_timeout_ms {
        // A shorter session must not wait for the timer armed for the longer one.
        member.session_timeout_ms = a.session_timeout_ms;
        member.timer = None;
    }
    member.rebalance_timeout_ms = a.rebalance_timeout_ms;
    member.last_seen = now;
    if let Some(old) = member.awaiting_join.replace(tx) {
        // The same member joined again while its first JoinGroup waits: as Kafka, the
        // newer request is the one answered; the older connection is told to rejoin.
        let _ = old.send(join_error(ErrorCode::RebalanceInProgress, &member_id));
    }
    if let Some(iid) = &a.instance_id {
        g.static_members.insert(iid.clone(), member_id.clone());
    }
    match g.state {
        GroupState::Empty | GroupState::Dead => {
            g.protocol_type = Some(a.protocol_type.clone());
            let delay = Duration::from_millis(cfg.group_initial_rebalance_delay_ms);
            g.initial_delay_until = Some(now + delay);
            g.prepare_rebalance(now);
        }
        GroupState::Stable | GroupState::CompletingRebalance => g.prepare_rebalance(now),
        GroupState::PreparingRebalance => {}
    }
    Ok(rx)
}

enum Resolved {
    Id(String),
    Answer(JoinResult),
}

/// Works out which member a JoinGroup speaks for: a known member, a new one, a static member
/// coming back, or a new dynamic member that must first be given an id (MEMBER_ID_REQUIRED).
fn resolve_member(
    coord: &Coordinator,
    g: &mut Group,
    a: &JoinArgs,
    now: Instant,
) -> Result<Resolved, JoinResult> {
    let max = crate::config::GROUP_MAX_SIZE;
    let full = g.members.len() + g.pending.len() >= max;
    if let Some(iid) = &a.instance_id {
        let current = g.static_members.get(iid).cloned();
        return match (current, a.member_id.is_empty()) {
            // A restarted static member (no member id yet) takes over its old entry.
            (Some(old), true) => Ok(rejoin_static(coord, g, a, &old, now)),
            // The member as the group knows it, joining again (a retried JoinGroup whose
            // answer was lost, a changed subscription): an ordinary rejoin that keeps its id.
            (Some(old), false) if old == a.member_id => Ok(rejoin_existing(g, a, now)),
            (Some(_), false) => Err(join_error(ErrorCode::FencedInstanceId, &a.member_id)),
            (None, true) if full => Err(join_error(ErrorCode::GroupMaxSizeReached, "")),
            (None, true) => Ok(Resolved::Id(coord.new_member_id(&a.client_id))),
            // A member id for an instance the group does not know (Kafka's validateMember).
            (None, false) => Err(join_error(ErrorCode::UnknownMemberId, &a.member_id)),
        };
    }
    if a.member_id.is_empty() {
        if full {
            return Err(join_error(ErrorCode::GroupMaxSizeReached, ""));
        }
        let id = coord.new_member_id(&a.client_id);
        if a.version >= 4 {
            let expires = now + Duration::from_millis(a.session_timeout_ms.max(0) as u64);
            let pending = Pending {
                expires,
                timer: None,
            };
            g.pending.insert(id.clone(), pending);
            return Ok(Resolved::Answer(join_error(
                ErrorCode::MemberIdRequired,
                &id,
            )));
        }
        return Ok(Resolved::Id(id));
    }
    if g.pending.remove(&a.member_id).is_some() {
        return Ok(Resolved::Id(a.member_id.clone()));
    }
    if g.members.contains_key(&a.member_id) {
        return Ok(rejoin_existing(g, a, now));
    }
    Err(join_error(ErrorCode::UnknownMemberId, &a.member_id))
}

/// A known member joining again with its own id, as Kafka's `classicGroupJoinExistingMember`:
/// while the group prepares a rebalance it simply joins it; otherwise, unless it is the
/// leader or its protocols changed, it is told the current generation again (its earlier
/// answer may have been lost) without a rebalance of the others.
fn rejoin_existing(g: &mut Group, a: &JoinArgs, now: Instant) -> Resolved {
    let id = a.member_id.clone();
    let is_leader = g.leader.as_deref() == Some(id.as_str());
    let Some(m) = g.members.get_mut(&id) else {
        return Resolved::Id(id);
    };
    let unchanged = m.protocols == a.protocols;
    let answer_again = match g.state {
        GroupState::CompletingRebalance => unchanged,
        GroupState::Stable => unchanged && !is_leader,
        GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => false,
    };
    if !answer_again {
        return Resolved::Id(id);
    }
    m.last_seen = now;
    let members = if is_leader { g.roster() } else { Vec::new() };
    info!(group = %g.id, member = %id, state = g.state.name(), "member rejoined with unchanged metadata; current generation answered again");
    Resolved::Answer(JoinResult {
        error: None,
        generation: g.generation,
        protocol_name: g.protocol_name.clone(),
        leader: g.leader.clone().unwrap_or_default(),
        member_id: id,
        members,
    })
}

/// A static member rejoining: it takes over its old entry under a fresh member id (fencing the
/// old one) and, when the group is Stable and its protocols are unchanged, gets its place back
/// without a rebalance of the others (KIP-345).
fn rejoin_static(
    coord: &Coordinator,
    g: &mut Group,
    a: &JoinArgs,
    old: &str,
    now: Instant,
) -> Resolved {
    let Some(mut m) = g.members.remove(old) else {
        return Resolved::Id(coord.new_member_id(&a.client_id));
    };
    let unchanged = m.protocols == a.protocols;
    let new_id = coord.new_member_id(&a.client_id);
    m.id = new_id.clone();
    m.last_seen = now;
    // The session timer follows the member id; the new id gets its own.
    m.timer = None;
    if let Some(tx) = m.awaiting_join.take() {
        let _ = tx.send(join_error(ErrorCode::FencedInstanceId, old));
    }
    if let Some(tx) = m.awaiting_sync.take() {
        let _ = tx.send(sync_error(ErrorCode::FencedInstanceId));
    }
    if g.leader.as_deref() == Some(old) {
        g.leader = Some(new_id.clone());
    }
    g.static_members
        .insert(a.instance_id.clone().unwrap_or_default(), new_id.clone());
    g.members.insert(new_id.clone(), m);
    if g.state != GroupState::Stable || !unchanged {
        return Resolved::Id(new_id);
    }
    let is_leader = g.leader.as_deref() == Some(new_id.as_str());
    let members = if is_leader { g.roster() } else { Vec::new() };
    info!(group = %g.id, member = %new_id, "static member rejoined without a rebalance");
    Resolved::Answer(JoinResult {
        error: None,
        generation: g.generation,
        protocol_name: g.protocol_name.clone(),
        leader: g.leader.clone().unwrap_or_default(),
        member_id: new_id,
        members,
    })
}

/// The checks Heartbeat, SyncGroup, OffsetCommit and LeaveGroup share: the member exists, its
/// static instance is not fenced, and (when given) its generation is current.
fn check_member(
    g: &Group,
    member_id: &str,
    instance_id: Option<&str>,
    generation: Option<i32>,
) -> Result<(), ErrorCode> {
    if let Some(iid) = instance_id {
        if g.static_members.get(iid).is_some_and(|m| m != member_id) {
            return Err(ErrorCode::FencedInstanceId);
        }
    }
    if !g.members.contains_key(member_id) {
        return Err(ErrorCode::UnknownMemberId);
    }
    if generation.is_some_and(|gen| gen != g.generation) {
        return Err(ErrorCode::IllegalGeneration);
    }
    Ok(())
}

/// SyncGroup on the coordinating shard.
pub async fn sync(coord: Rc<Coordinator>, a: SyncArgs) -> SyncResult {
    let (rx, persist) = {
        let mut groups = coord.groups.borrow_mut();
        let Some(g) = groups.get_mut(&a.group_id) else {
            return sync_error(ErrorCode::UnknownMemberId);
        };
        if let Err(code) = check_member(
            g,
            &a.member_id,
            a.instance_id.as_deref(),
            Some(a.generation),
        ) {
            return sync_error(code);
        }
        if a.protocol_name
            .as_ref()
            .is_some_and(|p| Some(p) != g.protocol_name.as_ref())
        {
            return sync_error(ErrorCode::InconsistentGroupProtocol);
        }
        let m = g.members.get_mut(&a.member_id).expect("checked");
        m.last_seen = Instant::now();
        match g.state {
            GroupState::PreparingRebalance => return sync_error(ErrorCode::RebalanceInProgress),
            GroupState::Stable => {
                return SyncResult {
                    error: None,
                    protocol_name: g.protocol_name.clone(),
                    assignment: m.assignment.clone(),
                };
            }
            GroupState::Empty | GroupState::Dead => return sync_error(ErrorCode::UnknownMemberId),
            GroupState::CompletingRebalance => {}
        }
        let (tx, rx) = flume::bounded(1);
        m.awaiting_sync = Some(tx);
        let is_leader = g.leader.as_deref() == Some(a.member_id.as_str());
        if is_leader {
            g.complete_sync(a.assignments.into_iter().collect());
            info!(group = %g.id, generation = g.generation, "group is stable");
        }
        (rx, is_leader)
    };
    if persist {
        offsets::persist_group(&coord, &a.group_id).await;
    }
    rx.recv_async()
        .await
        .unwrap_or_else(|_| sync_error(ErrorCode::RebalanceInProgress))
}

/// Heartbeat on the coordinating shard.
pub fn heartbeat(
    coord: &Coordinator,
    group_id: &str,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> Option<ErrorCode> {
    let mut groups = coord.groups.borrow_mut();
    let Some(g) = groups.get_mut(group_id) else {
        return Some(ErrorCode::UnknownMemberId);
    };
    if let Err(code) = check_member(g, member_id, instance_id, None) {
        return Some(code);
    }
    g.members.get_mut(member_id).expect("checked").last_seen = Instant::now();
    if generation != g.generation {
        return Some(ErrorCode::IllegalGeneration);
    }
    (g.state == GroupState::PreparingRebalance).then_some(ErrorCode::RebalanceInProgress)
}

/// LeaveGroup on the coordinating shard: one result per member, in order.
pub async fn leave(
    coord: &Rc<Coordinator>,
    group_id: &str,
    members: Vec<(String, Option<String>)>,
) -> Vec<Option<ErrorCode>> {
    let results = {
        let mut groups = coord.groups.borrow_mut();
        let Some(g) = groups.get_mut(group_id) else {
            return members
                .iter()
                .map(|_| Some(ErrorCode::UnknownMemberId))
                .collect();
        };
        let mut results = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let id = match (&instance_id, member_id.is_empty()) {
                (Some(iid), true) => g.static_members.get(iid).cloned().unwrap_or_default(),
                _ => member_id,
            };
            match check_member(g, &id, instance_id.as_deref(), None) {
                Ok(()) => {
                    info!(group = %g.id, member = %id, "member left");
                    g.remove(&id);
                    results.push(None);
                }
                Err(code) => results.push(Some(code)),
            }
        }
        g.after_departure(Instant::now());
        results
    };
    // The last member out ends the join phase here and now (the group becomes Empty and can
    // be deleted as soon as this answer arrives).
    settle_and_persist(coord, group_id).await;
    results
}

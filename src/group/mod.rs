//! The classic consumer-group coordinator (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, offsets).
//!
//! Each group lives on the shard that owns its partition of `__consumer_offsets`
//! ([`store::partition_for`], then `shard_for`), so ownership is a pure function of the group id
//! and survives a change of shard count. Handlers on other shards forward with `invoke_on`.
//! All state changes are synchronous under one `RefCell` borrow; waiting (a JoinGroup held until
//! the join phase ends, a follower's SyncGroup held until the leader's assignment) happens on
//! one-shot channels after the borrow is released. Two timer tasks per shard drive time: one per
//! group in PreparingRebalance, and one sweeping expired sessions.

pub mod offsets;
pub mod state;
pub mod store;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::info;

use crate::admin::{self, NewTopic};
use crate::error::ErrorCode;
use crate::shard::Shard;
use state::{Group, GroupState, JoinResult, Member, SyncResult};
use store::{OFFSETS_TOPIC, OFFSETS_TOPIC_PARTITIONS, OFFSETS_TOPIC_SEGMENT_BYTES};

/// How often a rebalancing group checks whether its join phase can end.
const REBALANCE_POLL: Duration = Duration::from_millis(20);
/// How often a shard sweeps its groups for expired sessions.
const EXPIRY_SWEEP: Duration = Duration::from_millis(200);
/// How long an id handed out with MEMBER_ID_REQUIRED stays reserved without its JoinGroup.
const PENDING_MEMBER_TTL: Duration = Duration::from_secs(60);

/// The groups one shard coordinates. Lives on its shard for the life of the process.
#[derive(Default)]
pub struct Coordinator {
    pub(crate) groups: RefCell<HashMap<String, Group>>,
    expiry_running: Cell<bool>,
    next_member: Cell<u64>,
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
        error: code.code(),
        generation: -1,
        member_id: member_id.to_string(),
        ..Default::default()
    }
}

fn sync_error(code: ErrorCode) -> SyncResult {
    SyncResult {
        error: code.code(),
        ..Default::default()
    }
}

/// The shard coordinating `group_id`, creating `__consumer_offsets` on first use (as Kafka does
/// on the first FindCoordinator).
pub async fn coordinator_shard(shard: &Rc<Shard>, group_id: &str) -> Result<usize, ErrorCode> {
    if shard.metadata().topic(OFFSETS_TOPIC).is_none() {
        let configs = [
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                OFFSETS_TOPIC_SEGMENT_BYTES.to_string(),
            ),
        ];
        let topic = NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: OFFSETS_TOPIC_PARTITIONS,
            replication_factor: -1,
            configs: configs.into_iter().collect(),
        };
        admin::create_topics(shard, vec![topic], false).await;
    }
    let image = shard.metadata();
    let meta = image
        .topic(OFFSETS_TOPIC)
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    Ok(shard.owner(meta, store::partition_for(group_id)))
}

impl Coordinator {
    /// At shutdown: answers every JoinGroup and SyncGroup still waiting with NOT_COORDINATOR,
    /// so they do not hold up the drain and the clients go looking for the coordinator again
    /// (finding it once the broker is back).
    pub fn release_waiters(&self) {
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

    fn new_member_id(&self, client_id: &str) -> String {
        let n = self.next_member.get() + 1;
        self.next_member.set(n);
        let nonce = crate::metadata::random_uuid().simple().to_string();
        format!("{client_id}-{n}-{}", &nonce[..12])
    }
}

/// JoinGroup on the coordinating shard: registers the member and waits for the join phase to end.
pub async fn join(shard: Rc<Shard>, args: JoinArgs) -> JoinResult {
    let rx = match register_join(&shard, &args) {
        Ok(rx) => rx,
        Err(result) => return result,
    };
    ensure_rebalance_task(&shard, &args.group_id);
    ensure_expiry_task(&shard);
    rx.recv_async()
        .await
        .unwrap_or_else(|_| join_error(ErrorCode::UnknownMemberId, &args.member_id))
}

fn register_join(shard: &Shard, a: &JoinArgs) -> Result<flume::Receiver<JoinResult>, JoinResult> {
    let cfg = &shard.config;
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
    let coord = &shard.groups;
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
        });
    member.protocols = a.protocols.clone();
    member.session_timeout_ms = a.session_timeout_ms;
    member.rebalance_timeout_ms = a.rebalance_timeout_ms;
    member.last_seen = now;
    member.awaiting_join = Some(tx);
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
        if let Some(old) = g.static_members.get(iid).cloned() {
            if !a.member_id.is_empty() && a.member_id != old {
                return Err(join_error(ErrorCode::FencedInstanceId, &a.member_id));
            }
            return Ok(rejoin_static(coord, g, a, &old, now));
        }
        if full {
            return Err(join_error(ErrorCode::GroupMaxSizeReached, &a.member_id));
        }
        return Ok(Resolved::Id(coord.new_member_id(&a.client_id)));
    }
    if a.member_id.is_empty() {
        if full {
            return Err(join_error(ErrorCode::GroupMaxSizeReached, ""));
        }
        let id = coord.new_member_id(&a.client_id);
        if a.version >= 4 {
            g.pending.insert(id.clone(), now);
            return Ok(Resolved::Answer(join_error(
                ErrorCode::MemberIdRequired,
                &id,
            )));
        }
        return Ok(Resolved::Id(id));
    }
    if g.members.contains_key(&a.member_id) || g.pending.remove(&a.member_id).is_some() {
        return Ok(Resolved::Id(a.member_id.clone()));
    }
    Err(join_error(ErrorCode::UnknownMemberId, &a.member_id))
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
    let protocol = g.protocol_name.clone().unwrap_or_default();
    let is_leader = g.leader.as_deref() == Some(new_id.as_str());
    let members = if is_leader {
        g.members
            .values()
            .map(|m| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                (m.id.clone(), m.instance_id.clone(), meta)
            })
            .collect()
    } else {
        Vec::new()
    };
    info!(group = %g.id, member = %new_id, "static member rejoined without a rebalance");
    Resolved::Answer(JoinResult {
        error: 0,
        generation: g.generation,
        protocol_name: g.protocol_name.clone(),
        leader: g.leader.clone().unwrap_or_default(),
        member_id: new_id,
        members,
    })
}

/// Starts the task that ends the group's join phase, unless one runs already.
fn ensure_rebalance_task(shard: &Rc<Shard>, group_id: &str) {
    {
        let mut groups = shard.groups.groups.borrow_mut();
        let Some(g) = groups.get_mut(group_id) else {
            return;
        };
        if g.state != GroupState::PreparingRebalance || g.rebalance_task {
            return;
        }
        g.rebalance_task = true;
    }
    let (shard, group_id) = (shard.clone(), group_id.to_string());
    glommio::spawn_local(async move {
        loop {
            if !rebalance_step(&shard, &group_id).await {
                return;
            }
            glommio::timer::sleep(REBALANCE_POLL).await;
        }
    })
    .detach();
}

/// Ends the join phase when every member rejoined (after a new group's initial delay) or the
/// rebalance timeout passed. Returns whether the phase is still open.
async fn rebalance_step(shard: &Rc<Shard>, group_id: &str) -> bool {
    let persist = {
        let mut groups = shard.groups.groups.borrow_mut();
        let Some(g) = groups.get_mut(group_id) else {
            return false;
        };
        if g.state != GroupState::PreparingRebalance {
            g.rebalance_task = false;
            return false;
        }
        let now = Instant::now();
        let delay_over = g.initial_delay_until.is_none_or(|t| now >= t);
        let timed_out = g.rebalance_deadline.is_some_and(|d| now >= d);
        if !(timed_out || (delay_over && g.all_joined())) {
            return true;
        }
        g.complete_join();
        g.rebalance_task = false;
        info!(group = %g.id, generation = g.generation, members = g.members.len(), state = g.state.name(), "join phase complete");
        g.state == GroupState::Empty
    };
    if persist {
        offsets::persist_group(shard, group_id).await;
    }
    false
}

/// Starts this shard's session-expiry sweep, once.
fn ensure_expiry_task(shard: &Rc<Shard>) {
    if shard.groups.expiry_running.replace(true) {
        return;
    }
    let shard = shard.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(EXPIRY_SWEEP).await;
            if shard.shutting_down.get() {
                return;
            }
            for group_id in expire_sessions(&shard) {
                ensure_rebalance_task(&shard, &group_id);
            }
        }
    })
    .detach();
}

/// Removes members whose session expired (those waiting in JoinGroup are alive by definition)
/// and stale MEMBER_ID_REQUIRED reservations. Returns the groups that must rebalance.
fn expire_sessions(shard: &Shard) -> Vec<String> {
    let now = Instant::now();
    let mut rebalance = Vec::new();
    for g in shard.groups.groups.borrow_mut().values_mut() {
        g.pending
            .retain(|_, at| now.duration_since(*at) < PENDING_MEMBER_TTL);
        let expired: Vec<String> = g
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .filter(|m| {
                now.duration_since(m.last_seen)
                    > Duration::from_millis(m.session_timeout_ms.max(0) as u64)
            })
            .map(|m| m.id.clone())
            .collect();
        if expired.is_empty() {
            continue;
        }
        for id in &expired {
            info!(group = %g.id, member = %id, "session expired");
            g.remove(id);
        }
        g.after_departure(now);
        if g.state == GroupState::PreparingRebalance {
            rebalance.push(g.id.clone());
        }
    }
    rebalance
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
pub async fn sync(shard: Rc<Shard>, a: SyncArgs) -> SyncResult {
    let (rx, persist) = {
        let mut groups = shard.groups.groups.borrow_mut();
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
                    error: 0,
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
        offsets::persist_group(&shard, &a.group_id).await;
    }
    rx.recv_async()
        .await
        .unwrap_or_else(|_| sync_error(ErrorCode::RebalanceInProgress))
}

/// Heartbeat on the coordinating shard.
pub fn heartbeat(
    shard: &Shard,
    group_id: &str,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> Option<ErrorCode> {
    let mut groups = shard.groups.groups.borrow_mut();
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
pub fn leave(
    shard: &Rc<Shard>,
    group_id: &str,
    members: Vec<(String, Option<String>)>,
) -> Vec<Option<ErrorCode>> {
    let results = {
        let mut groups = shard.groups.groups.borrow_mut();
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
    ensure_rebalance_task(shard, group_id);
    results
}

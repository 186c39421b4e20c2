//! The group coordinator's timers: one task per deadline, each asleep until its own instant.
//!
//! Kafka schedules a timer per member heartbeat and per join phase; so does this module,
//! instead of sweeping every group on a fixed period (which made expiry late by up to the
//! period and woke idle shards for nothing). A timer is identified by an epoch stored in the
//! thing it guards (`Member::timer`, `Group::join_timer`, `Pending::timer_armed`); re-arming
//! hands out a new epoch, and a task that wakes to find a different epoch (or its member or
//! group gone) just ends. Deadlines that move later (a heartbeat) need no new task: the task
//! wakes, sees the later deadline and sleeps again. Deadlines that could move earlier (a
//! shorter session timeout, a new member id) re-arm.
//!
//! All tasks live on the coordinating shard and never hold a `RefCell` borrow across a sleep.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::info;

use super::settle_and_persist;
use super::state::{Group, GroupState};
use crate::shard::Shard;

/// A timer task, built under the groups borrow and spawned after it is released (glommio may
/// poll a new task at once, and every timer starts by borrowing the groups).
pub(super) type Armed = Vec<Pin<Box<dyn Future<Output = ()>>>>;

/// Arms whatever timer `g` lacks: each member's session, each reserved member id, and the
/// join phase. Cheap when all are armed (a flag check per member), so every event calls it.
/// The returned tasks must be given to [`spawn`] once the borrow of `g` has ended.
pub(super) fn arm(shard: &Rc<Shard>, g: &mut Group) -> Armed {
    let coord = &shard.groups;
    let mut armed: Armed = Vec::new();
    for m in g.members.values_mut().filter(|m| m.timer == 0) {
        m.timer = coord.new_timer_epoch();
        let task = session_timer(shard.clone(), g.id.clone(), m.id.clone(), m.timer);
        armed.push(Box::pin(task));
    }
    for (id, p) in g.pending.iter_mut().filter(|(_, p)| !p.timer_armed) {
        p.timer_armed = true;
        let task = pending_timer(shard.clone(), g.id.clone(), id.clone(), p.expires);
        armed.push(Box::pin(task));
    }
    if g.state == GroupState::PreparingRebalance && g.join_timer.is_none() {
        let epoch = coord.new_timer_epoch();
        g.join_timer = Some(epoch);
        armed.push(Box::pin(join_timer(shard.clone(), g.id.clone(), epoch)));
    }
    armed
}

/// Starts the tasks [`arm`] built.
pub(super) fn spawn(armed: Armed) {
    for task in armed {
        glommio::spawn_local(task).detach();
    }
}

async fn sleep_until(at: Instant) {
    glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await;
}

/// Expires one member's session at exactly `last_seen + session.timeout.ms`.
async fn session_timer(shard: Rc<Shard>, group_id: String, member_id: String, epoch: u64) {
    loop {
        let wake = {
            let groups = shard.groups.groups.borrow();
            let Some(m) = groups
                .get(&group_id)
                .and_then(|g| g.members.get(&member_id))
            else {
                return;
            };
            if m.timer != epoch {
                return;
            }
            // A member waiting in JoinGroup cannot expire; its session restarts when the join
            // phase answers it, so look again one session later at the earliest.
            let session = Duration::from_millis(m.session_timeout_ms.max(0) as u64);
            m.session_deadline()
                .unwrap_or_else(|| Instant::now() + session)
        };
        sleep_until(wake).await;
        if shard.shutting_down.get() {
            return;
        }
        let expired = {
            let mut groups = shard.groups.groups.borrow_mut();
            let Some(g) = groups.get_mut(&group_id) else {
                return;
            };
            let now = Instant::now();
            let due = g.members.get(&member_id).is_some_and(|m| {
                m.timer == epoch && m.session_deadline().is_some_and(|d| now >= d)
            });
            if due {
                info!(group = %g.id, member = %member_id, "session expired");
                g.remove(&member_id);
                g.after_departure(now);
            }
            due
        };
        if expired {
            settle_and_persist(&shard, &group_id).await;
            return;
        }
    }
}

/// Ends a join phase when its initial delay or rebalance timeout runs out.
async fn join_timer(shard: Rc<Shard>, group_id: String, epoch: u64) {
    loop {
        let wake = {
            let groups = shard.groups.groups.borrow();
            let Some(g) = groups.get(&group_id) else {
                return;
            };
            if g.join_timer != Some(epoch) {
                return;
            }
            match g.join_phase_wake_at(Instant::now()) {
                Some(at) => at,
                None => return,
            }
        };
        sleep_until(wake).await;
        if shard.shutting_down.get() {
            return;
        }
        let current = shard
            .groups
            .groups
            .borrow()
            .get(&group_id)
            .is_some_and(|g| g.join_timer == Some(epoch));
        if !current {
            return;
        }
        settle_and_persist(&shard, &group_id).await;
    }
}

/// Drops a MEMBER_ID_REQUIRED reservation that was not used within its session timeout.
async fn pending_timer(shard: Rc<Shard>, group_id: String, member_id: String, expires: Instant) {
    sleep_until(expires).await;
    let mut groups = shard.groups.groups.borrow_mut();
    if let Some(g) = groups.get_mut(&group_id) {
        if g.pending
            .get(&member_id)
            .is_some_and(|p| p.expires == expires)
        {
            g.pending.remove(&member_id);
        }
    }
}

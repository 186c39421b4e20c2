//! The group coordinator's timers: one task per deadline, each asleep until its own instant.
//!
//! Kafka schedules a timer per member heartbeat and per join phase; so does this module,
//! instead of sweeping every group on a fixed period (which made expiry late by up to the
//! period and woke idle shards for nothing). Each task is tied to what it guards by a
//! [`TimerGuard`] stored there (`Member::timer`, `Pending::timer`, `Group::join_timer`):
//! dropping the guard (the member leaves, gets a new id or a shorter session; the phase ends;
//! the group is deleted) wakes the task and it ends, so tasks never pile up behind long
//! deadlines. Deadlines that move later (a heartbeat) need no new task: the task wakes, sees
//! the later deadline and sleeps again.
//!
//! All tasks live on the coordinating shard and never hold a `RefCell` borrow across a sleep.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::info;

use super::settle_and_persist;
use super::state::{Group, GroupState, TimerGuard};
use super::Coordinator;

/// Timer tasks, built under the groups borrow and spawned after it is released (glommio may
/// poll a new task at once, and every timer starts by borrowing the groups).
pub(super) type Armed = Vec<Pin<Box<dyn Future<Output = ()>>>>;

/// The guard to store and the end the task keeps.
fn guard() -> (TimerGuard, flume::Receiver<()>) {
    flume::bounded(1)
}

/// Arms whatever timer `g` lacks: each member's session, each reserved member id, and the
/// join phase. Cheap when all are armed (a check per member), so every event calls it. The
/// returned tasks must be given to [`spawn`] once the borrow of `g` has ended.
pub(super) fn arm(coord: &Rc<Coordinator>, g: &mut Group) -> Armed {
    let mut armed: Armed = Vec::new();
    for m in g.members.values_mut().filter(|m| m.timer.is_none()) {
        let (keep, stopped) = guard();
        m.timer = Some(keep);
        let task = session_timer(coord.clone(), g.id.clone(), m.id.clone(), stopped);
        armed.push(Box::pin(task));
    }
    for (id, p) in g.pending.iter_mut().filter(|(_, p)| p.timer.is_none()) {
        let (keep, stopped) = guard();
        p.timer = Some(keep);
        let task = pending_timer(coord.clone(), g.id.clone(), id.clone(), p.expires, stopped);
        armed.push(Box::pin(task));
    }
    if g.state == GroupState::PreparingRebalance && g.join_timer.is_none() {
        let (keep, stopped) = guard();
        g.join_timer = Some(keep);
        armed.push(Box::pin(join_timer(coord.clone(), g.id.clone(), stopped)));
    }
    armed
}

/// Starts the tasks [`arm`] built.
pub(super) fn spawn(armed: Armed) {
    for task in armed {
        glommio::spawn_local(task).detach();
    }
}

/// Sleeps until `at`; false when the guard was dropped first (the task must end).
async fn sleep_until(at: Instant, stopped: &flume::Receiver<()>) -> bool {
    use futures_lite::FutureExt;
    let timeout = async {
        glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await;
        true
    };
    // Nothing is ever sent: the receive ends only when the guard is dropped.
    let released = async {
        let _ = stopped.recv_async().await;
        false
    };
    timeout.or(released).await && !stopped.is_disconnected()
}

/// Expires one member's session at exactly `last_seen + session.timeout.ms`.
async fn session_timer(
    coord: Rc<Coordinator>,
    group_id: String,
    member_id: String,
    stopped: flume::Receiver<()>,
) {
    loop {
        let wake = {
            let groups = coord.groups.borrow();
            let Some(m) = groups
                .get(&group_id)
                .and_then(|g| g.members.get(&member_id))
            else {
                return;
            };
            // A member waiting in JoinGroup cannot expire; its session restarts when the join
            // phase answers it, so look again one session later at the earliest.
            let session = Duration::from_millis(m.session_timeout_ms.max(0) as u64);
            m.session_deadline()
                .unwrap_or_else(|| Instant::now() + session)
        };
        if !sleep_until(wake, &stopped).await || coord.stopping.get() {
            return;
        }
        let expired = {
            let mut groups = coord.groups.borrow_mut();
            let Some(g) = groups.get_mut(&group_id) else {
                return;
            };
            let now = Instant::now();
            let due = g
                .members
                .get(&member_id)
                .is_some_and(|m| m.session_deadline().is_some_and(|d| now >= d));
            if due {
                info!(group = %g.id, member = %member_id, "session expired");
                g.remove(&member_id);
                g.after_departure(now);
            }
            due
        };
        if expired {
            settle_and_persist(&coord, &group_id).await;
            return;
        }
    }
}

/// Ends a join phase when its initial delay or rebalance timeout runs out.
async fn join_timer(coord: Rc<Coordinator>, group_id: String, stopped: flume::Receiver<()>) {
    loop {
        let wake = {
            let groups = coord.groups.borrow();
            match groups
                .get(&group_id)
                .and_then(|g| g.join_phase_wake_at(Instant::now()))
            {
                Some(at) => at,
                None => return,
            }
        };
        if !sleep_until(wake, &stopped).await || coord.stopping.get() {
            return;
        }
        settle_and_persist(&coord, &group_id).await;
    }
}

/// Drops a MEMBER_ID_REQUIRED reservation that was not used within its session timeout.
async fn pending_timer(
    coord: Rc<Coordinator>,
    group_id: String,
    member_id: String,
    expires: Instant,
    stopped: flume::Receiver<()>,
) {
    if !sleep_until(expires, &stopped).await {
        return;
    }
    let mut groups = coord.groups.borrow_mut();
    if let Some(g) = groups.get_mut(&group_id) {
        g.pending.remove(&member_id);
    }
}

//! A partition this shard owns: its log, its role and replication (the high watermark, its
//! followers, the role fence), and the waits parked on it. `Partitions` (the parent module) is
//! the map of them.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use super::quota::Throttled;
use crate::error::ErrorCode;
use crate::log::{AppendInfo, Durability, LogError, Offset, PartitionLog};
use crate::replica::{Followers, Role};

/// A partition owned by this shard: its log, its replication and the fetches parked on it.
///
/// Created when a metadata image that names it reaches the owner shard; dropped (and its
/// directory removed) when an image without its topic arrives.
pub struct Partition {
    pub topic_id: uuid::Uuid,
    pub log: PartitionLog,
    /// What the latest image says of this broker's replica ([`Partition::set_role`]).
    role: RefCell<Role>,
    /// The role fence: every write (a leader's append, a follower's copy or truncation) holds
    /// it shared and checks the role under it; a role change holds it exclusively. So a write
    /// that began under one role never lands under the next (a produce validated while
    /// leadership moved, a fetch answered by a former leader), as Kafka's `leaderIsrUpdateLock`.
    fence: glommio::sync::RwLock<()>,
    /// The replicated high watermark, where the role does not make it the written end
    /// ([`Partition::high_watermark`]).
    hwm: Cell<i64>,
    /// On a leader: where its followers are.
    followers: RefCell<Followers>,
    /// When this leader last proposed an ISR change that the image does not show yet.
    isr_proposed: RefCell<Option<(Instant, Vec<i32>)>>,
    /// Where this leader's epoch began in its log: a follower joins the ISR only once it has
    /// reached it (Kafka's `isFollowerInSync`).
    epoch_start: Cell<i64>,
    /// Parked waits: each fires once its end passes its offset ([`Waiter`]).
    waiters: RefCell<Vec<Waiter>>,
    /// Which of its replication traffic is throttled here, by its topic's configs.
    pub throttled: Cell<Throttled>,
}

/// A parked wait: a fetch (or an acks=all produce) woken once what `reader` may read ends
/// past `offset`.
struct Waiter {
    offset: i64,
    reader: Reader,
    tx: flume::Sender<()>,
}

/// The end of a producer's transaction in one partition (WriteTxnMarkers).
#[derive(Clone, Copy, Debug)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub marker: crate::log::txn::Marker,
    pub coordinator_epoch: i32,
}

/// Who waits, which says where their readable data ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// A follower: the written end.
    Replica,
    /// A consumer (read_uncommitted) or an acks=all produce: the high watermark.
    Consumer,
    /// A read_committed consumer: the last stable offset.
    Committed,
}

impl Partition {
    /// A partition opened in `role`; call [`Partition::set_role`] before it serves, so that a
    /// new leader epoch reaches the log.
    pub fn new(topic_id: uuid::Uuid, log: PartitionLog, role: Role) -> Partition {
        let log_end = log.log_end_offset().0;
        let hwm = log.high_watermark().0;
        let hwm = if role.alone() {
            hwm
        } else {
            // Nothing says how far a replicated log was replicated before this start (Kafka
            // keeps a checkpoint): the followers' fetches move it up from the log start.
            log.log_start_offset().0
        };
        Partition {
            topic_id,
            log,
            role: RefCell::new(role),
            fence: glommio::sync::RwLock::new(()),
            hwm: Cell::new(hwm),
            followers: RefCell::new(Followers::started(Instant::now())),
            isr_proposed: RefCell::new(None),
            // Opened as leader: its followers must reach where its log ends now before they
            // join (a restarted leader cannot tell where its epoch began in this process).
            epoch_start: Cell::new(log_end),
            waiters: RefCell::new(Vec::new()),
            throttled: Cell::default(),
        }
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.role.borrow().is_leader()
    }

    /// A leader alone in its ISR (see [`Role::alone`]), with no follower's joining proposed.
    pub fn alone(&self) -> bool {
        let role = self.role.borrow();
        role.is_leader() && role.alone() && self.isr_proposed.borrow().is_none()
    }

    /// `role` with the ISR this leader proposed added to its own (KIP-497's maximal ISR): a
    /// joining follower counts for the high watermark from the moment the leader proposes it,
    /// since once the controller applies the change it may be elected.
    fn maximal(&self, role: &Role) -> Role {
        let mut role = role.clone();
        if let Some((_, proposed)) = self.isr_proposed.borrow().as_ref() {
            for b in proposed {
                if !role.isr.contains(b) {
                    role.isr.push(*b);
                }
            }
        }
        role
    }

    /// Whether broker `id` is another replica of this partition (one that may fetch as a
    /// follower).
    pub fn has_follower(&self, id: i32) -> bool {
        let role = self.role.borrow();
        id != role.me && role.replicas.contains(&id)
    }

    /// Whether the image has replica `id` in the ISR.
    pub fn in_sync(&self, id: i32) -> bool {
        self.role.borrow().isr.contains(&id)
    }

    /// Where this leader's epoch began in its log (its log end when it became leader).
    pub fn epoch_start(&self) -> i64 {
        if self.alone() {
            return 0;
        }
        self.epoch_start.get()
    }

    /// How many replicas are in sync.
    pub fn isr_len(&self) -> usize {
        self.role.borrow().isr.len()
    }

    /// Takes the role the latest image gives this broker's replica. A leader of a new epoch
    /// notes where its epoch starts in the log's epoch cache before anything is appended in
    /// it (Kafka's `makeLeader`), so OffsetForLeaderEpoch for the previous epoch ends there,
    /// and starts tracking its followers afresh.
    pub async fn set_role(&self, role: Role) -> Result<(), LogError> {
        let _fence = self.fence.write().await.map_err(fence_closed)?;
        let hwm_before = self.high_watermark();
        let before = self.role.replace(role.clone());
        if role.isr != before.isr || role.leader_epoch != before.leader_epoch {
            self.isr_proposed.replace(None);
        }
        if role.is_leader() && (!before.is_leader() || before.leader_epoch != role.leader_epoch) {
            self.followers.borrow_mut().reset(Instant::now());
            self.epoch_start.set(self.log.log_end_offset().0);
        }
        // The high watermark never moves back here; a leader recomputes it for its new ISR
        // (one follower fewer may let it move up), a follower keeps the leader's.
        let hwm = if role.is_leader() {
            let written = self.log.high_watermark().0;
            self.followers
                .borrow()
                .high_watermark(&self.maximal(&role), written, hwm_before)
        } else {
            hwm_before.min(self.log.log_end_offset().0)
        };
        self.hwm.set(hwm);
        // A partition whose leader moved away or whose ISR changed may have waits to end.
        self.notify();
        if role.is_leader() {
            self.log.begin_epoch(role.leader_epoch).await?;
        }
        Ok(())
    }

    /// The high watermark: what consumers may read and acks=all waits for. The written end on
    /// a leader alone in its ISR; otherwise the replicated one ([`crate::replica`]).
    pub fn high_watermark(&self) -> i64 {
        if self.alone() {
            return self.log.high_watermark().0;
        }
        self.hwm.get()
    }

    /// Signals `tx` once what `reader` may read ends past `offset`. A waiting read hands the
    /// same sender to every partition it waits on and drops the receiver when it ends, which
    /// lets the next [`Partition::notify`] or `watch` forget the stale entry.
    pub(super) fn watch(&self, offset: i64, reader: Reader, tx: flume::Sender<()>) {
        if self.end_for(reader) > offset {
            let _ = tx.try_send(());
            return;
        }
        let mut w = self.waiters.borrow_mut();
        w.retain(|w| !w.tx.is_disconnected());
        w.push(Waiter { offset, reader, tx });
    }

    fn end_for(&self, reader: Reader) -> i64 {
        match reader {
            Reader::Replica => self.log.high_watermark().0,
            Reader::Consumer => self.high_watermark(),
            Reader::Committed => self.log.last_stable_offset(self.high_watermark()),
        }
    }

    /// Appends a batch as this broker's leader, stamped with the current leader epoch, and
    /// wakes the fetches that the new data satisfies: every append of the broker goes through
    /// here, so none can forget the wake-up. The high watermark moves with the append only on
    /// a leader alone in its ISR; otherwise when the followers have the batch.
    pub async fn append(
        &self,
        batch: &[u8],
        durability: Durability,
    ) -> Result<AppendInfo, LogError> {
        self.lead(|epoch| self.log.append(batch, epoch, durability))
            .await
    }

    /// Appends the marker that ends a producer's transaction, as [`Partition::append`] does a
    /// batch (the leader's epoch, the role fence, the wake-up).
    pub async fn append_marker(
        &self,
        m: &TxnMarker,
        durability: Durability,
    ) -> Result<AppendInfo, LogError> {
        self.lead(|epoch| {
            let (pid, pe, ce) = (m.producer_id, m.producer_epoch, m.coordinator_epoch);
            self.log
                .append_marker(pid, pe, m.marker, ce, epoch, durability)
        })
        .await
    }

    /// Appends a batch the broker built (`PartitionLog::append_built`), as
    /// [`Partition::append`] does a client's.
    pub async fn append_built(
        &self,
        batch: &[u8],
        durability: Durability,
    ) -> Result<AppendInfo, LogError> {
        self.lead(|epoch| self.log.append_built(batch, epoch, durability))
            .await
    }

    /// Runs a leader's write under the role fence with the current leader epoch, then wakes
    /// the waits it may satisfy.
    async fn lead<F: std::future::Future<Output = Result<AppendInfo, LogError>>>(
        &self,
        write: impl FnOnce(i32) -> F,
    ) -> Result<AppendInfo, LogError> {
        let _fence = self.fence.read().await.map_err(fence_closed)?;
        let (leader, epoch) = {
            let role = self.role.borrow();
            (role.is_leader(), role.leader_epoch)
        };
        if !leader {
            return Err(LogError::NotLeader("leadership moved".into()));
        }
        let r = write(epoch).await;
        self.notify();
        r
    }

    /// A follower's copy of its leader's batches, fetched at `fetch_offset` from `leader` at
    /// `epoch`: applied only if this replica still follows that leader at that epoch and its log
    /// still ends at `fetch_offset` (Kafka's fetcher check), else NOT_LEADER (dropped).
    pub async fn replica_append(
        &self,
        leader: i32,
        epoch: i32,
        fetch_offset: i64,
        records: &[u8],
    ) -> Result<(), LogError> {
        let _fence = self.fence.read().await.map_err(fence_closed)?;
        self.still_following(leader, epoch)?;
        let log = &self.log;
        if log.log_end_offset().0 != fetch_offset {
            return Err(LogError::NotLeader(format!(
                "the log moved from {fetch_offset} to {} meanwhile",
                log.log_end_offset().0
            )));
        }
        // An empty log restarted at the leader's log start may get a first batch that begins
        // below it (the start is inside that batch, after DeleteRecords): it restarts at the
        // batch's base, as Kafka's follower does.
        let empty = log.log_end_offset() == log.log_start_offset();
        if let Some((base, _)) = crate::protocol::batch::peek_offset_and_len(records) {
            if empty && base < log.log_end_offset().0 {
                log.truncate_fully_and_start_at(Offset(base)).await?;
            }
        }
        log.append_replica(records).await.map(drop)
    }

    /// A follower's truncation to `offset` (divergence found with `leader` at `epoch`), or,
    /// with `restart`, its restart at `offset` (the leader deleted what it lacks); under the
    /// same check as [`Partition::replica_append`].
    pub async fn replica_truncate(
        &self,
        leader: i32,
        epoch: i32,
        offset: i64,
        restart: bool,
    ) -> Result<(), LogError> {
        let _fence = self.fence.read().await.map_err(fence_closed)?;
        self.still_following(leader, epoch)?;
        if restart {
            self.log.truncate_fully_and_start_at(Offset(offset)).await
        } else {
            self.log.truncate_to(Offset(offset)).await
        }
    }

    fn still_following(&self, leader: i32, epoch: i32) -> Result<(), LogError> {
        let role = self.role.borrow();
        if role.is_follower() && role.leader == leader && role.leader_epoch == epoch {
            return Ok(());
        }
        Err(LogError::NotLeader(format!(
            "no longer following broker {leader} at epoch {epoch}"
        )))
    }

    /// Follower `id` fetched at `offset` (its log end): moves the high watermark and wakes
    /// what that satisfies. Returns the ISR this leader should propose, if any.
    pub fn follower_fetched(&self, id: i32, offset: i64, lag_max: Duration) -> Option<Vec<i32>> {
        if !self.is_leader() || !self.has_follower(id) {
            return None;
        }
        let now = Instant::now();
        let written = self.log.high_watermark().0;
        let current = self.high_watermark();
        // Borrowed, not copied: this runs for every partition of every follower fetch. Only a
        // pending ISR proposal needs the (copied) maximal ISR.
        let role = self.role.borrow();
        let mut followers = self.followers.borrow_mut();
        followers.fetched(id, offset, self.log.log_end_offset().0, now);
        let hwm = if self.isr_proposed.borrow().is_some() {
            followers.high_watermark(&self.maximal(&role), written, current)
        } else {
            followers.high_watermark(&role, written, current)
        };
        let join_from = hwm.max(self.epoch_start.get());
        let change = followers.isr_change(&role, join_from, now, lag_max);
        drop(followers);
        drop(role);
        if hwm != self.hwm.get() {
            self.hwm.set(hwm);
            self.notify();
        }
        self.propose_once(change, now)
    }

    /// The ISR change a leader should propose now for followers that stopped fetching (a
    /// periodic check; a fetching follower is checked at each fetch).
    pub fn isr_check(&self, lag_max: Duration) -> Option<Vec<i32>> {
        let role = self.role.borrow().clone();
        if !role.is_leader() || role.replicas.len() < 2 {
            return None;
        }
        let now = Instant::now();
        let join_from = self.high_watermark().max(self.epoch_start.get());
        let change = self
            .followers
            .borrow()
            .isr_change(&role, join_from, now, lag_max);
        self.propose_once(change, now)
    }

    /// `change`, unless one is in flight (proposed within the last few seconds and not yet in
    /// the image).
    fn propose_once(&self, change: Option<Vec<i32>>, now: Instant) -> Option<Vec<i32>> {
        let change = change?;
        if self
            .isr_proposed
            .borrow()
            .as_ref()
            .is_some_and(|(at, _)| now.duration_since(*at) < ISR_PROPOSAL_RETRY)
        {
            return None;
        }
        // The high watermark stops being the written end once a follower may join: it is
        // where it stands now until the joiner has caught up (it has: it joins at the HWM).
        let hwm = self.high_watermark();
        self.hwm.set(hwm);
        self.isr_proposed.replace(Some((now, change.clone())));
        Some(change)
    }

    /// The ISR change last proposed was dropped before it reached the quorum: the next one may
    /// go at once.
    pub fn isr_proposal_done(&self) {
        self.isr_proposed.replace(None);
    }

    /// A follower learnt the leader's high watermark: its own is that, capped at its log end.
    pub fn follow_high_watermark(&self, leader_hwm: i64) {
        let hwm = leader_hwm.min(self.log.log_end_offset().0);
        if hwm != self.hwm.get() {
            self.hwm.set(hwm);
            self.notify();
        }
    }

    /// A follower takes the leader's log start (KIP-107, as Kafka's follower does): what the
    /// leader no longer has (DeleteRecords, retention) goes here too, within what this replica
    /// knows is committed, so a new leader never serves records a client deleted.
    pub async fn follow_log_start(&self, leader_start: i64) -> Result<(), LogError> {
        if leader_start <= self.log.log_start_offset().0 || leader_start > self.hwm.get() {
            return Ok(());
        }
        self.log
            .delete_records(Offset(leader_start))
            .await
            .map(drop)
    }

    /// Waits until the high watermark passes `last` (acks=all): `Ok` then, NOT_LEADER_OR_FOLLOWER
    /// when this broker stops leading first, REQUEST_TIMED_OUT at `deadline`.
    pub async fn wait_replicated(&self, last: i64, deadline: Instant) -> Result<(), ErrorCode> {
        loop {
            if !self.is_leader() {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            if self.high_watermark() > last {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ErrorCode::RequestTimedOut);
            }
            let (tx, rx) = flume::bounded(1);
            self.watch(last, Reader::Consumer, tx);
            futures_lite::future::or(
                async {
                    let _ = crate::router::recv_cross_shard(&rx).await;
                },
                glommio::timer::sleep(deadline - now),
            )
            .await;
        }
    }

    /// Wakes the parked waits that new data, a moved high watermark or a new role satisfies.
    fn notify(&self) {
        let hw = self.high_watermark();
        let written = self.log.high_watermark().0;
        let leader = self.is_leader();
        let mut lso = None;
        self.waiters.borrow_mut().retain(|w| {
            let end = match w.reader {
                Reader::Replica => written,
                Reader::Consumer => hw,
                Reader::Committed => *lso.get_or_insert_with(|| self.log.last_stable_offset(hw)),
            };
            if end > w.offset || (!leader && w.reader != Reader::Replica) {
                let _ = w.tx.try_send(());
                false
            } else {
                !w.tx.is_disconnected()
            }
        });
    }

    /// How many fetches are parked here now (for tests and introspection).
    pub fn parked(&self) -> usize {
        self.waiters
            .borrow()
            .iter()
            .filter(|w| !w.tx.is_disconnected())
            .count()
    }

    /// Releases parked fetches when the partition is removed or replaced.
    pub fn notify_gone(&self) {
        self.waiters.borrow_mut().clear();
    }
}

fn fence_closed(e: glommio::GlommioError<()>) -> LogError {
    LogError::Io(std::io::Error::other(format!("partition role fence: {e}")))
}

/// How long an ISR change stays in flight before the leader may propose it again.
const ISR_PROPOSAL_RETRY: Duration = Duration::from_secs(5);

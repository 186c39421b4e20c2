//! The partitions one shard owns, and the hook that tells other services when they come and go.
//!
//! [`Partitions`] is the owner shard's map of open partitions. It knows nothing of what is stored
//! in them: a service that keeps state derived from some partitions (the group coordinator
//! replays `__consumer_offsets`; a transaction coordinator will replay its own log) registers a
//! [`PartitionListener`] and is told when this broker starts leading each partition (opened as
//! its leader, reopened after a write failure, or made leader by the image) and when it stops
//! (its topic deleted, or another replica leads it), since only a leader serves such state. The
//! core thus never calls into the services built on it (`tests/module_graph.rs` keeps it that
//! way).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use std::time::{Duration, Instant};

use crate::error::ErrorCode;
use crate::log::txn::AbortedTxn;
use crate::log::{Offset, ReadSlice};
pub use crate::replica::Role;

mod partition;
pub mod quota;
pub use partition::{Partition, TxnMarker};
use quota::ReplicationQuota;

/// Identifies a partition on its owner shard.
pub type PartitionKey = (Arc<str>, i32);

/// One topic's partitions on this shard, by index.
type TopicPartitions = HashMap<i32, Rc<Partition>>;

/// A future a listener returns; it runs on the owner shard.
pub type LocalFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// A service told when this shard starts and stops leading its partitions (see the module docs).
pub trait PartitionListener {
    /// This broker leads `partition` of `topic` now: it was opened as its leader (at start-up,
    /// when its topic was created or grown, or when it was reopened after a write failure), or
    /// the image made it leader. Awaited before the partition counts as loaded: the metadata
    /// image that opened it is installed only after every listener has finished, as the replay
    /// of `__consumer_offsets` needs.
    fn loaded<'a>(
        &'a self,
        topic: &'a str,
        index: i32,
        partition: &'a Rc<Partition>,
    ) -> LocalFuture<'a>;

    /// This broker no longer leads `partition` of `topic`: it was removed (its topic was
    /// deleted) or another replica leads it now.
    fn unloaded(&self, topic: &str, index: i32);
}

/// An ISR a leader proposes for one of its partitions: topic, partition, the new ISR.
pub type IsrChange = (Arc<str>, i32, Vec<i32>);

/// The partitions this shard owns. Lives in its `Shard` for the life of the process; other
/// shards reach it only through `Router::invoke_on`.
pub struct Partitions {
    /// Topic → partition index → partition. Nested so that a lookup by `&str` allocates
    /// nothing: every produce and fetch does one per partition.
    map: RefCell<HashMap<Arc<str>, TopicPartitions>>,
    /// Weak, so that a listener may hold this service without a reference cycle.
    listeners: RefCell<Vec<Weak<dyn PartitionListener>>>,
    /// `replica.lag.time.max.ms`: how long an in-sync follower may go without catching up.
    replica_lag_max: Cell<Duration>,
    /// ISR changes this shard's leaders decided, for the shard's replication task to propose
    /// (`Shard::propose_isr_changes`).
    isr_changes: (flume::Sender<IsrChange>, flume::Receiver<IsrChange>),
    /// This shard's shares of `leader.replication.throttled.rate` (what its leaders send to
    /// throttled followers) and `follower.replication.throttled.rate` (what its followers
    /// fetch for throttled partitions).
    pub leader_quota: ReplicationQuota,
    pub follower_quota: ReplicationQuota,
}

impl Default for Partitions {
    fn default() -> Partitions {
        Partitions {
            map: RefCell::default(),
            listeners: RefCell::default(),
            replica_lag_max: Cell::new(Duration::from_millis(
                crate::config::REPLICA_LAG_TIME_MAX_MS_DEFAULT,
            )),
            isr_changes: flume::unbounded(),
            leader_quota: ReplicationQuota::default(),
            follower_quota: ReplicationQuota::default(),
        }
    }
}

impl Partitions {
    pub fn replica_lag_max(&self) -> Duration {
        self.replica_lag_max.get()
    }

    pub fn set_replica_lag_max(&self, lag: Duration) {
        self.replica_lag_max.set(lag);
    }

    /// Queues an ISR change for the shard's replication task.
    pub fn propose_isr(&self, topic: Arc<str>, partition: i32, isr: Vec<i32>) {
        let _ = self.isr_changes.0.try_send((topic, partition, isr));
    }

    /// The queue of ISR changes (the replication task's end).
    pub fn isr_changes(&self) -> flume::Receiver<IsrChange> {
        self.isr_changes.1.clone()
    }

    /// Registers `listener` for every partition loaded or unloaded from now on.
    pub fn listen(&self, listener: Weak<dyn PartitionListener>) {
        self.listeners.borrow_mut().push(listener);
    }

    fn listeners(&self) -> Vec<Rc<dyn PartitionListener>> {
        self.listeners
            .borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// A partition this shard owns, if it is open.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.map
            .borrow()
            .get(topic)
            .and_then(|ps| ps.get(&partition))
            .cloned()
    }

    /// Every partition this shard owns.
    pub fn owned(&self) -> Vec<(PartitionKey, Rc<Partition>)> {
        self.map
            .borrow()
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |(i, p)| ((t.clone(), *i), p.clone())))
            .collect()
    }

    /// Installs an opened partition (replacing the one it reopens, if any) and tells the
    /// listeners.
    pub async fn load(&self, topic: Arc<str>, index: i32, partition: Rc<Partition>) {
        self.map
            .borrow_mut()
            .entry(topic.clone())
            .or_default()
            .insert(index, partition.clone());
        if partition.is_leader() {
            self.led(&topic, index, &partition).await;
        }
    }

    /// Tells the listeners this broker leads `partition` now.
    pub async fn led(&self, topic: &str, index: i32, partition: &Rc<Partition>) {
        for l in self.listeners() {
            l.loaded(topic, index, partition).await;
        }
    }

    /// Tells the listeners this broker no longer leads partition `index` of `topic`.
    pub fn resigned(&self, topic: &str, index: i32) {
        for l in self.listeners() {
            l.unloaded(topic, index);
        }
    }

    /// Removes a partition, releases the fetches parked on it and tells the listeners.
    pub fn unload(&self, key: &PartitionKey) -> Option<Rc<Partition>> {
        let removed = {
            let mut parts = self.map.borrow_mut();
            let removed = parts.get_mut(&key.0).and_then(|ps| ps.remove(&key.1));
            if parts.get(&key.0).is_some_and(HashMap::is_empty) {
                parts.remove(&key.0);
            }
            removed
        }?;
        removed.notify_gone();
        if removed.is_leader() {
            self.resigned(&key.0, key.1);
        }
        Some(removed)
    }
}

/// Which offset ListOffsets asks for.
#[derive(Clone, Copy, Debug)]
pub enum OffsetQuery {
    Earliest,
    Latest,
    /// The offset and timestamp of the record with the largest timestamp.
    MaxTimestamp,
    /// The first offset whose timestamp is at or after this one.
    Timestamp(i64),
}

/// One read a fetch asks of a partition's owner.
#[derive(Clone, Debug)]
pub struct ReadAt {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: u32,
    /// Data past this offset is news: the read returns at once when the high watermark is
    /// beyond it, and otherwise waits for it to get there. The fetch offset at first, the high
    /// watermark the fetch last saw afterwards (when what it got was less than `min_bytes`).
    pub wake_after: i64,
    /// The follower whose fetch this is (Kafka's replica id), or `None` for a consumer. A
    /// follower reads up to the written end, and its fetch offset tells the leader where it
    /// is.
    pub replica: Option<i32>,
    /// The epoch of the last batch the fetcher has (KIP-320's `last_fetched_epoch`), -1 when it
    /// does not say: a log that diverged from it below `offset` is answered with where.
    pub last_fetched_epoch: i32,
    /// A `read_committed` consumer's fetch: it reads up to the last stable offset, which is
    /// also what counts as news, and gets the aborted transactions overlapping its read.
    pub read_committed: bool,
}

impl ReadAt {
    fn reader(&self) -> partition::Reader {
        match (self.replica, self.read_committed) {
            (Some(_), _) => partition::Reader::Replica,
            (None, false) => partition::Reader::Consumer,
            (None, true) => partition::Reader::Committed,
        }
    }
}

/// What the owner read for one [`ReadAt`].
#[derive(Clone, Debug)]
pub struct PartitionRead {
    pub error: Option<ErrorCode>,
    /// -1 when the partition is not open here.
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub last_stable_offset: i64,
    /// For a read_committed fetch, the aborted transactions with records from the fetch
    /// offset up to the last stable offset (Kafka sends null to read_uncommitted fetches).
    pub aborted: Option<Vec<AbortedTxn>>,
    /// The record bytes, when there are any.
    pub slice: Option<ReadSlice>,
    /// Where the fetcher's log diverges from this one (KIP-320): the largest epoch here not
    /// above its `last_fetched_epoch`, and that epoch's end offset. No records come with it.
    pub diverging: Option<(i32, i64)>,
}

impl PartitionRead {
    pub fn failed(code: ErrorCode) -> PartitionRead {
        PartitionRead {
            error: Some(code),
            high_watermark: -1,
            log_start_offset: -1,
            last_stable_offset: -1,
            aborted: None,
            slice: None,
            diverging: None,
        }
    }

    /// Where the fetcher's readable data ends: the last stable offset for a read_committed
    /// consumer, the high watermark for others.
    fn end(&self, r: &ReadAt) -> i64 {
        match r.reader() {
            partition::Reader::Committed => self.last_stable_offset,
            _ => self.high_watermark,
        }
    }
}

/// How the owners' parts of one fetch may wait: until `deadline`, and each also until another
/// owner signals its channel (indexed by shard id) on returning with news, so that the fetch
/// sees every partition again at once, as Kafka's delayed fetch completes. Made fresh for each
/// round of a fetch.
#[derive(Clone)]
pub struct Wait {
    pub deadline: Instant,
    channels: Arc<Vec<(flume::Sender<()>, flume::Receiver<()>)>>,
}

impl Wait {
    pub fn new(deadline: Instant, shard_count: usize) -> Wait {
        Wait {
            deadline,
            channels: Arc::new((0..shard_count).map(|_| flume::bounded(1)).collect()),
        }
    }

    /// Tells every other owner's part to stop waiting and read again.
    fn wake_others(&self, me: usize) {
        for (i, (tx, _)) in self.channels.iter().enumerate() {
            if i != me {
                let _ = tx.try_send(());
            }
        }
    }
}

impl Partitions {
    /// A partition this shard owns and leads, or NOT_LEADER_OR_FOLLOWER (the answer Kafka
    /// gives for a partition a broker does not lead).
    pub fn leader(&self, topic: &str, partition: i32) -> Result<Rc<Partition>, ErrorCode> {
        self.get(topic, partition)
            .filter(|p| p.is_leader())
            .ok_or(ErrorCode::NotLeaderOrFollower)
    }

    /// ListOffsets on the owner: (offset, timestamp), -1s when there is no such record. A
    /// `read_committed` lookup sees only what such a consumer may read: below the last stable
    /// offset rather than the high watermark (Kafka's `lastFetchableOffset`).
    pub async fn offsets(
        &self,
        topic: &str,
        partition: i32,
        query: OffsetQuery,
        read_committed: bool,
    ) -> Result<(i64, i64), ErrorCode> {
        let p = self.leader(topic, partition)?;
        let log = &p.log;
        let hwm = p.high_watermark();
        let fetchable = match read_committed {
            true => log.last_stable_offset(hwm),
            false => hwm,
        };
        Ok(match query {
            OffsetQuery::Earliest => (log.log_start_offset().0, -1),
            // A leader whose high watermark has not reached its epoch start yet does not know
            // the committed end: Kafka answers OFFSET_NOT_AVAILABLE (KIP-207) and clients retry.
            OffsetQuery::Latest if hwm < p.epoch_start() => {
                return Err(ErrorCode::OffsetNotAvailable)
            }
            OffsetQuery::Latest => (fetchable, -1),
            // Only what consumers may read: below the high watermark, as Kafka filters it.
            OffsetQuery::MaxTimestamp => log
                .max_timestamp()
                .filter(|(o, _)| o.0 < fetchable)
                .map_or((-1, -1), |(o, t)| (o.0, t)),
            OffsetQuery::Timestamp(t) => match log.offset_for_timestamp(t).await {
                Ok(found) => found
                    .filter(|(o, _)| o.0 < fetchable)
                    .map_or((-1, -1), |(o, t)| (o.0, t)),
                Err(e) => return Err(e.error_code()),
            },
        })
    }

    /// OffsetForLeaderEpoch on the owner: (epoch, end offset), -1s for an unknown epoch.
    pub fn end_offset_for_epoch(
        &self,
        topic: &str,
        partition: i32,
        epoch: i32,
    ) -> Result<(i32, i64), ErrorCode> {
        let p = self.leader(topic, partition)?;
        Ok(p.log
            .end_offset_for_epoch(epoch)
            .map_or((-1, -1), |(e, o)| (e, o.0)))
    }

    /// DeleteRecords on the owner: moves `log_start_offset` up to `before` (deleting the
    /// segments wholly below it) and returns the new low watermark.
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: i32,
        before: i64,
    ) -> Result<i64, ErrorCode> {
        let p = self.leader(topic, partition)?;
        let start = p.log.delete_records(Offset(before)).await;
        start.map(|o| o.0).map_err(|e| e.error_code())
    }

    /// WriteTxnMarkers on the owner: the marker appended as the leader, and on a replicated
    /// partition answered once the ISR has it (Kafka appends markers with acks=all), or
    /// REQUEST_TIMED_OUT at `deadline`.
    pub async fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        marker: TxnMarker,
        deadline: Instant,
    ) -> Result<(), ErrorCode> {
        let p = self.leader(topic, partition)?;
        let info = p
            .append_marker(&marker, crate::log::Durability::PageCache)
            .await
            .map_err(|e| e.error_code())?;
        p.wait_replicated(info.last_offset.0, deadline).await
    }

    /// Reads every [`ReadAt`], or, when none has news (see `ReadAt::wake_after`), no error
    /// occurred, and `wait` allows, registers on the partitions and waits until data lands,
    /// another owner of the same fetch has news, or the deadline; then reads again. Either way
    /// it answers once, so a fetch that waits costs one cross-shard round trip per owner per
    /// wake-up. `me` is this shard's id.
    pub async fn read_or_watch(
        &self,
        reads: &[ReadAt],
        wait: Option<(usize, Wait)>,
    ) -> Vec<PartitionRead> {
        let mut out = self.read_all(reads).await;
        let Some((me, wait)) = wait else {
            return out;
        };
        if !has_news(reads, &out) && Instant::now() < wait.deadline {
            // The partitions signal a channel of this wait's own; its receive also ends when
            // every partition has dropped its end (all of them removed), as a parked fetch
            // always did. The other owners of the fetch signal `woken`.
            let (tx, data) = flume::bounded::<()>(1);
            for r in reads {
                if let Some(p) = self.get(&r.topic, r.partition) {
                    p.watch(r.wake_after, r.reader(), tx.clone());
                }
            }
            drop(tx);
            let woken = &wait.channels[me].1;
            let timeout = wait.deadline.saturating_duration_since(Instant::now());
            futures_lite::future::or(
                futures_lite::future::or(
                    async {
                        let _ = crate::router::recv_cross_shard(&data).await;
                    },
                    async {
                        let _ = crate::router::recv_cross_shard(woken).await;
                    },
                ),
                glommio::timer::sleep(timeout),
            )
            .await;
            out = self.read_all(reads).await;
        }
        if has_news(reads, &out) {
            wait.wake_others(me);
        }
        out
    }

    async fn read_all(&self, reads: &[ReadAt]) -> Vec<PartitionRead> {
        let mut out = Vec::with_capacity(reads.len());
        for r in reads {
            out.push(self.read_one(r).await);
        }
        out
    }

    /// Never waits for the disk on the shard's thread (`read_async`). A consumer reads up to
    /// the high watermark; a follower up to the written end, and tells the leader where it is.
    async fn read_one(&self, r: &ReadAt) -> PartitionRead {
        let p = match self.leader(&r.topic, r.partition) {
            Ok(p) => p,
            Err(code) => return PartitionRead::failed(code),
        };
        let hwm = p.high_watermark();
        let lso = p.log.last_stable_offset(hwm);
        let answer = |slice: Option<ReadSlice>, diverging| PartitionRead {
            error: None,
            high_watermark: hwm,
            log_start_offset: slice
                .as_ref()
                .map_or(p.log.log_start_offset().0, |s: &ReadSlice| {
                    s.log_start_offset.0
                }),
            last_stable_offset: lso,
            aborted: None,
            slice: slice.filter(|s| s.len > 0),
            diverging,
        };
        // KIP-320: a fetcher whose last batch's epoch ended earlier here (or is unknown here)
        // has a log that diverged: it is told where, with no records, and a follower's position
        // does not count (Kafka's `fetchRecords`).
        if r.last_fetched_epoch >= 0 {
            let found = p.log.end_offset_for_epoch(r.last_fetched_epoch);
            if let Some((epoch, end)) =
                found.filter(|&(e, end)| e < r.last_fetched_epoch || end.0 < r.offset)
            {
                return answer(None, Some((epoch, end.0)));
            }
        }
        // Only another replica of the partition reads past the high watermark.
        let replica = r.replica.filter(|&id| p.has_follower(id));
        // A follower's position counts only when it is one this log has (Kafka records it
        // after a successful read); an offset past the end is answered out of range.
        let valid = (p.log.log_start_offset().0..=p.log.log_end_offset().0).contains(&r.offset);
        if let Some(id) = replica.filter(|_| valid) {
            if let Some(isr) = p.follower_fetched(id, r.offset, self.replica_lag_max()) {
                self.propose_isr(r.topic.clone(), r.partition, isr);
            }
        }
        // What a throttled partition's followers get counts against this shard's leader budget;
        // while it is spent, one that is not in sync (a reassignment's new replica) gets no
        // records, as Kafka's `shouldLeaderThrottle`. Its fetch still told where it is.
        let throttled = replica.is_some() && p.throttled.get().leader;
        let held = throttled && !replica.is_some_and(|id| p.in_sync(id));
        if held && self.leader_quota.exceeded(Instant::now()) {
            return answer(None, None);
        }
        let committed = r.read_committed && replica.is_none();
        let read = if replica.is_some() || (p.alone() && !committed) {
            p.log.read_async(Offset(r.offset), r.max_bytes).await
        } else {
            // A consumer reads below the high watermark, a read_committed one below the last
            // stable offset; both are batch boundaries.
            let upto = if committed { lso } else { hwm };
            p.log
                .read_async_upto(Offset(r.offset), r.max_bytes, Offset(upto))
                .await
        };
        if let (true, Ok(slice)) = (throttled, &read) {
            self.leader_quota.record(slice.len as usize, Instant::now());
        }
        match read {
            Ok(slice) => PartitionRead {
                aborted: committed.then(|| p.log.aborted_between(r.offset, lso)),
                ..answer(Some(slice), None)
            },
            Err(e) => PartitionRead {
                error: Some(e.error_code()),
                ..answer(None, None)
            },
        }
    }
}

/// Whether a read found something the fetch has not seen: an error, or data past `wake_after`.
fn has_news(reads: &[ReadAt], out: &[PartitionRead]) -> bool {
    reads.iter().zip(out).any(|(r, o)| {
        o.error.is_some()
            || o.diverging.is_some()
            || o.end(r) > r.wake_after
            || (r.replica.is_some() && o.slice.is_some())
    })
}

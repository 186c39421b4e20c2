//! The partitions one shard owns, and the hook that tells other services when they come and go.
//!
//! [`Partitions`] is the owner shard's map of open partitions. It knows nothing of what is stored
//! in them: a service that keeps state derived from some partitions (the group coordinator
//! replays `__consumer_offsets`; a transaction coordinator will replay its own log) registers a
//! [`PartitionListener`] and is told when each partition is loaded (opened, or reopened after a
//! write failure) and unloaded (its topic deleted). The core thus never calls into the services
//! built on it (`tests/module_graph.rs` keeps it that way).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use crate::log::PartitionLog;

/// The leader epoch of every partition: a single node never changes leader.
pub const LEADER_EPOCH: i32 = 0;

/// Checks a client's `current_leader_epoch` (-1: not given) against ours (KIP-320): newer than
/// ours is UNKNOWN_LEADER_EPOCH, older is FENCED_LEADER_EPOCH.
pub fn check_leader_epoch(current: i32) -> Option<crate::error::ErrorCode> {
    use crate::error::ErrorCode;
    match current {
        c if c > LEADER_EPOCH => Some(ErrorCode::UnknownLeaderEpoch),
        c if c >= 0 && c != LEADER_EPOCH => Some(ErrorCode::FencedLeaderEpoch),
        _ => None,
    }
}

/// Identifies a partition on its owner shard.
pub type PartitionKey = (Arc<str>, i32);

/// One topic's partitions on this shard, by index.
type TopicPartitions = HashMap<i32, Rc<Partition>>;

/// A partition owned by this shard: its log and the fetches parked on it.
///
/// Created when a metadata image that names it reaches the owner shard; dropped (and its
/// directory removed) when an image without its topic arrives.
pub struct Partition {
    pub topic_id: uuid::Uuid,
    pub log: PartitionLog,
    /// Parked fetches: each fires once the high watermark passes its offset.
    waiters: RefCell<Vec<(i64, flume::Sender<()>)>>,
}

impl Partition {
    pub fn new(topic_id: uuid::Uuid, log: PartitionLog) -> Partition {
        Partition {
            topic_id,
            log,
            waiters: RefCell::new(Vec::new()),
        }
    }

    /// Signals `tx` once the high watermark exceeds `offset`. A parked fetch hands the same
    /// sender to every partition it waits on and drops the receiver at its deadline, which
    /// lets the next [`Partition::notify`] or `watch` forget the stale entry.
    pub fn watch(&self, offset: i64, tx: flume::Sender<()>) {
        if self.log.high_watermark().0 > offset {
            let _ = tx.try_send(());
            return;
        }
        let mut w = self.waiters.borrow_mut();
        w.retain(|(_, tx)| !tx.is_disconnected());
        w.push((offset, tx));
    }

    /// Wakes the parked fetches that new data satisfies.
    pub fn notify(&self) {
        let hw = self.log.high_watermark().0;
        self.waiters.borrow_mut().retain(|(offset, tx)| {
            if hw > *offset {
                let _ = tx.try_send(());
                false
            } else {
                !tx.is_disconnected()
            }
        });
    }

    /// Releases parked fetches when the partition is removed or replaced.
    pub fn notify_gone(&self) {
        self.waiters.borrow_mut().clear();
    }
}

/// A future a listener returns; it runs on the owner shard.
pub type LocalFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// A service told when partitions of this shard are loaded and unloaded (see the module docs).
pub trait PartitionListener {
    /// `partition` of `topic` was opened on this shard (at start-up, when its topic was created
    /// or grown, or when it was reopened after a write failure). Awaited before the partition
    /// counts as loaded: the metadata image that opened it is installed only after every
    /// listener has finished, as the replay of `__consumer_offsets` needs.
    fn loaded<'a>(
        &'a self,
        topic: &'a str,
        index: i32,
        partition: &'a Rc<Partition>,
    ) -> LocalFuture<'a>;

    /// `partition` of `topic` was removed from this shard (its topic was deleted).
    fn unloaded(&self, topic: &str, index: i32);
}

/// The partitions this shard owns. Lives in its `Shard` for the life of the process; other
/// shards reach it only through `Router::invoke_on`.
#[derive(Default)]
pub struct Partitions {
    /// Topic → partition index → partition. Nested so that a lookup by `&str` allocates
    /// nothing: every produce and fetch does one per partition.
    map: RefCell<HashMap<Arc<str>, TopicPartitions>>,
    /// Weak, so that a listener may hold this service without a reference cycle.
    listeners: RefCell<Vec<Weak<dyn PartitionListener>>>,
}

impl Partitions {
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
        for l in self.listeners() {
            l.loaded(&topic, index, &partition).await;
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
        for l in self.listeners() {
            l.unloaded(&key.0, key.1);
        }
        Some(removed)
    }
}

//! The transaction coordinator (KIP-98): transactional ids, their producer ids and epochs,
//! and the transactions they run, as Kafka's `TransactionCoordinator` keeps them.
//!
//! Each transactional id lives on the shard that owns its partition of `__transaction_state`
//! ([`log::partition_for`], Kafka's formula, then `shard_for`), as a group lives with its
//! partition of `__consumer_offsets`. Every state change is written there (Kafka's record
//! layout, fsynced and replicated) before it is answered, and the partition is replayed when
//! it is loaded; a transaction found half-ended (PrepareCommit/PrepareAbort) is finished then.
//!
//! A transaction: InitProducerId gives the id its producer id and a new epoch (fencing the
//! previous one, and aborting what it left open); AddPartitionsToTxn and AddOffsetsToTxn make
//! it Ongoing; EndTxn writes PrepareCommit or PrepareAbort, is answered, and the markers go to
//! every partition of the transaction (`Partitions::write_marker`, on each owner shard), after
//! which the state is CompleteCommit or CompleteAbort. One that outlives its
//! `transaction.timeout.ms` is aborted with a bumped epoch, which fences its producer.
//!
//! This module is the coordinator's state and its records; the flows that also need the
//! router, the metadata controller and other shards' partitions (markers, producer ids) are
//! `api::txn_flow`, so that `shard`, which holds this service, is not imported back.
//!
//! In a cluster the coordinator is the leader of the id's `__transaction_state` partition
//! (replicated like any topic, `transaction.state.log.replication.factor`); its state follows
//! leadership through the partition hook, and markers for partitions other brokers lead go to
//! them in WriteTxnMarkers requests.

pub mod log;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::error::ErrorCode;
use crate::log::{Durability, Offset};
use crate::partitions::{LocalFuture, Partition, PartitionListener, Partitions};
use log::TxnRecord;

/// The internal topic holding the transactional ids' state.
pub const TXN_STATE_TOPIC: &str = "__transaction_state";

/// How long a state write waits for the in-sync replicas (Kafka's
/// `transaction.state.log` appends use the request timeout).
const STATE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// One transactional id on its coordinator.
#[derive(Clone, Debug)]
pub(crate) struct Txn {
    pub(crate) record: TxnRecord,
    /// A state write or a marker round is in flight: other requests for the id get
    /// CONCURRENT_TRANSACTIONS, which clients retry (Kafka's `pendingState`).
    pub(crate) busy: bool,
}

/// The transactional ids one shard coordinates: a service of its shard (`Shard::txns`),
/// listening to that shard's partitions to replay each `__transaction_state` partition it
/// loads.
pub struct Coordinator {
    pub(crate) txns: RefCell<HashMap<String, Txn>>,
    /// The `__transaction_state` partitions this shard leads and has replayed.
    ready: RefCell<std::collections::HashSet<i32>>,
    partitions: Rc<Partitions>,
    partition_count: i32,
}

impl Coordinator {
    pub fn new(partitions: Rc<Partitions>, partition_count: i32) -> Rc<Coordinator> {
        let coord = Rc::new(Coordinator {
            txns: RefCell::new(HashMap::new()),
            ready: RefCell::new(std::collections::HashSet::new()),
            partitions: partitions.clone(),
            partition_count,
        });
        let weak: Weak<Coordinator> = Rc::downgrade(&coord);
        partitions.listen(weak);
        coord
    }

    /// The `__transaction_state` partition of `id`.
    pub fn partition_for(&self, id: &str) -> i32 {
        log::partition_for(id, self.partition_count)
    }

    /// COORDINATOR_LOAD_IN_PROGRESS while `id`'s state partition is not replayed here (a new
    /// leadership's image can reach a request before the replay ends); clients retry.
    pub(crate) fn check_loaded(&self, id: &str) -> Result<(), ErrorCode> {
        match self.ready.borrow().contains(&self.partition_for(id)) {
            true => Ok(()),
            false => Err(ErrorCode::CoordinatorLoadInProgress),
        }
    }

    fn forget_partition(&self, index: i32) {
        self.ready.borrow_mut().remove(&index);
        let n = self.partition_count;
        self.txns
            .borrow_mut()
            .retain(|id, _| log::partition_for(id, n) != index);
    }

    /// Marks `id` busy if it may change now; the checks Kafka makes of a request naming a
    /// producer id and epoch.
    pub(crate) fn claim(&self, id: &str, pid: i64, epoch: i16) -> Result<TxnRecord, ErrorCode> {
        let mut txns = self.txns.borrow_mut();
        let t = txns
            .get_mut(id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        if t.record.producer_id != pid {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if t.record.producer_epoch != epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        if t.busy {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        t.busy = true;
        Ok(t.record.clone())
    }

    /// Installs `record` for `id` (after its write) and releases the id.
    pub(crate) fn settle(&self, id: &str, record: Option<TxnRecord>) {
        let mut txns = self.txns.borrow_mut();
        match record {
            Some(record) => {
                txns.insert(
                    id.to_string(),
                    Txn {
                        record,
                        busy: false,
                    },
                );
            }
            None => {
                if let Some(t) = txns.get_mut(id) {
                    t.busy = false;
                }
            }
        }
    }

    /// Writes `record` as `id`'s state, fsynced and replicated.
    pub(crate) async fn persist(&self, id: &str, record: &TxnRecord) -> Result<(), ErrorCode> {
        self.write(id, Some(log::encode_value(record))).await
    }

    /// Forgets `id` (`transactional.id.expiration.ms`): a tombstone in its partition, which
    /// compaction removes in time, then the id leaves the map. The id must be claimed.
    pub(crate) async fn expire(&self, id: &str) -> Result<(), ErrorCode> {
        self.write(id, None).await?;
        self.txns.borrow_mut().remove(id);
        Ok(())
    }

    /// Writes `id`'s value (a tombstone for `None`), fsynced and replicated.
    async fn write(&self, id: &str, value: Option<bytes::Bytes>) -> Result<(), ErrorCode> {
        let p = self
            .partitions
            .leader(TXN_STATE_TOPIC, self.partition_for(id))
            .map_err(|_| ErrorCode::NotCoordinator)?;
        let batch =
            crate::group::store::batch(vec![(log::encode_key(id), value)], crate::util::now_ms())
                .map_err(|_| ErrorCode::UnknownServerError)?;
        let info = p.append(&batch, Durability::Fsync).await.map_err(|e| {
            warn!(transactional_id = id, "writing to {TXN_STATE_TOPIC}: {e}");
            ErrorCode::CoordinatorNotAvailable
        })?;
        let deadline = Instant::now() + STATE_WRITE_TIMEOUT;
        p.wait_replicated(info.last_offset.0, deadline)
            .await
            .map_err(|code| match code {
                ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
                _ => ErrorCode::CoordinatorNotAvailable,
            })
    }

    /// A transactional id's state, for DescribeTransactions and tests.
    pub fn describe(&self, id: &str) -> Option<TxnRecord> {
        self.txns.borrow().get(id).map(|t| t.record.clone())
    }

    /// Every transactional id here, for ListTransactions.
    pub fn list(&self) -> Vec<(String, TxnRecord)> {
        self.txns
            .borrow()
            .iter()
            .map(|(id, t)| (id.clone(), t.record.clone()))
            .collect()
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
            if topic == TXN_STATE_TOPIC {
                self.forget_partition(index);
                self.replay(index, partition).await;
                self.ready.borrow_mut().insert(index);
            }
        })
    }

    fn unloaded(&self, topic: &str, index: i32) {
        if topic == TXN_STATE_TOPIC {
            self.forget_partition(index);
        }
    }
}

impl Coordinator {
    /// Replays one `__transaction_state` partition: the last value of each key wins, a
    /// tombstone removes it. Half-ended transactions are finished by the next sweep.
    async fn replay(&self, index: i32, p: &Partition) {
        let mut found: HashMap<String, Option<TxnRecord>> = HashMap::new();
        let mut offset = p.log.log_start_offset();
        while offset < p.log.high_watermark() {
            let records = match crate::group::offsets::read_records(p, offset).await {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    warn!("replaying {TXN_STATE_TOPIC}-{index}: {e}");
                    break;
                }
            };
            for r in records {
                offset = Offset(offset.0.max(r.offset + 1));
                let Some(id) = r.key.as_deref().and_then(log::decode_key) else {
                    continue;
                };
                let value = r.value.as_deref().and_then(log::decode_value);
                found.insert(id, value);
            }
            glommio::yield_if_needed().await;
        }
        let mut txns = self.txns.borrow_mut();
        let mut n = 0;
        for (id, record) in found {
            if let Some(record) = record {
                txns.insert(
                    id,
                    Txn {
                        record,
                        busy: false,
                    },
                );
                n += 1;
            }
        }
        if n > 0 {
            info!(
                partition = index,
                transactional_ids = n,
                "replayed transaction state"
            );
        }
    }
}

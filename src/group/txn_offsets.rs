//! Transactional offset commits (TxnOffsetCommit, KIP-98; KIP-447's group fencing): a
//! producer commits a consumer group's offsets inside its transaction. They are written to
//! the group's `__consumer_offsets` partition as a transactional batch of that producer and
//! held aside; the transaction's marker on that partition (written by the transaction
//! coordinator, `txn::write_marker`) makes them the group's committed offsets, or drops them.
//! A replay does the same from the log: transactional offset records wait for their marker.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tracing::warn;

use super::offsets::{commit_allowed, prepare, CommitArgs, Prepared, OFFSET_COMMIT_TIMEOUT};
use super::state::Group;
use super::store::{self, Committed, OFFSETS_TOPIC};
use super::Coordinator;
use crate::error::ErrorCode;
use crate::log::Durability;
use crate::metadata::MetadataImage;

/// An offset a transaction committed, waiting for the transaction's end.
#[derive(Clone, Debug)]
pub struct HeldOffset {
    group: String,
    partition: (String, i32),
    committed: Committed,
}

impl HeldOffset {
    pub(super) fn group(&self) -> &str {
        &self.group
    }
}

impl Coordinator {
    /// Holds `c` for `group` until producer `pid`'s transaction ends.
    pub(super) fn hold_txn_offset(
        &self,
        pid: i64,
        group: String,
        partition: (String, i32),
        committed: Committed,
    ) {
        self.held_txn_offsets
            .borrow_mut()
            .entry(pid)
            .or_default()
            .push(HeldOffset {
                group,
                partition,
                committed,
            });
    }

    /// Producer `pid`'s transaction ended on offsets partition `partition`: the offsets it
    /// committed to that partition's groups become theirs (`commit`) or are dropped.
    pub fn end_txn_offsets(&self, partition: i32, pid: i64, commit: bool) {
        let mut held = self.held_txn_offsets.borrow_mut();
        let Some(all) = held.get_mut(&pid) else {
            return;
        };
        let (ended, kept): (Vec<_>, Vec<_>) = std::mem::take(all)
            .into_iter()
            .partition(|h| store::partition_for(&h.group) == partition);
        if kept.is_empty() {
            held.remove(&pid);
        } else {
            *all = kept;
        }
        if !commit {
            return;
        }
        let mut groups = self.groups.borrow_mut();
        for h in ended {
            groups
                .entry(h.group.clone())
                .or_insert_with(|| Group::new(&h.group))
                .offsets
                .insert(h.partition, h.committed);
        }
    }

    /// Whether a transaction holds an offset of `group` for `partition` (OffsetFetch's
    /// `require_stable` answers UNSTABLE_OFFSET_COMMIT then).
    pub fn has_held_offset(&self, group: &str, partition: &(String, i32)) -> bool {
        self.held_txn_offsets
            .borrow()
            .values()
            .flatten()
            .any(|h| h.group == group && h.partition == *partition)
    }
}

/// TxnOffsetCommit on the coordinating shard: one error (or none) per partition, in order.
/// A commit that names a member and generation (v3+, KIP-447) is checked as an OffsetCommit
/// is, so a zombie of an older generation is fenced by the group; one without them is taken
/// as Kafka takes it, whatever the group's members.
pub async fn commit(
    coord: Rc<Coordinator>,
    image: Arc<MetadataImage>,
    a: CommitArgs,
    producer: (i64, i16),
) -> Vec<Option<ErrorCode>> {
    let standalone = a.generation < 0 && a.member_id.is_empty();
    let refused = match standalone {
        true => None,
        false => {
            let mut groups = coord.groups.borrow_mut();
            commit_allowed(groups.get_mut(&a.group_id), &a)
        }
    };
    if let Some(code) = refused {
        return vec![Some(code); a.partitions.len()];
    }
    let Prepared {
        results,
        records,
        accepted,
    } = prepare(&image, &a);
    if records.is_empty() {
        return results;
    }
    if let Err(code) = append(&coord, &a.group_id, records, producer).await {
        return vec![Some(code); a.partitions.len()];
    }
    for (partition, c) in accepted {
        coord.hold_txn_offset(producer.0, a.group_id.clone(), partition, c);
    }
    results
}

/// Appends the transactional offset records, fsynced and replicated as an OffsetCommit's. A
/// fenced producer epoch (the partition's producer state knows a newer one) is
/// PRODUCER_FENCED.
async fn append(
    coord: &Coordinator,
    group_id: &str,
    records: Vec<(bytes::Bytes, Option<bytes::Bytes>)>,
    (pid, epoch): (i64, i16),
) -> Result<(), ErrorCode> {
    let p = coord
        .partitions
        .leader(OFFSETS_TOPIC, store::partition_for(group_id))
        .map_err(|_| ErrorCode::NotCoordinator)?;
    let batch = store::txn_batch(records, crate::util::now_ms(), pid, epoch)
        .map_err(|_| ErrorCode::UnknownServerError)?;
    let info = p
        .append_built(&batch, Durability::Fsync)
        .await
        .map_err(|e| match e.error_code() {
            ErrorCode::InvalidProducerEpoch => ErrorCode::ProducerFenced,
            _ => {
                warn!(group = group_id, "writing to {OFFSETS_TOPIC}: {e}");
                ErrorCode::CoordinatorNotAvailable
            }
        })?;
    let deadline = Instant::now() + OFFSET_COMMIT_TIMEOUT;
    p.wait_replicated(info.last_offset.0, deadline)
        .await
        .map_err(|code| match code {
            ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
            _ => ErrorCode::CoordinatorNotAvailable,
        })
}

//! Retention (`retention.ms`, `retention.bytes`) and DeleteRecords.
//!
//! Only whole closed segments below the high watermark are deleted; the active segment never
//! is. Deleting unlinks the files: a reader that already holds the segment's `Arc<File>` keeps
//! reading the unlinked file until it drops it.

use std::rc::Rc;

use super::files::sync_dir_off_shard;
use super::partition::{PartitionLog, LEADER_EPOCH_CHECKPOINT, LOG_START_OFFSET};
use super::segment::Segment;
use super::{LogError, Offset};

impl PartitionLog {
    /// Deletes the oldest closed segments that are past `retention.ms`, over `retention.bytes`,
    /// or wholly below the log start offset. Returns how many were deleted. Time and size apply
    /// only under `cleanup.policy=delete` (alone or with `compact`); a `compact`-only topic loses
    /// segments only below its log start offset (DeleteRecords), as in Kafka.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let cfg = self.config();
        let policy_deletes = cfg.cleanup_policy.delete;
        let mut total = self.size_bytes();
        self.delete_oldest(|seg, below_start| {
            let (size, max_ts) = {
                let s = seg.st.borrow();
                (s.size, s.max_timestamp)
            };
            let by_time = policy_deletes
                && cfg.retention_ms >= 0
                && max_ts >= 0
                && now_ms.saturating_sub(max_ts) > cfg.retention_ms;
            let by_size = policy_deletes
                && cfg.retention_bytes >= 0
                && total.saturating_sub(size) >= cfg.retention_bytes as u64;
            let delete = below_start || by_time || by_size;
            if delete {
                total -= size;
            }
            delete
        })
        .await
    }

    /// DeleteRecords: moves the log start offset to `before` (`-1` means the high watermark) and
    /// deletes the segments wholly below it. Returns the new log start offset.
    pub async fn delete_records(&self, before: Offset) -> Result<Offset, LogError> {
        let start = {
            let mut st = self.st.borrow_mut();
            let before = if before.0 == -1 { st.hwm } else { before };
            if before > st.hwm || before.0 < 0 {
                return Err(LogError::OffsetOutOfRange {
                    requested: before,
                    log_start: st.log_start,
                    log_end: st.hwm,
                });
            }
            if before > st.log_start {
                st.log_start = before;
                st.epochs.truncate_from_start(before);
                st.check();
            }
            st.log_start
        };
        self.write_start_checkpoints().await?;
        self.delete_oldest(|_, below_start| below_start).await?;
        Ok(start)
    }

    /// Deletes closed segments from the oldest while `pred(segment, wholly_below_log_start)`
    /// holds, stopping at the first that does not, at the active segment, or at the first
    /// segment that reaches the high watermark.
    async fn delete_oldest(
        &self,
        mut pred: impl FnMut(&Segment, bool) -> bool,
    ) -> Result<usize, LogError> {
        let dir_permit = self.dir_lock.acquire_permit(1).await?;
        let victims: Vec<Rc<Segment>> = {
            let mut st = self.st.borrow_mut();
            let mut n = 0;
            while n + 1 < st.segments.len() {
                let next_base = st.segments[n + 1].base;
                if next_base > st.hwm || !pred(&st.segments[n], next_base <= st.log_start) {
                    break;
                }
                n += 1;
            }
            let victims: Vec<_> = st.segments.drain(..n).collect();
            if n > 0 {
                let first = st.segments[0].base;
                st.log_start = st.log_start.max(first);
                let start = st.log_start;
                st.epochs.truncate_from_start(start);
                st.check();
            }
            victims
        };
        if victims.is_empty() {
            return Ok(0);
        }
        for seg in &victims {
            seg.delete_files()?;
        }
        sync_dir_off_shard(self.dir()).await?;
        drop(dir_permit);
        self.write_start_checkpoints().await?;
        Ok(victims.len())
    }

    /// Persists the log start offset and the leader-epoch cache it may have trimmed.
    async fn write_start_checkpoints(&self) -> Result<(), LogError> {
        let (start, epochs) = {
            let st = self.st.borrow();
            (st.log_start, st.epochs.encode())
        };
        self.write_checkpoint(LOG_START_OFFSET, start.0.to_string().into_bytes())
            .await?;
        self.write_checkpoint(LEADER_EPOCH_CHECKPOINT, epochs).await
    }
}

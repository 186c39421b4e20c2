//! A follower's appends: the batches of a leader's Fetch response copied verbatim.
//!
//! A follower's log must be the leader's, byte for byte, so that offsets, leader epochs and
//! producer fields agree when it becomes leader and so that a consumer reads the same bytes from
//! either. So nothing is assigned or rewritten: each batch keeps its base offset, its
//! `partitionLeaderEpoch`, its timestamps (LogAppendTime included) and its producer fields. The
//! leader validated the records; a follower checks only what it needs to store the batches
//! safely and to recover them after a crash, as Kafka's `appendAsFollower` does: magic 2, the
//! CRC, a length a segment can hold, and offsets that grow from the log end (compaction leaves
//! gaps, which are kept). The checks pass for every batch before anything is reserved, so a
//! refused call writes nothing.
//!
//! From there a follower's append is a leader's (`append.rs`): the same reservation before the
//! first `.await`, segment roll, staged and coalesced writes, index entries, producer state and
//! epoch cache, and the `flush.messages`/`flush.ms` policy of a page-cache acknowledgement.

use std::rc::Rc;

use super::append::stage;
use super::batch::{self, BatchHeader};
use super::partition::{PartitionLog, Pending, LEADER_EPOCH_CHECKPOINT};
use super::recovery::exact_max;
use super::segment::Segment;
use super::{now_ms, LogConfig, LogError, Offset};

/// What [`PartitionLog::append_replica`] appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaAppend {
    /// The log end offset afterwards: the last appended batch's last offset + 1.
    pub log_end_offset: Offset,
    /// Whole batches appended (a trailing partial batch is not counted).
    pub batches: usize,
    /// Bytes appended: the whole batches, without the trailing partial one.
    pub bytes: usize,
}

/// The in-memory side of a follower's append, made by [`PartitionLog::reserve_replica`].
struct ReplicaWrite {
    /// Reservation number of the last batch.
    last_seq: u64,
    /// Segments that were active before a roll, to finish once their writes are done.
    rolled: Vec<Rc<Segment>>,
    epoch_changed: bool,
    appended: ReplicaAppend,
    /// A roll failed after some batches were reserved: they are written, then this is reported.
    error: Option<LogError>,
}

/// Checks the batch at the start of `rest` (`at` bytes into the response), whose predecessor
/// in the same response ended at offset `prev_end`. `None` is a partial batch, which ends the
/// walk: a fetch response may end inside one, and its clients ignore it. Sans-io.
pub(crate) fn check_replica_batch(
    rest: &[u8],
    at: usize,
    prev_end: Option<i64>,
    len_max: u64,
) -> Result<Option<BatchHeader>, LogError> {
    let Some(batch_length) = batch::be_i32(rest, batch::BATCH_LENGTH) else {
        return Ok(None);
    };
    if batch_length < (batch::HEADER_LEN - batch::LOG_OVERHEAD) as i32 {
        return Err(LogError::CorruptMessage(format!(
            "batchLength {batch_length} at byte {at} is shorter than a batch header"
        )));
    }
    let len = batch::LOG_OVERHEAD + batch_length as usize;
    // Also for a partial batch, as Kafka's reader checks it: a batch no segment can hold would
    // otherwise be fetched and ignored for ever.
    if len as u64 > len_max {
        return Err(LogError::MessageTooLarge {
            size: len,
            max: u32::try_from(len_max).unwrap_or(u32::MAX),
        });
    }
    let Some(bytes) = rest.get(..len) else {
        return Ok(None);
    };
    let corrupt = |what: String| LogError::CorruptMessage(format!("batch at byte {at}: {what}"));
    let h = batch::parse_header(bytes).ok_or_else(|| corrupt("no header".into()))?;
    if h.magic != batch::MAGIC_V2 {
        return Err(corrupt(format!("magic {} is not supported", h.magic)));
    }
    let crc = batch::compute_crc(bytes);
    if crc != h.crc {
        return Err(corrupt(format!(
            "CRC mismatch: header {:#010x}, computed {crc:#010x}",
            h.crc
        )));
    }
    // What recovery requires of a stored batch (`scan_segment`), or it would cut the log here.
    if h.base_offset < 0 || h.last_offset_delta < 0 || h.last_offset() == i64::MAX {
        return Err(corrupt(format!(
            "offsets {}..+{} are out of range",
            h.base_offset, h.last_offset_delta
        )));
    }
    if let Some(end) = prev_end {
        if h.base_offset < end {
            return Err(corrupt(format!(
                "base offset {} does not follow the previous batch, which ends at {end}",
                h.base_offset
            )));
        }
        gap_fits(&h, end)?;
    }
    Ok(Some(h))
}

/// A batch lands in a segment based at most at the end of the batch before it (segments are
/// contiguous and roll at the log end), so its last offset must be within u32 of that end for
/// the segment's relative offsets. A compacted leader's gaps never come near: the leader's own
/// segment holding the batch starts no later than that end.
fn gap_fits(h: &BatchHeader, prev_end: i64) -> Result<(), LogError> {
    if h.last_offset() - prev_end > i64::from(u32::MAX) {
        return Err(LogError::InvalidRecord(format!(
            "batch at offset {} lies too far past offset {prev_end} for one segment",
            h.base_offset
        )));
    }
    Ok(())
}

impl PartitionLog {
    /// Appends a leader's batches verbatim (see the module docs): `records` is what a Fetch
    /// response carries for the partition, whole RecordBatch v2 batches back to back, possibly
    /// ending with a partial batch, which is ignored. Every whole batch is checked first (magic,
    /// CRC, length, base offset at or past the log end and growing); one that fails refuses the
    /// whole call and nothing is written. Returns once the batches are written (the high
    /// watermark covers them), flushed as page-cache appends are.
    ///
    /// An I/O error while rolling a segment may leave a prefix of the batches appended; the log
    /// end offset says how far, which is where the follower fetches from next.
    pub async fn append_replica(&self, records: &[u8]) -> Result<ReplicaAppend, LogError> {
        let cfg = self.config.borrow().clone();
        let mut batches = Vec::new();
        let (mut at, mut prev_end) = (0, None);
        while let Some(h) =
            check_replica_batch(&records[at..], at, prev_end, cfg.segment_bytes_effective())?
        {
            at += h.total_len();
            prev_end = Some(h.last_offset() + 1);
            batches.push(h);
            // A response carries up to a megabyte per partition: the CRCs take a while.
            glommio::yield_if_needed().await;
        }
        if batches.is_empty() {
            return Ok(ReplicaAppend {
                log_end_offset: self.log_end_offset(),
                batches: 0,
                bytes: 0,
            });
        }
        let now = now_ms();
        // Nothing awaits between the gate opening and the reservation, nor between the
        // reservation and the count that a truncation waits on.
        self.truncation_done().await;
        let w = self.reserve_replica(records, &batches, now, &cfg)?;
        let _in_flight = self.append_in_flight();
        self.write_staged(w.last_seq).await?;
        self.wait_written(Offset(w.appended.log_end_offset.0 - 1))
            .await?;
        for old in &w.rolled {
            self.finish_segment(old).await?;
        }
        if w.epoch_changed {
            let data = self.st.borrow().epochs.encode();
            self.write_checkpoint(LEADER_EPOCH_CHECKPOINT, data).await?;
        }
        if let Some(e) = w.error {
            return Err(e);
        }
        self.maybe_flush(now, &cfg).await?;
        Ok(w.appended)
    }

    /// Reserves every batch of `records` (checked, headers in `batches`) at its own offsets and
    /// updates all in-memory state as a leader's reservation does. Synchronous.
    fn reserve_replica(
        &self,
        records: &[u8],
        batches: &[BatchHeader],
        now: i64,
        cfg: &LogConfig,
    ) -> Result<ReplicaWrite, LogError> {
        let mut st = self.st.borrow_mut();
        if let Some(e) = st.failed_error() {
            return Err(e);
        }
        let first = &batches[0];
        if first.base_offset < st.leo.0 {
            return Err(LogError::OffsetOutOfRange {
                requested: Offset(first.base_offset),
                log_start: st.log_start,
                log_end: st.leo,
            });
        }
        gap_fits(first, st.leo.0)?;
        let mut w = ReplicaWrite {
            last_seq: 0,
            rolled: Vec::new(),
            epoch_changed: false,
            appended: ReplicaAppend {
                log_end_offset: st.leo,
                batches: 0,
                bytes: 0,
            },
            error: None,
        };
        for h in batches {
            let len = h.total_len();
            let bytes = &records[w.appended.bytes..w.appended.bytes + len];
            match self.maybe_roll(&mut st, len, h.last_offset(), now, cfg) {
                Ok(rolled) => w.rolled.extend(rolled),
                Err(e) if w.appended.batches == 0 => return Err(e),
                Err(e) => {
                    w.error = Some(e);
                    break;
                }
            }
            let seg = st.active().clone();
            let pos = seg.st.borrow().size;
            let seq = st.pending_head + st.pending.len() as u64;
            stage(&mut st, &seg, pos, seq, bytes);
            let raises_max = h.max_timestamp > seg.st.borrow().max_timestamp;
            let exact = if raises_max {
                exact_max(h, bytes)
            } else {
                None
            };
            seg.note_batch(h, pos, cfg.index_interval_bytes, exact);
            let base = Offset(h.base_offset);
            st.leo = Offset(h.last_offset() + 1);
            let s = &mut *st;
            super::txn::record_stored(&mut s.producers, &mut s.unreplicated, &seg, h, bytes);
            w.epoch_changed |= st.epochs.assign(h.partition_leader_epoch, base);
            st.unflushed_messages += u64::try_from(h.record_count).unwrap_or(0);
            let end = st.leo;
            st.pending.push_back(Pending {
                end,
                seg,
                end_pos: pos + len as u64,
                done: false,
            });
            w.last_seq = seq;
            w.appended.log_end_offset = end;
            w.appended.batches += 1;
            w.appended.bytes += len;
        }
        st.check();
        Ok(w)
    }
}

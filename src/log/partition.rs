//! [`PartitionLog`]: the segments of one partition, its watermarks and the read side.
//!
//! Appends and flushes are in `append.rs`, opening and crash recovery in `recovery.rs`,
//! retention and DeleteRecords in `retention.rs`, a follower's appends in `replica.rs` and
//! truncation in `truncate.rs`; they all work on the same [`State`].

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::sync::Semaphore;

use super::batch;
use super::epoch::LeaderEpochCache;
use super::files::{replace_durably, Event};
use super::producer::ProducerState;
use super::segment::{cold_at, Segment};
use super::{FilePos, LogConfig, LogError, Offset, ReadSlice};

/// File names inside a partition directory.
pub(crate) const CLEAN_SHUTDOWN: &str = "clean-shutdown";
pub(crate) const RECOVERY_POINT: &str = "recovery-point";
pub(crate) const LOG_START_OFFSET: &str = "log-start-offset";
pub(crate) const PRODUCER_SNAPSHOT: &str = "producer.snapshot";
pub(crate) const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// Warm-and-retry rounds a read may take before giving up. Each round brings in a chunk of the
/// segment, so a read needs one or two; running out means memory pressure evicts pages as fast
/// as they arrive, and the client gets a storage error to retry rather than a shard that spins.
const COLD_ROUNDS_MAX: u32 = 16;

/// What a page-cache-only lookup found: the range, or a cold page to bring in first.
enum Lookup {
    Done(ReadSlice),
    Cold(Rc<Segment>, u64),
}

fn thrashing() -> LogError {
    LogError::Io(std::io::Error::other(
        "segment pages are evicted faster than a read can bring them in",
    ))
}

/// An append whose bytes are reserved but not yet known to be written.
pub(crate) struct Pending {
    pub end: Offset,
    pub seg: Rc<Segment>,
    pub end_pos: u64,
    pub done: bool,
}

/// Everything mutable about a partition. Borrowed only between `.await`s.
pub(crate) struct State {
    /// Sorted by base offset; the last one is the active segment.
    pub segments: Vec<Rc<Segment>>,
    pub log_start: Offset,
    pub hwm: Offset,
    pub leo: Offset,
    /// Everything below is known to be fdatasynced.
    pub flushed: Offset,
    /// Reserved writes in offset order; `pending_head` numbers the front one.
    pub pending: VecDeque<Pending>,
    pub pending_head: u64,
    /// Reserved batches not yet handed to io_uring, as contiguous runs.
    pub staged: VecDeque<super::append::Staged>,
    /// A coalesced write is in flight.
    pub writing: bool,
    /// A group-commit fdatasync is in flight.
    pub flushing: bool,
    pub last_flush_ms: i64,
    pub unflushed_messages: u64,
    /// A segment was created since the directory was last fsynced.
    pub dir_dirty: bool,
    /// fdatasync rounds issued by group commit (for metrics and tests).
    pub flush_rounds: u64,
    pub producers: ProducerState,
    /// Ended transactions whose markers the high watermark has not passed (`txn.rs`).
    pub unreplicated: super::txn::Unreplicated,
    pub epochs: LeaderEpochCache,
    /// Set on the first write error (and by close): the log refuses further appends, as Kafka
    /// takes a failed log directory offline.
    pub failed: Option<String>,
    /// Appends between their reservation and their return; a truncation waits for none to be
    /// left (see `truncate.rs`).
    pub appends_in_flight: u64,
    /// A truncation is under way: appends wait before they reserve.
    pub truncating: bool,
    /// Truncations since open: a compaction pass planned before one does not install.
    pub truncations: u64,
}

impl State {
    /// Asserts `log_start_offset <= high_watermark <= log_end_offset` after every update.
    pub(crate) fn check(&self) {
        assert!(
            self.log_start <= self.hwm && self.hwm <= self.leo,
            "watermarks out of order: log_start {:?} hwm {:?} leo {:?}",
            self.log_start,
            self.hwm,
            self.leo
        );
    }

    /// The index of the segment whose range covers `offset` (the last one based at or below it).
    pub(crate) fn segment_index_for(&self, offset: Offset) -> usize {
        self.segments
            .partition_point(|s| s.base <= offset)
            .saturating_sub(1)
    }

    pub(crate) fn active(&self) -> &Rc<Segment> {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    pub(crate) fn failed_error(&self) -> Option<LogError> {
        self.failed
            .as_ref()
            .map(|m| LogError::Io(std::io::Error::other(m.clone())))
    }
}

/// The commit log of one partition.
///
/// Lives on the shard that owns the partition, from `open` to `close`/`remove`; not `Send`.
/// Concurrent appends from several connections of that shard are allowed.
pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    pub(crate) config: RefCell<LogConfig>,
    pub(crate) st: RefCell<State>,
    /// Woken whenever the high watermark or the flushed offset moves, or the log fails.
    pub(crate) event: Event,
    /// Serialises checkpoint-file writes (they share temporary file names).
    pub(crate) checkpoint_lock: Semaphore,
    /// Serialises the changes of the segment set whose directory steps await: a compaction
    /// swap, retention and DeleteRecords dropping segments, and close. Without it retention
    /// could drop a segment that a swap in flight is replacing (see `compact.rs`, `install`).
    pub(crate) dir_lock: Semaphore,
    /// Reads that found batch headers outside the page cache (see `read_async`).
    cold_reads: Cell<u64>,
    /// The cleaner's progress (compacted topics), from `cleaner-offset-checkpoint`.
    pub(crate) cleaner: Cell<super::compact::CleanerState>,
}

impl PartitionLog {
    pub(crate) fn from_parts(dir: PathBuf, config: LogConfig, st: State) -> PartitionLog {
        st.check();
        let cleaner = super::compact::CleanerState::load(&dir, st.leo);
        PartitionLog {
            cleaner: Cell::new(cleaner),
            dir,
            config: RefCell::new(config),
            st: RefCell::new(st),
            event: Event::default(),
            checkpoint_lock: Semaphore::new(1),
            dir_lock: Semaphore::new(1),
            cold_reads: Cell::new(0),
        }
    }

    /// The byte range of whole batches starting at the batch that contains `offset`, at most
    /// `max_bytes` long except that the first batch is always whole (KIP-74). Ranges never cross
    /// a segment. Synchronous: the in-memory index gives a position near the batch and only
    /// batch headers are read to get exact boundaries. Those reads wait for the disk when the
    /// page cache is cold, stalling the shard: request handlers use [`PartitionLog::read_async`].
    pub fn read(&self, offset: Offset, max_bytes: u32) -> Result<ReadSlice, LogError> {
        match self.read_by(offset, max_bytes, false, None)? {
            Lookup::Done(slice) => Ok(slice),
            Lookup::Cold(..) => unreachable!("a blocking read never reports a cold page"),
        }
    }

    /// [`PartitionLog::read`] that never waits for the disk on the shard's thread: batch
    /// headers are read from the page cache only, and on a miss the pages are brought in
    /// through io_uring (its workers wait, the shard serves other work) before trying again.
    pub async fn read_async(&self, offset: Offset, max_bytes: u32) -> Result<ReadSlice, LogError> {
        self.read_warming(offset, max_bytes, None).await
    }

    /// [`PartitionLog::read_async`] that stops below `upto`: the range holds only batches whose
    /// last offset is below it, and reading at or past it gives an empty range, as reading at
    /// the written end does. A leader reads for consumers up to its replication high watermark
    /// this way, which lies below its written end while followers catch up. `upto` is a batch
    /// boundary at most the written end (a later one reads as [`PartitionLog::read_async`]).
    pub async fn read_async_upto(
        &self,
        offset: Offset,
        max_bytes: u32,
        upto: Offset,
    ) -> Result<ReadSlice, LogError> {
        self.read_warming(offset, max_bytes, Some(upto)).await
    }

    async fn read_warming(
        &self,
        offset: Offset,
        max_bytes: u32,
        upto: Option<Offset>,
    ) -> Result<ReadSlice, LogError> {
        for _ in 0..COLD_ROUNDS_MAX {
            match self.read_by(offset, max_bytes, true, upto)? {
                Lookup::Done(slice) => return Ok(slice),
                Lookup::Cold(seg, pos) => self.warm(&seg, pos).await?,
            }
        }
        Err(thrashing())
    }

    /// Faults in the pages at `pos` of `seg` off the shard and counts it.
    async fn warm(&self, seg: &Segment, pos: u64) -> Result<(), LogError> {
        self.cold_reads.set(self.cold_reads.get() + 1);
        seg.warm(pos).await?;
        Ok(())
    }

    /// How many times a read found batch headers outside the page cache and brought them in
    /// off the shard (for tests and diagnostics).
    pub fn cold_reads(&self) -> u64 {
        self.cold_reads.get()
    }

    /// [`Segment::find_batch_cached`], bringing cold pages in off the shard.
    async fn find_batch_warm(
        &self,
        seg: &Segment,
        target: Offset,
    ) -> Result<Option<(u64, batch::BatchHeader)>, LogError> {
        for _ in 0..COLD_ROUNDS_MAX {
            match seg.find_batch_cached(target) {
                Err(e) => match cold_at(&e) {
                    Some(pos) => self.warm(seg, pos).await?,
                    None => return Err(e.into()),
                },
                Ok(found) => return Ok(found),
            }
        }
        Err(thrashing())
    }

    /// The lookup behind every read; `upto` is [`PartitionLog::read_async_upto`]'s bound.
    fn read_by(
        &self,
        offset: Offset,
        max_bytes: u32,
        cached: bool,
        upto: Option<Offset>,
    ) -> Result<Lookup, LogError> {
        let st = self.st.borrow();
        if offset < st.log_start || offset > st.leo {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                log_start: st.log_start,
                log_end: st.leo,
            });
        }
        let first = st.segment_index_for(offset);
        let seg = &st.segments[first];
        let slice = ReadSlice {
            file: seg.reader.clone(),
            position: seg.committed_pos(),
            len: 0,
            high_watermark: st.hwm,
            log_start_offset: st.log_start,
        };
        // A bound below the written end, or none: at the written end the committed bytes are
        // the bound, as they always were.
        let cap = upto.filter(|u| *u < st.hwm);
        if offset >= st.hwm || cap.is_some_and(|u| offset >= u) {
            return Ok(Lookup::Done(slice));
        }
        // The first batch whose last offset is at or past `offset`, in this segment or a later
        // one. A range never crosses a segment, and compaction keeps an emptied batch at the end
        // of a segment whose records all went (so segments stay contiguous): a segment that
        // holds nothing else past `offset` is passed over. Answering its empty batches alone
        // would cost a consumer a
        // round trip per such segment, and librdkafka gives up (MSG_SIZE_TOO_LARGE) after ten
        // answers in a row without a record.
        let segments = &st.segments[first..];
        // The first emptied range passed over: the answer when nothing after it holds a
        // record below the high watermark (its last offset still moves the consumer on).
        let mut passed_over: Option<(&Rc<Segment>, u64, batch::BatchHeader)> = None;
        for (i, seg) in segments.iter().enumerate() {
            let find = |target: i64| {
                let found = if cached {
                    seg.find_batch_cached(Offset(target))
                } else {
                    seg.find_batch(Offset(target))
                };
                match found {
                    Err(e) => match cold_at(&e) {
                        Some(pos) => Err(Ok(Lookup::Cold(seg.clone(), pos))),
                        None => Err(Err(LogError::from(e))),
                    },
                    Ok(found) => Ok(found),
                }
            };
            let Some((pos, h)) = (match find(offset.0) {
                Ok(found) => found,
                Err(done) => return done,
            }) else {
                continue;
            };
            if h.base_offset >= st.hwm.0 || cap.is_some_and(|u| h.last_offset() >= u.0) {
                break;
            }
            if i + 1 < segments.len() {
                // Only emptied batches from here to the segment's end: on to the next one.
                let mut probe = h;
                let only_empty = loop {
                    if probe.record_count != 0 || probe.is_control() {
                        break false;
                    }
                    match find(probe.last_offset() + 1) {
                        Ok(Some((_, next))) => probe = next,
                        Ok(None) => break true,
                        Err(done) => return done,
                    }
                };
                if only_empty {
                    passed_over.get_or_insert((seg, pos, h));
                    continue;
                }
            }
            return Self::range(slice, seg, pos, h, max_bytes, cached, cap);
        }
        if let Some((seg, pos, h)) = passed_over {
            return Self::range(slice, seg, pos, h, max_bytes, cached, cap);
        }
        Ok(Lookup::Done(slice))
    }

    /// `slice` completed with the range of whole batches of `seg` from the batch `h` at `pos`,
    /// at most `max_bytes` long except that the first batch is always whole, and ending before
    /// the batch that holds `cap` (the first batch, whose last offset the caller checked, is
    /// below it).
    fn range(
        mut slice: ReadSlice,
        seg: &Rc<Segment>,
        pos: u64,
        h: batch::BatchHeader,
        max_bytes: u32,
        cached: bool,
        cap: Option<Offset>,
    ) -> Result<Lookup, LogError> {
        let max_bytes = match cap.filter(|u| *u < seg.st.borrow().next_offset) {
            None => max_bytes,
            Some(u) => {
                let found = if cached {
                    seg.find_batch_cached(u)
                } else {
                    seg.find_batch(u)
                };
                match found {
                    Err(e) => match cold_at(&e) {
                        Some(at) => return Ok(Lookup::Cold(seg.clone(), at)),
                        None => return Err(e.into()),
                    },
                    Ok(Some((end, _))) => {
                        max_bytes.min(u32::try_from(end.saturating_sub(pos)).unwrap_or(u32::MAX))
                    }
                    Ok(None) => max_bytes,
                }
            }
        };
        let first_end = pos + h.total_len() as u64;
        let end = if cached {
            seg.range_end_cached(pos, first_end, max_bytes)
        } else {
            seg.range_end(pos, first_end, max_bytes)
        };
        let end = match end {
            Err(e) => match cold_at(&e) {
                Some(pos) => return Ok(Lookup::Cold(seg.clone(), pos)),
                None => return Err(e.into()),
            },
            Ok(end) => end,
        };
        slice.file = seg.reader.clone();
        slice.position = FilePos(pos);
        slice.len = u32::try_from(end - pos).unwrap_or(u32::MAX);
        Ok(Lookup::Done(slice))
    }

    pub fn high_watermark(&self) -> Offset {
        self.st.borrow().hwm
    }

    pub fn log_start_offset(&self) -> Offset {
        self.st.borrow().log_start
    }

    pub fn log_end_offset(&self) -> Offset {
        self.st.borrow().leo
    }

    /// How many group-commit flush rounds (one `fdatasync` per dirty segment each) have run
    /// since open: with group commit this grows much more slowly than the fsync appends.
    pub fn flush_rounds(&self) -> u64 {
        self.st.borrow().flush_rounds
    }

    /// ListOffsets. `-2` earliest, `-1` latest (the high watermark), `-3` the max timestamp;
    /// otherwise the first record with timestamp `>= timestamp_ms` below the high watermark.
    ///
    /// For an uncompressed batch the records' varint headers are read to find the exact record.
    /// For a compressed batch the batch is not decompressed: the answer is the batch's base
    /// offset (or the log start offset if later) with the batch's max timestamp, which a consumer
    /// seeking there handles by skipping the few earlier records itself.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, LogError> {
        let (segments, log_start, hwm) = {
            let st = self.st.borrow();
            (st.segments.clone(), st.log_start, st.hwm)
        };
        match timestamp_ms {
            -2 => return Ok(Some((log_start, -1))),
            -1 => return Ok(Some((hwm, -1))),
            -3 => return Ok(self.max_timestamp()),
            t if t < 0 => return Ok(None),
            _ => {}
        }
        for seg in segments {
            let (max_ts, next) = {
                let s = seg.st.borrow();
                (s.max_timestamp, s.next_offset)
            };
            if max_ts < timestamp_ms || next <= log_start {
                continue;
            }
            if seg.base >= hwm {
                break;
            }
            if let Some(found) = self
                .search_segment(&seg, timestamp_ms, log_start, hwm)
                .await?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    async fn search_segment(
        &self,
        seg: &Segment,
        ts: i64,
        log_start: Offset,
        hwm: Offset,
    ) -> Result<Option<(Offset, i64)>, LogError> {
        let start_rel = seg.st.borrow().time_index.scan_start(ts);
        let start = Offset(seg.base.0 + i64::from(start_rel)).max(log_start);
        let Some((mut pos, _)) = self.find_batch_warm(seg, start).await? else {
            return Ok(None);
        };
        let mut hdr = [0u8; batch::HEADER_LEN];
        let mut cold_rounds = 0;
        while pos + batch::HEADER_LEN as u64 <= seg.committed_pos().0 {
            if let Err(e) = seg.read_cached_at(pos, &mut hdr) {
                // A cold header: bring it in off the shard and read it again. Each round
                // warms a chunk of headers ahead, so the walk goes on from the cache.
                match cold_at(&e) {
                    Some(_) if cold_rounds == COLD_ROUNDS_MAX => return Err(thrashing()),
                    Some(at) => {
                        cold_rounds += 1;
                        self.warm(seg, at).await?;
                        continue;
                    }
                    None => return Err(e.into()),
                }
            }
            let h = batch::parse_header(&hdr).ok_or_else(|| {
                LogError::Io(std::io::Error::other("corrupt batch header during search"))
            })?;
            if h.base_offset >= hwm.0 {
                break;
            }
            if h.last_offset() >= log_start.0 && h.max_timestamp >= ts {
                let fallback = (Offset(h.base_offset.max(log_start.0)), h.max_timestamp);
                if h.is_log_append_time() || h.compression() != 0 {
                    return Ok(Some(fallback));
                }
                let bytes = seg.writer.read_at(pos, h.total_len()).await?;
                let exact = batch::first_record_at_or_after(&bytes, log_start.0, ts);
                return Ok(Some(exact.map_or(fallback, |(o, t)| (Offset(o), t))));
            }
            pos += h.total_len().max(batch::HEADER_LEN) as u64;
            glommio::yield_if_needed().await;
        }
        Ok(None)
    }

    /// ListOffsets `-3` (KIP-734): the offset and timestamp of the record with the largest
    /// timestamp. Exact for uncompressed and LogAppendTime batches; for a compressed batch the
    /// offset is the batch's base offset.
    pub fn max_timestamp(&self) -> Option<(Offset, i64)> {
        let st = self.st.borrow();
        let mut best: Option<(Offset, i64)> = None;
        for seg in &st.segments {
            let s = seg.st.borrow();
            if s.max_timestamp >= 0
                && s.next_offset > st.log_start
                && best.is_none_or(|(_, t)| s.max_timestamp > t)
            {
                best = Some((s.offset_of_max.max(st.log_start), s.max_timestamp));
            }
        }
        best
    }

    /// A new leader's epoch starts at the log end (Kafka's `assignEpochStartOffset` on
    /// becoming leader); nothing when the cache has this epoch or a later one. Persisted when
    /// the log holds data; an empty log's entry needs no checkpoint (there is nothing before
    /// it to diverge from, and the first batch carries the epoch for recovery to find).
    pub async fn begin_epoch(&self, epoch: i32) -> Result<(), LogError> {
        let persist = {
            let mut st = self.st.borrow_mut();
            let leo = st.leo;
            st.epochs.assign(epoch, leo) && leo > st.log_start
        };
        if persist {
            let data = self.st.borrow().epochs.encode();
            self.write_checkpoint(LEADER_EPOCH_CHECKPOINT, data).await?;
        }
        Ok(())
    }

    /// OffsetForLeaderEpoch: `(largest epoch <= epoch, its end offset)`; `None` is undefined.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, Offset)> {
        let st = self.st.borrow();
        st.epochs.end_offset_for(epoch, st.leo)
    }

    /// The latest leader epoch in the cache (Kafka's `latestEpoch`): the epoch a follower asks
    /// its leader about with OffsetForLeaderEpoch before it truncates. `None` when it is empty.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.st.borrow().epochs.latest()
    }

    /// Replaces the topic config; it applies to the next append, roll and retention pass.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.borrow_mut() = config;
    }

    pub fn config(&self) -> LogConfig {
        self.config.borrow().clone()
    }

    /// Bytes of all segments, including appends still in flight.
    pub fn size_bytes(&self) -> u64 {
        let st = self.st.borrow();
        st.segments.iter().map(|s| s.st.borrow().size).sum()
    }

    /// Deletes the partition directory (DeleteTopics). Readers holding a `ReadSlice` finish
    /// their reads from the unlinked files.
    pub async fn remove(self) -> Result<(), LogError> {
        {
            let mut st = self.st.borrow_mut();
            st.failed = Some("partition removed".into());
        }
        self.event.notify_all();
        std::fs::remove_dir_all(&self.dir)?;
        Ok(())
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a checkpoint file durably; one checkpoint write at a time.
    pub(crate) async fn write_checkpoint(&self, name: &str, data: Vec<u8>) -> Result<(), LogError> {
        let _permit = self.checkpoint_lock.acquire_permit(1).await?;
        replace_durably(&self.dir.join(name), data).await?;
        Ok(())
    }
}

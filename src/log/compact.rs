//! Log compaction (`cleanup.policy=compact`): closed segments are rewritten keeping the latest
//! record of each key, as Kafka's log cleaner does.
//!
//! # One pass ([`PartitionLog::compact`])
//!
//! - **What may be cleaned**: closed segments whose bytes are all below the high watermark, up
//!   to the first one holding a record younger than `min.compaction.lag.ms`. The part below the
//!   *first dirty offset* (persisted in `cleaner-offset-checkpoint`) was cleaned before; the rest
//!   is dirty. A pass runs when the dirty share reaches `min.cleanable.dirty.ratio`, or when a
//!   tombstone kept by an earlier pass has outlived `delete.retention.ms`.
//! - **Key map**: the dirty records' keys go into the shard's bounded [`OffsetMap`] (key hash →
//!   latest offset). When it fills, the pass covers only what it mapped and the next pass goes
//!   on from there.
//! - **Rewrite**: the segments from the log start to the end of the map are rewritten in groups
//!   of at most `segment.bytes`, each group into one new segment named after its first. A record
//!   stays if no later offset of its key is mapped. A tombstone (null value) also goes once its
//!   timestamp is `delete.retention.ms` old (Kafka ≥ 2.8 counts from the first cleaning, older
//!   Kafka from the segment's mtime; the record's own timestamp is the simpler, persisted clock
//!   here). Records without a key go, as in Kafka (appends refuse them; they can only predate a
//!   switch to `compact`). Offsets are preserved, leaving gaps. Batches are decompressed and
//!   recompressed with their own codec, and keep their header fields (see
//!   [`record::filter_batch`]).
//! - **Batches kept even when emptied**: control batches (whole); the batches the producer state
//!   remembers (so a rebuild after a crash still detects duplicates and sequence gaps); and the
//!   last batch of each group, so every segment still ends where the next one starts (recovery
//!   checks that) and a swap file tells which segments it replaces. Aborted transactional
//!   records are kept (Kafka's cleaner removes them; here read_committed readers skip them
//!   through the aborted-transaction index, which moves into the new segment with the markers).
//! - **Swap**: crash-safe, see `swap`. Readers holding an `Arc<File>` of a replaced segment keep
//!   reading the unlinked file.
//!
//! All I/O goes through io_uring in chunks of `CLEANER_IO_CHUNK_BYTES`, and the pass yields
//! after every batch (`yield_if_needed`), so produce and fetch on the same shard keep their
//! latency; memory is the map plus two chunks.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;

use super::batch::{self, BatchHeader};
use super::files::write_all_at;
use super::offset_map::OffsetMap;
use super::partition::PartitionLog;
use super::record::{self, RecordView, Rewrite};
use super::segment::Segment;
use super::{swap, LogConfig, LogError, Offset};
use crate::config::CLEANER_IO_CHUNK_BYTES;

/// The cleaner's progress file in the partition directory.
const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";

/// What one compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Bytes of the segments rewritten (the log cleaned).
    pub bytes_cleaned: u64,
    /// Bytes of the segments that replaced them.
    pub bytes_written: u64,
    pub segments_before: usize,
    pub segments_after: usize,
    pub records_removed: u64,
    /// The first dirty offset after the pass.
    pub first_dirty: i64,
}

/// The cleaner's persisted progress for one partition. Lives in its [`PartitionLog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CleanerState {
    /// Everything below was cleaned by an earlier pass.
    pub first_dirty: Offset,
    /// When the oldest tombstone an earlier pass kept may go; `i64::MAX` when none was kept.
    pub tombstones_due_ms: i64,
}

impl CleanerState {
    /// Reads the checkpoint, clamped to the log end (recovery may have truncated the log).
    pub(crate) fn load(dir: &Path, leo: Offset) -> CleanerState {
        let text = std::fs::read_to_string(dir.join(CLEANER_CHECKPOINT)).unwrap_or_default();
        let mut parts = text.split_whitespace().map(|p| p.parse::<i64>().ok());
        let first_dirty = parts.next().flatten().unwrap_or(0);
        let tombstones_due_ms = parts.next().flatten().unwrap_or(i64::MAX);
        CleanerState {
            first_dirty: Offset(first_dirty.clamp(0, leo.0.max(0))),
            tombstones_due_ms,
        }
    }

    fn encode(&self) -> Vec<u8> {
        format!("{} {}\n", self.first_dirty.0, self.tombstones_due_ms).into_bytes()
    }
}

/// The segments a pass may clean and where their dirty part starts.
struct Plan {
    cleanable: Vec<Rc<Segment>>,
    first_dirty: Offset,
}

/// The record filter of one pass.
struct Filter<'m> {
    map: &'m OffsetMap,
    /// Records below this offset were all mapped; only they may lose a tombstone.
    map_end: i64,
    now_ms: i64,
    delete_retention_ms: i64,
    remembered: HashSet<i64>,
    /// The earliest time a kept tombstone may go.
    tombstones_due_ms: i64,
}

impl Filter<'_> {
    fn keep(&mut self, h: &BatchHeader, offset: i64, r: &RecordView<'_>) -> bool {
        let Some(key) = r.key else {
            return false;
        };
        if self.map.get(key).is_some_and(|latest| offset < latest) {
            return false;
        }
        if r.tombstone {
            let ts = if h.is_log_append_time() {
                h.max_timestamp
            } else {
                h.base_timestamp.saturating_add(r.timestamp_delta)
            };
            let due = ts.saturating_add(self.delete_retention_ms);
            if offset < self.map_end && due <= self.now_ms {
                return false;
            }
            self.tombstones_due_ms = self.tombstones_due_ms.min(due);
        }
        true
    }
}

impl PartitionLog {
    /// Runs one compaction pass if one is due (see the module docs); `None` when none was.
    /// `map` is the shard's key map, reused across passes and partitions.
    pub async fn compact(
        &self,
        now_ms: i64,
        map: &mut OffsetMap,
    ) -> Result<Option<CleanStats>, LogError> {
        let cfg = self.config();
        if !cfg.cleanup_policy.compact {
            return Ok(None);
        }
        let Some(plan) = self.plan(&cfg, now_ms) else {
            return Ok(None);
        };
        // A truncation changes segments in place (see `truncate.rs`): a pass planned before one
        // must not install copies of what it read.
        let truncations = self.st.borrow().truncations;
        tracing::info!(dir = %self.dir.display(), first_dirty = plan.first_dirty.0,
            segments = plan.cleanable.len(), "compacting");
        let map_end = self.build_map(&plan, map).await?;
        let range: Vec<Rc<Segment>> = plan
            .cleanable
            .iter()
            .filter(|s| s.base < map_end)
            .cloned()
            .collect();
        let mut filter = Filter {
            map,
            map_end: map_end.0,
            now_ms,
            delete_retention_ms: cfg.delete_retention_ms,
            remembered: self.st.borrow().producers.remembered_batches(),
            tombstones_due_ms: i64::MAX,
        };
        let mut stats = CleanStats {
            segments_before: range.len(),
            first_dirty: map_end.0,
            ..CleanStats::default()
        };
        for group in groups(&range, cfg.segment_bytes_effective()) {
            self.clean_group(&group, &mut filter, &mut stats, truncations)
                .await?;
        }
        let state = CleanerState {
            first_dirty: map_end,
            tombstones_due_ms: filter.tombstones_due_ms,
        };
        // Under the directory lock, which a truncation holds until it has clamped the cleaner's
        // progress: a pass that a truncation overtook records nothing, or it would count the
        // batches appended since as cleaned.
        let _dir = self.dir_lock.acquire_permit(1).await?;
        if self.st.borrow().truncations != truncations {
            return Ok(Some(stats));
        }
        self.cleaner.set(state);
        self.write_checkpoint(CLEANER_CHECKPOINT, state.encode())
            .await?;
        Ok(Some(stats))
    }

    /// Picks the cleanable segments and decides whether a pass is due. Synchronous.
    fn plan(&self, cfg: &LogConfig, now_ms: i64) -> Option<Plan> {
        let st = self.st.borrow();
        let closed = &st.segments[..st.segments.len() - 1];
        let lag_limit = now_ms.saturating_sub(cfg.min_compaction_lag_ms);
        let cleanable: Vec<Rc<Segment>> = closed
            .iter()
            .take_while(|s| {
                let s = s.st.borrow();
                s.next_offset <= st.hwm
                    && (cfg.min_compaction_lag_ms <= 0 || s.max_timestamp <= lag_limit)
            })
            .cloned()
            .collect();
        let state = self.cleaner.get();
        let first_dirty = state.first_dirty.max(cleanable.first()?.base);
        let (mut clean, mut dirty) = (0u64, 0u64);
        for s in &cleanable {
            let s = s.st.borrow();
            if s.next_offset <= first_dirty {
                clean += s.size;
            } else {
                dirty += s.size;
            }
        }
        let ratio = dirty as f64 / (clean + dirty).max(1) as f64;
        let by_ratio = dirty > 0 && ratio >= cfg.min_cleanable_dirty_ratio;
        let by_tombstones = clean > 0 && state.tombstones_due_ms <= now_ms;
        (by_ratio || by_tombstones).then_some(Plan {
            cleanable,
            first_dirty,
        })
    }

    /// Maps the keys of the dirty records to their latest offsets, until the map is full.
    /// Returns the offset up to which every dirty record was mapped.
    async fn build_map(&self, plan: &Plan, map: &mut OffsetMap) -> Result<Offset, LogError> {
        map.clear();
        let from = plan.first_dirty.0;
        let mut end = plan.first_dirty;
        for seg in &plan.cleanable {
            if seg.st.borrow().next_offset.0 <= from {
                continue;
            }
            let mut rd = BatchReader::new(seg);
            while let Some((h, at)) = rd.next().await? {
                if h.last_offset() < from || h.is_control() {
                    continue;
                }
                let bytes = &rd.buf[at];
                if let Ok(records) = record::records_of(bytes, &h) {
                    let parsed = record::parse_records(&records, h.record_count);
                    let parsed = parsed.unwrap_or_default();
                    if parsed.len() > map.free() {
                        if end == plan.first_dirty {
                            tracing::warn!(dir = %self.dir.display(), keys = map.capacity(),
                                "log.cleaner.dedupe.buffer.size is too small for one batch");
                        }
                        return Ok(Offset(h.base_offset).max(end));
                    }
                    for r in parsed {
                        let offset = h.base_offset + r.offset_delta;
                        if let (Some(key), true) = (r.key, offset >= from) {
                            map.put(key, offset);
                        }
                    }
                }
                end = Offset(h.last_offset() + 1);
                glommio::yield_if_needed().await;
            }
            end = end.max(seg.st.borrow().next_offset);
        }
        Ok(end)
    }

    /// Rewrites one group of segments into one and swaps it in, unless nothing changed.
    async fn clean_group(
        &self,
        group: &[Rc<Segment>],
        filter: &mut Filter<'_>,
        stats: &mut CleanStats,
        truncations: u64,
    ) -> Result<(), LogError> {
        let base = group[0].base;
        let path = swap::cleaned_path(&self.dir, base);
        let cleaned = Rc::new(Segment::create_at(&self.dir, base, &path)?);
        let changed = match self.write_cleaned(group, &cleaned, filter, stats).await {
            Ok(changed) => changed,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let installed = changed && self.install(group, cleaned.clone(), truncations).await?;
        if !installed {
            std::fs::remove_file(&path)?;
            stats.segments_after += group.len();
            return Ok(());
        }
        stats.segments_after += 1;
        stats.bytes_cleaned += group.iter().map(|s| s.st.borrow().size).sum::<u64>();
        stats.bytes_written += cleaned.st.borrow().size;
        cleaned.persist_indexes().await?;
        Ok(())
    }

    /// Writes the kept batches of `group` into `out` and makes them durable. Returns whether
    /// the result differs from the group.
    async fn write_cleaned(
        &self,
        group: &[Rc<Segment>],
        out: &Rc<Segment>,
        filter: &mut Filter<'_>,
        stats: &mut CleanStats,
    ) -> Result<bool, LogError> {
        let group_end = group[group.len() - 1].st.borrow().next_offset.0;
        let interval = self.config.borrow().index_interval_bytes;
        let mut w = Writer {
            seg: out.clone(),
            buf: Vec::new(),
            pos: 0,
            interval,
        };
        let mut changed = group.len() > 1;
        for seg in group {
            let mut rd = BatchReader::new(seg);
            while let Some((h, at)) = rd.next().await? {
                let bytes = &rd.buf[at];
                let retain =
                    h.last_offset() + 1 == group_end || filter.remembered.contains(&h.base_offset);
                let rewrite = record::filter_batch(bytes, &h, retain, |o, r| filter.keep(&h, o, r));
                match rewrite {
                    Ok(Rewrite::Unchanged) => w.push(bytes, &h),
                    Err(e) => {
                        tracing::warn!(dir = %self.dir.display(), offset = h.base_offset,
                            "compaction keeps a batch it cannot parse: {e}");
                        w.push(bytes, &h);
                    }
                    Ok(Rewrite::Changed(nb)) => {
                        let nh = batch::parse_header(&nb).ok_or_else(|| corrupt(&h))?;
                        stats.records_removed += (h.record_count - nh.record_count) as u64;
                        w.push(&nb, &nh);
                        changed = true;
                    }
                    Ok(Rewrite::Dropped) => {
                        stats.records_removed += h.record_count as u64;
                        changed = true;
                    }
                }
                if w.buf.len() >= CLEANER_IO_CHUNK_BYTES {
                    w.flush().await?;
                }
                glommio::yield_if_needed().await;
            }
        }
        w.flush().await?;
        out.writer.fdatasync().await?;
        let mut s = out.st.borrow_mut();
        s.committed = s.size;
        debug_assert_eq!(s.next_offset.0, group_end);
        Ok(changed)
    }

    /// Swaps the cleaned segment in for `group`, on disk and in memory, unless the group changed
    /// meanwhile (retention, DeleteRecords, a truncation since the pass was planned, which is
    /// `truncations` apart) or the log closed. A failure after the commit point
    /// fails the log, like a write error: the next open completes the swap.
    ///
    /// The directory steps run off the shard (`swap::install`), so the partition state is not
    /// borrowed across them. The directory lock keeps retention, DeleteRecords and close from
    /// changing the segment set meanwhile; appends only add segments after the group. Readers
    /// see the old segments until the splice, which is correct data either way: the same
    /// records, before compaction.
    async fn install(
        &self,
        group: &[Rc<Segment>],
        new: Rc<Segment>,
        truncations: u64,
    ) -> Result<bool, LogError> {
        let _dir = self.dir_lock.acquire_permit(1).await?;
        let installable = {
            let st = self.st.borrow();
            st.failed.is_none()
                && st.truncations == truncations
                && st.segments.len() > group.len()
                && group_position(&st.segments, group).is_some()
        };
        if !installable {
            return Ok(false);
        }
        let bases: Vec<Offset> = group.iter().map(|s| s.base).collect();
        // The group's aborted transactions go with its markers (control batches are kept) into
        // the new segment, whose `.txnindex` (the first segment's name) is written before the
        // commit point: a crash before it leaves a superset of the first segment's entries,
        // which readers dedupe.
        let aborted: Vec<_> = group
            .iter()
            .flat_map(|s| s.st.borrow().aborted.clone())
            .collect();
        if !aborted.is_empty() {
            let mut st = new.st.borrow_mut();
            st.aborted = aborted;
            st.aborted_dirty = true;
        }
        let persisted = new.persist_aborted().await;
        let result = match persisted {
            Ok(()) => swap::install(&self.dir, &bases).await,
            Err(e) => Err(e),
        };
        let result = result.and_then(|()| {
            let mut st = self.st.borrow_mut();
            let i = group_position(&st.segments, group).ok_or_else(|| {
                std::io::Error::other("the segment list changed under a compaction swap")
            })?;
            st.segments.splice(i..i + group.len(), [new]);
            st.check();
            Ok(())
        });
        if let Err(e) = result {
            tracing::error!(dir = %self.dir.display(), "compaction swap failed: {e}");
            self.st
                .borrow_mut()
                .failed
                .get_or_insert_with(|| e.to_string());
            self.event.notify_all();
            return Err(e.into());
        }
        Ok(true)
    }

    /// After a truncation to `end`: nothing at or past it counts as cleaned any more. A crash
    /// before the checkpoint is written is covered by the clamp to the log end at open.
    pub(crate) async fn clamp_cleaner(&self, end: Offset) -> Result<(), LogError> {
        let mut state = self.cleaner.get();
        if state.first_dirty <= end {
            return Ok(());
        }
        state.first_dirty = end;
        self.cleaner.set(state);
        self.write_checkpoint(CLEANER_CHECKPOINT, state.encode())
            .await
    }
}

/// Where `group` lies, whole and in order, in `segments`.
fn group_position(segments: &[Rc<Segment>], group: &[Rc<Segment>]) -> Option<usize> {
    segments
        .iter()
        .position(|s| Rc::ptr_eq(s, &group[0]))
        .filter(|&i| {
            segments
                .get(i..i + group.len())
                .is_some_and(|w| w.iter().zip(group).all(|(a, b)| Rc::ptr_eq(a, b)))
        })
}

/// Splits consecutive segments into groups whose total size fits in `max_bytes` and whose
/// offsets fit the u32 relative offsets of one segment's index.
fn groups(range: &[Rc<Segment>], max_bytes: u64) -> Vec<Vec<Rc<Segment>>> {
    let mut out: Vec<Vec<Rc<Segment>>> = Vec::new();
    let mut size = 0u64;
    for seg in range {
        let (len, next) = {
            let s = seg.st.borrow();
            (s.size, s.next_offset)
        };
        let fits = out.last().is_some_and(|g| {
            size + len <= max_bytes && next.0 - g[0].base.0 <= i64::from(u32::MAX)
        });
        if fits {
            out.last_mut().expect("checked").push(seg.clone());
            size += len;
        } else {
            out.push(vec![seg.clone()]);
            size = len;
        }
    }
    out
}

fn corrupt(h: &BatchHeader) -> LogError {
    LogError::CorruptMessage(format!("rewritten batch at {} is malformed", h.base_offset))
}

/// Reads a segment's committed batches in order through io_uring, a chunk at a time (also
/// truncation's re-indexing walk, `truncate.rs`).
pub(crate) struct BatchReader<'a> {
    seg: &'a Segment,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    buf_pos: u64,
}

impl<'a> BatchReader<'a> {
    pub(crate) fn new(seg: &'a Segment) -> Self {
        BatchReader {
            seg,
            pos: 0,
            end: seg.st.borrow().committed,
            buf: Vec::new(),
            buf_pos: 0,
        }
    }

    /// The bytes of a batch [`BatchReader::next`] returned.
    pub(crate) fn bytes(&self, at: Range<usize>) -> &[u8] {
        &self.buf[at]
    }

    /// The next batch's header and its bytes' range in `buf`.
    pub(crate) async fn next(&mut self) -> Result<Option<(BatchHeader, Range<usize>)>, LogError> {
        if self.pos + batch::HEADER_LEN as u64 > self.end {
            return Ok(None);
        }
        let at = self.fill(batch::HEADER_LEN).await?;
        let min_len = (batch::HEADER_LEN - batch::LOG_OVERHEAD) as i32;
        let h = batch::parse_header(&self.buf[at..])
            .filter(|h| h.batch_length >= min_len)
            .filter(|h| self.pos + h.total_len() as u64 <= self.end)
            .ok_or_else(|| {
                LogError::Io(std::io::Error::other(format!(
                    "corrupt batch at {} in segment {}",
                    self.pos, self.seg.base.0
                )))
            })?;
        let len = h.total_len();
        let at = self.fill(len).await?;
        self.pos += len as u64;
        Ok(Some((h, at..at + len)))
    }

    /// Makes `n` bytes at `self.pos` available in `buf`; returns where they start.
    async fn fill(&mut self, n: usize) -> Result<usize, LogError> {
        let buf_end = self.buf_pos + self.buf.len() as u64;
        if self.pos >= self.buf_pos && self.pos + n as u64 <= buf_end {
            return Ok((self.pos - self.buf_pos) as usize);
        }
        let want = (n.max(CLEANER_IO_CHUNK_BYTES) as u64).min(self.end - self.pos) as usize;
        let got = self.seg.writer.read_at(self.pos, want).await?;
        if got.len() < n {
            return Err(LogError::Io(std::io::Error::other(
                "short read in compaction",
            )));
        }
        self.buf.clear();
        self.buf.extend_from_slice(&got);
        self.buf_pos = self.pos;
        Ok(0)
    }
}

/// Appends kept batches to the cleaned segment, noting each for its indexes.
struct Writer {
    seg: Rc<Segment>,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    pos: u64,
    interval: u32,
}

impl Writer {
    fn push(&mut self, b: &[u8], h: &BatchHeader) {
        let at = self.pos + self.buf.len() as u64;
        let raises_max = h.max_timestamp > self.seg.st.borrow().max_timestamp;
        let exact = if raises_max {
            super::recovery::exact_max(h, b)
        } else {
            None
        };
        self.seg.note_batch(h, at, self.interval, exact);
        self.buf.extend_from_slice(b);
    }

    async fn flush(&mut self) -> Result<(), LogError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let len = buf.len() as u64;
        write_all_at(&self.seg.writer, buf, self.pos).await?;
        self.pos += len;
        Ok(())
    }
}

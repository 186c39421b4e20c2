//! The write side of [`PartitionLog`]: append, segment roll, group commit and shutdown.
//!
//! An append does all its bookkeeping synchronously before its first `.await` (validation,
//! idempotence check, roll, offset and file-position assignment, index entries, and the one copy
//! of its bytes into the staged run of the active segment), so offsets follow call order. Writes
//! are coalesced: whichever append finds no write in flight writes every staged run, one
//! io_uring write per run, and the high watermark advances over the completed prefix, in offset
//! order. Fsync acknowledgements share `fdatasync` calls the same way (group commit): whoever
//! finds no flush in flight flushes everything written so far, and the others wait for that
//! flush or the next.

use std::io;
use std::rc::Rc;

use glommio::io::BufferedFile;

use super::batch::{self, BatchHeader};
use super::files::{sync_dir_off_shard, write_all_at};
use super::partition::{
    PartitionLog, Pending, State, CLEAN_SHUTDOWN, LEADER_EPOCH_CHECKPOINT, LOG_START_OFFSET,
    PRODUCER_SNAPSHOT, RECOVERY_POINT,
};
use super::producer::Check;
use super::segment::Segment;
use super::{now_ms, AppendInfo, Durability, LogConfig, LogError, Offset, TimestampType};

/// A reservation made by [`PartitionLog::reserve`].
struct Write {
    seq: u64,
    rolled: Option<Rc<Segment>>,
    epoch_changed: bool,
    info: AppendInfo,
}

/// Batches reserved back to back in one segment, waiting to be written with one `write`.
pub(crate) struct Staged {
    seg: Rc<Segment>,
    pos: u64,
    buf: Vec<u8>,
    first_seq: u64,
    count: u64,
}

/// Initial capacity of a staged run: a few batches without reallocating, and below malloc's
/// mmap threshold so a lone small append stays cheap.
const STAGE_CAPACITY_MIN: usize = 64 << 10;

/// Copies `batch` into the staged run that ends at `pos` in `seg` (or a new run) and returns
/// the copy, for the header rewrite. This is the only copy of the record bytes on the way in.
pub(super) fn stage<'a>(
    st: &'a mut State,
    seg: &Rc<Segment>,
    pos: u64,
    seq: u64,
    batch: &[u8],
) -> &'a mut [u8] {
    let extend = st
        .staged
        .back()
        .is_some_and(|r| Rc::ptr_eq(&r.seg, seg) && r.pos + r.buf.len() as u64 == pos);
    if !extend {
        st.staged.push_back(Staged {
            seg: seg.clone(),
            pos,
            buf: Vec::with_capacity(batch.len().max(STAGE_CAPACITY_MIN)),
            first_seq: seq,
            count: 0,
        });
    }
    let run = st.staged.back_mut().expect("a run was just ensured");
    let at = run.buf.len();
    run.buf.extend_from_slice(batch);
    run.count += 1;
    &mut run.buf[at..]
}

enum Reserved {
    Duplicate(AppendInfo),
    Write(Box<Write>),
}

impl PartitionLog {
    /// Appends one RecordBatch v2 exactly as the producer sent it (see the module docs for the
    /// concurrency rules). Nothing of a rejected batch is written. Every record is validated
    /// first (`validate`), streaming through the codec of a compressed batch; on a compacted
    /// topic every record needs a key (INVALID_RECORD with per-record errors otherwise).
    pub async fn append(
        &self,
        batch: &[u8],
        leader_epoch: i32,
        durability: Durability,
    ) -> Result<AppendInfo, LogError> {
        let cfg = self.config.borrow().clone();
        // Taken before the walk: the window is the one at the moment the batch arrived.
        let now = now_ms();
        let opts = super::validate::ValidateOptions {
            compacted: cfg.cleanup_policy.compact,
            timestamps: Some(super::validate::TimestampRules {
                create_time: cfg.message_timestamp_type == TimestampType::CreateTime,
                now_ms: now,
                before_max_ms: cfg.message_timestamp_before_max_ms,
                after_max_ms: cfg.message_timestamp_after_max_ms,
            }),
            ..super::validate::ValidateOptions::new(cfg.max_message_bytes)
        };
        let h = super::validate::validate_yielding(batch, &opts)
            .await?
            .header;
        self.append_checked(batch, &h, leader_epoch, durability, now, &cfg)
            .await
    }

    /// The append of a batch that needs no validation: one a client sent, validated, or a
    /// marker the broker built (`txn.rs`).
    pub(super) async fn append_checked(
        &self,
        batch: &[u8],
        h: &BatchHeader,
        leader_epoch: i32,
        durability: Durability,
        now: i64,
        cfg: &LogConfig,
    ) -> Result<AppendInfo, LogError> {
        let h = *h;
        let segment_bytes = cfg.segment_bytes_effective();
        if h.total_len() as u64 > segment_bytes {
            return Err(LogError::MessageTooLarge {
                size: h.total_len(),
                max: segment_bytes as u32,
            });
        }
        // Nothing awaits between the gate opening and the reservation, nor between the
        // reservation and the count that a truncation waits on.
        self.truncation_done().await;
        let w = match self.reserve(batch, &h, leader_epoch, now, cfg)? {
            Reserved::Duplicate(info) => return Ok(info),
            Reserved::Write(w) => w,
        };
        let _in_flight = self.append_in_flight();
        self.write_staged(w.seq).await?;
        self.wait_written(w.info.last_offset).await?;
        if let Some(old) = w.rolled {
            self.finish_segment(&old).await?;
        }
        if w.epoch_changed {
            let data = self.st.borrow().epochs.encode();
            self.write_checkpoint(LEADER_EPOCH_CHECKPOINT, data).await?;
        }
        match durability {
            Durability::Fsync => self.flush_to(Offset(w.info.last_offset.0 + 1)).await?,
            Durability::PageCache => self.maybe_flush(now, cfg).await?,
        }
        Ok(w.info)
    }

    /// Assigns offsets and a file position and updates all in-memory state. Synchronous.
    fn reserve(
        &self,
        batch: &[u8],
        h: &BatchHeader,
        leader_epoch: i32,
        now: i64,
        cfg: &LogConfig,
    ) -> Result<Reserved, LogError> {
        let mut st = self.st.borrow_mut();
        if let Some(e) = st.failed_error() {
            return Err(e);
        }
        let log_append_time =
            (cfg.message_timestamp_type == TimestampType::LogAppendTime).then_some(now);
        if let Check::Duplicate(m) = st.producers.check(h)? {
            return Ok(Reserved::Duplicate(AppendInfo {
                base_offset: Offset(m.base_offset),
                last_offset: Offset(m.last_offset),
                log_append_time_ms: log_append_time.unwrap_or(-1),
                log_start_offset: st.log_start,
                duplicate: true,
            }));
        }
        let base = st.leo;
        let last = base.0 + i64::from(h.last_offset_delta);
        let rolled = self.maybe_roll(&mut st, h.total_len(), last, now, cfg)?;
        let seg = st.active().clone();
        let pos = seg.st.borrow().size;
        let seq = st.pending_head + st.pending.len() as u64;
        let buf = stage(&mut st, &seg, pos, seq, batch);
        batch::assign(buf, base.0, leader_epoch, log_append_time);
        let mut stored = *h;
        stored.base_offset = base.0;
        let exact_max = match log_append_time {
            Some(t) => {
                stored.max_timestamp = t;
                Some(base.0)
            }
            None if h.compression() == 0 && h.max_timestamp > seg.st.borrow().max_timestamp => {
                batch::first_record_at_or_after(buf, 0, h.max_timestamp).map(|r| r.0)
            }
            None => None,
        };
        seg.note_batch(&stored, pos, cfg.index_interval_bytes, exact_max);
        st.leo = Offset(stored.last_offset() + 1);
        let s = &mut *st;
        super::txn::record_stored(&mut s.producers, &mut s.unreplicated, &seg, &stored, batch);
        let epoch_changed = st.epochs.assign(leader_epoch, base);
        st.unflushed_messages += h.record_count as u64;
        let end = st.leo;
        st.pending.push_back(Pending {
            end,
            seg,
            end_pos: pos + h.total_len() as u64,
            done: false,
        });
        st.check();
        let info = AppendInfo {
            base_offset: base,
            last_offset: Offset(end.0 - 1),
            log_append_time_ms: log_append_time.unwrap_or(-1),
            log_start_offset: st.log_start,
            duplicate: false,
        };
        Ok(Reserved::Write(Box::new(Write {
            seq,
            rolled,
            epoch_changed,
            info,
        })))
    }

    /// Rolls to a new segment (based at the log end, so segments stay contiguous) when a batch
    /// of `len` bytes ending at offset `last` would overflow `segment.bytes`, the active segment
    /// is older than `segment.ms`, or relative offsets would overflow u32. Returns the segment
    /// that was active before, which the caller finishes once its writes are done.
    pub(super) fn maybe_roll(
        &self,
        st: &mut State,
        len: usize,
        last: i64,
        now: i64,
        cfg: &LogConfig,
    ) -> Result<Option<Rc<Segment>>, LogError> {
        let active = st.active().clone();
        let (size, created) = {
            let s = active.st.borrow();
            (s.size, s.created_ms)
        };
        let last_rel = last - active.base.0;
        let roll = size > 0
            && (size + len as u64 > cfg.segment_bytes_effective()
                || now.saturating_sub(created) > cfg.segment_ms
                || last_rel > i64::from(u32::MAX));
        if !roll {
            return Ok(None);
        }
        let seg = Rc::new(Segment::create(&self.dir, st.leo)?);
        st.segments.push(seg);
        st.dir_dirty = true;
        Ok(Some(active))
    }

    /// Write coalescing: whoever finds no write in flight writes every staged run (each one
    /// `write` of many batches) and completes them; the others wait. So a burst of appends costs
    /// a few io_uring writes rather than one each, which matters because buffered io_uring
    /// writes cost tens of microseconds apiece on ext4 (see tuning.md).
    pub(super) async fn write_staged(&self, seq: u64) -> Result<(), LogError> {
        loop {
            let listen = self.event.listen();
            let job = {
                let mut st = self.st.borrow_mut();
                let written =
                    seq < st.pending_head || st.pending[(seq - st.pending_head) as usize].done;
                if written {
                    return Ok(());
                }
                if let Some(e) = st.failed_error() {
                    return Err(e);
                }
                if st.writing || st.staged.is_empty() {
                    None
                } else {
                    st.writing = true;
                    Some(std::mem::take(&mut st.staged))
                }
            };
            let Some(runs) = job else {
                listen.await;
                continue;
            };
            for run in runs {
                let result = write_all_at(&run.seg.writer, run.buf, run.pos).await;
                let failed = result.is_err();
                self.complete(run.first_seq, run.count, result);
                if failed {
                    break;
                }
            }
            self.st.borrow_mut().writing = false;
            self.event.notify_all();
        }
    }

    /// Marks reservations `first..first + count` written and advances the high watermark over
    /// the completed prefix.
    fn complete(&self, first: u64, count: u64, result: io::Result<()>) {
        {
            let mut st = self.st.borrow_mut();
            match result {
                Err(e) => {
                    tracing::error!(dir = %self.dir.display(), "log write failed: {e}");
                    st.failed.get_or_insert_with(|| e.to_string());
                }
                Ok(()) => {
                    for seq in first..first + count {
                        let i = (seq - st.pending_head) as usize;
                        st.pending[i].done = true;
                    }
                }
            }
            while st.pending.front().is_some_and(|p| p.done) {
                let p = st.pending.pop_front().expect("front exists");
                st.pending_head += 1;
                p.seg.st.borrow_mut().committed = p.end_pos;
                st.hwm = p.end;
            }
            st.check();
        }
        self.event.notify_all();
    }

    /// Waits until the high watermark covers `last` (every earlier write has completed too).
    pub(crate) async fn wait_written(&self, last: Offset) -> Result<(), LogError> {
        loop {
            let listen = self.event.listen();
            {
                let st = self.st.borrow();
                if st.hwm > last {
                    return Ok(());
                }
                if let Some(e) = st.failed_error() {
                    return Err(e);
                }
            }
            listen.await;
        }
    }

    /// Group commit: returns once everything below `target` is fdatasynced.
    pub(crate) async fn flush_to(&self, target: Offset) -> Result<(), LogError> {
        loop {
            let listen = self.event.listen();
            let job = {
                let mut st = self.st.borrow_mut();
                if st.flushed >= target {
                    return Ok(());
                }
                if let Some(e) = st.failed_error() {
                    return Err(e);
                }
                if st.flushing || st.hwm < target {
                    // Either a flush is in flight, or the data is not written yet: wait.
                    None
                } else {
                    st.flushing = true;
                    let (from, upto) = (st.flushed, st.hwm);
                    let files: Vec<Rc<BufferedFile>> = st
                        .segments
                        .iter()
                        .filter(|s| s.base < upto && s.st.borrow().next_offset > from)
                        .map(|s| s.writer.clone())
                        .collect();
                    let dir = std::mem::take(&mut st.dir_dirty);
                    Some((upto, files, dir, st.unflushed_messages))
                }
            };
            let Some((upto, files, dir, messages)) = job else {
                listen.await;
                continue;
            };
            let result = self.sync_files(&files, dir).await;
            {
                let mut st = self.st.borrow_mut();
                st.flushing = false;
                st.flush_rounds += 1;
                match result {
                    Ok(()) => {
                        st.flushed = st.flushed.max(upto);
                        st.last_flush_ms = now_ms();
                        st.unflushed_messages = st.unflushed_messages.saturating_sub(messages);
                    }
                    Err(e) => {
                        st.failed.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            self.event.notify_all();
        }
    }

    async fn sync_files(&self, files: &[Rc<BufferedFile>], dir: bool) -> io::Result<()> {
        if dir {
            sync_dir_off_shard(&self.dir).await?;
        }
        for f in files {
            f.fdatasync().await?;
        }
        Ok(())
    }

    /// `flush.messages` / `flush.ms` for data acknowledged without fsync.
    pub(super) async fn maybe_flush(&self, now: i64, cfg: &LogConfig) -> Result<(), LogError> {
        let (due, hwm) = {
            let st = self.st.borrow();
            let by_count = st.unflushed_messages >= cfg.flush_messages;
            let by_time = cfg.flush_ms != i64::MAX
                && st.flushed < st.hwm
                && now.saturating_sub(st.last_flush_ms) >= cfg.flush_ms;
            (by_count || by_time, st.hwm)
        };
        if due {
            self.flush_to(hwm).await?;
        }
        Ok(())
    }

    /// After a roll: make the closed segment durable, write its indexes, snapshot the producer
    /// state and move the recovery point, so a crash only rescans the segments after it.
    pub(super) async fn finish_segment(&self, old: &Segment) -> Result<(), LogError> {
        let end = old.st.borrow().next_offset;
        self.flush_to(end).await?;
        old.persist_indexes().await?;
        self.write_state_checkpoints().await
    }

    /// Writes the producer snapshot and the recovery point (the flushed offset).
    async fn write_state_checkpoints(&self) -> Result<(), LogError> {
        let (snapshot, flushed) = {
            let st = self.st.borrow();
            (st.producers.encode(st.leo), st.flushed)
        };
        self.write_checkpoint(PRODUCER_SNAPSHOT, snapshot).await?;
        let point = flushed.0.to_string().into_bytes();
        self.write_checkpoint(RECOVERY_POINT, point).await
    }

    /// Flushes every append made so far (waiting for writes still in flight).
    pub async fn flush(&self) -> Result<(), LogError> {
        let leo = self.log_end_offset();
        self.wait_written(Offset(leo.0 - 1)).await?;
        self.flush_to(leo).await
    }

    /// Clean shutdown: flush, write every index and checkpoint, then the clean-shutdown marker
    /// that lets the next open skip recovery. Appends after this fail.
    pub async fn close(&self) -> Result<(), LogError> {
        // A compaction swap in flight finishes first, so that the segment list persisted
        // below is the one on disk (see `compact.rs`, `install`).
        let _dir = self.dir_lock.acquire_permit(1).await?;
        self.flush().await?;
        {
            let mut st = self.st.borrow_mut();
            st.failed
                .get_or_insert_with(|| "partition log is closed".into());
        }
        let segments = self.st.borrow().segments.clone();
        for seg in &segments {
            seg.persist_indexes().await?;
        }
        self.write_state_checkpoints().await?;
        let (epochs, start) = {
            let st = self.st.borrow();
            (st.epochs.encode(), st.log_start)
        };
        self.write_checkpoint(LEADER_EPOCH_CHECKPOINT, epochs)
            .await?;
        self.write_checkpoint(LOG_START_OFFSET, start.0.to_string().into_bytes())
            .await?;
        self.write_checkpoint(CLEAN_SHUTDOWN, Vec::new()).await?;
        sync_dir_off_shard(self.dir()).await?;
        self.event.notify_all();
        Ok(())
    }
}

//! Truncation: a follower cutting the tail where its log diverges from its leader's (Kafka's
//! `truncateTo`, KIP-101/KIP-279), and starting over inside the leader's range when its own lies
//! outside it (`truncateFullyAndStartAt`).
//!
//! # Exclusion
//!
//! A truncation holds the directory lock (compaction's swap, retention and close wait) and
//! closes a gate that appends wait at before they reserve; then it waits for every append
//! already reserved to return (each counts itself in `appends_in_flight` from its reservation
//! on), for their writes and for any flush round, so that no write lands in a cut file and no
//! flush moves the flushed offset past the new end. A compaction pass planned before a
//! truncation does not install (`truncations`), since it read segments that changed.
//!
//! # `truncate_to`, step by step
//!
//! The batches kept in the cut segment are walked first, changing nothing, to rebuild that
//! segment's indexes and max timestamp in a new `Segment` (fresh handles on the same file). Then
//! the in-memory state changes at once, so readers never get a range in the removed tail (a
//! range handed out before may find its file shorter, as in Kafka), and then the disk:
//!
//! 1. `recovery-point` moves down to the new end, so that until the cut segment's indexes are
//!    written again (at its roll or close) recovery scans it rather than trust its old index
//!    files;
//! 2. `producer.snapshot` is rewritten for the new end;
//! 3. the segments after the cut are deleted, the last first;
//! 4. the cut segment is truncated at the batch boundary and fdatasynced;
//! 5. the directory is fsynced;
//! 6. `leader-epoch-checkpoint` and the cleaner's checkpoint are rewritten.
//!
//! `truncate_fully_and_start_at` deletes every segment (the last first) and fsyncs the
//! directory, empties the epoch and producer checkpoints, writes the new log start, and only
//! then creates the new empty segment.
//!
//! At every point the segment files on disk are a prefix of the old log, whole batches only, or
//! that prefix followed by segments that do not continue it, which recovery drops. So a crash
//! reopens to the old log cut at the target or anywhere after it, with indexes rebuilt from the
//! `.log` where they may be stale, and the follower truncates again. Stale checkpoints are
//! corrected at open: epochs and producer state past the recovered end are dropped.
//!
//! The producer state follows the rule recovery applies to a snapshot that covers more than
//! the log it recovered: the batches it remembers at or past the new end are forgotten, so none
//! of them is taken for a duplicate any more; what it remembers below is exact.

use std::rc::Rc;

use super::compact::BatchReader;
use super::files::sync_dir_off_shard;
use super::partition::{
    PartitionLog, LEADER_EPOCH_CHECKPOINT, LOG_START_OFFSET, PRODUCER_SNAPSHOT, RECOVERY_POINT,
};
use super::recovery::exact_max;
use super::segment::Segment;
use super::{epoch::LeaderEpochCache, producer::ProducerState, LogError, Offset};

/// What truncating at an offset removes, found before anything changes.
enum Cut {
    /// The segments from `first_removed` on go; the ones before stay as they are.
    Segments { first_removed: usize },
    /// The segment at `index` keeps its bytes below `pos`, re-indexed in `kept`; the later
    /// segments go.
    Within {
        index: usize,
        pos: u64,
        kept: Rc<Segment>,
    },
}

/// The segment a cut keeps part of, and the position it is cut at.
type CutFile = Option<(Rc<Segment>, u64)>;

#[cfg(test)]
thread_local! {
    /// The number of disk steps the next truncation on this thread completes before it stops,
    /// as a crash would.
    pub(crate) static CRASH_AFTER_STEPS: std::cell::Cell<Option<u32>> =
        const { std::cell::Cell::new(None) };
}

/// Counts the disk steps of one truncation and stops at the armed one (tests only).
struct Steps {
    done: u32,
    #[cfg(test)]
    armed: Option<u32>,
}

impl Steps {
    fn new() -> Steps {
        Steps {
            done: 0,
            #[cfg(test)]
            armed: CRASH_AFTER_STEPS.with(|c| c.take()),
        }
    }

    fn step(&mut self) -> Result<(), LogError> {
        self.done += 1;
        #[cfg(test)]
        if self.armed == Some(self.done) {
            return Err(LogError::Io(std::io::Error::other(format!(
                "simulated crash after truncation step {}",
                self.done
            ))));
        }
        Ok(())
    }
}

/// Reopens the append gate when the truncation ends, however it ends.
struct Gate<'a>(&'a PartitionLog);

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        self.0.st.borrow_mut().truncating = false;
        self.0.event.notify_all();
    }
}

/// One append between its reservation and its return; counted so truncation can wait for it.
pub(super) struct InFlight<'a>(&'a PartitionLog);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.st.borrow_mut().appends_in_flight -= 1;
        self.0.event.notify_all();
    }
}

/// Offsets below zero are no log's start.
fn check_start(log: &PartitionLog, offset: Offset) -> Result<(), LogError> {
    if offset.0 >= 0 {
        return Ok(());
    }
    let st = log.st.borrow();
    Err(LogError::OffsetOutOfRange {
        requested: offset,
        log_start: st.log_start,
        log_end: st.leo,
    })
}

impl PartitionLog {
    /// Removes every batch whose base offset is `>= offset`: Kafka's `truncateTo`, for a
    /// follower whose tail diverges from its leader's. Callers pass batch boundaries; an
    /// `offset` inside a batch removes that whole batch too, so the log end offset may end up
    /// below `offset` (it is always the end of the last batch kept). Nothing happens when
    /// `offset` is at or past the log end offset. An `offset` at or below the log start offset,
    /// or one that would keep nothing at or above it, empties the log as
    /// [`PartitionLog::truncate_fully_and_start_at`] does.
    ///
    /// Waits for the appends in flight, then blocks new ones until it is done. Afterwards every
    /// watermark, the segments and their indexes, the max timestamp, the leader-epoch cache and
    /// the producer state describe the remaining log. A crash part way reopens to a valid log
    /// holding the old log cut here or later (see the module docs). A failure part way fails
    /// the log, as a write error does; reopening recovers it.
    pub async fn truncate_to(&self, offset: Offset) -> Result<(), LogError> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        check_start(self, offset)?;
        let _dir = self.dir_lock.acquire_permit(1).await?;
        let _gate = self.close_gate().await?;
        let index = {
            let st = self.st.borrow();
            if offset >= st.leo {
                return Ok(());
            }
            (offset > st.log_start).then(|| st.segment_index_for(offset))
        };
        let cut = match index {
            Some(index) => self.plan_cut(index, offset).await?,
            None => None,
        };
        match cut {
            Some(cut) => self.cut(cut, offset).await,
            None => self.start_over(offset).await,
        }
    }

    /// Drops the whole log and starts it empty at `offset` (log start = log end = `offset`):
    /// Kafka's `truncateFullyAndStartAt`, for a follower whose log end lies outside its leader's
    /// range. The leader-epoch cache and the producer state start empty too.
    ///
    /// Waits as [`PartitionLog::truncate_to`] does. A crash part way reopens to a prefix of the
    /// old log or to an empty one (the segments are deleted, the last first, before the new
    /// log start is written), and the follower starts over again.
    pub async fn truncate_fully_and_start_at(&self, offset: Offset) -> Result<(), LogError> {
        check_start(self, offset)?;
        let _dir = self.dir_lock.acquire_permit(1).await?;
        let _gate = self.close_gate().await?;
        self.start_over(offset).await
    }

    /// Waits until no truncation is under way. An append reserves right after this returns.
    pub(super) async fn truncation_done(&self) {
        loop {
            let listen = self.event.listen();
            if !self.st.borrow().truncating {
                return;
            }
            listen.await;
        }
    }

    /// Counts an append that just reserved, until the returned guard drops.
    pub(super) fn append_in_flight(&self) -> InFlight<'_> {
        self.st.borrow_mut().appends_in_flight += 1;
        InFlight(self)
    }

    /// Closes the append gate and waits for the log to be still (see the module docs).
    async fn close_gate(&self) -> Result<Gate<'_>, LogError> {
        self.st.borrow_mut().truncating = true;
        let gate = Gate(self);
        self.wait_still().await?;
        Ok(gate)
    }

    /// Waits until no append is in flight, nothing is staged or being written, and no flush
    /// round runs. Called once more right before the state changes, with no `.await` between
    /// its return and the change: `flush()` is not gated.
    async fn wait_still(&self) -> Result<(), LogError> {
        loop {
            let listen = self.event.listen();
            {
                let st = self.st.borrow();
                if let Some(e) = st.failed_error() {
                    return Err(e);
                }
                let still = st.appends_in_flight == 0
                    && st.pending.is_empty()
                    && st.staged.is_empty()
                    && !st.writing
                    && !st.flushing;
                if still {
                    return Ok(());
                }
            }
            listen.await;
        }
    }

    /// Finds the cut in segment `index` (the one whose range holds `offset`), re-indexing the
    /// batches it keeps; `None` when nothing at or above the log start would remain. Reads only.
    async fn plan_cut(&self, index: usize, offset: Offset) -> Result<Option<Cut>, LogError> {
        let (old, log_start) = {
            let st = self.st.borrow();
            (st.segments[index].clone(), st.log_start)
        };
        let interval = self.config.borrow().index_interval_bytes;
        let kept = Rc::new(Segment::open(&self.dir, old.base)?);
        kept.reset_state();
        let mut rd = BatchReader::new(&old);
        let mut pos = 0u64;
        while let Some((h, at)) = rd.next().await? {
            if h.last_offset() >= offset.0 {
                break;
            }
            let raises_max = h.max_timestamp > kept.st.borrow().max_timestamp;
            let exact = if raises_max {
                exact_max(&h, rd.bytes(at))
            } else {
                None
            };
            kept.note_batch(&h, pos, interval, exact);
            pos += h.total_len() as u64;
            glommio::yield_if_needed().await;
        }
        let end = {
            let mut s = kept.st.borrow_mut();
            s.committed = s.size;
            s.next_offset
        };
        // A segment left with nothing goes whole; the one before it ends where it began.
        Ok(if pos > 0 && end > log_start {
            Some(Cut::Within { index, pos, kept })
        } else if pos == 0 && index > 0 && old.base > log_start {
            Some(Cut::Segments {
                first_removed: index,
            })
        } else {
            None
        })
    }

    /// Applies a cut planned for `offset`: the state at once, then the disk (see the module
    /// docs).
    async fn cut(&self, cut: Cut, offset: Offset) -> Result<(), LogError> {
        self.wait_still().await?;
        let Some((removed, cut_file, end)) = self.commit_cut(cut) else {
            // DeleteRecords (which takes no lock) moved the log start past the planned end
            // meanwhile: nothing at or above it would remain.
            return self.start_over(offset).await;
        };
        self.event.notify_all();
        let mut steps = Steps::new();
        let result = self.cut_on_disk(&removed, cut_file, end, &mut steps).await;
        self.fail_on(result)
    }

    /// The in-memory side of a cut: returns the removed segments, the cut file with the
    /// position to cut it at, and the new log end; `None`, changing nothing, when the log start
    /// lies at or past that end. Synchronous.
    fn commit_cut(&self, cut: Cut) -> Option<(Vec<Rc<Segment>>, CutFile, Offset)> {
        let mut st = self.st.borrow_mut();
        let end = match &cut {
            Cut::Segments { first_removed } => {
                st.segments[first_removed - 1].st.borrow().next_offset
            }
            Cut::Within { kept, .. } => kept.st.borrow().next_offset,
        };
        if end <= st.log_start {
            return None;
        }
        let (first_removed, cut_file) = match cut {
            Cut::Segments { first_removed } => (first_removed, None),
            Cut::Within { index, pos, kept } => {
                st.segments[index] = kept.clone();
                (index + 1, Some((kept, pos)))
            }
        };
        let removed = st.segments.split_off(first_removed);
        st.leo = end;
        st.hwm = end;
        st.flushed = st.flushed.min(end);
        st.producers.truncate(end);
        // Transactions whose markers go are open again (their first batches may stay).
        for e in st.unreplicated.truncate(end.0) {
            if e.first_offset < end.0 {
                st.producers.reopen(&e);
            }
        }
        if let Some((kept, _)) = &cut_file {
            kept.truncate_aborted(end);
        }
        st.epochs.truncate_from_end(end);
        st.truncations += 1;
        st.check();
        Some((removed, cut_file, end))
    }

    async fn cut_on_disk(
        &self,
        removed: &[Rc<Segment>],
        cut_file: CutFile,
        end: Offset,
        steps: &mut Steps,
    ) -> Result<(), LogError> {
        let (flushed, snapshot) = {
            let st = self.st.borrow();
            (st.flushed, st.producers.encode(end))
        };
        let point = flushed.0.to_string().into_bytes();
        self.write_checkpoint(RECOVERY_POINT, point).await?;
        steps.step()?;
        self.write_checkpoint(PRODUCER_SNAPSHOT, snapshot).await?;
        steps.step()?;
        for seg in removed.iter().rev() {
            seg.delete_files()?;
            steps.step()?;
        }
        if let Some((seg, pos)) = cut_file {
            seg.writer.truncate(pos).await?;
            seg.writer.fdatasync().await?;
            seg.persist_aborted().await?;
            steps.step()?;
        }
        sync_dir_off_shard(self.dir()).await?;
        steps.step()?;
        let epochs = self.st.borrow().epochs.encode();
        self.write_checkpoint(LEADER_EPOCH_CHECKPOINT, epochs)
            .await?;
        steps.step()?;
        self.clamp_cleaner(end).await
    }

    /// Empties the log and starts it at `offset`, with the gate closed. The disk goes first
    /// (readers of the old segments keep reading their unlinked files), then the state.
    async fn start_over(&self, offset: Offset) -> Result<(), LogError> {
        let segments = self.st.borrow().segments.clone();
        let mut steps = Steps::new();
        let result = self.start_over_on_disk(&segments, offset, &mut steps).await;
        let fresh = self.fail_on(result)?;
        self.wait_still().await?;
        {
            let mut st = self.st.borrow_mut();
            st.segments = vec![fresh];
            st.log_start = offset;
            st.leo = offset;
            st.hwm = offset;
            st.flushed = offset;
            st.unflushed_messages = 0;
            st.producers = ProducerState::default();
            st.epochs = LeaderEpochCache::default();
            st.truncations += 1;
            st.check();
        }
        self.event.notify_all();
        let result = self.clamp_cleaner(offset).await;
        self.fail_on(result)
    }

    async fn start_over_on_disk(
        &self,
        segments: &[Rc<Segment>],
        offset: Offset,
        steps: &mut Steps,
    ) -> Result<Rc<Segment>, LogError> {
        for seg in segments.iter().rev() {
            seg.delete_files()?;
            steps.step()?;
        }
        sync_dir_off_shard(self.dir()).await?;
        steps.step()?;
        // With no segment left, a crash from here on reopens an empty log at the log start
        // checkpoint, the old one until the last write and the new one after: its epochs and
        // producers go first, so either way it reopens empty of them.
        let epochs = LeaderEpochCache::default().encode();
        self.write_checkpoint(LEADER_EPOCH_CHECKPOINT, epochs)
            .await?;
        let snapshot = ProducerState::default().encode(offset);
        self.write_checkpoint(PRODUCER_SNAPSHOT, snapshot).await?;
        let start = offset.0.to_string().into_bytes();
        self.write_checkpoint(RECOVERY_POINT, start.clone()).await?;
        steps.step()?;
        self.write_checkpoint(LOG_START_OFFSET, start).await?;
        steps.step()?;
        let fresh = Rc::new(Segment::create(self.dir(), offset)?);
        sync_dir_off_shard(self.dir()).await?;
        Ok(fresh)
    }

    /// A truncation that failed part way leaves the state and the disk apart: the log fails,
    /// as on a write error, and the next open recovers from the disk.
    fn fail_on<T>(&self, result: Result<T, LogError>) -> Result<T, LogError> {
        if let Err(e) = &result {
            tracing::error!(dir = %self.dir.display(), "log truncation failed: {e}");
            self.st
                .borrow_mut()
                .failed
                .get_or_insert_with(|| e.to_string());
            self.event.notify_all();
        }
        result
    }
}

//! Opening a partition log, and crash recovery.
//!
//! With the clean-shutdown marker present every segment's index files are trusted (after
//! Kafka's sanity checks) and nothing is scanned. Without it, every segment from the one holding
//! `min(recovery point, producer snapshot offset)` onwards is scanned batch by batch with its
//! CRC checked; the log is truncated at the first torn or corrupt batch (later segments are
//! deleted), and indexes, producer state and leader epochs are rebuilt from what remains. An
//! index is never trusted over the log: a segment whose index files fail the checks is
//! re-indexed from its `.log`.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::batch::{self, BatchHeader};
use super::epoch::LeaderEpochCache;
use super::files::sync_dir;
use super::partition::{
    PartitionLog, State, CLEAN_SHUTDOWN, LEADER_EPOCH_CHECKPOINT, LOG_START_OFFSET,
    PRODUCER_SNAPSHOT, RECOVERY_POINT,
};
use super::producer::ProducerState;
use super::segment::Segment;
use super::{now_ms, LogConfig, LogError, Offset};
use crate::config::RECOVERY_READ_CHUNK_BYTES;

/// What recovery carries from segment to segment.
struct Rebuild {
    producers: ProducerState,
    unreplicated: super::txn::Unreplicated,
    /// Batches at or after this offset are replayed into `producers`.
    replay_from: Offset,
    epochs: LeaderEpochCache,
    interval: u32,
}

impl PartitionLog {
    /// Opens (creating if needed) the partition directory `dir`, recovering after a crash.
    pub async fn open(dir: PathBuf, config: LogConfig) -> Result<PartitionLog, LogError> {
        std::fs::create_dir_all(&dir)?;
        super::swap::finish_interrupted_swaps(&dir)?;
        let bases = list_segments(&dir)?;
        let clean = dir.join(CLEAN_SHUTDOWN).exists();
        let recovery_point = read_offset(&dir.join(RECOVERY_POINT)).unwrap_or(Offset(0));
        let log_start = read_offset(&dir.join(LOG_START_OFFSET)).unwrap_or(Offset(0));
        let snapshot = std::fs::read(dir.join(PRODUCER_SNAPSHOT))
            .ok()
            .and_then(|b| ProducerState::decode(&b));
        let (producers, replay_from) =
            snapshot.unwrap_or_else(|| (ProducerState::default(), Offset(0)));
        let epochs = std::fs::read(dir.join(LEADER_EPOCH_CHECKPOINT))
            .ok()
            .and_then(|b| LeaderEpochCache::decode(&b))
            .unwrap_or_default();
        let scan_from = if clean {
            replay_from
        } else {
            recovery_point.min(replay_from)
        };
        let mut rb = Rebuild {
            producers,
            unreplicated: Default::default(),
            replay_from,
            epochs,
            interval: config.index_interval_bytes,
        };
        let segments = load_segments(&dir, &bases, log_start, clean, scan_from, &mut rb).await?;
        let st = finish_state(segments, log_start, rb);
        if !clean {
            // The scanned tail may be only in the page cache; make it durable before serving.
            st.active().writer.fdatasync().await?;
        }
        // Forget the marker before accepting writes, durably, or a later crash would be taken
        // for a clean shutdown.
        match std::fs::remove_file(dir.join(CLEAN_SHUTDOWN)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        sync_dir(&dir)?;
        Ok(PartitionLog::from_parts(dir, config, st))
    }
}

/// Base offsets of the `.log` files in `dir`, sorted; leftover temporary files are removed.
fn list_segments(dir: &Path) -> io::Result<Vec<Offset>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if ext == "tmp" {
            std::fs::remove_file(&path)?;
        } else if ext == "log" && stem.len() == 20 {
            if let Ok(base) = stem.parse::<i64>() {
                bases.push(Offset(base));
            }
        }
    }
    bases.sort();
    Ok(bases)
}

fn read_offset(path: &Path) -> Option<Offset> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse().ok().map(Offset)
}

/// Opens every segment, trusting or scanning each as described in the module docs.
async fn load_segments(
    dir: &Path,
    bases: &[Offset],
    log_start: Offset,
    clean: bool,
    scan_from: Offset,
    rb: &mut Rebuild,
) -> Result<Vec<Rc<Segment>>, LogError> {
    let mut segments: Vec<Rc<Segment>> = Vec::new();
    for (i, &base) in bases.iter().enumerate() {
        let seg = Rc::new(Segment::open(dir, base)?);
        let holds_scan_point = bases.get(i + 1).is_none_or(|next| *next > scan_from);
        let expected = segments
            .last()
            .map(|s| s.st.borrow().next_offset)
            .unwrap_or(base);
        if base != expected {
            // A segment that does not continue the log (left behind by an earlier truncation):
            // drop it and everything after it.
            delete_from(dir, &bases[i..])?;
            break;
        }
        let must_scan = !clean && holds_scan_point;
        if !must_scan && seg.load_indexes()? {
            if base >= rb.replay_from || holds_scan_point {
                replay_headers(&seg, rb)?;
            }
            segments.push(seg);
            continue;
        }
        let valid_end = scan_segment(&seg, rb).await?;
        let size = seg.reader.metadata()?.len();
        segments.push(seg.clone());
        if valid_end < size {
            tracing::warn!(dir = %dir.display(), base = base.0, valid_end, size,
                "truncating torn or corrupt log tail");
            seg.writer.truncate(valid_end).await?;
            delete_from(dir, &bases[i + 1..])?;
            break;
        }
    }
    if segments.is_empty() {
        let base = log_start.max(Offset(0));
        segments.push(Rc::new(Segment::create(dir, base)?));
    }
    Ok(segments)
}

fn delete_from(dir: &Path, bases: &[Offset]) -> io::Result<()> {
    for &base in bases {
        for ext in ["log", "index", "timeindex", super::txn::TXN_INDEX_EXT] {
            match std::fs::remove_file(dir.join(super::segment::file_name(base, ext))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Notes one recovered batch (`bytes`: at least the whole batch if it is a control batch):
/// producer state and transactions after the snapshot point, leader epochs.
fn replay_batch(seg: &Segment, h: &BatchHeader, bytes: &[u8], rb: &mut Rebuild) {
    if h.base_offset >= rb.replay_from.0 {
        super::txn::record_stored(&mut rb.producers, &mut rb.unreplicated, seg, h, bytes);
    }
    rb.epochs
        .assign(h.partition_leader_epoch, Offset(h.base_offset));
}

/// Replays the headers of a trusted segment (no CRC) into the producer state and epochs.
fn replay_headers(seg: &Segment, rb: &mut Rebuild) -> io::Result<()> {
    let size = seg.st.borrow().size;
    let start = Offset(rb.replay_from.0.max(seg.base.0));
    let mut pos = match seg.find_batch(start)? {
        Some((p, _)) => p,
        None => return Ok(()),
    };
    let mut hdr = [0u8; batch::HEADER_LEN];
    while pos + batch::HEADER_LEN as u64 <= size {
        seg.read_exact_at(pos, &mut hdr)?;
        let Some(h) = batch::parse_header(&hdr).filter(|h| h.batch_length > 0) else {
            break;
        };
        // A marker's type is in its record: read the whole (small) control batch.
        let mut control = Vec::new();
        if h.is_control() {
            control.resize(h.total_len(), 0);
            seg.read_exact_at(pos, &mut control)?;
        }
        replay_batch(seg, &h, &control, rb);
        pos += h.total_len() as u64;
    }
    Ok(())
}

/// Scans a segment from its start, CRC-checking every batch and requiring offsets to grow from
/// the segment's base; rebuilds its indexes. Returns the end of the last valid batch.
async fn scan_segment(seg: &Segment, rb: &mut Rebuild) -> io::Result<u64> {
    seg.reset_state();
    let size = seg.reader.metadata()?.len();
    let mut chunk = ChunkReader::new(seg, size);
    let mut pos = 0u64;
    let mut expected = seg.base.0;
    while let Some(head) = chunk.get(pos, batch::LOG_OVERHEAD)? {
        let Some((_, len)) = batch::peek_offset_and_len(head) else {
            break;
        };
        let Some(bytes) = chunk.get(pos, len)? else {
            break;
        };
        // Offsets only grow: compaction leaves gaps between batches, as in Kafka. A negative
        // lastOffsetDelta, or a last offset with no successor, is corruption (found by the
        // segment_recovery fuzz target: it made the log end offset negative).
        let Some(h) = batch::check_stored(bytes).filter(|h| {
            h.base_offset >= expected && h.last_offset_delta >= 0 && h.last_offset() < i64::MAX
        }) else {
            break;
        };
        // Finding the exact record costs a parse; only batches that raise the max need it.
        let raises_max = h.max_timestamp > seg.st.borrow().max_timestamp;
        let exact = if raises_max {
            exact_max(&h, bytes)
        } else {
            None
        };
        seg.note_batch(&h, pos, rb.interval, exact);
        replay_batch(seg, &h, bytes, rb);
        pos += len as u64;
        expected = h.last_offset() + 1;
        glommio::yield_if_needed().await;
    }
    let mut st = seg.st.borrow_mut();
    st.size = pos;
    st.committed = pos;
    Ok(pos)
}

/// Offset of the record carrying the batch's max timestamp, as appends compute it.
pub(crate) fn exact_max(h: &BatchHeader, bytes: &[u8]) -> Option<i64> {
    if h.is_log_append_time() {
        Some(h.base_offset)
    } else {
        batch::first_record_at_or_after(bytes, 0, h.max_timestamp).map(|r| r.0)
    }
}

/// Large positional reads over a segment, so a scan costs one syscall per chunk rather than
/// per batch.
struct ChunkReader<'a> {
    seg: &'a Segment,
    size: u64,
    buf: Vec<u8>,
    buf_pos: u64,
}

impl<'a> ChunkReader<'a> {
    fn new(seg: &'a Segment, size: u64) -> Self {
        ChunkReader {
            seg,
            size,
            buf: Vec::new(),
            buf_pos: 0,
        }
    }

    /// `n` bytes at `pos`, or `None` when the file ends first.
    fn get(&mut self, pos: u64, n: usize) -> io::Result<Option<&[u8]>> {
        if pos + n as u64 > self.size {
            return Ok(None);
        }
        let inside = pos >= self.buf_pos && pos + n as u64 <= self.buf_pos + self.buf.len() as u64;
        if !inside {
            let len = (n.max(RECOVERY_READ_CHUNK_BYTES) as u64).min(self.size - pos) as usize;
            self.buf.resize(len, 0);
            self.seg.read_exact_at(pos, &mut self.buf)?;
            self.buf_pos = pos;
        }
        let at = (pos - self.buf_pos) as usize;
        Ok(Some(&self.buf[at..at + n]))
    }
}

/// Builds the in-memory state from the loaded segments.
fn finish_state(segments: Vec<Rc<Segment>>, log_start: Offset, mut rb: Rebuild) -> State {
    let leo = segments
        .last()
        .map(|s| s.st.borrow().next_offset)
        .unwrap_or(Offset(0));
    let first = segments.first().map_or(leo, |s| s.base);
    let log_start = log_start.max(first).min(leo);
    rb.producers.truncate(leo);
    if let Some(last) = segments.last() {
        // A torn tail took its markers with it.
        last.truncate_aborted(leo);
    }
    rb.epochs.truncate_from_end(leo);
    rb.epochs.truncate_from_start(log_start);
    State {
        segments,
        log_start,
        hwm: leo,
        leo,
        flushed: leo,
        pending: VecDeque::new(),
        pending_head: 0,
        staged: VecDeque::new(),
        writing: false,
        flushing: false,
        last_flush_ms: now_ms(),
        unflushed_messages: 0,
        dir_dirty: false,
        flush_rounds: 0,
        producers: rb.producers,
        unreplicated: rb.unreplicated,
        epochs: rb.epochs,
        failed: None,
        appends_in_flight: 0,
        truncating: false,
        truncations: 0,
    }
}

//! One segment: a `.log` file of whole record batches, its in-memory indexes, and two handles:
//! an io_uring `BufferedFile` for appends and fsyncs, and a plain read-only `Arc<File>` that is
//! handed to readers (and to sendfile) and that outlives an unlink by retention.
//!
//! A segment lives on its partition's shard; its mutable state is in a `RefCell` that is never
//! borrowed across an `.await`.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use glommio::io::BufferedFile;

use super::batch::{self, BatchHeader};
use super::files::{replace_durably, to_glommio};
use super::index::{OffsetIndex, TimeIndex};
use super::txn::{AbortedTxn, TXN_INDEX_EXT};
use super::{FilePos, Offset};

/// Mutable state of a segment.
#[derive(Debug)]
pub(crate) struct SegState {
    /// Bytes reserved by appends, including writes still in flight.
    pub size: u64,
    /// Bytes below the high watermark: what readers may see.
    pub committed: u64,
    /// Offset after the last reserved batch.
    pub next_offset: Offset,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    bytes_since_index: u64,
    /// Largest timestamp in the segment, -1 when it has no batch.
    pub max_timestamp: i64,
    /// Offset of the first record carrying `max_timestamp` (see [`Segment::note_batch`]).
    pub offset_of_max: Offset,
    /// Wall-clock time the segment was created or opened, for `segment.ms`.
    pub created_ms: i64,
    /// The in-memory indexes differ from the files on disk.
    pub index_dirty: bool,
    /// The aborted transactions whose ABORT marker is in this segment, in marker order
    /// (`txn.rs`). Loaded from `.txnindex` at open and kept through a recovery scan, which
    /// adds the markers it replays.
    pub aborted: Vec<AbortedTxn>,
    /// `aborted` differs from the `.txnindex` file.
    pub aborted_dirty: bool,
}

/// One `.log` segment of a partition.
pub(crate) struct Segment {
    pub base: Offset,
    dir: PathBuf,
    pub writer: Rc<BufferedFile>,
    pub reader: Arc<File>,
    pub st: RefCell<SegState>,
}

/// Kafka's file name: the base offset in 20 digits plus an extension.
pub(crate) fn file_name(base: Offset, ext: &str) -> String {
    format!("{:020}.{ext}", base.0)
}

impl Segment {
    fn open_files(dir: &Path, base: Offset, path: &Path, create: bool) -> io::Result<Segment> {
        let w = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(create)
            .open(path)?;
        let size = w.metadata()?.len();
        let reader = Arc::new(File::open(path)?);
        let aborted = match create {
            true => Vec::new(),
            false => std::fs::read(dir.join(file_name(base, TXN_INDEX_EXT)))
                .ok()
                .and_then(|b| AbortedTxn::decode_all(&b))
                .unwrap_or_default(),
        };
        Ok(Segment {
            base,
            dir: dir.to_path_buf(),
            writer: Rc::new(to_glommio(w)),
            reader,
            st: RefCell::new(SegState {
                size,
                committed: size,
                next_offset: base,
                index: OffsetIndex::default(),
                time_index: TimeIndex::default(),
                bytes_since_index: 0,
                max_timestamp: -1,
                offset_of_max: base,
                created_ms: super::now_ms(),
                index_dirty: create,
                aborted,
                aborted_dirty: false,
            }),
        })
    }

    /// Creates an empty segment (truncating a stale file of the same name).
    pub(crate) fn create(dir: &Path, base: Offset) -> io::Result<Segment> {
        Segment::open_files(dir, base, &dir.join(file_name(base, "log")), true)
    }

    /// Creates an empty segment for `base` in a file at `path` that is renamed to the
    /// segment's own name later (compaction's `.cleaned` file): the handles follow the rename.
    pub(crate) fn create_at(dir: &Path, base: Offset, path: &Path) -> io::Result<Segment> {
        Segment::open_files(dir, base, path, true)
    }

    /// Opens an existing segment; its indexes are empty until loaded or rebuilt.
    pub(crate) fn open(dir: &Path, base: Offset) -> io::Result<Segment> {
        Segment::open_files(dir, base, &dir.join(file_name(base, "log")), false)
    }

    pub(crate) fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(file_name(self.base, ext))
    }

    /// Offset relative to the base, as the indexes store it. Appends roll before this overflows.
    pub(crate) fn rel(&self, offset: Offset) -> u32 {
        u32::try_from(offset.0 - self.base.0).unwrap_or(u32::MAX)
    }

    /// Accounts for one batch placed at `pos` (by an append or a scan): sizes, next offset,
    /// max timestamp and the sparse index entries every `interval` bytes, as Kafka places them.
    /// `exact_max` is the offset of the record with the batch's max timestamp when known.
    pub(crate) fn note_batch(
        &self,
        h: &BatchHeader,
        pos: u64,
        interval: u32,
        exact_max: Option<i64>,
    ) {
        let mut st = self.st.borrow_mut();
        let len = h.total_len() as u64;
        if st.bytes_since_index >= u64::from(interval) {
            let rel = self.rel(Offset(h.base_offset));
            st.index.push(rel, pos as u32);
            if st.max_timestamp >= 0 {
                let (ts, at) = (st.max_timestamp, self.rel(st.offset_of_max));
                st.time_index.push(ts, at);
            }
            st.bytes_since_index = 0;
        }
        st.bytes_since_index += len;
        if h.max_timestamp > st.max_timestamp {
            st.max_timestamp = h.max_timestamp;
            st.offset_of_max = Offset(exact_max.unwrap_or(h.base_offset));
        }
        st.size = st.size.max(pos + len);
        st.next_offset = Offset(h.last_offset() + 1);
        st.index_dirty = true;
    }

    /// Reads `n` header bytes at `pos` from the read-only descriptor (page cache, no record
    /// bytes beyond the header).
    pub(crate) fn read_exact_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        self.reader.read_exact_at(buf, pos)
    }

    /// Reads header bytes at `pos` from the page cache only (`preadv2` with `RWF_NOWAIT`). When
    /// the bytes are not cached, it fails with [`io::ErrorKind::WouldBlock`] carrying a
    /// [`Cold`] position instead of waiting for the disk on the shard's thread; the caller
    /// faults the pages in ([`Segment::warm`]) and retries.
    pub(crate) fn read_cached_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match pread_nowait(&self.reader, &mut buf[done..], pos + done as u64) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        Cold(pos + done as u64),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Brings the bytes from `pos` on into the page cache through io_uring (whose worker
    /// threads wait for the disk, not the shard), a chunk at a time so that a walk over the
    /// following headers finds them cached too.
    pub(crate) async fn warm(&self, pos: u64) -> io::Result<()> {
        let start = pos & !(WARM_ALIGN - 1);
        self.writer.read_at(start, WARM_BYTES).await?;
        Ok(())
    }

    /// Position and header of the batch containing `target`, within the committed bytes.
    /// Starts at the sparse index entry and skips whole batches by their length fields.
    /// May wait for the disk: for open, recovery and tests; the request path uses
    /// [`Segment::find_batch_cached`].
    pub(crate) fn find_batch(&self, target: Offset) -> io::Result<Option<(u64, BatchHeader)>> {
        self.find_batch_by(target, |pos, buf| self.read_exact_at(pos, buf))
    }

    /// [`Segment::find_batch`] from the page cache only: a miss is a [`Cold`] error.
    pub(crate) fn find_batch_cached(
        &self,
        target: Offset,
    ) -> io::Result<Option<(u64, BatchHeader)>> {
        self.find_batch_by(target, |pos, buf| self.read_cached_at(pos, buf))
    }

    fn find_batch_by(
        &self,
        target: Offset,
        mut read: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    ) -> io::Result<Option<(u64, BatchHeader)>> {
        let (mut pos, committed) = {
            let st = self.st.borrow();
            let rel = self.rel(target.max(self.base));
            (u64::from(st.index.lookup(rel)), st.committed)
        };
        let mut hdr = [0u8; batch::HEADER_LEN];
        while pos + batch::HEADER_LEN as u64 <= committed {
            read(pos, &mut hdr)?;
            let h = batch::parse_header(&hdr).ok_or_else(corrupt)?;
            if h.batch_length < (batch::HEADER_LEN - batch::LOG_OVERHEAD) as i32 {
                return Err(corrupt());
            }
            if h.last_offset() >= target.0 {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// End of the range of whole batches starting at `start` (whose first batch ends at
    /// `first_end`) that fits in `start + max_bytes` (KIP-74: the first batch always counts whole).
    ///
    /// Never past `committed`: an append adds its index entry when it reserves its bytes, long
    /// before they are written, so the limit is clamped to the written prefix *before* the index
    /// is asked for a batch boundary below it. (Asking first let a fetch range end at the entry
    /// of a batch still in flight: sendfile then hit the end of the file, issue 10.)
    ///
    /// May wait for the disk, as [`Segment::find_batch`] may.
    pub(crate) fn range_end(&self, start: u64, first_end: u64, max_bytes: u32) -> io::Result<u64> {
        self.range_end_by(start, first_end, max_bytes, |pos, buf| {
            self.read_exact_at(pos, buf)
        })
    }

    /// [`Segment::range_end`] from the page cache only: a miss is a [`Cold`] error.
    pub(crate) fn range_end_cached(
        &self,
        start: u64,
        first_end: u64,
        max_bytes: u32,
    ) -> io::Result<u64> {
        self.range_end_by(start, first_end, max_bytes, |pos, buf| {
            self.read_cached_at(pos, buf)
        })
    }

    fn range_end_by(
        &self,
        start: u64,
        first_end: u64,
        max_bytes: u32,
        mut read: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        let (limit, from_index) = {
            let st = self.st.borrow();
            let limit = start.saturating_add(u64::from(max_bytes)).min(st.committed);
            let floor = st.index.floor_pos(limit.min(u64::from(u32::MAX)) as u32);
            (limit, floor.map(u64::from))
        };
        if first_end >= limit {
            return Ok(first_end);
        }
        // An index entry is a batch boundary: jump to the last one below the limit, then walk.
        let mut pos = from_index.filter(|&p| p > first_end).unwrap_or(first_end);
        let mut head = [0u8; batch::LOG_OVERHEAD];
        while pos + batch::LOG_OVERHEAD as u64 <= limit {
            read(pos, &mut head)?;
            let (_, len) = batch::peek_offset_and_len(&head).ok_or_else(corrupt)?;
            if pos + len as u64 > limit {
                break;
            }
            pos += len as u64;
        }
        debug_assert!(pos <= limit, "a read range ends past the written bytes");
        Ok(pos)
    }

    /// Writes the indexes to `.index` / `.timeindex` (Kafka's format), first making sure the
    /// time index ends with the segment's max timestamp so it can be reloaded without a scan.
    pub(crate) async fn persist_indexes(&self) -> io::Result<()> {
        self.persist_aborted().await?;
        let (index, time_index) = {
            let mut st = self.st.borrow_mut();
            if !st.index_dirty {
                return Ok(());
            }
            if st.max_timestamp >= 0 {
                let (ts, at) = (st.max_timestamp, self.rel(st.offset_of_max));
                st.time_index.push(ts, at);
            }
            st.index_dirty = false;
            (st.index.encode(), st.time_index.encode())
        };
        replace_durably(&self.path("index"), index).await?;
        replace_durably(&self.path("timeindex"), time_index).await
    }

    /// Writes `.txnindex` when the aborted transactions changed (an empty list removes it).
    pub(crate) async fn persist_aborted(&self) -> io::Result<()> {
        let data = {
            let mut st = self.st.borrow_mut();
            if !st.aborted_dirty {
                return Ok(());
            }
            st.aborted_dirty = false;
            let mut data = Vec::new();
            st.aborted.iter().for_each(|a| a.encode_into(&mut data));
            data
        };
        let path = self.path(TXN_INDEX_EXT);
        if data.is_empty() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        replace_durably(&path, data).await
    }

    /// Notes an aborted transaction whose marker is in this segment; a replay of one already
    /// known changes nothing.
    pub(crate) fn note_aborted(&self, a: AbortedTxn) {
        let mut st = self.st.borrow_mut();
        if !st.aborted.iter().any(|x| x.last_offset == a.last_offset) {
            st.aborted.push(a);
            st.aborted.sort_by_key(|x| x.last_offset);
            st.aborted_dirty = true;
        }
    }

    /// Forgets the aborted transactions whose marker is at or past `end` (a truncation).
    pub(crate) fn truncate_aborted(&self, end: Offset) {
        let mut st = self.st.borrow_mut();
        let before = st.aborted.len();
        st.aborted.retain(|a| a.last_offset < end.0);
        st.aborted_dirty |= st.aborted.len() != before;
    }

    /// Loads the index files if they pass Kafka's sanity checks, then walks the batches after
    /// the last index entry to find the end offset. Returns false when the files are missing or
    /// damaged (the caller rebuilds from the log).
    pub(crate) fn load_indexes(&self) -> io::Result<bool> {
        let size = self.st.borrow().size;
        let index = std::fs::read(self.path("index")).ok();
        let time = std::fs::read(self.path("timeindex")).ok();
        let (Some(index), Some(time)) = (
            index.and_then(|b| OffsetIndex::decode(&b, size.max(1))),
            time.and_then(|b| TimeIndex::decode(&b)),
        ) else {
            return Ok(false);
        };
        let mut pos = u64::from(index.floor_pos(u32::MAX).unwrap_or(0));
        let mut next = self.base;
        let mut hdr = [0u8; batch::HEADER_LEN];
        while pos + batch::HEADER_LEN as u64 <= size {
            self.read_exact_at(pos, &mut hdr)?;
            let Some(h) = batch::parse_header(&hdr).filter(|h| h.batch_length > 0) else {
                return Ok(false);
            };
            next = Offset(h.last_offset() + 1);
            pos += h.total_len() as u64;
        }
        if pos != size {
            return Ok(false);
        }
        let mut st = self.st.borrow_mut();
        if let Some((ts, rel)) = time.last() {
            st.max_timestamp = ts;
            st.offset_of_max = Offset(self.base.0 + i64::from(rel));
        }
        st.index = index;
        st.time_index = time;
        st.next_offset = next;
        st.bytes_since_index = 0;
        st.index_dirty = false;
        Ok(true)
    }

    /// Forgets everything at or past `pos` in memory (recovery truncation; the caller truncates
    /// the file) and clears the index state so it can be rebuilt by re-noting batches.
    pub(crate) fn reset_state(&self) {
        let mut st = self.st.borrow_mut();
        st.size = 0;
        st.committed = 0;
        st.next_offset = self.base;
        st.index = OffsetIndex::default();
        st.time_index = TimeIndex::default();
        st.bytes_since_index = 0;
        st.max_timestamp = -1;
        st.offset_of_max = self.base;
        st.index_dirty = true;
    }

    /// Removes the segment's files. Readers holding `reader` keep reading the unlinked file.
    pub(crate) fn delete_files(&self) -> io::Result<()> {
        for ext in ["log", "index", "timeindex", TXN_INDEX_EXT] {
            match std::fs::remove_file(self.path(ext)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    pub(crate) fn committed_pos(&self) -> FilePos {
        FilePos(self.st.borrow().committed)
    }
}

/// Bytes [`Segment::warm`] reads: a few index intervals' worth of batch headers, so a cold walk
/// costs a few io_uring reads rather than one per header.
const WARM_BYTES: usize = 256 << 10;
/// Page alignment of a warming read.
const WARM_ALIGN: u64 = 4096;

/// Where a page-cache-only read found no cached page (the payload of its `WouldBlock` error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cold(pub u64);

impl std::fmt::Display for Cold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "segment bytes at {} are not in the page cache", self.0)
    }
}

impl std::error::Error for Cold {}

/// The position of a [`Segment::read_cached_at`] miss, if `e` is one.
pub(crate) fn cold_at(e: &io::Error) -> Option<u64> {
    if e.kind() != io::ErrorKind::WouldBlock {
        return None;
    }
    e.get_ref()?.downcast_ref::<Cold>().map(|c| c.0)
}

/// Whether the kernel and file system refuse `RWF_NOWAIT` (before Linux 4.14, or a file system
/// without support): then reads fall back to plain `pread`, which may wait for the disk.
static NOWAIT_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

#[cfg(test)]
thread_local! {
    /// Page-cache-only reads on this thread that report a miss whatever the cache holds, so
    /// tests can drive the warm-and-retry path deterministically.
    pub(crate) static FORCE_COLD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn pread_nowait(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    #[cfg(test)]
    if FORCE_COLD.with(|c| c.replace(c.get().saturating_sub(1))) > 0 {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    if NOWAIT_UNSUPPORTED.load(Ordering::Relaxed) {
        return file.read_at(buf, pos);
    }
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let offset =
        libc::off_t::try_from(pos).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `iov` describes `buf`, which outlives the call; the descriptor is open.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
    if n >= 0 {
        return Ok(n as usize);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) => Err(io::ErrorKind::WouldBlock.into()),
        Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => {
            NOWAIT_UNSUPPORTED.store(true, Ordering::Relaxed);
            tracing::warn!("preadv2(RWF_NOWAIT) is not supported here ({e}); segment header reads may block the shard on a cold page cache");
            file.read_at(buf, pos)
        }
        _ => Err(e),
    }
}

fn corrupt() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "corrupt batch header in segment",
    )
}

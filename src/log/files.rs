//! Small file helpers and a single-shard wake-up primitive.
//!
//! Bulk data goes through glommio's io_uring `BufferedFile`. File creation, rename and unlink
//! use plain syscalls: they are metadata operations of microseconds, and doing them
//! synchronously lets an append assign its offsets and create a rolled segment before its first
//! `.await`, which is what keeps offsets in call order.

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io;
use std::os::unix::io::{FromRawFd, IntoRawFd};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use glommio::io::BufferedFile;

/// Turns a std file into a glommio one (same descriptor, no I/O).
pub(crate) fn to_glommio(file: File) -> BufferedFile {
    // SAFETY: `into_raw_fd` gives up ownership of a valid open descriptor, which the
    // BufferedFile now owns and closes.
    unsafe { BufferedFile::from_raw_fd(file.into_raw_fd()) }
}

/// Writes `buf` at `pos` through io_uring (which takes ownership of the buffer).
///
/// A short write to a regular file only happens when the disk is full or a file size limit is
/// hit; the bytes are gone with the buffer, so it is reported as an error and the caller fails
/// the log, as Kafka takes a log directory offline on a write error.
pub(crate) async fn write_all_at(file: &BufferedFile, buf: Vec<u8>, pos: u64) -> io::Result<()> {
    let len = buf.len();
    let n = file.write_at(buf, pos).await?;
    if n == len {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {n} of {len} bytes at {pos} (disk full?)"),
        ))
    }
}

/// Replaces `path` atomically with `data`, durably: write a temporary file, fdatasync it, rename
/// it over the old one. A crash leaves either the old or the new content.
pub(crate) async fn replace_durably(path: &Path, data: Vec<u8>) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let f = to_glommio(f);
    let len = data.len();
    if len > 0 {
        write_all_at(&f, data, 0).await?;
    }
    f.fdatasync().await?;
    f.close().await?;
    std::fs::rename(&tmp, path)
}

/// fsyncs a directory so that created, renamed and removed entries survive a crash.
/// Blocking: for start-up and tests; a shard serving requests uses [`sync_dir_off_shard`].
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// [`sync_dir`] on the executor's blocking thread pool. A directory fsync waits for the file
/// system's journal commit (milliseconds, far more under writeback), and on the reactor thread it
/// would stall every connection and partition of the shard for that long. The same `fsync` as
/// [`sync_dir`] rather than io_uring's, so that what is durable when it returns is unchanged.
pub(crate) async fn sync_dir_off_shard(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || sync_dir(&dir))
        .await
}

/// Wakes every waiting task of this shard when the log's watermarks move. Waiters re-check
/// their condition after each wake-up, so spurious wake-ups are harmless.
#[derive(Default)]
pub(crate) struct Event {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Event {
    pub(crate) fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// A future that completes at the next `notify_all` after this call.
    pub(crate) fn listen(&self) -> Listen<'_> {
        Listen {
            event: self,
            generation: self.generation.get(),
        }
    }
}

pub(crate) struct Listen<'a> {
    event: &'a Event,
    generation: u64,
}

impl Future for Listen<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.generation.get() != self.generation {
            return Poll::Ready(());
        }
        self.event.wakers.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

//! The crash-safe replacement of segments by their compacted copy (Kafka's `.cleaned` →
//! `.swap` → rename protocol), and its completion at open.
//!
//! A group of segments `[B, …)` is replaced by one new segment named after the first, `B`:
//!
//! 1. the cleaner writes `B.log.cleaned` and fdatasyncs it;
//! 2. renames it to `B.log.swap` and fsyncs the directory: the commit point;
//! 3. removes the replaced segments' files (all but `B.log`, which step 4 replaces atomically)
//!    and fsyncs the directory;
//! 4. renames `B.log.swap` to `B.log` and fsyncs the directory.
//!
//! At open, [`finish_interrupted_swaps`] runs before anything else: a `.cleaned` file is an
//! uncommitted pass and is removed (the old segments are intact); a `.swap` file is a committed
//! one, so steps 3 and 4 are redone. Which segments a swap replaces is read from the swap file
//! itself: every segment whose base offset lies in `[B, end of the swap)`. That end is exact
//! because the cleaner always keeps the last batch of a group (as an empty header if need be).
//! Both steps are idempotent, so a crash during recovery is recovered the same way. So the
//! directory always holds the old segment set or the new one, never a mix, and never neither.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::batch;
use super::files::sync_dir;
use super::segment::file_name;
use super::Offset;

/// Suffix of a compacted segment being written (not yet committed).
const CLEANED: &str = "cleaned";
/// Suffix of a committed compacted segment not yet renamed into place.
const SWAP: &str = "swap";
/// The files of one segment.
const SEGMENT_EXTS: [&str; 4] = ["log", "index", "timeindex", super::txn::TXN_INDEX_EXT];

pub(crate) fn cleaned_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{}.{CLEANED}", file_name(base, "log")))
}

fn swap_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{}.{SWAP}", file_name(base, "log")))
}

/// Steps of [`install`] after which a test may simulate a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Cleaned,
    Committed,
    Removed,
}

#[cfg(test)]
thread_local! {
    /// The step after which the next `install` on this thread stops, as a crash would.
    pub(crate) static CRASH_AFTER: std::cell::Cell<Option<Step>> = const { std::cell::Cell::new(None) };
}

/// The simulated crash armed for this `install` (read on the shard's thread, where the test
/// armed it, because the steps run on the blocking pool).
#[cfg(test)]
fn take_crash_point() -> Option<Step> {
    CRASH_AFTER.with(|c| c.take())
}

#[cfg(not(test))]
fn take_crash_point() -> Option<Step> {
    None
}

fn crash_point(armed: Option<Step>, step: Step) -> io::Result<()> {
    if armed == Some(step) {
        return Err(io::Error::other(format!("simulated crash after {step:?}")));
    }
    Ok(())
}

/// Steps 2–4 for the group of segments with these base offsets; the first is the new name.
///
/// The steps run in order, unchanged, on the executor's blocking thread pool: each of the three
/// directory fsyncs waits for a journal commit, which on the reactor thread would stall every
/// connection of the shard. The caller keeps the segment list consistent meanwhile (it holds
/// the partition's directory lock and splices the list only after this returns), and readers
/// keep the old segments' open descriptors, which renames and unlinks do not disturb.
pub(crate) async fn install(dir: &Path, replaced: &[Offset]) -> io::Result<()> {
    let armed = take_crash_point();
    let (dir, replaced) = (dir.to_path_buf(), replaced.to_vec());
    glommio::executor()
        .spawn_blocking(move || install_steps(&dir, &replaced, armed))
        .await
}

fn install_steps(dir: &Path, replaced: &[Offset], armed: Option<Step>) -> io::Result<()> {
    let base = replaced[0];
    crash_point(armed, Step::Cleaned)?;
    std::fs::rename(cleaned_path(dir, base), swap_path(dir, base))?;
    sync_dir(dir)?;
    crash_point(armed, Step::Committed)?;
    remove_replaced(dir, base, replaced)?;
    sync_dir(dir)?;
    crash_point(armed, Step::Removed)?;
    std::fs::rename(swap_path(dir, base), dir.join(file_name(base, "log")))?;
    sync_dir(dir)
}

/// Removes the files of the replaced segments, except `base`'s `.log`, which the swap replaces
/// by rename, and `base`'s `.txnindex`, which the cleaner rewrote before the swap with the
/// aborted transactions of the whole group. Missing files are fine: this also redoes an
/// interrupted removal.
fn remove_replaced(dir: &Path, base: Offset, replaced: &[Offset]) -> io::Result<()> {
    for &b in replaced {
        for ext in SEGMENT_EXTS {
            if b == base && (ext == "log" || ext == super::txn::TXN_INDEX_EXT) {
                continue;
            }
            match std::fs::remove_file(dir.join(file_name(b, ext))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Completes or rolls back every swap a crash interrupted (see the module docs).
pub(crate) fn finish_interrupted_swaps(dir: &Path) -> io::Result<()> {
    let mut swaps = Vec::new();
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let base = name
            .get(..20)
            .and_then(|s| s.parse::<i64>().ok())
            .map(Offset);
        if name.ends_with(&format!(".log.{CLEANED}")) {
            std::fs::remove_file(&path)?;
        } else if let Some(b) = base.filter(|_| name.ends_with(&format!(".log.{SWAP}"))) {
            swaps.push(b);
        } else if let Some(b) = base.filter(|_| SEGMENT_EXTS.iter().any(|e| name.ends_with(e))) {
            bases.push(b);
        }
    }
    swaps.sort();
    for base in swaps {
        let end = end_offset(&swap_path(dir, base))?;
        let mut replaced: Vec<Offset> = bases
            .iter()
            .copied()
            .filter(|b| *b >= base && *b < end)
            .collect();
        replaced.sort();
        replaced.dedup();
        replaced.retain(|b| *b != base);
        replaced.insert(0, base);
        tracing::warn!(dir = %dir.display(), base = base.0, end = end.0,
            "completing a compaction swap interrupted by a crash");
        remove_replaced(dir, base, &replaced)?;
        sync_dir(dir)?;
        std::fs::rename(swap_path(dir, base), dir.join(file_name(base, "log")))?;
    }
    sync_dir(dir)
}

/// The offset after the last batch of a segment file, walking batch headers.
fn end_offset(path: &Path) -> io::Result<Offset> {
    let f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let mut pos = 0u64;
    let mut end = None;
    let mut hdr = [0u8; batch::HEADER_LEN];
    while pos + batch::HEADER_LEN as u64 <= size {
        f.read_exact_at(&mut hdr, pos)?;
        let Some(h) = batch::parse_header(&hdr).filter(|h| h.batch_length > 0) else {
            break;
        };
        end = Some(Offset(h.last_offset() + 1));
        pos += h.total_len() as u64;
    }
    end.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("compaction swap file {} holds no batch", path.display()),
        )
    })
}

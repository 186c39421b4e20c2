//! Reads that never wait for the disk on the shard's thread (`read_async`): a batch header
//! outside the page cache is brought in through io_uring and the lookup retried, with the same
//! result as the blocking read.

use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use super::batch::{self, tests::make_batch};
use super::segment::FORCE_COLD;
use super::*;
use crate::runtime::block_on;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 4096,
        ..LogConfig::default()
    }
}

async fn filled(path: std::path::PathBuf, batches: i64) -> PartitionLog {
    let log = PartitionLog::open(path, config()).await.unwrap();
    for i in 0..batches {
        let b = make_batch(&[vec![i as u8; 700]], i, -1, -1, -1);
        log.append(&b, 0, Durability::PageCache).await.unwrap();
    }
    log
}

fn bytes(s: &ReadSlice) -> Vec<u8> {
    let mut buf = vec![0u8; s.len as usize];
    s.file.read_exact_at(&mut buf, s.position.0).unwrap();
    buf
}

/// Every header read on the request path misses the page cache a few times (forced): the read
/// warms the pages and retries, once per miss, and returns the range the blocking read returns.
#[test]
fn a_read_that_misses_the_page_cache_warms_it_and_returns_the_same_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = filled(path, 40).await;
        for (offset, max_bytes, misses) in [(0, 1 << 20, 1), (17, 3000, 2), (39, 1, 3)] {
            let want = log.read(Offset(offset), max_bytes).unwrap();
            assert!(want.len > 0);
            let before = log.cold_reads();
            FORCE_COLD.with(|c| c.set(misses));
            let got = log.read_async(Offset(offset), max_bytes).await.unwrap();
            assert_eq!(
                FORCE_COLD.with(|c| c.get()),
                0,
                "every forced miss was seen"
            );
            assert_eq!(
                log.cold_reads() - before,
                u64::from(misses),
                "one warm per miss"
            );
            assert_eq!((got.position, got.len), (want.position, want.len));
            assert_eq!(bytes(&got), bytes(&want));
        }
    });
}

/// A read that keeps missing (pages evicted as fast as they come in) ends with an error the
/// client can retry, instead of spinning the shard.
#[test]
fn a_read_that_never_finds_its_pages_gives_up_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = filled(path, 3).await;
        FORCE_COLD.with(|c| c.set(u32::MAX));
        let err = log.read_async(Offset(0), 1 << 20).await.unwrap_err();
        FORCE_COLD.with(|c| c.set(0));
        assert!(matches!(err, LogError::Io(_)), "{err:?}");
        assert!(log.read_async(Offset(0), 1 << 20).await.unwrap().len > 0);
    });
}

/// Whether one byte at `pos` of `file` is in the page cache.
fn cached(file: &std::fs::File, pos: u64) -> bool {
    let mut b = [0u8; 1];
    let iov = libc::iovec {
        iov_base: b.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: `iov` describes `b`, which outlives the call.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, pos as i64, libc::RWF_NOWAIT) };
    n == 1
}

/// The real thing: the segment's pages are dropped from the page cache (`POSIX_FADV_DONTNEED`
/// after an fsync leaves them clean), and `read_async` still finds the same range, having
/// brought the headers in through io_uring. Where the file system keeps the pages anyway
/// (tmpfs), the range is still checked but the cold path is not exercised.
#[test]
fn read_async_finds_a_range_whose_pages_were_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = filled(path, 300).await;
        log.flush().await.unwrap();
        let want = log.read(Offset(150), 20_000).unwrap();
        let want_bytes = bytes(&want);
        let before = log.cold_reads();
        // SAFETY: a plain advisory call on an open descriptor.
        let rc =
            unsafe { libc::posix_fadvise(want.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
        let evicted = !cached(&want.file, want.position.0);
        let got = log.read_async(Offset(150), 20_000).await.unwrap();
        assert_eq!((got.position, got.len), (want.position, want.len));
        if evicted {
            assert!(
                log.cold_reads() > before,
                "the lookup went through the cold path"
            );
            assert!(
                cached(&got.file, got.position.0),
                "the warm read cached the header"
            );
        } else {
            eprintln!("the page cache kept the segment; the cold path was not exercised");
        }
        assert_eq!(bytes(&got), want_bytes);
        assert!(batch::check_stored(&want_bytes).is_some());
    });
}

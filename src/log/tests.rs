//! Unit and property tests of [`PartitionLog`] on a real directory and real io_uring executor.

use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;

use proptest::prelude::*;

use super::batch::{self, tests::make_batch};
use super::*;
pub(crate) use crate::runtime::block_on;

fn small_config(segment_bytes: u64, interval: u32) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: interval,
        ..LogConfig::default()
    }
}

fn read_bytes(s: &ReadSlice) -> Vec<u8> {
    let mut buf = vec![0u8; s.len as usize];
    s.file.read_exact_at(&mut buf, s.position.0).unwrap();
    buf
}

/// The batch as the log must store it: base offset and leader epoch assigned.
fn stored(mut b: Vec<u8>, base: i64, epoch: i32) -> Vec<u8> {
    batch::assign(&mut b, base, epoch, None);
    b
}

/// Splits a byte range into the batches it holds.
fn split(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (_, len) = batch::peek_offset_and_len(bytes).unwrap();
        out.push(bytes[..len].to_vec());
        bytes = &bytes[len..];
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Whatever the sizes and retention settings, retention deletes only closed segments from
    /// the oldest, never the active one, and keeps the watermarks in order.
    #[test]
    fn retention_never_deletes_active_segment(sizes in proptest::collection::vec(61usize..900, 1..30),
                                              segment_bytes in 1000u64..4000,
                                              retention_bytes in -1i64..5000,
                                              retention_ms in -1i64..3) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        block_on(async move {
            let cfg = LogConfig { retention_bytes, retention_ms, ..small_config(segment_bytes, 100) };
            let log = PartitionLog::open(path, cfg).await.unwrap();
            for (i, &size) in sizes.iter().enumerate() {
                let b = make_batch(&[vec![1; size]], i as i64, -1, -1, -1);
                log.append(&b, 0, Durability::PageCache).await.unwrap();
            }
            let active = log.st.borrow().active().base;
            let leo = log.log_end_offset();
            log.enforce_retention(1_000_000).await.unwrap();
            let st = log.st.borrow();
            assert_eq!(st.active().base, active);
            assert_eq!(st.leo, leo);
            assert_eq!(st.log_start, st.segments[0].base.max(Offset(0)));
            st.check();
        });
    }

    /// Read-after-append returns exactly what was appended, starting at the batch that holds
    /// the requested offset, whole batches only, within the limit except for the first batch.
    #[test]
    fn read_after_append(sizes in proptest::collection::vec((1usize..4, 1usize..1500), 1..40),
                         segment_bytes in 5000u64..20_000, interval in 1u32..3000,
                         probes in proptest::collection::vec((any::<u16>(), 0u32..10_000), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        block_on(async move {
            let log = PartitionLog::open(path.clone(), small_config(segment_bytes, interval)).await.unwrap();
            let mut expect: Vec<(i64, Vec<u8>)> = Vec::new();
            for (i, &(n, size)) in sizes.iter().enumerate() {
                let b = make_batch(&vec![vec![i as u8; size]; n], 1000 + i as i64, -1, -1, -1);
                let info = log.append(&b, 1, Durability::PageCache).await.unwrap();
                expect.push((info.base_offset.0, stored(b, info.base_offset.0, 1)));
            }
            let leo = log.log_end_offset().0;
            assert_eq!(log.high_watermark().0, leo);
            for &(o, max) in &probes {
                let offset = i64::from(o) % (leo + 1);
                let s = log.read(Offset(offset), max).unwrap();
                if offset == leo {
                    assert_eq!(s.len, 0);
                    continue;
                }
                let got = split(&read_bytes(&s));
                let first = expect.iter().rposition(|(b, _)| *b <= offset).unwrap();
                assert_eq!(got[0], expect[first].1, "first batch for offset {offset}");
                for (k, g) in got.iter().enumerate() {
                    assert_eq!(g, &expect[first + k].1);
                }
                if got.len() > 1 {
                    assert!(s.len <= max);
                }
                // Maximal within the segment: the next batch would not have fit.
                let next = first + got.len();
                if got.len() > 1 && next < expect.len() && log.read(Offset(expect[next].0), 0).unwrap().file.metadata().unwrap().ino() == s.file.metadata().unwrap().ino() {
                    assert!(s.len as usize + expect[next].1.len() > max as usize);
                }
            }
            // Everything survives a clean reopen and a crash-style reopen.
            log.close().await.unwrap();
            for crash in [false, true] {
                let log = PartitionLog::open(path.clone(), small_config(segment_bytes, interval)).await.unwrap();
                assert_eq!(log.log_end_offset().0, leo);
                for (base, b) in &expect {
                    let s = log.read(Offset(*base), 0).unwrap();
                    assert_eq!(&read_bytes(&s), b);
                }
                if !crash {
                    drop(log); // no close: the next open recovers
                } else {
                    log.close().await.unwrap();
                }
            }
        });
    }
}

#[test]
fn out_of_range_and_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(path, LogConfig::default())
            .await
            .unwrap();
        let b = make_batch(&[vec![1; 10], vec![2; 10]], 5, -1, -1, -1);
        let info = log.append(&b, 0, Durability::Fsync).await.unwrap();
        assert_eq!((info.base_offset, info.last_offset), (Offset(0), Offset(1)));
        // An offset inside the batch returns the whole batch.
        let s = log.read(Offset(1), 1).unwrap();
        assert_eq!(s.len as usize, b.len());
        assert_eq!(log.read(Offset(2), 100).unwrap().len, 0);
        let err = log.read(Offset(3), 100).unwrap_err();
        assert_eq!(err.error_code(), crate::error::ErrorCode::OffsetOutOfRange);
        assert_eq!(log.delete_records(Offset(1)).await.unwrap(), Offset(1));
        assert!(matches!(
            log.read(Offset(0), 1),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(log.delete_records(Offset(5)).await.is_err());
        // Rejected batches write nothing.
        let mut bad = b.clone();
        bad[70] ^= 1;
        assert_eq!(
            log.append(&bad, 0, Durability::Fsync)
                .await
                .unwrap_err()
                .error_code(),
            crate::error::ErrorCode::CorruptMessage
        );
        assert_eq!(log.log_end_offset(), Offset(2));
        log.close().await.unwrap();
        assert!(log.append(&b, 0, Durability::Fsync).await.is_err());
    });
}

#[test]
fn group_commit_coalesces_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = Rc::new(
            PartitionLog::open(path, LogConfig::default())
                .await
                .unwrap(),
        );
        let b = make_batch(&[vec![7; 1000]], 0, -1, -1, -1);
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (log, b) = (log.clone(), b.clone());
                glommio::spawn_local(
                    async move { log.append(&b, 0, Durability::Fsync).await.unwrap() },
                )
            })
            .collect();
        let mut bases = Vec::new();
        for t in tasks {
            bases.push(t.await.base_offset.0);
        }
        // Offsets follow call order.
        assert_eq!(bases, (0..100).collect::<Vec<_>>());
        let rounds = log.flush_rounds();
        assert!(rounds < 50, "{rounds} flush rounds for 100 fsync appends");
        assert_eq!(log.high_watermark(), Offset(100));
    });
}

#[test]
fn idempotent_producer_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let cfg = small_config(600, 100);
        let log = PartitionLog::open(path.clone(), cfg.clone()).await.unwrap();
        let b0 = make_batch(&[vec![1; 100], vec![2; 100]], 0, 42, 0, 0);
        let b1 = make_batch(&[vec![3; 100]], 0, 42, 0, 2);
        assert_eq!(
            log.append(&b0, 3, Durability::PageCache)
                .await
                .unwrap()
                .base_offset,
            Offset(0)
        );
        assert_eq!(
            log.append(&b1, 3, Durability::PageCache)
                .await
                .unwrap()
                .base_offset,
            Offset(2)
        );
        let dup = log.append(&b0, 3, Durability::PageCache).await.unwrap();
        assert!(dup.duplicate);
        assert_eq!((dup.base_offset, dup.last_offset), (Offset(0), Offset(1)));
        let gap = make_batch(&[vec![3; 10]], 0, 42, 0, 9);
        assert_eq!(
            log.append(&gap, 3, Durability::PageCache)
                .await
                .unwrap_err()
                .error_code(),
            crate::error::ErrorCode::OutOfOrderSequenceNumber
        );
        let old = make_batch(&[vec![3; 10]], 0, 42, -1, 3);
        assert_eq!(
            log.append(&old, 3, Durability::PageCache)
                .await
                .unwrap_err()
                .error_code(),
            crate::error::ErrorCode::InvalidProducerEpoch
        );
        let b2 = make_batch(&[vec![4; 10]], 0, 42, 0, 3);
        log.append(&b2, 5, Durability::PageCache).await.unwrap();
        assert_eq!(log.end_offset_for_epoch(3), Some((3, Offset(3))));
        assert_eq!(log.end_offset_for_epoch(5), Some((5, Offset(4))));
        drop(log);
        // After a crash the producer state and epochs are rebuilt from the log.
        let log = PartitionLog::open(path, cfg).await.unwrap();
        assert!(
            log.append(&b1, 5, Durability::PageCache)
                .await
                .unwrap()
                .duplicate
        );
        assert_eq!(log.end_offset_for_epoch(3), Some((3, Offset(3))));
        assert!(log.append(&gap, 5, Durability::PageCache).await.is_err());
    });
}

#[test]
fn timestamps_and_log_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(path, small_config(1000, 64))
            .await
            .unwrap();
        // Batches of 3 records with timestamps 100*i + 0..3.
        for i in 0..10i64 {
            let b = make_batch(
                &[vec![1; 50], vec![2; 50], vec![3; 50]],
                100 * i,
                -1,
                -1,
                -1,
            );
            log.append(&b, 0, Durability::PageCache).await.unwrap();
        }
        assert_eq!(
            log.offset_for_timestamp(0).await.unwrap(),
            Some((Offset(0), 0))
        );
        assert_eq!(
            log.offset_for_timestamp(501).await.unwrap(),
            Some((Offset(16), 501))
        );
        assert_eq!(
            log.offset_for_timestamp(503).await.unwrap(),
            Some((Offset(18), 600))
        );
        assert_eq!(log.offset_for_timestamp(5000).await.unwrap(), None);
        assert_eq!(
            log.offset_for_timestamp(-2).await.unwrap(),
            Some((Offset(0), -1))
        );
        assert_eq!(
            log.offset_for_timestamp(-1).await.unwrap(),
            Some((Offset(30), -1))
        );
        assert_eq!(log.max_timestamp(), Some((Offset(29), 902)));
        let mut cfg = log.config();
        cfg.message_timestamp_type = TimestampType::LogAppendTime;
        log.set_config(cfg);
        let b = make_batch(&[vec![1; 50]], 5, -1, -1, -1);
        let info = log.append(&b, 0, Durability::PageCache).await.unwrap();
        assert!(info.log_append_time_ms > 1_000_000);
        let s = log.read(Offset(30), 0).unwrap();
        let h = batch::check_stored(&read_bytes(&s)).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, info.log_append_time_ms);
        assert_eq!(
            log.max_timestamp(),
            Some((Offset(30), info.log_append_time_ms))
        );
    });
}

#[test]
fn retention_keeps_active_segment_and_open_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(path, small_config(1000, 100))
            .await
            .unwrap();
        for i in 0..20i64 {
            let b = make_batch(&[vec![i as u8; 400]], 1000 + i, -1, -1, -1);
            log.append(&b, 0, Durability::PageCache).await.unwrap();
        }
        let held = log.read(Offset(0), 10_000).unwrap();
        let before = read_bytes(&held);
        let segments = log.st.borrow().segments.len();
        assert!(segments > 3);
        // Everything is past retention.ms, but the active segment stays.
        let mut cfg = log.config();
        cfg.retention_ms = 10;
        log.set_config(cfg.clone());
        let deleted = log.enforce_retention(1_000_000).await.unwrap();
        assert_eq!(deleted, segments - 1);
        assert_eq!(log.st.borrow().segments.len(), 1);
        assert_eq!(log.log_start_offset(), log.st.borrow().segments[0].base);
        // The reader that held a deleted segment still reads it whole.
        assert_eq!(read_bytes(&held), before);
        assert!(log.read(Offset(0), 1).is_err());
        // retention.bytes: never below one segment.
        cfg.retention_ms = -1;
        cfg.retention_bytes = 0;
        log.set_config(cfg);
        assert_eq!(log.enforce_retention(0).await.unwrap(), 0);
    });
}

#[test]
fn retention_bytes_deletes_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let mut cfg = small_config(1000, 100);
        let log = PartitionLog::open(path, cfg.clone()).await.unwrap();
        for i in 0..20i64 {
            let b = make_batch(&[vec![i as u8; 400]], 1000 + i, -1, -1, -1);
            log.append(&b, 0, Durability::PageCache).await.unwrap();
        }
        cfg.retention_bytes = 2500;
        log.set_config(cfg);
        assert!(log.enforce_retention(0).await.unwrap() > 0);
        assert!(log.size_bytes() <= 2500 + 1000);
        assert!(log.size_bytes() > 2500 - 1000);
        let start = log.log_start_offset();
        assert!(log.read(start, 100).unwrap().len > 0);
    });
}

#[test]
fn flush_messages_and_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let cfg = LogConfig {
            flush_messages: 2,
            segment_ms: 0,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), cfg).await.unwrap();
        let b = make_batch(&[vec![1; 10]], 0, -1, -1, -1);
        log.append(&b, 0, Durability::PageCache).await.unwrap();
        assert_eq!(log.flush_rounds(), 0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        log.append(&b, 0, Durability::PageCache).await.unwrap();
        // flush.messages=2 flushed (with the roll's own flush of the closed segment).
        assert!(log.flush_rounds() >= 1);
        // segment.ms=0 rolled the non-empty active segment.
        assert_eq!(log.st.borrow().segments.len(), 2);
        log.remove().await.unwrap();
        assert!(!path.exists());
    });
}

/// Issue 10: a reader never gets bytes that are only reserved or staged. With an index entry at
/// every batch, a read whose `max_bytes` reaches past the written prefix used to end at the
/// index entry of a batch still waiting for its write, so sendfile hit the end of the file
/// ("segment file ended inside a fetch range") or sent records above the high watermark.
#[test]
fn read_ends_at_written_bytes_while_appends_are_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = Rc::new(
            PartitionLog::open(path, small_config(1 << 20, 1))
                .await
                .unwrap(),
        );
        let b = make_batch(&[vec![3; 500]], 0, -1, -1, -1);
        for _ in 0..2 {
            log.append(&b, 0, Durability::PageCache).await.unwrap();
        }
        // Reserve three more appends and stop each at its first await: the first has its write
        // submitted at most, the other two are staged behind it. None has been completed,
        // because completions are only reaped when this task yields to the executor.
        let mut in_flight: Vec<_> = (0..3)
            .map(|_| {
                let (log, b) = (log.clone(), b.clone());
                Box::pin(async move { log.append(&b, 0, Durability::PageCache).await })
            })
            .collect();
        for f in &mut in_flight {
            assert!(futures_lite::future::poll_once(f).await.is_none());
        }
        assert_eq!(log.log_end_offset(), Offset(5));
        assert_eq!(log.high_watermark(), Offset(2));
        let s = log.read(Offset(0), 1 << 20).unwrap();
        let mut written = stored(b.clone(), 0, 0);
        written.extend_from_slice(&stored(b.clone(), 1, 0));
        assert_eq!(read_bytes(&s), written);
        assert_eq!(log.read(Offset(2), 1 << 20).unwrap().len, 0);
        for f in in_flight {
            f.await.unwrap();
        }
        let s = log.read(Offset(0), 1 << 20).unwrap();
        assert_eq!(split(&read_bytes(&s)).len(), 5);
    });
}

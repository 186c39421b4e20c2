//! Tests of log compaction on a real directory: latest value per key, offsets preserved,
//! tombstones expiring by `delete.retention.ms`, the policies, and crash safety of the swap.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as Ts,
};
use proptest::prelude::*;

use super::swap::{Step, CRASH_AFTER};
use super::*;
use crate::runtime::block_on;

/// One record as a test sees it: `(offset, key, value)`; `None` value is a tombstone.
type Rec = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn compacted(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 256,
        cleanup_policy: CleanupPolicy::parse("compact").unwrap(),
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 1000,
        ..LogConfig::default()
    }
}

/// A nullable key and value.
type Entry = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A batch of `(key, value)` records with timestamps `ts..`, optionally idempotent.
fn batch_of(entries: &[Entry], ts: i64, codec: Compression, producer: (i64, i16, i32)) -> Vec<u8> {
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.0,
            producer_epoch: producer.1,
            timestamp_type: Ts::Creation,
            offset: i as i64,
            sequence: producer.2.max(0) + i as i32,
            timestamp: ts + i as i64,
            key: k.clone().map(Bytes::from),
            value: v.clone().map(Bytes::from),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &opts).unwrap();
    buf.to_vec()
}

/// Every record readable from the log start, in offset order, checking each batch's CRC and
/// that offsets only grow.
fn read_all(log: &PartitionLog) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset().0;
    let hwm = log.high_watermark().0;
    while next < hwm {
        let s = log.read(Offset(next), 1 << 20).unwrap();
        assert!(s.len > 0, "nothing readable at {next} below {hwm}");
        let mut bytes = vec![0u8; s.len as usize];
        s.file.read_exact_at(&mut bytes, s.position.0).unwrap();
        let mut at = 0;
        while at < bytes.len() {
            let h = batch::check_stored(&bytes[at..]).expect("valid stored batch");
            assert!(h.last_offset() >= next, "offsets go backwards at {next}");
            let one = Bytes::copy_from_slice(&bytes[at..at + h.total_len()]);
            let set = RecordBatchDecoder::decode(&mut one.clone()).unwrap();
            for r in set.records {
                if r.offset >= next {
                    out.push((
                        r.offset,
                        r.key.map(|k| k.to_vec()),
                        r.value.map(|v| v.to_vec()),
                    ));
                }
            }
            next = h.last_offset() + 1;
            at += h.total_len();
        }
    }
    out
}

/// What compaction must leave: below `upto`, the latest record of each key (without
/// tombstones when `drop_tombstones`); from `upto` on, everything.
fn expected(all: &[Rec], upto: i64, drop_tombstones: bool) -> Vec<Rec> {
    let mut latest: HashMap<&Option<Vec<u8>>, i64> = HashMap::new();
    for r in all.iter().filter(|r| r.0 < upto) {
        latest.insert(&r.1, r.0);
    }
    all.iter()
        .filter(|r| r.0 >= upto || (latest[&r.1] == r.0 && !(drop_tombstones && r.2.is_none())))
        .cloned()
        .collect()
}

/// Appends `n` batches of updates over `keys` keys (about one in eight a tombstone).
async fn fill(log: &PartitionLog, seed: u64, n: usize, keys: u64, ts: i64) -> Vec<Rec> {
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..n {
        let count = 1 + (rnd() % 4) as usize;
        let entries: Vec<_> = (0..count)
            .map(|_| {
                let k = rnd() % keys;
                let v = (rnd() % 8 != 0).then(|| format!("v{k}-{i}-{}", rnd() % 1000).into_bytes());
                (Some(format!("key-{k}").into_bytes()), v)
            })
            .collect();
        let codec = CODECS[(rnd() % 5) as usize];
        let b = batch_of(&entries, ts, codec, (-1, -1, -1));
        log.append(&b, 0, Durability::PageCache).await.unwrap();
    }
    read_all(log)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// A pass keeps exactly the latest record of each key in the closed segments, at its
    /// original offset, and tombstones until `delete.retention.ms`; everything survives a
    /// crash-style reopen and appends continue at the same offset.
    #[test]
    fn compaction_keeps_latest_per_key_and_expires_tombstones(seed in any::<u64>(),
                                                               n in 20usize..120,
                                                               keys in 1u64..40,
                                                               segment_bytes in 600u64..3000) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        block_on(async move {
            let cfg = compacted(segment_bytes);
            let log = PartitionLog::open(path.clone(), cfg.clone()).await.unwrap();
            let all = fill(&log, seed, n, keys, 10_000).await;
            let active = log.st.borrow().active().base.0;
            let leo = log.log_end_offset();
            let mut map = OffsetMap::new(1 << 16);
            let stats = log.compact(10_500, &mut map).await.unwrap();
            if log.st.borrow().segments.len() > 1 || stats.is_some() {
                let s = stats.unwrap();
                assert_eq!(s.first_dirty, active);
            }
            assert_eq!(read_all(&log), expected(&all, active, false));
            assert_eq!(log.log_end_offset(), leo);
            // Nothing new: no pass is due until the tombstones expire.
            assert_eq!(log.compact(10_600, &mut map).await.unwrap(), None);
            log.compact(20_000, &mut map).await.unwrap();
            let want = expected(&all, active, true);
            assert_eq!(read_all(&log), want);
            drop(log);
            let log = PartitionLog::open(path, cfg).await.unwrap();
            assert_eq!(read_all(&log), want);
            assert_eq!(log.log_end_offset(), leo);
            let b = batch_of(&[(Some(b"k".to_vec()), Some(b"v".to_vec()))], 0, Compression::None, (-1, -1, -1));
            assert_eq!(log.append(&b, 0, Durability::Fsync).await.unwrap().base_offset, leo);
        });
    }
}

/// A deterministic log of a few segments, with the records it holds.
async fn deterministic(path: &std::path::Path) -> (PartitionLog, Vec<Rec>) {
    let log = PartitionLog::open(path.to_path_buf(), compacted(1500))
        .await
        .unwrap();
    let all = fill(&log, 42, 80, 12, 10_000).await;
    assert!(log.st.borrow().segments.len() > 4);
    (log, all)
}

/// The `.log` files and leftovers of a partition directory, for assertions.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect();
    v.sort();
    v
}

/// A crash after each step of the swap leaves, after open, exactly the old records (before the
/// commit point) or exactly the compacted ones (after it), never a mix, and no leftover file.
#[test]
fn crash_at_each_swap_step_recovers_old_or_new_set() {
    let reference = tempfile::tempdir().unwrap();
    let rpath = reference.path().to_path_buf();
    let (old, new) = block_on(async move {
        let (log, all) = deterministic(&rpath).await;
        log.compact(10_500, &mut OffsetMap::new(1 << 16))
            .await
            .unwrap()
            .unwrap();
        (all, read_all(&log))
    });
    assert!(new.len() < old.len());
    for step in [Step::Cleaned, Step::Committed, Step::Removed] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let (old, new) = (old.clone(), new.clone());
        block_on(async move {
            let (log, all) = deterministic(&path).await;
            assert_eq!(all, old);
            let leo = log.log_end_offset();
            CRASH_AFTER.with(|c| c.set(Some(step)));
            assert!(log
                .compact(10_500, &mut OffsetMap::new(1 << 16))
                .await
                .is_err());
            assert!(
                !leftovers(&path).is_empty(),
                "{step:?} left nothing to recover"
            );
            drop(log); // the crash: no close
            let log = PartitionLog::open(path.clone(), compacted(1500))
                .await
                .unwrap();
            assert!(leftovers(&path).is_empty(), "{step:?}");
            let got = read_all(&log);
            if step == Step::Cleaned {
                assert_eq!(got, old, "rolled back after {step:?}");
            } else {
                // The first group was swapped in; later groups were not cleaned yet.
                let g_end = log.st.borrow().segments[1].base.0;
                let mut want: Vec<Rec> = new.iter().filter(|r| r.0 < g_end).cloned().collect();
                want.extend(old.iter().filter(|r| r.0 >= g_end).cloned());
                assert!(got == want, "mixed set after {step:?}");
            }
            assert_eq!(log.log_end_offset(), leo);
            // A later pass finishes the job.
            log.compact(10_500, &mut OffsetMap::new(1 << 16))
                .await
                .unwrap();
            assert_eq!(read_all(&log), new);
        });
    }
}

/// A torn `.cleaned` file (a crash while writing it) is discarded at open.
#[test]
fn torn_cleaned_file_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let (log, all) = deterministic(&path).await;
        drop(log);
        std::fs::write(super::swap::cleaned_path(&path, Offset(0)), b"torn").unwrap();
        let log = PartitionLog::open(path.clone(), compacted(1500))
            .await
            .unwrap();
        assert!(leftovers(&path).is_empty());
        assert_eq!(read_all(&log), all);
    });
}

/// A reader holding a replaced segment's file keeps reading the old bytes.
#[test]
fn readers_of_replaced_segments_keep_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let (log, _) = deterministic(&path).await;
        let held = log.read(Offset(0), 1 << 20).unwrap();
        let mut before = vec![0u8; held.len as usize];
        held.file
            .read_exact_at(&mut before, held.position.0)
            .unwrap();
        log.compact(10_500, &mut OffsetMap::new(1 << 16))
            .await
            .unwrap()
            .unwrap();
        let mut after = vec![0u8; held.len as usize];
        held.file
            .read_exact_at(&mut after, held.position.0)
            .unwrap();
        assert_eq!(before, after);
    });
}

/// `compact` alone never deletes by time or size; `compact,delete` does both; `delete` never
/// compacts.
#[test]
fn policies_decide_retention_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let (log, all) = deterministic(&path).await;
        let mut cfg = log.config();
        cfg.retention_ms = 1;
        cfg.retention_bytes = 1;
        log.set_config(cfg.clone());
        assert_eq!(log.enforce_retention(1 << 40).await.unwrap(), 0);
        cfg.cleanup_policy = CleanupPolicy::DELETE;
        log.set_config(cfg.clone());
        assert_eq!(
            log.compact(10_500, &mut OffsetMap::new(1 << 16))
                .await
                .unwrap(),
            None
        );
        assert_eq!(read_all(&log), all);
        cfg.cleanup_policy = CleanupPolicy::parse("compact,delete").unwrap();
        log.set_config(cfg);
        assert!(log
            .compact(10_500, &mut OffsetMap::new(1 << 16))
            .await
            .unwrap()
            .is_some());
        assert!(log.enforce_retention(1 << 40).await.unwrap() > 0);
        assert_eq!(log.st.borrow().segments.len(), 1);
    });
}

/// Keyless records are INVALID_RECORD on a compacted topic, compressed or not, and accepted
/// elsewhere.
#[test]
fn keyless_records_are_rejected_on_compacted_topics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(path, compacted(1 << 20)).await.unwrap();
        for codec in CODECS {
            let entries = [
                (Some(b"k".to_vec()), Some(b"v".to_vec())),
                (None, Some(b"v".to_vec())),
            ];
            let b = batch_of(&entries, 0, codec, (-1, -1, -1));
            let err = log.append(&b, 0, Durability::PageCache).await.unwrap_err();
            assert_eq!(err.error_code(), crate::error::ErrorCode::InvalidRecord);
            let mut cfg = log.config();
            cfg.cleanup_policy = CleanupPolicy::DELETE;
            log.set_config(cfg.clone());
            log.append(&b, 0, Durability::PageCache).await.unwrap();
            cfg.cleanup_policy = CleanupPolicy::parse("compact").unwrap();
            log.set_config(cfg);
        }
        assert_eq!(log.log_end_offset(), Offset(10));
    });
}

/// `min.compaction.lag.ms` keeps young segments dirty; `min.cleanable.dirty.ratio` waits for
/// enough dirty bytes.
#[test]
fn lag_and_dirty_ratio_gate_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let (log, _) = deterministic(&path).await;
        let mut map = OffsetMap::new(1 << 16);
        let mut cfg = log.config();
        cfg.min_compaction_lag_ms = 10_000;
        log.set_config(cfg.clone());
        // Records have timestamps around 10_000: at 15_000 they are younger than the lag.
        assert_eq!(log.compact(15_000, &mut map).await.unwrap(), None);
        assert!(log.compact(25_000, &mut map).await.unwrap().is_some());
        cfg.min_compaction_lag_ms = 0;
        cfg.min_cleanable_dirty_ratio = 0.9;
        cfg.delete_retention_ms = i64::MAX / 4;
        log.set_config(cfg.clone());
        // A little more data: far below 90 % dirty.
        fill(&log, 7, 6, 12, 10_000).await;
        assert_eq!(log.compact(25_000, &mut map).await.unwrap(), None);
        cfg.min_cleanable_dirty_ratio = 0.0;
        log.set_config(cfg);
        assert!(log.compact(25_000, &mut map).await.unwrap().is_some());
    });
}

/// The batches the producer state remembers keep their headers even when all their records
/// are superseded, so a rebuild from the log (no snapshot) still recognises a retry.
#[test]
fn producer_state_survives_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let cfg = compacted(400);
        let log = PartitionLog::open(path.clone(), cfg.clone()).await.unwrap();
        let k = || Some(b"same".to_vec());
        let mut last = Vec::new();
        for seq in 0..8 {
            last = batch_of(
                &[(k(), Some(vec![b'x'; 100]))],
                0,
                Compression::None,
                (7, 0, seq),
            );
            log.append(&last, 0, Durability::PageCache).await.unwrap();
        }
        // Filler from another producer, so the producer's batches are all in closed segments.
        for i in 0..6 {
            let b = batch_of(
                &[(Some(vec![i]), Some(vec![0; 100]))],
                0,
                Compression::None,
                (-1, -1, -1),
            );
            log.append(&b, 0, Durability::PageCache).await.unwrap();
        }
        let stats = log
            .compact(0, &mut OffsetMap::new(1 << 16))
            .await
            .unwrap()
            .unwrap();
        assert!(stats.records_removed >= 7);
        let live: Vec<Rec> = read_all(&log).into_iter().filter(|r| r.1 == k()).collect();
        assert_eq!(live.len(), 1);
        drop(log);
        std::fs::remove_file(path.join("producer.snapshot")).ok();
        let log = PartitionLog::open(path, cfg).await.unwrap();
        assert!(
            log.append(&last, 0, Durability::PageCache)
                .await
                .unwrap()
                .duplicate
        );
        let gap = batch_of(&[(k(), None)], 0, Compression::None, (7, 0, 20));
        assert!(log.append(&gap, 0, Durability::PageCache).await.is_err());
    });
}

/// The swap's directory steps run off the shard, so the shard serves other work meanwhile:
/// DeleteRecords (and retention) issued while a swap is in flight waits for it (the directory
/// lock) instead of dropping a segment the swap is replacing. Both succeed, and the log holds
/// exactly the compacted records from the new log start offset.
#[test]
fn delete_records_during_a_compaction_swap_waits_for_it() {
    let reference = tempfile::tempdir().unwrap();
    let rpath = reference.path().to_path_buf();
    let new = block_on(async move {
        let (log, _) = deterministic(&rpath).await;
        log.compact(10_500, &mut OffsetMap::new(1 << 16))
            .await
            .unwrap()
            .unwrap();
        read_all(&log)
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let (log, _) = deterministic(&path).await;
        let log = std::rc::Rc::new(log);
        let start = log.st.borrow().segments[2].base;
        let done = std::rc::Rc::new(std::cell::Cell::new(false));
        let compaction = glommio::spawn_local({
            let (log, done) = (log.clone(), done.clone());
            async move {
                let r = log.compact(10_500, &mut OffsetMap::new(1 << 16)).await;
                done.set(true);
                r
            }
        });
        // Run the compaction until its swap holds the directory lock (or it has finished).
        while log.dir_lock.available() == 1 && !done.get() {
            futures_lite::future::yield_now().await;
        }
        let swapping = !done.get();
        let deleted = log.delete_records(start).await.unwrap();
        compaction.await.unwrap().unwrap();
        assert!(swapping, "the delete was issued while a swap was in flight");
        assert_eq!(deleted, start);
        assert_eq!(log.log_start_offset(), start);
        let want: Vec<Rec> = new.iter().filter(|r| r.0 >= start.0).cloned().collect();
        assert!(
            read_all(&log) == want,
            "compacted records from the new start"
        );
        assert!(leftovers(&path).is_empty());
        std::rc::Rc::try_unwrap(log)
            .ok()
            .unwrap()
            .close()
            .await
            .unwrap();
        let log = PartitionLog::open(path.clone(), compacted(1500))
            .await
            .unwrap();
        assert!(read_all(&log) == want, "and so after a restart");
    });
}

/// After compaction every offset below the high watermark still reads on: a fetch at any of
/// them gets a batch whose last offset is at or past it, even where compaction emptied the end
/// of a segment, so no consumer position can be stranded (Kafka's read walks on to higher
/// segments; `PartitionLog::read` relies on compaction never leaving such a gap).
#[test]
fn every_offset_reads_on_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let cfg = compacted(700);
        let log = PartitionLog::open(path, cfg).await.unwrap();
        // Each segment ends with a batch of keys that the next segments update again, so
        // compaction empties segment ends.
        let mut ts = 10_000;
        for round in 0..6 {
            for i in 0..8 {
                let key = format!("k{}", if i == 7 { 99 } else { round * 10 + i });
                let b = batch_of(
                    &[(Some(key.into_bytes()), Some(b"v".to_vec()))],
                    ts,
                    Compression::None,
                    (-1, -1, -1),
                );
                log.append(&b, 0, Durability::PageCache).await.unwrap();
                ts += 1;
            }
        }
        let mut map = OffsetMap::new(1 << 16);
        log.compact(20_000, &mut map).await.unwrap();
        let segments: Vec<i64> = log.st.borrow().segments.iter().map(|s| s.base.0).collect();
        assert!(segments.len() > 2, "{segments:?}");
        let hwm = log.high_watermark().0;
        for offset in log.log_start_offset().0..hwm {
            let s = log.read(Offset(offset), 1 << 20).unwrap();
            assert!(
                s.len > 0,
                "nothing readable at {offset} below {hwm} (segments {segments:?})"
            );
            let mut bytes = vec![0u8; s.len as usize];
            s.file.read_exact_at(&mut bytes, s.position.0).unwrap();
            let h = batch::check_stored(&bytes).expect("a stored batch");
            assert!(h.last_offset() >= offset, "a batch before {offset}");
        }
    });
}

/// A consumer reading a compacted log as librdkafka does (one fetch per segment range, the
/// next fetch at the last batch's last offset + 1) must meet records: librdkafka gives up with
/// MSG_SIZE_TOO_LARGE after ten answers in a row that hold no record. Segments whose every key
/// was updated later keep only their emptied last batch.
#[test]
fn a_consumer_meets_records_across_emptied_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(path, compacted(600)).await.unwrap();
        // Many segments of updates to one key, then the live keys.
        for i in 0..400 {
            let key = if i < 380 {
                "hot".to_string()
            } else {
                format!("live-{i}")
            };
            let b = batch_of(
                &[(Some(key.into_bytes()), Some(b"v".to_vec()))],
                10_000 + i,
                Compression::None,
                (-1, -1, -1),
            );
            log.append(&b, 0, Durability::PageCache).await.unwrap();
        }
        let mut map = OffsetMap::new(1 << 16);
        log.compact(20_000, &mut map).await.unwrap();
        let hwm = log.high_watermark().0;
        let mut next = log.log_start_offset().0;
        let mut empty_in_a_row = 0;
        while next < hwm {
            let s = log.read(Offset(next), 1 << 20).unwrap();
            assert!(s.len > 0, "nothing readable at {next} below {hwm}");
            let mut bytes = vec![0u8; s.len as usize];
            s.file.read_exact_at(&mut bytes, s.position.0).unwrap();
            let mut at = 0;
            let mut records = 0;
            while at < bytes.len() {
                let h = batch::check_stored(&bytes[at..]).expect("a stored batch");
                let one = Bytes::copy_from_slice(&bytes[at..at + h.total_len()]);
                records += RecordBatchDecoder::decode(&mut one.clone())
                    .unwrap()
                    .records
                    .iter()
                    .filter(|r| r.offset >= next)
                    .count();
                next = next.max(h.last_offset() + 1);
                at += h.total_len();
            }
            empty_in_a_row = if records == 0 { empty_in_a_row + 1 } else { 0 };
            assert!(
                empty_in_a_row < 5,
                "{empty_in_a_row} answers in a row without a record, at {next}"
            );
        }
    });
}

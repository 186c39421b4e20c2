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

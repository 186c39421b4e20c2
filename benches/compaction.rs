//! Compaction throughput: MB/s of log cleaned by one pass of `PartitionLog::compact`.
//!
//! Each sample builds a fresh log in `$TMPDIR` (untimed): 32 MiB of keyed updates, 100 records
//! of ~130 bytes per batch, over 50 000 keys, in 4 MiB segments; then times one pass, which
//! maps every key and rewrites every closed segment. Uncompressed and lz4 batches (the cleaner
//! decompresses and recompresses those). Figures are recorded in `tuning.md` ("Compaction").

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tidelog::log::{CleanupPolicy, Durability, LogConfig, OffsetMap, PartitionLog};
use tidelog::runtime::block_on;

const LOG_BYTES: u64 = 32 << 20;
const KEYS: u64 = 50_000;
const RECORDS_PER_BATCH: usize = 100;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4 << 20,
        cleanup_policy: CleanupPolicy::parse("compact").expect("valid policy"),
        min_cleanable_dirty_ratio: 0.0,
        ..LogConfig::default()
    }
}

fn batch(seed: &mut u64, compression: Compression) -> Vec<u8> {
    let records: Vec<Record> = (0..RECORDS_PER_BATCH)
        .map(|i| {
            *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let key = format!("key-{:08}", (*seed >> 33) % KEYS);
            let value = format!("{:016x}{:0>100}", *seed, i);
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(Bytes::from(key)),
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &opts).expect("encode");
    buf.to_vec()
}

/// Builds a log of `LOG_BYTES`, then times one compaction pass over it; returns the time and
/// the bytes cleaned.
fn one_pass(root: &Path, compression: Compression) -> (Duration, u64) {
    let dir = tempfile::tempdir_in(root).expect("tempdir");
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(path, config()).await.expect("open");
        let mut seed = 42;
        while log.size_bytes() < LOG_BYTES {
            let b = batch(&mut seed, compression);
            log.append(&b, 0, Durability::PageCache)
                .await
                .expect("append");
        }
        log.flush().await.expect("flush");
        let mut map = OffsetMap::new(tidelog::config::LOG_CLEANER_DEDUPE_BUFFER_SIZE_DEFAULT);
        let start = Instant::now();
        let stats = log
            .compact(i64::MAX / 2, &mut map)
            .await
            .expect("compact")
            .expect("a pass is due");
        (start.elapsed(), stats.bytes_cleaned)
    })
}

fn compaction(c: &mut Criterion) {
    let root = std::env::temp_dir();
    let mut g = c.benchmark_group("compaction");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for (name, codec) in [("none", Compression::None), ("lz4", Compression::Lz4)] {
        let (_, cleaned) = one_pass(&root, codec);
        g.throughput(Throughput::Bytes(cleaned));
        g.bench_with_input(BenchmarkId::new("pass_32MiB", name), &codec, |b, &codec| {
            b.iter_custom(|iters| (0..iters).map(|_| one_pass(&root, codec).0).sum());
        });
    }
    g.finish();
}

criterion_group!(benches, compaction);
criterion_main!(benches);

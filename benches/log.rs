//! Partition-log benchmarks: append throughput (1 KiB and 16 KiB batches, with and without
//! fsync), read-range lookup cost, and crash recovery of a 1 GiB tail segment.
//!
//! Every sample runs on a fresh single glommio executor; only the measured loop is timed.
//! Figures and the matching fio runs are recorded in `tuning.md` ("Storage").

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tidelog::runtime::block_on;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidelog::log::batch;
use tidelog::log::{Durability, LogConfig, Offset, PartitionLog};

/// Appends in flight at once, as several producer connections of one shard would have.
const CONCURRENCY: u64 = 32;

/// A valid uncompressed batch of exactly `total` bytes holding one record.
fn make_batch(total: usize) -> Vec<u8> {
    // One record: length varint, attributes, ts delta, offset delta, null key, value length
    // varint, value, header count. The value is sized so the batch is exactly `total` bytes:
    // the produce path refuses bytes after the last record, as Kafka does.
    let record = |value_len: usize| {
        let mut rec = vec![0u8, 0, 0, 1];
        put_varint(&mut rec, value_len as i64);
        rec.extend(std::iter::repeat_n(0xab, value_len));
        rec.push(0);
        let mut recs = Vec::new();
        put_varint(&mut recs, rec.len() as i64);
        recs.extend_from_slice(&rec);
        recs
    };
    let recs = (5..=16)
        .map(|overhead| record(total - batch::HEADER_LEN - overhead))
        .find(|recs| batch::HEADER_LEN + recs.len() == total)
        .expect("a value length that makes the batch exactly `total` bytes");
    let mut b = vec![0u8; batch::HEADER_LEN];
    b.extend_from_slice(&recs);
    let len = (b.len() - batch::LOG_OVERHEAD) as i32;
    b[batch::BATCH_LENGTH..][..4].copy_from_slice(&len.to_be_bytes());
    b[batch::MAGIC] = 2;
    b[batch::PRODUCER_ID..][..8].copy_from_slice(&(-1i64).to_be_bytes());
    b[batch::BASE_SEQUENCE..][..4].copy_from_slice(&(-1i32).to_be_bytes());
    b[batch::RECORD_COUNT..][..4].copy_from_slice(&1i32.to_be_bytes());
    b[batch::BASE_TIMESTAMP..][..8].copy_from_slice(&1_700_000_000_000i64.to_be_bytes());
    b[batch::MAX_TIMESTAMP..][..8].copy_from_slice(&1_700_000_000_000i64.to_be_bytes());
    let crc = batch::compute_crc(&b);
    b[batch::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
    b
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Appends `n` batches from `CONCURRENCY` tasks into a fresh log; returns the time taken.
fn timed_appends(root: &Path, size: usize, n: u64, durability: Durability) -> Duration {
    let dir = tempfile::tempdir_in(root).unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = Rc::new(
            PartitionLog::open(path, LogConfig::default())
                .await
                .unwrap(),
        );
        let b = Rc::new(make_batch(size));
        let start = Instant::now();
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|t| {
                let (log, b) = (log.clone(), b.clone());
                let count = n / CONCURRENCY + u64::from(t < n % CONCURRENCY);
                glommio::spawn_local(async move {
                    for _ in 0..count {
                        log.append(&b, 0, durability).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let took = start.elapsed();
        drop(log);
        took
    })
}

fn bench_append(c: &mut Criterion, root: &Path) {
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for size in [1024usize, 16 * 1024] {
        g.throughput(Throughput::Bytes(size as u64));
        for (name, d) in [
            ("page_cache", Durability::PageCache),
            ("fsync", Durability::Fsync),
        ] {
            g.bench_function(BenchmarkId::new(name, size), |bch| {
                bch.iter_custom(|iters| timed_appends(root, size, iters, d));
            });
        }
    }
    g.finish();
}

/// Read-range lookups on a closed-and-reopened log of 1 KiB batches: random offsets, 1 MiB limit.
fn bench_read(c: &mut Criterion, root: &Path) {
    let dir = root.join("read");
    let path = dir.clone();
    let count = 64 * 1024u64;
    block_on(async move {
        let log = PartitionLog::open(path, LogConfig::default())
            .await
            .unwrap();
        let b = make_batch(1024);
        for _ in 0..count {
            log.append(&b, 0, Durability::PageCache).await.unwrap();
        }
        log.close().await.unwrap();
    });
    let mut g = c.benchmark_group("read");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    g.bench_function("range_1MiB_random_offset", |bch| {
        bch.iter_custom(|iters| {
            let path = dir.clone();
            block_on(async move {
                let log = PartitionLog::open(path, LogConfig::default())
                    .await
                    .unwrap();
                let mut x = 0x9e37_79b9_7f4a_7c15u64;
                let start = Instant::now();
                for _ in 0..iters {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let s = log.read(Offset((x % count) as i64), 1 << 20).unwrap();
                    std::hint::black_box(s.len);
                }
                let took = start.elapsed();
                log.close().await.unwrap();
                took
            })
        });
    });
    g.finish();
}

/// Writes a 1 GiB segment of 16 KiB batches directly (as a crashed broker would leave it).
fn write_tail_segment(dir: &Path, total: u64) {
    use std::io::Write;
    std::fs::create_dir_all(dir).unwrap();
    let mut b = make_batch(16 * 1024);
    let f = std::fs::File::create(dir.join(format!("{:020}.log", 0))).unwrap();
    let mut w = std::io::BufWriter::with_capacity(4 << 20, f);
    for i in 0..total / b.len() as u64 {
        batch::assign(&mut b, i as i64, 0, None);
        w.write_all(&b).unwrap();
    }
    w.into_inner().unwrap().sync_all().unwrap();
}

fn bench_recovery(c: &mut Criterion, root: &Path) {
    let dir: PathBuf = root.join("recovery");
    write_tail_segment(&dir, 1 << 30);
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("crash_1GiB_tail_16KiB_batches", |bch| {
        bch.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let path = dir.clone();
                total += block_on(async move {
                    let start = Instant::now();
                    let log = PartitionLog::open(path, LogConfig::default())
                        .await
                        .unwrap();
                    let took = start.elapsed();
                    assert_eq!(log.log_end_offset().0, (1 << 30) / (16 * 1024));
                    drop(log); // no clean shutdown: the next open recovers again
                    took
                });
            }
            total
        });
    });
    g.finish();
    if std::env::var_os("TIDELOG_BENCH_COLD").is_some() {
        cold_recovery(&dir);
    }
}

/// One recovery with the page cache dropped first (needs root): the disk-bound figure.
fn cold_recovery(dir: &Path) {
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
        eprintln!("cold recovery skipped: cannot drop caches: {e}");
        return;
    }
    let path = dir.to_path_buf();
    let took = block_on(async move {
        let start = Instant::now();
        let log = PartitionLog::open(path, LogConfig::default())
            .await
            .unwrap();
        let took = start.elapsed();
        drop(log);
        took
    });
    println!("recovery/crash_1GiB_tail_16KiB_batches cold page cache: {took:?}");
}

fn benches(c: &mut Criterion) {
    let root = tempfile::Builder::new()
        .prefix("tidelog-bench")
        .tempdir_in(std::env::var("BENCH_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from))
        .unwrap();
    bench_append(c, root.path());
    bench_read(c, root.path());
    bench_recovery(c, root.path());
}

criterion_group!(log_benches, benches);
criterion_main!(log_benches);

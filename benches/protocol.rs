//! The broker's per-request hot paths, each against the bound that matters for it:
//!
//! - framing and produce-request parsing of a 1 MiB request (16 partitions x 64 KiB batches):
//!   bytes/s, to compare with the loopback bandwidth the request arrives at;
//! - batch header validation + CRC32C of a 64 KiB batch, next to the crate's raw
//!   `crc32c::crc32c` over the same bytes (validation should cost the CRC and nothing more);
//! - per codec, a 64-record batch of 1 KiB text values: the header + CRC check alone (what
//!   produce did before record validation) against the full record walk (`validate_batch`,
//!   streaming through the codec) and a topic `compression.type` rewrite to zstd, in
//!   uncompressed bytes/s;
//! - fetch response assembly (`encode_fetch_response`) for 16 and 1,000 partitions;
//! - shard routing (`router::shard_for`).
//!
//! Run with `cargo bench --bench protocol`; tuning.md records the figures.

use std::fs::File;
use std::hint::black_box;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tidelog::api::decode_request;
use tidelog::protocol::fetch::{
    encode_fetch_response, FetchHeader, FetchPartition, FetchTopic, FileRange,
};
use tidelog::protocol::frame;
use uuid::Uuid;

const PARTITIONS: i32 = 16;
const BATCH_BYTES: usize = 64 << 10;
const RECORD_BYTES: usize = 1024;

/// One uncompressed batch of ~64 KiB of 1 KiB records, as a producer sends it.
fn batch() -> Bytes {
    let value = Bytes::from(vec![b'v'; RECORD_BYTES]);
    let records: Vec<Record> = (0..(BATCH_BYTES / (RECORD_BYTES + 10)) as i64)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(value.clone()),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &opts).expect("encode batch");
    buf.freeze()
}

/// A whole produce request frame (size prefix included), v9, 16 partitions of one batch each.
fn produce_frame(batch: &Bytes) -> BytesMut {
    let version = 9;
    let partitions = (0..PARTITIONS)
        .map(|p| {
            PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(batch.clone()))
        })
        .collect();
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(partitions)]);
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("bench")))
        .encode(&mut buf, ApiKey::Produce.request_header_version(version))
        .expect("header");
    req.encode(&mut buf, version).expect("body");
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    buf
}

fn framing_and_produce_parsing(c: &mut Criterion) {
    let b = batch();
    let frame_bytes = produce_frame(&b);
    let mut g = c.benchmark_group("produce_request");
    g.throughput(Throughput::Bytes(frame_bytes.len() as u64));
    g.bench_function("take_frame", |bench| {
        bench.iter_batched(
            || frame_bytes.clone(),
            |mut buf| frame::take_frame(&mut buf, 100 << 20).unwrap().unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("frame_header_and_body_decode", |bench| {
        bench.iter_batched(
            || frame_bytes.clone(),
            |mut buf| {
                let f = frame::take_frame(&mut buf, 100 << 20).unwrap().unwrap();
                let r = decode_request(f).unwrap();
                r.decode_body::<ProduceRequest>().unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn batch_validation(c: &mut Criterion) {
    let b = batch();
    let mut g = c.benchmark_group("batch_64KiB");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function("validate_produce (header + CRC32C)", |bench| {
        bench.iter(|| tidelog::log::batch::validate_produce(black_box(&b), 1 << 20).unwrap())
    });
    g.bench_function("crc32c::crc32c (raw)", |bench| {
        bench.iter(|| crc32c::crc32c(black_box(&b[21..])))
    });
    g.finish();
}

/// A batch of 64 records of 1 KiB of JSON-like text (compresses 3-6x, like real payloads).
fn text_batch(compression: Compression) -> (Bytes, u64) {
    let mut raw = 0u64;
    let records: Vec<Record> = (0..64i64)
        .map(|i| {
            let value: String = (0..)
                .map(|j| {
                    format!(
                        "{{\"id\":{},\"user\":\"u{}\",\"n\":{}}},",
                        i * 1000 + j,
                        j % 97,
                        j * 31
                    )
                })
                .take_while({
                    let mut len = 0;
                    move |s: &String| {
                        len += s.len();
                        len <= RECORD_BYTES
                    }
                })
                .collect();
            raw += value.len() as u64 + 8;
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32 - 1,
                timestamp: 1_700_000_000_000 + i,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(value)),
                headers: IndexMap::new(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &opts).expect("encode batch");
    (buf.freeze(), raw)
}

fn record_validation(c: &mut Criterion) {
    use tidelog::log::batch::{validate_batch, validate_produce, ValidateOptions};
    let mut g = c.benchmark_group("validate_64x1KiB");
    for (name, codec) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let (b, raw) = text_batch(codec);
        g.throughput(Throughput::Bytes(raw));
        g.bench_function(format!("{name}: header + CRC only (before)"), |bench| {
            bench.iter(|| validate_produce(black_box(&b), 1 << 20).unwrap())
        });
        let opts = ValidateOptions::new(1 << 20);
        g.bench_function(format!("{name}: validate_batch (after)"), |bench| {
            bench.iter(|| validate_batch(black_box(&b), &opts).unwrap())
        });
        if codec != Compression::Zstd {
            let to_zstd = ValidateOptions {
                target_codec: Some(Compression::Zstd as i16),
                ..opts
            };
            g.bench_function(
                format!("{name}: validate_batch + rewrite to zstd"),
                |bench| bench.iter(|| validate_batch(black_box(&b), &to_zstd).unwrap()),
            );
        }
    }
    g.finish();
}

fn fetch_assembly(c: &mut Criterion) {
    let file = Arc::new(File::open("/dev/null").expect("open /dev/null"));
    let mut g = c.benchmark_group("encode_fetch_response");
    for partitions in [16, 1000] {
        let topics = vec![FetchTopic {
            name: StrBytes::from_static_str("bench"),
            topic_id: *Uuid::from_u128(7).as_bytes(),
            partitions: (0..partitions)
                .map(|p| FetchPartition {
                    partition_index: p,
                    error_code: 0,
                    high_watermark: 1 << 30,
                    last_stable_offset: 1 << 30,
                    log_start_offset: 0,
                    records: Some(FileRange {
                        file: file.clone(),
                        position: (p as u64) << 20,
                        len: 1 << 20,
                    }),
                    diverging: None,
                    aborted: None,
                })
                .collect(),
        }];
        let header = FetchHeader {
            correlation_id: 9,
            ..FetchHeader::default()
        };
        g.throughput(Throughput::Elements(partitions as u64));
        g.bench_function(format!("v16_{partitions}_partitions"), |bench| {
            bench.iter(|| encode_fetch_response(16, &header, black_box(&topics)))
        });
    }
    g.finish();
}

fn routing(c: &mut Criterion) {
    let id = Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
    let mut g = c.benchmark_group("shard_for");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("10k_partitions_8_shards", |bench| {
        bench.iter(|| {
            (0..10_000)
                .map(|p| tidelog::router::shard_for(black_box(id), p, 8))
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    framing_and_produce_parsing,
    batch_validation,
    record_validation,
    fetch_assembly,
    routing
);
criterion_main!(benches);

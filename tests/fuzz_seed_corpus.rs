//! The fuzz targets' seed corpus (fuzz/corpus/<target>/seed-*): real frames and batches encoded
//! by `kafka-protocol`, as clients send them. Run with `TIDELOG_WRITE_FUZZ_CORPUS=1` to
//! (re)write the seeds; every run checks that each seed still reaches the deep end of its target
//! (frames decode in full, batches validate, segments recover whole), so a change to a decoder
//! or validator that made the seeds useless shows up here and not as a quietly shallow fuzz run.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tidelog::api::{decode_request, APIS};
use tidelog::config::{MAX_MESSAGE_BYTES_DEFAULT, SOCKET_REQUEST_MAX_BYTES_DEFAULT};
use tidelog::log::batch::{self, ValidateOptions};
use tidelog::log::{LogConfig, PartitionLog};
use tidelog::protocol::bodies::decode_any;
use tidelog::protocol::frame::take_frame;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(name: &str) -> TopicName {
    TopicName(s(name))
}

/// A size-prefixed request frame with a client id, as librdkafka sends one.
fn frame<T: Encodable + HeaderVersion>(key: ApiKey, version: i16, body: &T) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(version.into())
        .with_client_id(Some(s("rdkafka")))
        .encode(&mut buf, T::header_version(version))
        .expect("header encodes");
    body.encode(&mut buf, version).expect("body encodes");
    let mut f = (buf.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(&buf);
    f
}

/// One RecordBatch v2 of `n` keyed records with a header each, starting at `base_offset`.
fn batch_of(n: i64, base_offset: i64, codec: Compression, producer: Option<(i64, i16)>) -> Bytes {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i,
            // kafka-protocol starts a new batch whenever offset - sequence changes, so even a
            // non-idempotent batch numbers its records.
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!(
                "value {i} {}",
                "x".repeat(i as usize * 7)
            ))),
            headers: [(s("h"), Some(Bytes::from_static(b"v")))]
                .into_iter()
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: codec,
        },
    )
    .expect("batch encodes");
    buf.freeze()
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn produce(version: i16, records: Bytes) -> Vec<u8> {
    let body = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("orders"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    frame(ApiKey::Produce, version, &body)
}

fn request_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    // Every API at its highest served version, with the body a client sends when it has
    // nothing to say: reaches every body decoder.
    for spec in APIS {
        let f = match spec.key {
            ApiKey::Produce => produce(spec.max, batch_of(1, 0, Compression::None, None)),
            _ => default_frame(spec.key, spec.max),
        };
        seeds.push((format!("{:?}-v{}", spec.key, spec.max), f));
    }
    for (v, codec) in [
        (3, Compression::None),
        (9, Compression::Lz4),
        (7, Compression::Zstd),
    ] {
        seeds.push((
            format!("Produce-v{v}-{codec:?}"),
            produce(v, batch_of(3, 0, codec, Some((1000, 0)))),
        ));
    }
    let topics = || {
        MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic("orders"))),
            MetadataRequestTopic::default().with_name(Some(topic("payments"))),
        ]))
    };
    seeds.push((
        "Metadata-v1-topics".into(),
        frame(ApiKey::Metadata, 1, &topics()),
    ));
    seeds.push((
        "Metadata-v12-topics".into(),
        frame(ApiKey::Metadata, 12, &topics()),
    ));
    for v in [4, 12, 16] {
        let t = if v >= 13 {
            FetchTopic::default().with_topic_id(uuid::Uuid::from_u128(7))
        } else {
            FetchTopic::default().with_topic(topic("orders"))
        };
        let body = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(52_428_800)
            .with_topics(vec![t.with_partitions(vec![
                FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(42)
                    .with_partition_max_bytes(1_048_576),
                FetchPartition::default()
                    .with_partition(1)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1_048_576),
            ])]);
        seeds.push((
            format!("Fetch-v{v}-partitions"),
            frame(ApiKey::Fetch, v, &body),
        ));
    }
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic("orders"))
            .with_num_partitions(3)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(s("cleanup.policy"))
                .with_value(Some(s("compact")))])]);
    seeds.push((
        "CreateTopics-v5-configs".into(),
        frame(ApiKey::CreateTopics, 5, &create),
    ));
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(s("g1")))
        .with_session_timeout_ms(45_000)
        .with_rebalance_timeout_ms(300_000)
        .with_member_id(s(""))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(&[
                0, 1, 0, 0, 0, 1, 0, 6, b'o', b'r', b'd', b'e', b'r', b's',
            ]))]);
    seeds.push((
        "JoinGroup-v5-protocols".into(),
        frame(ApiKey::JoinGroup, 5, &join),
    ));
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g1")))
        .with_generation_id_or_member_epoch(1)
        .with_member_id(s("m-1"))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic("orders"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(42)
                .with_committed_metadata(Some(s("")))])]);
    seeds.push((
        "OffsetCommit-v8-offsets".into(),
        frame(ApiKey::OffsetCommit, 8, &commit),
    ));
    // Pipelined requests on one connection, as clients send them at start-up.
    let mut pipelined = default_frame(ApiKey::ApiVersions, 3);
    pipelined.extend(frame(ApiKey::Metadata, 12, &topics()));
    pipelined.extend(produce(9, batch_of(2, 0, Compression::None, None)));
    seeds.push(("pipelined-ApiVersions-Metadata-Produce".into(), pipelined));
    seeds
}

fn default_frame(key: ApiKey, version: i16) -> Vec<u8> {
    macro_rules! by_key {
        ($($k:ident => $t:ty),* $(,)?) => {
            match key {
                $(ApiKey::$k => frame(key, version, &<$t>::default()),)*
                other => panic!("no seed body for {other:?}"),
            }
        };
    }
    by_key! {
        Fetch => FetchRequest, ListOffsets => ListOffsetsRequest, Metadata => MetadataRequest,
        OffsetCommit => OffsetCommitRequest, OffsetFetch => OffsetFetchRequest,
        FindCoordinator => FindCoordinatorRequest, JoinGroup => JoinGroupRequest,
        Heartbeat => HeartbeatRequest, LeaveGroup => LeaveGroupRequest,
        SyncGroup => SyncGroupRequest, DescribeGroups => DescribeGroupsRequest,
        ListGroups => ListGroupsRequest, ApiVersions => ApiVersionsRequest,
        CreateTopics => CreateTopicsRequest, DeleteTopics => DeleteTopicsRequest,
        InitProducerId => InitProducerIdRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        DeleteGroups => DeleteGroupsRequest, OffsetDelete => OffsetDeleteRequest,
        DescribeConfigs => DescribeConfigsRequest, AlterConfigs => AlterConfigsRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        CreatePartitions => CreatePartitionsRequest, DeleteRecords => DeleteRecordsRequest,
        DescribeCluster => DescribeClusterRequest, DescribeLogDirs => DescribeLogDirsRequest,
        DescribeQuorum => DescribeQuorumRequest, ElectLeaders => ElectLeadersRequest,
        AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
        ListPartitionReassignments => ListPartitionReassignmentsRequest,
        WriteTxnMarkers => WriteTxnMarkersRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddOffsetsToTxn => AddOffsetsToTxnRequest,
        EndTxn => EndTxnRequest, TxnOffsetCommit => TxnOffsetCommitRequest,
        DescribeTransactions => DescribeTransactionsRequest,
        ListTransactions => ListTransactionsRequest,
    }
}

/// Mode byte (see fuzz/fuzz_targets/batch_validator.rs) then a batch a producer would send.
fn batch_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for codec in CODECS {
        for (mode, n, producer) in [(0u8, 1, None), (1, 5, Some((1000, 3))), (4, 20, None)] {
            let mut b = vec![mode];
            b.extend_from_slice(&batch_of(n, 0, codec, producer));
            seeds.push((format!("{codec:?}-{n}-mode{mode}"), b));
        }
    }
    seeds
}

/// Mode byte (see fuzz/fuzz_targets/segment_recovery.rs) then a segment as the log writes it:
/// batches with assigned, growing offsets.
fn segment_seeds() -> Vec<(String, Vec<u8>)> {
    let stored = |n, base, codec| {
        let mut b = batch_of(n, 0, codec, Some((1000, 0))).to_vec();
        batch::assign(&mut b, base, 0, None);
        b
    };
    let mut seeds = Vec::new();
    for codec in CODECS {
        let mut seg = vec![0u8];
        let mut next = 0;
        for n in [1, 4, 2] {
            seg.extend(stored(n, next, codec));
            next += n;
        }
        seeds.push((format!("{codec:?}-3-batches"), seg));
    }
    let mut seg = vec![1u8];
    for (n, base) in [(2, 0), (3, 2), (1, 10)] {
        // The gap from 5 to 10 is what compaction leaves behind.
        seg.extend(stored(n, base, Compression::None));
    }
    seeds.push(("compacted-gap".into(), seg));
    seeds
}

fn write_or_read(target: &str, seeds: Vec<(String, Vec<u8>)>) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    if std::env::var_os("TIDELOG_WRITE_FUZZ_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")
        })
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        seeds.len(),
        "{}: seeds on disk vs generated",
        dir.display()
    );
    files
}

#[test]
fn request_seeds_decode_in_full() {
    for (path, bytes) in write_or_read("request_decoder", request_seeds()) {
        let mut stream = BytesMut::from(&bytes[..]);
        let mut frames = 0;
        while let Some(f) = take_frame(&mut stream, SOCKET_REQUEST_MAX_BYTES_DEFAULT).unwrap() {
            let req = decode_request(f).unwrap();
            decode_any(&req)
                .expect("a body type")
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if req.api_key == ApiKey::Produce {
                let body: ProduceRequest = req.decode_body().unwrap();
                let records = body.topic_data[0].partition_data[0]
                    .records
                    .as_ref()
                    .unwrap();
                batch::validate_batch(records, &ValidateOptions::new(MAX_MESSAGE_BYTES_DEFAULT))
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            frames += 1;
        }
        assert!(frames > 0 && stream.is_empty(), "{}", path.display());
    }
}

#[test]
fn batch_seeds_validate() {
    for (path, bytes) in write_or_read("batch_validator", batch_seeds()) {
        batch::validate_batch(
            &bytes[1..],
            &ValidateOptions::new(MAX_MESSAGE_BYTES_DEFAULT),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn segment_seeds_recover_whole() {
    let seeds = write_or_read("segment_recovery", segment_seeds());
    let scratch = tempfile::tempdir().unwrap();
    for (i, (path, bytes)) in seeds.into_iter().enumerate() {
        let dir = scratch.path().join(format!("t-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let segment = dir.join("00000000000000000000.log");
        std::fs::write(&segment, &bytes[1..]).unwrap();
        let leo = tidelog::runtime::block_on(async move {
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            log.log_end_offset().0
        });
        let kept = std::fs::metadata(&segment).unwrap().len();
        assert_eq!(
            kept,
            bytes.len() as u64 - 1,
            "{}: truncated",
            path.display()
        );
        assert!(leo > 0, "{}", path.display());
    }
}

//! Protocol semantics at the wire level, version by version: what Kafka clients rely on.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::{batch, topic, Raw};
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use tidelog::error::ErrorCode;

fn produce(c: &mut Raw, name: &str, partition: i32, records: Bytes, version: i16) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let r = c.call(&req, version);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_req(
    name: &str,
    id: uuid::Uuid,
    partition: i32,
    offset: i64,
    wait_ms: i32,
    max: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(name))
            .with_topic_id(id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(max)])])
}

fn values(records: &Option<Bytes>) -> Vec<String> {
    let mut b = records.clone().unwrap_or_default();
    let mut out = Vec::new();
    while !b.is_empty() {
        for r in RecordBatchDecoder::decode(&mut b).expect("batch").records {
            out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    out
}

fn topic_id(c: &mut Raw, name: &str) -> uuid::Uuid {
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic(name)))
    ]));
    c.call(&req, 12).topics[0].topic_id
}

fn create(c: &mut Raw, name: &str, partitions: i32) {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    assert_eq!(c.call(&req, 7).topics[0].error_code, 0);
}

#[test]
fn every_advertised_version_of_api_versions_metadata_and_fetch_works() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut c = Raw::connect(&broker.addr());
    for v in 0..=4 {
        let r = c.call(&ApiVersionsRequest::default(), v);
        assert_eq!(r.error_code, 0);
        let produce = r
            .api_keys
            .iter()
            .find(|k| k.api_key == 0)
            .expect("Produce advertised");
        assert_eq!((produce.min_version, produce.max_version), (0, 11));
    }
    create(&mut c, "versions", 1);
    for v in 0..=12 {
        let req = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic("versions"))),
        ]));
        let r = c.call(&req, v);
        assert_eq!(r.brokers.len(), 1, "v{v}");
        assert_eq!(r.topics[0].error_code, 0, "v{v}");
        assert_eq!(r.topics[0].partitions.len(), 1, "v{v}");
    }
    for v in 3..=11 {
        let (err, base) = produce(
            &mut c,
            "versions",
            0,
            batch(&[&format!("p{v}")], None, 1),
            v,
        );
        assert_eq!((err, base), (0, i64::from(v - 3)), "produce v{v}");
    }
    let id = topic_id(&mut c, "versions");
    for v in 4..=16 {
        let r = c.call(&fetch_req("versions", id, 0, 0, 0, 1 << 20), v);
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch v{v}");
        assert_eq!(p.high_watermark, 9, "fetch v{v}");
        assert_eq!(values(&p.records).len(), 9, "fetch v{v}");
    }
}

#[test]
fn list_offsets_answers_latest_earliest_by_time_and_max_timestamp() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "times", 1);
    assert_eq!(
        produce(&mut c, "times", 0, batch(&["a", "b", "c"], None, 1_000), 9),
        (0, 0)
    );
    produce(&mut c, "times", 0, batch(&["d", "e", "f"], None, 2_000), 9);
    let ask = |c: &mut Raw, ts: i64, v: i16| {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic("times"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(ts)])]);
        let r = c.call(&req, v);
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "ts {ts} v{v}");
        (p.offset, p.timestamp)
    };
    for v in 1..=7 {
        // Latest is the last offset of the last batch + 1, not a batch's base offset + 1.
        assert_eq!(ask(&mut c, -1, v).0, 6, "latest v{v}");
        assert_eq!(ask(&mut c, -2, v).0, 0, "earliest v{v}");
        assert_eq!(ask(&mut c, 2_001, v), (4, 2_001), "by time v{v}");
        assert_eq!(ask(&mut c, 1_500, v), (3, 2_000), "between batches v{v}");
        assert_eq!(ask(&mut c, 99_999, v), (-1, -1), "past the end v{v}");
    }
    assert_eq!(ask(&mut c, -3, 7), (5, 2_002), "max timestamp");
}

#[test]
fn idempotent_producer_duplicates_sequence_gaps_and_fenced_epochs() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "idem", 1);
    let init = c.call(
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
        4,
    );
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert!(pid >= 0);
    let first = batch(&["a", "b", "c"], Some((pid, epoch, 0)), 1);
    assert_eq!(produce(&mut c, "idem", 0, first.clone(), 9), (0, 0));
    // A retry of the same batch is answered with its original offset and not written again.
    assert_eq!(produce(&mut c, "idem", 0, first, 9), (0, 0));
    assert_eq!(
        produce(
            &mut c,
            "idem",
            0,
            batch(&["x"], Some((pid, epoch, 5)), 1),
            9
        )
        .0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    assert_eq!(
        produce(
            &mut c,
            "idem",
            0,
            batch(&["d"], Some((pid, epoch, 3)), 1),
            9
        ),
        (0, 3)
    );
    // KIP-360 epoch bump, then the old epoch is fenced.
    let bump = c.call(
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
        4,
    );
    assert_eq!((bump.producer_id.0, bump.producer_epoch), (pid, epoch + 1));
    assert_eq!(
        produce(
            &mut c,
            "idem",
            0,
            batch(&["e"], Some((pid, epoch + 1, 0)), 1),
            9
        ),
        (0, 4)
    );
    assert_eq!(
        produce(
            &mut c,
            "idem",
            0,
            batch(&["f"], Some((pid, epoch, 4)), 1),
            9
        )
        .0,
        47,
        "INVALID_PRODUCER_EPOCH"
    );
    let id = topic_id(&mut c, "idem");
    let r = c.call(&fetch_req("idem", id, 0, 0, 0, 1 << 20), 12);
    assert_eq!(
        values(&r.responses[0].partitions[0].records),
        ["a", "b", "c", "d", "e"]
    );
    // Ids are never reused, even across a restart.
    drop(c);
    let mut broker = broker;
    broker.restart();
    let mut c = Raw::connect(&broker.addr());
    let again = c.call(
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
        4,
    );
    assert!(
        again.producer_id.0 > pid,
        "producer id {} reused after restart",
        again.producer_id.0
    );
}

#[test]
fn parked_fetch_wakes_when_data_lands_on_any_shard() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut admin = Raw::connect(&broker.addr());
    create(&mut admin, "poll", 4);
    let id = topic_id(&mut admin, "poll");
    for partition in 0..4 {
        let mut consumer = Raw::connect(&broker.addr());
        let start = Instant::now();
        consumer.send(&fetch_req("poll", id, partition, 0, 10_000, 1 << 20), 12);
        std::thread::sleep(Duration::from_millis(300));
        produce(&mut admin, "poll", partition, batch(&["wake"], None, 1), 9);
        let r = consumer.receive::<FetchRequest>(12);
        let waited = start.elapsed();
        assert_eq!(
            values(&r.responses[0].partitions[0].records),
            ["wake"],
            "partition {partition}"
        );
        assert!(
            waited < Duration::from_secs(5),
            "partition {partition}: parked fetch woke after {waited:?}"
        );
    }
    // With no data, a fetch waits out max_wait_ms and returns empty.
    let mut consumer = Raw::connect(&broker.addr());
    let start = Instant::now();
    let r = consumer.call(&fetch_req("poll", id, 0, 1, 400, 1 << 20), 12);
    assert!(
        start.elapsed() >= Duration::from_millis(350),
        "returned after {:?}",
        start.elapsed()
    );
    assert!(values(&r.responses[0].partitions[0].records).is_empty());
}

#[test]
fn fetch_returns_the_first_batch_whole_and_rejects_offsets_out_of_range() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "kip74", 1);
    let big = "x".repeat(20_000);
    produce(&mut c, "kip74", 0, batch(&[&big, &big], None, 1), 9);
    produce(&mut c, "kip74", 0, batch(&["small"], None, 1), 9);
    let id = topic_id(&mut c, "kip74");
    let r = c.call(&fetch_req("kip74", id, 0, 1, 0, 100), 12);
    let p = &r.responses[0].partitions[0];
    // Offset 1 is inside the first batch: the whole batch comes back despite max_bytes=100.
    assert_eq!(values(&p.records).len(), 2);
    let r = c.call(&fetch_req("kip74", id, 0, 1_000, 0, 1 << 20), 12);
    assert_eq!(
        r.responses[0].partitions[0].error_code,
        ErrorCode::OffsetOutOfRange.code(),
        "OFFSET_OUT_OF_RANGE"
    );
    assert_eq!(r.responses[0].partitions[0].high_watermark, 3);
    let unknown = c.call(
        &fetch_req("nope", uuid::Uuid::from_u128(7), 0, 0, 0, 100),
        13,
    );
    assert_eq!(
        unknown.responses[0].partitions[0].error_code,
        ErrorCode::UnknownTopicId.code(),
        "UNKNOWN_TOPIC_ID"
    );
}

#[test]
fn create_topics_validates_like_kafka_and_delete_forgets() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut c = Raw::connect(&broker.addr());
    let attempt = |c: &mut Raw,
                   name: &str,
                   partitions: i32,
                   rf: i16,
                   cfg: Option<(&str, &str)>,
                   validate_only: bool| {
        let configs = cfg
            .map(|(k, v)| {
                vec![CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(k.into()))
                    .with_value(Some(StrBytes::from_string(v.into())))]
            })
            .unwrap_or_default();
        let req = CreateTopicsRequest::default()
            .with_validate_only(validate_only)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(partitions)
                .with_replication_factor(rf)
                .with_configs(configs)]);
        c.call(&req, 7).topics[0].error_code
    };
    assert_eq!(
        attempt(&mut c, "bad name", 1, 1, None, false),
        ErrorCode::InvalidTopicException.code(),
        "INVALID_TOPIC_EXCEPTION"
    );
    assert_eq!(
        attempt(&mut c, "t", 0, 1, None, false),
        ErrorCode::InvalidPartitions.code(),
        "INVALID_PARTITIONS"
    );
    assert_eq!(
        attempt(&mut c, "t", 1, 3, None, false),
        ErrorCode::InvalidReplicationFactor.code(),
        "INVALID_REPLICATION_FACTOR"
    );
    assert_eq!(
        attempt(&mut c, "t", 1, 1, Some(("retention.ms", "soon")), false),
        ErrorCode::InvalidConfig.code(),
        "INVALID_CONFIG"
    );
    assert_eq!(
        attempt(&mut c, "t", 1, 1, Some(("no.such.config", "1")), false),
        ErrorCode::InvalidConfig.code(),
        "INVALID_CONFIG"
    );
    assert_eq!(attempt(&mut c, "t", 2, 1, None, true), 0, "validate_only");
    assert_eq!(
        attempt(&mut c, "t", -1, -1, Some(("retention.ms", "60000")), false),
        0
    );
    assert_eq!(
        attempt(&mut c, "t", 1, 1, None, false),
        ErrorCode::TopicAlreadyExists.code(),
        "TOPIC_ALREADY_EXISTS"
    );
    produce(&mut c, "t", 0, batch(&["old"], None, 1), 9);
    let del = c.call(
        &DeleteTopicsRequest::default().with_topic_names(vec![topic("t"), topic("missing")]),
        5,
    );
    assert_eq!(
        del.responses
            .iter()
            .map(|r| r.error_code)
            .collect::<Vec<_>>(),
        [0, ErrorCode::UnknownTopicOrPartition.code()]
    );
    // A re-created topic starts empty, under a new id.
    assert_eq!(attempt(&mut c, "t", 1, 1, None, false), 0);
    assert_eq!(produce(&mut c, "t", 0, batch(&["new"], None, 1), 9), (0, 0));
}

#[test]
fn auto_creation_follows_the_broker_setting() {
    let broker = Broker::start_with(BrokerOptions::default().set("num.partitions", "3"));
    let mut c = Raw::connect(&broker.addr());
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic("auto")))
        ]));
    let r = c.call(&req, 9);
    assert_eq!(
        (r.topics[0].error_code, r.topics[0].partitions.len()),
        (0, 3)
    );
    let off =
        Broker::start_with(BrokerOptions::default().set("auto.create.topics.enable", "false"));
    let mut c = Raw::connect(&off.addr());
    assert_eq!(
        c.call(&req, 9).topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code(),
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        produce(&mut c, "auto", 0, batch(&["x"], None, 1), 9).0,
        ErrorCode::UnknownTopicOrPartition.code()
    );
}

#[test]
fn sigterm_shuts_down_cleanly_and_the_restart_skips_recovery() {
    let mut broker = Broker::start();
    broker.cli_ok(&["topic", "create", "clean"], b"");
    let status = broker.stop();
    assert!(status.success(), "exit status {status}");
    assert!(broker
        .data_dir()
        .join("clean-0")
        .join("clean-shutdown")
        .exists());
    broker.start_again();
    let mut c = Raw::connect(&broker.addr());
    assert_eq!(
        produce(&mut c, "clean", 0, batch(&["after"], None, 1), 9),
        (0, 0)
    );
}

#[test]
fn a_partition_with_two_batches_gets_invalid_record_and_nothing_is_written() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "two", 1);
    let mut both = batch(&["a"], None, 1).to_vec();
    both.extend_from_slice(&batch(&["b"], None, 1));
    assert_eq!(
        produce(&mut c, "two", 0, Bytes::from(both), 9).0,
        ErrorCode::InvalidRecord.code(),
        "INVALID_RECORD"
    );
    let mut corrupt = batch(&["a"], None, 1).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce(&mut c, "two", 0, Bytes::from(corrupt), 9).0,
        ErrorCode::CorruptMessage.code(),
        "CORRUPT_MESSAGE"
    );
    assert_eq!(
        produce(&mut c, "two", 0, batch(&["ok"], None, 1), 9),
        (0, 0)
    );
}

#[test]
fn the_config_file_sets_kafka_named_settings_and_bad_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "num.partitions = 4\n\"auto.create.topics.enable\" = true\n",
    )
    .unwrap();
    let broker = Broker::start_with(BrokerOptions::default().config_file(&good));
    let mut c = Raw::connect(&broker.addr());
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic("from-file")))
        ]));
    assert_eq!(c.call(&req, 9).topics[0].partitions.len(), 4);

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "num.partitons = 4\n").unwrap();
    let out = std::process::Command::new(common::tidelog_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("num.partitons"), "{err}");
}

//! Admin APIs at the wire level, every advertised version: DescribeConfigs, AlterConfigs,
//! IncrementalAlterConfigs, CreatePartitions, DeleteRecords, DescribeCluster, DescribeLogDirs;
//! topic configs that take effect without a restart and survive one.

mod common;

use bytes::Bytes;
use common::raw::{batch, topic, Raw};
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request as inc;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{alter_configs_request as alter, *};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{RecordBatchDecoder, TimestampType};
use tidelog::error::ErrorCode;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const INVALID_CONFIG: i16 = ErrorCode::InvalidConfig.code();
const INVALID_REQUEST: i16 = ErrorCode::InvalidRequest.code();
const UNKNOWN_TOPIC: i16 = ErrorCode::UnknownTopicOrPartition.code();
const OFFSET_OUT_OF_RANGE: i16 = ErrorCode::OffsetOutOfRange.code();
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn create(c: &mut Raw, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(s(k))
                .with_value(Some(s(v)))
        })
        .collect();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(configs)]);
    assert_eq!(c.call(&req, 7).topics[0].error_code, 0);
}

/// (error, base offset, log_append_time_ms)
fn produce(c: &mut Raw, name: &str, partition: i32, records: Bytes) -> (i16, i64, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let r = c.call(&req, 9);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset, p.log_append_time_ms)
}

/// Fetch v11 of one partition: (error, records).
fn fetch(c: &mut Raw, name: &str, partition: i32, offset: i64) -> (i16, Option<Bytes>) {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(name))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let r = c.call(&req, 11);
    let p = &r.responses[0].partitions[0];
    (p.error_code, p.records.clone())
}

fn earliest(c: &mut Raw, name: &str, partition: i32) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic(name))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-2)])]);
    c.call(&req, 7).topics[0].partitions[0].offset
}

fn describe(c: &mut Raw, kind: i8, name: &str, v: i16) -> DescribeConfigsResponse {
    let mut req = DescribeConfigsRequest::default()
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(s(name))
            .with_configuration_keys(None)])
        .with_include_synonyms(true);
    if v >= 3 {
        req = req.with_include_documentation(true);
    }
    c.call(&req, v)
}

fn config(r: &DescribeConfigsResponse, key: &str) -> DescribeConfigsResourceResult {
    r.results[0]
        .configs
        .iter()
        .find(|e| e.name.as_str() == key)
        .unwrap_or_else(|| panic!("{key} not reported"))
        .clone()
}

fn topic_value(c: &mut Raw, name: &str, key: &str) -> (String, i8) {
    let e = config(&describe(c, TOPIC, name, 4), key);
    (e.value.unwrap().to_string(), e.config_source)
}

fn alter_req(name: &str, configs: &[(&str, &str)], validate_only: bool) -> AlterConfigsRequest {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            alter::AlterableConfig::default()
                .with_name(s(k))
                .with_value(Some(s(v)))
        })
        .collect();
    AlterConfigsRequest::default()
        .with_resources(vec![alter::AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(s(name))
            .with_configs(configs)])
        .with_validate_only(validate_only)
}

/// IncrementalAlterConfigs of one resource: (error, message).
fn incremental(
    c: &mut Raw,
    kind: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
    v: i16,
) -> (i16, String) {
    let configs = ops
        .iter()
        .map(|(k, op, val)| {
            inc::AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(*op)
                .with_value(val.map(s))
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![inc::AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(s(name))
            .with_configs(configs)])
        .with_validate_only(validate_only);
    let r = &c.call(&req, v).responses[0];
    let msg = r.error_message.as_deref().unwrap_or("").to_string();
    (r.error_code, msg)
}

#[test]
fn api_versions_advertises_the_admin_apis() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    let r = c.call(&ApiVersionsRequest::default(), 3);
    for (key, min, max) in [
        (32, 1, 4),
        (33, 0, 2),
        (44, 0, 1),
        (37, 0, 3),
        (21, 0, 2),
        (60, 0, 1),
        (35, 1, 4),
    ] {
        let k = r
            .api_keys
            .iter()
            .find(|k| k.api_key == key)
            .expect("advertised");
        assert_eq!((k.min_version, k.max_version), (min, max), "api {key}");
    }
}

#[test]
fn describe_configs_reports_values_sources_synonyms_at_every_version() {
    let broker = Broker::start_with(BrokerOptions::default().set("log.retention.hours", "1"));
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "dc", 1, &[("segment.ms", "1000")]);
    for v in 1..=4 {
        let r = describe(&mut c, TOPIC, "dc", v);
        assert_eq!(r.results[0].error_code, 0, "v{v}");
        assert!(r.results[0].configs.len() >= 15, "v{v}");
        let seg = config(&r, "segment.ms");
        assert_eq!(
            (seg.value.as_deref(), seg.config_source),
            (Some("1000"), SOURCE_TOPIC)
        );
        assert_eq!(seg.synonyms[0].source, SOURCE_TOPIC, "v{v}");
        let ret = config(&r, "retention.ms");
        assert_eq!(ret.value.as_deref(), Some("3600000"), "v{v}");
        assert_eq!(ret.config_source, SOURCE_STATIC, "v{v}");
        let names: Vec<_> = ret
            .synonyms
            .iter()
            .map(|s| (s.name.to_string(), s.source))
            .collect();
        assert_eq!(
            names,
            [
                ("log.retention.hours".to_string(), SOURCE_STATIC),
                ("log.retention.hours".to_string(), SOURCE_DEFAULT)
            ],
            "v{v}"
        );
        let cp = config(&r, "cleanup.policy");
        assert_eq!(
            (cp.value.as_deref(), cp.config_source),
            (Some("delete"), SOURCE_DEFAULT)
        );
        assert!(!cp.read_only && !cp.is_sensitive);
        if v >= 3 {
            assert_eq!(cp.config_type, 7, "cleanup.policy is a LIST");
            assert_eq!(config(&r, "retention.ms").config_type, 5, "LONG");
            assert!(cp.documentation.is_some());
        }
        let b = describe(&mut c, BROKER, "1", v);
        assert_eq!(b.results[0].error_code, 0);
        // A dynamic broker config (tests/broker_dynamic_configs.rs): writable.
        let h = config(&b, "log.retention.hours");
        assert_eq!(
            (h.value.as_deref(), h.config_source, h.read_only),
            (Some("1"), SOURCE_STATIC, false)
        );
        assert!(config(&b, "num.partitions").read_only);
        let n = config(&b, "num.partitions");
        assert_eq!(
            (n.value.as_deref(), n.config_source),
            (Some("1"), SOURCE_DEFAULT)
        );
    }
    let missing = describe(&mut c, TOPIC, "nope", 4);
    assert_eq!(missing.results[0].error_code, UNKNOWN_TOPIC);
    assert_eq!(
        describe(&mut c, BROKER, "7", 4).results[0].error_code,
        INVALID_REQUEST
    );
    let only =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(s("dc"))
            .with_configuration_keys(Some(vec![s("segment.ms"), s("no.such")]))]);
    let r = c.call(&only, 4);
    assert_eq!(r.results[0].configs.len(), 1);
    assert!(
        r.results[0].configs[0].synonyms.is_empty(),
        "synonyms only on request"
    );
}

#[test]
fn alter_configs_replaces_overrides_validates_and_names_bad_keys() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "ac", 1, &[("segment.ms", "5000")]);
    for v in 0..=2 {
        let ms = (100_000 + i64::from(v)).to_string();
        let r = c.call(&alter_req("ac", &[("retention.ms", &ms)], false), v);
        assert_eq!(r.responses[0].error_code, 0, "v{v}");
        assert_eq!(
            topic_value(&mut c, "ac", "retention.ms"),
            (ms, SOURCE_TOPIC)
        );
        // Replace semantics: segment.ms went back to the default.
        assert_eq!(
            topic_value(&mut c, "ac", "segment.ms").1,
            SOURCE_DEFAULT,
            "v{v}"
        );

        let r = c.call(&alter_req("ac", &[("retention.ms", "1")], true), v);
        assert_eq!(r.responses[0].error_code, 0, "validate_only v{v}");
        assert_ne!(
            topic_value(&mut c, "ac", "retention.ms").0,
            "1",
            "validate_only changed it"
        );

        let r = c.call(&alter_req("ac", &[("retention.msx", "1")], false), v);
        assert_eq!(r.responses[0].error_code, INVALID_CONFIG);
        assert!(r.responses[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("retention.msx"));
        let r = c.call(&alter_req("ac", &[("segment.bytes", "big")], true), v);
        assert_eq!(r.responses[0].error_code, INVALID_CONFIG);
        assert!(r.responses[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("segment.bytes"));
    }
    let r = c.call(&alter_req("nope", &[("retention.ms", "1")], false), 2);
    assert_eq!(r.responses[0].error_code, UNKNOWN_TOPIC);
    let mut broker_req = alter_req("1", &[("num.partitions", "3")], false);
    broker_req.resources[0].resource_type = BROKER;
    assert_eq!(
        c.call(&broker_req, 2).responses[0].error_code,
        INVALID_REQUEST
    );
}

#[test]
fn incremental_alter_configs_sets_deletes_appends_and_subtracts() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "ic", 1, &[("retention.ms", "5000")]);
    for v in 0..=1 {
        let ops = [
            ("cleanup.policy", 2, Some("compact")),
            ("retention.ms", 1, None),
            ("segment.ms", 0, Some("777")),
        ];
        assert_eq!(
            incremental(&mut c, TOPIC, "ic", &ops, false, v).0,
            0,
            "v{v}"
        );
        assert_eq!(
            topic_value(&mut c, "ic", "cleanup.policy").0,
            "delete,compact"
        );
        assert_eq!(topic_value(&mut c, "ic", "retention.ms").1, SOURCE_DEFAULT);
        assert_eq!(
            topic_value(&mut c, "ic", "segment.ms"),
            ("777".into(), SOURCE_TOPIC)
        );
        let sub = [("cleanup.policy", 3, Some("delete"))];
        assert_eq!(incremental(&mut c, TOPIC, "ic", &sub, false, v).0, 0);
        assert_eq!(topic_value(&mut c, "ic", "cleanup.policy").0, "compact");
        // validate_only leaves everything as it was.
        let set = [("retention.ms", 0, Some("42"))];
        assert_eq!(incremental(&mut c, TOPIC, "ic", &set, true, v).0, 0);
        assert_eq!(topic_value(&mut c, "ic", "retention.ms").1, SOURCE_DEFAULT);
        // Errors name the key.
        let (err, msg) = incremental(
            &mut c,
            TOPIC,
            "ic",
            &[("flush.bogus", 0, Some("1"))],
            false,
            v,
        );
        assert_eq!(err, INVALID_CONFIG);
        assert!(msg.contains("flush.bogus"), "{msg}");
        let (err, msg) = incremental(
            &mut c,
            TOPIC,
            "ic",
            &[("retention.ms", 2, Some("1"))],
            false,
            v,
        );
        assert_eq!(err, INVALID_CONFIG);
        assert!(msg.contains("retention.ms"), "{msg}");
        let (err, msg) = incremental(
            &mut c,
            TOPIC,
            "ic",
            &[("min.cleanable.dirty.ratio", 0, Some("2"))],
            false,
            v,
        );
        assert_eq!(err, INVALID_CONFIG);
        assert!(msg.contains("min.cleanable.dirty.ratio"), "{msg}");
        // Clean up the overrides for the next version's round.
        let reset = [("cleanup.policy", 1, None), ("segment.ms", 1, None)];
        assert_eq!(incremental(&mut c, TOPIC, "ic", &reset, false, v).0, 0);
    }
    let ops = [("num.partitions", 0, Some("3"))];
    assert_eq!(
        incremental(&mut c, BROKER, "1", &ops, false, 1).0,
        INVALID_REQUEST
    );
    assert_eq!(
        incremental(
            &mut c,
            TOPIC,
            "nope",
            &[("retention.ms", 0, Some("1"))],
            false,
            1
        )
        .0,
        UNKNOWN_TOPIC
    );
}

#[test]
fn config_changes_take_effect_live_and_survive_restart() {
    let mut broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "live", 4, &[]);
    let big = "x".repeat(2000);
    for p in 0..4 {
        assert_eq!(produce(&mut c, "live", p, batch(&[&big], None, 1)).0, 0);
    }
    let set = [
        ("max.message.bytes", 0, Some("1000")),
        ("message.timestamp.type", 0, Some("LogAppendTime")),
    ];
    assert_eq!(incremental(&mut c, TOPIC, "live", &set, false, 1).0, 0);
    for p in 0..4 {
        // MESSAGE_TOO_LARGE on every shard's partitions, at once.
        assert_eq!(
            produce(&mut c, "live", p, batch(&[&big], None, 1)).0,
            ErrorCode::MessageTooLarge.code(),
            "partition {p}"
        );
        let (err, base, append_time) = produce(&mut c, "live", p, batch(&["small"], None, 1));
        assert_eq!(err, 0);
        assert!(
            append_time > 1_600_000_000_000,
            "LogAppendTime stamps the append: {append_time}"
        );
        let (err, records) = fetch(&mut c, "live", p, base);
        assert_eq!(err, 0);
        let mut bytes = records.unwrap();
        let b = RecordBatchDecoder::decode(&mut bytes).unwrap();
        assert_eq!(b.records[0].timestamp_type, TimestampType::LogAppend);
    }
    broker.restart();
    let mut c = Raw::connect(&broker.addr());
    assert_eq!(
        topic_value(&mut c, "live", "max.message.bytes"),
        ("1000".into(), SOURCE_TOPIC)
    );
    assert_eq!(
        produce(&mut c, "live", 0, batch(&[&big], None, 1)).0,
        ErrorCode::MessageTooLarge.code(),
        "after restart"
    );
}

#[test]
fn create_partitions_adds_partitions_on_their_owner_shards() {
    let mut broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "grow", 1, &[]);
    let req = |count: i32, validate_only: bool| {
        CreatePartitionsRequest::default()
            .with_timeout_ms(5000)
            .with_validate_only(validate_only)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_assignments(None)
                .with_name(topic("grow"))
                .with_count(count)])
    };
    let partitions = |c: &mut Raw| {
        let req = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic("grow"))),
        ]));
        c.call(&req, 12).topics[0].partitions.len() as i32
    };
    for v in 0..=3 {
        let want = i32::from(v) * 2 + 3;
        assert_eq!(c.call(&req(want + 5, true), v).results[0].error_code, 0);
        assert_eq!(
            partitions(&mut c),
            want - 2,
            "validate_only added partitions"
        );
        assert_eq!(
            c.call(&req(want, false), v).results[0].error_code,
            0,
            "v{v}"
        );
        assert_eq!(partitions(&mut c), want);
        for p in 0..want {
            assert_eq!(
                produce(&mut c, "grow", p, batch(&["v"], None, 1)).0,
                0,
                "partition {p}"
            );
        }
        let r = c.call(&req(want - 1, false), v);
        assert_eq!(
            r.results[0].error_code,
            ErrorCode::InvalidPartitions.code(),
            "INVALID_PARTITIONS when shrinking"
        );
        assert!(r.results[0].error_message.is_some());
    }
    let mut unknown = req(5, false);
    unknown.topics[0].name = topic("nope");
    assert_eq!(c.call(&unknown, 3).results[0].error_code, UNKNOWN_TOPIC);
    broker.restart();
    let mut c = Raw::connect(&broker.addr());
    assert_eq!(partitions(&mut c), 9);
    assert_eq!(fetch(&mut c, "grow", 8, 0).0, 0);
}

#[test]
fn delete_records_moves_the_log_start_offset() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "dr", 2, &[]);
    for i in 0..10 {
        produce(&mut c, "dr", 0, batch(&[&format!("r{i}")], None, 1));
    }
    let req = |p: i32, offset: i64| {
        DeleteRecordsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic("dr"))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(p)
                    .with_offset(offset)])])
    };
    for v in 0..=2 {
        let before = 2 + i64::from(v) * 2;
        let r = c.call(&req(0, before), v);
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.low_watermark), (0, before), "v{v}");
        assert_eq!(earliest(&mut c, "dr", 0), before);
        assert_eq!(fetch(&mut c, "dr", 0, before - 1).0, OFFSET_OUT_OF_RANGE);
        assert_eq!(fetch(&mut c, "dr", 0, before).0, 0);
    }
    let p = c.call(&req(0, 11), 2).topics[0].partitions[0].clone();
    assert_eq!(
        p.error_code, OFFSET_OUT_OF_RANGE,
        "beyond the high watermark"
    );
    let p = c.call(&req(0, -1), 2).topics[0].partitions[0].clone();
    assert_eq!(
        (p.error_code, p.low_watermark),
        (0, 10),
        "-1 means the high watermark"
    );
    assert_eq!(
        c.call(&req(5, 1), 2).topics[0].partitions[0].error_code,
        UNKNOWN_TOPIC
    );
}

#[test]
fn describe_cluster_and_log_dirs_at_every_version() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "ld", 3, &[]);
    produce(&mut c, "ld", 1, batch(&["hello"], None, 1));
    let port: i32 = broker.addr().rsplit(':').next().unwrap().parse().unwrap();
    for v in 0..=1 {
        let r = c.call(&DescribeClusterRequest::default(), v);
        assert_eq!(r.error_code, 0);
        assert_eq!(r.controller_id.0, 1);
        assert_eq!(r.cluster_id.len(), 22);
        assert_eq!((r.brokers.len(), r.brokers[0].port), (1, port));
    }
    let controllers = DescribeClusterRequest::default().with_endpoint_type(2);
    assert_eq!(
        c.call(&controllers, 1).error_code,
        ErrorCode::UnsupportedEndpointType.code(),
        "UNSUPPORTED_ENDPOINT_TYPE"
    );
    for v in 1..=4 {
        let r = c.call(&DescribeLogDirsRequest::default().with_topics(None), v);
        let dir = &r.results[0];
        assert_eq!(dir.error_code, 0);
        assert!(
            dir.log_dir.starts_with('/'),
            "absolute: {}",
            dir.log_dir.as_str()
        );
        let t = dir
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == "ld")
            .expect("topic listed");
        assert_eq!(t.partitions.len(), 3);
        let p1 = t
            .partitions
            .iter()
            .find(|p| p.partition_index == 1)
            .unwrap();
        assert!(p1.partition_size > 0, "v{v}");
        if v >= 4 {
            assert!(dir.total_bytes > 0 && dir.usable_bytes > 0);
        }
        let only = DescribeLogDirsRequest::default().with_topics(Some(vec![
            DescribableLogDirTopic::default()
                .with_topic(topic("ld"))
                .with_partitions(vec![1]),
        ]));
        let r = c.call(&only, v);
        assert_eq!(r.results[0].topics.len(), 1);
        assert_eq!(r.results[0].topics[0].partitions.len(), 1);
    }
}

#[test]
fn cli_alters_configs_adds_partitions_and_deletes_records() {
    let broker = Broker::start();
    broker.cli_ok(&["topic", "create", "cli", "--partitions", "1"], b"");
    let out = broker.cli_ok(
        &[
            "topic",
            "alter-config",
            "cli",
            "--set",
            "retention.ms=1000",
            "--set",
            "segment.ms=500",
        ],
        b"",
    );
    assert_eq!(out, "Completed updating config for topic cli.\n");
    broker.cli_ok(
        &["topic", "alter-config", "cli", "--delete", "segment.ms"],
        b"",
    );
    let described = broker.cli_ok(&["topic", "describe", "cli"], b"");
    assert!(
        described.contains("Configs: retention.ms=1000\n"),
        "{described}"
    );
    let bad = broker.run_cli(
        &["topic", "alter-config", "cli", "--set", "retention.mss=1"],
        b"",
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("INVALID_CONFIG") && err.contains("retention.mss"),
        "{err}"
    );

    broker.cli_ok(
        &["topic", "add-partitions", "cli", "--partitions", "3"],
        b"",
    );
    let described = broker.cli_ok(&["topic", "describe", "cli"], b"");
    assert!(described.contains("PartitionCount: 3"), "{described}");

    broker.cli_ok(&["produce", "cli", "--partition", "0"], b"a\nb\nc\nd\n");
    let out = broker.cli_ok(
        &[
            "topic",
            "delete-records",
            "cli",
            "--partition",
            "0",
            "--before-offset",
            "2",
        ],
        b"",
    );
    assert_eq!(out, "partition: cli-0\tlow_watermark: 2\n");
    let out = broker.cli_ok(
        &[
            "consume",
            "cli",
            "--partition",
            "0",
            "--from-beginning",
            "--max-messages",
            "2",
            "--timeout-ms",
            "5000",
        ],
        b"",
    );
    assert_eq!(out, "c\nd\n");
}

/// Every metadata change is a record fsynced to the metadata log before it is answered, so a
/// SIGKILL right after the answers keeps all of them: a topic created and one deleted, a
/// topic config, added partitions, a dynamic broker default.
#[test]
fn metadata_changes_answered_before_a_sigkill_are_all_there_after_it() {
    let mut broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "kept", 2, &[("retention.ms", "123456")]);
    create(&mut c, "gone", 1, &[]);
    let delete = DeleteTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topic_names(vec![topic("gone")]);
    assert_eq!(c.call(&delete, 4).responses[0].error_code, 0);
    let set = [("max.message.bytes", 0, Some("500000"))];
    assert_eq!(incremental(&mut c, TOPIC, "kept", &set, false, 1).0, 0);
    let set = [("log.retention.ms", 0, Some("7654321"))];
    assert_eq!(incremental(&mut c, BROKER, "", &set, false, 1).0, 0);
    let grow = CreatePartitionsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_assignments(None)
            .with_name(topic("kept"))
            .with_count(5)]);
    assert_eq!(c.call(&grow, 3).results[0].error_code, 0);

    broker.kill_and_restart();
    let mut c = Raw::connect(&broker.addr());
    let all = c.call(&MetadataRequest::default().with_topics(None), 12);
    let names: Vec<_> = all
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .filter(|n| !n.starts_with("__"))
        .collect();
    assert_eq!(names, ["kept"]);
    let kept = all
        .topics
        .iter()
        .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some("kept"))
        .unwrap();
    assert_eq!(kept.partitions.len(), 5);
    assert_eq!(
        topic_value(&mut c, "kept", "retention.ms"),
        ("123456".into(), SOURCE_TOPIC)
    );
    assert_eq!(
        topic_value(&mut c, "kept", "max.message.bytes"),
        ("500000".into(), SOURCE_TOPIC)
    );
    let broker_default = describe(&mut c, BROKER, "", 4);
    assert_eq!(
        config(&broker_default, "log.retention.ms")
            .value
            .as_deref()
            .map(|v| v.to_string()),
        Some("7654321".to_string())
    );
    // Produce works on the partitions added before the crash.
    assert_eq!(produce(&mut c, "kept", 4, batch(&["v"], None, 1)).0, 0);
}

/// `default.replication.factor` sizes a topic created with replication factor -1, and a factor
/// the brokers cannot hold is INVALID_REPLICATION_FACTOR with Kafka's message; `broker.rack`
/// is reported in Metadata and DescribeCluster. Consumer groups keep working: the offsets
/// topic is sized by its own setting.
#[test]
fn replication_factors_and_the_rack_answer_as_kafka_does() {
    let broker = Broker::start_with(
        BrokerOptions::default()
            .set("default.replication.factor", "3")
            .set("broker.rack", "rack-a"),
    );
    let mut c = Raw::connect(&broker.addr());
    let create = |c: &mut Raw, name: &str, rf: i16| {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(1)
                .with_replication_factor(rf)]);
        let r = c.call(&req, 7);
        (
            r.topics[0].error_code,
            r.topics[0]
                .error_message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
        )
    };
    let invalid = ErrorCode::InvalidReplicationFactor.code();
    assert_eq!(
        create(&mut c, "by-default", -1),
        (
            invalid,
            "Unable to replicate the partition 3 time(s): The target replication factor of 3 \
             cannot be reached because only 1 broker(s) are registered."
                .to_string()
        )
    );
    assert_eq!(
        create(&mut c, "zero", 0),
        (
            invalid,
            "Replication factor must be larger than 0, or -1 to use the default value.".to_string()
        )
    );
    assert_eq!(create(&mut c, "one", 1).0, 0);
    let md = c.call(&MetadataRequest::default().with_topics(None), 12);
    assert_eq!(
        md.brokers[0]
            .rack
            .as_ref()
            .map(|r| r.to_string())
            .as_deref(),
        Some("rack-a")
    );
    let dc = c.call(&DescribeClusterRequest::default(), 1);
    assert_eq!(
        dc.brokers[0]
            .rack
            .as_ref()
            .map(|r| r.to_string())
            .as_deref(),
        Some("rack-a")
    );
    // FindCoordinator creates __consumer_offsets, with one replica.
    let find = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![s("g")]);
    let r = c.call(&find, 4);
    assert_eq!(r.coordinators[0].error_code, 0);
}

//! Dynamic broker configs at the wire level: AlterConfigs and IncrementalAlterConfigs on the
//! broker resource (`""` for the cluster-wide defaults, `"1"` for this broker) change the
//! defaults topics inherit while the broker runs, survive a restart, are reported with
//! Kafka's sources, and settings that cannot change at run time are refused as Kafka does.

mod common;

use bytes::Bytes;
use common::raw::{batch, topic, Raw};
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::incremental_alter_configs_request as inc;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{alter_configs_request as alter, *};
use kafka_protocol::protocol::StrBytes;
use tidelog::error::ErrorCode;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// DescribeConfigs `config_source` values, Kafka's numbering.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DYNAMIC_BROKER_CONFIG: i8 = 2;
const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
const STATIC_BROKER_CONFIG: i8 = 4;
/// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const OK: i16 = 0;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn create(c: &mut Raw, name: &str, configs: &[(&str, &str)]) {
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
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(configs)]);
    assert_eq!(c.call(&req, 7).topics[0].error_code, OK);
}

/// IncrementalAlterConfigs of one resource: (error, message).
fn incremental(
    c: &mut Raw,
    kind: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
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
    let r = &c.call(&req, 1).responses[0];
    (
        r.error_code,
        r.error_message.as_deref().unwrap_or("").into(),
    )
}

fn describe(c: &mut Raw, kind: i8, name: &str) -> DescribeConfigsResult {
    let req = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(s(name))
            .with_configuration_keys(None)]);
    let r = c.call(&req, 4).results.remove(0);
    assert_eq!(r.error_code, OK, "describe {name:?}");
    r
}

/// (value, source, read_only) of one entry.
fn entry(r: &DescribeConfigsResult, name: &str) -> (Option<String>, i8, bool) {
    let e = r
        .configs
        .iter()
        .find(|e| e.name.as_str() == name)
        .unwrap_or_else(|| panic!("{name} not described"));
    (
        e.value.as_ref().map(|v| v.to_string()),
        e.config_source,
        e.read_only,
    )
}

fn produce(c: &mut Raw, name: &str, records: Bytes) -> i16 {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    c.call(&req, 9).responses[0].partition_responses[0].error_code
}

fn some(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn broker_defaults_change_at_run_time_apply_to_topics_and_survive_a_restart() {
    let mut broker = Broker::start_with(
        BrokerOptions::default()
            .shards(2)
            .set("log.retention.hours", "1"),
    );
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "plain", &[]);
    create(
        &mut c,
        "own",
        &[("retention.ms", "5000"), ("max.message.bytes", "100000")],
    );

    // Cluster-wide default, then this broker's own value on top of it.
    let set_default = [("log.retention.ms", SET, Some("60000"))];
    assert_eq!(incremental(&mut c, BROKER, "", &set_default, false).0, OK);
    let plain = describe(&mut c, TOPIC, "plain");
    assert_eq!(
        entry(&plain, "retention.ms"),
        (some("60000"), DYNAMIC_DEFAULT_BROKER_CONFIG, false)
    );
    let set_own = [("log.retention.ms", SET, Some("120000"))];
    assert_eq!(incremental(&mut c, BROKER, "1", &set_own, false).0, OK);
    let plain = describe(&mut c, TOPIC, "plain");
    assert_eq!(
        entry(&plain, "retention.ms"),
        (some("120000"), DYNAMIC_BROKER_CONFIG, false)
    );
    let synonyms: Vec<(String, i8)> = plain
        .configs
        .iter()
        .find(|e| e.name.as_str() == "retention.ms")
        .unwrap()
        .synonyms
        .iter()
        .map(|y| (y.name.to_string(), y.source))
        .collect();
    assert_eq!(
        &synonyms[..3],
        [
            ("log.retention.ms".to_string(), DYNAMIC_BROKER_CONFIG),
            (
                "log.retention.ms".to_string(),
                DYNAMIC_DEFAULT_BROKER_CONFIG
            ),
            ("log.retention.hours".to_string(), STATIC_BROKER_CONFIG),
        ]
    );
    // A topic's own override still wins.
    let own = describe(&mut c, TOPIC, "own");
    assert_eq!(entry(&own, "retention.ms").1, DYNAMIC_TOPIC_CONFIG);

    // The broker resources report their dynamic values and which settings are writable.
    let b = describe(&mut c, BROKER, "1");
    assert_eq!(
        entry(&b, "log.retention.ms"),
        (some("120000"), DYNAMIC_BROKER_CONFIG, false)
    );
    assert!(entry(&b, "num.partitions").2, "num.partitions is read-only");
    assert!(entry(&b, "log.dirs").2, "log.dirs is read-only");
    let d = describe(&mut c, BROKER, "");
    assert_eq!(
        entry(&d, "log.retention.ms"),
        (some("60000"), DYNAMIC_DEFAULT_BROKER_CONFIG, false)
    );

    // message.max.bytes takes effect on the next append, for topics without their own limit.
    let big = batch(&[&"x".repeat(600)], None, 1);
    assert_eq!(produce(&mut c, "plain", big.clone()), OK);
    let limit = [("message.max.bytes", SET, Some("300"))];
    assert_eq!(incremental(&mut c, BROKER, "", &limit, false).0, OK);
    assert_eq!(
        produce(&mut c, "plain", big.clone()),
        ErrorCode::MessageTooLarge.code()
    );
    assert_eq!(produce(&mut c, "own", big.clone()), OK);

    // Persisted with the metadata: the same after a restart.
    broker.restart();
    let mut c = Raw::connect(&broker.addr());
    assert_eq!(
        entry(&describe(&mut c, TOPIC, "plain"), "retention.ms").0,
        some("120000")
    );
    assert_eq!(
        produce(&mut c, "plain", big.clone()),
        ErrorCode::MessageTooLarge.code()
    );

    // AlterConfigs replaces a resource's whole set: an empty set clears this broker's layer,
    // and the cluster default shows through; DELETE on the default falls back to the file.
    let clear =
        AlterConfigsRequest::default().with_resources(vec![alter::AlterConfigsResource::default()
            .with_resource_type(BROKER)
            .with_resource_name(s("1"))]);
    assert_eq!(c.call(&clear, 2).responses[0].error_code, OK);
    assert_eq!(
        entry(&describe(&mut c, TOPIC, "plain"), "retention.ms"),
        (some("60000"), DYNAMIC_DEFAULT_BROKER_CONFIG, false)
    );
    let drop_defaults = [
        ("log.retention.ms", DELETE, None),
        ("message.max.bytes", DELETE, None),
    ];
    assert_eq!(incremental(&mut c, BROKER, "", &drop_defaults, false).0, OK);
    assert_eq!(
        entry(&describe(&mut c, TOPIC, "plain"), "retention.ms"),
        (some("3600000"), STATIC_BROKER_CONFIG, false)
    );
    assert_eq!(produce(&mut c, "plain", big), OK);
}

#[test]
fn read_only_settings_bad_values_and_validate_only_change_nothing() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "t", &[]);
    let before = describe(&mut c, TOPIC, "t");

    let fixed = [("num.partitions", SET, Some("3"))];
    let (code, msg) = incremental(&mut c, BROKER, "1", &fixed, false);
    assert_eq!(code, ErrorCode::InvalidRequest.code());
    assert!(
        msg.contains("Cannot update these configs dynamically"),
        "{msg}"
    );
    assert!(msg.contains("num.partitions"), "{msg}");
    let mut legacy =
        AlterConfigsRequest::default().with_resources(vec![alter::AlterConfigsResource::default()
            .with_resource_type(BROKER)
            .with_resource_name(s(""))
            .with_configs(vec![alter::AlterableConfig::default()
                .with_name(s("log.dirs"))
                .with_value(Some(s("/elsewhere")))])]);
    assert_eq!(
        c.call(&legacy, 2).responses[0].error_code,
        ErrorCode::InvalidRequest.code()
    );

    let (code, msg) = incremental(
        &mut c,
        BROKER,
        "1",
        &[("log.segment.bytes", SET, Some("3"))],
        false,
    );
    assert_eq!(code, ErrorCode::InvalidConfig.code());
    assert!(msg.contains("log.segment.bytes"), "{msg}");
    let other_broker = [("log.retention.ms", SET, Some("1000"))];
    assert_eq!(
        incremental(&mut c, BROKER, "7", &other_broker, false).0,
        ErrorCode::InvalidRequest.code()
    );

    let fine = [("log.retention.ms", SET, Some("1000"))];
    assert_eq!(incremental(&mut c, BROKER, "1", &fine, true).0, OK);
    legacy.resources[0].configs[0].name = s("log.retention.ms");
    legacy.resources[0].configs[0].value = Some(s("2000"));
    legacy.validate_only = true;
    assert_eq!(c.call(&legacy, 2).responses[0].error_code, OK);
    assert_eq!(describe(&mut c, TOPIC, "t"), before, "nothing changed");
    assert!(describe(&mut c, BROKER, "").configs.is_empty());
}

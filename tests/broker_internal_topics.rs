//! Internal topics are the broker's, not clients': each attack below (hand-built requests, no
//! client library in the way) is refused with Kafka's error code and leaves the broker's own
//! state intact. Issue 9, item 3.

mod common;

use common::raw::{batch, topic, Raw};
use common::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const OFFSETS: &str = "__consumer_offsets";
const GROUP: &str = "g-internal";
const COMMITTED: i64 = 42;

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// Commits offset 42 of `data-0` for `GROUP`, which also makes the broker create
/// `__consumer_offsets` (as Kafka does on a group's first use).
fn commit_an_offset(c: &mut Raw) {
    let r = c.call(
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic("data"))
            .with_num_partitions(1)
            .with_replication_factor(1)]),
        7,
    );
    assert_eq!(r.topics[0].error_code, 0);
    let r = c.call(
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic("data"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(COMMITTED)])]),
        8,
    );
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
}

fn committed_offset(c: &mut Raw) -> i64 {
    let r = c.call(
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic("data"))
                .with_partition_indexes(vec![0])])),
        7,
    );
    assert_eq!(r.error_code, 0);
    r.topics[0].partitions[0].committed_offset
}

fn offsets_partitions(c: &mut Raw) -> usize {
    let r = c.call(
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic(OFFSETS)))
        ])),
        12,
    );
    assert_eq!(r.topics[0].error_code, 0, "{OFFSETS} missing");
    assert!(r.topics[0].is_internal);
    r.topics[0].partitions.len()
}

#[test]
fn delete_topics_of_consumer_offsets_is_refused_and_offsets_survive_a_restart() {
    let mut broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    commit_an_offset(&mut c);
    // By name (v1-5) and by name in the v6 form.
    let r = c.call(
        &DeleteTopicsRequest::default().with_topic_names(vec![topic(OFFSETS)]),
        5,
    );
    assert_eq!(
        r.responses[0].error_code,
        code(ResponseError::InvalidRequest)
    );
    assert!(r.responses[0]
        .error_message
        .as_deref()
        .is_some_and(|m| m.contains("internal topic")));
    let r = c.call(
        &DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic(OFFSETS)))
        ]),
        6,
    );
    assert_eq!(
        r.responses[0].error_code,
        code(ResponseError::InvalidRequest)
    );
    drop(c);
    broker.restart();
    let mut c = Raw::connect(&broker.addr());
    assert_eq!(committed_offset(&mut c), COMMITTED);
}

#[test]
fn delete_topics_of_consumer_offsets_by_topic_id_is_refused() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    commit_an_offset(&mut c);
    let r = c.call(
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic(OFFSETS)))
        ])),
        12,
    );
    let id = r.topics[0].topic_id;
    let r = c.call(
        &DeleteTopicsRequest::default()
            .with_topics(vec![DeleteTopicState::default().with_topic_id(id)]),
        6,
    );
    assert_eq!(
        r.responses[0].error_code,
        code(ResponseError::InvalidRequest)
    );
    assert_eq!(committed_offset(&mut c), COMMITTED);
}

#[test]
fn create_topics_of_internal_names_by_hand_is_refused() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    let create = |c: &mut Raw, name: &str| {
        let r = c.call(
            &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
            7,
        );
        r.topics[0].error_code
    };
    // Before the broker made it, `__consumer_offsets` by hand would get the wrong layout.
    for name in ["__cluster_metadata", "__transaction_state", OFFSETS] {
        assert_eq!(
            create(&mut c, name),
            code(ResponseError::InvalidRequest),
            "{name}"
        );
    }
    // Once the broker made it, the answer is Kafka's for any existing topic.
    commit_an_offset(&mut c);
    assert_eq!(
        create(&mut c, OFFSETS),
        code(ResponseError::TopicAlreadyExists)
    );
    // Nor may Metadata's auto-creation make one with the broker's defaults.
    let r = c.call(
        &MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic("__transaction_state")))
            ]))
            .with_allow_auto_topic_creation(true),
        12,
    );
    assert_eq!(
        r.topics[0].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
}

#[test]
fn produce_to_consumer_offsets_is_refused() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    commit_an_offset(&mut c);
    let r = c.call(
        &ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic(OFFSETS))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&["forged"], None, 0)))])]),
        9,
    );
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        code(ResponseError::InvalidTopicException)
    );
    assert_eq!(committed_offset(&mut c), COMMITTED);
}

#[test]
fn create_partitions_of_consumer_offsets_is_refused() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    commit_an_offset(&mut c);
    let before = offsets_partitions(&mut c);
    let r = c.call(
        &CreatePartitionsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_assignments(None)
                .with_name(topic(OFFSETS))
                .with_count(before as i32 + 10)]),
        3,
    );
    assert_eq!(r.results[0].error_code, code(ResponseError::InvalidRequest));
    assert_eq!(offsets_partitions(&mut c), before);
    assert_eq!(committed_offset(&mut c), COMMITTED);
}

#[test]
fn delete_records_of_consumer_offsets_is_refused() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    commit_an_offset(&mut c);
    let partitions = offsets_partitions(&mut c) as i32;
    let r = c.call(
        &DeleteRecordsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic(OFFSETS))
                .with_partitions(
                    (0..partitions)
                        .map(|p| {
                            DeleteRecordsPartition::default()
                                .with_partition_index(p)
                                .with_offset(-1)
                        })
                        .collect(),
                )]),
        2,
    );
    for p in &r.topics[0].partitions {
        assert_eq!(
            p.error_code,
            code(ResponseError::InvalidTopicException),
            "partition {}",
            p.partition_index
        );
    }
    // The committed offset is still read back after a restart replays the log.
    drop(c);
    let mut broker = broker;
    broker.restart();
    let mut c = Raw::connect(&broker.addr());
    assert_eq!(committed_offset(&mut c), COMMITTED);
}

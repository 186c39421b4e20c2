//! Storage faults the broker survives: a partition directory left behind by a crash in the
//! middle of DeleteTopics is removed at the next start, and a partition that cannot be opened
//! makes CreateTopics answer KAFKA_STORAGE_ERROR for its topic while the broker keeps serving.

mod common;

use common::raw::{batch, topic, Raw};
use common::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn creatable(name: &str, partitions: i32) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
}

/// Produces one record with acks=-1 and returns the partition's error code.
fn produce_one(c: &mut Raw, name: &str, partition: i32) -> i16 {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch(&["v"], None, 1_700_000_000_000)))])]);
    c.call(&req, 9).responses[0].partition_responses[0].error_code
}

#[test]
fn directories_of_partitions_deleted_before_a_crash_are_removed_at_start() {
    let mut b = Broker::start();
    b.stop();
    // The name DeleteTopics gives a partition directory it moves aside before removing it
    // (`<topic>-<partition>.<topic id>-delete`), with a segment inside as a real one has.
    let left = b
        .data_dir()
        .join("gone-0.0123456789abcdef0123456789abcdef-delete");
    std::fs::create_dir(&left).unwrap();
    std::fs::write(left.join("00000000000000000000.log"), b"stale").unwrap();
    b.start_again();
    assert!(
        !left.exists(),
        "the broker removes a deleted partition's directory at start-up"
    );
    let mut c = Raw::connect(&b.addr());
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![creatable("after", 1)]);
    assert_eq!(c.call(&req, 7).topics[0].error_code, 0);
    assert_eq!(produce_one(&mut c, "after", 0), 0, "the broker serves");
}

#[test]
fn a_partition_that_cannot_be_opened_fails_create_topics_with_a_storage_error() {
    let b = Broker::start();
    // A regular file where partition 1's directory belongs: the owner shard cannot create the
    // directory (tests run as root, so permissions would not stop it).
    std::fs::write(b.data_dir().join("broken-1"), b"not a directory").unwrap();
    let mut c = Raw::connect(&b.addr());
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![creatable("broken", 2), creatable("fine", 2)]);
    let resp = c.call(&req, 7);
    let broken = &resp.topics[0];
    assert_eq!(broken.name.0.as_str(), "broken");
    assert_eq!(broken.error_code, code(ResponseError::KafkaStorageError));
    let message = broken.error_message.as_ref().map(|m| m.to_string());
    assert!(
        message.as_deref().is_some_and(|m| m.contains("[1]")),
        "the message names the partition that failed: {message:?}"
    );
    let fine = &resp.topics[1];
    assert_eq!(fine.name.0.as_str(), "fine");
    assert_eq!(fine.error_code, 0, "one topic's failure is not the other's");

    // The broker keeps serving: the good topic and the partition that did open take writes,
    // and the partition that failed answers as an offline partition would.
    assert_eq!(produce_one(&mut c, "fine", 0), 0);
    assert_eq!(produce_one(&mut c, "fine", 1), 0);
    assert_eq!(produce_one(&mut c, "broken", 0), 0);
    assert_eq!(
        produce_one(&mut c, "broken", 1),
        code(ResponseError::NotLeaderOrFollower)
    );
}

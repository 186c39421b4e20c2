//! Retention in action: with a small `retention.ms` and `segment.ms`, old segments disappear in
//! the background while a producer and a consumer keep running, and a consumer at an old offset
//! gets OFFSET_OUT_OF_RANGE.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::raw::{batch, topic, Raw};
use common::{eventually, Broker, BrokerOptions};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use tidelog::error::ErrorCode;

const OFFSET_OUT_OF_RANGE: i16 = ErrorCode::OffsetOutOfRange.code();

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn produce(c: &mut Raw, records: Bytes) -> i16 {
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("ret"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    c.call(&req, 9).responses[0].partition_responses[0].error_code
}

/// Fetch v11 from `offset`: (error, offsets of the records returned).
fn fetch(c: &mut Raw, offset: i64) -> (i16, Vec<i64>) {
    let req = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic("ret"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let r = c.call(&req, 11);
    let p = &r.responses[0].partitions[0];
    let mut bytes = p.records.clone().unwrap_or_default();
    let mut offsets = Vec::new();
    while !bytes.is_empty() {
        let b = RecordBatchDecoder::decode(&mut bytes).expect("batch");
        offsets.extend(b.records.iter().map(|r| r.offset));
    }
    (p.error_code, offsets)
}

fn earliest(c: &mut Raw) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic("ret"))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-2)])]);
    c.call(&req, 7).topics[0].partitions[0].offset
}

fn segment_files(broker: &Broker) -> usize {
    std::fs::read_dir(broker.data_dir().join("ret-0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "log"))
        })
        .count()
}

#[test]
fn old_segments_go_while_producers_and_consumers_keep_running() {
    let broker = Broker::start_with(
        BrokerOptions::default()
            .shards(2)
            .set("log.retention.check.interval.ms", "200"),
    );
    let mut c = Raw::connect(&broker.addr());
    let config = |k: &str, v: &str| {
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_string(k.into()))
            .with_value(Some(StrBytes::from_string(v.into())))
    };
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic("ret"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                config("retention.ms", "1500"),
                config("segment.ms", "300"),
            ])]);
    assert_eq!(c.call(&req, 7).topics[0].error_code, 0);

    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (addr, stop) = (broker.addr(), stop.clone());
        std::thread::spawn(move || {
            let mut p = Raw::connect(&addr);
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(produce(&mut p, batch(&["v"; 5], None, now_ms())), 0);
                sent += 5;
                std::thread::sleep(Duration::from_millis(20));
            }
            sent
        })
    };
    // A consumer that keeps up never sees an error, and sees every offset in order.
    let consumer = {
        let (addr, stop) = (broker.addr(), stop.clone());
        std::thread::spawn(move || {
            let mut k = Raw::connect(&addr);
            let mut next = 0;
            while !stop.load(Ordering::Relaxed) {
                let (err, offsets) = fetch(&mut k, next);
                assert_eq!(err, 0, "a consumer that keeps up at {next}");
                for o in offsets {
                    if o >= next {
                        assert_eq!(o, next, "offsets arrive in order without gaps");
                        next += 1;
                    }
                }
            }
            next
        })
    };
    let start = eventually(Duration::from_secs(20), || {
        let s = earliest(&mut c);
        (s > 0).then_some(s)
    })
    .expect("retention moved the log start offset");
    // Segments keep rolling and going: the directory stays small while data flows.
    std::thread::sleep(Duration::from_millis(2000));
    let later = earliest(&mut c);
    assert!(
        later > start,
        "retention keeps running: {start} then {later}"
    );
    let (err, _) = fetch(&mut c, 0);
    assert_eq!(err, OFFSET_OUT_OF_RANGE, "a consumer at an old offset");
    let (err, offsets) = fetch(&mut c, later);
    assert_eq!(err, 0);
    assert_eq!(
        offsets.first(),
        Some(&later),
        "reset to the earliest offset"
    );
    stop.store(true, Ordering::Relaxed);
    let sent = producer.join().expect("producer");
    let consumed = consumer.join().expect("consumer");
    assert!(consumed > 0 && consumed <= sent);
    let files = segment_files(&broker);
    // Segments of the last retention.ms (1500) plus a check interval and a roll (300 each):
    // about seven, whatever the run's length.
    assert!(files <= 12, "{files} segments left after {sent} records");
}

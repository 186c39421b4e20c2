//! Fetch `max_bytes` (KIP-74, issue 10 item 6): the response carries at most `max_bytes` of
//! records, exceeded only by the first batch of the first partition with data. A librdkafka
//! consumer sizes its receive buffer from `fetch.max.bytes`; a bigger response is "Invalid
//! response size" and a reconnect, forever.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::{batch, topic, Raw};
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tidelog::client::conn::{decode_response_header, encode_request, read_frame};

/// librdkafka test 0082's record size: one record is most of `fetch.max.bytes`.
const RECORD_BYTES: usize = 900 * 1024;
/// The consumer's `fetch.max.bytes` in test 0082.
const FETCH_MAX_BYTES: i32 = 1_000_000;
/// Room for everything around the records (headers, names, per-partition fields) that a
/// client's receive buffer must hold on top of `fetch.max.bytes`: librdkafka's own margin.
const RESPONSE_OVERHEAD_MAX: usize = 512;

fn create(c: &mut Raw, name: &str, partitions: i32) {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    assert_eq!(c.call(&req, 7).topics[0].error_code, tidelog::error::NONE);
}

fn produce(c: &mut Raw, name: &str, partition: i32, records: Bytes) {
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
    assert_eq!(p.error_code, tidelog::error::NONE);
}

/// Fetches every partition of `name` from offset 0 in the given order, and returns the size of
/// the response frame (without its size prefix) and, per partition, how many records came.
fn fetch_sizes(
    c: &mut Raw,
    name: &str,
    id: uuid::Uuid,
    order: &[i32],
    max_bytes: i32,
    version: i16,
) -> (usize, Vec<usize>) {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(name))
            .with_topic_id(id)
            .with_partitions(
                order
                    .iter()
                    .map(|&p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(20_000_000)
                    })
                    .collect(),
            )]);
    let correlation_id = 4242;
    let frame = encode_request(
        &req,
        version,
        correlation_id,
        &StrBytes::from_static_str("max-bytes-test"),
    )
    .expect("encode");
    c.stream.write_all(&frame).expect("write");
    let frame = read_frame(&mut c.stream).expect("response frame");
    let size = frame.len();
    let mut body =
        decode_response_header::<FetchRequest>(frame, version, correlation_id).expect("header");
    let r = FetchResponse::decode(&mut body, version).expect("body");
    let counts = r.responses[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, tidelog::error::NONE, "v{version} {order:?}");
            let mut b = p.records.clone().unwrap_or_default();
            let mut n = 0;
            while !b.is_empty() {
                n += RecordBatchDecoder::decode(&mut b)
                    .expect("whole batches")
                    .records
                    .len();
            }
            n
        })
        .collect();
    (size, counts)
}

/// At the wire level, at an old and a new version: the frame stays within `max_bytes` plus the
/// response's own fields, partitions are filled in request order, and a first batch bigger than
/// `max_bytes` still comes back alone.
#[test]
fn the_response_stays_within_max_bytes_except_for_one_first_batch() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "big", 4);
    let big = "b".repeat(RECORD_BYTES);
    // Partitions 0 and 1: two 900 KB batches each; partition 2: one; partition 3: 20 small.
    for p in 0..3 {
        produce(&mut c, "big", p, batch(&[&big], None, 1));
    }
    for p in 0..2 {
        produce(&mut c, "big", p, batch(&[&big], None, 2));
    }
    let small: Vec<String> = (0..20).map(|i| format!("small-{i}")).collect();
    let small: Vec<&str> = small.iter().map(String::as_str).collect();
    produce(&mut c, "big", 3, batch(&small, None, 1));
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic("big")))
    ]));
    let id = c.call(&req, 12).topics[0].topic_id;

    for version in [4, 12, 16] {
        let (size, counts) =
            fetch_sizes(&mut c, "big", id, &[0, 1, 2, 3], FETCH_MAX_BYTES, version);
        assert!(
            size <= FETCH_MAX_BYTES as usize + RESPONSE_OVERHEAD_MAX,
            "v{version}: a {size}-byte response for max_bytes {FETCH_MAX_BYTES}"
        );
        // One 900 KB batch of partition 0; no other big batch fits in what is left, but the
        // small batch of partition 3 does.
        assert_eq!(counts, vec![1, 0, 0, 20], "v{version}");

        // The small partition first: it is sent, then one big batch still fits.
        let (size, counts) = fetch_sizes(&mut c, "big", id, &[3, 1, 0], FETCH_MAX_BYTES, version);
        assert!(size <= FETCH_MAX_BYTES as usize + RESPONSE_OVERHEAD_MAX);
        assert_eq!(counts, vec![20, 1, 0], "v{version}");

        // max_bytes below one record: the first batch alone, so the consumer makes progress.
        let (size, counts) = fetch_sizes(&mut c, "big", id, &[2, 0, 3], 1000, version);
        assert!(size > RECORD_BYTES && size < RECORD_BYTES + 2000, "{size}");
        assert_eq!(counts, vec![1, 0, 0], "v{version}");

        // A generous max_bytes: every partition whole.
        let (_, counts) = fetch_sizes(&mut c, "big", id, &[0, 1, 2, 3], 50 << 20, version);
        assert_eq!(counts, vec![2, 2, 1, 20], "v{version}");
    }
}

/// librdkafka test 0082's setup: 900 KB records in several partitions, `fetch.max.bytes` of
/// 1,000,000 and a receive buffer of exactly `fetch.max.bytes + 512`. Every record is consumed.
#[test]
fn librdkafka_with_fetch_max_bytes_below_two_records_consumes_everything() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, "rd-big", 3);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("message.max.bytes", "2000000")
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let mut expected = HashSet::new();
    for i in 0..9 {
        let value = format!("{i:04}{}", "v".repeat(RECORD_BYTES - 4));
        expected.insert(value[..4].to_string());
        let record = BaseRecord::<(), _>::to("rd-big")
            .partition(i % 3)
            .payload(&value);
        producer.send(record).map_err(|(e, _)| e).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", "rd-big-group")
        .set("enable.auto.commit", "false")
        .set("max.partition.fetch.bytes", "20000000")
        .set("fetch.max.bytes", FETCH_MAX_BYTES.to_string())
        .set(
            "receive.message.max.bytes",
            (FETCH_MAX_BYTES + 512).to_string(),
        )
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset("rd-big", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < expected.len() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let v = m.payload().expect("a value");
                assert_eq!(v.len(), RECORD_BYTES);
                let id = String::from_utf8(v[..4].to_vec()).unwrap();
                assert!(seen.insert(id), "a record consumed twice");
            }
            // Before the fix every fetch failed here with "Invalid response size".
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    assert_eq!(seen, expected);
}

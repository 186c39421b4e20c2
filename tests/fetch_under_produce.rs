//! Tail consumers under concurrent produce (issue 10 item 2): no fetch response is ever cut in
//! the middle, no record above the high watermark is ever sent, and every record is consumed
//! exactly once, in offset order.
//!
//! The broker used to end a fetch range at the index entry of a batch whose bytes were reserved
//! but not yet written; sendfile then reached the end of the file and the broker closed the
//! connection ("write failed: segment file ended inside a fetch range", 18-20 times in 15 s of
//! this workload), or, when the write won the race, sent records above the high watermark.
//!
//! The CI test runs the workload for a few seconds. The long version is ignored by default:
//!
//! ```text
//! cargo test --test fetch_under_produce -- --ignored --nocapture
//! ```
//!
//! (`TIDELOG_FETCH_STRESS_SECS=N` changes its 60 s.) Both print the counts they measured.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw::{topic, Raw};
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use tidelog::client::conn::{decode_response_header, encode_request, read_frame};

const TOPIC: &str = "tail";
const PARTITIONS: i32 = 8;
const PRODUCERS: usize = 4;
/// One tail consumer fetches by topic name (v11, not flexible), the other by id (v16).
const CONSUMER_VERSIONS: [i16; 2] = [11, 16];
/// Each producer's rate. Paced, so that the consumers keep up and fetch at the very tail of the
/// log, where reads meet appends still in flight; unpaced producers run far ahead of them.
const RECORDS_PER_SEC: u64 = 5_000;
/// How long the consumers may take to catch up once the producers have stopped.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Counts acknowledged and failed deliveries of one producer.
#[derive(Clone, Default)]
struct Deliveries {
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                eprintln!("delivery failed: {e}");
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// What one tail consumer saw.
#[derive(Debug, Default)]
struct Tail {
    /// Responses that ended before their frame did (read error or EOF mid-frame).
    cut: usize,
    /// Records at or above the high watermark of the response that carried them.
    above_hwm: usize,
    /// `seen[producer][seq]`: how many times that record was consumed.
    seen: Vec<Vec<u8>>,
    fetches: usize,
}

/// Sends values `"{producer}:{seq}:..."` round-robin over the partitions for `run`,
/// then waits for every acknowledgement. Returns how many records it produced.
fn produce(addr: &str, producer: usize, run: Duration) -> usize {
    let d = Deliveries::default();
    // Half the producers are idempotent (acks=all: acknowledged after fdatasync), half use
    // acks=1, whose appends wake parked fetches without waiting for a flush, so the consumers
    // also fetch at the very tail between flushes.
    let idempotent = producer % 2 == 0;
    let p: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("enable.idempotence", idempotent.to_string())
        .set("acks", if idempotent { "all" } else { "1" })
        .set("linger.ms", "2")
        .set("message.timeout.ms", "60000")
        .create_with_context(d.clone())
        .expect("producer");
    let pad = "p".repeat(100 + 37 * producer);
    let start = Instant::now();
    let mut seq = 0usize;
    while start.elapsed() < run {
        let due = start + Duration::from_micros(seq as u64 * 1_000_000 / RECORDS_PER_SEC);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            // Pacing the load, not waiting for an event.
            p.poll(wait);
            continue;
        }
        let value = format!("{producer}:{seq}:{pad}");
        let record = BaseRecord::<(), _>::to(TOPIC)
            .partition((seq % PARTITIONS as usize) as i32)
            .payload(&value);
        match p.send(record) {
            Ok(()) => seq += 1,
            Err((e, _)) => {
                assert!(format!("{e}").contains("Queue full"), "send failed: {e}");
                p.poll(Duration::from_millis(5));
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    assert_eq!(d.failed.load(Ordering::Relaxed), 0, "failed deliveries");
    assert_eq!(d.ok.load(Ordering::Relaxed), seq);
    seq
}

fn fetch_request(id: uuid::Uuid, offsets: &[i64]) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(4 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(TOPIC))
            .with_topic_id(id)
            .with_partitions(
                offsets
                    .iter()
                    .enumerate()
                    .map(|(p, &o)| {
                        FetchPartition::default()
                            .with_partition(p as i32)
                            .with_fetch_offset(o)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )])
}

/// Fetches every partition from offset 0 until the producers are done and a fetch sent after
/// that finds every partition read up to its high watermark.
fn tail(addr: &str, version: i16, id: uuid::Uuid, producers_done: &AtomicBool) -> Tail {
    let mut t = Tail {
        seen: vec![Vec::new(); PRODUCERS],
        ..Tail::default()
    };
    let mut offsets = vec![0i64; PARTITIONS as usize];
    let mut c = Raw::connect(addr);
    let mut correlation_id = 0;
    let mut deadline: Option<Instant> = None;
    loop {
        let finishing = producers_done.load(Ordering::SeqCst);
        if finishing {
            let d = *deadline.get_or_insert_with(|| Instant::now() + CATCH_UP);
            assert!(Instant::now() < d, "consumer v{version} did not catch up");
        }
        correlation_id += 1;
        let frame = encode_request(
            &fetch_request(id, &offsets),
            version,
            correlation_id,
            &StrBytes::from_static_str("tail-consumer"),
        )
        .expect("encode");
        let response = c
            .stream
            .write_all(&frame)
            .and_then(|()| read_frame(&mut c.stream));
        let frame = match response {
            Ok(f) => f,
            Err(e) => {
                eprintln!("consumer v{version}: connection cut: {e}");
                t.cut += 1;
                c = Raw::connect(addr);
                continue;
            }
        };
        t.fetches += 1;
        let mut body = decode_response_header::<FetchRequest>(frame, version, correlation_id)
            .expect("response header");
        let r = FetchResponse::decode(&mut body, version).expect("response body");
        let mut caught_up = true;
        for p in &r.responses[0].partitions {
            assert_eq!(p.error_code, tidelog::error::NONE);
            let next = &mut offsets[p.partition_index as usize];
            let mut records = p.records.clone().unwrap_or_default();
            while !records.is_empty() {
                let set = RecordBatchDecoder::decode(&mut records).expect("whole batches");
                for rec in set.records {
                    assert_eq!(rec.offset, *next, "records in offset order, without gaps");
                    *next += 1;
                    if rec.offset >= p.high_watermark {
                        t.above_hwm += 1;
                    }
                    let value = rec.value.expect("a value");
                    let mut fields = std::str::from_utf8(&value).unwrap().split(':');
                    let producer: usize = fields.next().unwrap().parse().unwrap();
                    let seq: usize = fields.next().unwrap().parse().unwrap();
                    let counts = &mut t.seen[producer];
                    if counts.len() <= seq {
                        counts.resize(seq + 1, 0);
                    }
                    counts[seq] = counts[seq].saturating_add(1);
                }
            }
            caught_up &= *next >= p.high_watermark;
        }
        if finishing && caught_up {
            return t;
        }
    }
}

fn run(duration: Duration) {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    let addr = broker.addr();
    let mut c = Raw::connect(&addr);
    // A small index interval puts an index entry at nearly every batch, so that reads meet the
    // entries of batches still in flight as often as possible.
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic(TOPIC))
            .with_num_partitions(PARTITIONS)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("index.interval.bytes"))
                .with_value(Some(StrBytes::from_static_str("512")))])]);
    assert_eq!(
        c.call(&create, 7).topics[0].error_code,
        tidelog::error::NONE
    );
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic(TOPIC))),
    ]));
    let id = c.call(&metadata, 12).topics[0].topic_id;

    let done = Arc::new(AtomicBool::new(false));
    let consumers: Vec<_> = CONSUMER_VERSIONS
        .iter()
        .map(|&version| {
            let (addr, done) = (addr.clone(), done.clone());
            std::thread::spawn(move || tail(&addr, version, id, &done))
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || produce(&addr, i, duration))
        })
        .collect();
    let produced: Vec<usize> = producers.into_iter().map(|p| p.join().unwrap()).collect();
    done.store(true, Ordering::SeqCst);
    let tails: Vec<Tail> = consumers.into_iter().map(|c| c.join().unwrap()).collect();

    let total: usize = produced.iter().sum();
    for (t, version) in tails.iter().zip(CONSUMER_VERSIONS) {
        eprintln!(
            "consumer v{version}: {} fetches, {} records, {} cut responses, {} above the high watermark",
            t.fetches,
            t.seen.iter().flatten().map(|&n| n as usize).sum::<usize>(),
            t.cut,
            t.above_hwm
        );
    }
    eprintln!("produced {total} records in {duration:?}: {produced:?}");
    for (t, version) in tails.iter().zip(CONSUMER_VERSIONS) {
        assert_eq!(t.cut, 0, "consumer v{version}: responses cut in the middle");
        assert_eq!(t.above_hwm, 0, "consumer v{version}: records above the hwm");
        for (producer, &n) in produced.iter().enumerate() {
            let seen = &t.seen[producer];
            assert_eq!(seen.len(), n, "consumer v{version}, producer {producer}");
            assert!(
                seen.iter().all(|&c| c == 1),
                "consumer v{version}: a record of producer {producer} missed or seen twice"
            );
        }
    }
    assert!(total > 0);
}

#[test]
fn tail_consumers_under_concurrent_produce_see_every_record_once_and_no_cut_response() {
    run(Duration::from_secs(8));
}

#[test]
#[ignore = "60 s stress run; see the module docs for the command"]
fn tail_consumers_under_concurrent_produce_long() {
    let secs = std::env::var("TIDELOG_FETCH_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    run(Duration::from_secs(secs));
}

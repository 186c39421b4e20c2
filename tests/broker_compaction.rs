//! Log compaction against the real binary: librdkafka produces updates and tombstones to a
//! `cleanup.policy=compact` topic with small segments, the broker's cleaner (every 200 ms)
//! compacts it, and a consumer from the beginning must see exactly the latest value of each
//! live key, in offset order; deleted keys go after `delete.retention.ms`. The crash test kills
//! the broker with SIGKILL while the cleaner has a `.cleaned` or `.swap` file on disk, restarts
//! it, and checks that nothing was lost or duplicated.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw::{self, topic, Raw};
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, ProduceRequest};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tidelog::error::ErrorCode;

/// `(key, value)`; a `None` value is a tombstone.
type Entry = (String, Option<String>);

fn broker() -> Broker {
    Broker::start_with(
        BrokerOptions::default()
            .shards(1)
            .set("log.cleaner.backoff.ms", "200"),
    )
}

fn create(broker: &Broker, name: &str, delete_retention_ms: &str) {
    let configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "65536"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", delete_retention_ms),
    ]
    .iter()
    .map(|(k, v)| {
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_string(k.to_string()))
            .with_value(Some(StrBytes::from_string(v.to_string())))
    })
    .collect();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(configs)]);
    let mut c = Raw::connect(&broker.addr());
    assert_eq!(c.call(&req, 7).topics[0].error_code, 0);
}

/// Counts failed deliveries, which `flush` alone does not report.
#[derive(Clone, Default)]
struct Failures(Arc<AtomicUsize>);

impl ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            eprintln!("delivery failed: {e}");
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Produces `entries` in order with acks=all, idempotence and lz4 batches (so the cleaner
/// decompresses and recompresses, and keeps producer state), and checks that every one was
/// acknowledged. Batches stay well below `segment.bytes`, which bounds a batch as in Kafka.
fn produce(broker: &Broker, name: &str, entries: &[Entry]) {
    let failures = Failures::default();
    let p: BaseProducer<Failures> = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("linger.ms", "5")
        .set("batch.size", "16384")
        .set("compression.type", "lz4")
        .set("enable.idempotence", "true")
        .create_with_context(failures.clone())
        .expect("producer");
    for (k, v) in entries {
        let mut rec = BaseRecord::<String, String>::to(name).key(k);
        if let Some(v) = v {
            rec = rec.payload(v);
        }
        while let Err((e, back)) = p.send(rec) {
            assert!(format!("{e}").contains("Queue full"), "send failed: {e}");
            p.poll(Duration::from_millis(10));
            rec = back;
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60))
        .expect("every record acknowledged");
    assert_eq!(failures.0.load(Ordering::Relaxed), 0, "failed deliveries");
}

/// Every record from the beginning to the end of the log: `(offset, key, value)`.
fn consume_all(broker: &Broker, name: &str) -> Vec<(i64, String, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", "unused-assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(name, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("consume error: {e}"),
            Some(Ok(m)) => out.push((
                m.offset(),
                String::from_utf8_lossy(m.key().expect("every record has a key")).into_owned(),
                m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
            )),
        }
    }
    panic!("no end of partition within 60 s");
}

/// The latest entry of each key, in the order of those latest writes (which is offset order).
fn latest(history: &[Entry], keep_tombstones: bool) -> Vec<Entry> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, (k, _)) in history.iter().enumerate() {
        last.insert(k, i);
    }
    history
        .iter()
        .enumerate()
        .filter(|(i, (k, v))| last[k.as_str()] == *i && (keep_tombstones || v.is_some()))
        .map(|(_, e)| e.clone())
        .collect()
}

/// Waits until the consumer sees exactly `want`, in offset order.
fn wait_for_exactly(broker: &Broker, name: &str, want: &[Entry], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = consume_all(broker, name);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "offsets increase");
        let entries: Vec<Entry> = got.into_iter().map(|(_, k, v)| (k, v)).collect();
        if entries == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: after 90 s the log holds {} records, want {}",
            entries.len(),
            want.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `n` updates over `keys` keys (pseudo-random order), values tagged with `round`; then
/// tombstones for every tenth key; then unique filler keys that push it all out of the active
/// segment so that all of it can be compacted.
fn workload(round: u32, n: usize, keys: u64, seed: u64) -> Vec<Entry> {
    let mut x = seed | 1;
    let mut out: Vec<Entry> = (0..n)
        .map(|i| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let k = (x >> 33) % keys;
            (
                format!("key-{k:04}"),
                Some(format!("r{round}-u{i:06}-{:0>60}", k)),
            )
        })
        .collect();
    out.extend((0..keys).step_by(10).map(|k| (format!("key-{k:04}"), None)));
    // Fillers do not compress (lz4 would fit thousands of repetitive ones in one segment).
    out.extend((0..1500).map(|i| {
        let noise: String = (0..12)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                format!("{:016x}", x >> 1)
            })
            .collect();
        (format!("filler-{round}-{i:04}"), Some(noise))
    }));
    out
}

#[test]
fn consumer_sees_latest_value_per_key_and_tombstones_expire() {
    let broker = broker();
    create(&broker, "changelog", "2000");
    let history = workload(0, 100_000, 1000, 7);
    produce(&broker, "changelog", &history);
    wait_for_exactly(
        &broker,
        "changelog",
        &latest(&history, false),
        "latest live values",
    );
}

/// A compacted topic refuses a record without a key with INVALID_RECORD (87).
#[test]
fn keyless_record_on_compacted_topic_is_invalid_record() {
    let broker = broker();
    create(&broker, "keyed", "86400000");
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("keyed"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(raw::batch(&["no key"], None, 1000)))])]);
    let mut c = Raw::connect(&broker.addr());
    let r = c.call(&req, 9);
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ErrorCode::InvalidRecord.code()
    );
}

/// Whether the cleaner has an uncommitted or committed rewrite on disk.
fn swap_in_progress(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.ends_with(".cleaned") || n.ends_with(".swap")
        })
    })
}

#[test]
fn sigkill_during_compaction_loses_and_duplicates_nothing() {
    let mut broker = broker();
    create(&broker, "crashy", "86400000");
    let dir = broker.data_dir().join("crashy-0");
    let mut history: Vec<Entry> = Vec::new();
    let mut caught = 0;
    for round in 0..4 {
        let more = workload(round, 25_000, 1000, 11 + u64::from(round));
        produce(&broker, "crashy", &more);
        history.extend(more);
        // Kill as soon as the cleaner has a rewrite on disk (or after 10 s regardless).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !swap_in_progress(&dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        broker.kill();
        let mid_swap = swap_in_progress(&dir);
        caught += usize::from(mid_swap);
        eprintln!("round {round}: killed with a rewrite on disk: {mid_swap}");
        broker.start_again();
        // Right after recovery: every key's last record is its latest write, nothing lost.
        let got = consume_all(&broker, "crashy");
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "offsets increase");
        let mut last: HashMap<String, Option<String>> = HashMap::new();
        for (_, k, v) in got {
            last.insert(k, v);
        }
        let want = latest(&history, true);
        assert_eq!(last.len(), want.len(), "keys after recovery");
        for (k, v) in &want {
            assert_eq!(last.get(k), Some(v), "latest value of {k} after recovery");
        }
        // And compaction converges again to one record per key.
        wait_for_exactly(&broker, "crashy", &want, "after the crash");
    }
    assert!(caught > 0, "no kill landed while a rewrite was on disk");
}

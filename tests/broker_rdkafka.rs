//! librdkafka (through the `rdkafka` crate) against the real broker: keyed ordering across
//! partitions and shards, every compression codec, every acks setting, idempotence, restarts.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Broker, BrokerOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// Counts delivery reports, so a test can assert that every record was acknowledged.
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

fn producer(broker: &Broker, extra: &[(&str, &str)]) -> (BaseProducer<Deliveries>, Deliveries) {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", broker.addr())
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    let d = Deliveries::default();
    (cfg.create_with_context(d.clone()).expect("producer"), d)
}

/// Produces `records` and waits until each is acknowledged; panics on any failed delivery.
fn produce_all(
    p: &BaseProducer<Deliveries>,
    d: &Deliveries,
    topic: &str,
    records: &[(Option<String>, String)],
) {
    for (key, value) in records {
        let mut rec = BaseRecord::to(topic).payload(value);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        let mut rec = rec;
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(format!("{e}").contains("Queue full"), "send failed: {e}");
                    p.poll(Duration::from_millis(10));
                    rec = back;
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    assert_eq!(d.failed.load(Ordering::Relaxed), 0, "failed deliveries");
}

/// Reads `count` records from the beginning of every partition (assign, no group).
fn consume(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    count: usize,
) -> Vec<(i32, i64, Option<String>, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", "unused-assign-only")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::with_capacity(count);
    let deadline = Instant::now() + Duration::from_secs(90);
    while out.len() < count && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume error");
            out.push((
                m.partition(),
                m.offset(),
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    assert_eq!(out.len(), count, "records consumed from {topic}");
    // Nothing more than what was produced.
    assert!(
        consumer.poll(Duration::from_millis(500)).is_none(),
        "unexpected extra record"
    );
    out
}

#[test]
fn keyed_100k_over_8_partitions_keep_order_without_loss_or_duplicates() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    broker.cli_ok(&["topic", "create", "keyed", "--partitions", "8"], b"");
    let (p, d) = producer(&broker, &[("acks", "all"), ("batch.size", "65536")]);
    let n = 100_000;
    let records: Vec<_> = (0..n)
        .map(|i| (Some(format!("key-{}", i % 500)), i.to_string()))
        .collect();
    produce_all(&p, &d, "keyed", &records);
    let got = consume(&broker, "keyed", 8, n);
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut seen = HashSet::new();
    let mut used = HashSet::new();
    for (partition, _, key, value) in got {
        let key = key.expect("key");
        let v: u64 = value.parse().unwrap();
        assert!(seen.insert(v), "duplicate {v}");
        assert_eq!(
            *partition_of.entry(key.clone()).or_insert(partition),
            partition,
            "{key} moved"
        );
        if let Some(prev) = last.insert(key.clone(), v) {
            assert!(prev < v, "{key}: {v} after {prev}");
        }
        used.insert(partition);
    }
    assert_eq!(seen.len(), n);
    assert_eq!(used.len(), 8, "keys spread over every partition");
}

/// The codec ids in the stored batches' attributes: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
fn stored_codecs(broker: &Broker, topic: &str) -> HashSet<u8> {
    let log = broker
        .data_dir()
        .join(format!("{topic}-0"))
        .join("00000000000000000000.log");
    let bytes = std::fs::read(&log).expect("segment");
    let mut codecs = HashSet::new();
    let mut pos = 0;
    while pos + 23 <= bytes.len() {
        // baseOffset 8, batchLength 4, partitionLeaderEpoch 4, magic 1, crc 4, then attributes.
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        codecs.insert(bytes[pos + 22] & 0x07);
        pos += 12 + len;
    }
    codecs
}

#[test]
fn every_compression_codec_is_stored_as_sent_and_read_back() {
    let broker = Broker::start();
    for (codec, id) in [
        ("none", 0),
        ("gzip", 1),
        ("snappy", 2),
        ("lz4", 3),
        ("zstd", 4),
    ] {
        let topic = format!("codec-{codec}");
        broker.cli_ok(&["topic", "create", &topic], b"");
        let (p, d) = producer(&broker, &[("compression.type", codec)]);
        let records: Vec<_> = (0..2000)
            .map(|i| (None, format!("{codec} record {i} {}", "x".repeat(100))))
            .collect();
        produce_all(&p, &d, &topic, &records);
        let got: Vec<String> = consume(&broker, &topic, 1, 2000)
            .into_iter()
            .map(|r| r.3)
            .collect();
        let want: Vec<String> = records.into_iter().map(|r| r.1).collect();
        assert_eq!(got, want, "{codec}");
        // librdkafka sends a batch uncompressed when compressing would not shrink it (a lone
        // first record, say); every compressed batch must be stored with the codec it came in.
        let codecs = stored_codecs(&broker, &topic);
        assert!(codecs.contains(&id), "{codec}: stored codecs {codecs:?}");
        assert!(
            codecs.iter().all(|c| *c == id || *c == 0),
            "{codec}: stored codecs {codecs:?}"
        );
    }
}

#[test]
fn acks_0_1_and_all_deliver() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    for acks in ["0", "1", "all"] {
        let topic = format!("acks-{acks}");
        broker.cli_ok(&["topic", "create", &topic, "--partitions", "3"], b"");
        let (p, d) = producer(&broker, &[("acks", acks)]);
        let records: Vec<_> = (0..3000)
            .map(|i| (Some(format!("k{}", i % 7)), format!("v{i}")))
            .collect();
        produce_all(&p, &d, &topic, &records);
        let mut got: Vec<String> = consume(&broker, &topic, 3, 3000)
            .into_iter()
            .map(|r| r.3)
            .collect();
        got.sort();
        let mut want: Vec<String> = records.into_iter().map(|r| r.1).collect();
        want.sort();
        assert_eq!(got, want, "acks={acks}");
    }
}

#[test]
fn idempotent_producer_writes_each_record_once() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    broker.cli_ok(&["topic", "create", "idem", "--partitions", "4"], b"");
    let (p, d) = producer(
        &broker,
        &[
            ("enable.idempotence", "true"),
            ("max.in.flight.requests.per.connection", "5"),
        ],
    );
    let records: Vec<_> = (0..20_000)
        .map(|i| (Some(format!("k{}", i % 13)), format!("{i}")))
        .collect();
    produce_all(&p, &d, "idem", &records);
    let got = consume(&broker, "idem", 4, 20_000);
    let distinct: HashSet<_> = got.iter().map(|r| r.3.clone()).collect();
    assert_eq!(distinct.len(), 20_000);
}

#[test]
fn topics_and_acknowledged_data_survive_clean_and_unclean_restarts() {
    let mut broker = Broker::start_with(BrokerOptions::default().shards(2));
    broker.cli_ok(&["topic", "create", "durable", "--partitions", "4"], b"");
    let first: Vec<_> = (0..1000)
        .map(|i| (Some(format!("k{i}")), format!("a{i}")))
        .collect();
    {
        let (p, d) = producer(&broker, &[("acks", "all")]);
        produce_all(&p, &d, "durable", &first);
    }
    broker.restart();
    assert_eq!(consume(&broker, "durable", 4, 1000).len(), 1000);
    let second: Vec<_> = (0..1000)
        .map(|i| (Some(format!("k{i}")), format!("b{i}")))
        .collect();
    {
        let (p, d) = producer(&broker, &[("acks", "all")]);
        produce_all(&p, &d, "durable", &second);
    }
    broker.kill_and_restart();
    let got: HashSet<String> = consume(&broker, "durable", 4, 2000)
        .into_iter()
        .map(|r| r.3)
        .collect();
    for (_, v) in first.iter().chain(&second) {
        assert!(got.contains(v), "{v} lost");
    }
    let listed = broker.cli_ok(&["topic", "list"], b"");
    assert!(listed.lines().any(|l| l.trim() == "durable"), "{listed}");
}

#[test]
fn a_topic_compression_type_recompresses_what_producers_send() {
    let broker = Broker::start();
    broker.cli_ok(
        &[
            "topic",
            "create",
            "zipped",
            "--config",
            "compression.type=gzip",
        ],
        b"",
    );
    let (p, d) = producer(&broker, &[("compression.type", "lz4")]);
    let records: Vec<_> = (0..500)
        .map(|i| {
            (
                Some(format!("k{i}")),
                format!("value {i} {}", "y".repeat(50)),
            )
        })
        .collect();
    produce_all(&p, &d, "zipped", &records);
    assert_eq!(
        stored_codecs(&broker, "zipped"),
        HashSet::from([1]),
        "every batch stored as gzip"
    );
    let got: Vec<String> = consume(&broker, "zipped", 1, 500)
        .into_iter()
        .map(|r| r.3)
        .collect();
    assert_eq!(got, records.into_iter().map(|r| r.1).collect::<Vec<_>>());
}

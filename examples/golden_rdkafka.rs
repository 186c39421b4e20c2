//! The golden flow (tests/fixtures/golden/README.md) on the `rdkafka` crate, i.e. the
//! librdkafka that rdkafka-sys bundles: three records per codec from the idempotent producer,
//! then one consumer in `golden-group` with the range assignor reads them all and commits.
//! `tests/fixtures/golden/capture.py` runs it and sets BOOTSTRAP:
//!
//! ```text
//! cargo build --example golden_rdkafka
//! tests/fixtures/golden/capture.py OUT -- target/debug/examples/golden_rdkafka
//! ```

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TOPIC: &str = "golden";
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const TS0: i64 = 1_700_000_000_000;

fn main() {
    let bootstrap = std::env::var("BOOTSTRAP").expect("BOOTSTRAP");
    // librdkafka sends a batch uncompressed when compressing would not make it smaller.
    let pad = ".".repeat(100);
    for codec in CODECS {
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("client.id", "golden-rdkafka")
            .set("compression.codec", codec)
            .set("enable.idempotence", "true")
            .set("linger.ms", "50")
            .create()
            .expect("producer");
        for i in 0..3 {
            let key = format!("k{i}");
            let value = format!("{codec}-{i}{pad}");
            let x = format!("x{i}");
            let headers = OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some(&x),
            });
            let rec = BaseRecord::to(TOPIC)
                .key(&key)
                .payload(&value)
                .partition(0)
                .timestamp(TS0 + i)
                .headers(headers);
            p.send(rec).map_err(|(e, _)| e).expect("send");
        }
        p.flush(Duration::from_secs(30)).expect("flush");
    }
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("client.id", "golden-rdkafka")
        .set("group.id", "golden-group")
        .set("partition.assignment.strategy", "range")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[TOPIC]).expect("subscribe");
    let want = 3 * CODECS.len();
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < want && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_secs(1)) {
            m.expect("message");
            got += 1;
        }
    }
    assert_eq!(got, want, "records read back");
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
    c.unsubscribe();
    drop(c);
}

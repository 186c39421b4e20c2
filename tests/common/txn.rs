//! librdkafka helpers of the transaction tests: records spread over a topic's partitions, and
//! everything a consumer of an isolation level reads from the start of every partition.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// `prefix-0` .. `prefix-(n-1)`.
pub fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Sends `values` round-robin over `partitions` of `topic` and waits for their delivery.
pub fn send(p: &BaseProducer, topic: &str, partitions: i32, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        let partition = i as i32 % partitions;
        p.send(
            BaseRecord::<(), _>::to(topic)
                .payload(v)
                .partition(partition),
        )
        .expect("enqueue");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// A consumer in `group` (which it does not join: assign only) of `isolation` level.
pub fn consumer(bootstrap: &str, isolation: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer")
}

/// Every value `isolation` lets a consumer read from the start of every partition, once
/// `expect` arrived (or 60 s passed); fails if more arrive.
pub fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
    expect: usize,
) -> BTreeSet<String> {
    let c = consumer(bootstrap, isolation, "readers");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < expect && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            out.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    assert!(
        c.poll(Duration::from_millis(700)).is_none(),
        "{isolation}: more than the {expect} records expected"
    );
    out
}

//! Replication (issue 13) against the real binaries: a three-node cluster on one machine (the
//! issue 12 command line), an RF=3 topic with `min.insync.replicas=2`, and librdkafka producing
//! with `acks=all`.
//!
//! Checked: every partition's replicas and ISR are the three brokers; records acknowledged
//! with acks=all are all read back; SIGKILL of a partition's leader elects another member of
//! its ISR at the next leader epoch, and the survivors go on taking acks=all writes; every
//! acknowledged record is still there; the killed broker, restarted, catches up and rejoins
//! the ISR; and after that, the loss of the new leader still loses nothing (the returned
//! broker has every record too). A SIGTERM of a leader (controlled shutdown) moves its
//! leaderships to the other in-sync replicas before it exits, and producers go on.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{broker_ids, consume_all, Cluster, WAIT};
use common::eventually;
use common::raw::{topic, Raw};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{CreateTopicsRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

const TOPIC: &str = "replicated";
const PARTITIONS: i32 = 3;

/// Partition -> (leader, leader epoch, replicas, ISR) of `TOPIC` in `md`.
type States = BTreeMap<i32, (i32, i32, BTreeSet<i32>, BTreeSet<i32>)>;

fn states(md: &MetadataResponse) -> States {
    md.topics
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| n.as_str() == TOPIC))
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            let ids = |l: &[kafka_protocol::messages::BrokerId]| l.iter().map(|b| b.0).collect();
            (
                p.partition_index,
                (
                    p.leader_id.0,
                    p.leader_epoch,
                    ids(&p.replica_nodes),
                    ids(&p.isr_nodes),
                ),
            )
        })
        .collect()
}

/// Counts what the broker acknowledged, by payload.
#[derive(Clone, Default)]
struct Acks(Arc<Mutex<BTreeSet<String>>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            use rdkafka::message::Message;
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            self.0.lock().unwrap().insert(v);
        }
    }
}

/// Produces `values` with acks=all (idempotent) through `bootstrap`; returns what was
/// acknowledged.
fn produce_all(bootstrap: &str, values: impl Iterator<Item = String>) -> BTreeSet<String> {
    let acks = Acks::default();
    let p: BaseProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create_with_context(acks.clone())
        .expect("producer");
    for (i, v) in values.enumerate() {
        let key = format!("k{i}");
        p.send(BaseRecord::to(TOPIC).key(&key).payload(&v))
            .expect("queued");
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(90)).expect("flushed");
    let got = acks.0.lock().unwrap().clone();
    got
}

/// A running cluster with `TOPIC` on three replicas each, every replica in sync; its states.
fn cluster_with_topic() -> (Cluster, States) {
    let cluster = Cluster::start();
    for i in 1..=3 {
        eventually(WAIT, || {
            (broker_ids(&cluster.metadata(i)) == BTreeSet::from([1, 2, 3])).then_some(())
        })
        .unwrap_or_else(|| panic!("node {i} lists three brokers"));
    }
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(15_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic(TOPIC))
            .with_num_partitions(PARTITIONS)
            .with_replication_factor(3)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("min.insync.replicas"))
                .with_value(Some(StrBytes::from_static_str("2")))])]);
    let created = Raw::connect(&cluster.addr(1)).call(&req, 7);
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);
    let first = eventually(WAIT, || {
        let s = states(&cluster.metadata(2));
        let all = BTreeSet::from([1, 2, 3]);
        (s.len() == PARTITIONS as usize
            && s.values().all(|(_, _, r, isr)| *r == all && *isr == all))
        .then_some(s)
    })
    .expect("every partition on three replicas, all in sync");
    (cluster, first)
}

#[test]
fn rf3_with_acks_all_loses_nothing_when_a_leader_dies() {
    let (mut cluster, first) = cluster_with_topic();
    let all = BTreeSet::from([1, 2, 3]);

    // Acknowledged with acks=all, read back.
    let n = 1500;
    let acked = produce_all(&cluster.addr(1), (0..n).map(|i| format!("a{i}")));
    assert_eq!(acked.len(), n, "every record acknowledged");
    assert_eq!(consume_all(&cluster.addr(2), TOPIC, PARTITIONS, n), acked);

    // SIGKILL the leader of partition 0: another ISR member leads it at the next epoch.
    let (victim, epoch, _, _) = first[&0];
    cluster.kill(victim as u32);
    let survivor = (1..=3).find(|&i| i != victim as u32).unwrap();
    let moved = eventually(WAIT, || {
        let s = states(&cluster.metadata(survivor));
        let (leader, e, _, isr) = s.get(&0)?.clone();
        (leader != victim && leader > 0 && !isr.contains(&victim)).then_some((leader, e))
    })
    .expect("partition 0 has a new leader");
    assert!(moved.1 > epoch, "leader epoch {} after {epoch}", moved.1);

    // The survivors take acks=all writes (two in sync, min.insync.replicas=2), and nothing
    // acknowledged is lost.
    let more = produce_all(&cluster.addr(survivor), (0..n).map(|i| format!("b{i}")));
    assert_eq!(more.len(), n);
    let everything: BTreeSet<String> = acked.union(&more).cloned().collect();
    assert_eq!(
        consume_all(&cluster.addr(survivor), TOPIC, PARTITIONS, 2 * n),
        everything
    );

    // The killed broker comes back, catches up and rejoins every ISR.
    cluster.start_node(victim as u32);
    eventually(Duration::from_secs(60), || {
        let s = states(&cluster.metadata(survivor));
        s.values().all(|(_, _, _, isr)| *isr == all).then_some(())
    })
    .expect("the restarted broker rejoins the ISR of every partition");

    // Now the loss of partition 0's new leader loses nothing either: whoever leads next (the
    // returned broker among them) has every record.
    let (leader, _) = moved;
    cluster.kill(leader as u32);
    let last = (1..=3).find(|&i| i != leader as u32).unwrap();
    eventually(WAIT, || {
        let s = states(&cluster.metadata(last));
        let (l, _, _, _) = s.get(&0)?.clone();
        (l != leader && l > 0).then_some(())
    })
    .expect("partition 0 has a leader again");
    assert_eq!(
        consume_all(&cluster.addr(last), TOPIC, PARTITIONS, 2 * n),
        everything
    );
}

#[test]
fn a_sigterm_hands_leadership_over_before_the_broker_exits() {
    let (mut cluster, first) = cluster_with_topic();
    let n = 500;
    let acked = produce_all(&cluster.addr(1), (0..n).map(|i| format!("a{i}")));
    assert_eq!(acked.len(), n);
    let (leader, epoch, _, _) = first[&0];
    let stderr = cluster.stop(leader as u32);
    assert!(
        stderr.contains("controlled shutdown: this broker leads nothing that can move"),
        "the broker handed its leaderships over before exiting:\n{stderr}"
    );
    // One leader change (no offline step in between): the next epoch, another broker.
    let survivor = (1..=3).find(|&i| i != leader as u32).unwrap();
    let (now, e, _, isr) = eventually(WAIT, || {
        let s = states(&cluster.metadata(survivor)).get(&0)?.clone();
        (s.0 != leader && s.0 > 0).then_some(s)
    })
    .expect("the survivors see partition 0's new leader");
    assert!(now != leader && now > 0, "partition 0 led by {now}");
    assert_eq!(e, epoch + 1);
    assert!(!isr.contains(&leader));
    let more = produce_all(&cluster.addr(survivor), (0..n).map(|i| format!("b{i}")));
    assert_eq!(more.len(), n);
    let everything: BTreeSet<String> = acked.union(&more).cloned().collect();
    assert_eq!(
        consume_all(&cluster.addr(survivor), TOPIC, PARTITIONS, 2 * n),
        everything
    );
}

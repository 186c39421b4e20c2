//! Transactions on a 3-node cluster (issue 14): the transaction coordinator is the leader of
//! the transactional id's `__transaction_state` partition (replicated like any topic), markers
//! go to partitions led by every broker (WriteTxnMarkers between brokers), the offsets a
//! transaction commits land on the group's coordinator; when the transaction coordinator's
//! broker is SIGKILLed, its successor has the state and the producer carries on.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cluster::{create_rf, leaders, Cluster};
use common::eventually;
use common::raw::Raw;
use common::txn::values;
use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 6;
const T: Duration = Duration::from_secs(30);

fn bootstrap(cluster: &Cluster) -> String {
    cluster
        .running()
        .into_iter()
        .map(|i| cluster.addr(i))
        .collect::<Vec<_>>()
        .join(",")
}

fn producer(cluster: &Cluster, id: &str) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap(cluster))
        .set("transactional.id", id)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    p.init_transactions(Duration::from_secs(60))
        .expect("init_transactions");
    p
}

fn send(p: &BaseProducer, values: &[String]) {
    common::txn::send(p, TOPIC, PARTITIONS, values)
}

fn consumer(cluster: &Cluster, group: &str) -> BaseConsumer {
    common::txn::consumer(&bootstrap(cluster), "read_committed", group)
}

fn read_committed(cluster: &Cluster, expect: usize) -> BTreeSet<String> {
    common::txn::read_all(
        &bootstrap(cluster),
        TOPIC,
        PARTITIONS,
        "read_committed",
        expect,
    )
}

/// The broker coordinating transactional id `id`, as node `via` answers FindCoordinator.
fn txn_coordinator(cluster: &Cluster, via: u32, id: &str) -> i32 {
    eventually(Duration::from_secs(30), || {
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(id.to_string()))
            .with_key_type(1);
        let r = Raw::connect(&cluster.addr(via)).call(&req, 3);
        (r.error_code == 0).then_some(r.node_id.0)
    })
    .expect("a transaction coordinator")
}

#[test]
fn transactions_span_the_brokers_and_survive_the_coordinators_loss() {
    let mut cluster = Cluster::start();
    cluster.wait_for_three_brokers();
    assert_eq!(create_rf(&cluster, 1, TOPIC, PARTITIONS, 3), 0);
    let leaders_now = eventually(Duration::from_secs(20), || {
        let l = leaders(&cluster.metadata(1), TOPIC);
        (l.len() == PARTITIONS as usize && l.values().all(|&b| b > 0)).then_some(l)
    })
    .expect("every partition has a leader");
    let brokers: BTreeSet<i32> = leaders_now.values().copied().collect();
    assert!(
        brokers.len() > 1,
        "partitions led by several brokers: {leaders_now:?}"
    );

    let p = producer(&cluster, "cl-1");
    let group = consumer(&cluster, "cl-group");
    p.begin_transaction().unwrap();
    send(&p, &values("c", 30));
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(TOPIC, 1, Offset::Offset(4))
        .unwrap();
    p.send_offsets_to_transaction(&offsets, &group.group_metadata().unwrap(), T)
        .expect("send_offsets_to_transaction");
    p.commit_transaction(T).expect("commit");
    p.begin_transaction().unwrap();
    send(&p, &values("a", 12));
    p.abort_transaction(T).expect("abort");
    let mut want: BTreeSet<String> = values("c", 30).into_iter().collect();
    assert_eq!(read_committed(&cluster, want.len()), want);
    let mut asked = TopicPartitionList::new();
    asked.add_partition(TOPIC, 1);
    let got = group
        .committed_offsets(asked, T)
        .expect("committed offsets");
    assert_eq!(got.elements()[0].offset(), Offset::Offset(4));

    // The coordinator's broker dies with a transaction open; its successor (a replica of the
    // state partition) has the transactional id, aborts the open transaction when the id's
    // next producer initialises, and commits that producer's transaction.
    p.begin_transaction().unwrap();
    send(&p, &values("open", 6));
    let coordinator = txn_coordinator(&cluster, 1, "cl-1") as u32;
    cluster.kill(coordinator);
    drop(p);
    // Its leaderships move once its session expires (broker.session.timeout.ms).
    let via = cluster.running()[0];
    let moved = eventually(Duration::from_secs(30), || {
        Some(txn_coordinator(&cluster, via, "cl-1")).filter(|&c| c as u32 != coordinator)
    });
    assert!(
        moved.is_some(),
        "the coordinator moved off node {coordinator}"
    );
    let p = producer(&cluster, "cl-1");
    p.begin_transaction().unwrap();
    send(&p, &values("after", 6));
    p.commit_transaction(T)
        .expect("commit on the new coordinator");
    want.extend(values("after", 6));
    assert_eq!(read_committed(&cluster, want.len()), want);
}

//! Partition reassignment (KIP-455, issue 13) against the real binaries: a three-node cluster,
//! AlterPartitionReassignments and ListPartitionReassignments as `kafka-reassign-partitions.sh`
//! sends them.
//!
//! Checked: a partition on two brokers moves to the third and one of the two, its leader among
//! the removed; records acknowledged before and during the move are all read back afterwards;
//! the new replica ends byte-for-byte equal to the one that stayed, leads (it is the target's
//! first), and the removed broker deletes its copy. A move to a broker that cannot catch up
//! (paused) stays in progress, listed with its adding and removing replicas, until it is
//! cancelled, which restores the replicas it began from. Refusals carry Kafka's codes. A topic
//! created with a manual assignment lies exactly where it says. With
//! `kafka-reassign-partitions.sh --throttle`'s configs set (a rate per broker, every replica
//! of the topic throttled), a move copies at no more than the rate allows; once they are
//! removed, as `--verify` does, it completes.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cluster::{broker_ids, consume_all, create_rf, Cluster, WAIT};
use common::eventually;
use common::raw::{topic, Raw};
use kafka_protocol::error::ResponseError as ErrorCode;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_partition_reassignments_response::OngoingPartitionReassignment;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, IncrementalAlterConfigsRequest,
    ListPartitionReassignmentsRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TOPIC: &str = "moving";

/// Partition 0 of `TOPIC` in `md`: leader, replicas in order, ISR.
fn partition0(md: &MetadataResponse) -> Option<(i32, Vec<i32>, BTreeSet<i32>)> {
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == TOPIC))?;
    let p = t.partitions.iter().find(|p| p.partition_index == 0)?;
    Some((
        p.leader_id.0,
        p.replica_nodes.iter().map(|b| b.0).collect(),
        p.isr_nodes.iter().map(|b| b.0).collect(),
    ))
}

/// IncrementalAlterConfigs through node `via`: `configs` (name, value; `None` deletes) set on
/// the resource of `resource_type` (2 topic, 4 broker) named `name`.
fn alter_configs(
    cluster: &Cluster,
    via: u32,
    resource_type: i8,
    name: &str,
    configs: &[(&str, Option<&str>)],
) {
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        AlterableConfig::default()
                            .with_name(s(k))
                            .with_config_operation(if v.is_some() { 0 } else { 1 })
                            .with_value(v.map(s))
                    })
                    .collect(),
            ),
    ]);
    let r = Raw::connect(&cluster.addr(via)).call(&req, 1);
    assert_eq!(r.responses[0].error_code, 0, "{r:?}");
}

/// Produces `values` (each its own key) with acks=all (idempotent) through `bootstrap`; every
/// one must be acknowledged.
fn produce_values(bootstrap: &str, values: BTreeSet<String>) -> BTreeSet<String> {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.size", "16384")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    for v in &values {
        p.send(BaseRecord::to(TOPIC).key(v).payload(v))
            .expect("queued");
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(90))
        .expect("every record acknowledged");
    values
}

/// `n` records `{prefix}{i}`, produced as [`produce_values`] does.
fn produce(bootstrap: &str, prefix: &str, n: usize) -> BTreeSet<String> {
    produce_values(bootstrap, (0..n).map(|i| format!("{prefix}{i}")).collect())
}

/// AlterPartitionReassignments of partition 0 of `name` to `target` (`None`: cancel), at
/// `version` with `allow_factor_change`, through node `via`: the partition's error code.
fn reassign(
    cluster: &Cluster,
    via: u32,
    name: &str,
    target: Option<&[i32]>,
    version: i16,
    allow_factor_change: bool,
) -> i16 {
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_allow_replication_factor_change(allow_factor_change)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(topic(name))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(
                    target.map(|t| t.iter().map(|&b| BrokerId(b)).collect()),
                )])]);
    let r = Raw::connect(&cluster.addr(via)).call(&req, version);
    assert_eq!(r.error_code, 0, "{r:?}");
    r.responses[0].partitions[0].error_code
}

/// The reassignments in progress as node `via` lists them (every topic).
fn in_progress(cluster: &Cluster, via: u32) -> Vec<OngoingPartitionReassignment> {
    let r = Raw::connect(&cluster.addr(via)).call(
        &ListPartitionReassignmentsRequest::default().with_topics(None),
        0,
    );
    assert_eq!(r.error_code, 0);
    r.topics.into_iter().flat_map(|t| t.partitions).collect()
}

/// `kafka-topics.sh --create --replica-assignment 3:1,1:2` (CreateTopics with a manual
/// assignment), then `--alter --partitions 3` with an assignment (CreatePartitions): each
/// partition on the brokers named, in that order (the first leads), and CreateTopics' answer
/// gives their replication factor; an unregistered broker, or a replica count unlike the
/// topic's, is INVALID_REPLICA_ASSIGNMENT.
fn created_where_assigned(cluster: &Cluster) {
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic,
    };
    use kafka_protocol::messages::CreateTopicsRequest;
    let create = |name: &str, assignment: &[&[i32]]| {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(15_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(
                    (0..)
                        .zip(assignment)
                        .map(|(p, b)| {
                            CreatableReplicaAssignment::default()
                                .with_partition_index(p)
                                .with_broker_ids(b.iter().map(|&b| BrokerId(b)).collect())
                        })
                        .collect(),
                )]);
        Raw::connect(&cluster.addr(2)).call(&req, 7).topics[0].clone()
    };
    let r = create("placed", &[&[3, 1], &[1, 2]]);
    assert_eq!(
        (r.error_code, r.num_partitions, r.replication_factor),
        (0, 2, 2),
        "{r:?}"
    );
    // kafka-topics.sh --alter --partitions 3 --replica-assignment 3:1,1:2,2:3: the new
    // partition where it says; a replica count unlike the topic's is refused.
    let grow = |assignment: &[i32]| {
        use kafka_protocol::messages::create_partitions_request::{
            CreatePartitionsAssignment, CreatePartitionsTopic,
        };
        let req = kafka_protocol::messages::CreatePartitionsRequest::default()
            .with_timeout_ms(15_000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic("placed"))
                .with_count(3)
                .with_assignments(Some(vec![CreatePartitionsAssignment::default()
                    .with_broker_ids(
                        assignment.iter().map(|&b| BrokerId(b)).collect(),
                    )]))]);
        Raw::connect(&cluster.addr(3)).call(&req, 3).results[0].error_code
    };
    assert_eq!(grow(&[1]), ErrorCode::InvalidReplicaAssignment.code());
    assert_eq!(grow(&[2, 9]), ErrorCode::InvalidReplicaAssignment.code());
    assert_eq!(grow(&[2, 3]), 0);
    let placed = eventually(WAIT, || {
        let md = cluster.metadata(1);
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "placed"))?;
        let mut parts: Vec<_> = t
            .partitions
            .iter()
            .map(|p| {
                let replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
                (p.partition_index, p.leader_id.0, replicas)
            })
            .collect();
        parts.sort();
        (parts.len() == 3).then_some(parts)
    })
    .expect("the assigned topic in the metadata");
    assert_eq!(
        placed,
        vec![(0, 3, vec![3, 1]), (1, 1, vec![1, 2]), (2, 2, vec![2, 3])]
    );
    let bad = create("misplaced", &[&[1, 9]]);
    assert_eq!(bad.error_code, ErrorCode::InvalidReplicaAssignment.code());
}

/// Waits until every running node's metadata shows partition 0 with `replicas` (in order), all
/// in sync, led by `leader`.
fn settled(cluster: &Cluster, replicas: &[i32], leader: i32) {
    let want = (
        leader,
        replicas.to_vec(),
        replicas.iter().copied().collect(),
    );
    eventually(WAIT, || {
        cluster
            .running()
            .iter()
            .all(|&i| partition0(&cluster.metadata(i)).as_ref() == Some(&want))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("partition 0 on {replicas:?}, all in sync, led by {leader}"));
}

#[test]
fn a_partition_moves_to_a_new_broker_and_a_stuck_move_is_cancelled() {
    let cluster = Cluster::start();
    cluster.wait_for_three_brokers();
    created_where_assigned(&cluster);
    assert_eq!(create_rf(&cluster, 1, TOPIC, 1, 2), 0);
    let (leader, replicas, _) = eventually(WAIT, || {
        partition0(&cluster.metadata(1)).filter(|(_, r, isr)| {
            r.len() == 2 && *isr == r.iter().copied().collect::<BTreeSet<i32>>()
        })
    })
    .expect("partition 0 on two replicas, both in sync");
    let fresh = *broker_ids(&cluster.metadata(1))
        .iter()
        .find(|b| !replicas.contains(b))
        .unwrap();
    let kept = *replicas.iter().find(|&&b| b != leader).unwrap();
    let bootstrap = cluster.addr(fresh as u32);
    let mut acked = produce(&bootstrap, "before", 2000);

    // Refusals first, none of which changes anything.
    let none = ErrorCode::NoReassignmentInProgress.code();
    assert_eq!(reassign(&cluster, 2, TOPIC, None, 0, true), none);
    let bad = ErrorCode::InvalidReplicaAssignment.code();
    assert_eq!(
        reassign(&cluster, 2, TOPIC, Some(&[fresh, 9]), 0, true),
        bad
    );
    assert_eq!(
        reassign(&cluster, 2, TOPIC, Some(&[fresh, fresh]), 0, true),
        bad
    );
    let factor = ErrorCode::InvalidReplicationFactor.code();
    assert_eq!(
        reassign(&cluster, 2, TOPIC, Some(&[1, 2, 3]), 1, false),
        factor
    );
    let unknown = ErrorCode::UnknownTopicOrPartition.code();
    assert_eq!(
        reassign(&cluster, 2, "nowhere", Some(&[1, 2]), 0, true),
        unknown
    );
    assert!(in_progress(&cluster, 1).is_empty());

    // The move: the leader leaves, the fresh broker joins and, first in the target, leads.
    assert_eq!(
        reassign(&cluster, 2, TOPIC, Some(&[fresh, kept]), 1, false),
        0
    );
    acked.extend(produce(&bootstrap, "during", 1000));
    settled(&cluster, &[fresh, kept], fresh);
    eventually(WAIT, || in_progress(&cluster, 3).is_empty().then_some(()))
        .expect("the move is no longer listed");
    acked.extend(produce(&bootstrap, "after", 500));
    assert_eq!(consume_all(&bootstrap, TOPIC, 1, acked.len()), acked);
    eventually(WAIT, || {
        let (a, b) = (
            cluster.segment_bytes(fresh as u32, TOPIC, 0),
            cluster.segment_bytes(kept as u32, TOPIC, 0),
        );
        (!a.is_empty() && a == b).then_some(())
    })
    .expect("the new replica holds the same bytes as the one that stayed");
    eventually(WAIT, || {
        cluster
            .segment_bytes(leader as u32, TOPIC, 0)
            .is_empty()
            .then_some(())
    })
    .expect("the removed broker deleted its copy");

    // A move to a paused broker cannot complete: listed until cancelled, then undone.
    let paused = leader;
    cluster.signal(paused as u32, libc::SIGSTOP);
    assert_eq!(
        reassign(
            &cluster,
            fresh as u32,
            TOPIC,
            Some(&[fresh, paused]),
            0,
            true
        ),
        0
    );
    let listed = in_progress(&cluster, fresh as u32);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let ids = |l: &[BrokerId]| l.iter().map(|b| b.0).collect::<Vec<i32>>();
    assert_eq!(
        (
            ids(&listed[0].replicas),
            ids(&listed[0].adding_replicas),
            ids(&listed[0].removing_replicas)
        ),
        (vec![fresh, paused, kept], vec![paused], vec![kept])
    );
    acked.extend(produce(&bootstrap, "stuck", 200));
    assert_eq!(reassign(&cluster, fresh as u32, TOPIC, None, 0, true), 0);
    assert!(in_progress(&cluster, fresh as u32).is_empty());
    cluster.signal(paused as u32, libc::SIGCONT);
    settled(&cluster, &[fresh, kept], fresh);
    assert_eq!(consume_all(&bootstrap, TOPIC, 1, acked.len()), acked);
}

#[test]
fn a_throttled_move_copies_within_its_rate_and_completes_once_the_throttle_is_removed() {
    const RATE: &str = "20000";
    let cluster = Cluster::start();
    cluster.wait_for_three_brokers();
    assert_eq!(create_rf(&cluster, 1, TOPIC, 1, 1), 0);
    let (leader, _, _) =
        eventually(WAIT, || partition0(&cluster.metadata(1))).expect("partition 0 has a leader");
    let fresh = if leader == 1 { 2 } else { 1 };
    let bootstrap = cluster.addr(leader as u32);
    // About 4 MiB, in batches far smaller than a fetch may bring.
    let acked = produce_sized(&bootstrap, 4000, 1000);
    let total = cluster.segment_bytes(leader as u32, TOPIC, 0).len();
    assert!(total > 4_000_000, "{total}");
    // What `--throttle` sets: the rate on every broker, every replica of the topic throttled.
    for b in ["1", "2", "3"] {
        let rates = [
            ("leader.replication.throttled.rate", Some(RATE)),
            ("follower.replication.throttled.rate", Some(RATE)),
        ];
        alter_configs(&cluster, 1, 4, b, &rates);
    }
    let lists = [
        ("leader.replication.throttled.replicas", Some("*")),
        (
            "follower.replication.throttled.replicas",
            Some("0:1,0:2,0:3"),
        ),
    ];
    alter_configs(&cluster, 1, 2, TOPIC, &lists);
    assert_eq!(
        reassign(&cluster, 1, TOPIC, Some(&[leader, fresh]), 0, true),
        0
    );
    // The new replica starts copying, and over the next seconds stays far behind: a fetch brings
    // at most 1 MiB, after which the budget (20 kB/s) holds it back.
    eventually(WAIT, || {
        (!cluster.segment_bytes(fresh as u32, TOPIC, 0).is_empty()).then_some(())
    })
    .expect("the new replica begins to copy");
    for _ in 0..20 {
        let copied = cluster.segment_bytes(fresh as u32, TOPIC, 0).len();
        assert!(
            copied < total / 2,
            "copied {copied} of {total} bytes under a 20 kB/s throttle"
        );
        assert_eq!(
            in_progress(&cluster, 1).len(),
            1,
            "the move is still in progress"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // `--verify` removes the throttle once the move is done; removing it first lets it finish.
    let unset = [
        ("leader.replication.throttled.rate", None),
        ("follower.replication.throttled.rate", None),
    ];
    for b in ["1", "2", "3"] {
        alter_configs(&cluster, 1, 4, b, &unset);
    }
    settled(&cluster, &[leader, fresh], leader);
    eventually(WAIT, || {
        (cluster.segment_bytes(fresh as u32, TOPIC, 0).len() == total).then_some(())
    })
    .expect("the new replica holds the whole log");
    assert_eq!(
        consume_all(&cluster.addr(fresh as u32), TOPIC, 1, acked.len()),
        acked
    );
}

/// `n` records of `size` bytes, produced as [`produce_values`] does.
fn produce_sized(bootstrap: &str, n: usize, size: usize) -> BTreeSet<String> {
    produce_values(bootstrap, (0..n).map(|i| format!("{i:0size$}")).collect())
}

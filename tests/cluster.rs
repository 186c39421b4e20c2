//! A three-node cluster on one machine (issue 12's acceptance check): nodes 1, 2 and 3 on
//! 127.0.0.1, .2 and .3, each `process.roles=broker,controller`, started with the exact
//! command line of the issue (same client port P and controller port C on every address).
//!
//! Checked against the real binaries, with librdkafka and raw requests: three brokers in
//! Metadata; a 6-partition topic led by several brokers; records produced through node 1 and
//! consumed through node 3; consumer groups coordinated by different brokers; DescribeCluster
//! naming the active controller; SIGKILL of that controller, then a topic created through the
//! survivors (the time it took is printed); the killed broker fenced and dropped from
//! Metadata, its partitions offline; back after a restart with its data, leading them at a new
//! leader epoch (fenced and unknown epochs refused, the epoch cache and new batches carrying
//! it); and every node's
//! metadata the same at the end. Faults: the active controller cut off by the network (a proxy
//! between every pair of controllers drops everything) steps down while the other two go on,
//! and nothing diverges after healing; a paused controller (SIGSTOP) and a full restart of
//! every node leave one controller and the same metadata.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{
    broker_ids, consume_all, consume_and_commit, controller, create, leaders, produce, Cluster,
    CLUSTER_ID, WAIT,
};
use common::raw::{topic, Raw};
use common::serve::Serve;
use common::{eventually, tidelog_bin};
use kafka_protocol::error::ResponseError as ErrorCode;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DescribeQuorumRequest, FetchRequest, FindCoordinatorRequest,
    GroupId, ListOffsetsRequest, MetadataRequest, MetadataResponse, OffsetFetchRequest,
    OffsetForLeaderEpochRequest,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// What a node's Metadata says: its brokers, and each test topic's leaders.
type View = (BTreeSet<i32>, BTreeMap<i32, i32>, BTreeMap<i32, i32>);

/// Partition -> leader epoch of `name` in `md`.
fn leader_epochs(md: &MetadataResponse, name: &str) -> BTreeMap<i32, i32> {
    md.topics
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| n.as_str() == name))
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.leader_epoch))
        .collect()
}

/// After broker `back` was fenced and returned, the partitions it leads (`offline` while it
/// was away) are at leader epoch 2 (one change to no leader, one back) and the others still at
/// 0; its log starts epoch 2 where epoch 0 ended; a client with an older epoch is fenced, one
/// with a newer epoch told it is unknown; and a batch appended now carries epoch 2.
fn leader_epochs_moved(cluster: &Cluster, via: u32, back: u32, offline: &[i32]) {
    let epochs = leader_epochs(&cluster.metadata(via), "spread");
    for (p, e) in &epochs {
        let want = if offline.contains(p) { 2 } else { 0 };
        assert_eq!(*e, want, "leader epoch of spread-{p}: {epochs:?}");
    }
    let Some(&p) = offline.first() else {
        return;
    };
    let mut leader = Raw::connect(&cluster.addr(back));
    let mut latest = |current: i32| {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic("spread"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(p)
                    .with_current_leader_epoch(current)
                    .with_timestamp(-1)])]);
        leader.call(&req, 7).topics[0].partitions[0].clone()
    };
    assert_eq!(latest(0).error_code, ErrorCode::FencedLeaderEpoch.code());
    assert_eq!(latest(3).error_code, ErrorCode::UnknownLeaderEpoch.code());
    let now = latest(2);
    assert_eq!((now.error_code, now.leader_epoch), (0, 2));
    let end_of = |epoch: i32| {
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(topic("spread"))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(p)
                    .with_current_leader_epoch(2)
                    .with_leader_epoch(epoch)])]);
        let r = Raw::connect(&cluster.addr(back)).call(&req, 4);
        let r = &r.topics[0].partitions[0];
        assert_eq!(r.error_code, 0);
        (r.leader_epoch, r.end_offset)
    };
    assert_eq!(
        end_of(0),
        (0, now.offset),
        "epoch 0 ends where epoch 2 began"
    );
    assert_eq!(end_of(2), (2, now.offset));
    // A record appended now is stamped with epoch 2 (the batch header's partitionLeaderEpoch).
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.addr(via))
        .create()
        .expect("producer");
    producer
        .send(
            BaseRecord::<str, str>::to("spread")
                .partition(p)
                .payload("after"),
        )
        .expect("enqueue");
    producer.flush(Duration::from_secs(20)).expect("flush");
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic("spread"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(p)
                .with_current_leader_epoch(2)
                .with_fetch_offset(now.offset)
                .with_partition_max_bytes(1 << 20)])]);
    let r = Raw::connect(&cluster.addr(back)).call(&req, 12);
    let part = &r.responses[0].partitions[0];
    assert_eq!(part.error_code, 0);
    let batch = part.records.clone().expect("the new record");
    assert!(batch.len() > 16);
    let epoch = i32::from_be_bytes(batch[12..16].try_into().unwrap());
    assert_eq!(epoch, 2, "the new batch's partition leader epoch");
}

fn coordinator(cluster: &Cluster, via: u32, group: &str) -> (i16, i32) {
    let req = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_string()))
        .with_key_type(0);
    let r = Raw::connect(&cluster.addr(via)).call(&req, 3);
    (r.error_code, r.node_id.0)
}

#[test]
fn three_nodes_on_one_machine_survive_the_loss_of_their_controller() {
    let mut cluster = Cluster::start();

    cluster.wait_for_three_brokers();

    // A 6-partition RF=1 topic, created through node 2, is led by every broker.
    assert_eq!(create(&cluster, 2, "spread", 6), 0);
    let spread = eventually(WAIT, || {
        let l = leaders(&cluster.metadata(3), "spread");
        (l.len() == 6).then_some(l)
    })
    .expect("node 3 sees the topic");
    let led_by: BTreeSet<i32> = spread.values().copied().collect();
    assert!(led_by.len() >= 2, "leaders {spread:?}");

    // Produced through node 1, consumed through node 3.
    let n = 600;
    produce(&cluster.addr(1), "spread", n);
    let expected: BTreeSet<String> = (0..n).map(|i| format!("v{i}")).collect();
    assert_eq!(consume_all(&cluster.addr(3), "spread", 6, n), expected);

    // Group coordinators are spread over the brokers; a group coordinated away from the
    // bootstrap broker consumes and commits through its coordinator.
    let coordinators: BTreeMap<String, i32> = (0..24)
        .map(|g| {
            let group = format!("g{g}");
            let (code, node) = eventually(WAIT, || {
                let (code, node) = coordinator(&cluster, 1, &group);
                (code == 0).then_some((code, node))
            })
            .expect("a coordinator");
            assert_eq!(code, 0);
            (group, node)
        })
        .collect();
    let distinct: BTreeSet<i32> = coordinators.values().copied().collect();
    assert!(distinct.len() >= 2, "coordinators {coordinators:?}");
    let (group, _) = coordinators
        .iter()
        .find(|(_, node)| **node != 1)
        .expect("a group coordinated by node 2 or 3");
    let got = consume_and_commit(&cluster.addr(1), group, "spread", n);
    assert_eq!(got, n, "the group read every record");
    // The committed offsets, asked of the group's coordinator directly.
    let coordinator = coordinators[group];
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.clone())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic("spread"))
            .with_partition_indexes((0..6).collect())]));
    let fetched = Raw::connect(&cluster.addr(coordinator as u32)).call(&req, 5);
    assert_eq!(fetched.error_code, 0);
    let total: i64 = fetched.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .sum();
    assert_eq!(total, n as i64, "committed offsets cover every record");
    // Any other broker is not its coordinator.
    let other = (1..=3).find(|&i| i != coordinator as u32).unwrap();
    let elsewhere = Raw::connect(&cluster.addr(other)).call(&req, 5);
    assert_eq!(elsewhere.error_code, ErrorCode::NotCoordinator.code());

    // DescribeCluster names the active controller, the same on every node.
    let active = cluster.agreed("the active controller", |i| controller(&cluster, i));

    // SIGKILL the controller: a topic is created through a survivor within 20 s.
    cluster.kill(active);
    let survivor = cluster.running()[0];
    cluster.create_within_20_s(survivor, "after-failover", "the controller's SIGKILL");
    let new_active = controller(&cluster, survivor);
    assert!(new_active > 0 && new_active as u32 != active);

    // The killed broker is fenced: Metadata stops listing it and its partitions are offline.
    let md = eventually(WAIT, || {
        let md = cluster.metadata(survivor);
        (!broker_ids(&md).contains(&(active as i32))).then_some(md)
    })
    .expect("the killed broker is fenced");
    let offline: Vec<i32> = spread
        .iter()
        .filter(|(_, l)| **l == active as i32)
        .map(|(p, _)| *p)
        .collect();
    let now = leaders(&md, "spread");
    for p in &offline {
        assert_eq!(
            now[p], -1,
            "partition {p} of the fenced broker has no leader"
        );
    }

    // It comes back, with its partitions and their records.
    cluster.start_node(active);
    eventually(WAIT, || {
        let md = cluster.metadata(survivor);
        (broker_ids(&md) == BTreeSet::from([1, 2, 3]) && leaders(&md, "spread") == spread)
            .then_some(())
    })
    .expect("the restarted broker leads its partitions again");
    assert_eq!(consume_all(&cluster.addr(3), "spread", 6, n), expected);
    leader_epochs_moved(&cluster, survivor, active, &offline);

    // Every node ends with the same metadata.
    let views: Vec<View> = (1..=3)
        .map(|i| {
            eventually(WAIT, || {
                let md = cluster.metadata(i);
                let view = (
                    broker_ids(&md),
                    leaders(&md, "spread"),
                    leaders(&md, "after-failover"),
                );
                (view.2.len() == 3 && view.0.len() == 3).then_some(view)
            })
            .unwrap_or_else(|| panic!("node {i} has caught up"))
        })
        .collect();
    assert!(views.windows(2).all(|w| w[0] == w[1]), "{views:?}");
}

/// Every node's topics with their partition leaders, once `topics` are all there: the
/// metadata as clients see it.
fn catalogue(cluster: &Cluster, i: u32, topics: &[&str]) -> BTreeMap<String, BTreeMap<i32, i32>> {
    eventually(WAIT, || {
        let md = cluster.metadata(i);
        let all: BTreeMap<String, BTreeMap<i32, i32>> = md
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
            .map(|n| {
                let l = leaders(&md, &n);
                (n, l)
            })
            .collect();
        let complete = topics.iter().all(|t| all.contains_key(*t))
            && all.values().all(|l| l.values().all(|&leader| leader > 0));
        complete.then_some(all)
    })
    .unwrap_or_else(|| panic!("node {i} shows {topics:?} with every partition led"))
}

/// A paused controller (SIGSTOP: cut off from the others as by a network fault, then back)
/// never leaves two controllers or diverging metadata; and a full restart of every node comes
/// back with the same metadata.
#[test]
fn a_paused_controller_and_a_full_restart_leave_one_controller_and_the_same_metadata() {
    let mut cluster = Cluster::start();
    cluster.wait_for_three_brokers();
    assert_eq!(create(&cluster, 1, "before", 4), 0);
    let active = eventually(WAIT, || match controller(&cluster, 1) {
        id if id > 0 => Some(id as u32),
        _ => None,
    })
    .expect("an active controller");

    let pid = cluster.nodes[active as usize - 1]
        .serve
        .as_ref()
        .unwrap()
        .child
        .id() as i32;
    // SAFETY: signals to our own child process.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let survivor = *cluster.running().iter().find(|&&i| i != active).unwrap();
    let created = eventually(WAIT, || {
        (create(&cluster, survivor, "while-paused", 2) == 0).then_some(())
    });
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    created.expect("a topic created while the controller was paused");

    // One controller, named by every node, and the same metadata everywhere.
    cluster.agreed("the controller after the pause", |i| {
        controller(&cluster, i)
    });
    let topics = ["before", "while-paused"];
    let first = catalogue(&cluster, 1, &topics);
    for i in 2..=3 {
        assert_eq!(catalogue(&cluster, i, &topics), first, "node {i}");
    }

    // Every node stopped (SIGTERM), then all started again: the same metadata.
    for i in 1..=3 {
        let mut serve = cluster.nodes[i as usize - 1].serve.take().unwrap();
        assert!(serve.stop().success(), "node {i} stops cleanly");
    }
    for i in 1..=3 {
        cluster.start_node(i);
    }
    for i in 1..=3 {
        assert_eq!(
            catalogue(&cluster, i, &topics),
            first,
            "node {i} after restart"
        );
    }
}

/// The leader node `i` knows of (DescribeQuorum), -1 for none.
fn quorum_leader(cluster: &Cluster, i: u32) -> i32 {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic("__cluster_metadata"))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let r = Raw::connect(&cluster.addr(i)).call(&req, 1);
    r.topics[0].partitions[0].leader_id.0
}

/// The active controller cut off from the other two by a network fault (every connection to
/// and from it dropped): the other two elect a new one and take metadata changes; the cut-off
/// one steps down and applies nothing meanwhile; after the fault heals there is one
/// controller and every node has the same metadata.
#[test]
fn a_controller_cut_off_by_the_network_steps_down_and_nothing_diverges() {
    let cluster = Cluster::start_with(true);
    cluster.wait_for_three_brokers();
    assert_eq!(create(&cluster, 1, "before", 2), 0);
    let old = cluster.agreed("the quorum's leader", |i| quorum_leader(&cluster, i));

    cluster.cut(old, true);
    let survivor = (1..=3).find(|&i| i != old).unwrap();
    cluster.create_within_20_s(survivor, "during", "the cut");
    // The majority has a new leader; the cut-off node steps down (it knows no leader) and
    // has not applied the change.
    let new = eventually(WAIT, || {
        let l = quorum_leader(&cluster, survivor);
        (l > 0 && l as u32 != old).then_some(l)
    })
    .expect("a new leader");
    eventually(WAIT, || {
        (quorum_leader(&cluster, old) != old as i32).then_some(())
    })
    .expect("the cut-off controller steps down");
    assert!(leaders(&cluster.metadata(old), "during").is_empty());

    cluster.cut(old, false);
    let healed = cluster.agreed("the leader after healing", |i| quorum_leader(&cluster, i));
    assert_eq!(
        healed as i32, new,
        "the returning node follows the new leader"
    );
    let topics = ["before", "during"];
    let first = catalogue(&cluster, 1, &topics);
    for i in 2..=3 {
        assert_eq!(catalogue(&cluster, i, &topics), first, "node {i}");
    }
}

/// A port free on 127.0.0.`first`..=`last`.
fn port_free_on(first: u8, last: u8) -> u16 {
    loop {
        let probe = TcpListener::bind(format!("127.0.0.{first}:0")).unwrap();
        let port = probe.local_addr().unwrap().port();
        if (first + 1..=last).all(|i| TcpListener::bind(format!("127.0.0.{i}:{port}")).is_ok()) {
            return port;
        }
    }
}

/// Kafka's other layout: three controller-only nodes (1-3, `process.roles=controller`, only a
/// CONTROLLER listener) and two broker-only nodes (4, 5, `process.roles=broker`, following the
/// controllers without a vote). Clients see the two brokers; topics live on them; the brokers
/// go on when the active controller is killed, and a killed broker is fenced.
#[test]
fn three_controllers_and_two_brokers() {
    let c = port_free_on(1, 3);
    let p = port_free_on(4, 5);
    let voters =
        format!("controller.quorum.voters=1@127.0.0.1:{c},2@127.0.0.2:{c},3@127.0.0.3:{c}");
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| common::serve::data_dir()).collect();
    let start = |i: u32| {
        let (roles, listeners) = if i <= 3 {
            (
                "controller",
                format!("listeners=CONTROLLER://127.0.0.{i}:{c}"),
            )
        } else {
            ("broker", format!("listeners=PLAINTEXT://127.0.0.{i}:{p}"))
        };
        let mut cmd = Command::new(tidelog_bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dirs[i as usize - 1].path())
            .args(["--set", &format!("node.id={i}")])
            .args(["--set", &format!("process.roles={roles}")])
            .args(["--set", &format!("cluster.id={CLUSTER_ID}")])
            .args(["--set", &voters])
            .args(["--set", &listeners])
            .args(["--set", "controller.listener.names=CONTROLLER"])
            .args(["--shards", "1"]);
        let mut serve = Serve::spawn(cmd);
        serve.wait_listening().expect("the node starts");
        serve
    };
    let mut nodes: BTreeMap<u32, Serve> = (1..=5).map(|i| (i, start(i))).collect();
    let addr = |i: u32| format!("127.0.0.{i}:{p}");
    let metadata =
        |i: u32| Raw::connect(&addr(i)).call(&MetadataRequest::default().with_topics(None), 12);

    for b in [4, 5] {
        eventually(WAIT, || {
            (broker_ids(&metadata(b)) == BTreeSet::from([4, 5])).then_some(())
        })
        .unwrap_or_else(|| panic!("broker {b} lists the two brokers, no controller"));
    }
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(15_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic("layout"))
            .with_num_partitions(4)
            .with_replication_factor(1)]);
    assert_eq!(Raw::connect(&addr(5)).call(&req, 7).topics[0].error_code, 0);
    let placed = eventually(WAIT, || {
        let l = leaders(&metadata(4), "layout");
        (l.len() == 4).then_some(l)
    })
    .expect("broker 4 sees the topic");
    let led_by: BTreeSet<i32> = placed.values().copied().collect();
    assert_eq!(led_by, BTreeSet::from([4, 5]), "{placed:?}");

    produce(&addr(4), "layout", 200);
    let expected: BTreeSet<String> = (0..200).map(|i| format!("v{i}")).collect();
    assert_eq!(consume_all(&addr(5), "layout", 4, 200), expected);

    // The active controller, as a broker sees it, is killed: the brokers go on.
    let leader = {
        use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
        let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(topic("__cluster_metadata"))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
        eventually(WAIT, || {
            let l = Raw::connect(&addr(4)).call(&req, 1).topics[0].partitions[0]
                .leader_id
                .0;
            (1..=3).contains(&l).then_some(l as u32)
        })
        .expect("broker 4 knows the active controller")
    };
    let mut killed = nodes.remove(&leader).unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(15_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic("layout-after"))
            .with_num_partitions(2)
            .with_replication_factor(1)]);
    let killed_at = Instant::now();
    eventually(Duration::from_secs(20), || {
        (Raw::connect(&addr(4)).call(&req, 7).topics[0].error_code == 0).then_some(())
    })
    .expect("a topic created through a broker within 20 s of the controller's SIGKILL");
    eprintln!(
        "topic created through broker 4 {} ms after the controller's SIGKILL",
        killed_at.elapsed().as_millis()
    );

    // A broker killed is fenced: the other stops listing it.
    let mut five = nodes.remove(&5).unwrap();
    five.child.kill().unwrap();
    five.child.wait().unwrap();
    eventually(WAIT, || {
        (broker_ids(&metadata(4)) == BTreeSet::from([4])).then_some(())
    })
    .expect("broker 5 fenced");
    for mut n in nodes.into_values() {
        let _ = n.child.kill();
        let _ = n.child.wait();
    }
}

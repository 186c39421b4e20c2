//! Replication (issue 13) against the real binaries: a three-node cluster on one machine (the
//! issue 12 command line), an RF=3 topic with `min.insync.replicas=2`, and librdkafka producing
//! with `acks=all` (idempotent, lz4-compressed batches).
//!
//! Checked: every partition's replicas and ISR are the three brokers; records acknowledged
//! with acks=all are all read back; SIGKILL of a partition's leader elects another member of
//! its ISR at the next leader epoch, and the survivors go on taking acks=all writes; every
//! acknowledged record is still there; the killed broker, restarted, catches up and rejoins
//! the ISR; and after that, the loss of the new leader still loses nothing (the returned
//! broker has every record too). A SIGTERM of a leader (controlled shutdown) moves its
//! leaderships to the other in-sync replicas before it exits, and producers go on. A group's
//! committed offsets survive the loss of its coordinator: `__consumer_offsets` is replicated
//! too, and the new leader of the group's partition coordinates it with the same offsets. A
//! leader that wrote records nobody else has (acks=1, its followers paused) and died comes
//! back, drops that divergent tail by leader epoch, and ends byte-for-byte equal to the new
//! leader; the tail, never below the high watermark, is never served. After a rolling restart,
//! ElectLeaders gives a partition back to its preferred replica. A leader paused past its
//! session (a zombie) is replaced; when it resumes, what producers send it is either refused or
//! lands exactly once on the new leader, and its own divergent writes are cut. A leader cut off
//! the network (network namespaces; root) is replaced under a running producer and rejoins when
//! healed; a rolling restart of every broker under a producer loses nothing; a broker whose
//! disk fills (a tmpfs; root) leaves its ISRs and rejoins once it has room; records deleted on a
//! leader stay deleted after a failover; a fetcher with an old epoch is told where it diverged.
//!
//! Each fault prints `FAULT` (unavailability) and `COUNTS` (acked, lost, duplicated,
//! unacknowledged served) lines that `scripts/faults/replication.sh` sums over its runs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{broker_ids, consume_all, consume_and_commit, consume_list, Cluster, WAIT};
use common::eventually;
use common::raw::{topic, Raw};
use kafka_protocol::error::ResponseError as ErrorCode;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, ElectLeadersRequest, FindCoordinatorRequest, GroupId, MetadataResponse,
    OffsetFetchRequest,
};
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
    produce_to(bootstrap, "all", None, values)
}

/// Produces `values` with `acks` through `bootstrap`, to `partition` or spread by key; returns
/// what was acknowledged.
fn produce_to(
    bootstrap: &str,
    acks_setting: &str,
    partition: Option<i32>,
    values: impl Iterator<Item = String>,
) -> BTreeSet<String> {
    let acks = Acks::default();
    let p: BaseProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks_setting)
        .set("enable.idempotence", (acks_setting == "all").to_string())
        .set("linger.ms", "5")
        // Compressed batches, as the issue's harness asks: followers copy them verbatim.
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "60000")
        .create_with_context(acks.clone())
        .expect("producer");
    for (i, v) in values.enumerate() {
        let key = format!("k{i}");
        let mut record = BaseRecord::to(TOPIC).key(&key).payload(&v);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        p.send(record).expect("queued");
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(90)).expect("flushed");
    let got = acks.0.lock().unwrap().clone();
    got
}

/// A running cluster with `TOPIC` on three replicas each, every replica in sync; its states.
fn cluster_with_topic() -> (Cluster, States) {
    with_topic(Cluster::start())
}

/// `cluster`, once it lists three brokers, with `TOPIC` on three replicas each, every replica
/// in sync; its states.
fn with_topic(cluster: Cluster) -> (Cluster, States) {
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

/// Produces `n` more records with acks=all through node `via` and reads the whole topic back
/// there: it must be exactly `acked` and the new ones. Returns them all.
fn more_then_everything(
    cluster: &Cluster,
    via: u32,
    acked: &BTreeSet<String>,
    n: usize,
) -> BTreeSet<String> {
    let more = produce_all(&cluster.addr(via), (0..n).map(|i| format!("b{i}")));
    assert_eq!(more.len(), n, "every record acknowledged");
    let everything: BTreeSet<String> = acked.union(&more).cloned().collect();
    let total = everything.len();
    assert_eq!(
        consume_all(&cluster.addr(via), TOPIC, PARTITIONS, total),
        everything
    );
    everything
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
    let killed = std::time::Instant::now();
    cluster.kill(victim as u32);
    let survivor = (1..=3).find(|&i| i != victim as u32).unwrap();
    let moved = eventually(WAIT, || {
        let s = states(&cluster.metadata(survivor));
        let (leader, e, _, isr) = s.get(&0)?.clone();
        (leader != victim && leader > 0 && !isr.contains(&victim)).then_some((leader, e))
    })
    .expect("partition 0 has a new leader");
    fault_window("leader SIGKILL", killed);
    assert!(moved.1 > epoch, "leader epoch {} after {epoch}", moved.1);

    // The survivors take acks=all writes (two in sync, min.insync.replicas=2), and nothing
    // acknowledged is lost.
    let everything = more_then_everything(&cluster, survivor, &acked, n);

    // KIP-320: a fetcher whose last batch was of the old epoch, at an offset past where that
    // epoch ended on the new leader, is told where its log diverged, with no records; one at
    // the new epoch is not.
    let (new_leader, new_epoch) = moved;
    let end = list_offset(&cluster, new_leader as u32, -1).expect("the new leader's end");
    let (diverging, records) =
        fetch_with_last_epoch(&cluster, new_leader as u32, new_epoch, end, epoch);
    assert_eq!(diverging.0, epoch, "the old epoch");
    assert!(
        diverging.1 > 0 && diverging.1 < end,
        "it ended before {end}: {diverging:?}"
    );
    assert_eq!(records, 0);
    let (none, _) = fetch_with_last_epoch(&cluster, new_leader as u32, new_epoch, end, new_epoch);
    assert_eq!(none, (-1, -1));

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
    check_counts(&cluster, last, "leader SIGKILL", &everything);
}

#[test]
fn a_sigterm_hands_leadership_over_before_the_broker_exits() {
    let (mut cluster, first) = cluster_with_topic();
    let n = 500;
    let acked = produce_all(&cluster.addr(1), (0..n).map(|i| format!("a{i}")));
    assert_eq!(acked.len(), n);
    let (leader, epoch, _, _) = first[&0];
    let stopped = std::time::Instant::now();
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
    fault_window("leader SIGTERM (controlled shutdown)", stopped);
    assert!(now != leader && now > 0, "partition 0 led by {now}");
    assert_eq!(e, epoch + 1);
    assert!(!isr.contains(&leader));
    let everything = more_then_everything(&cluster, survivor, &acked, n);

    // Back after the rolling restart, it catches up; a preferred-leader election
    // (ElectLeaders, what kafka-leader-election.sh sends) gives it partition 0 again.
    cluster.start_node(leader as u32);
    let all = BTreeSet::from([1, 2, 3]);
    eventually(Duration::from_secs(60), || {
        let (_, _, _, isr) = states(&cluster.metadata(survivor)).get(&0)?.clone();
        (isr == all).then_some(())
    })
    .expect("the restarted broker rejoins partition 0's ISR");
    let elect = |version: i16| {
        let req = ElectLeadersRequest::default()
            .with_election_type(0)
            .with_topic_partitions(Some(vec![TopicPartitions::default()
                .with_topic(topic(TOPIC))
                .with_partitions(vec![0])]))
            .with_timeout_ms(10_000);
        let r = Raw::connect(&cluster.addr(survivor)).call(&req, version);
        r.replica_election_results[0].partition_result[0].error_code
    };
    assert_eq!(elect(2), 0, "the preferred replica is elected");
    assert_eq!(elect(2), ErrorCode::ElectionNotNeeded.code());
    let (back, e2, _, _) = eventually(WAIT, || {
        let s = states(&cluster.metadata(survivor)).get(&0)?.clone();
        (s.0 == leader).then_some(s)
    })
    .expect("partition 0 led by its preferred replica again");
    assert_eq!((back, e2), (leader, epoch + 2));
    check_counts(
        &cluster,
        survivor,
        "leader SIGTERM (controlled shutdown)",
        &everything,
    );
}

/// Waits until the replicas of every partition hold the same segment bytes on all three
/// brokers (the followers have copied, and any divergent tail been cut); partition 0 is never
/// empty by then.
fn replicas_become_identical(cluster: &Cluster) {
    eventually(WAIT, || {
        (0..PARTITIONS)
            .all(|p| {
                let logs: Vec<Vec<u8>> = (1..=3)
                    .map(|i| cluster.segment_bytes(i, TOPIC, p))
                    .collect();
                (p > 0 || !logs[0].is_empty()) && logs.windows(2).all(|w| w[0] == w[1])
            })
            .then_some(())
    })
    .expect("every partition's replicas hold the same bytes");
}

/// Prints how long partition 0 had no leader clients could use after a fault (from the fault to
/// the survivors' metadata naming another leader), for `scripts/faults/replication.sh`.
fn fault_window(fault: &str, since: std::time::Instant) {
    eprintln!(
        "FAULT {fault}: partition 0 led again after {} ms",
        since.elapsed().as_millis()
    );
}

/// Reads every record of `TOPIC` back through node `via` (duplicates included) and compares
/// them with what was acknowledged: prints the counts for `scripts/faults/replication.sh`
/// (`COUNTS fault: acked, lost, duplicated, unacknowledged`) and asserts that nothing was lost
/// or doubled and that nothing unacknowledged was served.
fn check_counts(cluster: &Cluster, via: u32, fault: &str, acked: &BTreeSet<String>) {
    let read = consume_list(&cluster.addr(via), TOPIC, PARTITIONS, acked.len());
    let distinct: BTreeSet<String> = read.iter().cloned().collect();
    let lost = acked.difference(&distinct).count();
    let extra = distinct.difference(acked).count();
    let duplicated = read.len() - distinct.len();
    eprintln!(
        "COUNTS {fault}: acked {}, lost {lost}, duplicated {duplicated}, unacknowledged {extra}",
        acked.len()
    );
    assert_eq!((lost, duplicated, extra), (0, 0, 0), "{fault}");
}

/// The coordinator of `group` as node `via` answers it, once there is one.
fn coordinator(cluster: &Cluster, via: u32, group: &str) -> i32 {
    eventually(WAIT, || {
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        let r = Raw::connect(&cluster.addr(via)).call(&req, 3);
        (r.error_code == 0).then_some(r.node_id.0)
    })
    .expect("a coordinator")
}

#[test]
fn committed_offsets_survive_the_loss_of_the_coordinator() {
    let (mut cluster, _) = cluster_with_topic();
    let n = 300;
    let acked = produce_all(&cluster.addr(1), (0..n).map(|i| format!("a{i}")));
    assert_eq!(acked.len(), n);
    let group = "survivors";
    let first = coordinator(&cluster, 1, group);
    // offsets.topic.replication.factor (3): every partition of __consumer_offsets on all three.
    let md = cluster.metadata(1);
    let offsets = md
        .topics
        .iter()
        .find(|t| {
            t.name
                .as_ref()
                .is_some_and(|n| n.as_str() == "__consumer_offsets")
        })
        .expect("__consumer_offsets exists");
    assert!(offsets
        .partitions
        .iter()
        .all(|p| p.replica_nodes.len() == 3));
    let got = consume_and_commit(&cluster.addr(1), group, TOPIC, n);
    assert_eq!(got, n, "the group read every record");

    cluster.kill(first as u32);
    let survivor = (1..=3).find(|&i| i != first as u32).unwrap();
    let next = eventually(WAIT, || {
        let c = coordinator(&cluster, survivor, group);
        (c != first).then_some(c)
    })
    .expect("another broker coordinates the group");
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic(TOPIC))
            .with_partition_indexes((0..PARTITIONS).collect())]));
    let total = eventually(WAIT, || {
        let r = Raw::connect(&cluster.addr(next as u32)).call(&req, 5);
        (r.error_code == 0).then(|| {
            r.topics[0]
                .partitions
                .iter()
                .map(|p| p.committed_offset)
                .sum::<i64>()
        })
    })
    .expect("the new coordinator answers OffsetFetch");
    assert_eq!(
        total, n as i64,
        "the committed offsets moved with the coordinator"
    );
}

#[test]
fn a_returning_leader_drops_its_divergent_tail() {
    let (mut cluster, first) = cluster_with_topic();
    let n = 200;
    let acked = produce_all(&cluster.addr(1), (0..n).map(|i| format!("a{i}")));
    assert_eq!(acked.len(), n);
    let (old, _, _, _) = first[&0];
    let old = old as u32;
    let followers: Vec<u32> = (1..=3).filter(|&i| i != old).collect();
    // The followers stop fetching; the leader alone takes acks=1 writes (acknowledged by its
    // own write, never below the high watermark), then dies.
    for &f in &followers {
        cluster.signal(f, libc::SIGSTOP);
    }
    // A fetch each paused follower left parked at the leader is answered with the first record
    // written after the pause (the barrier, which they get when they resume); nothing after it
    // reaches them.
    let barrier = produce_to(
        &cluster.addr(old),
        "1",
        Some(0),
        std::iter::once("barrier".into()),
    );
    assert_eq!(barrier.len(), 1);
    let tail = produce_to(
        &cluster.addr(old),
        "1",
        Some(0),
        (0..50).map(|i| format!("tail{i}")),
    );
    assert_eq!(tail.len(), 50, "the lone leader acknowledged acks=1 writes");
    cluster.kill(old);
    for &f in &followers {
        cluster.signal(f, libc::SIGCONT);
    }
    let survivor = followers[0];
    eventually(Duration::from_secs(60), || {
        let (leader, _, _, _) = states(&cluster.metadata(survivor)).get(&0)?.clone();
        followers.contains(&(leader as u32)).then_some(())
    })
    .expect("a follower leads partition 0");
    let after = produce_to(
        &cluster.addr(survivor),
        "all",
        Some(0),
        (0..100).map(|i| format!("after{i}")),
    );
    assert_eq!(after.len(), 100);

    // The old leader returns: it truncates its tail, copies the new leader's records and
    // rejoins the ISR; every replica then holds the same bytes.
    cluster.start_node(old);
    let truncated = || {
        cluster.nodes[old as usize - 1]
            .serve
            .as_ref()
            .is_some_and(|s| {
                s.stderr_lines()
                    .iter()
                    .any(|l| l.contains("truncating the divergent tail"))
            })
    };
    eventually(Duration::from_secs(60), || {
        let (_, _, _, isr) = states(&cluster.metadata(survivor)).get(&0)?.clone();
        isr.contains(&(old as i32)).then_some(())
    })
    .expect("the old leader rejoins the ISR");
    replicas_become_identical(&cluster);
    assert!(truncated(), "the old leader truncated its divergent tail");
    let seen = consume_all(&cluster.addr(survivor), TOPIC, PARTITIONS, n + 101);
    assert!(after.is_subset(&seen), "the new leader's records are there");
    let missing: Vec<_> = acked.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "the records acknowledged by all are there: {} of {} missing, e.g. {:?}; seen {}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)],
        seen.len()
    );
    assert!(seen.is_disjoint(&tail), "the divergent tail is gone");
}

#[test]
fn a_paused_leader_comes_back_as_a_follower_and_nothing_is_lost_or_doubled() {
    let (cluster, first) = cluster_with_topic();
    let n = 300;
    let a = produce_all(&cluster.addr(1), (0..n).map(|i| format!("a{i}")));
    assert_eq!(a.len(), n);
    let (old, epoch, _, _) = first[&0];
    let old = old as u32;
    let survivor = (1..=3).find(|&i| i != old).unwrap();
    // Paused for longer than its session: fenced, its partitions led by others.
    let paused = std::time::Instant::now();
    cluster.signal(old, libc::SIGSTOP);
    eventually(Duration::from_secs(60), || {
        let (leader, e, _, _) = states(&cluster.metadata(survivor)).get(&0)?.clone();
        (leader != old as i32 && leader > 0 && e > epoch).then_some(())
    })
    .expect("partition 0 has a new leader");
    fault_window("leader SIGSTOP past its session", paused);
    let b = produce_all(&cluster.addr(survivor), (0..n).map(|i| format!("b{i}")));
    assert_eq!(b.len(), n);
    // It resumes believing it leads; an idempotent acks=all producer bootstrapping from it
    // gets every record acknowledged once, by whoever really leads.
    cluster.signal(old, libc::SIGCONT);
    let c = produce_all(&cluster.addr(old), (0..n).map(|i| format!("c{i}")));
    assert_eq!(c.len(), n);
    let all = BTreeSet::from([1, 2, 3]);
    eventually(Duration::from_secs(60), || {
        let s = states(&cluster.metadata(survivor));
        s.values().all(|(_, _, _, isr)| *isr == all).then_some(())
    })
    .expect("the resumed broker rejoins every ISR");
    replicas_become_identical(&cluster);
    let want: BTreeSet<String> = a.iter().chain(&b).chain(&c).cloned().collect();
    check_counts(&cluster, survivor, "leader SIGSTOP past its session", &want);
}

/// Fetch v12 of partition 0 from node `via` at `offset` with KIP-320's `last_fetched_epoch`:
/// the diverging epoch it answers (-1s for none) and the record bytes it sends.
fn fetch_with_last_epoch(
    cluster: &Cluster,
    via: u32,
    current_epoch: i32,
    offset: i64,
    last_fetched_epoch: i32,
) -> ((i32, i64), usize) {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let req = kafka_protocol::messages::FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(TOPIC))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current_epoch)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(last_fetched_epoch)
                .with_partition_max_bytes(1 << 20)])]);
    let r = Raw::connect(&cluster.addr(via)).call(&req, 12);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "{p:?}");
    let d = &p.diverging_epoch;
    (
        (d.epoch, d.end_offset),
        p.records.as_ref().map_or(0, |b| b.len()),
    )
}

/// ListOffsets of partition 0 at `timestamp` (-1 latest, -2 earliest) from node `via`: the
/// offset, or `None` when it does not answer it (not its leader).
fn list_offset(cluster: &Cluster, via: u32, timestamp: i64) -> Option<i64> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let req = kafka_protocol::messages::ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic(TOPIC))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)])]);
    let r = Raw::connect(&cluster.addr(via)).call(&req, 7);
    let p = &r.topics[0].partitions[0];
    (p.error_code == 0).then_some(p.offset)
}

#[test]
fn records_deleted_on_the_leader_stay_deleted_after_a_failover() {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let (mut cluster, first) = cluster_with_topic();
    let acked = produce_to(
        &cluster.addr(1),
        "all",
        Some(0),
        (0..400).map(|i| format!("d{i}")),
    );
    assert_eq!(acked.len(), 400);
    let (leader, _, _, _) = first[&0];
    let req = kafka_protocol::messages::DeleteRecordsRequest::default()
        .with_timeout_ms(15_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic(TOPIC))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(250)])]);
    let r = Raw::connect(&cluster.addr(leader as u32)).call(&req, 2);
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 250));
    // One more acks=all record: the followers have fetched past it, so they have had the
    // response that told them the leader's new log start.
    let more = produce_to(
        &cluster.addr(1),
        "all",
        Some(0),
        std::iter::once("e".to_string()),
    );
    assert_eq!(more.len(), 1);
    cluster.kill(leader as u32);
    let survivor = (1..=3).find(|&i| i != leader as u32).unwrap();
    let next = eventually(WAIT, || {
        let s = states(&cluster.metadata(survivor));
        let (l, _, _, _) = s.get(&0)?.clone();
        (l != leader && l > 0).then_some(l as u32)
    })
    .expect("partition 0 has a new leader");
    let start = eventually(WAIT, || list_offset(&cluster, next, -2)).expect("ListOffsets answered");
    assert_eq!(
        start, 250,
        "the new leader starts where the old one was told to"
    );
    let read = consume_list(&cluster.addr(next), TOPIC, PARTITIONS, 151);
    assert_eq!(read.len(), 151, "{} records from offset 250 on", read.len());
    assert!(
        !read.iter().any(|v| v == "d0" || v == "d249"),
        "no deleted record is served"
    );
}

#[test]
fn a_leader_cut_off_the_network_is_replaced_and_rejoins_without_loss() {
    let Some(cluster) = Cluster::start_isolated() else {
        eprintln!("SKIPPED: network namespaces need root (ip netns)");
        return;
    };
    let (cluster, first) = with_topic(cluster);
    let (leader, epoch, _, _) = first[&0];
    let survivor = (1..=3).find(|&i| i != leader as u32).unwrap();
    // A producer writes before, through and after the cut (the pacing spans it).
    let (producer, writing) = paced_producer(&cluster, "n", 6000);
    // The cut comes once the producer is a tenth of the way through, so records go before it.
    writing.recv().expect("the producer got going");
    let cut = std::time::Instant::now();
    cluster.isolate(leader as u32, true);
    let moved = eventually(WAIT, || {
        let s = states(&cluster.metadata(survivor));
        let (l, e, _, isr) = s.get(&0)?.clone();
        (l != leader && l > 0 && !isr.contains(&leader)).then_some(e)
    })
    .expect("the survivors elect another leader for partition 0");
    fault_window("leader network cut", cut);
    assert!(moved > epoch);
    cluster.isolate(leader as u32, false);
    let acked = producer.join().expect("the producer thread");
    assert_eq!(
        acked.len(),
        6000,
        "every record acknowledged (retriable errors only)"
    );
    let all = BTreeSet::from([1, 2, 3]);
    eventually(Duration::from_secs(60), || {
        let s = states(&cluster.metadata(survivor));
        s.values().all(|(_, _, _, isr)| *isr == all).then_some(())
    })
    .expect("the healed broker rejoins every ISR");
    check_counts(&cluster, survivor, "leader network cut", &acked);
    replicas_become_identical(&cluster);
}

/// Produces `n` records `{prefix}{i}` (idempotent, acks=all, every partition) through every
/// node, 100 every 50 ms, so that the writes span the faults a test makes meanwhile.
/// A producer of `n` records paced at 100 per 50 ms (so it spans a fault), and a channel that
/// is signalled once a tenth of them have been handed to it.
fn paced_producer(
    cluster: &Cluster,
    prefix: &'static str,
    n: usize,
) -> (
    std::thread::JoinHandle<BTreeSet<String>>,
    std::sync::mpsc::Receiver<()>,
) {
    let bootstrap: Vec<String> = (1..=3).map(|i| cluster.addr(i)).collect();
    let bootstrap = bootstrap.join(",");
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        produce_all(
            &bootstrap,
            (0..n).map(move |i| {
                if i == n / 10 {
                    let _ = tx.send(());
                }
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(50));
                }
                format!("{prefix}{i}")
            }),
        )
    });
    (handle, rx)
}

#[test]
fn a_rolling_restart_of_every_broker_loses_nothing() {
    let (mut cluster, _) = cluster_with_topic();
    let all = BTreeSet::from([1, 2, 3]);
    let (producer, _) = paced_producer(&cluster, "r", 12_000);
    // Each broker in turn: SIGTERM (controlled shutdown), start again, back in every ISR
    // before the next goes, as an operator's rolling restart does.
    for i in 1..=3u32 {
        let stopped = std::time::Instant::now();
        cluster.stop(i);
        cluster.start_node(i);
        let other = if i == 1 { 2 } else { 1 };
        eventually(Duration::from_secs(60), || {
            let s = states(&cluster.metadata(other));
            s.values().all(|(_, _, _, isr)| *isr == all).then_some(())
        })
        .unwrap_or_else(|| panic!("broker {i} rejoins every ISR after its restart"));
        eprintln!(
            "broker {i} stopped, restarted and back in every ISR in {} ms",
            stopped.elapsed().as_millis()
        );
    }
    let acked = producer.join().expect("the producer thread");
    assert_eq!(acked.len(), 12_000, "every record acknowledged");
    check_counts(&cluster, 1, "rolling restart", &acked);
    replicas_become_identical(&cluster);
}

/// A tmpfs of `bytes` mounted on a directory (root only), to fill as a disk fills; unmounted
/// (lazily: the broker may still hold its files) on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: std::path::PathBuf, bytes: u64) -> Option<SmallDisk> {
        std::fs::create_dir_all(&dir).ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&dir)
            .output()
            .is_ok_and(|o| o.status.success());
        mounted.then_some(SmallDisk(dir))
    }

    /// Writes a filler file until the disk is full.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).expect("create the filler");
        let chunk = vec![0u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }

    fn make_room(&self) {
        std::fs::remove_file(self.0.join("filler")).expect("remove the filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .output();
    }
}

#[test]
fn a_broker_whose_disk_fills_leaves_its_isrs_and_rejoins_once_it_has_room() {
    let cluster = Cluster::start();
    // Broker 3's partitions of the topic each on a 16 MiB file system of their own, made before
    // the topic: when they fill, its metadata and the rest of the broker are unaffected.
    let full = 3u32;
    let disks: Option<Vec<SmallDisk>> = (0..PARTITIONS)
        .map(|p| {
            let dir = cluster.nodes[full as usize - 1]
                .dir
                .path()
                .join(format!("{TOPIC}-{p}"));
            SmallDisk::mount(dir, 16 << 20)
        })
        .collect();
    let Some(disks) = disks else {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    let (cluster, _) = with_topic(cluster);
    let before = produce_all(&cluster.addr(1), (0..1000).map(|i| format!("f{i}")));
    assert_eq!(before.len(), 1000);
    let filled = std::time::Instant::now();
    for d in &disks {
        d.fill();
    }
    // Under a producer, broker 3 cannot write: it leaves every ISR and leads nothing, and
    // every record is acknowledged by the other two (min.insync.replicas=2).
    let (producer, _) = paced_producer(&cluster, "g", 6000);
    eventually(WAIT, || {
        let s = states(&cluster.metadata(1));
        s.values()
            .all(|(l, _, _, isr)| *l != full as i32 && !isr.contains(&(full as i32)))
            .then_some(())
    })
    .expect("the broker with a full disk leaves every ISR and leads nothing");
    fault_window("disk full", filled);
    let acked = producer.join().expect("the producer thread");
    assert_eq!(
        acked.len(),
        6000,
        "every record acknowledged (retriable errors only)"
    );
    // Room again: its partitions reopen, catch up and rejoin.
    for d in &disks {
        d.make_room();
    }
    let all = BTreeSet::from([1, 2, 3]);
    eventually(Duration::from_secs(60), || {
        let s = states(&cluster.metadata(1));
        s.values().all(|(_, _, _, isr)| *isr == all).then_some(())
    })
    .expect("the broker rejoins every ISR once its disk has room");
    let everything: BTreeSet<String> = before.union(&acked).cloned().collect();
    check_counts(&cluster, 1, "disk full", &everything);
    replicas_become_identical(&cluster);
}

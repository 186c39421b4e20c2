//! A known member that sends JoinGroup again with its own member id (a retried JoinGroup whose
//! answer was lost, a changed subscription) keeps that id, as in Kafka: static members
//! (`group.instance.id`) are not given a new id and fenced by their own retry, and a follower
//! with unchanged metadata is told the current generation again without a rebalance.
//! Proven on hand-built frames and with librdkafka static consumers.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::Raw;
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tidelog::error::ErrorCode;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn broker() -> Broker {
    Broker::start_with(
        BrokerOptions::default()
            .shards(2)
            .set("group.initial.rebalance.delay.ms", "0")
            .set("group.min.session.timeout.ms", "1000"),
    )
}

fn join_req(group: &str, member: &str, instance: Option<&str>, meta: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from(meta.to_string()))])
}

fn sync(
    c: &mut Raw,
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
    assign: &[(&str, &str)],
) -> SyncGroupResponse {
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_assignments(
            assign
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from(a.to_string()))
                })
                .collect(),
        );
    c.call(&req, 5)
}

fn heartbeat(c: &mut Raw, group: &str, generation: i32, member: &str, iid: Option<&str>) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(iid.map(s));
    c.call(&req, 4).error_code
}

const OK: i16 = 0;

/// Waits, by watching DescribeGroups, until `group` is in `state` with `members` members: a
/// request sent on another connection has then been applied.
fn wait_for(broker: &Broker, group: &str, state: &str, members: usize) {
    let mut c = Raw::connect(&broker.addr());
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = c.call(&req, 5);
        let g = &got.groups[0];
        if g.group_state.as_str() == state && g.members.len() == members {
            return;
        }
        assert!(Instant::now() < deadline, "{group} never reached {state}");
    }
}

#[test]
fn a_static_member_repeating_its_join_keeps_its_id_and_the_group_is_not_fenced() {
    let broker = broker();
    let mut a = Raw::connect(&broker.addr());
    let first = a.call(&join_req("st", "", Some("a"), "m"), 9);
    assert_eq!(first.error_code, OK);
    let id_a = first.member_id.to_string();
    let gen = first.generation_id;
    assert_eq!(first.leader.to_string(), id_a);

    // The answer was "lost": the same JoinGroup again, now with the id it carried, while the
    // group waits for the leader's SyncGroup. Kafka answers the current generation again.
    let again = a.call(&join_req("st", &id_a, Some("a"), "m"), 9);
    assert_eq!(again.error_code, OK, "not FENCED_INSTANCE_ID");
    assert_eq!(again.member_id.to_string(), id_a, "same member id");
    assert_eq!(again.generation_id, gen, "no new generation");
    assert_eq!(again.members.len(), 1, "the leader gets the roster again");
    let synced = sync(&mut a, "st", gen, &id_a, Some("a"), &[(&id_a, "A0")]);
    assert_eq!(
        (synced.error_code, &synced.assignment[..]),
        (OK, &b"A0"[..])
    );

    // A second static member joins: a rebalances, rejoining with its own id.
    let mut b = Raw::connect(&broker.addr());
    b.send(&join_req("st", "", Some("b"), "m"), 9);
    wait_for(&broker, "st", "PreparingRebalance", 2);
    let rebalancing = heartbeat(&mut a, "st", gen, &id_a, Some("a"));
    assert_eq!(rebalancing, ErrorCode::RebalanceInProgress.code());
    let ja = a.call(&join_req("st", &id_a, Some("a"), "m"), 9);
    let jb = b.receive::<JoinGroupRequest>(9);
    assert_eq!((ja.error_code, jb.error_code), (OK, OK));
    assert_eq!(ja.member_id.to_string(), id_a, "the leader kept its id");
    let id_b = jb.member_id.to_string();
    let gen2 = ja.generation_id;
    assert_eq!(jb.generation_id, gen2);
    assert!(gen2 > gen);
    let leader_sync = sync(
        &mut a,
        "st",
        gen2,
        &id_a,
        Some("a"),
        &[(&id_a, "A1"), (&id_b, "B1")],
    );
    assert_eq!(leader_sync.error_code, OK);
    let follower_sync = sync(&mut b, "st", gen2, &id_b, Some("b"), &[]);
    assert_eq!(&follower_sync.assignment[..], b"B1");

    // The follower's JoinGroup is repeated in the Stable group (its answer lost, say): same
    // id, same generation, and no rebalance for the leader.
    for _ in 0..3 {
        let jb2 = b.call(&join_req("st", &id_b, Some("b"), "m"), 9);
        assert_eq!(jb2.error_code, OK);
        assert_eq!(jb2.member_id.to_string(), id_b);
        assert_eq!(jb2.generation_id, gen2);
        assert!(jb2.members.is_empty(), "a follower gets no roster");
    }
    assert_eq!(heartbeat(&mut a, "st", gen2, &id_a, Some("a")), OK);
    assert_eq!(heartbeat(&mut b, "st", gen2, &id_b, Some("b")), OK);
    let resync = sync(&mut b, "st", gen2, &id_b, Some("b"), &[]);
    assert_eq!(&resync.assignment[..], b"B1", "assignment kept");

    // Fencing is unchanged: another id for a known instance is a zombie, and a member id for
    // an instance the group does not know is unknown (Kafka's validateMember).
    let zombie = b.call(&join_req("st", "stale-id", Some("b"), "m"), 9);
    assert_eq!(zombie.error_code, ErrorCode::FencedInstanceId.code());
    let stranger = b.call(&join_req("st", "some-id", Some("c"), "m"), 9);
    assert_eq!(stranger.error_code, ErrorCode::UnknownMemberId.code());

    // Changed metadata from a follower does rebalance, still under the same id.
    b.send(&join_req("st", &id_b, Some("b"), "new-subscription"), 9);
    wait_for(&broker, "st", "PreparingRebalance", 2);
    let told = heartbeat(&mut a, "st", gen2, &id_a, Some("a"));
    assert_eq!(told, ErrorCode::RebalanceInProgress.code());
    let ja3 = a.call(&join_req("st", &id_a, Some("a"), "m"), 9);
    let jb3 = b.receive::<JoinGroupRequest>(9);
    assert_eq!((ja3.error_code, jb3.error_code), (OK, OK));
    assert_eq!(
        (ja3.member_id.to_string(), jb3.member_id.to_string()),
        (id_a, id_b)
    );
    assert!(jb3.generation_id > gen2);
}

#[test]
fn a_dynamic_member_repeating_its_join_during_completing_rebalance_is_answered_again() {
    let broker = broker();
    let mut c = Raw::connect(&broker.addr());
    let required = c.call(&join_req("dyn", "", None, "m"), 9);
    assert_eq!(required.error_code, ErrorCode::MemberIdRequired.code());
    let id = required.member_id.to_string();
    let joined = c.call(&join_req("dyn", &id, None, "m"), 9);
    assert_eq!(joined.error_code, OK);
    let again = c.call(&join_req("dyn", &id, None, "m"), 9);
    assert_eq!(
        (
            again.error_code,
            again.member_id.to_string(),
            again.generation_id
        ),
        (OK, id.clone(), joined.generation_id)
    );
    let synced = sync(
        &mut c,
        "dyn",
        joined.generation_id,
        &id,
        None,
        &[(&id, "x")],
    );
    assert_eq!(synced.error_code, OK);
}

fn consumer(broker: &Broker, instance: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", "statics")
        .set("group.instance.id", instance)
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .create()
        .expect("consumer")
}

fn produce(broker: &Broker, topic: &str, n: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .expect("producer");
    for i in 0..n {
        let v = format!("{topic}-{i}");
        p.send(BaseRecord::<(), _>::to(topic).payload(&v))
            .expect("queued");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// instance id → member id, as DescribeGroups reports them.
fn member_ids(broker: &Broker) -> HashMap<String, String> {
    let mut c = Raw::connect(&broker.addr());
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("statics"))]);
    let got = c.call(&req, 5);
    got.groups[0]
        .members
        .iter()
        .map(|m| {
            let iid = m.group_instance_id.as_ref().map(|i| i.to_string());
            (iid.unwrap_or_default(), m.member_id.to_string())
        })
        .collect()
}

/// Polls the consumers until `want` distinct values of `topic` arrived (values of other topics
/// may come again after a rebalance and are not counted); returns them.
fn consume(cs: &[&BaseConsumer], topic: &str, want: usize) -> Vec<String> {
    let mut got = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "{topic}: {} of {want}",
            got.len()
        );
        for c in cs {
            if let Some(r) = c.poll(Duration::from_millis(50)) {
                let m = r.expect("no consumer error (a fenced static member reports one)");
                if m.topic() == topic {
                    let v = String::from_utf8_lossy(m.payload().unwrap_or_default());
                    got.insert(v.into_owned());
                }
            }
        }
    }
    got.into_iter().collect()
}

#[test]
fn librdkafka_static_members_keep_their_ids_when_they_rejoin_after_a_resubscribe() {
    let broker = broker();
    broker.cli_ok(&["topic", "create", "one", "--partitions", "4"], b"");
    broker.cli_ok(&["topic", "create", "two", "--partitions", "4"], b"");
    produce(&broker, "one", 200);
    let (x, y) = (consumer(&broker, "x"), consumer(&broker, "y"));
    x.subscribe(&["one"]).unwrap();
    y.subscribe(&["one"]).unwrap();
    assert_eq!(consume(&[&x, &y], "one", 200).len(), 200);
    let before = member_ids(&broker);
    assert_eq!(before.len(), 2, "{before:?}");

    // Both change their subscription: each rejoins with its current member id. Kafka keeps
    // the ids; tidelog used to hand out new ones and fence the members' own requests.
    produce(&broker, "two", 200);
    x.subscribe(&["one", "two"]).unwrap();
    y.subscribe(&["one", "two"]).unwrap();
    assert_eq!(consume(&[&x, &y], "two", 200).len(), 200);
    assert_eq!(
        member_ids(&broker),
        before,
        "member ids kept across the rejoin"
    );
}

//! The classic group protocol at the wire level: Kafka's error codes, the join/sync dance, and
//! static membership rejoining without a rebalance.

mod common;

use bytes::Bytes;
use common::raw::Raw;
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tidelog::error::ErrorCode;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn broker() -> Broker {
    Broker::start_with(
        BrokerOptions::default()
            .shards(2)
            .set("group.initial.rebalance.delay.ms", "0"),
    )
}

fn join_req(
    group: &str,
    member: &str,
    instance: Option<&str>,
    session_ms: i32,
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"meta"))])
}

fn sync_req(
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
    assign: &[(&str, &str)],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
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
        )
}

fn heartbeat(
    c: &mut Raw,
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s));
    c.call(&req, 4).error_code
}

#[test]
fn a_dynamic_member_joins_syncs_commits_and_leaves_with_kafkas_error_codes() {
    let broker = broker();
    broker.cli_ok(&["topic", "create", "t", "--partitions", "2"], b"");
    let mut c = Raw::connect(&broker.addr());
    // Absurd session timeouts are refused.
    assert_eq!(
        c.call(&join_req("g", "", None, 10), 9).error_code,
        ErrorCode::InvalidSessionTimeout.code(),
        "INVALID_SESSION_TIMEOUT"
    );
    assert_eq!(
        c.call(&join_req("g", "", None, i32::MAX), 9).error_code,
        ErrorCode::InvalidSessionTimeout.code()
    );
    // v4+: a new member first gets an id.
    let first = c.call(&join_req("g", "", None, 10_000), 9);
    assert_eq!(
        first.error_code,
        ErrorCode::MemberIdRequired.code(),
        "MEMBER_ID_REQUIRED"
    );
    let id = first.member_id.to_string();
    assert!(!id.is_empty());
    assert_eq!(
        c.call(&join_req("g", "stranger", None, 10_000), 9)
            .error_code,
        ErrorCode::UnknownMemberId.code(),
        "UNKNOWN_MEMBER_ID"
    );
    let joined = c.call(&join_req("g", &id, None, 10_000), 9);
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader.to_string(), id);
    assert_eq!(joined.members.len(), 1, "the leader gets the member list");
    let gen = joined.generation_id;
    // A different protocol type cannot join a consumer group.
    let mut other = join_req("g", "", None, 10_000);
    other.protocol_type = s("connect");
    assert_eq!(
        c.call(&other, 9).error_code,
        ErrorCode::InconsistentGroupProtocol.code(),
        "INCONSISTENT_GROUP_PROTOCOL"
    );
    assert_eq!(
        c.call(&sync_req("g", gen + 7, &id, None, &[]), 5)
            .error_code,
        ErrorCode::IllegalGeneration.code(),
        "ILLEGAL_GENERATION"
    );
    let synced = c.call(&sync_req("g", gen, &id, None, &[(&id, "p0,p1")]), 5);
    assert_eq!(
        (synced.error_code, &synced.assignment[..]),
        (0, &b"p0,p1"[..])
    );
    assert_eq!(heartbeat(&mut c, "g", gen, &id, None), 0);
    assert_eq!(
        heartbeat(&mut c, "g", gen - 1, &id, None),
        ErrorCode::IllegalGeneration.code()
    );
    // Commits: from the member, and refused for a stale generation.
    let commit = |gen: i32, member: &str, offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id_or_member_epoch(gen)
            .with_member_id(s(member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(offset)
                    .with_committed_metadata(Some(s("meta")))])])
    };
    assert_eq!(
        c.call(&commit(gen, &id, 42), 8).topics[0].partitions[0].error_code,
        0
    );
    assert_eq!(
        c.call(&commit(gen + 1, &id, 43), 8).topics[0].partitions[0].error_code,
        ErrorCode::IllegalGeneration.code()
    );
    assert_eq!(
        c.call(&commit(-1, "", 44), 8).topics[0].partitions[0].error_code,
        ErrorCode::UnknownMemberId.code(),
        "standalone commit to an active group"
    );
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0, 1])]));
    let got = c.call(&fetch, 7);
    let offsets: Vec<i64> = got.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect();
    assert_eq!(offsets, [-1, 42]);
    // A non-empty group cannot be deleted; after LeaveGroup it can.
    let del = |c: &mut Raw| {
        c.call(
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
            2,
        )
        .results[0]
            .error_code
    };
    assert_eq!(
        del(&mut c),
        ErrorCode::NonEmptyGroup.code(),
        "NON_EMPTY_GROUP"
    );
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(s(&id))
        ]);
    let left = c.call(&leave, 5);
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));
    let listed = c.call(
        &ListGroupsRequest::default().with_states_filter(vec![s("Empty")]),
        4,
    );
    assert!(listed.groups.iter().any(|g| g.group_id.0.as_str() == "g"));
    assert_eq!(del(&mut c), 0);
    assert_eq!(
        del(&mut c),
        ErrorCode::GroupIdNotFound.code(),
        "GROUP_ID_NOT_FOUND"
    );
    assert_eq!(
        c.call(&fetch, 7).topics[0].partitions[1].committed_offset,
        -1,
        "offsets went with the group"
    );
}

#[test]
fn a_static_member_rejoins_without_rebalancing_the_others_and_fences_its_old_self() {
    // A new group waits out the initial delay, so both first joins land in one generation.
    let broker = Broker::start_with(
        BrokerOptions::default()
            .shards(2)
            .set("group.initial.rebalance.delay.ms", "500"),
    );
    let mut a = Raw::connect(&broker.addr());
    let mut b = Raw::connect(&broker.addr());
    a.send(&join_req("sg", "", Some("a"), 10_000), 9);
    b.send(&join_req("sg", "", Some("b"), 10_000), 9);
    let ja = a.receive::<JoinGroupRequest>(9);
    let jb = b.receive::<JoinGroupRequest>(9);
    assert_eq!((ja.error_code, jb.error_code), (0, 0));
    let gen = ja.generation_id;
    let (leader, follower) = if ja.leader == ja.member_id {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let (lid, fid) = if ja.leader == ja.member_id {
        (ja.member_id.to_string(), jb.member_id.to_string())
    } else {
        (jb.member_id.to_string(), ja.member_id.to_string())
    };
    let (liid, fiid) = if ja.leader == ja.member_id {
        ("a", "b")
    } else {
        ("b", "a")
    };
    follower.send(&sync_req("sg", gen, &fid, Some(fiid), &[]), 5);
    let ls = leader.call(
        &sync_req("sg", gen, &lid, Some(liid), &[(&lid, "L"), (&fid, "F")]),
        5,
    );
    let fs = follower.receive::<SyncGroupRequest>(5);
    assert_eq!(
        (&ls.assignment[..], &fs.assignment[..]),
        (&b"L"[..], &b"F"[..])
    );
    // The follower restarts: same instance id, no member id. It gets its place back at once.
    let mut again = Raw::connect(&broker.addr());
    let rejoined = again.call(&join_req("sg", "", Some(fiid), 10_000), 9);
    assert_eq!(rejoined.error_code, 0);
    assert_eq!(rejoined.generation_id, gen, "no new generation");
    let new_id = rejoined.member_id.to_string();
    assert_ne!(new_id, fid);
    let resync = again.call(&sync_req("sg", gen, &new_id, Some(fiid), &[]), 5);
    assert_eq!(&resync.assignment[..], b"F", "old assignment kept");
    // The leader saw no rebalance, and the old incarnation is fenced.
    assert_eq!(heartbeat(leader, "sg", gen, &lid, Some(liid)), 0);
    assert_eq!(
        heartbeat(follower, "sg", gen, &fid, Some(fiid)),
        ErrorCode::FencedInstanceId.code(),
        "FENCED_INSTANCE_ID"
    );
}

#[test]
fn thousands_of_joins_hit_group_max_size_and_other_groups_keep_working() {
    let broker = broker();
    let mut c = Raw::connect(&broker.addr());
    let mut refused = 0;
    for _ in 0..1200 {
        if c.call(&join_req("crowd", "", None, 10_000), 9).error_code
            == ErrorCode::GroupMaxSizeReached.code()
        {
            refused += 1;
        }
    }
    assert!(
        refused >= 200,
        "GROUP_MAX_SIZE_REACHED only {refused} times"
    );
    let first = c.call(&join_req("calm", "", None, 10_000), 9);
    assert_eq!(first.error_code, ErrorCode::MemberIdRequired.code());
    let joined = c.call(&join_req("calm", &first.member_id, None, 10_000), 9);
    assert_eq!(joined.error_code, 0);
}

#[test]
fn the_offsets_topic_is_internal_and_closed_to_producers() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let broker = broker();
    let mut c = Raw::connect(&broker.addr());
    assert_eq!(
        c.call(&join_req("any", "", None, 10_000), 9).error_code,
        ErrorCode::MemberIdRequired.code()
    );
    let md = c.call(
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s("__consumer_offsets"))))
        ])),
        12,
    );
    assert!(md.topics[0].is_internal);
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s("__consumer_offsets")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(common::raw::batch(&["x"], None, 1)))])]);
    assert_eq!(
        c.call(&req, 9).responses[0].partition_responses[0].error_code,
        ErrorCode::InvalidTopicException.code(),
        "INVALID_TOPIC_EXCEPTION"
    );
}

#[test]
fn shutdown_answers_waiting_joins_with_not_coordinator_instead_of_stalling() {
    let mut broker = Broker::start_with(
        BrokerOptions::default()
            .shards(2)
            .set("group.initial.rebalance.delay.ms", "60000"),
    );
    let mut c = Raw::connect(&broker.addr());
    let first = c.call(&join_req("slow", "", None, 10_000), 9);
    // Parked: a new group waits out its (long) initial delay.
    c.send(&join_req("slow", &first.member_id, None, 10_000), 9);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let start = std::time::Instant::now();
    let status = broker.stop();
    assert!(status.success(), "exit status {status}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(4),
        "shutdown took {:?}",
        start.elapsed()
    );
    assert_eq!(
        c.receive::<JoinGroupRequest>(9).error_code,
        ErrorCode::NotCoordinator.code(),
        "NOT_COORDINATOR"
    );
}

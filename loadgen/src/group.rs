//! The classic consumer group protocol, without I/O: the versions loadgen speaks, the
//! `consumer` protocol's subscription and assignment metadata, Kafka's range assignor, and the
//! group requests, built with kafka-protocol's message types. [`crate::member`] sends them.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// The group protocol type and the one assignor loadgen offers.
pub const PROTOCOL_TYPE: &str = "consumer";
pub const ASSIGNOR: &str = "range";
/// Versions of the consumer protocol metadata loadgen writes (the first, readable by every
/// client) and the highest it reads.
const SUBSCRIPTION_VERSION: i16 = 0;
const SUBSCRIPTION_VERSION_MAX: i16 = 3;
const ASSIGNMENT_VERSION: i16 = 0;
const ASSIGNMENT_VERSION_MAX: i16 = 3;

/// Kafka error codes the member acts on.
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const MEMBER_ID_REQUIRED: i16 = 79;

/// Whether `code` means this member must join again (its generation is over).
pub fn must_rejoin(code: i16) -> bool {
    matches!(
        code,
        REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID
    )
}

/// Whether `code` is worth retrying after a pause (the coordinator is not ready).
pub fn retriable(code: i16) -> bool {
    matches!(
        code,
        COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
    )
}

/// The group API versions agreed with the broker (each capped at what loadgen encodes).
#[derive(Clone, Copy, Debug)]
pub struct Versions {
    pub find_coordinator: i16,
    pub join: i16,
    pub sync: i16,
    pub heartbeat: i16,
    pub leave: i16,
    pub offset_commit: i16,
    pub offset_fetch: i16,
}

impl Versions {
    /// The highest versions loadgen encodes: FindCoordinator v4 and OffsetFetch v8 batch
    /// their keys and groups, which one group has no use for.
    pub const MAX: Versions = Versions {
        find_coordinator: 3,
        join: 9,
        sync: 5,
        heartbeat: 4,
        leave: 5,
        offset_commit: 8,
        offset_fetch: 7,
    };
}

/// A member's subscription: `i16` version, then `ConsumerProtocolSubscription`.
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| StrBytes::from(t.clone())).collect());
    encode_versioned(&sub, SUBSCRIPTION_VERSION)
}

/// The topics of a member's subscription.
pub fn decode_subscription(mut bytes: Bytes) -> Result<Vec<String>, String> {
    let version = read_version(&mut bytes, "subscription")?.min(SUBSCRIPTION_VERSION_MAX);
    let sub = ConsumerProtocolSubscription::decode(&mut bytes, version)
        .map_err(|e| format!("bad consumer subscription: {e}"))?;
    Ok(sub.topics.iter().map(|t| t.as_str().to_owned()).collect())
}

/// A member's assignment: `i16` version, then `ConsumerProtocolAssignment`.
pub fn encode_assignment(assignment: &Assignment) -> Bytes {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assignment
            .iter()
            .map(|(topic, parts)| {
                AssignedPartitions::default()
                    .with_topic(tidelog::client::admin::topic_name(topic))
                    .with_partitions(parts.clone())
            })
            .collect(),
    );
    encode_versioned(&a, ASSIGNMENT_VERSION)
}

/// The partitions an assignment gives, by topic. Empty bytes (a member the leader left out)
/// assign nothing.
pub fn decode_assignment(mut bytes: Bytes) -> Result<Assignment, String> {
    if bytes.is_empty() {
        return Ok(Assignment::new());
    }
    let version = read_version(&mut bytes, "assignment")?.min(ASSIGNMENT_VERSION_MAX);
    let a = ConsumerProtocolAssignment::decode(&mut bytes, version)
        .map_err(|e| format!("bad consumer assignment: {e}"))?;
    let mut out = Assignment::new();
    for tp in a.assigned_partitions {
        out.entry(tp.topic.0.as_str().to_owned())
            .or_default()
            .extend(tp.partitions);
    }
    Ok(out)
}

fn encode_versioned<M: Encodable>(m: &M, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    m.encode(&mut buf, version)
        .expect("consumer protocol metadata encodes at its own version");
    buf.freeze()
}

fn read_version(bytes: &mut Bytes, what: &str) -> Result<i16, String> {
    if bytes.len() < 2 {
        return Err(format!("consumer {what} is too short"));
    }
    let v = bytes.get_i16();
    if v < 0 {
        return Err(format!("consumer {what} has version {v}"));
    }
    Ok(v)
}

/// Partitions by topic.
pub type Assignment = BTreeMap<String, Vec<i32>>;

/// Kafka's `RangeAssignor`: for each topic, the members subscribed to it, sorted by member id,
/// take consecutive ranges of its partitions; the first `partitions % members` take one more.
/// Topics missing from `partition_counts` are not assigned. Every member gets an entry.
pub fn range_assign(
    members: &[(String, Vec<String>)],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|(id, _)| (id.clone(), Assignment::new()))
        .collect();
    let mut by_topic: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (id, topics) in members {
        for t in topics {
            by_topic.entry(t).or_default().insert(id);
        }
    }
    for (topic, subscribers) in by_topic {
        let Some(&count) = partition_counts.get(topic) else {
            continue;
        };
        let n = subscribers.len() as i32;
        let (per, extra) = (count / n, count % n);
        for (i, id) in subscribers.into_iter().enumerate() {
            let i = i as i32;
            let start = per * i + i.min(extra);
            let len = per + i32::from(i < extra);
            if len > 0 {
                out.get_mut(id)
                    .expect("every member has an entry")
                    .insert(topic.to_owned(), (start..start + len).collect());
            }
        }
    }
    out
}

/// The parameters of one member's requests.
pub struct Member<'a> {
    pub group: &'a str,
    pub member_id: &'a str,
    pub generation: i32,
    pub versions: Versions,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from(v.to_owned())
}

pub fn find_coordinator(group: &str) -> FindCoordinatorRequest {
    FindCoordinatorRequest::default().with_key(s(group))
}

pub fn join(
    group: &str,
    member_id: &str,
    topics: &[String],
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    version: i16,
) -> JoinGroupRequest {
    let req = JoinGroupRequest::default()
        .with_group_id(s(group).into())
        .with_session_timeout_ms(session_timeout_ms)
        .with_member_id(s(member_id))
        .with_protocol_type(s(PROTOCOL_TYPE))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s(ASSIGNOR))
            .with_metadata(encode_subscription(topics))]);
    if version >= 1 {
        req.with_rebalance_timeout_ms(rebalance_timeout_ms)
    } else {
        req
    }
}

pub fn sync(m: &Member, assignments: &BTreeMap<String, Assignment>) -> SyncGroupRequest {
    let req = SyncGroupRequest::default()
        .with_group_id(s(m.group).into())
        .with_generation_id(m.generation)
        .with_member_id(s(m.member_id))
        .with_assignments(
            assignments
                .iter()
                .map(|(id, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(id))
                        .with_assignment(encode_assignment(a))
                })
                .collect(),
        );
    if m.versions.sync >= 5 {
        req.with_protocol_type(Some(s(PROTOCOL_TYPE)))
            .with_protocol_name(Some(s(ASSIGNOR)))
    } else {
        req
    }
}

pub fn heartbeat(m: &Member) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(s(m.group).into())
        .with_generation_id(m.generation)
        .with_member_id(s(m.member_id))
}

pub fn leave(m: &Member) -> LeaveGroupRequest {
    let req = LeaveGroupRequest::default().with_group_id(s(m.group).into());
    if m.versions.leave >= 3 {
        req.with_members(vec![
            MemberIdentity::default().with_member_id(s(m.member_id))
        ])
    } else {
        req.with_member_id(s(m.member_id))
    }
}

/// Commits `offsets` (topic, partition, next offset to read).
pub fn commit(m: &Member, offsets: &[(&str, i32, i64)]) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for &(topic, partition, offset) in offsets {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(partition)
            .with_committed_offset(offset);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.partitions.push(p),
            _ => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(tidelog::client::admin::topic_name(topic))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(s(m.group).into())
        .with_generation_id_or_member_epoch(m.generation)
        .with_member_id(s(m.member_id))
        .with_topics(topics)
}

/// Asks for the committed offsets of `partitions` (topic, partition).
pub fn offset_fetch(group: &str, assignment: &Assignment) -> OffsetFetchRequest {
    OffsetFetchRequest::default()
        .with_group_id(s(group).into())
        .with_topics(Some(
            assignment
                .iter()
                .map(|(topic, parts)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(tidelog::client::admin::topic_name(topic))
                        .with_partition_indexes(parts.clone())
                })
                .collect(),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(c: &[(&str, i32)]) -> BTreeMap<String, i32> {
        c.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn member(id: &str, topics: &[&str]) -> (String, Vec<String>) {
        (id.into(), topics.iter().map(|t| t.to_string()).collect())
    }

    #[test]
    fn range_assignor_gives_consecutive_ranges_extras_first() {
        let members = [member("b", &["t", "u"]), member("a", &["t", "u"])];
        let out = range_assign(&members, &counts(&[("t", 5), ("u", 2)]));
        // Sorted by member id: "a" is first and takes the extra partition of t.
        assert_eq!(out["a"]["t"], vec![0, 1, 2]);
        assert_eq!(out["b"]["t"], vec![3, 4]);
        assert_eq!(out["a"]["u"], vec![0]);
        assert_eq!(out["b"]["u"], vec![1]);
    }

    #[test]
    fn range_assignor_leaves_spare_members_empty_and_respects_subscriptions() {
        let members = [
            member("m1", &["t"]),
            member("m2", &["t"]),
            member("m3", &["t", "v"]),
        ];
        let out = range_assign(&members, &counts(&[("t", 2), ("v", 3), ("w", 4)]));
        assert_eq!(out["m1"]["t"], vec![0]);
        assert_eq!(out["m2"]["t"], vec![1]);
        assert!(!out["m3"].contains_key("t"));
        assert_eq!(out["m3"]["v"], vec![0, 1, 2]);
        // Every partition of every subscribed topic once; unsubscribed "w" nobody's.
        let total: usize = out.values().flat_map(|a| a.values()).map(Vec::len).sum();
        assert_eq!(total, 5);
        // A topic with no known partition count is skipped.
        let out = range_assign(&[member("x", &["gone"])], &counts(&[]));
        assert!(out["x"].is_empty());
    }

    #[test]
    fn subscription_round_trips_through_the_crate_decoder() {
        let topics = vec!["a".to_string(), "b-1".to_string()];
        let mut bytes = encode_subscription(&topics);
        assert_eq!(decode_subscription(bytes.clone()).unwrap(), topics);
        assert_eq!(bytes.get_i16(), SUBSCRIPTION_VERSION);
        let sub = ConsumerProtocolSubscription::decode(&mut bytes, SUBSCRIPTION_VERSION).unwrap();
        assert_eq!(sub.topics, vec![s("a"), s("b-1")]);
        assert!(bytes.is_empty());
        // A newer member's subscription (v3, with owned partitions and a rack) still reads.
        let newer = ConsumerProtocolSubscription::default()
            .with_topics(vec![s("a")])
            .with_generation_id(4)
            .with_rack_id(Some(s("r")));
        assert_eq!(
            decode_subscription(encode_versioned(&newer, 3)).unwrap(),
            vec!["a".to_string()]
        );
    }

    #[test]
    fn assignment_round_trips_through_the_crate_decoder() {
        let a: Assignment = [("t".to_string(), vec![0, 2]), ("u".to_string(), vec![1])]
            .into_iter()
            .collect();
        let mut bytes = encode_assignment(&a);
        assert_eq!(decode_assignment(bytes.clone()).unwrap(), a);
        assert_eq!(bytes.get_i16(), ASSIGNMENT_VERSION);
        let decoded = ConsumerProtocolAssignment::decode(&mut bytes, ASSIGNMENT_VERSION).unwrap();
        let parts: Vec<(String, Vec<i32>)> = decoded
            .assigned_partitions
            .iter()
            .map(|tp| (tp.topic.0.as_str().to_owned(), tp.partitions.clone()))
            .collect();
        assert_eq!(parts, vec![("t".into(), vec![0, 2]), ("u".into(), vec![1])]);
        assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
        assert!(decode_assignment(Bytes::from_static(&[0])).is_err());
    }

    #[test]
    fn requests_encode_at_every_version_loadgen_may_pick() {
        let topics = vec!["t".to_string()];
        let a: Assignment = [("t".to_string(), vec![0])].into_iter().collect();
        let assignments: BTreeMap<String, Assignment> = [("m".to_string(), a.clone())].into();
        for v in 0..=9 {
            let versions = Versions {
                find_coordinator: v.min(3),
                join: v,
                sync: v.min(5),
                heartbeat: v.min(4),
                leave: v.min(5),
                offset_commit: v.clamp(2, 8),
                offset_fetch: v.clamp(1, 7),
            };
            let m = Member {
                group: "g",
                member_id: "m",
                generation: 1,
                versions,
            };
            let mut buf = BytesMut::new();
            find_coordinator("g")
                .encode(&mut buf, versions.find_coordinator)
                .unwrap();
            join("g", "m", &topics, 10_000, 60_000, versions.join)
                .encode(&mut buf, versions.join)
                .unwrap();
            sync(&m, &assignments)
                .encode(&mut buf, versions.sync)
                .unwrap();
            heartbeat(&m).encode(&mut buf, versions.heartbeat).unwrap();
            leave(&m).encode(&mut buf, versions.leave).unwrap();
            commit(&m, &[("t", 0, 5), ("t", 1, 7)])
                .encode(&mut buf, versions.offset_commit)
                .unwrap();
            offset_fetch("g", &a)
                .encode(&mut buf, versions.offset_fetch)
                .unwrap();
        }
    }
}

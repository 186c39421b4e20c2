//! The classic consumer group protocol as a client speaks it, without I/O: the `consumer`
//! protocol's subscription and assignment payloads, Kafka's range assignor, the error codes a
//! member acts on, and the group requests built with kafka-protocol's message types.
//!
//! One module for both of tidelog's group clients: the CLI's blocking client
//! (`client::membership`) and loadgen's pipelined members send what this module builds, each
//! over its own connection.
//!
//! Consumer-protocol payloads are opaque bytes to the broker; by Kafka's convention each is an
//! i16 version followed by the body at that version, and readers decode newer versions as the
//! newest they know (the formats only ever add fields at the end).

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
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

/// The group protocol type of consumers.
pub const PROTOCOL_TYPE: &str = "consumer";
/// The one assignor tidelog's clients offer, by Kafka's name for it.
pub const RANGE_ASSIGNOR: &str = "range";
/// The consumer-protocol version written: v0 is read by every consumer there is.
pub const CONSUMER_PROTOCOL_VERSION: i16 = 0;

/// Kafka's COORDINATOR_LOAD_IN_PROGRESS.
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
/// Kafka's COORDINATOR_NOT_AVAILABLE.
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// Kafka's NOT_COORDINATOR.
pub const NOT_COORDINATOR: i16 = 16;
/// Kafka's ILLEGAL_GENERATION.
pub const ILLEGAL_GENERATION: i16 = 22;
/// Kafka's UNKNOWN_MEMBER_ID.
pub const UNKNOWN_MEMBER_ID: i16 = 25;
/// Kafka's REBALANCE_IN_PROGRESS.
pub const REBALANCE_IN_PROGRESS: i16 = 27;
/// Kafka's MEMBER_ID_REQUIRED: a first JoinGroup (v4+) is answered with the id to rejoin with.
pub const MEMBER_ID_REQUIRED: i16 = 79;

/// The first JoinGroup version with a rebalance timeout.
const JOIN_GROUP_REBALANCE_TIMEOUT: i16 = 1;
/// The first SyncGroup version that carries the protocol type and name.
const SYNC_GROUP_NAMES_PROTOCOL: i16 = 5;
/// The first LeaveGroup version that names a batch of members.
const LEAVE_GROUP_BATCHED: i16 = 3;

/// Whether a group error code means "join the group again": a rebalance is under way, or this
/// member's generation or id is no longer current.
pub fn rejoin_needed(code: i16) -> bool {
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

/// Partitions by topic.
pub type Assignment = BTreeMap<String, Vec<i32>>;

/// A member's subscription to `topics`: `i16` version, then `ConsumerProtocolSubscription`.
pub fn encode_subscription(topics: &[String]) -> Result<Bytes, String> {
    let sub =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect());
    encode_versioned(&sub)
}

/// The topics of a member's version-prefixed subscription.
pub fn decode_subscription(mut bytes: Bytes) -> Result<Vec<String>, String> {
    let version = read_version::<ConsumerProtocolSubscription>(&mut bytes, "subscription")?;
    let sub = ConsumerProtocolSubscription::decode(&mut bytes, version)
        .map_err(|e| format!("consumer subscription: {e}"))?;
    Ok(sub.topics.iter().map(|t| t.as_str().to_owned()).collect())
}

/// A member's assignment: `i16` version, then `ConsumerProtocolAssignment`.
pub fn encode_assignment(assignment: &Assignment) -> Result<Bytes, String> {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assignment
            .iter()
            .map(|(topic, parts)| {
                AssignedPartitions::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(parts.clone())
            })
            .collect(),
    );
    encode_versioned(&a)
}

/// The partitions a version-prefixed assignment gives, by topic, in the order it lists them.
/// An empty payload is the empty assignment (a member that joined but was given nothing, or has
/// not synced yet).
pub fn decode_assignment(mut bytes: Bytes) -> Result<Assignment, String> {
    if bytes.is_empty() {
        return Ok(Assignment::new());
    }
    let version = read_version::<ConsumerProtocolAssignment>(&mut bytes, "assignment")?;
    let a = ConsumerProtocolAssignment::decode(&mut bytes, version)
        .map_err(|e| format!("consumer assignment: {e}"))?;
    let mut out = Assignment::new();
    for tp in a.assigned_partitions {
        out.entry(tp.topic.0.as_str().to_owned())
            .or_default()
            .extend(tp.partitions);
    }
    Ok(out)
}

fn encode_versioned<M: Encodable>(message: &M) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    message
        .encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .map_err(|e| format!("encoding consumer protocol: {e}"))?;
    Ok(buf.freeze())
}

/// Reads the i16 version prefix, capped at the newest version the crate knows.
fn read_version<M: Message>(bytes: &mut Bytes, what: &str) -> Result<i16, String> {
    if bytes.len() < 2 {
        return Err(format!("consumer {what} too short for its version"));
    }
    let version = bytes.get_i16();
    if version < 0 {
        return Err(format!("consumer {what} has version {version}"));
    }
    Ok(version.min(M::VERSIONS.max))
}

/// Kafka's `RangeAssignor`: for each topic, the members subscribed to it, in member-id order,
/// take consecutive runs of its partitions (sorted); the first `partitions % members` take one
/// more.
///
/// `subscriptions` maps member id to topics; `partitions` maps topic to its partition indexes.
/// Topics missing from `partitions` are not assigned. Every member gets an entry, possibly
/// empty, and a topic appears in a member's entry only when it was given partitions of it.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partitions: &BTreeMap<String, Vec<i32>>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    let mut by_topic: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (member, topics) in subscriptions {
        for t in topics {
            by_topic.entry(t).or_default().insert(member);
        }
    }
    for (topic, members) in by_topic {
        let Some(parts) = partitions.get(topic) else {
            continue;
        };
        let mut parts = parts.clone();
        parts.sort_unstable();
        let (each, extra) = (parts.len() / members.len(), parts.len() % members.len());
        let mut next = 0;
        for (i, member) in members.into_iter().enumerate() {
            let n = each + usize::from(i < extra);
            if n > 0 {
                out.get_mut(member)
                    .expect("every member has an entry")
                    .insert(topic.to_owned(), parts[next..next + n].to_vec());
            }
            next += n;
        }
    }
    out
}

/// The parameters every request of one member carries.
#[derive(Clone, Copy, Debug)]
pub struct Member<'a> {
    pub group: &'a str,
    pub member_id: &'a str,
    pub generation: i32,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// A topic name as the crate's messages carry it.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(s(name))
}

/// FindCoordinator for a group (v0-v3: one key).
pub fn find_coordinator(group: &str) -> FindCoordinatorRequest {
    FindCoordinatorRequest::default().with_key(s(group))
}

/// JoinGroup as a consumer subscribed to `topics`, offering the range assignor, at `version`.
pub fn join_group(
    group: &str,
    member_id: &str,
    topics: &[String],
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    version: i16,
) -> Result<JoinGroupRequest, String> {
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_timeout_ms)
        .with_member_id(s(member_id))
        .with_protocol_type(s(PROTOCOL_TYPE))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s(RANGE_ASSIGNOR))
            .with_metadata(encode_subscription(topics)?)]);
    Ok(if version >= JOIN_GROUP_REBALANCE_TIMEOUT {
        req.with_rebalance_timeout_ms(rebalance_timeout_ms)
    } else {
        req
    })
}

/// SyncGroup at `version`, with the leader's `assignments` (empty from a follower).
pub fn sync_group(
    m: &Member,
    assignments: &BTreeMap<String, Assignment>,
    version: i16,
) -> Result<SyncGroupRequest, String> {
    let assignments = assignments
        .iter()
        .map(|(id, a)| {
            Ok(SyncGroupRequestAssignment::default()
                .with_member_id(s(id))
                .with_assignment(encode_assignment(a)?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(m.group)))
        .with_generation_id(m.generation)
        .with_member_id(s(m.member_id))
        .with_assignments(assignments);
    // From v5 the coordinator checks the protocol this member thinks was chosen.
    Ok(if version >= SYNC_GROUP_NAMES_PROTOCOL {
        req.with_protocol_type(Some(s(PROTOCOL_TYPE)))
            .with_protocol_name(Some(s(RANGE_ASSIGNOR)))
    } else {
        req
    })
}

/// Heartbeat of a member in its generation.
pub fn heartbeat(m: &Member) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(s(m.group)))
        .with_generation_id(m.generation)
        .with_member_id(s(m.member_id))
}

/// LeaveGroup at `version`: one member up to v2, a batch of members from v3.
pub fn leave_group(m: &Member, version: i16) -> LeaveGroupRequest {
    let req = LeaveGroupRequest::default().with_group_id(GroupId(s(m.group)));
    if version >= LEAVE_GROUP_BATCHED {
        req.with_members(vec![
            MemberIdentity::default().with_member_id(s(m.member_id))
        ])
    } else {
        req.with_member_id(s(m.member_id))
    }
}

/// Commits `offsets` (topic, partition, next offset to read); consecutive entries of one topic
/// share its entry.
pub fn offset_commit(m: &Member, offsets: &[(&str, i32, i64)]) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for &(topic, partition, offset) in offsets {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(partition)
            .with_committed_offset(offset);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.partitions.push(p),
            _ => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(m.group)))
        .with_generation_id_or_member_epoch(m.generation)
        .with_member_id(s(m.member_id))
        .with_topics(topics)
}

/// Asks for the committed offsets of the partitions of `assignment` (v1-v7: one group).
pub fn offset_fetch(group: &str, assignment: &Assignment) -> OffsetFetchRequest {
    OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(
            assignment
                .iter()
                .map(|(topic, parts)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(parts.clone())
                })
                .collect(),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        members
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn counts(c: &[(&str, i32)]) -> BTreeMap<String, Vec<i32>> {
        c.iter()
            .map(|(t, n)| (t.to_string(), (0..*n).collect()))
            .collect()
    }

    #[test]
    fn range_gives_consecutive_runs_and_extras_to_the_first_members() {
        let parts = BTreeMap::from([("t".to_owned(), vec![4, 3, 2, 1, 0])]);
        let got = range_assign(&subs(&[("b", &["t"]), ("a", &["t"])]), &parts);
        assert_eq!(got["a"]["t"], [0, 1, 2]);
        assert_eq!(got["b"]["t"], [3, 4]);
        let got = range_assign(
            &subs(&[("b", &["t", "u"]), ("a", &["t", "u"])]),
            &counts(&[("t", 5), ("u", 2)]),
        );
        assert_eq!(got["a"]["t"], [0, 1, 2]);
        assert_eq!(got["b"]["t"], [3, 4]);
        assert_eq!(got["a"]["u"], [0]);
        assert_eq!(got["b"]["u"], [1]);
    }

    #[test]
    fn range_assigns_only_subscribed_topics_and_keeps_idle_members() {
        let parts = BTreeMap::from([("t".to_owned(), vec![0]), ("u".to_owned(), vec![0, 1])]);
        let got = range_assign(
            &subs(&[("a", &["t"]), ("b", &["t", "u"]), ("c", &["t"])]),
            &parts,
        );
        assert_eq!(got["a"], Assignment::from([("t".to_owned(), vec![0])]));
        assert_eq!(got["b"], Assignment::from([("u".to_owned(), vec![0, 1])]));
        assert!(got["c"].is_empty());

        let got = range_assign(
            &subs(&[("m1", &["t"]), ("m2", &["t"]), ("m3", &["t", "v"])]),
            &counts(&[("t", 2), ("v", 3), ("w", 4)]),
        );
        assert_eq!(got["m1"]["t"], [0]);
        assert_eq!(got["m2"]["t"], [1]);
        assert!(!got["m3"].contains_key("t"));
        assert_eq!(got["m3"]["v"], [0, 1, 2]);
        // Every partition of every subscribed topic once; unsubscribed "w" nobody's.
        let total: usize = got.values().flat_map(|a| a.values()).map(Vec::len).sum();
        assert_eq!(total, 5);
        // A topic with no known partitions is skipped.
        let got = range_assign(&subs(&[("x", &["gone"])]), &counts(&[]));
        assert!(got["x"].is_empty());
    }

    #[test]
    fn payloads_round_trip_through_the_crate_decoder_with_their_version_prefix() {
        let topics = vec!["a".to_owned(), "b-1".to_owned()];
        let mut bytes = encode_subscription(&topics).unwrap();
        assert_eq!(decode_subscription(bytes.clone()).unwrap(), topics);
        assert_eq!(bytes.get_i16(), CONSUMER_PROTOCOL_VERSION);
        let sub = ConsumerProtocolSubscription::decode(&mut bytes, 0).unwrap();
        assert_eq!(sub.topics, vec![s("a"), s("b-1")]);
        assert!(bytes.is_empty());

        let a = Assignment::from([("t".to_owned(), vec![0, 2]), ("u".to_owned(), vec![1])]);
        let mut bytes = encode_assignment(&a).unwrap();
        assert_eq!(decode_assignment(bytes.clone()).unwrap(), a);
        assert_eq!(bytes.get_i16(), CONSUMER_PROTOCOL_VERSION);
        let decoded = ConsumerProtocolAssignment::decode(&mut bytes, 0).unwrap();
        let parts: Vec<(String, Vec<i32>)> = decoded
            .assigned_partitions
            .iter()
            .map(|tp| (tp.topic.0.as_str().to_owned(), tp.partitions.clone()))
            .collect();
        assert_eq!(parts, vec![("t".into(), vec![0, 2]), ("u".into(), vec![1])]);
        assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
        assert!(decode_assignment(Bytes::from_static(&[0])).is_err());
        assert!(decode_subscription(Bytes::from_static(&[0xff, 0xff])).is_err());
    }

    /// A newer version than the crate knows decodes as the newest it knows.
    #[test]
    fn newer_payload_versions_decode_as_the_newest_known() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            AssignedPartitions::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![7]),
        ]);
        let mut buf = BytesMut::new();
        buf.put_i16(ConsumerProtocolAssignment::VERSIONS.max + 1);
        a.encode(&mut buf, ConsumerProtocolAssignment::VERSIONS.max)
            .unwrap();
        assert_eq!(
            decode_assignment(buf.freeze()).unwrap(),
            Assignment::from([("t".to_owned(), vec![7])])
        );
        // A newer member's subscription (v3, with owned partitions and a rack) still reads.
        let newer = ConsumerProtocolSubscription::default()
            .with_topics(vec![s("a")])
            .with_generation_id(4)
            .with_rack_id(Some(s("r")));
        let mut buf = BytesMut::new();
        buf.put_i16(3);
        newer.encode(&mut buf, 3).unwrap();
        assert_eq!(decode_subscription(buf.freeze()).unwrap(), ["a"]);
    }

    #[test]
    fn requests_encode_at_every_version() {
        let topics = vec!["t".to_string()];
        let a = Assignment::from([("t".to_string(), vec![0])]);
        let assignments = BTreeMap::from([("m".to_string(), a.clone())]);
        let m = Member {
            group: "g",
            member_id: "m",
            generation: 1,
        };
        let mut buf = BytesMut::new();
        for v in 0..=FindCoordinatorRequest::VERSIONS.max.min(3) {
            find_coordinator("g").encode(&mut buf, v).unwrap();
        }
        for v in 0..=JoinGroupRequest::VERSIONS.max {
            join_group("g", "m", &topics, 10_000, 60_000, v)
                .unwrap()
                .encode(&mut buf, v)
                .unwrap();
        }
        for v in 0..=SyncGroupRequest::VERSIONS.max {
            sync_group(&m, &assignments, v)
                .unwrap()
                .encode(&mut buf, v)
                .unwrap();
        }
        for v in 0..=HeartbeatRequest::VERSIONS.max {
            heartbeat(&m).encode(&mut buf, v).unwrap();
        }
        for v in 0..=LeaveGroupRequest::VERSIONS.max {
            leave_group(&m, v).encode(&mut buf, v).unwrap();
        }
        for v in 2..=OffsetCommitRequest::VERSIONS.max.min(8) {
            offset_commit(&m, &[("t", 0, 5), ("t", 1, 7)])
                .encode(&mut buf, v)
                .unwrap();
        }
        for v in 1..=OffsetFetchRequest::VERSIONS.max.min(7) {
            offset_fetch("g", &a).encode(&mut buf, v).unwrap();
        }
    }
}

//! Membership of a consumer group with Kafka's classic protocol: JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, the consumer protocol's subscription and assignment encodings, and the
//! range assignor that the elected leader runs.
//!
//! Consumer-protocol payloads are opaque bytes to the broker; by Kafka's convention each is an
//! i16 version followed by the body at that version, and readers decode newer versions as the
//! newest they know (the formats only ever add fields at the end).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

use super::admin::topic_name;
use super::error::{check, ClientError, Result};
use super::Client;

/// The assignor this client offers, by Kafka's name for it.
pub const RANGE_ASSIGNOR: &str = "range";
/// The consumer-protocol version this client writes: v0 is read by every consumer there is.
const CONSUMER_PROTOCOL_VERSION: i16 = 0;
/// Kafka's MEMBER_ID_REQUIRED: a first JoinGroup (v4+) is answered with the id to rejoin with.
pub const MEMBER_ID_REQUIRED: i16 = 79;
/// Kafka's REBALANCE_IN_PROGRESS.
pub const REBALANCE_IN_PROGRESS: i16 = 27;
/// Kafka's ILLEGAL_GENERATION.
pub const ILLEGAL_GENERATION: i16 = 22;
/// Kafka's UNKNOWN_MEMBER_ID.
pub const UNKNOWN_MEMBER_ID: i16 = 25;
/// The first LeaveGroup version that names a batch of members.
const LEAVE_GROUP_BATCHED: i16 = 3;
/// The first SyncGroup version that carries the protocol type and name.
const SYNC_GROUP_NAMES_PROTOCOL: i16 = 5;
/// How many JoinGroup/SyncGroup rounds one [`Client::join`] tries before giving up; each
/// failed round means another member changed the group meanwhile.
const JOIN_ATTEMPTS_MAX: usize = 10;

/// Timeouts a member joins with (Kafka's consumer configs of the same names).
#[derive(Debug, Clone, Copy)]
pub struct MemberTimeouts {
    /// `session.timeout.ms`: without a heartbeat this long, the coordinator drops the member.
    pub session_timeout_ms: i32,
    /// `max.poll.interval.ms`: how long a rebalance waits for members to rejoin.
    pub rebalance_timeout_ms: i32,
}

/// This client's place in a group after a completed rebalance.
#[derive(Debug, Clone)]
pub struct Membership {
    /// The group id.
    pub group: String,
    /// The id the coordinator gave this member.
    pub member_id: String,
    /// The generation the assignment belongs to.
    pub generation: i32,
    /// This member's partitions, `(topic, partition)`, sorted.
    pub assignment: Vec<(String, i32)>,
}

/// Encodes a subscription to `topics`, version-prefixed.
pub fn encode_subscription(topics: &[String]) -> Result<Bytes> {
    let sub = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect(),
    );
    encode_versioned(&sub)
}

/// Decodes a version-prefixed subscription into its topics.
pub fn decode_subscription(mut bytes: Bytes) -> Result<Vec<String>> {
    let version = read_version::<ConsumerProtocolSubscription>(&mut bytes)?;
    let sub = ConsumerProtocolSubscription::decode(&mut bytes, version)
        .map_err(|e| ClientError::Protocol(format!("consumer subscription: {e}")))?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

/// Encodes an assignment of `(topic, partition)`s, version-prefixed.
pub fn encode_assignment(partitions: &[(String, i32)]) -> Result<Bytes> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                TopicPartition::default()
                    .with_topic(topic_name(t))
                    .with_partitions(ps)
            })
            .collect(),
    );
    encode_versioned(&assignment)
}

/// Decodes a version-prefixed assignment into sorted `(topic, partition)`s. An empty payload is
/// the empty assignment (a member that joined but was given nothing, or has not synced yet).
pub fn decode_assignment(mut bytes: Bytes) -> Result<Vec<(String, i32)>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let version = read_version::<ConsumerProtocolAssignment>(&mut bytes)?;
    let assignment = ConsumerProtocolAssignment::decode(&mut bytes, version)
        .map_err(|e| ClientError::Protocol(format!("consumer assignment: {e}")))?;
    let mut out: Vec<(String, i32)> = assignment
        .assigned_partitions
        .into_iter()
        .flat_map(|tp| {
            let topic = tp.topic.0.to_string();
            tp.partitions.into_iter().map(move |p| (topic.clone(), p))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn encode_versioned<M: Encodable>(message: &M) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    message
        .encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .map_err(|e| ClientError::Protocol(format!("encoding consumer protocol: {e}")))?;
    Ok(buf.freeze())
}

/// Reads the i16 version prefix, capped at the newest version this client knows.
fn read_version<M: Message>(bytes: &mut Bytes) -> Result<i16> {
    if bytes.len() < 2 {
        return Err(ClientError::Protocol(
            "consumer protocol payload too short for its version".into(),
        ));
    }
    let version = bytes.get_i16();
    if version < 0 {
        return Err(ClientError::Protocol(format!(
            "consumer protocol version {version}"
        )));
    }
    Ok(version.min(M::VERSIONS.max))
}

/// Kafka's range assignor: for each topic, the members subscribed to it, in member-id order,
/// take consecutive runs of its partitions; the first `partitions % members` take one extra.
///
/// `subscriptions` maps member id to topics; `partitions` maps topic to its partition indexes.
/// Every member appears in the result, possibly with nothing.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partitions: &BTreeMap<String, Vec<i32>>,
) -> BTreeMap<String, Vec<(String, i32)>> {
    let mut out: BTreeMap<String, Vec<(String, i32)>> = subscriptions
        .keys()
        .map(|m| (m.clone(), Vec::new()))
        .collect();
    for (topic, parts) in partitions {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let mut parts = parts.clone();
        parts.sort_unstable();
        let (each, extra) = (parts.len() / members.len(), parts.len() % members.len());
        let mut next = 0;
        for (i, member) in members.into_iter().enumerate() {
            let n = each + usize::from(i < extra);
            let mine = parts[next..next + n].iter().map(|p| (topic.clone(), *p));
            out.get_mut(member).expect("every member").extend(mine);
            next += n;
        }
    }
    out
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

impl Client {
    /// Joins `group` subscribed to `topics` and completes the rebalance: JoinGroup (again with
    /// the given id on MEMBER_ID_REQUIRED), the range assignment when elected leader, SyncGroup.
    ///
    /// `member_id` is the id from an earlier membership (empty for a new member); a rebalance
    /// that another member restarts meanwhile is simply joined again.
    pub fn join(
        &mut self,
        group: &str,
        topics: &[String],
        member_id: &str,
        timeouts: MemberTimeouts,
    ) -> Result<Membership> {
        let mut member_id = member_id.to_owned();
        let mut last = None;
        for _ in 0..JOIN_ATTEMPTS_MAX {
            let joined = self.join_group(group, topics, &member_id, timeouts)?;
            member_id = joined.member_id.to_string();
            match joined.error_code {
                0 => {}
                MEMBER_ID_REQUIRED | REBALANCE_IN_PROGRESS => continue,
                UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION => {
                    member_id.clear();
                    continue;
                }
                code => check(code, None, || format!("join group {group:?}"))?,
            }
            let assignments = if joined.leader == joined.member_id {
                self.leader_assign(&joined)?
            } else {
                Vec::new()
            };
            match self.sync_group(group, &joined, assignments) {
                Ok(assignment) => {
                    return Ok(Membership {
                        group: group.to_owned(),
                        member_id,
                        generation: joined.generation_id,
                        assignment,
                    })
                }
                Err(e) if e.kafka_code().is_some_and(rejoin_needed) => {
                    if e.kafka_code() == Some(UNKNOWN_MEMBER_ID) {
                        member_id.clear();
                    }
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            ClientError::Other(format!(
                "could not join group {group:?} in {JOIN_ATTEMPTS_MAX} attempts"
            ))
        }))
    }

    fn join_group(
        &mut self,
        group: &str,
        topics: &[String],
        member_id: &str,
        timeouts: MemberTimeouts,
    ) -> Result<JoinGroupResponse> {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(timeouts.session_timeout_ms)
            .with_rebalance_timeout_ms(timeouts.rebalance_timeout_ms)
            .with_member_id(s(member_id))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s(RANGE_ASSIGNOR))
                .with_metadata(encode_subscription(topics)?)]);
        let node = self.coordinator(group)?;
        // The coordinator holds a JoinGroup until the rebalance completes or times out.
        let wait = Duration::from_millis(timeouts.rebalance_timeout_ms.max(0) as u64);
        let (_, resp) = self.node(node)?.send(&req, wait)?;
        Ok(resp)
    }

    /// The leader's part of a rebalance: every member's subscription, the partitions of the
    /// subscribed topics, and the range assignment of one to the other.
    fn leader_assign(
        &mut self,
        joined: &JoinGroupResponse,
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let mut subscriptions = BTreeMap::new();
        for m in &joined.members {
            subscriptions.insert(
                m.member_id.to_string(),
                decode_subscription(m.metadata.clone())?,
            );
        }
        let mut topics: Vec<String> = subscriptions.values().flatten().cloned().collect();
        topics.sort();
        topics.dedup();
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let partitions: BTreeMap<String, Vec<i32>> = self
            .metadata(Some(&names), false)?
            .into_iter()
            .filter(|t| t.error_code == 0)
            .map(|t| (t.name, t.partitions.iter().map(|p| p.index).collect()))
            .collect();
        range_assign(&subscriptions, &partitions)
            .into_iter()
            .map(|(member, parts)| {
                Ok(SyncGroupRequestAssignment::default()
                    .with_member_id(s(&member))
                    .with_assignment(encode_assignment(&parts)?))
            })
            .collect()
    }

    fn sync_group(
        &mut self,
        group: &str,
        joined: &JoinGroupResponse,
        assignments: Vec<SyncGroupRequestAssignment>,
    ) -> Result<Vec<(String, i32)>> {
        let node = self.coordinator(group)?;
        let conn = self.node(node)?;
        let mut req = SyncGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(joined.generation_id)
            .with_member_id(joined.member_id.clone())
            .with_assignments(assignments);
        // From v5 the coordinator checks the protocol this member thinks was chosen.
        if conn.version::<SyncGroupRequest>()? >= SYNC_GROUP_NAMES_PROTOCOL {
            req = req
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(joined.protocol_name.clone());
        }
        let (_, resp) = conn.send(&req, Duration::ZERO)?;
        check(resp.error_code, None, || format!("sync group {group:?}"))?;
        decode_assignment(resp.assignment)
    }

    /// Tells the coordinator this member is alive. An error whose code satisfies
    /// [`rejoin_needed`] means a rebalance started or the membership was lost.
    pub fn heartbeat(&mut self, m: &Membership) -> Result<()> {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&m.group)))
            .with_generation_id(m.generation)
            .with_member_id(s(&m.member_id));
        let node = self.coordinator(&m.group)?;
        let (_, resp) = self.node(node)?.send(&req, Duration::ZERO)?;
        check(resp.error_code, None, || {
            format!("heartbeat to group {:?}", m.group)
        })
    }

    /// Leaves the group, so its partitions move to the other members at once rather than after
    /// `session.timeout.ms`.
    pub fn leave_group(&mut self, m: &Membership) -> Result<()> {
        let node = self.coordinator(&m.group)?;
        let conn = self.node(node)?;
        // LeaveGroup names one member up to v2 and a batch of members from v3.
        let mut req = LeaveGroupRequest::default().with_group_id(GroupId(s(&m.group)));
        if conn.version::<LeaveGroupRequest>()? >= LEAVE_GROUP_BATCHED {
            req = req.with_members(vec![
                MemberIdentity::default().with_member_id(s(&m.member_id))
            ]);
        } else {
            req = req.with_member_id(s(&m.member_id));
        }
        let (_, resp) = conn.send(&req, Duration::ZERO)?;
        check(resp.error_code, None, || {
            format!("leave group {:?}", m.group)
        })?;
        for member in resp.members {
            check(member.error_code, None, || {
                format!("leave group {:?}", m.group)
            })?;
        }
        Ok(())
    }
}

/// Whether a group error code means "join the group again": a rebalance is under way, or this
/// member's generation or id is no longer current.
pub fn rejoin_needed(code: i16) -> bool {
    matches!(
        code,
        REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID
    )
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

    #[test]
    fn range_gives_consecutive_runs_and_extras_to_the_first_members() {
        let parts = BTreeMap::from([("t".to_owned(), vec![4, 3, 2, 1, 0])]);
        let got = range_assign(&subs(&[("b", &["t"]), ("a", &["t"])]), &parts);
        let t = |ps: &[i32]| ps.iter().map(|p| ("t".to_owned(), *p)).collect::<Vec<_>>();
        assert_eq!(got["a"], t(&[0, 1, 2]));
        assert_eq!(got["b"], t(&[3, 4]));
    }

    #[test]
    fn range_assigns_only_subscribed_topics_and_keeps_idle_members() {
        let parts = BTreeMap::from([("t".to_owned(), vec![0]), ("u".to_owned(), vec![0, 1])]);
        let got = range_assign(
            &subs(&[("a", &["t"]), ("b", &["t", "u"]), ("c", &["t"])]),
            &parts,
        );
        assert_eq!(got["a"], [("t".to_owned(), 0)]);
        assert_eq!(got["b"], [("u".to_owned(), 0), ("u".to_owned(), 1)]);
        assert!(got["c"].is_empty());
    }

    #[test]
    fn payloads_round_trip_with_their_version_prefix() {
        let topics = vec!["a".to_owned(), "b".to_owned()];
        let bytes = encode_subscription(&topics).unwrap();
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(decode_subscription(bytes).unwrap(), topics);
        let parts = vec![
            ("a".to_owned(), 1),
            ("a".to_owned(), 0),
            ("b".to_owned(), 2),
        ];
        let mut sorted = parts.clone();
        sorted.sort();
        assert_eq!(
            decode_assignment(encode_assignment(&parts).unwrap()).unwrap(),
            sorted
        );
        assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
        assert!(decode_assignment(Bytes::from_static(&[0])).is_err());
    }

    /// A newer version than this client knows decodes as the newest it knows.
    #[test]
    fn newer_payload_versions_decode_as_the_newest_known() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![7]),
        ]);
        let mut buf = BytesMut::new();
        buf.put_i16(ConsumerProtocolAssignment::VERSIONS.max + 1);
        a.encode(&mut buf, ConsumerProtocolAssignment::VERSIONS.max)
            .unwrap();
        assert_eq!(
            decode_assignment(buf.freeze()).unwrap(),
            [("t".to_owned(), 7)]
        );
    }
}

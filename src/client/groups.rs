//! Consumer-group administration and offsets: FindCoordinator, ListGroups, DescribeGroups,
//! DeleteGroups, OffsetFetch and OffsetCommit.
//!
//! Every group request goes to the group's coordinator, found with FindCoordinator, as Kafka's
//! admin client does; on a one-broker cluster that is the bootstrap connection.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest,
    OffsetCommitRequest, OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::topic_name;
use super::error::{check, ClientError, Result};
use super::membership::decode_assignment;
use super::Client;

/// FindCoordinator `key_type` of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// The first FindCoordinator version that looks up a batch of keys.
const FIND_COORDINATOR_BATCHED: i16 = 4;
/// The first OffsetFetch version that asks for a batch of groups.
const OFFSET_FETCH_BATCHED: i16 = 8;
/// The first ListGroups version with a states filter.
const LIST_GROUPS_STATES_FILTER: i16 = 4;

/// A committed offset per `(topic, partition)`.
pub type Committed = BTreeMap<(String, i32), i64>;

/// One group as ListGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// Its state (`Empty`, `Stable`, ...); empty when the broker's version predates states.
    pub state: String,
    /// Its protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
}

/// One member of a described group.
#[derive(Debug, Clone)]
pub struct GroupMember {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// The client id it connected with.
    pub client_id: String,
    /// The host it connected from (Kafka prints it with a leading `/`).
    pub client_host: String,
    /// The partitions assigned to it, `(topic, partition)`, when its assignment decodes as the
    /// consumer protocol's.
    pub assignment: Vec<(String, i32)>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// Its state; `Dead` for a group that does not exist.
    pub state: String,
    /// The members with their assignments.
    pub members: Vec<GroupMember>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn group_id(v: &str) -> GroupId {
    GroupId(s(v))
}

impl Client {
    /// The node id of `group`'s coordinator.
    pub fn coordinator(&mut self, group: &str) -> Result<i32> {
        self.find_coordinator(KEY_TYPE_GROUP, group, "group")
    }

    /// The coordinator of `key` of FindCoordinator's `key_type` (`what` names it in errors).
    pub(super) fn find_coordinator(&mut self, key_type: i8, key: &str, what: &str) -> Result<i32> {
        let conn = self.any()?;
        let version = conn.version::<FindCoordinatorRequest>()?;
        let mut req = FindCoordinatorRequest::default().with_key_type(key_type);
        if version >= FIND_COORDINATOR_BATCHED {
            req = req.with_coordinator_keys(vec![s(key)]);
        } else {
            req = req.with_key(s(key));
        }
        let (_, resp) = conn.send(&req, Duration::ZERO)?;
        let context = || format!("find the coordinator of {what} {key:?}");
        if version >= FIND_COORDINATOR_BATCHED {
            let c = resp.coordinators.first().ok_or_else(|| {
                ClientError::Protocol("FindCoordinator answered no coordinator".into())
            })?;
            check(c.error_code, c.error_message.as_deref(), context)?;
            return Ok(c.node_id.0);
        }
        check(resp.error_code, resp.error_message.as_deref(), context)?;
        Ok(resp.node_id.0)
    }

    /// Every group the cluster knows, optionally only those in `states` (case-insensitive).
    ///
    /// Each broker lists only the groups it coordinates, so every broker is asked.
    pub fn list_groups(&mut self, states: &[String]) -> Result<Vec<GroupListing>> {
        self.metadata(Some(&[]), false)?;
        let mut nodes: Vec<i32> = self.brokers.keys().copied().collect();
        if nodes.len() <= 1 {
            nodes = vec![super::BOOTSTRAP_NODE];
        }
        let mut out = Vec::new();
        for node in nodes {
            let conn = self.node(node)?;
            let mut req = ListGroupsRequest::default();
            if conn.version::<ListGroupsRequest>()? >= LIST_GROUPS_STATES_FILTER {
                req = req.with_states_filter(states.iter().map(|st| s(st)).collect());
            }
            let (_, resp) = conn.send(&req, Duration::ZERO)?;
            check(resp.error_code, None, || "list groups".to_owned())?;
            out.extend(resp.groups.into_iter().map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
            }));
        }
        // An old broker ignores the filter; apply it here too.
        out.retain(|g| {
            states.is_empty()
                || g.state.is_empty()
                || states.iter().any(|st| st.eq_ignore_ascii_case(&g.state))
        });
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// Describes `group`: its state and its members with their assigned partitions.
    pub fn describe_group(&mut self, group: &str) -> Result<GroupDescription> {
        let node = self.coordinator(group)?;
        let req = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let (_, resp) = self.node(node)?.send(&req, Duration::ZERO)?;
        let g = resp
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("DescribeGroups answered no group".into()))?;
        check(g.error_code, g.error_message.as_deref(), || {
            format!("describe group {group:?}")
        })?;
        let consumer = g.protocol_type.is_empty() || &*g.protocol_type == "consumer";
        let members = g
            .members
            .into_iter()
            .map(|m| GroupMember {
                member_id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment: if consumer {
                    decode_assignment(m.member_assignment).unwrap_or_default()
                } else {
                    Vec::new()
                },
            })
            .collect();
        Ok(GroupDescription {
            group_id: group.to_owned(),
            state: g.group_state.to_string(),
            members,
        })
    }

    /// Deletes `group` and its committed offsets; only an Empty group can be deleted.
    pub fn delete_group(&mut self, group: &str) -> Result<()> {
        let node = self.coordinator(group)?;
        let req = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
        let (_, resp) = self.node(node)?.send(&req, Duration::ZERO)?;
        let r = resp
            .results
            .first()
            .ok_or_else(|| ClientError::Protocol("DeleteGroups answered no result".into()))?;
        check(r.error_code, None, || format!("delete group {group:?}"))
    }

    /// The offsets `group` has committed: all of them, or those of `topic` only.
    ///
    /// Partitions without a commit are left out (the broker answers `-1` for them).
    pub fn committed_offsets(&mut self, group: &str, topic: Option<&str>) -> Result<Committed> {
        let node = self.coordinator(group)?;
        let conn = self.node(node)?;
        let version = conn.version::<OffsetFetchRequest>()?;
        let req = offset_fetch_request(group, version);
        let (_, resp) = conn.send(&req, Duration::ZERO)?;
        let mut committed = committed_from(resp, version, group)?;
        committed.retain(|(t, _), _| topic.is_none_or(|want| want == t));
        Ok(committed)
    }

    /// Commits `offsets` for `group`. A standalone commit (from no member: `generation` -1,
    /// empty `member_id`) is accepted only while the group has no members.
    pub fn commit_offsets(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        offsets: &Committed,
    ) -> Result<()> {
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            topics.entry(topic).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset),
            );
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member_id))
            .with_retention_time_ms(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let node = self.coordinator(group)?;
        let (_, resp) = self.node(node)?.send(&req, Duration::ZERO)?;
        for t in resp.topics {
            for p in t.partitions {
                check(p.error_code, None, || {
                    format!(
                        "commit offsets of group {group:?} for {}-{}",
                        t.name.0, p.partition_index
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// An OffsetFetch request for all of `group`'s offsets, in the shape `version` has: batched by
/// group from v8.
///
/// A topic filter would need its partition indexes listed, which would cost a Metadata
/// round trip; the group's commits are few, so callers filter the answer instead.
fn offset_fetch_request(group: &str, version: i16) -> OffsetFetchRequest {
    if version >= OFFSET_FETCH_BATCHED {
        let topics: Option<Vec<OffsetFetchRequestTopics>> = None;
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(group_id(group))
            .with_topics(topics)])
    } else {
        let topics: Option<Vec<OffsetFetchRequestTopic>> = None;
        OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(topics)
    }
}

/// The committed offsets in an OffsetFetch response, whichever shape `version` gave it.
fn committed_from(resp: OffsetFetchResponse, version: i16, group: &str) -> Result<Committed> {
    let context = || format!("fetch the offsets of group {group:?}");
    let mut out = Committed::new();
    if version >= OFFSET_FETCH_BATCHED {
        for g in resp.groups {
            check(g.error_code, None, context)?;
            for t in g.topics {
                for p in t.partitions {
                    check(p.error_code, None, context)?;
                    if p.committed_offset >= 0 {
                        out.insert(
                            (t.name.0.to_string(), p.partition_index),
                            p.committed_offset,
                        );
                    }
                }
            }
        }
        return Ok(out);
    }
    check(resp.error_code, None, context)?;
    for t in resp.topics {
        for p in t.partitions {
            check(p.error_code, None, context)?;
            if p.committed_offset >= 0 {
                out.insert(
                    (t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(out)
}

//! Membership of a consumer group with Kafka's classic protocol: JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup over this client's blocking connections. What is sent (the requests,
//! the consumer protocol's payloads, the range assignor the elected leader runs) is built by
//! [`crate::protocol::consumer_group`], which loadgen's members share.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, SyncGroupRequest,
};

use super::error::{check, ClientError, Result};
use super::Client;
use crate::protocol::consumer_group::{self as cg, Assignment, Member};

pub use crate::protocol::consumer_group::{
    rejoin_needed, ILLEGAL_GENERATION, MEMBER_ID_REQUIRED, RANGE_ASSIGNOR, REBALANCE_IN_PROGRESS,
    UNKNOWN_MEMBER_ID,
};

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

/// Decodes a version-prefixed assignment into sorted `(topic, partition)`s. An empty payload is
/// the empty assignment (a member that joined but was given nothing, or has not synced yet).
pub fn decode_assignment(bytes: Bytes) -> Result<Vec<(String, i32)>> {
    Ok(flatten(
        cg::decode_assignment(bytes).map_err(ClientError::Protocol)?,
    ))
}

/// An assignment as sorted `(topic, partition)`s.
fn flatten(assignment: Assignment) -> Vec<(String, i32)> {
    let mut out: Vec<(String, i32)> = assignment
        .into_iter()
        .flat_map(|(topic, parts)| parts.into_iter().map(move |p| (topic.clone(), p)))
        .collect();
    out.sort();
    out
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
                BTreeMap::new()
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
        let node = self.coordinator(group)?;
        let conn = self.node(node)?;
        let req = cg::join_group(
            group,
            member_id,
            topics,
            timeouts.session_timeout_ms,
            timeouts.rebalance_timeout_ms,
            conn.version::<JoinGroupRequest>()?,
        )
        .map_err(ClientError::Protocol)?;
        // The coordinator holds a JoinGroup until the rebalance completes or times out.
        let wait = Duration::from_millis(timeouts.rebalance_timeout_ms.max(0) as u64);
        let (_, resp) = conn.send(&req, wait)?;
        Ok(resp)
    }

    /// The leader's part of a rebalance: every member's subscription, the partitions of the
    /// subscribed topics, and the range assignment of one to the other.
    fn leader_assign(
        &mut self,
        joined: &JoinGroupResponse,
    ) -> Result<BTreeMap<String, Assignment>> {
        let mut subscriptions = BTreeMap::new();
        for m in &joined.members {
            let topics =
                cg::decode_subscription(m.metadata.clone()).map_err(ClientError::Protocol)?;
            subscriptions.insert(m.member_id.to_string(), topics);
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
        Ok(cg::range_assign(&subscriptions, &partitions))
    }

    fn sync_group(
        &mut self,
        group: &str,
        joined: &JoinGroupResponse,
        assignments: BTreeMap<String, Assignment>,
    ) -> Result<Vec<(String, i32)>> {
        let node = self.coordinator(group)?;
        let conn = self.node(node)?;
        let member = Member {
            group,
            member_id: &joined.member_id,
            generation: joined.generation_id,
        };
        let version = conn.version::<SyncGroupRequest>()?;
        let req = cg::sync_group(&member, &assignments, version).map_err(ClientError::Protocol)?;
        let (_, resp) = conn.send(&req, Duration::ZERO)?;
        check(resp.error_code, None, || format!("sync group {group:?}"))?;
        decode_assignment(resp.assignment)
    }

    /// Tells the coordinator this member is alive. An error whose code satisfies
    /// [`rejoin_needed`] means a rebalance started or the membership was lost.
    pub fn heartbeat(&mut self, m: &Membership) -> Result<()> {
        let req = cg::heartbeat(&m.member());
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
        let req = cg::leave_group(&m.member(), conn.version::<LeaveGroupRequest>()?);
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

impl Membership {
    fn member(&self) -> Member<'_> {
        Member {
            group: &self.group,
            member_id: &self.member_id,
            generation: self.generation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    /// The CLI's view of an assignment: `(topic, partition)` pairs, sorted.
    #[test]
    fn assignments_decode_sorted() {
        let a = Assignment::from([("b".to_owned(), vec![2]), ("a".to_owned(), vec![1, 0])]);
        let bytes = cg::encode_assignment(&a).unwrap();
        let want = [
            ("a".to_owned(), 0),
            ("a".to_owned(), 1),
            ("b".to_owned(), 2),
        ];
        assert_eq!(decode_assignment(bytes).unwrap(), want);
        assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
        let mut short = BytesMut::new();
        short.put_u8(0);
        assert!(decode_assignment(short.freeze()).is_err());
    }
}

//! CreateTopics, including `validate_only` and manual replica assignments
//! (`kafka-topics.sh --replica-assignment`): onto any registered broker of a cluster, or onto
//! this node alone.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, respond, Outcome, Session};
use crate::admin::{self, NewTopic};
use crate::error::{ApiError, ErrorCode};
use crate::metadata::{self, validate_topic_name, MetadataImage, TopicMeta};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;
use crate::util::join_all;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: CreateTopicsRequest = req.decode_body()?;
    let image = shard.metadata();
    let node = shard.config.node_id;
    let clustered = shard.cluster.is_some();
    let registered = |b: i32| match clustered {
        true => image.brokers.contains_key(&b),
        false => b == node,
    };
    let mut new = Vec::new();
    let mut early: Vec<Option<ApiError>> = Vec::new();
    for t in &body.topics {
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect();
        let name = t.name.0.to_string();
        let mut topic = NewTopic {
            name: name.clone(),
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            configs,
            assignment: None,
        };
        let mut refused = internal_topic_refusal(&image, &name);
        if refused.is_none() && !t.assignments.is_empty() {
            match check_assignment(t, &registered) {
                Ok(assignment) => {
                    topic.partitions = assignment.len() as i32;
                    topic.replication_factor = assignment[0].len() as i16;
                    topic.assignment = Some(assignment);
                }
                // Kafka checks the name and whether the topic exists before the assignment;
                // those answers come from `admin::create_topics`.
                Err(_) if validate_topic_name(&name).is_err() || image.topic(&name).is_some() => {}
                Err(e) => refused = Some(e),
            }
        }
        early.push(refused);
        new.push(topic);
    }
    let to_create: Vec<NewTopic> = new
        .iter()
        .zip(&early)
        .filter(|(_, e)| e.is_none())
        .map(|(n, _)| n.clone())
        .collect();
    let mut results = admin::create_topics(shard, to_create, body.validate_only).await;
    if !body.validate_only {
        for r in &mut results {
            let Ok(meta) = r.as_ref().map(Arc::clone) else {
                continue;
            };
            let unopened = unopened_partitions(shard, &meta).await;
            if !unopened.is_empty() {
                *r = Err(ApiError::new(
                    ErrorCode::KafkaStorageError,
                    format!(
                        "topic '{}' was created but partitions {unopened:?} could not be opened \
                         in the log directory (see the broker log); they stay offline",
                        meta.name
                    ),
                ));
            }
        }
    }
    let mut created = results.into_iter();
    let topics = new
        .iter()
        .zip(early)
        .map(|(n, e)| {
            let outcome = match e {
                Some(err) => Err(err),
                None => created.next().expect("one result per topic"),
            };
            let r = CreatableTopicResult::default().with_name(kafka_protocol::messages::TopicName(
                StrBytes::from_string(n.name.clone()),
            ));
            match outcome {
                Ok(meta) => r
                    .with_topic_id(meta.id)
                    .with_num_partitions(meta.partitions)
                    .with_replication_factor(
                        meta.states.first().map_or(1, |s| s.replicas.len() as i16),
                    ),
                Err(ApiError { code, message: msg }) => {
                    log_client_error(req, &format!("create topic {}", n.name), code, &msg);
                    r.with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_string(msg)))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                }
            }
        })
        .collect();
    respond(req, &CreateTopicsResponse::default().with_topics(topics))
}

/// The partitions of a topic just created that their owner shard could not open (a file where
/// the partition directory should be, no file descriptors left, a failing disk). The topic
/// exists in the metadata all the same and those partitions stay offline
/// (NOT_LEADER_OR_FOLLOWER), but the client must not be told that the creation succeeded.
/// A partition that is absent because a concurrent DeleteTopics removed its topic (or a
/// re-creation replaced it) is not a failure.
async fn unopened_partitions(shard: &Rc<Shard>, meta: &TopicMeta) -> Vec<i32> {
    let mut by_owner: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
    for p in 0..meta.partitions {
        by_owner.entry(shard.owner(meta, p)).or_default().push(p);
    }
    let calls = by_owner
        .into_iter()
        .map(|(owner, partitions)| {
            let (name, id) = (meta.name.clone(), meta.id);
            shard.router.invoke_on(shard, owner, move |s| async move {
                let image = s.metadata();
                let Some(meta) = image.topic(&name).filter(|m| m.id == id) else {
                    return Vec::new();
                };
                // In a cluster only the partitions placed on this broker open here.
                partitions
                    .into_iter()
                    .filter(|&p| s.hosts(meta, p))
                    .filter(|&p| s.partition(&name, p).is_none_or(|o| o.topic_id != id))
                    .collect::<Vec<i32>>()
            })
        })
        .collect();
    let mut unopened: Vec<i32> = join_all(calls).await.into_iter().flatten().collect();
    unopened.sort_unstable();
    unopened
}

/// Internal topics are made by the broker with the layout its coordinators rely on (partition
/// count, `cleanup.policy=compact`); a client may not create one by hand. Kafka refuses
/// `__cluster_metadata` with INVALID_REQUEST ("Creation of internal topic ... is
/// prohibited"); the other internal names get the same answer here (Kafka would create them
/// with default settings, which would break their coordinator), unless the topic already
/// exists, which gets TOPIC_ALREADY_EXISTS as for any other name.
fn internal_topic_refusal(image: &MetadataImage, name: &str) -> Option<ApiError> {
    (metadata::is_internal_topic(name) && image.topic(name).is_none()).then(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("Creation of internal topic {name} is prohibited."),
        )
    })
}

/// Checks a manual replica assignment the way Kafka's controller does
/// (`ReplicationControlManager::createTopic`) and returns each partition's replicas in partition
/// order; `registered` says which brokers exist (on a single node, only itself). Kafka
/// requires `num_partitions` and `replication_factor` to be -1 when an assignment is given
/// (INVALID_REQUEST); every other fault is INVALID_REPLICA_ASSIGNMENT.
fn check_assignment(
    t: &CreatableTopic,
    registered: &dyn Fn(i32) -> bool,
) -> Result<Vec<Vec<i32>>, ApiError> {
    let invalid = |m: String| ApiError::new(ErrorCode::InvalidReplicaAssignment, m);
    if t.replication_factor != -1 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "A manual partition assignment was specified, but replication factor was not set to -1.",
        ));
    }
    if t.num_partitions != -1 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "A manual partition assignment was specified, but numPartitions was not set to -1.",
        ));
    }
    let mut by_partition: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for a in &t.assignments {
        let p = a.partition_index;
        let brokers: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
        if by_partition.insert(p, brokers.clone()).is_some() {
            return Err(invalid(format!(
                "Found multiple manual partition assignments for partition {p}"
            )));
        }
        if brokers.is_empty() {
            return Err(invalid(
                "The manual partition assignment includes an empty replica list.".into(),
            ));
        }
        if let Some(b) = brokers.iter().find(|&&b| !registered(b)) {
            return Err(invalid(format!(
                "The manual partition assignment includes broker {b}, but no such broker is registered."
            )));
        }
        if let Some((_, b)) = brokers
            .iter()
            .enumerate()
            .find(|(i, b)| brokers[..*i].contains(b))
        {
            return Err(invalid(format!(
                "The manual partition assignment includes the broker {b} more than once."
            )));
        }
    }
    // Partition ids must be 0..n-1: the map holds n distinct ids, so its last is n-1 exactly
    // when its first is 0 and none is missing.
    let n = by_partition.len() as i32;
    if by_partition.keys().next() != Some(&0) || by_partition.keys().last() != Some(&(n - 1)) {
        return Err(invalid(
            "partitions should be a consecutive 0-based integer sequence".into(),
        ));
    }
    let rf = by_partition[&0].len();
    if let Some(r) = by_partition.values().find(|r| r.len() != rf) {
        return Err(invalid(format!(
            "The manual partition assignment includes a partition with {} replica(s), but this \
             is inconsistent with previous partitions, which have {rf} replicas.",
            r.len()
        )));
    }
    Ok(by_partition.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
    use kafka_protocol::messages::BrokerId;

    fn topic(assignment: &[(i32, &[i32])], partitions: i32, rf: i16) -> CreatableTopic {
        CreatableTopic::default()
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_assignments(
                assignment
                    .iter()
                    .map(|(p, b)| {
                        CreatableReplicaAssignment::default()
                            .with_partition_index(*p)
                            .with_broker_ids(b.iter().map(|b| BrokerId(*b)).collect())
                    })
                    .collect(),
            )
    }

    #[test]
    fn a_valid_assignment_on_this_node_gives_its_partition_count() {
        let only1 = |b: i32| b == 1;
        assert_eq!(
            check_assignment(&topic(&[(1, &[1]), (0, &[1])], -1, -1), &only1),
            Ok(vec![vec![1], vec![1]])
        );
        // In a cluster: any registered brokers, the lists in partition order.
        let three = |b: i32| (1..=3).contains(&b);
        assert_eq!(
            check_assignment(&topic(&[(1, &[3, 1]), (0, &[2, 3])], -1, -1), &three),
            Ok(vec![vec![2, 3], vec![3, 1]])
        );
        let code = check_assignment(&topic(&[(0, &[1, 2]), (1, &[3])], -1, -1), &three)
            .unwrap_err()
            .code;
        assert_eq!(
            code,
            ErrorCode::InvalidReplicaAssignment,
            "replica counts differ"
        );
    }

    #[test]
    fn invalid_assignments_get_kafkas_codes() {
        let code = |t: CreatableTopic| check_assignment(&t, &|b| b == 1).unwrap_err().code;
        let bad = ErrorCode::InvalidReplicaAssignment;
        assert_eq!(code(topic(&[(0, &[1])], 1, -1)), ErrorCode::InvalidRequest);
        assert_eq!(code(topic(&[(0, &[1])], -1, 1)), ErrorCode::InvalidRequest);
        assert_eq!(code(topic(&[(0, &[2])], -1, -1)), bad, "unknown broker");
        assert_eq!(code(topic(&[(0, &[])], -1, -1)), bad, "no replicas");
        assert_eq!(code(topic(&[(0, &[1, 1])], -1, -1)), bad, "broker twice");
        assert_eq!(
            code(topic(&[(0, &[1]), (0, &[1])], -1, -1)),
            bad,
            "partition twice"
        );
        assert_eq!(code(topic(&[(0, &[1]), (2, &[1])], -1, -1)), bad, "gap");
        assert_eq!(code(topic(&[(1, &[1])], -1, -1)), bad, "not from 0");
        assert_eq!(
            code(topic(&[(-1, &[1]), (0, &[1])], -1, -1)),
            bad,
            "negative"
        );
    }
}

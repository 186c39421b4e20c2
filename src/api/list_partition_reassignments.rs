//! ListPartitionReassignments (`kafka-reassign-partitions.sh --verify` and `--list`,
//! `Admin.listPartitionReassignments`): the reassignments in progress, read from this broker's
//! image. Partitions without one, and names that do not exist, are left out, as Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{respond, Outcome, Session};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: ListPartitionReassignmentsRequest = req.decode_body()?;
    let image = shard.metadata();
    // Null asks for every topic and partition.
    let asked: Vec<(_, Option<&[i32]>)> = match &body.topics {
        Some(topics) => topics
            .iter()
            .filter_map(|t| Some((image.topic(&t.name.0)?, Some(&t.partition_indexes[..]))))
            .collect(),
        None => image.topics.values().map(|t| (t, None)).collect(),
    };
    let ids = |list: &[i32]| list.iter().map(|&b| BrokerId(b)).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for (meta, only) in asked {
        let partitions: Vec<OngoingPartitionReassignment> = (0..)
            .zip(&meta.states)
            .filter(|(i, s)| s.is_reassigning() && only.is_none_or(|o| o.contains(i)))
            .map(|(i, s)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(i)
                    .with_replicas(ids(&s.replicas))
                    .with_adding_replicas(ids(&s.adding))
                    .with_removing_replicas(ids(&s.removing))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(meta.name.to_string())))
                    .with_partitions(partitions),
            );
        }
    }
    respond(
        req,
        &ListPartitionReassignmentsResponse::default().with_topics(topics),
    )
}

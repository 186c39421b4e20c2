//! AlterPartitionReassignments (what `kafka-reassign-partitions.sh --execute` / `--cancel` and
//! `Admin.alterPartitionReassignments` send): moves partitions to new replica lists, or cancels
//! a move in progress, decided on the metadata shard against the current image
//! (`admin::alter_reassignments`, `quorum::reassignment`). The answer comes once the change is
//! committed; the move itself completes when the new replicas have caught up
//! (ListPartitionReassignments shows it until then).

use std::rc::Rc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, respond, Outcome, Session};
use crate::admin;
use crate::error::ApiError;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: AlterPartitionReassignmentsRequest = req.decode_body()?;
    let moves: Vec<(String, i32, Option<Vec<i32>>)> = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let target = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
                (t.name.0.to_string(), p.partition_index, target)
            })
        })
        .collect();
    let outcomes =
        admin::alter_reassignments(shard, moves.clone(), body.allow_replication_factor_change)
            .await;
    let mut topics: Vec<ReassignableTopicResponse> = Vec::new();
    for ((topic, partition, _), outcome) in moves.into_iter().zip(outcomes) {
        let mut r = ReassignablePartitionResponse::default().with_partition_index(partition);
        if let Err(ApiError { code, message }) = outcome {
            log_client_error(
                req,
                &format!("reassign {topic}-{partition}"),
                code,
                &message,
            );
            r = r
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message)));
        }
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(r),
            None => topics.push(
                ReassignableTopicResponse::default()
                    .with_name(kafka_protocol::messages::TopicName(StrBytes::from_string(
                        topic,
                    )))
                    .with_partitions(vec![r]),
            ),
        }
    }
    respond(
        req,
        &AlterPartitionReassignmentsResponse::default()
            .with_allow_replication_factor_change(body.allow_replication_factor_change)
            .with_responses(topics),
    )
}

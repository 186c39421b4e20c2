//! ElectLeaders (what `kafka-leader-election.sh` and `Admin.electLeaders` send): a preferred or
//! unclean leader election per partition, decided on the metadata shard against the current
//! image and committed like any metadata change (`admin::elect_leaders`).

use std::rc::Rc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, respond, Outcome, Session};
use crate::admin;
use crate::error::{ApiError, ErrorCode};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

/// Kafka's `ElectionType`: 0 preferred, 1 unclean.
const UNCLEAN: i8 = 1;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: ElectLeadersRequest = req.decode_body()?;
    if body.election_type != 0 && body.election_type != UNCLEAN {
        return respond(
            req,
            &ElectLeadersResponse::default().with_error_code(ErrorCode::InvalidRequest.code()),
        );
    }
    // Null asks for every partition; Kafka then reports only the elections it made or could
    // not make, leaving out the partitions that need none.
    let every = body.topic_partitions.is_none();
    let asked: Vec<(String, i32)> = match &body.topic_partitions {
        Some(topics) => topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.0.to_string(), p)))
            .collect(),
        None => {
            let image = shard.metadata();
            image
                .topics
                .values()
                .flat_map(|t| (0..t.partitions).map(|p| (t.name.to_string(), p)))
                .collect()
        }
    };
    let outcomes = admin::elect_leaders(shard, asked.clone(), body.election_type == UNCLEAN).await;
    let mut results: Vec<ReplicaElectionResult> = Vec::new();
    for ((topic, partition), outcome) in asked.into_iter().zip(outcomes) {
        let mut r = PartitionResult::default().with_partition_id(partition);
        if let Err(ApiError { code, message }) = outcome {
            if every && code == ErrorCode::ElectionNotNeeded {
                continue;
            }
            if code != ErrorCode::ElectionNotNeeded {
                log_client_error(
                    req,
                    &format!("elect leader of {topic}-{partition}"),
                    code,
                    &message,
                );
            }
            r = r
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message)));
        }
        match results.iter_mut().find(|t| t.topic.0.as_str() == topic) {
            Some(t) => t.partition_result.push(r),
            None => results.push(
                ReplicaElectionResult::default()
                    .with_topic(kafka_protocol::messages::TopicName(StrBytes::from_string(
                        topic,
                    )))
                    .with_partition_result(vec![r]),
            ),
        }
    }
    respond(
        req,
        &ElectLeadersResponse::default().with_replica_election_results(results),
    )
}

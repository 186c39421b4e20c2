//! CreatePartitions, including `validate_only`. New partitions land on the shards that
//! `shard_for` names, opened there when the new metadata image is installed.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, respond, Outcome, Session};
use crate::admin::{self, PartitionsWanted};
use crate::error::{ApiError, ErrorCode};
use crate::metadata::is_internal_topic;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: CreatePartitionsRequest = req.decode_body()?;
    let node = shard.config.node_id;
    let image = shard.metadata();
    // A manual assignment may name any registered broker of a cluster, or only this node; a
    // broker at most once per partition. Counts are checked against the topic on the
    // metadata shard (`admin::create_partitions`).
    let registered = |b: i32| match shard.cluster.is_some() {
        true => image.brokers.contains_key(&b),
        false => b == node,
    };
    let mut early = Vec::with_capacity(body.topics.len());
    let mut counts = Vec::new();
    for t in &body.topics {
        let assignment: Option<Vec<Vec<i32>>> = t.assignments.as_ref().map(|a| {
            a.iter()
                .map(|p| p.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let bad_assignment = assignment.as_ref().and_then(|a| {
            a.iter().flatten().find(|&&b| !registered(b)).map(|b| {
                format!("The manual partition assignment includes broker {b}, but no such broker is registered.")
            }).or_else(|| {
                a.iter()
                    .find(|r| r.is_empty() || r.iter().enumerate().any(|(i, b)| r[..i].contains(b)))
                    .map(|r| format!("The manual partition assignment {r:?} is empty or names a broker more than once."))
            })
        });
        let name = t.name.0.as_str();
        early.push(if is_internal_topic(name) {
            // The group coordinator maps a group to `hash % partition count`: more partitions
            // would move every group's committed offsets out of reach. Kafka 4's controller
            // does not check this; the refusal matches DeleteTopics of an internal topic.
            Some(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("Adding partitions to internal topic {name} is prohibited."),
            ))
        } else if let Some(why) = bad_assignment {
            Some(ApiError::new(ErrorCode::InvalidReplicaAssignment, why))
        } else {
            counts.push(PartitionsWanted {
                name: t.name.0.to_string(),
                count: t.count,
                assignment,
            });
            None
        });
    }
    let mut done = admin::create_partitions(shard, counts, body.validate_only)
        .await
        .into_iter();
    let results = body
        .topics
        .iter()
        .zip(early)
        .map(|(t, e)| {
            let outcome = match e {
                Some(err) => Err(err),
                None => done.next().expect("one result per topic"),
            };
            let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            match outcome {
                Ok(()) => r,
                Err(ApiError { code, message: msg }) => {
                    let what = format!("create partitions of {}", t.name.0.as_str());
                    log_client_error(req, &what, code, &msg);
                    r.with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_string(msg)))
                }
            }
        })
        .collect();
    respond(
        req,
        &CreatePartitionsResponse::default().with_results(results),
    )
}

//! DeleteTopics, by name (v1-5) or by name or id (v6).

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, respond, Outcome, Session};
use crate::admin;
use crate::error::{ApiError, ErrorCode};
use crate::metadata::is_internal_topic;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: DeleteTopicsRequest = req.decode_body()?;
    let image = shard.metadata();
    // Each entry: the name to delete, or the error for an id we do not know.
    let wanted: Vec<(Option<String>, uuid::Uuid)> = if req.version() >= 6 {
        body.topics
            .iter()
            .map(|t| match &t.name {
                Some(n) => (Some(n.0.to_string()), t.topic_id),
                None => (
                    image.topic_by_id(t.topic_id).map(|m| m.name.to_string()),
                    t.topic_id,
                ),
            })
            .collect()
    } else {
        body.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let names: Vec<String> = wanted
        .iter()
        .filter_map(|(n, _)| n.clone())
        .filter(|n| !is_internal_topic(n))
        .collect();
    let mut results = admin::delete_topics(shard, names).await.into_iter();
    let responses = wanted
        .into_iter()
        .map(|(name, id)| {
            let outcome = match &name {
                Some(n) if is_internal_topic(n) => Err(internal_topic_refusal(n)),
                Some(_) => results.next().expect("one result per name"),
                None => Err(ApiError::new(
                    ErrorCode::UnknownTopicId,
                    format!("topic id {id} does not exist"),
                )),
            };
            let mut r = DeletableTopicResult::default()
                .with_name(name.map(|n| TopicName(StrBytes::from_string(n))));
            match outcome {
                Ok(meta) => r = r.with_topic_id(meta.id),
                Err(ApiError { code, message: msg }) => {
                    log_client_error(req, "delete topic", code, &msg);
                    r = r.with_error_code(code.code()).with_topic_id(id);
                    if req.version() >= 5 {
                        r = r.with_error_message(Some(StrBytes::from_string(msg)));
                    }
                }
            }
            r
        })
        .collect();
    respond(
        req,
        &DeleteTopicsResponse::default().with_responses(responses),
    )
}

/// An internal topic holds the broker's own state (committed offsets in `__consumer_offsets`):
/// deleting it would silently lose every group's offsets at the next restart. Kafka 4 does
/// not refuse this (neither its controller nor, since it moved to Java, `kafka-topics.sh`);
/// this broker refuses it, as Redpanda does, with the code Kafka gives for the one internal
/// topic its admin APIs do protect (CreateTopics of `__cluster_metadata`): INVALID_REQUEST,
/// with a message.
fn internal_topic_refusal(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("Deletion of internal topic {name} is prohibited."),
    )
}

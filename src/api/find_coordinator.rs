//! FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets` partition
//! (this node, on a single node; spread over the brokers in a cluster), a transactional id's
//! the leader of its `__transaction_state` partition; v0-3 one key, v4+ a batch of keys.
//!
//! librdkafka also reads FindCoordinator's presence in ApiVersions as the sign that the broker
//! takes LZ4 (Kafka 0.8.2 shipped both), so without it librdkafka silently stops compressing
//! with LZ4.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::metadata::BrokerEntry;
use super::{log_client_error, respond, Outcome, Session};
use crate::error::ErrorCode;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

/// `key_type` of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// `key_type` of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Why a key type has no coordinator here, or `None` for a group or a transactional id,
/// which have one. Any other key type gets INVALID_REQUEST, as from a Kafka broker without a
/// share coordinator (type 2) or for a type it does not know.
fn no_coordinator(key_type: i8) -> Option<ErrorCode> {
    match key_type {
        KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => None,
        _ => Some(ErrorCode::InvalidRequest),
    }
}

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: FindCoordinatorRequest = req.decode_body()?;
    let error = no_coordinator(body.key_type);
    let message = format!("no coordinator for key type {}", body.key_type);
    if let Some(code) = error {
        log_client_error(req, "find coordinator", code, &message);
    }
    let keys: Vec<StrBytes> = if req.version() >= 4 {
        body.coordinator_keys.clone()
    } else {
        vec![body.key.clone()]
    };
    let mut found = Vec::with_capacity(keys.len());
    for key in &keys {
        found.push(match error {
            Some(code) => Err((code, message.clone())),
            None => locate(shard, body.key_type, key).await,
        });
    }
    let mut response = FindCoordinatorResponse::default();
    if req.version() >= 4 {
        let coordinators = keys
            .into_iter()
            .zip(found)
            .map(|(key, found)| {
                let c = Coordinator::default().with_key(key);
                match found {
                    Err((code, message)) => c
                        .with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_string(message)))
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                    Ok(b) => c
                        .with_node_id(BrokerId(b.id))
                        .with_host(StrBytes::from_string(b.host))
                        .with_port(b.port),
                }
            })
            .collect();
        response = response.with_coordinators(coordinators);
    } else {
        let found = found.into_iter().next().expect("one key");
        response = match found {
            Err((code, message)) => response
                .with_error_code(code.code())
                // v0 has no error message field.
                .with_error_message((req.version() >= 1).then(|| StrBytes::from_string(message)))
                .with_node_id(BrokerId(-1))
                .with_port(-1),
            Ok(b) => response
                .with_node_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port),
        };
    }
    respond(req, &response)
}

/// The broker coordinating group (or transactional id) `key`, or the error and message to
/// answer.
async fn locate(
    shard: &Rc<Shard>,
    key_type: i8,
    key: &str,
) -> Result<BrokerEntry, (ErrorCode, String)> {
    let node = match key_type {
        KEY_TYPE_TRANSACTION => super::txn_coordinator(shard, key).await.map_err(|code| {
            (
                code,
                format!("no coordinator for transactional id {key} yet"),
            )
        })?,
        _ => super::group_coordinator(shard, key)
            .await
            .map_err(|code| (code, format!("no coordinator for group {key} yet")))?,
    };
    super::metadata::brokers(shard)
        .into_iter()
        .find(|b| b.id == node)
        .ok_or_else(|| {
            (
                ErrorCode::CoordinatorNotAvailable,
                format!("the coordinator of {key}, broker {node}, is not available"),
            )
        })
}

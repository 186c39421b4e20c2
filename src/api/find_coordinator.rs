//! FindCoordinator: this node coordinates every group (v0-3 one key, v4+ a batch of keys).
//!
//! librdkafka also reads FindCoordinator's presence in ApiVersions as the sign that the broker
//! takes LZ4 (Kafka 0.8.2 shipped both), so without it librdkafka silently stops compressing
//! with LZ4.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, respond, Outcome};
use crate::error::ErrorCode;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

/// `key_type` of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;

pub async fn handle(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
    let body: FindCoordinatorRequest = req.decode_body()?;
    let (host, port) = super::metadata::advertised(shard);
    let node = BrokerId(shard.config.node_id);
    // Transactions have no coordinator here yet.
    let error = (body.key_type != KEY_TYPE_GROUP).then_some(ErrorCode::CoordinatorNotAvailable);
    if let Some(code) = error {
        log_client_error(
            req,
            "find coordinator",
            code,
            &format!("key type {}", body.key_type),
        );
    }
    let mut response = FindCoordinatorResponse::default();
    if req.version() >= 4 {
        let coordinators = body
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match error {
                    Some(code) => c
                        .with_error_code(code.code())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                    None => c
                        .with_node_id(node)
                        .with_host(StrBytes::from_string(host.clone()))
                        .with_port(port),
                }
            })
            .collect();
        response = response.with_coordinators(coordinators);
    } else {
        response = match error {
            Some(code) => response
                .with_error_code(code.code())
                .with_node_id(BrokerId(-1))
                .with_port(-1),
            None => response
                .with_node_id(node)
                .with_host(StrBytes::from_string(host))
                .with_port(port),
        };
    }
    respond(req, &response)
}

//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on a topic's overrides or on a
//! broker resource's dynamic configs, including `validate_only`.

use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::alter_configs::apply_edits;
use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{respond, Outcome, Session};
use crate::error::{ApiError, ErrorCode};
use crate::metadata::configs::{AlterOp, ConfigEdit};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: IncrementalAlterConfigsRequest = req.decode_body()?;
    let requested = body
        .resources
        .iter()
        .map(|r| {
            let edit = matches!(r.resource_type, RESOURCE_TOPIC | RESOURCE_BROKER)
                .then(|| resource_ops(r).map(ConfigEdit::Incremental));
            (r.resource_type, r.resource_name.to_string(), edit)
        })
        .collect();
    let outcomes = apply_edits(shard, req, requested, body.validate_only).await;
    let responses = body
        .resources
        .iter()
        .zip(outcomes)
        .map(|(r, outcome)| {
            let resp = AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match outcome {
                Ok(()) => resp,
                Err(ApiError { code, message: msg }) => resp
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(msg))),
            }
        })
        .collect();
    respond(
        req,
        &IncrementalAlterConfigsResponse::default().with_responses(responses),
    )
}

type Ops = Vec<(String, AlterOp, Option<String>)>;

/// The operations of one resource; a duplicate key or unknown operation is INVALID_REQUEST, as
/// in Kafka.
fn resource_ops(
    r: &kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource,
) -> Result<Ops, ApiError> {
    let mut ops: Ops = Vec::with_capacity(r.configs.len());
    for c in &r.configs {
        let name = c.name.to_string();
        if ops.iter().any(|(n, _, _)| *n == name) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("duplicate config key {name}"),
            ));
        }
        let op = AlterOp::from_wire(c.config_operation).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("unknown operation {} for config {name}", c.config_operation),
            )
        })?;
        ops.push((name, op, c.value.as_ref().map(|v| v.to_string())));
    }
    Ok(ops)
}

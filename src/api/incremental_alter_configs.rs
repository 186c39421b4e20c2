//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on a topic's overrides, including
//! `validate_only`. Dynamic broker configs are not supported.

use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::alter_configs::broker_refusal;
use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{log_client_error, respond, Outcome};
use crate::admin;
use crate::error::ErrorCode;
use crate::metadata::configs::{AlterOp, ConfigEdit};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
    let body: IncrementalAlterConfigsRequest = req.decode_body()?;
    let mut early = Vec::with_capacity(body.resources.len());
    let mut edits = Vec::new();
    for r in &body.resources {
        let name = r.resource_name.to_string();
        early.push(match r.resource_type {
            RESOURCE_TOPIC => match topic_ops(r) {
                Ok(ops) => {
                    edits.push((name, ConfigEdit::Incremental(ops)));
                    None
                }
                Err(e) => Some(e),
            },
            RESOURCE_BROKER => Some(broker_refusal(shard, &name)),
            t => Some((
                ErrorCode::InvalidRequest,
                format!("resource type {t} is not supported"),
            )),
        });
    }
    let mut done = admin::alter_topic_configs(shard, edits, body.validate_only)
        .await
        .into_iter();
    let responses = body
        .resources
        .iter()
        .zip(early)
        .map(|(r, e)| {
            let outcome = match e {
                Some(err) => Err(err),
                None => done.next().expect("one result per topic"),
            };
            let resp = AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match outcome {
                Ok(()) => resp,
                Err((code, msg)) => {
                    let what = format!("alter configs of {}", r.resource_name.as_str());
                    log_client_error(req, &what, code, &msg);
                    resp.with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_string(msg)))
                }
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
fn topic_ops(
    r: &kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource,
) -> Result<Ops, (ErrorCode, String)> {
    let mut ops: Ops = Vec::with_capacity(r.configs.len());
    for c in &r.configs {
        let name = c.name.to_string();
        if ops.iter().any(|(n, _, _)| *n == name) {
            return Err((
                ErrorCode::InvalidRequest,
                format!("duplicate config key {name}"),
            ));
        }
        let op = AlterOp::from_wire(c.config_operation).ok_or_else(|| {
            (
                ErrorCode::InvalidRequest,
                format!("unknown operation {} for config {name}", c.config_operation),
            )
        })?;
        ops.push((name, op, c.value.as_ref().map(|v| v.to_string())));
    }
    Ok(ops)
}

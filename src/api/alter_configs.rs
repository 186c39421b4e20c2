//! AlterConfigs: replaces the whole set of a topic's overrides (configs left out return to the
//! broker's defaults), including `validate_only`. Dynamic broker configs are not supported.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{check_broker_name, RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{log_client_error, respond, Outcome};
use crate::admin;
use crate::error::ErrorCode;
use crate::metadata::configs::ConfigEdit;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
    let body: AlterConfigsRequest = req.decode_body()?;
    let mut early = Vec::with_capacity(body.resources.len());
    let mut edits = Vec::new();
    for r in &body.resources {
        let name = r.resource_name.to_string();
        early.push(match r.resource_type {
            RESOURCE_TOPIC => {
                let configs: BTreeMap<String, String> = r
                    .configs
                    .iter()
                    .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                    .collect();
                edits.push((name, ConfigEdit::Replace(configs)));
                None
            }
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
        &AlterConfigsResponse::default().with_responses(responses),
    )
}

/// Broker settings come from the config file only; Kafka answers a change to a setting that is
/// not dynamically updatable with INVALID_REQUEST.
pub fn broker_refusal(shard: &Shard, name: &str) -> (ErrorCode, String) {
    check_broker_name(shard, name).err().unwrap_or((
        ErrorCode::InvalidRequest,
        "broker configs cannot be updated dynamically: set them in the config file".into(),
    ))
}

//! AlterConfigs: replaces the whole set of a topic's overrides, or of a broker resource's
//! dynamic configs (configs left out return to the level below), including `validate_only`.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{check_alterable_broker_name, RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{log_client_error, respond, Outcome, Session};
use crate::admin;
use crate::error::{ApiError, ErrorCode};
use crate::metadata::configs::ConfigEdit;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: AlterConfigsRequest = req.decode_body()?;
    let requested = body
        .resources
        .iter()
        .map(|r| {
            let edit = matches!(r.resource_type, RESOURCE_TOPIC | RESOURCE_BROKER).then(|| {
                let configs: BTreeMap<String, String> = r
                    .configs
                    .iter()
                    .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                    .collect();
                Ok(ConfigEdit::Replace(configs))
            });
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
        &AlterConfigsResponse::default().with_responses(responses),
    )
}

/// One resource of an AlterConfigs or IncrementalAlterConfigs request: its type, its name, and
/// for a topic or broker the edit to make (or why the request cannot say what it wants).
pub type RequestedEdit = (i8, String, Option<Result<ConfigEdit, ApiError>>);

/// What AlterConfigs and IncrementalAlterConfigs share: topic edits are applied in one
/// metadata change, broker edits (dynamic broker configs) in another, and every error is
/// logged. One outcome per resource, in request order.
pub async fn apply_edits(
    shard: &Rc<Shard>,
    req: &Request,
    requested: Vec<RequestedEdit>,
    validate_only: bool,
) -> Vec<admin::ChangeResult> {
    let mut early = Vec::with_capacity(requested.len());
    let mut edits = Vec::new();
    let mut broker_edits = Vec::new();
    for (resource_type, name, edit) in &requested {
        early.push(match (*resource_type, edit) {
            (RESOURCE_TOPIC, Some(Ok(edit))) => {
                edits.push((name.clone(), edit.clone()));
                None
            }
            (RESOURCE_BROKER, Some(Ok(edit))) => match check_alterable_broker_name(shard, name) {
                Ok(()) => {
                    broker_edits.push((name.clone(), edit.clone()));
                    None
                }
                Err(e) => Some(e),
            },
            (RESOURCE_TOPIC | RESOURCE_BROKER, Some(Err(e))) => Some(e.clone()),
            (t, _) => Some(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("resource type {t} is not supported"),
            )),
        });
    }
    let mut done = admin::alter_topic_configs(shard, edits, validate_only)
        .await
        .into_iter();
    let mut broker_done = if broker_edits.is_empty() {
        Vec::new().into_iter()
    } else {
        admin::alter_broker_configs(shard, broker_edits, validate_only)
            .await
            .into_iter()
    };
    requested
        .iter()
        .zip(early)
        .map(|((resource_type, name, _), e)| {
            let outcome = match e {
                Some(err) => Err(err),
                None if *resource_type == RESOURCE_BROKER => {
                    broker_done.next().expect("one result per broker resource")
                }
                None => done.next().expect("one result per topic"),
            };
            if let Err(ApiError { code, message: msg }) = &outcome {
                log_client_error(req, &format!("alter configs of {name}"), *code, msg);
            }
            outcome
        })
        .collect()
}

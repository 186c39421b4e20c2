//! SyncGroup: the leader hands out assignments and every member collects its own; forwarded
//! to the group's coordinating shard (see `crate::group`).

use std::rc::Rc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{log_client_error, opt_string, respond, str_bytes, Outcome, Session};
use crate::error;
use crate::group::{self, SyncArgs};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: SyncGroupRequest = req.decode_body()?;
    let args = SyncArgs {
        group_id: body.group_id.0.to_string(),
        generation: body.generation_id,
        member_id: body.member_id.to_string(),
        instance_id: opt_string(&body.group_instance_id),
        protocol_name: opt_string(&body.protocol_name),
        assignments: body
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let result = match super::group_owner(shard, &args.group_id).await {
        Ok(owner) => {
            shard
                .router
                .invoke_on(shard, owner, move |s| group::sync(s.groups.clone(), args))
                .await
        }
        Err(code) => group::state::SyncResult {
            error: Some(code),
            ..Default::default()
        },
    };
    if let Some(code) = result.error {
        log_client_error(
            req,
            &format!("sync group {}", body.group_id.0),
            code,
            &body.member_id,
        );
    }
    let mut response = SyncGroupResponse::default()
        .with_error_code(error::code(result.error))
        .with_assignment(result.assignment);
    if req.version() >= 5 {
        response = response
            .with_protocol_type(body.protocol_type.clone())
            .with_protocol_name(result.protocol_name.as_deref().map(str_bytes));
    }
    respond(req, &response)
}

//! JoinGroup: a member joins a consumer group (or is told its member id first); forwarded to
//! the group's coordinating shard (see `crate::group`).

use std::rc::Rc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{log_client_error, opt_string, respond, str_bytes, Outcome, Session};
use crate::error::{self, ErrorCode};
use crate::group::{self, JoinArgs};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    session: &Session,
) -> Result<Outcome, RequestError> {
    let body: JoinGroupRequest = req.decode_body()?;
    let args = JoinArgs {
        version: req.version(),
        group_id: body.group_id.0.to_string(),
        member_id: body.member_id.to_string(),
        instance_id: opt_string(&body.group_instance_id),
        protocol_type: body.protocol_type.to_string(),
        protocols: body
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        session_timeout_ms: body.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if req.version() == 0 {
            body.session_timeout_ms
        } else {
            body.rebalance_timeout_ms
        },
        client_id: session.client_id.clone(),
        client_host: session.client_host.clone(),
    };
    let result = match super::group_owner(shard, &args.group_id).await {
        Ok(owner) => {
            shard
                .router
                .invoke_on(shard, owner, move |s| group::join(s.groups.clone(), args))
                .await
        }
        Err(code) => group::state::JoinResult {
            error: Some(code),
            generation: -1,
            ..Default::default()
        },
    };
    if let Some(code) = result.error.filter(|c| *c != ErrorCode::MemberIdRequired) {
        log_client_error(
            req,
            &format!("join group {}", body.group_id.0),
            code,
            &result.member_id,
        );
    }
    let members = result
        .members
        .iter()
        .map(|(id, iid, meta)| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(id))
                .with_group_instance_id(if req.version() >= 5 {
                    iid.as_deref().map(str_bytes)
                } else {
                    None
                })
                .with_metadata(meta.clone())
        })
        .collect();
    let mut response = JoinGroupResponse::default()
        .with_error_code(error::code(result.error))
        .with_generation_id(result.generation)
        .with_leader(str_bytes(&result.leader))
        .with_member_id(str_bytes(&result.member_id))
        .with_members(members);
    response = if req.version() >= 7 {
        response
            .with_protocol_type(Some(str_bytes(&body.protocol_type)))
            .with_protocol_name(result.protocol_name.as_deref().map(str_bytes))
    } else {
        response.with_protocol_name(Some(str_bytes(
            result.protocol_name.as_deref().unwrap_or(""),
        )))
    };
    respond(req, &response)
}

//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: forwarded to the group's coordinating shard
//! (see `crate::group`).

use std::rc::Rc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, respond, Outcome, Session};
use crate::error::{self, ErrorCode};
use crate::group::{self, JoinArgs, SyncArgs};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn opt(v: &Option<StrBytes>) -> Option<String> {
    v.as_ref().map(|x| x.to_string())
}

pub async fn join_group(
    shard: &Rc<Shard>,
    req: &Request,
    session: &Session,
) -> Result<Outcome, RequestError> {
    let body: JoinGroupRequest = req.decode_body()?;
    let args = JoinArgs {
        version: req.version(),
        group_id: body.group_id.0.to_string(),
        member_id: body.member_id.to_string(),
        instance_id: opt(&body.group_instance_id),
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
    let result = match group::coordinator_shard(shard, &args.group_id).await {
        Ok(owner) => {
            shard
                .router
                .invoke_on(shard, owner, move |s| group::join(s, args))
                .await
        }
        Err(code) => group::state::JoinResult {
            error: code.code(),
            generation: -1,
            ..Default::default()
        },
    };
    if let Some(code) =
        ErrorCode::try_from_code(result.error).filter(|c| *c != ErrorCode::MemberIdRequired)
    {
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
                .with_member_id(s(id))
                .with_group_instance_id(if req.version() >= 5 {
                    iid.as_deref().map(s)
                } else {
                    None
                })
                .with_metadata(meta.clone())
        })
        .collect();
    let mut response = JoinGroupResponse::default()
        .with_error_code(result.error)
        .with_generation_id(result.generation)
        .with_leader(s(&result.leader))
        .with_member_id(s(&result.member_id))
        .with_members(members);
    response = if req.version() >= 7 {
        response
            .with_protocol_type(Some(s(&body.protocol_type)))
            .with_protocol_name(result.protocol_name.as_deref().map(s))
    } else {
        response.with_protocol_name(Some(s(result.protocol_name.as_deref().unwrap_or(""))))
    };
    respond(req, &response)
}

pub async fn sync_group(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
    let body: SyncGroupRequest = req.decode_body()?;
    let args = SyncArgs {
        group_id: body.group_id.0.to_string(),
        generation: body.generation_id,
        member_id: body.member_id.to_string(),
        instance_id: opt(&body.group_instance_id),
        protocol_name: opt(&body.protocol_name),
        assignments: body
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let result = match group::coordinator_shard(shard, &args.group_id).await {
        Ok(owner) => {
            shard
                .router
                .invoke_on(shard, owner, move |s| group::sync(s, args))
                .await
        }
        Err(code) => group::state::SyncResult {
            error: code.code(),
            ..Default::default()
        },
    };
    if let Some(code) = ErrorCode::try_from_code(result.error) {
        log_client_error(
            req,
            &format!("sync group {}", body.group_id.0),
            code,
            &body.member_id,
        );
    }
    let mut response = SyncGroupResponse::default()
        .with_error_code(result.error)
        .with_assignment(result.assignment);
    if req.version() >= 5 {
        response = response
            .with_protocol_type(body.protocol_type.clone())
            .with_protocol_name(result.protocol_name.as_deref().map(s));
    }
    respond(req, &response)
}

pub async fn heartbeat(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
    let body: HeartbeatRequest = req.decode_body()?;
    let (gid, mid, iid) = (
        body.group_id.0.to_string(),
        body.member_id.to_string(),
        opt(&body.group_instance_id),
    );
    let generation = body.generation_id;
    let result = match group::coordinator_shard(shard, &gid).await {
        Ok(owner) => {
            let gid = gid.clone();
            shard
                .router
                .invoke_on(shard, owner, move |s| async move {
                    group::heartbeat(&s, &gid, &mid, iid.as_deref(), generation)
                })
                .await
        }
        Err(code) => Some(code),
    };
    if let Some(code) = result.filter(|c| *c != ErrorCode::RebalanceInProgress) {
        log_client_error(req, &format!("heartbeat {gid}"), code, &body.member_id);
    }
    respond(
        req,
        &HeartbeatResponse::default().with_error_code(error::code(result)),
    )
}

pub async fn leave_group(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
    let body: LeaveGroupRequest = req.decode_body()?;
    let gid = body.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if req.version() >= 3 {
        body.members
            .iter()
            .map(|m| (m.member_id.to_string(), opt(&m.group_instance_id)))
            .collect()
    } else {
        vec![(body.member_id.to_string(), None)]
    };
    let asked = members.clone();
    let results = match group::coordinator_shard(shard, &gid).await {
        Ok(owner) => {
            let gid = gid.clone();
            shard
                .router
                .invoke_on(shard, owner, move |s| async move {
                    group::leave(&s, &gid, members).await
                })
                .await
        }
        Err(code) => vec![Some(code); members.len()],
    };
    for code in results.iter().flatten() {
        log_client_error(req, &format!("leave group {gid}"), *code, "");
    }
    let mut response = LeaveGroupResponse::default();
    if req.version() >= 3 {
        response = response.with_members(
            asked
                .iter()
                .zip(&results)
                .map(|((id, iid), r)| {
                    MemberResponse::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(iid.as_deref().map(s))
                        .with_error_code(error::code(*r))
                })
                .collect(),
        );
    } else {
        response = response.with_error_code(error::code(results.first().copied().flatten()));
    }
    respond(req, &response)
}

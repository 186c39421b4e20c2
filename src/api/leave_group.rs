//! LeaveGroup: members leave a consumer group (v0-2 one member, v3+ a batch); forwarded to the
//! group's coordinating shard (see `crate::group`).

use std::rc::Rc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{log_client_error, opt_string, respond, str_bytes, Outcome, Session};
use crate::error;
use crate::group;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: LeaveGroupRequest = req.decode_body()?;
    let gid = body.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if req.version() >= 3 {
        body.members
            .iter()
            .map(|m| (m.member_id.to_string(), opt_string(&m.group_instance_id)))
            .collect()
    } else {
        vec![(body.member_id.to_string(), None)]
    };
    let asked = members.clone();
    let results = match super::group_owner(shard, &gid).await {
        Ok(owner) => {
            let gid = gid.clone();
            shard
                .router
                .invoke_on(shard, owner, move |s| async move {
                    group::leave(&s.groups, &gid, members).await
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
                        .with_member_id(str_bytes(id))
                        .with_group_instance_id(iid.as_deref().map(str_bytes))
                        .with_error_code(error::code(*r))
                })
                .collect(),
        );
    } else {
        response = response.with_error_code(error::code(results.first().copied().flatten()));
    }
    respond(req, &response)
}

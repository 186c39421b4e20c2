//! Heartbeat: a member shows it is alive and learns of a rebalance; forwarded to the group's
//! coordinating shard (see `crate::group`).

use std::rc::Rc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{log_client_error, opt_string, respond, Outcome, Session};
use crate::error::{self, ErrorCode};
use crate::group;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: HeartbeatRequest = req.decode_body()?;
    let (gid, mid, iid) = (
        body.group_id.0.to_string(),
        body.member_id.to_string(),
        opt_string(&body.group_instance_id),
    );
    let generation = body.generation_id;
    let result = match super::group_owner(shard, &gid).await {
        Ok(owner) => {
            let gid = gid.clone();
            shard
                .router
                .invoke_on(shard, owner, move |s| async move {
                    group::heartbeat(&s.groups, &gid, &mid, iid.as_deref(), generation)
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

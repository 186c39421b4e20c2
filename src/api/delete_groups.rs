//! DeleteGroups: deletes empty groups and their committed offsets, each on its coordinating
//! shard.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{log_client_error, respond, Outcome, Session};
use crate::error;
use crate::group::offsets;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: DeleteGroupsRequest = req.decode_body()?;
    let mut results = Vec::new();
    for gid in &body.groups_names {
        let id = gid.0.to_string();
        let outcome = match super::group_owner(shard, &id).await {
            Ok(owner) => {
                let id = id.clone();
                shard
                    .router
                    .invoke_on(shard, owner, move |s| {
                        offsets::delete_group(s.groups.clone(), id)
                    })
                    .await
            }
            Err(code) => Some(code),
        };
        if let Some(code) = outcome {
            log_client_error(req, "delete group", code, &id);
        }
        results.push(
            DeletableGroupResult::default()
                .with_group_id(gid.clone())
                .with_error_code(error::code(outcome)),
        );
    }
    respond(req, &DeleteGroupsResponse::default().with_results(results))
}

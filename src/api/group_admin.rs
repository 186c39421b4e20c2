//! ListGroups, DescribeGroups and DeleteGroups.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, respond, Outcome};
use crate::error;
use crate::group::offsets::{self, GroupSummary};
use crate::group::{self as coordinator};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;
use crate::util::join_all;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// `authorized_operations` when not requested.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

pub async fn list_groups(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
    let body: ListGroupsRequest = req.decode_body()?;
    let calls = (0..shard.count())
        .map(|target| {
            shard.router.invoke_on(
                shard,
                target,
                |s| async move { offsets::describe(&s, None) },
            )
        })
        .collect();
    let states: Vec<String> = body
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let types: Vec<String> = body.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut groups: Vec<GroupSummary> = join_all(calls).await.into_iter().flatten().collect();
    groups.retain(|g| states.is_empty() || states.contains(&g.state.to_lowercase()));
    // Every group here is a classic group.
    groups.retain(|_| types.is_empty() || types.iter().any(|t| t == "classic"));
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    let listed = groups
        .into_iter()
        .map(|g| {
            let mut l = ListedGroup::default()
                .with_group_id(GroupId(s(&g.group_id)))
                .with_protocol_type(s(&g.protocol_type));
            if req.version() >= 4 {
                l = l.with_group_state(s(g.state));
            }
            if req.version() >= 5 {
                l = l.with_group_type(s("classic"));
            }
            l
        })
        .collect();
    respond(req, &ListGroupsResponse::default().with_groups(listed))
}

pub async fn describe_groups(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
    let body: DescribeGroupsRequest = req.decode_body()?;
    let mut described = Vec::new();
    for gid in &body.groups {
        let id = gid.0.to_string();
        let found = match coordinator::coordinator_shard(shard, &id).await {
            Ok(owner) => {
                let ids = vec![id.clone()];
                shard
                    .router
                    .invoke_on(shard, owner, move |s| async move {
                        offsets::describe(&s, Some(&ids))
                    })
                    .await
            }
            Err(code) => {
                log_client_error(req, "describe group", code, &id);
                described.push(
                    DescribedGroup::default()
                        .with_group_id(gid.clone())
                        .with_error_code(code.code()),
                );
                continue;
            }
        };
        let mut d = DescribedGroup::default().with_group_id(gid.clone());
        if req.version() >= 3 {
            d = d.with_authorized_operations(OPERATIONS_NOT_REQUESTED);
        }
        d = match found.into_iter().next() {
            // Kafka describes a group it does not know as Dead, without an error.
            None => d.with_group_state(s("Dead")),
            Some(g) => d
                .with_group_state(s(g.state))
                .with_protocol_type(s(&g.protocol_type))
                .with_protocol_data(s(&g.protocol_name))
                .with_members(
                    g.members
                        .into_iter()
                        .map(|(id, iid, client, host, meta, assignment)| {
                            DescribedGroupMember::default()
                                .with_member_id(s(&id))
                                .with_group_instance_id(if req.version() >= 4 {
                                    iid.as_deref().map(s)
                                } else {
                                    None
                                })
                                .with_client_id(s(&client))
                                .with_client_host(s(&host))
                                .with_member_metadata(meta)
                                .with_member_assignment(assignment)
                        })
                        .collect(),
                ),
        };
        described.push(d);
    }
    respond(
        req,
        &DescribeGroupsResponse::default().with_groups(described),
    )
}

pub async fn delete_groups(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
    let body: DeleteGroupsRequest = req.decode_body()?;
    let mut results = Vec::new();
    for gid in &body.groups_names {
        let id = gid.0.to_string();
        let outcome = match coordinator::coordinator_shard(shard, &id).await {
            Ok(owner) => {
                let id = id.clone();
                shard
                    .router
                    .invoke_on(shard, owner, move |s| offsets::delete_group(s, id))
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

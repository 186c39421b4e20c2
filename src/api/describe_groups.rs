//! DescribeGroups: each group's state and members, from its coordinating shard.

use std::rc::Rc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{log_client_error, respond, str_bytes, Outcome, Session, OPERATIONS_NOT_REQUESTED};
use crate::group::offsets;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: DescribeGroupsRequest = req.decode_body()?;
    let mut described = Vec::new();
    for gid in &body.groups {
        let id = gid.0.to_string();
        let found = match super::group_owner(shard, &id).await {
            Ok(owner) => {
                let ids = vec![id.clone()];
                shard
                    .router
                    .invoke_on(shard, owner, move |s| async move {
                        offsets::describe(&s.groups, Some(&ids))
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
            None => d.with_group_state(str_bytes("Dead")),
            Some(g) => d
                .with_group_state(str_bytes(g.state))
                .with_protocol_type(str_bytes(&g.protocol_type))
                .with_protocol_data(str_bytes(&g.protocol_name))
                .with_members(
                    g.members
                        .into_iter()
                        .map(|(id, iid, client, host, meta, assignment)| {
                            DescribedGroupMember::default()
                                .with_member_id(str_bytes(&id))
                                .with_group_instance_id(if req.version() >= 4 {
                                    iid.as_deref().map(str_bytes)
                                } else {
                                    None
                                })
                                .with_client_id(str_bytes(&client))
                                .with_client_host(str_bytes(&host))
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

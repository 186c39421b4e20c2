//! ListGroups: every group of every shard, filtered by state and type.

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{respond, str_bytes, Outcome, Session};
use crate::group::offsets::{self, GroupSummary};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;
use crate::util::join_all;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: ListGroupsRequest = req.decode_body()?;
    let calls = (0..shard.count())
        .map(|target| {
            shard.router.invoke_on(shard, target, |s| async move {
                offsets::describe(&s.groups, None)
            })
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
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type));
            if req.version() >= 4 {
                l = l.with_group_state(str_bytes(g.state));
            }
            if req.version() >= 5 {
                l = l.with_group_type(str_bytes("classic"));
            }
            l
        })
        .collect();
    respond(req, &ListGroupsResponse::default().with_groups(listed))
}

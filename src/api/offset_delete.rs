//! OffsetDelete: removes a group's committed offsets for some partitions, on its coordinating
//! shard.

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

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
    let body: OffsetDeleteRequest = req.decode_body()?;
    let gid = body.group_id.0.to_string();
    let asked: Vec<(String, i32)> = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let result = match super::group_owner(shard, &gid).await {
        Ok(owner) => {
            let gid = gid.clone();
            shard
                .router
                .invoke_on(shard, owner, move |s| {
                    offsets::delete_offsets(s.groups.clone(), gid, asked)
                })
                .await
        }
        Err(code) => Err(code),
    };
    let mut response = OffsetDeleteResponse::default();
    match result {
        Err(code) => {
            log_client_error(req, &format!("offset delete {gid}"), code, "");
            response = response.with_error_code(code.code());
        }
        Ok(results) => {
            let mut results = results.into_iter();
            let topics = body
                .topics
                .iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error::code(results.next().flatten()))
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
            response = response.with_topics(topics);
        }
    }
    respond(req, &response)
}

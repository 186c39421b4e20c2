//! OffsetCommit: a group's committed offsets, kept by its coordinating shard in
//! `__consumer_offsets`.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{log_client_error, respond, Outcome, Session};
use crate::error;
use crate::group::offsets::{self, CommitArgs};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: OffsetCommitRequest = req.decode_body()?;
    let gid = body.group_id.0.to_string();
    let partitions: Vec<(String, i32, i64, i32, Option<String>)> = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    metadata,
                )
            })
        })
        .collect();
    let n = partitions.len();
    let args = CommitArgs {
        group_id: gid.clone(),
        generation: body.generation_id_or_member_epoch,
        member_id: body.member_id.to_string(),
        instance_id: body.group_instance_id.as_ref().map(|i| i.to_string()),
        partitions,
    };
    let results = match super::group_owner(shard, &gid).await {
        Ok(owner) => {
            shard
                .router
                .invoke_on(shard, owner, move |s| async move {
                    match s.groups.check_loaded(&args.group_id) {
                        Ok(()) => offsets::commit(s.groups.clone(), s.metadata(), args).await,
                        Err(code) => vec![Some(code); args.partitions.len()],
                    }
                })
                .await
        }
        Err(code) => vec![Some(code); n],
    };
    if let Some(code) = results.iter().flatten().next() {
        log_client_error(req, &format!("offset commit {gid}"), *code, &body.member_id);
    }
    let mut results = results.into_iter();
    let topics = body
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error::code(results.next().flatten()))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    respond(req, &OffsetCommitResponse::default().with_topics(topics))
}

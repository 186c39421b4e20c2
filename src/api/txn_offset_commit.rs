//! TxnOffsetCommit: a producer commits a consumer group's offsets inside its transaction, on
//! the group's coordinating shard (`crate::group::txn_offsets`).

use std::rc::Rc;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::{log_client_error, opt_string, respond, Outcome, Session};
use crate::group::offsets::CommitArgs;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: TxnOffsetCommitRequest = req.decode_body()?;
    let group = body.group_id.0.to_string();
    let args = CommitArgs {
        group_id: group.clone(),
        generation: body.generation_id,
        member_id: body.member_id.to_string(),
        instance_id: opt_string(&body.group_instance_id),
        partitions: body
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        t.name.0.to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.committed_metadata.as_ref().map(|m| m.to_string()),
                    )
                })
            })
            .collect(),
    };
    let n = args.partitions.len();
    let producer = (body.producer_id.0, body.producer_epoch);
    let results = match super::group_owner(shard, &group).await {
        Ok(owner) => {
            let image = shard.metadata();
            shard
                .router
                .invoke_on(shard, owner, move |s| async move {
                    match s.groups.check_loaded(&args.group_id) {
                        Ok(()) => {
                            let coord = s.groups.clone();
                            crate::group::txn_offsets::commit(coord, image, args, producer).await
                        }
                        Err(code) => vec![Some(code); args.partitions.len()],
                    }
                })
                .await
        }
        Err(code) => vec![Some(code); n],
    };
    let mut results = results.into_iter();
    let topics = body
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = results.next().flatten();
                    if let Some(code) = code {
                        let what = format!(
                            "txn offset commit {group} {}-{}",
                            t.name.0.as_str(),
                            p.partition_index
                        );
                        log_client_error(req, &what, code, &body.transactional_id.0);
                    }
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(crate::error::code(code))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    respond(req, &TxnOffsetCommitResponse::default().with_topics(topics))
}

//! OffsetCommit, OffsetFetch and OffsetDelete: committed offsets, kept by each group's
//! coordinating shard in `__consumer_offsets`.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, respond, Outcome};
use crate::error::{self, ErrorCode};
use crate::group::offsets::{self, CommitArgs};
use crate::group::store::Committed;
use crate::group::{self as coordinator};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

pub async fn offset_commit(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
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
    let results = match coordinator::coordinator_shard(shard, &gid).await {
        Ok(owner) => {
            shard
                .router
                .invoke_on(shard, owner, move |s| offsets::commit(s, args))
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

/// One group's part of an OffsetFetch: the partitions asked (None: all committed ones).
type Asked = Option<Vec<(String, i32)>>;

async fn fetch_group(
    shard: &Rc<Shard>,
    gid: String,
    asked: Asked,
) -> Result<Vec<(String, i32, Option<Committed>)>, ErrorCode> {
    let owner = coordinator::coordinator_shard(shard, &gid).await?;
    Ok(shard
        .router
        .invoke_on(shard, owner, move |s| async move {
            offsets::fetch(&s, &gid, asked)
        })
        .await)
}

fn committed_fields(c: &Option<Committed>) -> (i64, i32, Option<StrBytes>) {
    match c {
        Some(c) => (
            c.offset,
            c.leader_epoch,
            Some(StrBytes::from_string(
                c.metadata.clone().unwrap_or_default(),
            )),
        ),
        None => (-1, -1, Some(StrBytes::from_static_str(""))),
    }
}

/// One topic's committed partitions, in order.
type TopicRows = (String, Vec<(i32, Option<Committed>)>);

/// Groups consecutive (topic, partition, committed) rows by topic, keeping order.
fn by_topic(rows: Vec<(String, i32, Option<Committed>)>) -> Vec<TopicRows> {
    let mut out: Vec<TopicRows> = Vec::new();
    for (t, p, c) in rows {
        match out.last_mut() {
            Some((last, ps)) if *last == t => ps.push((p, c)),
            _ => out.push((t, vec![(p, c)])),
        }
    }
    out
}

pub async fn offset_fetch(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
    let body: OffsetFetchRequest = req.decode_body()?;
    if req.version() >= 8 {
        let mut groups = Vec::new();
        for g in &body.groups {
            let asked: Asked = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .flat_map(|t| {
                        t.partition_indexes
                            .iter()
                            .map(move |p| (t.name.0.to_string(), *p))
                    })
                    .collect()
            });
            let result = fetch_group(shard, g.group_id.0.to_string(), asked).await;
            groups.push(group_entry(g.group_id.clone(), result));
        }
        return respond(req, &OffsetFetchResponse::default().with_groups(groups));
    }
    let asked: Asked = body.topics.as_ref().map(|ts| {
        ts.iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(move |p| (t.name.0.to_string(), *p))
            })
            .collect()
    });
    let mut response = OffsetFetchResponse::default();
    match fetch_group(shard, body.group_id.0.to_string(), asked).await {
        Ok(rows) => {
            let topics = by_topic(rows)
                .into_iter()
                .map(|(t, ps)| {
                    let partitions = ps
                        .into_iter()
                        .map(|(p, c)| {
                            let (offset, epoch, metadata) = committed_fields(&c);
                            let mut r = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(metadata);
                            if req.version() >= 5 {
                                r = r.with_committed_leader_epoch(epoch);
                            }
                            r
                        })
                        .collect();
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name(&t))
                        .with_partitions(partitions)
                })
                .collect();
            response = response.with_topics(topics);
        }
        Err(code) => {
            log_client_error(req, "offset fetch", code, &body.group_id.0);
            if req.version() >= 2 {
                response = response.with_error_code(code.code());
            }
        }
    }
    respond(req, &response)
}

fn group_entry(
    group_id: GroupId,
    result: Result<Vec<(String, i32, Option<Committed>)>, ErrorCode>,
) -> OffsetFetchResponseGroup {
    let entry = OffsetFetchResponseGroup::default().with_group_id(group_id);
    match result {
        Err(code) => entry.with_error_code(code.code()),
        Ok(rows) => entry.with_topics(
            by_topic(rows)
                .into_iter()
                .map(|(t, ps)| {
                    let partitions = ps
                        .into_iter()
                        .map(|(p, c)| {
                            let (offset, epoch, metadata) = committed_fields(&c);
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(metadata)
                        })
                        .collect();
                    OffsetFetchResponseTopics::default()
                        .with_name(topic_name(&t))
                        .with_partitions(partitions)
                })
                .collect(),
        ),
    }
}

pub async fn offset_delete(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
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
    let result = match coordinator::coordinator_shard(shard, &gid).await {
        Ok(owner) => {
            let gid = gid.clone();
            shard
                .router
                .invoke_on(shard, owner, move |s| {
                    offsets::delete_offsets(s, gid, asked)
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

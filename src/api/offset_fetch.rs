//! OffsetFetch: a group's committed offsets, read from its coordinating shard (v0-7 one group,
//! v8+ a batch of groups).

use std::rc::Rc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, respond, Outcome, Session};
use crate::error::ErrorCode;
use crate::group::offsets::{self, FetchedOffset};
use crate::group::store::Committed;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// One group's part of an OffsetFetch: the partitions asked (None: all committed ones).
type Asked = Option<Vec<(String, i32)>>;

async fn fetch_group(
    shard: &Rc<Shard>,
    gid: String,
    asked: Asked,
    require_stable: bool,
) -> Result<Vec<FetchedOffset>, ErrorCode> {
    let owner = super::group_owner(shard, &gid).await?;
    shard
        .router
        .invoke_on(shard, owner, move |s| async move {
            s.groups.check_loaded(&gid)?;
            Ok(offsets::fetch(&s.groups, &gid, asked, require_stable))
        })
        .await
}

/// (offset, leader epoch, metadata, error code) of one partition's answer.
fn committed_fields(c: &Result<Option<Committed>, ErrorCode>) -> (i64, i32, Option<StrBytes>, i16) {
    let (offset, epoch, metadata) = match c {
        Err(_) | Ok(None) => (-1, -1, Some(StrBytes::from_static_str(""))),
        Ok(Some(c)) => (
            c.offset,
            c.leader_epoch,
            Some(StrBytes::from_string(
                c.metadata.clone().unwrap_or_default(),
            )),
        ),
    };
    (
        offset,
        epoch,
        metadata,
        crate::error::code(c.as_ref().err().copied()),
    )
}

/// One topic's committed partitions, in order.
type TopicRows = (String, Vec<(i32, Result<Option<Committed>, ErrorCode>)>);

/// Groups consecutive (topic, partition, committed) rows by topic, keeping order.
fn by_topic(rows: Vec<FetchedOffset>) -> Vec<TopicRows> {
    let mut out: Vec<TopicRows> = Vec::new();
    for (t, p, c) in rows {
        match out.last_mut() {
            Some((last, ps)) if *last == t => ps.push((p, c)),
            _ => out.push((t, vec![(p, c)])),
        }
    }
    out
}

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
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
            let stable = body.require_stable;
            let result = fetch_group(shard, g.group_id.0.to_string(), asked, stable).await;
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
    match fetch_group(
        shard,
        body.group_id.0.to_string(),
        asked,
        body.require_stable,
    )
    .await
    {
        Ok(rows) => {
            let topics = by_topic(rows)
                .into_iter()
                .map(|(t, ps)| {
                    let partitions = ps
                        .into_iter()
                        .map(|(p, c)| {
                            let (offset, epoch, metadata, code) = committed_fields(&c);
                            let mut r = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(metadata)
                                .with_error_code(code);
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
    result: Result<Vec<FetchedOffset>, ErrorCode>,
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
                            let (offset, epoch, metadata, code) = committed_fields(&c);
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(metadata)
                                .with_error_code(code)
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

//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, v7+), or first offset at or after
//! a timestamp.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{log_client_error, respond, Outcome, Session};
use crate::error::ErrorCode;
use crate::partitions::OffsetQuery;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// (offset, timestamp) or Kafka's error.
type Answer = Result<(i64, i64), ErrorCode>;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: ListOffsetsRequest = req.decode_body()?;
    let image = shard.metadata();
    // Every partition's answer, in request order; the ones only its owner can give are
    // looked up there, one call per owner.
    let mut answers: Vec<Option<Answer>> = Vec::new();
    let mut lookups = Vec::new();
    for t in &body.topics {
        let meta = image.topic(&t.name.0);
        for p in &t.partitions {
            let answer = match meta {
                None => Err(ErrorCode::UnknownTopicOrPartition),
                Some(m) if p.partition_index < 0 || p.partition_index >= m.partitions => {
                    Err(ErrorCode::UnknownTopicOrPartition)
                }
                Some(m)
                    if m.check_leader_epoch(p.partition_index, p.current_leader_epoch)
                        .is_some() =>
                {
                    Err(m
                        .check_leader_epoch(p.partition_index, p.current_leader_epoch)
                        .expect("checked"))
                }
                Some(_) if p.timestamp == MAX_TIMESTAMP && req.version() < 7 => {
                    Err(ErrorCode::UnsupportedVersion)
                }
                Some(m) => {
                    let owner = shard.owner(m, p.partition_index);
                    lookups.push((
                        answers.len(),
                        (owner, (m.name.clone(), p.partition_index, p.timestamp)),
                    ));
                    answers.push(None);
                    continue;
                }
            };
            answers.push(Some(answer));
        }
    }
    let (indexes, items): (Vec<usize>, Vec<_>) = lookups.into_iter().unzip();
    // v2+: isolation_level 1 (read_committed) looks below the last stable offset.
    let committed = body.isolation_level == 1;
    let found = shard
        .router
        .scatter_gather(shard, items, move |s, asked| async move {
            let mut out = Vec::with_capacity(asked.len());
            for (topic, partition, ts) in asked {
                let q = query(ts);
                out.push(s.partitions.offsets(&topic, partition, q, committed).await);
            }
            out
        })
        .await;
    for (i, a) in indexes.into_iter().zip(found) {
        answers[i] = Some(a);
    }
    let mut answers = answers
        .into_iter()
        .map(|a| a.expect("every partition answered"));
    let mut topics = Vec::new();
    for t in &body.topics {
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let answer = answers.next().expect("one answer per partition");
            let mut r =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            match answer {
                Ok((offset, timestamp)) => {
                    r = r.with_offset(offset).with_timestamp(timestamp);
                    if req.version() >= 4 {
                        let epoch = image
                            .topic(&t.name.0)
                            .map_or(-1, |m| m.leader_epoch(p.partition_index));
                        r = r.with_leader_epoch(epoch);
                    }
                }
                Err(code) => {
                    log_client_error(
                        req,
                        &format!("list offsets {}-{}", t.name.0, p.partition_index),
                        code,
                        "",
                    );
                    r = r
                        .with_error_code(code.code())
                        .with_offset(-1)
                        .with_timestamp(-1);
                }
            }
            partitions.push(r);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    respond(req, &ListOffsetsResponse::default().with_topics(topics))
}

/// The query a request's `timestamp` field stands for.
fn query(timestamp: i64) -> OffsetQuery {
    match timestamp {
        EARLIEST => OffsetQuery::Earliest,
        LATEST => OffsetQuery::Latest,
        MAX_TIMESTAMP => OffsetQuery::MaxTimestamp,
        t => OffsetQuery::Timestamp(t),
    }
}

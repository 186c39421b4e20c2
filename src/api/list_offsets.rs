//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, v7+), or first offset at or after
//! a timestamp.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{log_client_error, respond, Outcome, Session};
use crate::error::ErrorCode;
use crate::protocol::request::{Request, RequestError};
use crate::shard::{check_leader_epoch, Shard, LEADER_EPOCH};

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
    let mut topics = Vec::new();
    for t in &body.topics {
        let meta = image.topic(&t.name.0).cloned();
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let answer: Answer = match &meta {
                None => Err(ErrorCode::UnknownTopicOrPartition),
                Some(m) if p.partition_index < 0 || p.partition_index >= m.partitions => {
                    Err(ErrorCode::UnknownTopicOrPartition)
                }
                Some(_) if check_leader_epoch(p.current_leader_epoch).is_some() => {
                    Err(check_leader_epoch(p.current_leader_epoch).expect("checked"))
                }
                Some(_) if p.timestamp == MAX_TIMESTAMP && req.version() < 7 => {
                    Err(ErrorCode::UnsupportedVersion)
                }
                Some(m) => {
                    let (topic, partition, ts) = (m.name.clone(), p.partition_index, p.timestamp);
                    shard
                        .router
                        .invoke_on(shard, shard.owner(m, partition), move |s| async move {
                            lookup(&s, &topic, partition, ts).await
                        })
                        .await
                }
            };
            let mut r =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            match answer {
                Ok((offset, timestamp)) => {
                    r = r.with_offset(offset).with_timestamp(timestamp);
                    if req.version() >= 4 {
                        r = r.with_leader_epoch(LEADER_EPOCH);
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

/// Runs on the owner shard.
async fn lookup(shard: &Shard, topic: &str, partition: i32, timestamp: i64) -> Answer {
    let p = shard
        .partition(topic, partition)
        .ok_or(ErrorCode::NotLeaderOrFollower)?;
    let log = &p.log;
    Ok(match timestamp {
        EARLIEST => (log.log_start_offset().0, -1),
        LATEST => (log.high_watermark().0, -1),
        MAX_TIMESTAMP => log.max_timestamp().map_or((-1, -1), |(o, t)| (o.0, t)),
        t => match log.offset_for_timestamp(t).await {
            Ok(found) => found.map_or((-1, -1), |(o, t)| (o.0, t)),
            Err(e) => return Err(e.error_code()),
        },
    })
}

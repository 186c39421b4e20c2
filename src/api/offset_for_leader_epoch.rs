//! OffsetForLeaderEpoch: the end offset of a leader epoch, for consumers' truncation checks.

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{log_client_error, respond, Outcome, Session};
use crate::error::ErrorCode;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

/// (leader epoch, end offset) or Kafka's error.
type Answer = Result<(i32, i64), ErrorCode>;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: OffsetForLeaderEpochRequest = req.decode_body()?;
    let image = shard.metadata();
    // Every partition's answer, in request order; the ones only its owner can give are
    // looked up there, one call per owner.
    let mut answers: Vec<Option<Answer>> = Vec::new();
    let mut lookups = Vec::new();
    for t in &body.topics {
        let meta = image.topic(&t.topic.0);
        for p in &t.partitions {
            let answer = match meta {
                None => Err(ErrorCode::UnknownTopicOrPartition),
                Some(m) if p.partition < 0 || p.partition >= m.partitions => {
                    Err(ErrorCode::UnknownTopicOrPartition)
                }
                Some(m)
                    if m.check_leader_epoch(p.partition, p.current_leader_epoch)
                        .is_some() =>
                {
                    Err(m
                        .check_leader_epoch(p.partition, p.current_leader_epoch)
                        .expect("checked"))
                }
                Some(m) => {
                    let owner = shard.owner(m, p.partition);
                    lookups.push((
                        answers.len(),
                        (owner, (m.name.clone(), p.partition, p.leader_epoch)),
                    ));
                    answers.push(None);
                    continue;
                }
            };
            answers.push(Some(answer));
        }
    }
    let (indexes, items): (Vec<usize>, Vec<_>) = lookups.into_iter().unzip();
    let found = shard
        .router
        .scatter_gather(shard, items, |s, asked| async move {
            asked
                .into_iter()
                .map(|(topic, partition, epoch)| {
                    s.partitions.end_offset_for_epoch(&topic, partition, epoch)
                })
                .collect::<Vec<Answer>>()
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
            let r = EpochEndOffset::default().with_partition(p.partition);
            partitions.push(match answer {
                Ok((epoch, offset)) => r.with_leader_epoch(epoch).with_end_offset(offset),
                Err(code) => {
                    log_client_error(req, "offset for leader epoch", code, &t.topic.0);
                    r.with_error_code(code.code())
                        .with_leader_epoch(-1)
                        .with_end_offset(-1)
                }
            });
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions),
        );
    }
    respond(
        req,
        &OffsetForLeaderEpochResponse::default().with_topics(topics),
    )
}

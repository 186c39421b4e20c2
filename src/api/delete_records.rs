//! DeleteRecords: moves each partition's `log_start_offset` forward on its owner shard
//! (`PartitionLog::delete_records`), which also deletes the segments wholly below it.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{log_client_error, respond, Outcome, Session};
use crate::error::ErrorCode;
use crate::metadata::is_internal_topic;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;
use crate::util::join_all;

/// The new low watermark, or Kafka's error.
type Answer = Result<i64, ErrorCode>;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: DeleteRecordsRequest = req.decode_body()?;
    let image = shard.metadata();
    // Every partition's answer, in request order; the truncations run on the owners, one call
    // per owner.
    let mut answers: Vec<Option<Answer>> = Vec::new();
    let mut truncations = Vec::new();
    for t in &body.topics {
        let meta = image.topic(&t.name.0);
        for p in &t.partitions {
            // Kafka's ReplicaManager refuses to truncate an internal topic, before it looks
            // for the partition.
            let answer = match meta {
                Some(m) if is_internal_topic(&m.name) => Err(ErrorCode::InvalidTopicException),
                Some(m) if (0..m.partitions).contains(&p.partition_index) => {
                    let owner = shard.owner(m, p.partition_index);
                    truncations.push((
                        answers.len(),
                        (owner, (m.name.clone(), p.partition_index, p.offset)),
                    ));
                    answers.push(None);
                    continue;
                }
                _ => Err(ErrorCode::UnknownTopicOrPartition),
            };
            answers.push(Some(answer));
        }
    }
    let (indexes, items): (Vec<usize>, Vec<_>) = truncations.into_iter().unzip();
    let done = shard
        .router
        .scatter_gather(shard, items, |s, asked| async move {
            let each = asked.into_iter().map(|(topic, index, offset)| {
                let s = s.clone();
                async move { s.partitions.delete_records(&topic, index, offset).await }
            });
            join_all(each.collect()).await
        })
        .await;
    for (i, a) in indexes.into_iter().zip(done) {
        answers[i] = Some(a);
    }
    let mut answers = answers
        .into_iter()
        .map(|a| a.expect("every partition answered"));
    let mut topics = Vec::with_capacity(body.topics.len());
    for t in &body.topics {
        let answers: Vec<Answer> = answers.by_ref().take(t.partitions.len()).collect();
        let partitions = t
            .partitions
            .iter()
            .zip(answers)
            .map(|(p, a)| {
                let r =
                    DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                match a {
                    Ok(low_watermark) => r.with_low_watermark(low_watermark),
                    Err(code) => {
                        let what =
                            format!("delete records {}-{}", t.name.0.as_str(), p.partition_index);
                        log_client_error(req, &what, code, &format!("before offset {}", p.offset));
                        r.with_low_watermark(-1).with_error_code(code.code())
                    }
                }
            })
            .collect();
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    respond(req, &DeleteRecordsResponse::default().with_topics(topics))
}

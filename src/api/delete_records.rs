//! DeleteRecords: moves each partition's `log_start_offset` forward on its owner shard
//! (`PartitionLog::delete_records`), which also deletes the segments wholly below it.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{log_client_error, respond, Outcome, Session};
use crate::error::ErrorCode;
use crate::log::Offset;
use crate::metadata::is_internal_topic;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;
use crate::util::join_all;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: DeleteRecordsRequest = req.decode_body()?;
    let image = shard.metadata();
    let mut topics = Vec::with_capacity(body.topics.len());
    for t in &body.topics {
        let meta = image.topic(&t.name.0).cloned();
        let pieces = t.partitions.iter().map(|p| {
            let (meta, index, offset) = (meta.clone(), p.partition_index, p.offset);
            async move {
                // Kafka's ReplicaManager refuses to truncate an internal topic, before it
                // looks for the partition.
                if meta.as_ref().is_some_and(|m| is_internal_topic(&m.name)) {
                    return Err(ErrorCode::InvalidTopicException);
                }
                let meta = meta
                    .filter(|m| (0..m.partitions).contains(&index))
                    .ok_or(ErrorCode::UnknownTopicOrPartition)?;
                let topic = meta.name.clone();
                shard
                    .router
                    .invoke_on(shard, shard.owner(&meta, index), move |s| async move {
                        let p = s
                            .partition(&topic, index)
                            .ok_or(ErrorCode::NotLeaderOrFollower)?;
                        let start = p.log.delete_records(Offset(offset)).await;
                        start.map(|o| o.0).map_err(|e| e.error_code())
                    })
                    .await
            }
        });
        let answers = join_all(pieces.collect()).await;
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

//! Produce: split the request by owner shard, append on each owner concurrently, merge.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, respond, Outcome, Session};
use crate::error::{ApiError, ErrorCode};
use crate::log::batch;
use crate::log::validate::{RecordError, ValidateOptions};
use crate::log::{AppendInfo, CompressionType, Durability, LogError};
use crate::protocol::request::{Request, RequestError};
use crate::shard::{Partition, Shard};
use crate::util::join_all;

/// One partition's piece of a produce request, as sent to its owner.
struct Piece {
    slot: usize,
    topic: Arc<str>,
    partition: i32,
    records: Bytes,
}

/// A partition's failure: Kafka's code, the message, and KIP-467's per-record errors.
struct Failure {
    code: ErrorCode,
    message: String,
    record_errors: Vec<RecordError>,
}

impl From<ApiError> for Failure {
    fn from(ApiError { code, message }: ApiError) -> Self {
        Failure {
            code,
            message,
            record_errors: Vec::new(),
        }
    }
}

impl From<LogError> for Failure {
    fn from(e: LogError) -> Self {
        let code = e.error_code();
        let message = e.to_string();
        let record_errors = match e {
            LogError::RecordErrors(errors) | LogError::TimestampErrors(errors) => errors,
            _ => Vec::new(),
        };
        Failure {
            code,
            message,
            record_errors,
        }
    }
}

type AppendResult = Result<AppendInfo, Failure>;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: ProduceRequest = req.decode_body()?;
    let acks = body.acks;
    if shard.config.auto_create_topics_enable && matches!(acks, -1..=1) {
        // The common case, every topic known, costs one lookup per topic and no allocation.
        let image = shard.metadata();
        let missing: Vec<String> = body
            .topic_data
            .iter()
            .filter(|t| image.topic(&t.name.0).is_none())
            .map(|t| t.name.0.to_string())
            .collect();
        if !missing.is_empty() {
            super::metadata::auto_create_missing(shard, &missing).await;
        }
    }
    // Kafka's KafkaApis.handleProduceRequest: transactional records need the request's
    // transactional_id (and the right to write to it); without one the whole request fails.
    let transactional_without_id = body.transactional_id.is_none()
        && body.topic_data.iter().any(|t| {
            t.partition_data
                .iter()
                .any(|p| p.records.as_deref().is_some_and(is_transactional))
        });
    let image = shard.metadata();
    let mut results: Vec<AppendResult> = Vec::new();
    let mut pieces: Vec<(usize, Piece)> = Vec::new();
    for t in &body.topic_data {
        let meta = image.topic(&t.name.0);
        for p in &t.partition_data {
            let slot = results.len();
            results.push(Err(ApiError::new(
                ErrorCode::UnknownTopicOrPartition,
                "not handled".to_string(),
            )
            .into()));
            let checked = match (meta, &p.records) {
                _ if !matches!(acks, -1..=1) => Err(ApiError::new(
                    ErrorCode::InvalidRequiredAcks,
                    format!("acks={acks}"),
                )),
                _ if transactional_without_id => Err(ApiError::new(
                    ErrorCode::TransactionalIdAuthorizationFailed,
                    "transactional records in a produce request without a transactional_id",
                )),
                (None, _) => Err(ApiError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("topic {} does not exist", t.name.0),
                )),
                (Some(m), _) if p.index < 0 || p.index >= m.partitions => Err(ApiError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("{}-{} does not exist", t.name.0, p.index),
                )),
                (Some(m), _) if crate::metadata::is_internal_topic(&m.name) => Err(ApiError::new(
                    ErrorCode::InvalidTopicException,
                    format!("Cannot append to internal topic {}", m.name),
                )),
                (Some(_), None) => Err(ApiError::new(ErrorCode::InvalidRecord, "null record set")),
                (Some(m), Some(records)) => Ok((m, records.clone())),
            };
            match checked {
                Ok((m, records)) => pieces.push((
                    shard.owner(m, p.index),
                    Piece {
                        slot,
                        topic: m.name.clone(),
                        partition: p.index,
                        records,
                    },
                )),
                Err(e) => results[slot] = Err(e.into()),
            }
        }
    }
    let durability = if acks == -1 {
        Durability::Fsync
    } else {
        Durability::PageCache
    };
    // acks=all waits for the ISR until the request's timeout.
    let replicated =
        (acks == -1).then(|| Instant::now() + Duration::from_millis(body.timeout_ms.max(0) as u64));
    let appended = shard
        .router
        .scatter_gather(shard, pieces, move |s, pieces| {
            append_all(s, pieces, durability, replicated)
        })
        .await;
    for (slot, r) in appended {
        results[slot] = r;
    }
    if acks == 0 {
        if let Some(Err(f)) = results.iter().find(|r| r.is_err()) {
            return Ok(Outcome::Close(format!(
                "acks=0 produce failed: {:?}: {}",
                f.code, f.message
            )));
        }
        return Ok(Outcome::NoResponse);
    }
    respond(req, &response(req, &body, results))
}

/// Whether a partition's (first) batch has the transactional attribute bit.
fn is_transactional(records: &[u8]) -> bool {
    use crate::log::batch::{ATTRIBUTES, ATTR_TRANSACTIONAL};
    records
        .get(ATTRIBUTES..ATTRIBUTES + 2)
        .is_some_and(|a| i16::from_be_bytes([a[0], a[1]]) & ATTR_TRANSACTIONAL != 0)
}

/// Runs on the owner shard: appends every piece concurrently, one result per piece in order.
/// With `replicated` (acks=all), each answer waits until the ISR has the batch, or that
/// deadline.
async fn append_all(
    shard: Rc<Shard>,
    pieces: Vec<Piece>,
    durability: Durability,
    replicated: Option<Instant>,
) -> Vec<(usize, AppendResult)> {
    let appends = pieces.into_iter().map(|piece| {
        let shard = shard.clone();
        async move {
            let p = match shard.partitions.leader(&piece.topic, piece.partition) {
                Ok(p) => p,
                Err(code) => {
                    return (
                        piece.slot,
                        Err(ApiError::new(code, "partition is not open".to_string()).into()),
                    )
                }
            };
            let max_message_bytes = p.log.config.borrow().max_message_bytes;
            let records = match with_topic_codec(&shard, &piece, max_message_bytes).await {
                Ok(r) => r,
                Err(e) => return (piece.slot, Err(e.into())),
            };
            let min_isr = replicated.map(|_| min_insync_replicas(&shard, &piece.topic));
            if let Some(min) = min_isr {
                if let Err(e) = enough_in_sync(&p, min, ErrorCode::NotEnoughReplicas) {
                    return (piece.slot, Err(e.into()));
                }
            }
            let info = match p.append(&records, durability).await {
                Ok(info) => info,
                Err(e) => return (piece.slot, Err(e.into())),
            };
            if let (Some(deadline), Some(min)) = (replicated, min_isr) {
                if let Err(code) = p.wait_replicated(info.last_offset.0, deadline).await {
                    let e = ApiError::new(code, "the in-sync replicas do not have the batch");
                    return (piece.slot, Err(e.into()));
                }
                if let Err(e) = enough_in_sync(&p, min, ErrorCode::NotEnoughReplicasAfterAppend) {
                    return (piece.slot, Err(e.into()));
                }
            }
            (piece.slot, Ok(info))
        }
    });
    join_all(appends.collect()).await
}

/// `min.insync.replicas` of `topic`: its override, else the broker's.
pub(super) fn min_insync_replicas(shard: &Shard, topic: &str) -> i32 {
    shard
        .metadata()
        .topic(topic)
        .and_then(|t| t.configs.get("min.insync.replicas"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| shard.broker_config().min_insync_replicas)
}

/// Kafka's acks=all check: the ISR must hold at least `min` replicas (NOT_ENOUGH_REPLICAS
/// before the append, NOT_ENOUGH_REPLICAS_AFTER_APPEND once the batch is written). A partition
/// with fewer replicas than `min` can never satisfy it, as in Kafka.
fn enough_in_sync(p: &Partition, min: i32, code: ErrorCode) -> Result<(), ApiError> {
    let in_sync = p.isr_len() as i32;
    if in_sync >= min {
        return Ok(());
    }
    Err(ApiError::new(
        code,
        format!("the ISR has {in_sync} replicas, min.insync.replicas is {min}"),
    ))
}

/// The piece's batch, rewritten when the topic's `compression.type` names another codec. The
/// rewrite is the validator's record walk with a compressing writer attached: it checks the
/// producer's CRC and records first (re-encoding would otherwise give a corrupt batch a fresh,
/// valid checksum), streams, and yields like the append path's validation.
async fn with_topic_codec(
    shard: &Shard,
    piece: &Piece,
    max_message_bytes: u32,
) -> Result<Bytes, LogError> {
    let image = shard.metadata();
    // Overrides were validated when stored; one that no longer parses (a hand-edited metadata
    // file) keeps batches as sent.
    let codec = match image
        .topic(&piece.topic)
        .and_then(|t| t.configs.get("compression.type"))
    {
        Some(v) => CompressionType::parse(v).unwrap_or(CompressionType::Producer),
        None => shard.broker_config().compression_type,
    };
    let Some(target) = crate::protocol::recompress::target_codec(codec) else {
        return Ok(piece.records.clone());
    };
    // A batch already in the topic's codec needs no rewrite, and the append validates it:
    // walking it here too would decompress every such batch twice.
    let attributes = piece.records.get(batch::ATTRIBUTES..batch::ATTRIBUTES + 2);
    if attributes.is_some_and(|a| {
        i16::from_be_bytes([a[0], a[1]]) & batch::ATTR_COMPRESSION_MASK == target as i16
    }) {
        return Ok(piece.records.clone());
    }
    let opts = ValidateOptions {
        target_codec: Some(target as i16),
        ..ValidateOptions::new(max_message_bytes)
    };
    let v = crate::log::validate::validate_yielding(&piece.records, &opts).await?;
    Ok(v.rewritten
        .map_or_else(|| piece.records.clone(), Bytes::from))
}

fn response(req: &Request, body: &ProduceRequest, results: Vec<AppendResult>) -> ProduceResponse {
    let mut results = results.into_iter();
    let topics = body
        .topic_data
        .iter()
        .map(|t| {
            let partitions = t
                .partition_data
                .iter()
                .map(|p| {
                    let r = PartitionProduceResponse::default().with_index(p.index);
                    match results.next().expect("one result per partition") {
                        Ok(info) => r
                            .with_base_offset(info.base_offset.0)
                            .with_log_append_time_ms(info.log_append_time_ms)
                            .with_log_start_offset(info.log_start_offset.0),
                        Err(f) => {
                            log_client_error(
                                req,
                                &format!("produce to {}-{}", t.name.0, p.index),
                                f.code,
                                &f.message,
                            );
                            // KIP-467 (Produce v8+; older versions do not encode the field).
                            let record_errors = f
                                .record_errors
                                .into_iter()
                                .map(|e| {
                                    BatchIndexAndErrorMessage::default()
                                        .with_batch_index(e.batch_index)
                                        .with_batch_index_error_message(Some(
                                            StrBytes::from_string(e.message),
                                        ))
                                })
                                .collect();
                            r.with_error_code(f.code.code())
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(-1)
                                .with_record_errors(record_errors)
                                .with_error_message(Some(StrBytes::from_string(f.message)))
                        }
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(topics)
}

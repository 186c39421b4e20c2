//! AddPartitionsToTxn (v0-3, the client's form): partitions join a producer's transaction on
//! its coordinating shard (`crate::txn`). Unknown partitions fail the request as Kafka fails
//! it: they get UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED.

use std::rc::Rc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::{log_client_error, respond, Outcome, Session};
use crate::error::ErrorCode;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: AddPartitionsToTxnRequest = req.decode_body()?;
    let id = body.v3_and_below_transactional_id.0.to_string();
    let (pid, epoch) = (
        body.v3_and_below_producer_id.0,
        body.v3_and_below_producer_epoch,
    );
    let image = shard.metadata();
    let known = |topic: &str, p: i32| {
        image
            .topic(topic)
            .is_some_and(|m| (0..m.partitions).contains(&p))
    };
    let topics: Vec<(String, Vec<i32>)> = body
        .v3_and_below_topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.partitions.clone()))
        .collect();
    let unknown = topics
        .iter()
        .any(|(t, ps)| ps.iter().any(|&p| !known(t, p)));
    // One answer for every partition: the whole request's, or per partition when some are
    // unknown.
    let answer = |t: &str, p: i32| -> Option<ErrorCode> {
        match unknown {
            true if !known(t, p) => Some(ErrorCode::UnknownTopicOrPartition),
            true => Some(ErrorCode::OperationNotAttempted),
            false => None,
        }
    };
    let whole = match unknown {
        true => None,
        false => add(shard, id.clone(), pid, epoch, topics.clone())
            .await
            .err()
            .map(|c| super::fenced_for(c, req.version(), 2)),
    };
    if let Some(code) = whole {
        log_client_error(
            req,
            "add partitions to txn",
            code,
            &format!("transactional id {id}"),
        );
    }
    let results = topics
        .iter()
        .map(|(t, ps)| {
            let partitions = ps
                .iter()
                .map(|&p| {
                    let code = whole.or_else(|| answer(t, p));
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(crate::error::code(code))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(kafka_protocol::protocol::StrBytes::from_string(t.clone()).into())
                .with_results_by_partition(partitions)
        })
        .collect();
    respond(
        req,
        &AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
    )
}

async fn add(
    shard: &Rc<Shard>,
    id: String,
    pid: i64,
    epoch: i16,
    partitions: Vec<(String, Vec<i32>)>,
) -> Result<(), ErrorCode> {
    let owner = super::txn_owner(shard, &id).await?;
    shard
        .router
        .invoke_on(shard, owner, move |s| async move {
            super::txn_flow::add_partitions(&s, id, pid, epoch, partitions).await
        })
        .await
}

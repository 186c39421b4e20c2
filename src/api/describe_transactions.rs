//! DescribeTransactions (what `kafka-transactions.sh describe` uses): each transactional id's
//! state on its coordinating shard, TRANSACTIONAL_ID_NOT_FOUND for one it does not know.

use std::rc::Rc;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId,
};
use kafka_protocol::protocol::StrBytes;

use super::{respond, str_bytes, Outcome, Session};
use crate::error::ErrorCode;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: DescribeTransactionsRequest = req.decode_body()?;
    let mut states = Vec::with_capacity(body.transactional_ids.len());
    for id in &body.transactional_ids {
        let key = id.0.to_string();
        let found = match super::txn_owner(shard, &key).await {
            Ok(owner) => {
                let key = key.clone();
                shard
                    .router
                    .invoke_on(shard, owner, move |s| async move { s.txns.describe(&key) })
                    .await
                    .ok_or(ErrorCode::TransactionalIdNotFound)
            }
            Err(code) => Err(code),
        };
        let state = TransactionState::default().with_transactional_id(id.clone());
        states.push(match found {
            Err(code) => state
                .with_error_code(code.code())
                .with_transaction_state(StrBytes::default())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1),
            Ok(r) => state
                .with_transaction_state(str_bytes(r.status.name()))
                .with_transaction_timeout_ms(r.timeout_ms)
                .with_transaction_start_time_ms(r.start_ms)
                .with_producer_id(ProducerId(r.producer_id))
                .with_producer_epoch(r.producer_epoch)
                .with_topics(
                    r.partitions
                        .into_iter()
                        .map(|(t, ps)| {
                            TopicData::default()
                                .with_topic(str_bytes(&t).into())
                                .with_partitions(ps)
                        })
                        .collect(),
                ),
        });
    }
    respond(
        req,
        &DescribeTransactionsResponse::default().with_transaction_states(states),
    )
}

//! ListTransactions (what `kafka-transactions.sh list` uses): every transactional id of every
//! shard's coordinator, filtered by state, producer id and (v1+) how long its transaction has
//! been running. An unknown state name is listed back, as Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::{respond, str_bytes, Outcome, Session};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;
use crate::txn::log::TxnStatus;
use crate::util::join_all;

/// Every state ListTransactions may filter on.
const STATES: [TxnStatus; 8] = [
    TxnStatus::Empty,
    TxnStatus::Ongoing,
    TxnStatus::PrepareCommit,
    TxnStatus::PrepareAbort,
    TxnStatus::CompleteCommit,
    TxnStatus::CompleteAbort,
    TxnStatus::Dead,
    TxnStatus::PrepareEpochFence,
];

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: ListTransactionsRequest = req.decode_body()?;
    let calls = (0..shard.count())
        .map(|target| {
            shard
                .router
                .invoke_on(shard, target, |s| async move { s.txns.list() })
        })
        .collect();
    let unknown: Vec<_> = body
        .state_filters
        .iter()
        .filter(|f| !STATES.iter().any(|s| s.name() == f.as_str()))
        .cloned()
        .collect();
    let now = crate::util::now_ms();
    let mut listed: Vec<_> = join_all(calls).await.into_iter().flatten().collect();
    listed.retain(|(_, r)| {
        let state = body.state_filters.is_empty()
            || body
                .state_filters
                .iter()
                .any(|f| f.as_str() == r.status.name());
        let producer = body.producer_id_filters.is_empty()
            || body
                .producer_id_filters
                .contains(&ProducerId(r.producer_id));
        // v1: only transactions running longer than this (-1: any).
        let running = body.duration_filter < 0
            || (r.status == TxnStatus::Ongoing && now - r.start_ms > body.duration_filter);
        state && producer && running
    });
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    let states = listed
        .into_iter()
        .map(|(id, r)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(&id)))
                .with_producer_id(ProducerId(r.producer_id))
                .with_transaction_state(str_bytes(r.status.name()))
        })
        .collect();
    respond(
        req,
        &ListTransactionsResponse::default()
            .with_unknown_state_filters(unknown)
            .with_transaction_states(states),
    )
}

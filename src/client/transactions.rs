//! The transaction admin calls `kafka-transactions.sh` makes: ListTransactions on every broker
//! (each lists the transactional ids it coordinates) and DescribeTransactions on an id's
//! coordinator.

use std::time::Duration;

use kafka_protocol::messages::{
    DescribeTransactionsRequest, ListTransactionsRequest, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::error::{check, ClientError, Result};
use super::Client;

/// FindCoordinator's key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

/// One row of `transactions list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionListing {
    pub transactional_id: String,
    pub coordinator: i32,
    pub producer_id: i64,
    pub state: String,
}

/// What `transactions describe` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionDescription {
    pub coordinator: i32,
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub state: String,
    pub timeout_ms: i32,
    pub start_ms: i64,
    /// (topic, partition) of the open transaction.
    pub partitions: Vec<(String, i32)>,
}

impl Client {
    /// Every transactional id the cluster's coordinators know, optionally only in `states`.
    pub fn list_transactions(&mut self, states: &[String]) -> Result<Vec<TransactionListing>> {
        self.metadata(Some(&[]), false)?;
        let mut nodes: Vec<i32> = self.brokers.keys().copied().collect();
        if nodes.len() <= 1 {
            nodes = vec![super::BOOTSTRAP_NODE];
        }
        let mut out = Vec::new();
        for node in nodes {
            let req = ListTransactionsRequest::default()
                .with_state_filters(
                    states
                        .iter()
                        .map(|s| StrBytes::from_string(s.clone()))
                        .collect(),
                )
                .with_duration_filter(-1);
            let (_, resp) = self.node(node)?.send(&req, Duration::ZERO)?;
            check(resp.error_code, None, || "list transactions".to_owned())?;
            let coordinator = if node < 0 {
                self.single_node_id()
            } else {
                node
            };
            out.extend(
                resp.transaction_states
                    .into_iter()
                    .map(|t| TransactionListing {
                        transactional_id: t.transactional_id.0.to_string(),
                        coordinator,
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                    }),
            );
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(out)
    }

    /// Describes transactional id `id` on its coordinator.
    pub fn describe_transaction(&mut self, id: &str) -> Result<TransactionDescription> {
        let coordinator = self.find_coordinator(KEY_TYPE_TRANSACTION, id, "transactional id")?;
        self.metadata(Some(&[]), false)?;
        let req = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(id.to_owned()))]);
        let (_, resp) = self.node(coordinator)?.send(&req, Duration::ZERO)?;
        let t =
            resp.transaction_states.into_iter().next().ok_or_else(|| {
                ClientError::Protocol("DescribeTransactions answered nothing".into())
            })?;
        check(t.error_code, None, || {
            format!("describe transactional id {id:?}")
        })?;
        Ok(TransactionDescription {
            coordinator,
            transactional_id: id.to_owned(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            state: t.transaction_state.to_string(),
            timeout_ms: t.transaction_timeout_ms,
            start_ms: t.transaction_start_time_ms,
            partitions: t
                .topics
                .into_iter()
                .flat_map(|topic| {
                    let name = topic.topic.0.to_string();
                    topic.partitions.into_iter().map(move |p| (name.clone(), p))
                })
                .collect(),
        })
    }

    /// The one broker's id, for a cluster of one reached through the bootstrap address.
    fn single_node_id(&self) -> i32 {
        self.brokers
            .keys()
            .next()
            .copied()
            .unwrap_or(super::BOOTSTRAP_NODE)
    }
}

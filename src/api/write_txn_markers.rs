//! WriteTxnMarkers: the transaction coordinator's request that ends a producer's transaction
//! in each of its partitions with a COMMIT or ABORT control batch (KIP-98). Each marker is
//! appended by the partition's leader on its owner shard (`txn_flow::write_marker`, which on a
//! `__consumer_offsets` partition also ends the offsets the transaction committed there) and
//! answered once the in-sync replicas have it, as Kafka appends markers with acks=all.
//!
//! Kafka accepts it from anyone with CLUSTER_ACTION on the cluster, which without an
//! authorizer is everyone; so here.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::{log_client_error, respond, Outcome, Session};
use crate::error::ErrorCode;
use crate::log::txn::Marker;
use crate::partitions::TxnMarker;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;
use crate::util::join_all;

/// How long a marker waits for the in-sync replicas (Kafka's `request.timeout.ms` default,
/// which its coordinator's marker sends use).
const MARKER_REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: WriteTxnMarkersRequest = req.decode_body()?;
    let image = shard.metadata();
    let deadline = Instant::now() + MARKER_REPLICATION_TIMEOUT;
    // Every partition's answer, in request order; the appends run on the owners.
    let mut answers: Vec<Option<Result<(), ErrorCode>>> = Vec::new();
    let mut writes = Vec::new();
    for m in &body.markers {
        let marker = TxnMarker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            marker: match m.transaction_result {
                true => Marker::Commit,
                false => Marker::Abort,
            },
            coordinator_epoch: m.coordinator_epoch,
        };
        for t in &m.topics {
            let meta = image.topic(&t.name.0);
            for &p in &t.partition_indexes {
                match meta {
                    Some(meta) if (0..meta.partitions).contains(&p) => {
                        let owner = shard.owner(meta, p);
                        let name: Arc<str> = meta.name.clone();
                        writes.push((answers.len(), (owner, (name, p, marker))));
                        answers.push(None);
                    }
                    _ => answers.push(Some(Err(ErrorCode::UnknownTopicOrPartition))),
                }
            }
        }
    }
    let (indexes, items): (Vec<usize>, Vec<_>) = writes.into_iter().unzip();
    let done = shard
        .router
        .scatter_gather(shard, items, move |s, asked| async move {
            let each =
                asked.into_iter().map(|(topic, index, marker)| {
                    let s = s.clone();
                    async move {
                        super::txn_flow::write_marker(&s, &topic, index, marker, deadline).await
                    }
                });
            join_all(each.collect()).await
        })
        .await;
    for (i, answer) in indexes.into_iter().zip(done) {
        answers[i] = Some(answer);
    }
    let mut answers = answers
        .into_iter()
        .map(|a| a.expect("every partition answered"));
    let markers = body
        .markers
        .iter()
        .map(|m| {
            let topics = m
                .topics
                .iter()
                .map(|t| {
                    let partitions = t
                        .partition_indexes
                        .iter()
                        .map(|&p| {
                            let answer = answers.next().expect("one answer per partition");
                            if let Err(code) = answer {
                                let what = format!("write txn marker {}-{p}", t.name.0.as_str());
                                let who = format!("producer {}", m.producer_id.0);
                                log_client_error(req, &what, code, &who);
                            }
                            WritableTxnMarkerPartitionResult::default()
                                .with_partition_index(p)
                                .with_error_code(crate::error::code(answer.err()))
                        })
                        .collect();
                    WritableTxnMarkerTopicResult::default()
                        .with_name(t.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics)
        })
        .collect();
    respond(
        req,
        &WriteTxnMarkersResponse::default().with_markers(markers),
    )
}

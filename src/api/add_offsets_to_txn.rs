//! AddOffsetsToTxn: a consumer group's `__consumer_offsets` partition joins a producer's
//! transaction, so that its TxnOffsetCommit is ended with the transaction's marker.

use std::rc::Rc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::{log_client_error, respond, Outcome, Session};
use crate::error::ErrorCode;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: AddOffsetsToTxnRequest = req.decode_body()?;
    let id = body.transactional_id.0.to_string();
    let group = body.group_id.0.to_string();
    let result = add(shard, &body, id.clone(), &group).await;
    let code = result.err().map(|c| super::fenced_for(c, req.version(), 2));
    if let Some(code) = code {
        let what = format!("transactional id {id}, group {group}");
        log_client_error(req, "add offsets to txn", code, &what);
    }
    respond(
        req,
        &AddOffsetsToTxnResponse::default().with_error_code(crate::error::code(code)),
    )
}

async fn add(
    shard: &Rc<Shard>,
    body: &AddOffsetsToTxnRequest,
    id: String,
    group: &str,
) -> Result<(), ErrorCode> {
    // The group's offsets partition exists once its coordinator does.
    super::group_coordinator(shard, group).await?;
    let partition = crate::group::store::partition_for(group);
    let offsets = vec![(crate::metadata::OFFSETS_TOPIC.to_string(), vec![partition])];
    let owner = super::txn_owner(shard, &id).await?;
    let (pid, epoch) = (body.producer_id.0, body.producer_epoch);
    shard
        .router
        .invoke_on(shard, owner, move |s| async move {
            super::txn_flow::add_partitions(&s, id, pid, epoch, offsets).await
        })
        .await
}

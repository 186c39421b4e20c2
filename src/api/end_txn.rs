//! EndTxn: a producer commits or aborts its transaction on the coordinating shard
//! (`super::txn_flow::end_txn`); answered once the decision is written, the markers follow.

use std::rc::Rc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::{log_client_error, respond, Outcome, Session};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: EndTxnRequest = req.decode_body()?;
    let id = body.transactional_id.0.to_string();
    let (pid, epoch, commit) = (body.producer_id.0, body.producer_epoch, body.committed);
    let result = match super::txn_owner(shard, &id).await {
        Ok(owner) => {
            let id = id.clone();
            shard
                .router
                .invoke_on(shard, owner, move |s| async move {
                    super::txn_flow::end_txn(&s, id, pid, epoch, commit).await
                })
                .await
        }
        Err(code) => Err(code),
    };
    let code = result.err().map(|c| super::fenced_for(c, req.version(), 2));
    if let Some(code) = code {
        let what = format!("transactional id {id}, commit {commit}");
        log_client_error(req, "end txn", code, &what);
    }
    respond(
        req,
        &EndTxnResponse::default()
            .with_error_code(crate::error::code(code))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
}

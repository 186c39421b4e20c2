//! InitProducerId: a producer id for an idempotent producer (from the metadata controller's
//! block), or for a transactional id from its transaction coordinator (`crate::txn`).

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{log_client_error, respond, Outcome, Session};
use crate::admin;
use crate::error::{ApiError, ErrorCode};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: InitProducerIdRequest = req.decode_body()?;
    let mut response = InitProducerIdResponse::default();
    if body
        .transactional_id
        .as_ref()
        .is_some_and(|t| t.0.is_empty())
    {
        // Kafka's transaction coordinator answers an empty transactional id this way.
        let code = ErrorCode::InvalidRequest;
        log_client_error(req, "init producer id", code, "empty transactional id");
        response = response
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        return respond(req, &response);
    }
    if let Some(id) = &body.transactional_id {
        let id = id.0.to_string();
        let (code, pid, epoch) = match transactional(shard, &body, id.clone()).await {
            Ok((pid, epoch)) => (None, pid, epoch),
            Err(code) => (Some(super::fenced_for(code, req.version(), 4)), -1, -1),
        };
        if let Some(code) = code {
            log_client_error(
                req,
                "init producer id",
                code,
                &format!("transactional id {id}"),
            );
        }
        response = response
            .with_error_code(crate::error::code(code))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch);
        return respond(req, &response);
    }
    if body.producer_id.0 >= 0 && body.producer_epoch >= 0 {
        // KIP-360: an idempotent producer bumps its own epoch after an error to reset its
        // sequence numbers; the id stays, the epoch moves on, and a new id once it would wrap.
        if body.producer_epoch < i16::MAX - 1 {
            response = response
                .with_producer_id(body.producer_id)
                .with_producer_epoch(body.producer_epoch + 1);
            return respond(req, &response);
        }
    }
    match admin::allocate_producer_id(shard).await {
        Ok(id) => {
            response = response
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0)
        }
        Err(e) => {
            let e = ApiError::from(e);
            log_client_error(req, "init producer id", e.code, &e.message);
            response = response
                .with_error_code(e.code.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
        }
    }
    respond(req, &response)
}

/// The transactional path: the timeout checked against `transaction.max.timeout.ms`, then the
/// id's coordinating shard gives the producer id and epoch.
async fn transactional(
    shard: &Rc<Shard>,
    body: &InitProducerIdRequest,
    id: String,
) -> Result<(i64, i16), ErrorCode> {
    let timeout = body.transaction_timeout_ms;
    if timeout <= 0 || timeout > shard.config.transaction_max_timeout_ms {
        return Err(ErrorCode::InvalidTransactionTimeout);
    }
    let owner = super::txn_owner(shard, &id).await?;
    let current = (body.producer_id.0 >= 0).then_some((body.producer_id.0, body.producer_epoch));
    shard
        .router
        .invoke_on(shard, owner, move |s| async move {
            super::txn_flow::init_producer_id(&s, id, timeout, current).await
        })
        .await
}

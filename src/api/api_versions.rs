//! ApiVersions: the API registry, as is.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use super::{registry, respond, Outcome, Session};
use crate::error::ErrorCode;
use crate::protocol::fetch::Chunk;
use crate::protocol::request::{Request, RequestError};
use crate::protocol::response::encode_response;
use crate::shard::Shard;

/// Answered from the registry alone: no shard state, and the body (client software name and
/// version, v3+) is not read.
pub async fn handle(
    _shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body = ApiVersionsResponse::default().with_api_keys(registry::advertised());
    respond(req, &body)
}

/// A version we do not serve: a v0 body with UNSUPPORTED_VERSION and our key list, so the
/// client retries with a version we do (KIP-511).
pub fn unsupported_version(correlation_id: i32) -> Outcome {
    let body = ApiVersionsResponse::default()
        .with_error_code(ErrorCode::UnsupportedVersion.code())
        .with_api_keys(registry::advertised());
    match encode_response(ApiKey::ApiVersions, 0, correlation_id, &body) {
        Ok(b) => Outcome::Respond(vec![Chunk::Mem(b)]),
        Err(e) => Outcome::Close(format!("ApiVersions v0 does not encode: {e}")),
    }
}

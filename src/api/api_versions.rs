//! ApiVersions: the API table, as is.

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use super::{respond, Outcome};
use crate::error::ErrorCode;
use crate::protocol::apis;
use crate::protocol::fetch::Chunk;
use crate::protocol::request::{Request, RequestError};
use crate::protocol::response::encode_response;

pub fn handle(req: &Request) -> Result<Outcome, RequestError> {
    let body = ApiVersionsResponse::default().with_api_keys(apis::advertised());
    respond(req, &body)
}

/// A version we do not serve: a v0 body with UNSUPPORTED_VERSION and our key list, so the
/// client retries with a version we do (KIP-511).
pub fn unsupported_version(correlation_id: i32) -> Outcome {
    let body = ApiVersionsResponse::default()
        .with_error_code(ErrorCode::UnsupportedVersion.code())
        .with_api_keys(apis::advertised());
    match encode_response(ApiKey::ApiVersions, 0, correlation_id, &body) {
        Ok(b) => Outcome::Respond(vec![Chunk::Mem(b)]),
        Err(e) => Outcome::Close(format!("ApiVersions v0 does not encode: {e}")),
    }
}

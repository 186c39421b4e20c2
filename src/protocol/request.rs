//! Request headers and bodies. Which APIs and versions are served is the API registry's to say
//! (`api::registry`); this module only decodes.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;
use tracing::debug;

/// A request whose header is decoded; its body is decoded by the API's handler, which knows
/// its type.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: Bytes,
}

impl Request {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    /// Decodes the body as `T`, or names why it does not decode.
    pub fn decode_body<T: Decodable>(&self) -> Result<T, RequestError> {
        let mut body = self.body.clone();
        let value = T::decode(&mut body, self.version()).map_err(|e| RequestError::Malformed {
            api_key: self.api_key,
            version: self.version(),
            correlation_id: self.header.correlation_id,
            reason: e.to_string(),
        })?;
        if body.has_remaining() {
            // Kafka parses the fields it knows and ignores whatever follows a fully read body
            // (`RequestContext::parseRequest` never checks what remains), and clients rely on
            // it: librdkafka 2.15/2.16 send Metadata v12 with 3 bytes after the body. Refusing
            // them would cut those clients off, so the bytes are only noted.
            debug!(
                api = ?self.api_key,
                version = self.version(),
                correlation_id = self.header.correlation_id,
                client_id = self.header.client_id.as_deref().unwrap_or(""),
                "ignoring {} bytes after the request body",
                body.remaining()
            );
        }
        Ok(value)
    }
}

/// What the connection does with a frame that is not a servable request.
#[derive(Debug)]
pub enum RequestError {
    /// Too short to hold the fixed header fields: close the connection.
    Truncated,
    /// An API key the broker does not implement: close the connection (Kafka does the same).
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    /// A known API at a version outside the table. ApiVersions answers it with
    /// UNSUPPORTED_VERSION so the client can retry lower; other APIs close the connection.
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    /// The header or body does not decode: close the connection.
    Malformed {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Truncated => write!(f, "truncated request header"),
            RequestError::UnknownApiKey { api_key, .. } => write!(f, "unknown api key {api_key}"),
            RequestError::UnsupportedVersion {
                api_key, version, ..
            } => {
                write!(f, "unsupported version {version} of {api_key:?}")
            }
            RequestError::Malformed {
                api_key,
                version,
                reason,
                ..
            } => {
                write!(f, "malformed {api_key:?} v{version} request: {reason}")
            }
        }
    }
}

/// The fixed leading fields of every request header (v1 and v2 alike).
#[derive(Clone, Copy, Debug)]
pub struct HeaderPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads api key, version and correlation id without decoding anything else.
pub fn peek_header(frame: &[u8]) -> Option<HeaderPrefix> {
    let mut b = frame.get(..8)?;
    Some(HeaderPrefix {
        api_key: b.get_i16(),
        api_version: b.get_i16(),
        correlation_id: b.get_i32(),
    })
}

/// Decodes the header of a frame whose leading fields are `prefix`, for `api_key`, which the
/// caller has looked up and whose version it has checked (`api::registry::route`, the one
/// place that knows which APIs and versions are served). The body is left for the handler.
pub fn decode_header(
    mut frame: Bytes,
    api_key: ApiKey,
    prefix: HeaderPrefix,
) -> Result<Request, RequestError> {
    let header_version = api_key.request_header_version(prefix.api_version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| RequestError::Malformed {
            api_key,
            version: prefix.api_version,
            correlation_id: prefix.correlation_id,
            reason: e.to_string(),
        })?;
    Ok(Request {
        header,
        api_key,
        body: frame,
    })
}

//! Request headers and bodies.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;
use tracing::debug;

use super::apis::{self, ApiSpec};

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

/// Checks a frame against the API table, then decodes its header and body.
pub fn decode_request(mut frame: Bytes) -> Result<Request, RequestError> {
    let prefix = peek_header(&frame).ok_or(RequestError::Truncated)?;
    let spec: &ApiSpec = apis::lookup(prefix.api_key).ok_or(RequestError::UnknownApiKey {
        api_key: prefix.api_key,
        correlation_id: prefix.correlation_id,
    })?;
    let version = prefix.api_version;
    let correlation_id = prefix.correlation_id;
    if version < spec.min || version > spec.max {
        return Err(RequestError::UnsupportedVersion {
            api_key: spec.key,
            version,
            correlation_id,
        });
    }
    let malformed = |e: &dyn std::fmt::Display| RequestError::Malformed {
        api_key: spec.key,
        version,
        correlation_id,
        reason: e.to_string(),
    };
    let header_version = spec.key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|e| malformed(&e))?;
    Ok(Request {
        header,
        api_key: spec.key,
        body: frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_flexible_and_non_flexible_requests() {
        for v in [0, 3] {
            let r = decode_request(frame(
                ApiKey::ApiVersions,
                v,
                &ApiVersionsRequest::default(),
            ))
            .unwrap();
            assert_eq!(r.header.correlation_id, 42);
            r.decode_body::<ApiVersionsRequest>().unwrap();
        }
        let r = decode_request(frame(ApiKey::Metadata, 12, &MetadataRequest::default())).unwrap();
        assert_eq!(r.header.client_id.as_deref(), Some("test"));
        r.decode_body::<MetadataRequest>().unwrap();
    }

    #[test]
    fn unknown_keys_versions_and_garbage_are_errors_not_panics() {
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 1])),
            Err(RequestError::Truncated)
        ));
        let unknown = Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert!(matches!(
            decode_request(unknown),
            Err(RequestError::UnknownApiKey { .. })
        ));
        let f = frame(ApiKey::ApiVersions, 4, &ApiVersionsRequest::default());
        let mut high = BytesMut::from(&f[..]);
        high[3] = 9;
        assert!(matches!(
            decode_request(high.freeze()),
            Err(RequestError::UnsupportedVersion { .. })
        ));
        let mut cut = frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        cut.truncate(cut.len() - 1);
        let r = decode_request(cut).unwrap();
        assert!(matches!(
            r.decode_body::<MetadataRequest>(),
            Err(RequestError::Malformed { .. })
        ));
    }

    fn with_trailing_bytes(frame: Bytes) -> Request {
        let mut f = BytesMut::from(&frame[..]);
        f.extend_from_slice(&[0, 0, 0]);
        decode_request(f.freeze()).unwrap()
    }

    #[test]
    fn bytes_after_a_fully_read_body_are_ignored() {
        let r = with_trailing_bytes(frame(ApiKey::Metadata, 12, &MetadataRequest::default()));
        r.decode_body::<MetadataRequest>().unwrap();
        let r = with_trailing_bytes(frame(
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default(),
        ));
        r.decode_body::<ApiVersionsRequest>().unwrap();
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(key in 0i16..70, version in 0i16..20, body in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&key.to_be_bytes());
            buf.extend_from_slice(&version.to_be_bytes());
            buf.extend_from_slice(&body);
            if let Ok(r) = decode_request(buf.freeze()) {
                let _ = r.decode_body::<kafka_protocol::messages::ProduceRequest>();
                let _ = r.decode_body::<kafka_protocol::messages::FetchRequest>();
                let _ = r.decode_body::<MetadataRequest>();
            }
        }
    }
}

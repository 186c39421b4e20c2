//! One blocking connection to one broker: request framing, correlation ids and the ApiVersions
//! handshake that fixes, per API, the version this connection speaks.
//!
//! Kafka requests on one connection are answered in order, and this client sends one request and
//! waits for its answer before the next, so a mismatched correlation id can only mean a broken
//! broker or a desynchronised stream: it is reported, never skipped over.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange,
};

use super::error::{ClientError, Result};

/// Largest response frame this client accepts (a fetch is bounded by its `max_bytes`, far below
/// this). The size prefix is checked against it before any allocation.
pub const RESPONSE_BYTES_MAX: usize = 256 << 20;

/// How long to wait for the TCP handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for a response beyond the time the request itself asks the broker to wait.
pub const RESPONSE_TIMEOUT_SLACK: Duration = Duration::from_secs(30);

/// The Kafka wire code for UNSUPPORTED_VERSION, which ApiVersions answers in its v0 body shape.
const UNSUPPORTED_VERSION: i16 = 35;

/// A connection to one broker, with the API versions agreed at connect time.
pub struct Connection {
    stream: TcpStream,
    addr: String,
    client_id: StrBytes,
    correlation_id_next: i32,
    /// Broker-advertised `(min, max)` version per API key.
    broker_versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects to `addr` (`HOST:PORT`) and negotiates API versions.
    pub fn connect(addr: &str, client_id: &str) -> Result<Self> {
        let unreachable = |source| ClientError::Unreachable {
            addr: addr.to_owned(),
            source,
        };
        let mut last_err = None;
        let mut stream = None;
        for sock in addr.to_socket_addrs().map_err(unreachable)? {
            match TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let stream = stream.ok_or_else(|| {
            unreachable(last_err.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "address resolved to nothing")
            }))
        })?;
        // Requests are written whole in one call; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            stream,
            addr: addr.to_owned(),
            client_id: StrBytes::from_string(client_id.to_owned()),
            correlation_id_next: 0,
            broker_versions: HashMap::new(),
        };
        conn.negotiate()?;
        Ok(conn)
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Asks the broker which API versions it serves.
    ///
    /// We offer our highest ApiVersions version; a broker that does not know it answers
    /// UNSUPPORTED_VERSION in the v0 body shape with its own range, and we retry at its highest.
    fn negotiate(&mut self) -> Result<()> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("tidelog"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = ApiVersionsRequest::VERSIONS.max;
        for _ in 0..2 {
            let body =
                self.roundtrip_raw::<ApiVersionsRequest>(&req, version, Some(Duration::ZERO))?;
            let code = body.clone().try_get_i16().unwrap_or(0);
            let decode_version = if code == UNSUPPORTED_VERSION {
                0
            } else {
                version
            };
            let resp =
                ApiVersionsResponse::decode(&mut body.clone(), decode_version).map_err(|e| {
                    ClientError::Protocol(format!("ApiVersions v{decode_version} response: {e}"))
                })?;
            self.broker_versions = resp
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect();
            if code != UNSUPPORTED_VERSION {
                return super::error::check(resp.error_code, None, || {
                    format!("ApiVersions to {}", self.addr)
                });
            }
            let Some(v) = self.version_of(ApiKey::ApiVersions as i16, ApiVersionsRequest::VERSIONS)
            else {
                break;
            };
            version = v;
        }
        Err(ClientError::Unsupported(format!(
            "{} speaks no ApiVersions version this client knows",
            self.addr
        )))
    }

    /// The highest version of API `key` both sides speak, if any.
    fn version_of(&self, key: i16, ours: VersionRange) -> Option<i16> {
        common_version(&self.broker_versions, key, ours)
    }

    /// Whether the broker offers any version of `R` that this client speaks.
    pub fn supports<R: Request>(&self) -> bool {
        self.version_of(R::KEY, R::VERSIONS).is_some()
    }

    /// The version this connection uses for `R`: the highest both sides speak.
    pub fn version<R: Request>(&self) -> Result<i16> {
        self.version_of(R::KEY, R::VERSIONS).ok_or_else(|| {
            let name = api_name(R::KEY);
            let theirs = self
                .broker_versions
                .get(&R::KEY)
                .map_or_else(|| "none".to_owned(), |(lo, hi)| format!("v{lo}..v{hi}"));
            ClientError::Unsupported(format!(
                "{name}: broker {} offers {theirs}, this client speaks {}",
                self.addr,
                R::VERSIONS
            ))
        })
    }

    /// Sends `req` at the negotiated version and returns the decoded response.
    ///
    /// `broker_wait` is how long the request itself asks the broker to wait (a fetch's
    /// `max_wait_ms`, a produce's `timeout_ms`); the read timeout adds slack to it.
    pub fn send<R: Request>(
        &mut self,
        req: &R,
        broker_wait: Duration,
    ) -> Result<(i16, R::Response)> {
        let version = self.version::<R>()?;
        let mut body = self.roundtrip_raw(req, version, Some(broker_wait))?;
        let resp = R::Response::decode(&mut body, version).map_err(|e| {
            ClientError::Protocol(format!(
                "{:?} v{version} response from {}: {e}",
                api_name(R::KEY),
                self.addr
            ))
        })?;
        Ok((version, resp))
    }

    /// Sends `req` at the negotiated version and expects no response (produce with acks=0).
    pub fn send_oneway<R: Request>(&mut self, req: &R) -> Result<()> {
        let version = self.version::<R>()?;
        self.roundtrip_raw(req, version, None).map(drop)
    }

    /// Writes one request frame and, unless `wait` is `None`, reads the matching response body
    /// (after its header).
    fn roundtrip_raw<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        wait: Option<Duration>,
    ) -> Result<Bytes> {
        let correlation_id = self.correlation_id_next;
        self.correlation_id_next = self.correlation_id_next.wrapping_add(1);
        let frame = encode_request(req, version, correlation_id, &self.client_id)?;
        let io_err = |addr: &str, source| ClientError::Io {
            addr: addr.to_owned(),
            source,
        };
        self.stream
            .write_all(&frame)
            .map_err(|e| io_err(&self.addr, e))?;
        let Some(wait) = wait else {
            return self
                .stream
                .flush()
                .map(|_| Bytes::new())
                .map_err(|e| io_err(&self.addr, e));
        };
        self.stream
            .set_read_timeout(Some(wait + RESPONSE_TIMEOUT_SLACK))
            .map_err(|e| io_err(&self.addr, e))?;
        let frame = read_frame(&mut self.stream).map_err(|e| io_err(&self.addr, e))?;
        decode_response_header::<R>(frame, version, correlation_id)
    }
}

/// The highest version of API `key` in both the broker's advertised range and ours, if any.
fn common_version(broker: &HashMap<i16, (i16, i16)>, key: i16, ours: VersionRange) -> Option<i16> {
    let &(min, max) = broker.get(&key)?;
    let low = min.max(ours.min);
    let high = max.min(ours.max);
    (low <= high).then_some(high)
}

/// The Kafka name of an API key, for messages.
pub fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| format!("API {key}"), |k| format!("{k:?}"))
}

/// Encodes a whole request frame: size prefix, request header (at the header version Kafka
/// pairs with this API version), body.
pub fn encode_request<R: Request>(
    req: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let header_version = R::header_version(version);
    let encode_err = |e| encode_error(R::KEY, version, e);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .map_err(encode_err)?;
    req.encode(&mut buf, version).map_err(encode_err)?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| {
        ClientError::Protocol(format!("request of {} bytes is too large", buf.len()))
    })?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}

fn encode_error(key: i16, version: i16, e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(format!("encoding {} v{version}: {e}", api_name(key)))
}

/// Reads one size-prefixed frame, refusing sizes outside `0..=RESPONSE_BYTES_MAX` before
/// allocating.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Bytes> {
    let mut size = [0u8; 4];
    r.read_exact(&mut size)?;
    let size = i32::from_be_bytes(size);
    if size < 0 || size as usize > RESPONSE_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("response frame size {size} is outside 0..={RESPONSE_BYTES_MAX}"),
        ));
    }
    let mut body = vec![0u8; size as usize];
    r.read_exact(&mut body)?;
    Ok(Bytes::from(body))
}

/// Strips and checks the response header, returning the body.
pub fn decode_response_header<R: Request>(
    mut frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<Bytes> {
    let header_version = R::Response::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| ClientError::Protocol(format!("{} response header: {e}", api_name(R::KEY))))?;
    if header.correlation_id != correlation_id {
        return Err(ClientError::Protocol(format!(
            "{} response has correlation id {}, expected {correlation_id}",
            api_name(R::KEY),
            header.correlation_id
        )));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse, ProduceRequest};
    use kafka_protocol::protocol::decode_request_header_from_buffer;

    /// A request decodes on the broker side with the header version Kafka pairs with it.
    #[test]
    fn request_frames_decode_as_a_broker_would() {
        let id = StrBytes::from_static_str("cli");
        for version in [0, 8, 9, 12] {
            let req = MetadataRequest::default().with_topics(None);
            let mut frame = encode_request(&req, version, 7, &id).unwrap().freeze();
            let size = frame.get_i32();
            assert_eq!(size as usize, frame.len());
            let header = decode_request_header_from_buffer(&mut frame).unwrap();
            assert_eq!(header.request_api_key, ApiKey::Metadata as i16);
            assert_eq!(header.request_api_version, version);
            assert_eq!(header.correlation_id, 7);
            assert_eq!(header.client_id.as_deref(), Some("cli"));
            let back = MetadataRequest::decode(&mut frame, version).unwrap();
            assert_eq!(back, req);
            assert!(frame.is_empty());
        }
    }

    #[test]
    fn response_headers_are_checked() {
        for version in [4, 9, 12] {
            let resp = MetadataResponse::default().with_controller_id(3.into());
            let mut buf = BytesMut::new();
            let hv = MetadataResponse::header_version(version);
            ResponseHeader::default()
                .with_correlation_id(5)
                .encode(&mut buf, hv)
                .unwrap();
            resp.encode(&mut buf, version).unwrap();
            let frame = buf.freeze();
            let mut body =
                decode_response_header::<MetadataRequest>(frame.clone(), version, 5).unwrap();
            assert_eq!(MetadataResponse::decode(&mut body, version).unwrap(), resp);
            let err = decode_response_header::<MetadataRequest>(frame, version, 6).unwrap_err();
            assert!(
                err.to_string().contains("correlation id 5, expected 6"),
                "{err}"
            );
        }
    }

    #[test]
    fn frame_sizes_are_bounded_before_allocation() {
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut huge).is_err());
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut negative).is_err());
        let mut ok: &[u8] = &[0, 0, 0, 2, 9, 9, 1];
        assert_eq!(&read_frame(&mut ok).unwrap()[..], &[9, 9]);
    }

    #[test]
    fn version_is_the_highest_common_one() {
        let key = ApiKey::Produce as i16;
        let ours = ProduceRequest::VERSIONS;
        let mut broker = HashMap::new();
        assert_eq!(common_version(&broker, key, ours), None);
        broker.insert(key, (0, 9));
        assert_eq!(common_version(&broker, key, ours), Some(9));
        broker.insert(key, (0, 99));
        assert_eq!(common_version(&broker, key, ours), Some(ours.max));
        broker.insert(key, (0, 2));
        assert_eq!(common_version(&broker, key, ours), None);
    }
}

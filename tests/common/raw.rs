//! A raw Kafka connection for protocol tests: send any request at any version, send arbitrary
//! bytes, and observe whether the broker answered or closed the connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tidelog::client::conn::{decode_response_header, encode_request, read_frame};

pub struct Raw {
    pub stream: TcpStream,
    correlation_id: i32,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            correlation_id: 1,
        }
    }

    /// Sends `req` at `version` and decodes the response.
    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        self.send::<R>(req, version);
        self.receive::<R>(version)
    }

    /// Sends `req` at `version` without reading the response.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) {
        self.correlation_id += 1;
        let frame = encode_request(
            req,
            version,
            self.correlation_id,
            &StrBytes::from_static_str("raw-test"),
        )
        .expect("encode");
        self.stream.write_all(&frame).expect("write");
    }

    /// Reads the response to the last request sent.
    pub fn receive<R: Request>(&mut self, version: i16) -> R::Response {
        let frame = read_frame(&mut self.stream).expect("response frame");
        let mut body =
            decode_response_header::<R>(frame, version, self.correlation_id).expect("header");
        R::Response::decode(&mut body, version).expect("response body")
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        // The broker may already have closed; a failed write shows up in `closed()`.
        let _ = self.stream.write_all(bytes);
    }

    /// Whether the broker closed the connection (EOF or reset) within five seconds. A read
    /// that times out means the connection is still open.
    pub fn closed(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        let r = self.stream.read(&mut b);
        self.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        match r {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

pub fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// One RecordBatch v2 holding `values`, optionally from an idempotent producer.
pub fn batch(values: &[&str], producer: Option<(i64, i16, i32)>, timestamp: i64) -> Bytes {
    let (producer_id, producer_epoch, base_seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch whenever offset - sequence changes, so even a
            // non-idempotent batch numbers its records.
            sequence: base_seq.max(0) + i as i32,
            timestamp: timestamp + i as i64,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

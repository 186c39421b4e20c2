//! Bad input: each gets Kafka's error or a closed connection, and every other client keeps
//! being served.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::raw::{batch, topic, Raw};
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, FetchRequest, MetadataRequest, ProduceRequest,
};
use kafka_protocol::protocol::Decodable;
use tidelog::error::ErrorCode;

/// The broker still answers a well-formed request on a fresh connection.
fn assert_serving(broker: &Broker) {
    let mut ok = Raw::connect(&broker.addr());
    let r = ok.call(&MetadataRequest::default(), 12);
    assert_eq!(r.brokers.len(), 1, "broker stopped serving");
}

/// A request frame: size prefix, header v1 (key, version, correlation id, client id), body.
fn frame(api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    let len = 2 + 2 + 4 + 2 + body.len();
    f.extend_from_slice(&(len as i32).to_be_bytes());
    f.extend_from_slice(&api_key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&7i32.to_be_bytes());
    f.extend_from_slice(&(-1i16).to_be_bytes());
    f.extend_from_slice(body);
    f
}

#[test]
fn garbage_unknown_keys_bad_versions_and_malformed_bodies_close_only_that_connection() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", {
            let mut g = 60i32.to_be_bytes().to_vec();
            g.extend((0..60u8).map(|i| i.wrapping_mul(37).wrapping_add(91)));
            g
        }),
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        ("unknown api key", frame(999, 0, &[])),
        ("metadata version out of range", frame(3, 13, &[0, 0])),
        (
            "produce v2 (advertised, not served)",
            frame(0, 2, &[0, 1, 0, 0, 0, 0]),
        ),
        ("malformed produce body", frame(0, 9, &[0xff, 0x01, 0x02])),
        (
            "huge array count",
            frame(3, 4, &[0x7f, 0xff, 0xff, 0xff, 1]),
        ),
        (
            "huge compact array count",
            frame(3, 12, &[0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0]),
        ),
    ];
    for (what, bytes) in cases {
        let mut c = Raw::connect(&broker.addr());
        c.send_bytes(&bytes);
        assert!(c.closed(), "{what}: connection left open");
        assert_serving(&broker);
    }
}

#[test]
fn api_versions_at_an_unknown_version_answers_v0_with_unsupported_version() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    c.send_bytes(&frame(18, 99, &[]));
    let mut body = tidelog::client::conn::read_frame(&mut c.stream).expect("answered");
    let header = kafka_protocol::messages::ResponseHeader::decode(&mut body, 0).unwrap();
    assert_eq!(header.correlation_id, 7);
    let r = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(
        r.error_code,
        ErrorCode::UnsupportedVersion.code(),
        "UNSUPPORTED_VERSION"
    );
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 4));
    // The same connection then negotiates normally.
    let r = c.call(&ApiVersionsRequest::default(), 3);
    assert_eq!(r.error_code, 0);
}

#[test]
fn oversized_size_prefix_is_refused_before_the_body_arrives() {
    let broker =
        Broker::start_with(BrokerOptions::default().set("socket.request.max.bytes", "10000"));
    let mut c = Raw::connect(&broker.addr());
    c.send_bytes(&2_000_000_000i32.to_be_bytes());
    assert!(c.closed(), "oversized prefix accepted");
    assert_serving(&broker);
}

#[test]
fn truncated_frame_then_disconnect_is_harmless() {
    let broker = Broker::start();
    {
        let mut c = Raw::connect(&broker.addr());
        let f = frame(3, 4, &[0, 0, 0, 0, 1]);
        c.send_bytes(&f[..f.len() - 3]);
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(c.closed());
    }
    assert_serving(&broker);
}

#[test]
fn connections_past_max_connections_are_closed_and_others_served() {
    let broker = Broker::start_with(
        BrokerOptions::default()
            .shards(2)
            .set("max.connections", "20"),
    );
    let conns: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(broker.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut refused = 0;
    for mut c in conns.iter() {
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 1];
        if matches!(std::io::Read::read(&mut c, &mut b), Ok(0) | Err(_)) && is_closed_now(c) {
            refused += 1;
        }
    }
    assert!(
        refused >= 30,
        "only {refused} of 60 connections were refused with max.connections=20"
    );
    drop(conns);
    std::thread::sleep(Duration::from_millis(200));
    assert_serving(&broker);
}

/// Tells a closed connection (EOF) from one that merely had nothing to read.
fn is_closed_now(mut c: &TcpStream) -> bool {
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut b = [0u8; 1];
    matches!(std::io::Read::read(&mut c, &mut b), Ok(0))
}

#[test]
fn a_client_that_sends_without_reading_does_not_stall_others() {
    let broker = Broker::start_with(BrokerOptions::default().shards(1));
    broker.cli_ok(&["topic", "create", "big"], b"");
    let mut p = Raw::connect(&broker.addr());
    let value = "v".repeat(100_000);
    for _ in 0..40 {
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic("big"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&[&value], None, 1)))])]);
        p.call(&req, 9);
    }
    // A stalled consumer: pipelines large fetches of the whole topic and never reads.
    let mut stalled = Raw::connect(&broker.addr());
    for _ in 0..50 {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(50 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic("big"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(50 << 20)])]);
        stalled.send(&req, 11);
    }
    stalled.stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The one shard must keep serving everyone else promptly.
    let start = Instant::now();
    for _ in 0..20 {
        assert_serving(&broker);
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "other clients stalled: {:?}",
        start.elapsed()
    );
    drop(stalled);
}

#[test]
fn acks_0_gets_no_response_and_a_failed_append_closes_the_connection() {
    let broker = Broker::start();
    broker.cli_ok(&["topic", "create", "fire"], b"");
    let produce = |records: bytes::Bytes| {
        ProduceRequest::default()
            .with_acks(0)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic("fire"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])])
    };
    let mut c = Raw::connect(&broker.addr());
    c.send(&produce(batch(&["a"], None, 1)), 9);
    // No response to acks=0: the next answer on this connection is the Metadata response.
    let r = c.call(&MetadataRequest::default(), 12);
    assert_eq!(r.brokers.len(), 1);
    let mut corrupt = batch(&["b"], None, 1).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    c.send(&produce(bytes::Bytes::from(corrupt)), 9);
    assert!(
        c.closed(),
        "a failed acks=0 append must close the connection"
    );
    assert_serving(&broker);
    let out = broker.cli_ok(
        &[
            "consume",
            "fire",
            "--from-beginning",
            "--timeout-ms",
            "1000",
        ],
        b"",
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["a"]);
}

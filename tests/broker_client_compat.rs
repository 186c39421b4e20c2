//! Where current clients found tidelog answering differently from Kafka (issue 10, items 5, 7
//! and 8), at the wire level: bytes after a request body, transactional clients that must
//! fail fast, manual replica assignments, and authorized operations without an authorizer.

mod common;

use std::io::Write;

use common::raw::{topic, Raw};
use common::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use tidelog::client::conn::{decode_response_header, encode_request, read_frame};

/// Kafka's bit fields for every operation on a topic and on the cluster (no authorizer).
const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);
const NOT_REQUESTED: i32 = i32::MIN;
/// tidelog's default `node.id`.
const NODE: i32 = 1;

/// Sends `req` with `extra` bytes after its body (the size prefix counts them, as librdkafka's
/// does) and decodes the answer.
fn call_with_trailing_bytes<R: Request>(
    c: &mut Raw,
    req: &R,
    version: i16,
    extra: &[u8],
) -> R::Response {
    const CORRELATION_ID: i32 = 7_000;
    let mut frame = encode_request(
        req,
        version,
        CORRELATION_ID,
        &StrBytes::from_static_str("trailing"),
    )
    .expect("encode");
    frame.extend_from_slice(extra);
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    c.stream.write_all(&frame).expect("write");
    let response = read_frame(&mut c.stream).expect("an answer, not a closed connection");
    let mut body = decode_response_header::<R>(response, version, CORRELATION_ID).expect("header");
    R::Response::decode(&mut body, version).expect("body")
}

#[test]
fn bytes_after_a_request_body_are_ignored_for_every_api() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    let extra = [0u8, 0, 0];
    // librdkafka 2.15/2.16's "all topics" Metadata v12.
    let r = call_with_trailing_bytes(
        &mut c,
        &MetadataRequest::default().with_topics(None),
        12,
        &extra,
    );
    assert_eq!(r.brokers.len(), 1);
    let r = call_with_trailing_bytes(&mut c, &ApiVersionsRequest::default(), 3, &extra);
    assert_eq!(r.error_code, 0);
    let r = call_with_trailing_bytes(
        &mut c,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic("t"))
            .with_num_partitions(2)
            .with_replication_factor(1)]),
        7,
        b"more than three trailing bytes",
    );
    assert_eq!(r.topics[0].error_code, 0);
    // A non-flexible version, too.
    let r = call_with_trailing_bytes(
        &mut c,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic("t")))
        ])),
        4,
        &extra,
    );
    assert_eq!(r.topics[0].partitions.len(), 2);
    let r = call_with_trailing_bytes(
        &mut c,
        &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
        2,
        &extra,
    );
    assert_eq!(r.error_code, 0);
    // The connection is still the same one, in step.
    let r = c.call(&ApiVersionsRequest::default(), 3);
    assert_eq!(r.error_code, 0);
}

#[test]
fn a_transactional_id_finds_its_coordinator_here_and_other_key_types_are_refused() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    let txn = StrBytes::from_static_str("my-txn");
    for v in 1..=3 {
        let r = c.call(
            &FindCoordinatorRequest::default()
                .with_key(txn.clone())
                .with_key_type(1),
            v,
        );
        assert_eq!((r.error_code, r.node_id.0), (0, NODE), "v{v}");
    }
    for v in 4..=6 {
        let r = c.call(
            &FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![txn.clone()]),
            v,
        );
        let found = &r.coordinators[0];
        assert_eq!((found.error_code, found.node_id.0), (0, NODE), "v{v}");
    }
    // A key type Kafka has no coordinator for here (share groups) or does not know.
    for key_type in [2, 9] {
        let r = c.call(
            &FindCoordinatorRequest::default()
                .with_key_type(key_type)
                .with_coordinator_keys(vec![txn.clone()]),
            6,
        );
        assert_eq!(
            r.coordinators[0].error_code,
            ResponseError::InvalidRequest.code(),
            "key type {key_type}"
        );
    }
    let init = |c: &mut Raw, timeout_ms: i32, current: (i64, i16)| {
        c.call(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(txn.clone())))
                .with_transaction_timeout_ms(timeout_ms)
                .with_producer_id(ProducerId(current.0))
                .with_producer_epoch(current.1),
            4,
        )
    };
    let first = init(&mut c, 60_000, (-1, -1));
    assert_eq!((first.error_code, first.producer_epoch), (0, 0));
    // Each initialisation bumps the epoch, fencing the previous producer; KIP-360's bump
    // must name the current epoch.
    let second = init(&mut c, 60_000, (-1, -1));
    assert_eq!(
        (second.producer_id, second.producer_epoch),
        (first.producer_id, 1)
    );
    let stale = init(&mut c, 60_000, (first.producer_id.0, 0));
    assert_eq!(stale.error_code, ResponseError::ProducerFenced.code());
    // Kafka's transaction.max.timeout.ms (15 minutes) bounds the timeout.
    let too_long = init(&mut c, 900_001, (-1, -1));
    assert_eq!(
        too_long.error_code,
        ResponseError::InvalidTransactionTimeout.code()
    );
    // Groups still have their coordinator.
    let r = c.call(
        &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
        3,
    );
    assert_eq!((r.error_code, r.node_id.0), (0, NODE));
}

/// A manual replica assignment: (partition, its replicas).
type Assignment<'a> = &'a [(i32, &'a [i32])];

fn create_with_assignment(
    c: &mut Raw,
    name: &str,
    assignment: Assignment,
    partitions: i32,
    replication_factor: i16,
) -> create_topics_response::CreatableTopicResult {
    let assignments = assignment
        .iter()
        .map(|(p, brokers)| {
            CreatableReplicaAssignment::default()
                .with_partition_index(*p)
                .with_broker_ids(brokers.iter().map(|b| BrokerId(*b)).collect())
        })
        .collect();
    let mut r = c.call(
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_assignments(assignments)]),
        7,
    );
    r.topics.remove(0)
}

#[test]
fn create_topics_accepts_a_valid_manual_assignment_and_refuses_invalid_ones() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    // librdkafka's test 0081 shape: {0:[1], 1:[1]} with -1 counts.
    let r = create_with_assignment(&mut c, "assigned", &[(0, &[NODE]), (1, &[NODE])], -1, -1);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!((r.num_partitions, r.replication_factor), (2, 1));
    let m = c.call(
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic("assigned")))
        ])),
        12,
    );
    assert_eq!(m.topics[0].partitions.len(), 2);

    let invalid_request = ResponseError::InvalidRequest.code();
    let invalid_assignment = ResponseError::InvalidReplicaAssignment.code();
    let cases: &[(&str, Assignment, i32, i16, i16)] = &[
        ("count given", &[(0, &[NODE])], 1, -1, invalid_request),
        ("factor given", &[(0, &[NODE])], -1, 1, invalid_request),
        (
            "other broker",
            &[(0, &[NODE + 1])],
            -1,
            -1,
            invalid_assignment,
        ),
        ("no replicas", &[(0, &[])], -1, -1, invalid_assignment),
        (
            "broker twice",
            &[(0, &[NODE, NODE])],
            -1,
            -1,
            invalid_assignment,
        ),
        (
            "gap",
            &[(0, &[NODE]), (2, &[NODE])],
            -1,
            -1,
            invalid_assignment,
        ),
        (
            "repeat",
            &[(0, &[NODE]), (0, &[NODE])],
            -1,
            -1,
            invalid_assignment,
        ),
    ];
    for (i, (what, assignment, partitions, rf, expected)) in cases.iter().enumerate() {
        let name = format!("bad-{i}");
        let r = create_with_assignment(&mut c, &name, assignment, *partitions, *rf);
        assert_eq!(r.error_code, *expected, "{what}: {:?}", r.error_message);
        assert!(r.error_message.is_some(), "{what}");
    }
    // None of the refused topics exists.
    let m = c.call(&MetadataRequest::default().with_topics(None), 12);
    let names: Vec<&str> = m
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.as_str()))
        .collect();
    assert_eq!(names, ["assigned"]);
}

#[test]
fn metadata_and_describe_cluster_return_authorized_operations_when_asked() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    create_with_assignment(&mut c, "ops", &[(0, &[NODE])], -1, -1);
    // The cluster's operations are in Metadata v8-10 only.
    let ask = |topic_ops: bool, cluster_ops: bool| {
        MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic("ops")))
            ]))
            .with_include_topic_authorized_operations(topic_ops)
            .with_include_cluster_authorized_operations(cluster_ops)
    };
    let r = c.call(&ask(true, true), 10);
    assert_eq!(r.topics[0].topic_authorized_operations, TOPIC_OPERATIONS);
    assert_eq!(r.cluster_authorized_operations, CLUSTER_OPERATIONS);
    let r = c.call(&ask(true, false), 12);
    assert_eq!(r.topics[0].topic_authorized_operations, TOPIC_OPERATIONS);
    let r = c.call(&ask(false, false), 10);
    assert_eq!(r.topics[0].topic_authorized_operations, NOT_REQUESTED);
    assert_eq!(r.cluster_authorized_operations, NOT_REQUESTED);

    for v in 0..=1 {
        let r = c.call(
            &DescribeClusterRequest::default()
                .with_include_cluster_authorized_operations(true)
                .with_endpoint_type(1),
            v,
        );
        assert_eq!(r.cluster_authorized_operations, CLUSTER_OPERATIONS, "v{v}");
        let r = c.call(&DescribeClusterRequest::default().with_endpoint_type(1), v);
        assert_eq!(r.cluster_authorized_operations, NOT_REQUESTED, "v{v}");
    }
}

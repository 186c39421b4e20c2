//! Golden bytes: requests captured from real Kafka clients by tests/fixtures/golden/capture.py
//! (which clients, which versions and how: tests/fixtures/golden/README.md), decoded here as
//! the broker decodes them. Each fixture is one whole request frame, size prefix included.
//!
//! - every frame: the broker's own header decoder (`protocol::request::decode_request`), then
//!   the body with kafka-protocol at the captured version;
//! - Produce: every record batch through the broker's produce checks (CRC included) and the
//!   shared codec's record walk, each record's fields asserted;
//! - JoinGroup, SyncGroup, OffsetCommit: the consumer-protocol payloads through the shared group
//!   client (`protocol::consumer_group`).
//!
//! Every client ran the same flow (clients/ beside the fixtures): three records per codec to
//! partition 0 of `golden` (key `k<i>`, value `<codec>-<i>`, header `h` = `x<i>`, timestamp
//! `TS0 + i`; values padded with 100 dots, since librdkafka, kafka-python and franz-go send
//! a batch uncompressed when compression would not shrink it), then one consumer in group `golden-group` with the range assignor read them all
//! and committed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use tidelog::api::decode_request;
use tidelog::log::batch::{validate_batch, validate_produce, ValidateOptions};
use tidelog::protocol::batch;
use tidelog::protocol::bodies::decode_any;
use tidelog::protocol::consumer_group::{self, Assignment};

const TS0: i64 = 1_700_000_000_000;
const TOPIC: &str = "golden";
const GROUP: &str = "golden-group";
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// One captured client: its fixture directory, the client id it ran with, the codecs its flow
/// produced and whether its flow produced idempotently.
struct Client {
    dir: &'static str,
    client_id: &'static str,
    codecs: &'static [&'static str],
    idempotent: bool,
}

const CLIENTS: &[Client] = &[
    Client {
        dir: "kafka-python-2.0.2",
        client_id: "golden-kafka-python",
        codecs: &["none", "gzip"],
        idempotent: false,
    },
    Client {
        dir: "kafka-python-3.0.12",
        client_id: "golden-kafka-python",
        codecs: &["none", "gzip"],
        idempotent: true,
    },
    Client {
        dir: "librdkafka-2.16.0",
        client_id: "golden-librdkafka",
        codecs: &CODECS,
        idempotent: true,
    },
    Client {
        dir: "librdkafka-2.12.1",
        client_id: "golden-rdkafka",
        codecs: &CODECS,
        idempotent: true,
    },
    Client {
        dir: "java-4.1.2",
        client_id: "golden-java",
        codecs: &CODECS,
        idempotent: true,
    },
    Client {
        dir: "java-3.9.2",
        client_id: "golden-java",
        codecs: &CODECS,
        idempotent: true,
    },
    Client {
        dir: "franz-go-1.21.5",
        client_id: "golden-franz-go",
        codecs: &CODECS,
        idempotent: true,
    },
];

/// A captured request: file name, API key and version (from the name), and the frame.
struct Frame {
    name: String,
    key: ApiKey,
    version: i16,
    bytes: Bytes,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

/// The frames of one client, in capture order.
fn frames(client: &Client) -> Vec<Frame> {
    let dir = root().join(client.dir);
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "{}: no fixtures", dir.display());
    names
        .into_iter()
        .map(|name| {
            let bytes = Bytes::from(fs::read(dir.join(&name)).unwrap());
            // NNN-<ApiName>-v<version>.bin
            let stem = name.trim_end_matches(".bin");
            let (rest, version) = stem.rsplit_once("-v").expect("-v<version>");
            let api = rest.split_once('-').expect("NNN-").1;
            let key = api_key(api);
            let version = version.parse().expect("version");
            Frame {
                name: format!("{}/{name}", client.dir),
                key,
                version,
                bytes,
            }
        })
        .collect()
}

fn api_key(name: &str) -> ApiKey {
    (0..=i16::MAX)
        .filter_map(|k| ApiKey::try_from(k).ok())
        .find(|k| format!("{k:?}") == name)
        .unwrap_or_else(|| panic!("unknown API name {name}"))
}

/// Decodes `body` as the request type of `key` at `version`: the bytes left after it.
fn body_left(key: ApiKey, mut body: Bytes, version: i16) -> Result<usize, String> {
    macro_rules! decode {
        ($t:ty) => {
            <$t>::decode(&mut body, version)
                .map(|_| body.len())
                .map_err(|e| e.to_string())
        };
    }
    match key {
        ApiKey::ApiVersions => decode!(ApiVersionsRequest),
        ApiKey::Metadata => decode!(MetadataRequest),
        ApiKey::InitProducerId => decode!(InitProducerIdRequest),
        ApiKey::Produce => decode!(ProduceRequest),
        ApiKey::Fetch => decode!(FetchRequest),
        ApiKey::ListOffsets => decode!(ListOffsetsRequest),
        ApiKey::FindCoordinator => decode!(FindCoordinatorRequest),
        ApiKey::JoinGroup => decode!(JoinGroupRequest),
        ApiKey::SyncGroup => decode!(SyncGroupRequest),
        ApiKey::Heartbeat => decode!(HeartbeatRequest),
        ApiKey::LeaveGroup => decode!(LeaveGroupRequest),
        ApiKey::OffsetFetch => decode!(OffsetFetchRequest),
        ApiKey::OffsetCommit => decode!(OffsetCommitRequest),
        ApiKey::OffsetForLeaderEpoch => decode!(OffsetForLeaderEpochRequest),
        ApiKey::DescribeConfigs => decode!(DescribeConfigsRequest),
        ApiKey::DescribeCluster => decode!(DescribeClusterRequest),
        other => Err(format!("{other:?}: no body type in this test")),
    }
}

/// The frame's header checked and its body decoded at the captured version, both by the
/// broker's own path and by the body type directly: the bytes left after the body.
fn decode(client: &Client, f: &Frame) -> usize {
    let size = i32::from_be_bytes(f.bytes[..4].try_into().unwrap());
    assert_eq!(size as usize, f.bytes.len() - 4, "{}: size prefix", f.name);
    let req = decode_request(f.bytes.slice(4..))
        .unwrap_or_else(|e| panic!("{}: the broker refuses the header: {e:?}", f.name));
    assert_eq!(req.api_key, f.key, "{}", f.name);
    assert_eq!(req.version(), f.version, "{}", f.name);
    assert_eq!(
        req.header.client_id.as_deref(),
        Some(client.client_id),
        "{}",
        f.name
    );
    match decode_any(&req) {
        Some(Ok(())) => {}
        other => panic!("{}: the broker's body decoder says {other:?}", f.name),
    }
    body_left(f.key, req.body.clone(), f.version)
        .unwrap_or_else(|e| panic!("{}: body does not decode: {e}", f.name))
}

fn present(clients: &[Client]) -> impl Iterator<Item = &Client> {
    clients.iter().filter(|c| root().join(c.dir).is_dir())
}

#[test]
fn every_captured_request_decodes_at_its_version() {
    let mut seen = 0;
    for client in present(CLIENTS) {
        for f in frames(client) {
            let left = decode(client, &f);
            // Kafka ignores bytes after a fully read body, and so does the broker (see
            // protocol::request), but none of these clients sends any.
            assert_eq!(left, 0, "{}: bytes after the body", f.name);
            seen += 1;
        }
    }
    assert!(seen > 50, "only {seen} fixtures");
}

/// The codec name a batch's attributes give, as the flows spell it in their values.
fn codec_name(h: &batch::BatchHeader) -> &'static str {
    CODECS[h.compression() as usize]
}

/// Walks one produced batch as the broker would store it, returning `(codec, values)`.
fn walk_produced(client: &Client, name: &str, b: &[u8]) -> (&'static str, Vec<String>) {
    let h = validate_produce(b, 1 << 20)
        .unwrap_or_else(|e| panic!("{name}: the broker refuses the batch: {e}"));
    assert_eq!(batch::check_stored(b), Some(h), "{name}: CRC");
    assert_eq!(h.magic, batch::MAGIC_V2);
    assert!(!h.is_control() && !h.is_transactional(), "{name}");
    assert_eq!(h.producer_id >= 0, client.idempotent, "{name}: {h:?}");
    if client.idempotent {
        assert!(
            h.base_sequence >= 0 && h.producer_epoch >= 0,
            "{name}: {h:?}"
        );
    }
    // A compressed batch is walked as the broker rewrites it for an uncompressed topic.
    let opts = ValidateOptions {
        target_codec: Some(0),
        ..ValidateOptions::new(1 << 20)
    };
    let validated =
        validate_batch(b, &opts).unwrap_or_else(|e| panic!("{name}: records refused: {e}"));
    let plain = validated.rewritten.as_deref().unwrap_or(b);
    let ph = batch::check_stored(plain).expect("rewritten batch is valid");
    assert_eq!(ph.compression(), 0);
    assert_eq!(ph.record_count, h.record_count);
    let mut walk = batch::records(plain).expect("uncompressed");
    let mut values = Vec::new();
    for (i, r) in walk.by_ref().enumerate() {
        assert_eq!(r.offset_delta, i as i64, "{name}");
        let value = String::from_utf8(r.value.expect("a value").to_vec()).unwrap();
        // The padding that makes every batch worth compressing.
        let value = value.trim_end_matches('.').to_owned();
        let n: i64 = value.rsplit_once('-').unwrap().1.parse().unwrap();
        assert_eq!(r.key, Some(format!("k{n}").as_bytes()), "{name}");
        assert_eq!(ph.base_timestamp + r.timestamp_delta, TS0 + n, "{name}");
        let x = format!("x{n}");
        assert_eq!(
            r.headers().expect("well-formed headers"),
            [(&b"h"[..], Some(x.as_bytes()))],
            "{name}"
        );
        values.push(value);
    }
    assert!(walk.complete(), "{name}: bytes after the last record");
    assert_eq!(values.len() as i32, h.record_count, "{name}");
    assert_eq!(ph.max_timestamp, TS0 + values.len() as i64 - 1, "{name}");
    (codec_name(&h), values)
}

#[test]
fn produced_batches_pass_the_broker_and_walk_with_the_shared_codec() {
    for client in present(CLIENTS) {
        let mut values = Vec::new();
        for f in frames(client).iter().filter(|f| f.key == ApiKey::Produce) {
            let mut body = decode_request(f.bytes.slice(4..)).unwrap().body;
            let req = ProduceRequest::decode(&mut body, f.version).unwrap();
            for t in &req.topic_data {
                assert_eq!(t.name.0.as_str(), TOPIC, "{}", f.name);
                for p in &t.partition_data {
                    assert_eq!(p.index, 0, "{}", f.name);
                    let records = p.records.as_ref().expect("records");
                    let (codec, vs) = walk_produced(client, &f.name, records);
                    for v in vs {
                        assert!(v.starts_with(&format!("{codec}-")), "{}: {v}", f.name);
                        values.push(v);
                    }
                }
            }
        }
        values.sort();
        let mut want: Vec<String> = client
            .codecs
            .iter()
            .flat_map(|c| (0..3).map(move |i| format!("{c}-{i}")))
            .collect();
        want.sort();
        assert_eq!(values, want, "{}", client.dir);
    }
}

#[test]
fn group_payloads_decode_with_the_shared_group_client() {
    for client in present(CLIENTS) {
        let (mut joins, mut leader_syncs, mut commits) = (0, 0, 0);
        for f in frames(client) {
            let mut body = decode_request(f.bytes.slice(4..)).unwrap().body;
            match f.key {
                ApiKey::JoinGroup => {
                    let req = JoinGroupRequest::decode(&mut body, f.version).unwrap();
                    assert_eq!(req.group_id.0.as_str(), GROUP);
                    assert_eq!(req.protocol_type.as_str(), consumer_group::PROTOCOL_TYPE);
                    let range = req
                        .protocols
                        .iter()
                        .find(|p| p.name.as_str() == consumer_group::RANGE_ASSIGNOR)
                        .unwrap_or_else(|| panic!("{}: no range protocol", f.name));
                    let topics = consumer_group::decode_subscription(range.metadata.clone())
                        .unwrap_or_else(|e| panic!("{}: {e}", f.name));
                    assert_eq!(topics, [TOPIC], "{}", f.name);
                    joins += 1;
                }
                ApiKey::SyncGroup => {
                    let req = SyncGroupRequest::decode(&mut body, f.version).unwrap();
                    assert_eq!(req.group_id.0.as_str(), GROUP);
                    for a in &req.assignments {
                        let got = consumer_group::decode_assignment(a.assignment.clone())
                            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
                        // One member: both partitions of `golden` are its own.
                        assert_eq!(got, Assignment::from([(TOPIC.to_owned(), vec![0, 1])]));
                        assert_eq!(a.member_id, req.member_id, "{}", f.name);
                        leader_syncs += 1;
                    }
                }
                ApiKey::OffsetCommit => {
                    let req = OffsetCommitRequest::decode(&mut body, f.version).unwrap();
                    assert_eq!(req.group_id.0.as_str(), GROUP);
                    let committed: BTreeMap<i32, i64> = req
                        .topics
                        .iter()
                        .filter(|t| t.name.0.as_str() == TOPIC)
                        .flat_map(|t| &t.partitions)
                        .map(|p| (p.partition_index, p.committed_offset))
                        .collect();
                    let produced = 3 * client.codecs.len() as i64;
                    assert_eq!(committed.get(&0), Some(&produced), "{}", f.name);
                    commits += 1;
                }
                _ => {}
            }
        }
        assert!(joins >= 1, "{}: no JoinGroup", client.dir);
        assert_eq!(leader_syncs, 1, "{}: one leader SyncGroup", client.dir);
        assert!(commits >= 1, "{}: no OffsetCommit", client.dir);
    }
}

/// Every client in the table has fixtures, so a fixture directory lost in a merge fails here
/// rather than quietly shrinking what the tests above check.
#[test]
fn every_listed_client_has_fixtures() {
    for client in CLIENTS {
        assert!(root().join(client.dir).is_dir(), "{} missing", client.dir);
    }
}

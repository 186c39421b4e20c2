//! The API registry: the one list of every Kafka API the broker serves. Each entry names the API
//! key, the versions served (and, for Produce, the lower version advertised) and its handler, a
//! module `src/api/<handler>.rs` with
//! `pub async fn handle(shard: &Rc<Shard>, req: &Request, session: &Session)`.
//!
//! Everything that depends on which APIs exist is driven from this list:
//!
//! - the version check: [`route`] refuses an unknown key, or a version outside the entry, before
//!   anything past the first eight bytes of the frame is decoded;
//! - dispatch: the entry [`route`] finds carries its handler, and `ApiSpec::handle` calls it;
//! - ApiVersions: [`advertised`] lists the entries in the order written here.
//!
//! The `registry!` macro expands the list into the table, [`APIS`], and a private `Handler`
//! enum with one variant per entry, which every entry holds and whose dispatch `match` is
//! exhaustive. So an API in the table without a handler cannot compile (its module is missing),
//! and there is no run-time fallback for a key that has no handler. Redpanda's `handlers.h`
//! request-type list is the model.
//!
//! Adding an API takes a line here, its handler file, its request body type in
//! `protocol::bodies` (a unit test there walks this table), and its minimal request in
//! `tests/api_registry.rs`, which sends every entry at its lowest and highest version to the real
//! broker and fails on an entry it has no request for.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiKey;

use super::{Outcome, Session};
use crate::protocol::request::{decode_header, peek_header, Request, RequestError};
use crate::shard::Shard;

/// One registry entry: an API the broker serves, what it advertises and accepts, and the
/// handler that serves it.
#[derive(Clone, Copy, Debug)]
pub struct ApiSpec {
    pub key: ApiKey,
    /// The lowest version advertised in ApiVersions.
    pub advertised_min: i16,
    /// The lowest version actually served. Below it (but at or above `advertised_min`) the
    /// request is refused.
    pub min: i16,
    pub max: i16,
    handler: Handler,
}

impl ApiSpec {
    /// Whether `version` of this API is served (not merely advertised).
    pub const fn serves(&self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }

    /// Serves `req`, which [`route`] matched to this entry.
    pub(super) async fn handle(
        &self,
        shard: &Rc<Shard>,
        req: &Request,
        session: &Session,
    ) -> Result<Outcome, RequestError> {
        self.handler.call(shard, req, session).await
    }
}

/// Expands the list below into [`APIS`] and the `Handler` enum with its dispatch. An entry is
/// `Key min..=max => handler;` with `advertised from N` after the range where ApiVersions
/// advertises lower than the broker serves. `Key` is the `ApiKey` variant, `handler` the module
/// under `src/api/`. Doc comments on an entry document its `Handler` variant.
macro_rules! registry {
    // The advertised minimum: `advertised from N` where given, else the served minimum.
    (@advertised $first:literal $($rest:literal)?) => {
        $first
    };
    ($(
        $(#[$attr:meta])*
        $key:ident $min:literal ..= $max:literal $(advertised from $advertised:literal)?
            => $handler:ident;
    )*) => {
        /// Which handler serves an entry: one variant per entry, named after its API.
        #[derive(Clone, Copy, Debug)]
        enum Handler {
            $( $(#[$attr])* $key, )*
        }

        impl Handler {
            async fn call(
                self,
                shard: &Rc<Shard>,
                req: &Request,
                session: &Session,
            ) -> Result<Outcome, RequestError> {
                match self {
                    $( Handler::$key => super::$handler::handle(shard, req, session).await, )*
                }
            }
        }

        /// Every API the broker serves, with the versions it implements and tests, in the
        /// order ApiVersions lists them.
        pub const APIS: &[ApiSpec] = &[
            $(
                ApiSpec {
                    key: ApiKey::$key,
                    advertised_min: registry!(@advertised $($advertised)? $min),
                    min: $min,
                    max: $max,
                    handler: Handler::$key,
                },
            )*
        ];
    };
}

registry! {
    /// Advertised from v0 as Kafka 4 does, because librdkafka before 2.11.1 stops compressing
    /// when Produce v0-2 are not advertised; v0-2 themselves are refused.
    Produce                 3..=11 advertised from 0 => produce;
    Fetch                   4..=16 => fetch;
    ListOffsets             1..=7  => list_offsets;
    Metadata                0..=12 => metadata;
    OffsetCommit            2..=9  => offset_commit;
    OffsetFetch             1..=9  => offset_fetch;
    FindCoordinator         0..=6  => find_coordinator;
    JoinGroup               0..=9  => join_group;
    Heartbeat               0..=4  => heartbeat;
    LeaveGroup              0..=5  => leave_group;
    SyncGroup               0..=5  => sync_group;
    DescribeGroups          0..=5  => describe_groups;
    ListGroups              0..=5  => list_groups;
    ApiVersions             0..=4  => api_versions;
    CreateTopics            2..=7  => create_topics;
    DeleteTopics            1..=6  => delete_topics;
    InitProducerId          0..=5  => init_producer_id;
    OffsetForLeaderEpoch    2..=4  => offset_for_leader_epoch;
    DeleteGroups            0..=2  => delete_groups;
    OffsetDelete            0..=0  => offset_delete;
    DescribeConfigs         1..=4  => describe_configs;
    AlterConfigs            0..=2  => alter_configs;
    IncrementalAlterConfigs 0..=1  => incremental_alter_configs;
    CreatePartitions        0..=3  => create_partitions;
    DeleteRecords           0..=2  => delete_records;
    DescribeCluster         0..=1  => describe_cluster;
    DescribeLogDirs         1..=4  => describe_log_dirs;
    DescribeQuorum          0..=2  => describe_quorum;
    ElectLeaders            0..=2  => elect_leaders;
    AlterPartitionReassignments 0..=1 => alter_partition_reassignments;
    ListPartitionReassignments  0..=0 => list_partition_reassignments;
    WriteTxnMarkers         1..=1  => write_txn_markers;
    AddPartitionsToTxn      0..=3  => add_partitions_to_txn;
    AddOffsetsToTxn         0..=3  => add_offsets_to_txn;
    EndTxn                  0..=4  => end_txn;
    TxnOffsetCommit         0..=3  => txn_offset_commit;
    DescribeTransactions    0..=0  => describe_transactions;
    ListTransactions        0..=1  => list_transactions;
}

// Every entry's ranges are ordered, and no key has two entries (lookup would hide the second).
const _: () = {
    let mut i = 0;
    while i < APIS.len() {
        let a = &APIS[i];
        assert!(a.advertised_min <= a.min && a.min <= a.max);
        let mut j = i + 1;
        while j < APIS.len() {
            assert!(a.key as i16 != APIS[j].key as i16);
            j += 1;
        }
        i += 1;
    }
};

/// The entry of a served API key, or `None` when the broker does not implement it.
pub fn lookup(api_key: i16) -> Option<&'static ApiSpec> {
    APIS.iter().find(|a| a.key as i16 == api_key)
}

/// The ApiVersions key list.
pub fn advertised() -> Vec<ApiVersion> {
    APIS.iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.advertised_min)
                .with_max_version(a.max)
        })
        .collect()
}

/// Checks a frame against the registry, then decodes its header; the body is left to the
/// handler, which knows its type. Returns the entry that serves the request with it.
pub fn route(frame: Bytes) -> Result<(&'static ApiSpec, Request), RequestError> {
    let prefix = peek_header(&frame).ok_or(RequestError::Truncated)?;
    let spec = lookup(prefix.api_key).ok_or(RequestError::UnknownApiKey {
        api_key: prefix.api_key,
        correlation_id: prefix.correlation_id,
    })?;
    if !spec.serves(prefix.api_version) {
        return Err(RequestError::UnsupportedVersion {
            api_key: spec.key,
            version: prefix.api_version,
            correlation_id: prefix.correlation_id,
        });
    }
    Ok((spec, decode_header(frame, spec.key, prefix)?))
}

/// [`route`] without the entry: a frame decoded as the broker decodes it, for the fuzz target,
/// benchmarks and tests.
pub fn decode_request(frame: Bytes) -> Result<Request, RequestError> {
    route(frame).map(|(_, req)| req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, RequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn every_served_version_is_known_to_the_codec() {
        for a in APIS {
            let v = a.key.valid_versions();
            assert!(
                v.min <= a.min && a.max <= v.max,
                "{:?} {}..{} vs {}",
                a.key,
                a.min,
                a.max,
                v
            );
        }
    }

    /// The ApiVersions key list as it was before the registry drove it, entry for entry:
    /// clients pick versions (and librdkafka features) from it, so it changes only on purpose.
    #[test]
    fn advertised_versions_are_unchanged() {
        let expected: &[(ApiKey, i16, i16)] = &[
            (ApiKey::Produce, 0, 11),
            (ApiKey::Fetch, 4, 16),
            (ApiKey::ListOffsets, 1, 7),
            (ApiKey::Metadata, 0, 12),
            (ApiKey::OffsetCommit, 2, 9),
            (ApiKey::OffsetFetch, 1, 9),
            (ApiKey::FindCoordinator, 0, 6),
            (ApiKey::JoinGroup, 0, 9),
            (ApiKey::Heartbeat, 0, 4),
            (ApiKey::LeaveGroup, 0, 5),
            (ApiKey::SyncGroup, 0, 5),
            (ApiKey::DescribeGroups, 0, 5),
            (ApiKey::ListGroups, 0, 5),
            (ApiKey::ApiVersions, 0, 4),
            (ApiKey::CreateTopics, 2, 7),
            (ApiKey::DeleteTopics, 1, 6),
            (ApiKey::InitProducerId, 0, 5),
            (ApiKey::OffsetForLeaderEpoch, 2, 4),
            (ApiKey::DeleteGroups, 0, 2),
            (ApiKey::OffsetDelete, 0, 0),
            (ApiKey::DescribeConfigs, 1, 4),
            (ApiKey::AlterConfigs, 0, 2),
            (ApiKey::IncrementalAlterConfigs, 0, 1),
            (ApiKey::CreatePartitions, 0, 3),
            (ApiKey::DeleteRecords, 0, 2),
            (ApiKey::DescribeCluster, 0, 1),
            (ApiKey::DescribeLogDirs, 1, 4),
            (ApiKey::DescribeQuorum, 0, 2),
            (ApiKey::ElectLeaders, 0, 2),
            (ApiKey::AlterPartitionReassignments, 0, 1),
            (ApiKey::ListPartitionReassignments, 0, 0),
            (ApiKey::WriteTxnMarkers, 1, 1),
            (ApiKey::AddPartitionsToTxn, 0, 3),
            (ApiKey::AddOffsetsToTxn, 0, 3),
            (ApiKey::EndTxn, 0, 4),
            (ApiKey::TxnOffsetCommit, 0, 3),
            (ApiKey::DescribeTransactions, 0, 0),
            (ApiKey::ListTransactions, 0, 1),
        ];
        let got: Vec<(i16, i16, i16)> = advertised()
            .iter()
            .map(|a| (a.api_key, a.min_version, a.max_version))
            .collect();
        let want: Vec<(i16, i16, i16)> = expected
            .iter()
            .map(|&(k, min, max)| (k as i16, min, max))
            .collect();
        assert_eq!(got, want);
        // Only Produce is advertised below what it serves.
        for a in APIS {
            let expected_min = if a.key == ApiKey::Produce {
                3
            } else {
                a.advertised_min
            };
            assert_eq!(a.min, expected_min, "{:?}", a.key);
        }
    }

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

    /// A header alone (an empty body) for `key` at `version`.
    fn header_only(key: ApiKey, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        buf.freeze()
    }

    #[test]
    fn every_served_version_routes_to_its_entry_and_no_other_version_does() {
        for spec in APIS {
            for version in spec.min..=spec.max {
                let (found, req) = route(header_only(spec.key, version)).unwrap();
                assert_eq!(found.key, spec.key);
                // The macro names each handler after its key.
                assert_eq!(format!("{:?}", found.handler), format!("{:?}", spec.key));
                assert_eq!((req.api_key, req.version()), (spec.key, version));
            }
            for version in [spec.advertised_min - 1, spec.min - 1, spec.max + 1] {
                if version >= 0 && !(spec.min..=spec.max).contains(&version) {
                    assert!(
                        matches!(
                            route(header_only(spec.key, version)),
                            Err(RequestError::UnsupportedVersion { .. })
                        ),
                        "{:?} v{version}",
                        spec.key
                    );
                }
            }
        }
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

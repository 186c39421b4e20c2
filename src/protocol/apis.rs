//! The one table of supported APIs and versions. It drives dispatch (a request outside it is
//! refused before its body is decoded) and the ApiVersions response.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiKey;

/// One supported API: what we advertise and what we accept.
#[derive(Clone, Copy, Debug)]
pub struct ApiSpec {
    pub key: ApiKey,
    /// The lowest version advertised in ApiVersions.
    pub advertised_min: i16,
    /// The lowest version actually served. Below it (but at or above `advertised_min`) the
    /// request is refused: Produce is advertised from 0 as Kafka 4 does, because librdkafka
    /// before 2.11.1 stops compressing when Produce v0-2 are not advertised.
    pub min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiSpec {
    ApiSpec {
        key,
        advertised_min: min,
        min,
        max,
    }
}

/// Every API the broker implements, with the versions it implements and tests.
pub const APIS: &[ApiSpec] = &[
    ApiSpec {
        key: ApiKey::Produce,
        advertised_min: 0,
        min: 3,
        max: 11,
    },
    api(ApiKey::Fetch, 4, 16),
    api(ApiKey::ListOffsets, 1, 7),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::DescribeCluster, 0, 1),
    api(ApiKey::DescribeLogDirs, 1, 4),
];

/// The spec of a supported API key, or `None` when the broker does not implement it.
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

// The crate must be able to decode every version we claim to serve.
const _: () = {
    let mut i = 0;
    while i < APIS.len() {
        assert!(APIS[i].advertised_min <= APIS[i].min && APIS[i].min <= APIS[i].max);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

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
}

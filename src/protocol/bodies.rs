//! Every request body type the broker decodes, by API key: the same types the handlers in
//! `src/api/` pass to [`Request::decode_body`]. For the fuzz target and the tests that walk
//! every API and version with hostile bytes; the broker itself dispatches to typed handlers.

use kafka_protocol::messages::*;

use super::request::{Request, RequestError};

/// Decodes `req`'s body as its handler would and drops it. `None` when the key has no entry
/// here, which the unit test below forbids for every key in the API registry
/// (`api::registry`).
pub fn decode_any(req: &Request) -> Option<Result<(), RequestError>> {
    fn ok<T>(r: Result<T, RequestError>) -> Option<Result<(), RequestError>> {
        Some(r.map(drop))
    }
    match req.api_key {
        ApiKey::Produce => ok(req.decode_body::<ProduceRequest>()),
        ApiKey::Fetch => ok(req.decode_body::<FetchRequest>()),
        ApiKey::ListOffsets => ok(req.decode_body::<ListOffsetsRequest>()),
        ApiKey::Metadata => ok(req.decode_body::<MetadataRequest>()),
        ApiKey::OffsetCommit => ok(req.decode_body::<OffsetCommitRequest>()),
        ApiKey::OffsetFetch => ok(req.decode_body::<OffsetFetchRequest>()),
        ApiKey::FindCoordinator => ok(req.decode_body::<FindCoordinatorRequest>()),
        ApiKey::JoinGroup => ok(req.decode_body::<JoinGroupRequest>()),
        ApiKey::Heartbeat => ok(req.decode_body::<HeartbeatRequest>()),
        ApiKey::LeaveGroup => ok(req.decode_body::<LeaveGroupRequest>()),
        ApiKey::SyncGroup => ok(req.decode_body::<SyncGroupRequest>()),
        ApiKey::DescribeGroups => ok(req.decode_body::<DescribeGroupsRequest>()),
        ApiKey::ListGroups => ok(req.decode_body::<ListGroupsRequest>()),
        // The broker answers ApiVersions from its header alone, but a client sends this body.
        ApiKey::ApiVersions => ok(req.decode_body::<ApiVersionsRequest>()),
        ApiKey::CreateTopics => ok(req.decode_body::<CreateTopicsRequest>()),
        ApiKey::DeleteTopics => ok(req.decode_body::<DeleteTopicsRequest>()),
        ApiKey::InitProducerId => ok(req.decode_body::<InitProducerIdRequest>()),
        ApiKey::OffsetForLeaderEpoch => ok(req.decode_body::<OffsetForLeaderEpochRequest>()),
        ApiKey::DeleteGroups => ok(req.decode_body::<DeleteGroupsRequest>()),
        ApiKey::OffsetDelete => ok(req.decode_body::<OffsetDeleteRequest>()),
        ApiKey::DescribeConfigs => ok(req.decode_body::<DescribeConfigsRequest>()),
        ApiKey::AlterConfigs => ok(req.decode_body::<AlterConfigsRequest>()),
        ApiKey::IncrementalAlterConfigs => ok(req.decode_body::<IncrementalAlterConfigsRequest>()),
        ApiKey::CreatePartitions => ok(req.decode_body::<CreatePartitionsRequest>()),
        ApiKey::DeleteRecords => ok(req.decode_body::<DeleteRecordsRequest>()),
        ApiKey::DescribeCluster => ok(req.decode_body::<DescribeClusterRequest>()),
        ApiKey::DescribeQuorum => ok(req.decode_body::<DescribeQuorumRequest>()),
        ApiKey::DescribeLogDirs => ok(req.decode_body::<DescribeLogDirsRequest>()),
        ApiKey::ElectLeaders => ok(req.decode_body::<ElectLeadersRequest>()),
        ApiKey::AlterPartitionReassignments => {
            ok(req.decode_body::<AlterPartitionReassignmentsRequest>())
        }
        ApiKey::ListPartitionReassignments => {
            ok(req.decode_body::<ListPartitionReassignmentsRequest>())
        }
        ApiKey::WriteTxnMarkers => ok(req.decode_body::<WriteTxnMarkersRequest>()),
        ApiKey::AddPartitionsToTxn => ok(req.decode_body::<AddPartitionsToTxnRequest>()),
        ApiKey::AddOffsetsToTxn => ok(req.decode_body::<AddOffsetsToTxnRequest>()),
        ApiKey::EndTxn => ok(req.decode_body::<EndTxnRequest>()),
        ApiKey::TxnOffsetCommit => ok(req.decode_body::<TxnOffsetCommitRequest>()),
        ApiKey::DescribeTransactions => ok(req.decode_body::<DescribeTransactionsRequest>()),
        ApiKey::ListTransactions => ok(req.decode_body::<ListTransactionsRequest>()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::api::registry::{decode_request, APIS};

    #[test]
    fn every_api_in_the_table_has_its_body_type() {
        for spec in APIS {
            // A header v1 with a null client id and no body: enough to reach the body decoder.
            let mut f = Vec::new();
            f.extend_from_slice(&(spec.key as i16).to_be_bytes());
            f.extend_from_slice(&spec.max.to_be_bytes());
            f.extend_from_slice(&1i32.to_be_bytes());
            f.extend_from_slice(&(-1i16).to_be_bytes());
            if spec.key.request_header_version(spec.max) >= 2 {
                f.push(0); // no tagged fields
            }
            let req = decode_request(Bytes::from(f)).expect("header decodes");
            assert!(
                decode_any(&req).is_some(),
                "{:?} has no body type",
                spec.key
            );
        }
    }
}

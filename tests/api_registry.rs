//! The API registry (`tidelog::api::registry`) against the real broker: every entry is sent at its
//! lowest and at its highest served version, as a minimal valid request built with
//! `kafka-protocol`, and its response is decoded with the matching response type at the
//! response header version Kafka pairs with that request version. An entry this file has no
//! request for fails the test, so a new API cannot join the table untested.

mod common;

use common::raw::{batch, topic, Raw};
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_quorum_request;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request as incremental;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use tidelog::api::APIS;
use tidelog::client::conn::{decode_response_header, encode_request, read_frame};
use tidelog::error::ErrorCode;

/// The topic the data-path APIs use: one partition, created before the walk.
const TOPIC: &str = "registry";
/// A group with a committed offset, created before the walk.
const GROUP: &str = "registry-group";
/// Kafka's `ConfigResource.Type.TOPIC`.
const RESOURCE_TOPIC: i8 = 2;
/// Kafka's `AlterConfigOp.OpType.SET`.
const OP_SET: i8 = 0;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn group(v: &str) -> GroupId {
    GroupId(s(v))
}

/// `code` must be `want`; `what` names the exchange in the failure message.
fn expect(code: i16, want: ErrorCode, what: &str) {
    assert_eq!(
        code,
        want.code(),
        "{what}: error code {code} ({:?}), expected {want:?}",
        ErrorCode::try_from_code(code)
    );
}

/// `code` must be "no error".
fn ok(code: i16, what: &str) {
    assert_eq!(
        code,
        tidelog::error::NONE,
        "{what}: error code {code} ({:?})",
        ErrorCode::try_from_code(code)
    );
}

/// What the walk needs to know about the broker's state.
struct Fixture {
    topic_id: uuid::Uuid,
}

fn set_up(c: &mut Raw) -> Fixture {
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic(TOPIC))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    ok(c.call(&create, 7).topics[0].error_code, "create the topic");
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic(TOPIC))),
    ]));
    let topic_id = c.call(&metadata, 12).topics[0].topic_id;
    let commit = OffsetCommitRequest::default()
        .with_group_id(group(GROUP))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic(TOPIC))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(0)])]);
    ok(
        c.call(&commit, 9).topics[0].partitions[0].error_code,
        "commit an offset",
    );
    Fixture { topic_id }
}

/// Sends the minimal request for `key` at `version` and checks the decoded answer.
fn exchange(c: &mut Raw, f: &Fixture, key: ApiKey, version: i16) {
    let what = format!("{key:?} v{version}");
    let what = what.as_str();
    match key {
        ApiKey::Produce => {
            let req = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic(TOPIC))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(&["r"], None, 1)))])]);
            let r = c.call(&req, version);
            ok(r.responses[0].partition_responses[0].error_code, what);
        }
        ApiKey::Fetch => {
            let req = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic(TOPIC))
                    .with_topic_id(f.topic_id)
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)])]);
            let r = c.call(&req, version);
            let p = &r.responses[0].partitions[0];
            ok(p.error_code, what);
            assert!(p.records.as_ref().is_some_and(|b| !b.is_empty()), "{what}");
        }
        ApiKey::ListOffsets => {
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic(TOPIC))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)])]);
            let r = c.call(&req, version);
            let p = &r.topics[0].partitions[0];
            ok(p.error_code, what);
            assert!(p.offset > 0, "{what}: latest offset {}", p.offset);
        }
        ApiKey::Metadata => {
            let req = MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic(TOPIC))),
            ]));
            let r = c.call(&req, version);
            assert_eq!(r.brokers.len(), 1, "{what}");
            ok(r.topics[0].error_code, what);
        }
        ApiKey::OffsetCommit => {
            let req = OffsetCommitRequest::default()
                .with_group_id(group(GROUP))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic(TOPIC))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)])]);
            let r = c.call(&req, version);
            ok(r.topics[0].partitions[0].error_code, what);
        }
        ApiKey::OffsetFetch => {
            let r = if version >= 8 {
                let req = OffsetFetchRequest::default().with_groups(vec![
                    OffsetFetchRequestGroup::default()
                        .with_group_id(group(GROUP))
                        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                            .with_name(topic(TOPIC))
                            .with_partition_indexes(vec![0])])),
                ]);
                let r = c.call(&req, version);
                ok(r.groups[0].error_code, what);
                r.groups[0].topics[0].partitions[0].committed_offset
            } else {
                let req = OffsetFetchRequest::default()
                    .with_group_id(group(GROUP))
                    .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(topic(TOPIC))
                        .with_partition_indexes(vec![0])]));
                let r = c.call(&req, version);
                ok(r.error_code, what);
                r.topics[0].partitions[0].committed_offset
            };
            assert!(r >= 0, "{what}: committed offset {r}");
        }
        ApiKey::FindCoordinator => {
            let req = FindCoordinatorRequest::default();
            let r = if version >= 4 {
                let r = c.call(&req.with_coordinator_keys(vec![s(GROUP)]), version);
                ok(r.coordinators[0].error_code, what);
                r.coordinators[0].port
            } else {
                let r = c.call(&req.with_key(s(GROUP)), version);
                ok(r.error_code, what);
                r.port
            };
            assert!(r > 0, "{what}");
        }
        ApiKey::JoinGroup => {
            // A new member of a new group: from v4 Kafka first hands out a member id.
            let req = JoinGroupRequest::default()
                .with_group_id(group(&format!("registry-join-v{version}")))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(s(""))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Default::default())]);
            let r = c.call(&req, version);
            if version >= 4 {
                expect(r.error_code, ErrorCode::MemberIdRequired, what);
            } else {
                ok(r.error_code, what);
                assert_eq!(r.leader, r.member_id, "{what}");
            }
            assert!(!r.member_id.is_empty(), "{what}");
        }
        ApiKey::Heartbeat => {
            let req = HeartbeatRequest::default()
                .with_group_id(group(GROUP))
                .with_generation_id(1)
                .with_member_id(s("nobody"));
            let r = c.call(&req, version);
            expect(r.error_code, ErrorCode::UnknownMemberId, what);
        }
        ApiKey::LeaveGroup => {
            let req = LeaveGroupRequest::default().with_group_id(group(GROUP));
            let r = if version >= 3 {
                let req =
                    req.with_members(vec![MemberIdentity::default().with_member_id(s("nobody"))]);
                let r = c.call(&req, version);
                ok(r.error_code, what);
                r.members[0].error_code
            } else {
                c.call(&req.with_member_id(s("nobody")), version).error_code
            };
            expect(r, ErrorCode::UnknownMemberId, what);
        }
        ApiKey::SyncGroup => {
            let req = SyncGroupRequest::default()
                .with_group_id(group(GROUP))
                .with_generation_id(1)
                .with_member_id(s("nobody"))
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range")));
            let r = c.call(&req, version);
            expect(r.error_code, ErrorCode::UnknownMemberId, what);
        }
        ApiKey::DescribeGroups => {
            let req = DescribeGroupsRequest::default().with_groups(vec![group(GROUP)]);
            let r = c.call(&req, version);
            ok(r.groups[0].error_code, what);
            assert_eq!(r.groups[0].group_id, group(GROUP), "{what}");
        }
        ApiKey::ListGroups => {
            let r = c.call(&ListGroupsRequest::default(), version);
            ok(r.error_code, what);
            assert!(
                r.groups.iter().any(|g| g.group_id == group(GROUP)),
                "{what}: {:?}",
                r.groups
            );
        }
        ApiKey::ApiVersions => {
            let r = c.call(&ApiVersionsRequest::default(), version);
            ok(r.error_code, what);
            let listed: Vec<(i16, i16, i16)> = r
                .api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version))
                .collect();
            let table: Vec<(i16, i16, i16)> = APIS
                .iter()
                .map(|a| (a.key as i16, a.advertised_min, a.max))
                .collect();
            assert_eq!(listed, table, "{what}");
        }
        ApiKey::CreateTopics => {
            let req = CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic(&format!("registry-new-v{version}")))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]);
            let r = c.call(&req, version);
            ok(r.topics[0].error_code, what);
        }
        ApiKey::DeleteTopics => {
            let name = topic(&format!("registry-gone-v{version}"));
            let create = CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(name.clone())
                    .with_num_partitions(1)
                    .with_replication_factor(1)]);
            ok(c.call(&create, 7).topics[0].error_code, what);
            let req = DeleteTopicsRequest::default().with_timeout_ms(5000);
            let req = if version >= 6 {
                req.with_topics(vec![DeleteTopicState::default().with_name(Some(name))])
            } else {
                req.with_topic_names(vec![name])
            };
            let r = c.call(&req, version);
            ok(r.responses[0].error_code, what);
        }
        ApiKey::InitProducerId => {
            let req = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000);
            let r = c.call(&req, version);
            ok(r.error_code, what);
            assert!(r.producer_id.0 >= 0, "{what}");
        }
        ApiKey::OffsetForLeaderEpoch => {
            let req = OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![OffsetForLeaderTopic::default()
                    .with_topic(topic(TOPIC))
                    .with_partitions(vec![OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(-1)
                        .with_leader_epoch(0)])]);
            let r = c.call(&req, version);
            ok(r.topics[0].partitions[0].error_code, what);
        }
        ApiKey::DeleteGroups => {
            let req =
                DeleteGroupsRequest::default().with_groups_names(vec![group("registry-none")]);
            let r = c.call(&req, version);
            expect(r.results[0].error_code, ErrorCode::GroupIdNotFound, what);
        }
        ApiKey::OffsetDelete => {
            let req = OffsetDeleteRequest::default()
                .with_group_id(group(GROUP))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(topic(TOPIC))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ])]);
            let r = c.call(&req, version);
            ok(r.error_code, what);
            ok(r.topics[0].partitions[0].error_code, what);
        }
        ApiKey::DescribeConfigs => {
            let req = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(s(TOPIC))
                    .with_configuration_keys(Some(vec![s("retention.ms")])),
            ]);
            let r = c.call(&req, version);
            ok(r.results[0].error_code, what);
            assert_eq!(r.results[0].configs.len(), 1, "{what}");
        }
        ApiKey::AlterConfigs => {
            let req = AlterConfigsRequest::default()
                .with_validate_only(true)
                .with_resources(vec![AlterConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(s(TOPIC))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("60000")))])]);
            let r = c.call(&req, version);
            ok(r.responses[0].error_code, what);
        }
        ApiKey::IncrementalAlterConfigs => {
            let req = IncrementalAlterConfigsRequest::default()
                .with_validate_only(true)
                .with_resources(vec![incremental::AlterConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(s(TOPIC))
                    .with_configs(vec![incremental::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_config_operation(OP_SET)
                        .with_value(Some(s("60000")))])]);
            let r = c.call(&req, version);
            ok(r.responses[0].error_code, what);
        }
        ApiKey::CreatePartitions => {
            let req = CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_validate_only(true)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_assignments(None)
                    .with_name(topic(TOPIC))
                    .with_count(2)]);
            let r = c.call(&req, version);
            ok(r.results[0].error_code, what);
        }
        ApiKey::DeleteRecords => {
            let req = DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(topic(TOPIC))
                    .with_partitions(vec![DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(0)])]);
            let r = c.call(&req, version);
            let p = &r.topics[0].partitions[0];
            ok(p.error_code, what);
            assert_eq!(p.low_watermark, 0, "{what}");
        }
        ApiKey::DescribeCluster => {
            let r = c.call(&DescribeClusterRequest::default(), version);
            ok(r.error_code, what);
            assert_eq!(r.brokers.len(), 1, "{what}");
        }
        ApiKey::DescribeLogDirs => {
            let r = c.call(
                &DescribeLogDirsRequest::default().with_topics(None),
                version,
            );
            ok(r.results[0].error_code, what);
            assert!(
                r.results[0].topics.iter().any(|t| t.name == topic(TOPIC)),
                "{what}"
            );
        }
        ApiKey::DescribeQuorum => {
            let req = DescribeQuorumRequest::default().with_topics(vec![
                describe_quorum_request::TopicData::default()
                    .with_topic_name(topic("__cluster_metadata"))
                    .with_partitions(vec![
                        describe_quorum_request::PartitionData::default().with_partition_index(0)
                    ]),
            ]);
            let r = c.call(&req, version);
            ok(r.error_code, what);
            let p = &r.topics[0].partitions[0];
            ok(p.error_code, what);
            assert_eq!(p.leader_id.0, 1, "{what}");
            assert_eq!(p.current_voters.len(), 1, "{what}");
            assert!(p.high_watermark > 0, "{what}: the test's topic is a record");
        }
        ApiKey::ElectLeaders => {
            // A single node leads every partition already.
            let req = ElectLeadersRequest::default()
                .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
                )
                .with_topic(topic(TOPIC))
                .with_partitions(vec![0])]))
                .with_timeout_ms(5000);
            let r = c.call(&req, version);
            let p = &r.replica_election_results[0].partition_result[0];
            expect(p.error_code, ErrorCode::ElectionNotNeeded, what);
        }
        ApiKey::AlterPartitionReassignments => {
            // On a single node the only replica list is this node's: a move there changes
            // nothing; any other broker is not registered; there is nothing to cancel.
            use alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
            let to = |replicas: Option<Vec<i32>>| {
                AlterPartitionReassignmentsRequest::default().with_topics(vec![
                    ReassignableTopic::default()
                        .with_name(topic(TOPIC))
                        .with_partitions(vec![ReassignablePartition::default()
                            .with_partition_index(0)
                            .with_replicas(
                                replicas.map(|r| r.into_iter().map(BrokerId).collect()),
                            )]),
                ])
            };
            for (replicas, want) in [
                (Some(vec![1]), None),
                (Some(vec![2]), Some(ErrorCode::InvalidReplicaAssignment)),
                (None, Some(ErrorCode::NoReassignmentInProgress)),
            ] {
                let r = c.call(&to(replicas), version);
                ok(r.error_code, what);
                let code = r.responses[0].partitions[0].error_code;
                match want {
                    None => ok(code, what),
                    Some(e) => expect(code, e, what),
                }
            }
        }
        ApiKey::ListPartitionReassignments => {
            let r = c.call(
                &ListPartitionReassignmentsRequest::default().with_topics(None),
                version,
            );
            ok(r.error_code, what);
            assert!(r.topics.is_empty(), "{what}: nothing in progress");
        }
        ApiKey::WriteTxnMarkers => {
            // An ABORT for a producer without a transaction here is written all the same (an
            // empty transaction, as in Kafka); an unknown partition is refused.
            use write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
            let marker = |partitions: Vec<i32>| {
                WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                    .with_producer_id(ProducerId(4242))
                    .with_producer_epoch(0)
                    .with_transaction_result(false)
                    .with_topics(vec![WritableTxnMarkerTopic::default()
                        .with_name(topic(TOPIC))
                        .with_partition_indexes(partitions)])])
            };
            let r = c.call(&marker(vec![0, 99]), version);
            let parts = &r.markers[0].topics[0].partitions;
            ok(parts[0].error_code, what);
            expect(
                parts[1].error_code,
                ErrorCode::UnknownTopicOrPartition,
                what,
            );
        }
        ApiKey::AddPartitionsToTxn => {
            // A producer id the transactional id never got: Kafka's answer for each partition.
            use add_partitions_to_txn_request::AddPartitionsToTxnTopic;
            let r = c.call(
                &AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(TransactionalId("t-registry".into()))
                    .with_v3_and_below_producer_id(ProducerId(4242))
                    .with_v3_and_below_producer_epoch(0)
                    .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                        .with_name(topic(TOPIC))
                        .with_partitions(vec![0])]),
                version,
            );
            let code =
                r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
            expect(code, ErrorCode::InvalidProducerIdMapping, what);
        }
        ApiKey::AddOffsetsToTxn => {
            let r = c.call(
                &AddOffsetsToTxnRequest::default()
                    .with_transactional_id(TransactionalId("t-registry".into()))
                    .with_producer_id(ProducerId(4242))
                    .with_group_id(GroupId("g-registry".into())),
                version,
            );
            expect(r.error_code, ErrorCode::InvalidProducerIdMapping, what);
        }
        ApiKey::EndTxn => {
            let r = c.call(
                &EndTxnRequest::default()
                    .with_transactional_id(TransactionalId("t-registry".into()))
                    .with_producer_id(ProducerId(4242))
                    .with_committed(true),
                version,
            );
            expect(r.error_code, ErrorCode::InvalidProducerIdMapping, what);
        }
        ApiKey::TxnOffsetCommit => {
            // Without member and generation, as v0-2 send it: held for the transaction.
            use txn_offset_commit_request::{
                TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
            };
            let r = c.call(
                &TxnOffsetCommitRequest::default()
                    .with_transactional_id(TransactionalId("t-registry".into()))
                    .with_group_id(GroupId("g-registry".into()))
                    .with_producer_id(ProducerId(4242))
                    .with_generation_id(-1)
                    .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                        .with_name(topic(TOPIC))
                        .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(1)])]),
                version,
            );
            ok(r.topics[0].partitions[0].error_code, what);
        }
        ApiKey::DescribeTransactions => {
            let r = c.call(
                &DescribeTransactionsRequest::default()
                    .with_transactional_ids(vec![TransactionalId("t-unknown".into())]),
                version,
            );
            let s = &r.transaction_states[0];
            expect(s.error_code, ErrorCode::TransactionalIdNotFound, what);
        }
        ApiKey::ListTransactions => {
            let r = c.call(
                &ListTransactionsRequest::default()
                    .with_state_filters(vec!["Ongoing".into(), "Sleeping".into()])
                    .with_duration_filter(-1),
                version,
            );
            ok(r.error_code, what);
            let unknown: Vec<&str> = r.unknown_state_filters.iter().map(|s| s.as_str()).collect();
            assert_eq!(unknown, ["Sleeping"], "{what}");
        }
        other => panic!(
            "{other:?} is in the API registry but tests/api_registry.rs has no request for it"
        ),
    }
}

#[test]
fn every_registry_entry_answers_at_its_lowest_and_highest_version() {
    let broker = Broker::start_with(
        BrokerOptions::default()
            .shards(2)
            .set("group.initial.rebalance.delay.ms", "0"),
    );
    let mut c = Raw::connect(&broker.addr());
    let fixture = set_up(&mut c);
    let mut exchanges = 0;
    for spec in APIS {
        for version in [spec.min, spec.max] {
            exchange(&mut c, &fixture, spec.key, version);
            exchanges += 1;
        }
    }
    assert_eq!(exchanges, 2 * APIS.len());
    // Every answer came back on the same connection, in order: nothing closed it.
    let r = c.call(&ApiVersionsRequest::default(), 3);
    ok(r.error_code, "ApiVersions after the walk");
}

/// A size-prefixed frame of `req` at `version`, then relabelled as `wire_version`: the way to
/// send a version `kafka-protocol` does not encode.
fn relabelled<R: kafka_protocol::protocol::Request>(
    req: &R,
    version: i16,
    wire_version: i16,
) -> Vec<u8> {
    let mut frame = encode_request(req, version, 9, &s("registry")).expect("encode");
    frame[6..8].copy_from_slice(&wire_version.to_be_bytes());
    frame.to_vec()
}

#[test]
fn versions_the_registry_does_not_serve_are_refused() {
    let broker = Broker::start();
    // ApiVersions above its range: UNSUPPORTED_VERSION and the key list in a v0 body (KIP-511).
    let api_versions = APIS
        .iter()
        .find(|a| a.key == ApiKey::ApiVersions)
        .expect("ApiVersions is in the registry");
    let mut c = Raw::connect(&broker.addr());
    c.send_bytes(&relabelled(
        &ApiVersionsRequest::default(),
        0,
        api_versions.max + 1,
    ));
    let frame = read_frame(&mut c.stream).expect("a response");
    let mut body = decode_response_header::<ApiVersionsRequest>(frame, 0, 9).expect("header v0");
    let r = ApiVersionsResponse::decode(&mut body, 0).expect("a v0 body");
    expect(
        r.error_code,
        ErrorCode::UnsupportedVersion,
        "ApiVersions too high",
    );
    assert_eq!(r.api_keys.len(), APIS.len());
    // Any other API outside its served range: the connection is closed, as Kafka does. Produce
    // v0-2 are advertised but not served.
    let produce = APIS.iter().find(|a| a.key == ApiKey::Produce).unwrap();
    assert!(produce.advertised_min < produce.min);
    for version in [produce.advertised_min, produce.min - 1, produce.max + 1] {
        let mut c = Raw::connect(&broker.addr());
        c.send_bytes(&relabelled(
            &ProduceRequest::default().with_acks(1),
            produce.min,
            version,
        ));
        assert!(c.closed(), "Produce v{version} is refused");
    }
}

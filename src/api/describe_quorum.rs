//! DescribeQuorum (admin API 55, what `kafka-metadata-quorum.sh describe` sends): the metadata
//! quorum of this node.
//!
//! One node is a quorum of one voter, itself, leading the metadata log (`__cluster_metadata`
//! partition 0) at epoch 1 (no election has ever been held), with the metadata records it has
//! applied as both its log end offset and the high watermark. Answered as Kafka's Raft leader
//! answers (`KafkaRaftClient.handleDescribeQuorumRequest`): a request for any other partition,
//! or for more than one, gets UNKNOWN_TOPIC_OR_PARTITION for each partition it names; the
//! leader's own fetch and caught-up times are now.
//!
//! In a cluster the answer is the Raft quorum's: the leader, its term as the epoch, the
//! applied index as the high watermark, and every voter with its replicated position as the
//! leader knows it. Kafka's brokers forward this request to the active controller; here any
//! node answers with what it knows, and a follower does not know the other voters'
//! positions (-1, as Kafka reports an unknown offset).

use std::rc::Rc;

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};

use super::{log_client_error, respond, str_bytes, Outcome, Session};
use crate::error::ErrorCode;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

/// The metadata log's topic and partition, as Kafka names them.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// The leader epoch of a quorum of one that has never held an election.
const LEADER_EPOCH: i32 = 1;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: DescribeQuorumRequest = req.decode_body()?;
    let valid = matches!(body.topics.as_slice(),
        [t] if t.topic_name.as_str() == METADATA_TOPIC
            && matches!(t.partitions.as_slice(), [p] if p.partition_index == 0));
    if !valid {
        let code = ErrorCode::UnknownTopicOrPartition;
        let msg = code.to_string();
        log_client_error(req, "describe quorum", code, "not __cluster_metadata-0");
        let topics = body
            .topics
            .iter()
            .map(|t| {
                TopicData::default()
                    .with_topic_name(t.topic_name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                PartitionData::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code.code())
                                    .with_error_message(Some(str_bytes(&msg)))
                            })
                            .collect(),
                    )
            })
            .collect();
        return respond(req, &DescribeQuorumResponse::default().with_topics(topics));
    }
    if let Some(cluster) = &shard.cluster {
        return respond(req, &cluster_answer(shard, cluster, req.version()));
    }
    let me = shard.config.node_id;
    let offset = shard.metadata().applied as i64;
    let now = crate::util::now_ms();
    let voter = ReplicaState::default()
        .with_replica_id(BrokerId(me))
        .with_log_end_offset(offset)
        .with_last_fetch_timestamp(now)
        .with_last_caught_up_timestamp(now);
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(me))
        .with_leader_epoch(LEADER_EPOCH)
        .with_high_watermark(offset)
        .with_current_voters(vec![voter]);
    let mut resp = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(str_bytes(METADATA_TOPIC).into())
        .with_partitions(vec![partition])]);
    if req.version() >= 2 {
        resp = resp.with_nodes(vec![Node::default()
            .with_node_id(BrokerId(me))
            .with_listeners(controller_listeners(shard))]);
    }
    respond(req, &resp)
}

/// A cluster's quorum as this node's Raft state shows it.
fn cluster_answer(
    shard: &Shard,
    cluster: &crate::cluster::Cluster,
    version: i16,
) -> DescribeQuorumResponse {
    let status = cluster.status();
    let now = crate::util::now_ms();
    let voters: Vec<ReplicaState> = shard
        .config
        .controller_quorum_voters
        .iter()
        .map(|v| {
            let position = status
                .progress
                .iter()
                .find(|(id, _)| *id == v.id as u64)
                .map_or(-1, |(_, matched)| *matched as i64);
            let caught_up = position >= 0 && position as u64 >= status.applied_index;
            ReplicaState::default()
                .with_replica_id(BrokerId(v.id))
                .with_log_end_offset(position)
                .with_last_fetch_timestamp(if position >= 0 { now } else { -1 })
                .with_last_caught_up_timestamp(if caught_up { now } else { -1 })
        })
        .collect();
    let leader = if status.leader == 0 {
        -1
    } else {
        status.leader as i32
    };
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(leader))
        .with_leader_epoch(status.term as i32)
        .with_high_watermark(status.applied_index as i64)
        .with_current_voters(voters);
    let mut resp = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(str_bytes(METADATA_TOPIC).into())
        .with_partitions(vec![partition])]);
    if version >= 2 {
        let nodes = shard
            .config
            .controller_quorum_voters
            .iter()
            .map(|v| {
                let listener = Listener::default()
                    .with_name(str_bytes(
                        shard
                            .config
                            .controller_listener_names
                            .first()
                            .map_or("CONTROLLER", String::as_str),
                    ))
                    .with_host(str_bytes(&v.host))
                    .with_port(v.port);
                Node::default()
                    .with_node_id(BrokerId(v.id))
                    .with_listeners(vec![listener])
            })
            .collect();
        resp = resp.with_nodes(nodes);
    }
    resp
}

/// This voter's endpoints: its controller listeners (advertised where given), as KRaft lists
/// them; none when the node has no controller listener (tidelog's own single node).
fn controller_listeners(shard: &Shard) -> Vec<Listener> {
    let c = &shard.config;
    c.listeners
        .iter()
        .filter(|l| c.controller_listener_names.contains(&l.name))
        .map(|l| {
            let shown = c
                .advertised_listeners
                .iter()
                .find(|a| a.name == l.name)
                .unwrap_or(l);
            Listener::default()
                .with_name(str_bytes(&l.name))
                .with_host(str_bytes(&shown.host))
                .with_port(shown.port)
        })
        .collect()
}

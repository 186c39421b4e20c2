//! One handler per Kafka API, a file each (`src/api/<api>.rs`), and the registry that ties them
//! to the wire: [`registry`] lists every API with the versions served and its handler, and
//! drives the version check, dispatch and the ApiVersions response. [`handle`] routes a frame
//! through it.

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod alter_partition_reassignments;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_quorum;
mod describe_transactions;
mod elect_leaders;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_partition_reassignments;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
pub mod registry;
mod sync_group;
pub mod txn_flow;
mod txn_offset_commit;
mod write_txn_markers;

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::protocol::fetch::Chunk;
use crate::protocol::request::{Request, RequestError};
use crate::protocol::response::encode_response;
use crate::shard::Shard;

pub use metadata::advertised;
pub use registry::{decode_request, ApiSpec, APIS};

/// What a handler may know of the connection a request came on.
#[derive(Clone, Debug, Default)]
pub struct Session {
    pub client_id: String,
    /// The peer address, as Kafka reports a member's `client_host` (`/127.0.0.1`).
    pub client_host: String,
}

/// What the connection does after a request.
pub enum Outcome {
    Respond(Vec<Chunk>),
    /// acks=0 produce: Kafka sends nothing back.
    NoResponse,
    /// Close the connection; the reason is logged with the client id.
    Close(String),
}

/// Handles one request frame. Never panics on client bytes: anything that does not decode
/// closes the connection with a logged reason.
pub async fn handle(shard: &Rc<Shard>, frame: Bytes, session: &mut Session) -> Outcome {
    let (api, req) = match registry::route(frame) {
        Ok(r) => r,
        Err(e @ RequestError::UnsupportedVersion { correlation_id, .. })
            if e.error_code().is_some() =>
        {
            return api_versions::unsupported_version(correlation_id);
        }
        Err(e) => return Outcome::Close(e.to_string()),
    };
    if let Some(id) = req.header.client_id.as_deref() {
        if session.client_id != id {
            session.client_id = id.to_string();
        }
    }
    api.handle(shard, &req, session)
        .await
        .unwrap_or_else(|e| Outcome::Close(e.to_string()))
}

/// Encodes `body` as the response to `req`.
fn respond<T: Encodable>(req: &Request, body: &T) -> Result<Outcome, RequestError> {
    match encode_response(req.api_key, req.version(), req.header.correlation_id, body) {
        Ok(b) => Ok(Outcome::Respond(vec![Chunk::Mem(b)])),
        Err(reason) => Err(RequestError::Malformed {
            api_key: req.api_key,
            version: req.version(),
            correlation_id: req.header.correlation_id,
            reason: format!("response does not encode: {reason}"),
        }),
    }
}

/// A response string field.
fn str_bytes(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A nullable request string field, owned.
fn opt_string(v: &Option<StrBytes>) -> Option<String> {
    v.as_ref().map(|x| x.to_string())
}

/// Logs one client-visible error, as every handler does for each error code it returns: at
/// debug level, summarised per client at WARN (`net::client_errors`).
fn log_client_error(req: &Request, what: &str, code: crate::error::ErrorCode, detail: &str) {
    crate::net::client_errors::report(
        req.header.client_id.as_deref().unwrap_or(""),
        format_args!("{:?}: {what}: {code:?}: {detail}", req.api_key),
    );
}

/// Kafka's `AclOperation` codes, the bit positions of an authorized-operations field.
mod acl_operation {
    pub const READ: u8 = 3;
    pub const WRITE: u8 = 4;
    pub const CREATE: u8 = 5;
    pub const DELETE: u8 = 6;
    pub const ALTER: u8 = 7;
    pub const DESCRIBE: u8 = 8;
    pub const CLUSTER_ACTION: u8 = 9;
    pub const DESCRIBE_CONFIGS: u8 = 10;
    pub const ALTER_CONFIGS: u8 = 11;
    pub const IDEMPOTENT_WRITE: u8 = 12;
}

/// The bit field Kafka builds from a set of operations (`Utils.to32BitField`).
const fn operations_bit_field(ops: &[u8]) -> i32 {
    let mut bits = 0;
    let mut i = 0;
    while i < ops.len() {
        bits |= 1 << ops[i];
        i += 1;
    }
    bits
}

/// What a client may do to a topic. Without an authorizer Kafka grants every operation that
/// applies to a topic (`AclEntry.supportedOperations(TOPIC)`), and so does this broker, which
/// has no ACLs yet.
pub const TOPIC_AUTHORIZED_OPERATIONS: i32 = {
    use acl_operation::*;
    operations_bit_field(&[
        READ,
        WRITE,
        CREATE,
        DESCRIBE,
        DELETE,
        ALTER,
        DESCRIBE_CONFIGS,
        ALTER_CONFIGS,
    ])
};

/// What a client may do to the cluster: every operation that applies to it
/// (`AclEntry.supportedOperations(CLUSTER)`), as Kafka answers without an authorizer.
pub const CLUSTER_AUTHORIZED_OPERATIONS: i32 = {
    use acl_operation::*;
    operations_bit_field(&[
        CREATE,
        CLUSTER_ACTION,
        DESCRIBE_CONFIGS,
        ALTER_CONFIGS,
        IDEMPOTENT_WRITE,
        ALTER,
        DESCRIBE,
    ])
};

/// An authorized-operations field the client did not ask for: Kafka's `Integer.MIN_VALUE`.
pub const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// The broker coordinating `group_id`: the leader of its partition of `__consumer_offsets`
/// (this node, on a single node). The topic is created first when it does not exist yet (as
/// Kafka does on first use); that is this handler-level step, not a side effect of the group
/// module's routing ([`crate::group::coordinator_shard`], a pure lookup), so `group` never
/// calls `admin`. COORDINATOR_NOT_AVAILABLE while the partition has no leader.
async fn group_coordinator(
    shard: &Rc<Shard>,
    group_id: &str,
) -> Result<i32, crate::error::ErrorCode> {
    use crate::group::store::{partition_for, OFFSETS_TOPIC};
    if shard.metadata().topic(OFFSETS_TOPIC).is_none() {
        let rf = offsets_replication_factor(shard)?;
        crate::admin::create_topics(shard, vec![offsets_topic(rf)], false).await;
    }
    let image = shard.metadata();
    let meta = image
        .topic(OFFSETS_TOPIC)
        .ok_or(crate::error::ErrorCode::CoordinatorNotAvailable)?;
    meta.leader(partition_for(group_id), shard.node_id())
        .ok_or(crate::error::ErrorCode::CoordinatorNotAvailable)
}

/// The shard coordinating `group_id`, for the group APIs; NOT_COORDINATOR when another broker
/// coordinates it (the client looks it up again).
async fn group_owner(shard: &Rc<Shard>, group_id: &str) -> Result<usize, crate::error::ErrorCode> {
    if group_coordinator(shard, group_id).await? != shard.node_id() {
        return Err(crate::error::ErrorCode::NotCoordinator);
    }
    crate::group::coordinator_shard(&shard.metadata(), shard.count(), group_id)
        .ok_or(crate::error::ErrorCode::CoordinatorNotAvailable)
}

/// The broker coordinating transactional id `id`: the leader of its partition of
/// `__transaction_state` (this node, on a single node), the topic created on first use as
/// Kafka does. COORDINATOR_NOT_AVAILABLE while the partition has no leader.
async fn txn_coordinator(shard: &Rc<Shard>, id: &str) -> Result<i32, crate::error::ErrorCode> {
    use crate::txn::TXN_STATE_TOPIC;
    if shard.metadata().topic(TXN_STATE_TOPIC).is_none() {
        let rf = internal_replication_factor(
            shard,
            shard.config.transaction_state_log_replication_factor,
        )?;
        crate::admin::create_topics(shard, vec![txn_state_topic(shard, rf)], false).await;
    }
    let image = shard.metadata();
    let meta = image
        .topic(TXN_STATE_TOPIC)
        .ok_or(crate::error::ErrorCode::CoordinatorNotAvailable)?;
    meta.leader(shard.txns.partition_for(id), shard.node_id())
        .ok_or(crate::error::ErrorCode::CoordinatorNotAvailable)
}

/// The shard coordinating transactional id `id`, for the transaction APIs; NOT_COORDINATOR
/// when another broker coordinates it (the client looks it up again).
async fn txn_owner(shard: &Rc<Shard>, id: &str) -> Result<usize, crate::error::ErrorCode> {
    if txn_coordinator(shard, id).await? != shard.node_id() {
        return Err(crate::error::ErrorCode::NotCoordinator);
    }
    let image = shard.metadata();
    let meta = image
        .topic(crate::txn::TXN_STATE_TOPIC)
        .ok_or(crate::error::ErrorCode::CoordinatorNotAvailable)?;
    Ok(shard.owner(meta, shard.txns.partition_for(id)))
}

/// `__transaction_state` as it is created: compacted, `transaction.state.log.num.partitions`
/// partitions, Kafka's 100 MiB segments, `rf` replicas.
fn txn_state_topic(shard: &Shard, rf: i16) -> crate::admin::NewTopic {
    use crate::config::OFFSETS_TOPIC_SEGMENT_BYTES;
    let configs = [
        ("cleanup.policy".to_string(), "compact".to_string()),
        (
            "segment.bytes".to_string(),
            OFFSETS_TOPIC_SEGMENT_BYTES.to_string(),
        ),
    ];
    crate::admin::NewTopic {
        name: crate::txn::TXN_STATE_TOPIC.to_string(),
        partitions: shard.config.transaction_state_log_num_partitions,
        replication_factor: rf,
        configs: configs.into_iter().collect(),
        assignment: None,
    }
}

/// A coordinator's PRODUCER_FENCED as a request version older than `fenced_from` says it:
/// INVALID_PRODUCER_EPOCH (Kafka's `KafkaApis` does the same mapping).
fn fenced_for(
    code: crate::error::ErrorCode,
    version: i16,
    fenced_from: i16,
) -> crate::error::ErrorCode {
    use crate::error::ErrorCode;
    match code {
        ErrorCode::ProducerFenced if version < fenced_from => ErrorCode::InvalidProducerEpoch,
        other => other,
    }
}

/// `offsets.topic.replication.factor` capped at the live brokers.
///
/// A combined node (`broker,controller`) counts every voter as a broker, since in that layout
/// they all are: a cluster still starting (not every voter registered yet) answers
/// COORDINATOR_NOT_AVAILABLE, which clients retry, instead of creating the topic with fewer
/// replicas for good. Once they have all registered, a broker that is down meanwhile only
/// lowers the factor to the live brokers, as the issue asks.
fn offsets_replication_factor(shard: &Shard) -> Result<i16, crate::error::ErrorCode> {
    internal_replication_factor(shard, shard.config.offsets_topic_replication_factor)
}

/// An internal topic's replication factor setting (`offsets.topic.replication.factor`,
/// `transaction.state.log.replication.factor`) capped at the live brokers, as above.
fn internal_replication_factor(shard: &Shard, wanted: i16) -> Result<i16, crate::error::ErrorCode> {
    if shard.cluster.is_none() {
        return Ok(1);
    }
    let image = shard.metadata();
    let combined = shard
        .config
        .process_roles
        .is_some_and(|r| r.broker && r.controller);
    if combined && image.brokers.len() < shard.config.controller_quorum_voters.len() {
        return Err(crate::error::ErrorCode::CoordinatorNotAvailable);
    }
    let live = i16::try_from(image.live_brokers().count()).unwrap_or(i16::MAX);
    Ok(wanted.min(live).max(1))
}

/// `__consumer_offsets` as it is created: compacted, with small segments.
fn offsets_topic(replication_factor: i16) -> crate::admin::NewTopic {
    use crate::config::{OFFSETS_TOPIC_PARTITIONS, OFFSETS_TOPIC_SEGMENT_BYTES};
    let configs = [
        ("cleanup.policy".to_string(), "compact".to_string()),
        (
            "segment.bytes".to_string(),
            OFFSETS_TOPIC_SEGMENT_BYTES.to_string(),
        ),
    ];
    crate::admin::NewTopic {
        name: crate::group::store::OFFSETS_TOPIC.to_string(),
        partitions: OFFSETS_TOPIC_PARTITIONS,
        // Kafka sizes it by offsets.topic.replication.factor, not default.replication.factor:
        // that many replicas, or every live broker when there are fewer (one on a single node).
        replication_factor,
        configs: configs.into_iter().collect(),
        assignment: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_operations_match_kafkas_bit_fields() {
        // READ..ALTER_CONFIGS for a topic; CREATE, ALTER, DESCRIBE, CLUSTER_ACTION,
        // DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE for the cluster.
        assert_eq!(TOPIC_AUTHORIZED_OPERATIONS, 3576);
        assert_eq!(CLUSTER_AUTHORIZED_OPERATIONS, 8096);
    }
}

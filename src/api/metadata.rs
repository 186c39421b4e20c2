//! Metadata: the one broker, and the topics asked for (auto-creating them when allowed).

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{
    log_client_error, respond, Outcome, Session, CLUSTER_AUTHORIZED_OPERATIONS,
    OPERATIONS_NOT_REQUESTED, TOPIC_AUTHORIZED_OPERATIONS,
};
use crate::admin::{self, NewTopic};
use crate::error::ErrorCode;
use crate::metadata::{is_internal_topic, validate_topic_name, TopicMeta};
use crate::protocol::request::{Request, RequestError};
use crate::shard::{Shard, LEADER_EPOCH};

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: MetadataRequest = req.decode_body()?;
    // v0 asks for every topic with an empty list; v1+ with null.
    let requested: Option<Vec<String>> = match &body.topics {
        None => None,
        Some(t) if t.is_empty() && req.version() == 0 => None,
        Some(t) => Some(
            t.iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    let auto_create = (req.version() < 4 || body.allow_auto_topic_creation)
        && shard.config.auto_create_topics_enable;
    let mut topics = Vec::new();
    match requested {
        None => {
            for t in shard.metadata().topics.values() {
                topics.push(topic_entry(shard, t));
            }
        }
        Some(names) => {
            if auto_create {
                auto_create_missing(shard, &names).await;
            }
            let image = shard.metadata();
            for name in names {
                match image.topic(&name) {
                    Some(t) => topics.push(topic_entry(shard, t)),
                    None => {
                        let code = if validate_topic_name(&name).is_err() {
                            ErrorCode::InvalidTopicException
                        } else {
                            ErrorCode::UnknownTopicOrPartition
                        };
                        log_client_error(req, "metadata", code, &name);
                        topics.push(
                            MetadataResponseTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string(name))))
                                .with_error_code(code.code())
                                .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED),
                        );
                    }
                }
            }
        }
    }
    // Kafka fills in the operations of every topic it answers for (known or not) when asked,
    // and the cluster's only at v8-10, the versions that carry the field.
    if body.include_topic_authorized_operations {
        for t in &mut topics {
            t.topic_authorized_operations = TOPIC_AUTHORIZED_OPERATIONS;
        }
    }
    let cluster_operations = if body.include_cluster_authorized_operations && req.version() <= 10 {
        CLUSTER_AUTHORIZED_OPERATIONS
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    let (host, port) = advertised(shard);
    let node = shard.config.node_id;
    let response = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(node))
            .with_host(StrBytes::from_string(host))
            .with_port(port)
            .with_rack(shard.config.broker_rack.as_deref().map(super::str_bytes))])
        .with_cluster_id(Some(StrBytes::from_string(
            shard.metadata().cluster_id.clone(),
        )))
        .with_controller_id(BrokerId(node))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_operations);
    respond(req, &response)
}

/// Creates, with the broker's defaults, the valid names that do not exist yet. Internal topic
/// names are left alone: the broker creates those itself, with the layout their coordinator
/// needs, and a default-configured one would break it.
pub async fn auto_create_missing(shard: &Rc<Shard>, names: &[String]) {
    let image = shard.metadata();
    let missing: Vec<NewTopic> = names
        .iter()
        .filter(|n| {
            image.topic(n).is_none() && validate_topic_name(n).is_ok() && !is_internal_topic(n)
        })
        .map(|n| NewTopic {
            name: n.clone(),
            partitions: -1,
            replication_factor: -1,
            configs: Default::default(),
        })
        .collect();
    if !missing.is_empty() {
        // A concurrent creation of the same name is fine: the topic exists either way.
        admin::create_topics(shard, missing, false).await;
    }
}

fn topic_entry(shard: &Shard, t: &TopicMeta) -> MetadataResponseTopic {
    let node = BrokerId(shard.config.node_id);
    let partitions = (0..t.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(LEADER_EPOCH)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.to_string()))))
        .with_topic_id(t.id)
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
        .with_is_internal(is_internal_topic(&t.name))
}

/// The host and port clients should connect to.
pub fn advertised(shard: &Shard) -> (String, i32) {
    if let Some((h, p)) = &shard.config.advertised_listener {
        return (h.clone(), i32::from(*p));
    }
    let addr = shard.config.listen;
    let host = if addr.ip().is_unspecified() {
        hostname()
    } else {
        addr.ip().to_string()
    };
    (host, i32::from(addr.port()))
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

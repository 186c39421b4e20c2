//! Metadata: the brokers, and the topics asked for (auto-creating them when allowed). On a
//! single node the one broker leads every partition; in a cluster the brokers and leaders
//! are the image's (`MetadataImage::leader`).

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
use crate::shard::Shard;

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
    let brokers = brokers(shard)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(StrBytes::from_string))
        })
        .collect();
    let response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(
            shard.metadata().cluster_id.clone(),
        )))
        .with_controller_id(BrokerId(controller_id(shard)))
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
            assignment: None,
        })
        .collect();
    if !missing.is_empty() {
        // A concurrent creation of the same name is fine: the topic exists either way.
        admin::create_topics(shard, missing, false).await;
    }
}

fn topic_entry(shard: &Shard, t: &TopicMeta) -> MetadataResponseTopic {
    let image = shard.metadata();
    let node = shard.node_id();
    let partitions = (0..t.partitions)
        .map(|p| {
            let ids = |list: Vec<i32>| list.into_iter().map(BrokerId).collect::<Vec<_>>();
            let replicas = t.replicas(p, node);
            // Kafka lists the replicas on brokers that are fenced or gone as offline (one in
            // controlled shutdown still serves).
            let offline = replicas
                .iter()
                .copied()
                .filter(|&b| {
                    shard.cluster.is_some() && image.brokers.get(&b).is_none_or(|b| b.fenced)
                })
                .collect();
            let leader = t.leader(p, node);
            // An offline partition (its replicas fenced): no leader, as Kafka answers it.
            let error = match leader {
                Some(_) => 0,
                None => ErrorCode::LeaderNotAvailable.code(),
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(p)
                .with_leader_id(BrokerId(leader.unwrap_or(-1)))
                .with_leader_epoch(t.leader_epoch(p))
                .with_isr_nodes(ids(t.isr(p, node)))
                .with_replica_nodes(ids(replicas))
                .with_offline_replicas(ids(offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.to_string()))))
        .with_topic_id(t.id)
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
        .with_is_internal(is_internal_topic(&t.name))
}

/// A broker as clients are told about it.
pub struct BrokerEntry {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// The brokers clients are told about: this node alone, or a cluster's live (registered,
/// unfenced) brokers. (A cluster's broker serves clients only once it is one of them:
/// `Shard::until_serving`.)
pub fn brokers(shard: &Shard) -> Vec<BrokerEntry> {
    if shard.cluster.is_none() {
        let (host, port) = advertised(shard);
        return vec![BrokerEntry {
            id: shard.node_id(),
            host,
            port,
            rack: shard.config.broker_rack.clone(),
        }];
    }
    shard
        .metadata()
        .live_brokers()
        .map(|b| BrokerEntry {
            id: b.id,
            host: b.host.clone(),
            port: b.port,
            rack: b.rack.clone(),
        })
        .collect()
}

/// The broker clients should send controller requests to: this node, or a cluster's active
/// controller when clients are told about it (a live broker). Otherwise (an election, or a
/// leader not registered yet) this node: any node takes metadata changes (it proposes them to
/// the quorum), which is why Kafka's brokers name a random live broker here, and a client
/// must never be given a controller id it has no address for.
pub fn controller_id(shard: &Shard) -> i32 {
    let Some(cluster) = &shard.cluster else {
        return shard.node_id();
    };
    let image = shard.metadata();
    match cluster.controller() {
        Some(id) if image.brokers.get(&id).is_some_and(|b| !b.fenced) => id,
        _ => shard.node_id(),
    }
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

//! Cluster metadata and topic administration: Metadata, CreateTopics, DeleteTopics,
//! DescribeConfigs.

use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::error::{check, ClientError, Result};
use super::Client;

/// How long the broker may take over a topic creation or deletion.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// DescribeConfigs resource type of a topic.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// DescribeConfigs `config_source` of a value set on the topic itself (not a default).
const CONFIG_SOURCE_DYNAMIC_TOPIC: i8 = 1;

/// What `create_topic` creates.
#[derive(Debug, Clone, Default)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count; `None` takes the broker's default (`num.partitions`).
    pub partitions: Option<i32>,
    /// Replication factor; `None` takes the broker's default.
    pub replication_factor: Option<i16>,
    /// Topic configs (`retention.ms`, `cleanup.policy`, ...).
    pub configs: Vec<(String, String)>,
}

/// One topic as the cluster metadata describes it.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id (nil when the broker's Metadata version predates topic ids).
    pub topic_id: Uuid,
    /// Kafka's per-topic error code (UNKNOWN_TOPIC_OR_PARTITION for a missing topic).
    pub error_code: i16,
    /// Whether this is an internal topic (`__consumer_offsets`).
    pub is_internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

/// One partition as the cluster metadata describes it.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    /// Partition index.
    pub index: i32,
    /// Node id of the leader, `-1` when there is none.
    pub leader: i32,
    /// Node ids of the replicas.
    pub replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// Kafka's per-partition error code.
    pub error_code: i16,
}

impl Client {
    /// Fetches metadata for `topics` (all topics when `None`) and refreshes the broker list.
    pub fn metadata(
        &mut self,
        topics: Option<&[&str]>,
        allow_auto_topic_creation: bool,
    ) -> Result<Vec<TopicInfo>> {
        let conn = self.any()?;
        let version = conn.version::<MetadataRequest>()?;
        let topics = match topics {
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect(),
            ),
            // Metadata v0 has no null array: the empty list means "all topics" there.
            None if version == 0 => Some(Vec::new()),
            None => None,
        };
        let req = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(allow_auto_topic_creation);
        let (_, resp) = conn.send(&req, Duration::ZERO)?;
        self.remember_brokers(&resp);
        Ok(resp.topics.into_iter().map(topic_info).collect())
    }

    fn remember_brokers(&mut self, resp: &MetadataResponse) {
        self.brokers = resp
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
    }

    /// Metadata for one topic that exists and has a leader for every partition.
    ///
    /// Retries the retriable states a just-created (or auto-created) topic passes through,
    /// LEADER_NOT_AVAILABLE and UNKNOWN_TOPIC_OR_PARTITION, for up to `wait`.
    pub fn topic(
        &mut self,
        name: &str,
        allow_auto_topic_creation: bool,
        wait: Duration,
    ) -> Result<TopicInfo> {
        let deadline = Instant::now() + wait;
        loop {
            let info = self
                .metadata(Some(&[name]), allow_auto_topic_creation)?
                .into_iter()
                .find(|t| t.name == name)
                .ok_or_else(|| {
                    ClientError::Protocol(format!("metadata response lacks topic {name:?}"))
                })?;
            let retriable = matches!(info.error_code, 3 | 5)
                || (info.error_code == 0
                    && (info.partitions.is_empty()
                        || info.partitions.iter().any(|p| p.leader < 0)));
            if !retriable || Instant::now() >= deadline {
                check(info.error_code, None, || format!("topic {name:?}"))?;
                if info.partitions.is_empty() {
                    return Err(ClientError::Other(format!(
                        "topic {name:?} has no partitions"
                    )));
                }
                return Ok(info);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a topic.
    pub fn create_topic(&mut self, spec: &TopicSpec) -> Result<()> {
        let conn = self.any()?;
        let version = conn.version::<CreateTopicsRequest>()?;
        // "Broker default" (-1) exists from CreateTopics v4; older brokers need explicit values.
        let default = if version >= 4 { -1 } else { 1 };
        let configs = spec
            .configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        let topic = CreatableTopic::default()
            .with_name(topic_name(&spec.name))
            .with_num_partitions(spec.partitions.unwrap_or(default))
            .with_replication_factor(spec.replication_factor.unwrap_or(default as i16))
            .with_configs(configs);
        let req = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(ADMIN_TIMEOUT.as_millis() as i32);
        let (_, resp) = conn.send(&req, ADMIN_TIMEOUT)?;
        let result = resp
            .topics
            .iter()
            .find(|t| t.name.as_str() == spec.name)
            .ok_or_else(|| {
                ClientError::Protocol(format!("CreateTopics response lacks topic {:?}", spec.name))
            })?;
        check(result.error_code, result.error_message.as_deref(), || {
            format!("create topic {:?}", spec.name)
        })
    }

    /// Deletes a topic.
    pub fn delete_topic(&mut self, name: &str) -> Result<()> {
        let conn = self.any()?;
        // v6 names topics in `topics`, earlier versions in `topic_names`: fill both, the encoder
        // writes the one the negotiated version has.
        let req = DeleteTopicsRequest::default()
            .with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic_name(name)))
            ])
            .with_topic_names(vec![topic_name(name)])
            .with_timeout_ms(ADMIN_TIMEOUT.as_millis() as i32);
        let (_, resp) = conn.send(&req, ADMIN_TIMEOUT)?;
        let result = resp
            .responses
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(name))
            .ok_or_else(|| {
                ClientError::Protocol(format!("DeleteTopics response lacks topic {name:?}"))
            })?;
        check(result.error_code, result.error_message.as_deref(), || {
            format!("delete topic {name:?}")
        })
    }

    /// The configs set on topic `name` itself (not broker defaults), or `None` when the broker
    /// does not offer DescribeConfigs.
    pub fn topic_configs(&mut self, name: &str) -> Result<Option<Vec<(String, String)>>> {
        let conn = self.any()?;
        if !conn.supports::<DescribeConfigsRequest>() {
            return Ok(None);
        }
        let resource = DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TYPE_TOPIC)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configuration_keys(None);
        let req = DescribeConfigsRequest::default().with_resources(vec![resource]);
        let (_, resp) = conn.send(&req, Duration::ZERO)?;
        let Some(result) = resp
            .results
            .into_iter()
            .find(|r| r.resource_name.as_str() == name)
        else {
            return Ok(None);
        };
        check(result.error_code, result.error_message.as_deref(), || {
            format!("describe configs of {name:?}")
        })?;
        let mut configs: Vec<(String, String)> = result
            .configs
            .into_iter()
            .filter(|c| c.config_source == CONFIG_SOURCE_DYNAMIC_TOPIC && !c.is_sensitive)
            .map(|c| {
                (
                    c.name.to_string(),
                    c.value.map(|v| v.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        configs.sort();
        Ok(Some(configs))
    }
}

/// A `TopicName` from a `&str`.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn topic_info(t: kafka_protocol::messages::metadata_response::MetadataResponseTopic) -> TopicInfo {
    let mut partitions: Vec<PartitionInfo> = t
        .partitions
        .into_iter()
        .map(|p| PartitionInfo {
            index: p.partition_index,
            leader: p.leader_id.0,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
            error_code: p.error_code,
        })
        .collect();
    partitions.sort_by_key(|p| p.index);
    TopicInfo {
        name: t.name.map(|n| n.0.to_string()).unwrap_or_default(),
        topic_id: t.topic_id,
        error_code: t.error_code,
        is_internal: t.is_internal,
        partitions,
    }
}

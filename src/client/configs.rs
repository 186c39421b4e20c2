//! Topic changes after creation: IncrementalAlterConfigs, CreatePartitions, DeleteRecords.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, DeleteRecordsRequest, IncrementalAlterConfigsRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::{topic_name, ADMIN_TIMEOUT};
use super::error::{check, ClientError, Result};
use super::Client;

/// DescribeConfigs/AlterConfigs resource type of a topic.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

impl Client {
    /// Sets and removes topic config overrides in one request (`kafka-configs.sh --alter
    /// --add-config/--delete-config`); a removed override returns to the broker's default.
    pub fn alter_topic_configs(
        &mut self,
        name: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<()> {
        let str = |s: &str| StrBytes::from_string(s.to_owned());
        let configs = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(str(k))
                    .with_config_operation(OP_SET)
                    .with_value(Some(str(v)))
            })
            .chain(delete.iter().map(|k| {
                AlterableConfig::default()
                    .with_name(str(k))
                    .with_config_operation(OP_DELETE)
            }))
            .collect();
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TYPE_TOPIC)
                .with_resource_name(str(name))
                .with_configs(configs),
        ]);
        let (_, resp) = self.any()?.send(&req, ADMIN_TIMEOUT)?;
        let r = resp.responses.first().ok_or_else(|| {
            ClientError::Protocol("IncrementalAlterConfigs response is empty".into())
        })?;
        check(r.error_code, r.error_message.as_deref(), || {
            format!("alter configs of topic {name:?}")
        })
    }

    /// Raises the partition count of a topic to `count`.
    pub fn create_partitions(&mut self, name: &str, count: i32) -> Result<()> {
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_assignments(None)
                .with_name(topic_name(name))
                .with_count(count)])
            .with_timeout_ms(ADMIN_TIMEOUT.as_millis() as i32);
        let (_, resp) = self.any()?.send(&req, ADMIN_TIMEOUT)?;
        let r = resp
            .results
            .first()
            .ok_or_else(|| ClientError::Protocol("CreatePartitions response is empty".into()))?;
        check(r.error_code, r.error_message.as_deref(), || {
            format!("add partitions to topic {name:?}")
        })
    }

    /// Deletes the records of one partition below `before_offset` (-1: the high watermark) and
    /// returns the partition's new low watermark (log start offset).
    pub fn delete_records(
        &mut self,
        name: &str,
        partition: i32,
        before_offset: i64,
    ) -> Result<i64> {
        let req = DeleteRecordsRequest::default()
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic_name(name))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(before_offset)])])
            .with_timeout_ms(ADMIN_TIMEOUT.as_millis() as i32);
        let info = self.topic(name, false, std::time::Duration::ZERO)?;
        let leader = info
            .partitions
            .iter()
            .find(|p| p.index == partition)
            .map(|p| p.leader)
            .ok_or_else(|| {
                ClientError::Other(format!("topic {name:?} has no partition {partition}"))
            })?;
        let (_, resp) = self.node(leader)?.send(&req, ADMIN_TIMEOUT)?;
        let p = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Protocol("DeleteRecords response is empty".into()))?;
        check(p.error_code, None, || {
            format!("delete records of {name}-{partition} before offset {before_offset}")
        })?;
        Ok(p.low_watermark)
    }
}

//! DescribeConfigs: every config of a topic or of this broker, with its value, source, flags,
//! and (on request) synonyms and documentation, as Kafka reports them.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, respond, Outcome, Session};
use crate::error::{ApiError, ErrorCode};
use crate::metadata::configs::{self, ConfigEntry};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

/// Kafka's `ConfigResource.Type` values.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: DescribeConfigsRequest = req.decode_body()?;
    let image = shard.metadata();
    let broker = shard.broker_config();
    let dynamic = configs::Dynamic::of(&image, shard.config.node_id);
    let mut results = Vec::with_capacity(body.resources.len());
    for r in &body.resources {
        let name = r.resource_name.as_str();
        let entries = match r.resource_type {
            RESOURCE_TOPIC => image
                .topic(name)
                .map(|t| configs::describe_topic(&broker, dynamic, &t.configs))
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::UnknownTopicOrPartition,
                        format!("topic '{name}' does not exist"),
                    )
                }),
            RESOURCE_BROKER => check_broker_name(shard, name)
                .map(|()| configs::describe_broker(&broker, dynamic, name)),
            t => Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("resource type {t} is not supported"),
            )),
        };
        let result = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        results.push(match entries {
            Ok(entries) => {
                let wanted = |e: &ConfigEntry| {
                    r.configuration_keys
                        .as_ref()
                        .is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                };
                let configs = entries
                    .into_iter()
                    .filter(wanted)
                    .map(|e| entry(e, body.include_synonyms, body.include_documentation))
                    .collect();
                result.with_configs(configs)
            }
            Err(ApiError { code, message: msg }) => {
                log_client_error(req, &format!("describe configs of {name:?}"), code, &msg);
                result
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(msg)))
            }
        });
    }
    respond(
        req,
        &DescribeConfigsResponse::default().with_results(results),
    )
}

/// A broker resource is named by this broker's id; the empty name means the cluster-wide
/// dynamic defaults.
pub fn check_broker_name(shard: &Shard, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name == shard.config.node_id.to_string() {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::InvalidRequest,
        format!(
            "unexpected broker id {name:?}: expected {} or the empty string",
            shard.config.node_id
        ),
    ))
}

/// A broker resource AlterConfigs may change: this broker's, the cluster-wide defaults, or in
/// a cluster any registered broker's (the image carries every broker's dynamic configs, and
/// `kafka-reassign-partitions.sh --throttle` sets each broker's rate through any of them).
pub fn check_alterable_broker_name(shard: &Shard, name: &str) -> Result<(), ApiError> {
    let registered = name
        .parse::<i32>()
        .is_ok_and(|id| shard.metadata().brokers.contains_key(&id));
    match registered {
        true => Ok(()),
        false => check_broker_name(shard, name),
    }
}

fn entry(e: ConfigEntry, synonyms: bool, docs: bool) -> DescribeConfigsResourceResult {
    let synonyms = if synonyms {
        e.synonyms
            .into_iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(name))
                    .with_value(value.map(StrBytes::from_string))
                    .with_source(source as i8)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(e.name))
        .with_value(e.value.map(StrBytes::from_string))
        .with_read_only(e.read_only)
        .with_config_source(e.source as i8)
        .with_is_sensitive(false)
        .with_synonyms(synonyms)
        .with_config_type(e.config_type as i8)
        .with_documentation(docs.then(|| StrBytes::from_static_str(e.doc)))
}

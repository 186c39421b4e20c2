//! Topic configs by Kafka's names: the effective log config of a topic, the edits AlterConfigs
//! and IncrementalAlterConfigs make, and the entries DescribeConfigs reports for a topic or for
//! the broker. Names, types, defaults, synonyms, validators and which broker settings are
//! dynamic all come from the config schema (`config::schema::SETTINGS`).
//!
//! A topic stores only its overrides (`TopicMeta::configs`); everything else is derived from the
//! broker's settings at the moment it is asked, so a topic follows the broker's defaults.

use std::collections::BTreeMap;

use crate::config::schema::{self, Mode, Setting, TopicConfig};
use crate::config::BrokerConfig;
use crate::error::ConfigError;
use crate::log::LogConfig;

pub use crate::config::schema::ConfigType;

/// DescribeConfigs `config_source`, Kafka's numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

/// The effective log config of a topic: broker defaults overridden by topic configs.
/// Errors name the offending key, for INVALID_CONFIG.
pub fn log_config(
    broker: &BrokerConfig,
    configs: &BTreeMap<String, String>,
) -> Result<LogConfig, ConfigError> {
    let mut c = LogConfig {
        segment_bytes: broker.log_segment_bytes,
        segment_ms: broker.log_roll_ms,
        retention_ms: broker.log_retention_ms,
        retention_bytes: broker.log_retention_bytes,
        max_message_bytes: broker.message_max_bytes,
        index_interval_bytes: broker.log_index_interval_bytes,
        message_timestamp_type: broker.log_message_timestamp_type,
        message_timestamp_before_max_ms: broker.log_message_timestamp_before_max_ms,
        message_timestamp_after_max_ms: broker.log_message_timestamp_after_max_ms,
        flush_messages: broker.log_flush_interval_messages,
        flush_ms: broker.log_flush_interval_ms,
        cleanup_policy: broker.log_cleanup_policy,
        min_compaction_lag_ms: broker.log_cleaner_min_compaction_lag_ms,
        delete_retention_ms: broker.log_cleaner_delete_retention_ms,
        min_cleanable_dirty_ratio: broker.log_cleaner_min_cleanable_ratio,
    };
    for (key, value) in configs {
        let def = schema::topic_config(key)
            .ok_or_else(|| ConfigError::invalid(format!("unknown topic config {key}")))?;
        (def.apply)(&mut c, key, value)?;
    }
    Ok(c)
}

/// IncrementalAlterConfigs `config_operation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlterOp {
    Set,
    Delete,
    Append,
    Subtract,
}

impl AlterOp {
    pub fn from_wire(op: i8) -> Option<AlterOp> {
        Some(match op {
            0 => AlterOp::Set,
            1 => AlterOp::Delete,
            2 => AlterOp::Append,
            3 => AlterOp::Subtract,
            _ => return None,
        })
    }
}

/// A change to a topic's overrides.
#[derive(Clone, Debug)]
pub enum ConfigEdit {
    /// AlterConfigs: the given configs become the whole set of overrides.
    Replace(BTreeMap<String, String>),
    /// IncrementalAlterConfigs: each operation in turn.
    Incremental(Vec<(String, AlterOp, Option<String>)>),
}

/// The overrides after `edit`, validated. Errors name the key (INVALID_CONFIG).
pub fn edit_configs(
    broker: &BrokerConfig,
    current: &BTreeMap<String, String>,
    edit: &ConfigEdit,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let next = match edit {
        ConfigEdit::Replace(all) => all.clone(),
        ConfigEdit::Incremental(ops) => {
            let mut next = current.clone();
            for (name, op, value) in ops {
                incremental(broker, &mut next, name, *op, value.as_deref())?;
            }
            next
        }
    };
    log_config(broker, &next)?;
    Ok(next)
}

fn incremental(
    broker: &BrokerConfig,
    configs: &mut BTreeMap<String, String>,
    name: &str,
    op: AlterOp,
    value: Option<&str>,
) -> Result<(), ConfigError> {
    let def = schema::topic_config(name)
        .ok_or_else(|| ConfigError::invalid(format!("unknown topic config {name}")))?;
    match op {
        AlterOp::Delete => {
            configs.remove(name);
        }
        AlterOp::Set => {
            let v = value
                .ok_or_else(|| ConfigError::invalid(format!("config {name}: SET needs a value")))?;
            configs.insert(name.to_string(), v.to_string());
        }
        AlterOp::Append | AlterOp::Subtract => {
            if def.config_type != ConfigType::List {
                return Err(ConfigError::invalid(format!(
                    "config {name}: APPEND and SUBTRACT apply only to LIST configs"
                )));
            }
            let v = value.ok_or_else(|| {
                ConfigError::invalid(format!("config {name}: {op:?} needs a value"))
            })?;
            let base = configs
                .get(name)
                .cloned()
                .unwrap_or_else(|| (def.inherited)(broker));
            configs.insert(name.to_string(), edit_list(name, &base, op, v)?);
        }
    }
    Ok(())
}

/// APPEND or SUBTRACT the comma-separated items of `v` to or from the list `base`.
fn edit_list(name: &str, base: &str, op: AlterOp, v: &str) -> Result<String, ConfigError> {
    let mut items: Vec<&str> = base
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if op == AlterOp::Append && !items.contains(&item) {
            items.push(item);
        } else if op == AlterOp::Subtract {
            items.retain(|i| *i != item);
        }
    }
    if items.is_empty() {
        return Err(ConfigError::invalid(format!(
            "config {name}: the list may not become empty"
        )));
    }
    Ok(items.join(","))
}

/// One config as DescribeConfigs reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub config_type: ConfigType,
    pub doc: &'static str,
    /// Where the value could come from, highest precedence first (`include_synonyms`).
    pub synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

/// Every topic config of a topic with `overrides`, as Kafka reports them. `b` is the broker's
/// effective config (static settings with `dynamic` applied).
pub fn describe_topic(
    b: &BrokerConfig,
    dynamic: Dynamic,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    schema::topic_configs()
        .into_iter()
        .map(|def| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(def.name) {
                synonyms.push((
                    def.name.to_string(),
                    Some(v.clone()),
                    ConfigSource::DynamicTopic,
                ));
            }
            // Kafka's order: each layer (dynamic broker, dynamic default, static), and within
            // a layer the most precise name first (`log.retention.ms` before `.hours`).
            for (layer, source) in dynamic.layers() {
                for broker_name in def.synonyms {
                    if let Some(v) = layer.get(*broker_name) {
                        synonyms.push((broker_name.to_string(), Some(v.clone()), source));
                    }
                }
            }
            for broker_name in def.synonyms {
                if let Some(v) = b.explicit_value(broker_name) {
                    synonyms.push((
                        broker_name.to_string(),
                        Some(v.to_string()),
                        ConfigSource::StaticBroker,
                    ));
                }
            }
            // A topic-only config (no broker synonym) has no default synonym to list.
            if let Some(default_name) = def.synonyms.last() {
                synonyms.push((
                    default_name.to_string(),
                    Some(def.default.to_string()),
                    ConfigSource::Default,
                ));
            }
            let (value, source) = match overrides.get(def.name) {
                Some(v) => (v.clone(), ConfigSource::DynamicTopic),
                None => (
                    (def.inherited)(b),
                    synonyms.first().map_or(ConfigSource::Default, |s| s.2),
                ),
            };
            ConfigEntry {
                name: def.name.to_string(),
                value: Some(value),
                source,
                read_only: false,
                config_type: def.config_type,
                doc: def.doc,
                synonyms,
            }
        })
        .collect()
}

/// The broker settings DescribeConfigs lists, in its order.
fn described_settings() -> impl Iterator<Item = &'static Setting> {
    schema::SETTINGS.iter().filter(|s| s.described)
}

/// Whether AlterConfigs and IncrementalAlterConfigs may change the broker setting `name` while
/// the broker runs. Every other setting is read-only: Kafka answers a change to one with
/// INVALID_REQUEST.
fn is_dynamic(name: &str) -> bool {
    schema::SETTINGS
        .iter()
        .any(|s| s.name == name && s.mode == Mode::Dynamic)
}

/// The topic config whose default the broker setting `name` supplies, where `name` is its most
/// precise synonym.
fn supplied_topic_config(name: &str) -> Option<&'static TopicConfig> {
    schema::SETTINGS
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.topic.as_ref())
}

/// The dynamic broker configs that apply to one broker: its own (resource named by its node
/// id) over the cluster-wide defaults (resource `""`).
#[derive(Clone, Copy, Default)]
pub struct Dynamic<'a> {
    pub broker: Option<&'a BTreeMap<String, String>>,
    pub default: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Dynamic<'a> {
    /// The layers of `image` that apply to broker `node_id`.
    pub fn of(image: &'a super::MetadataImage, node_id: i32) -> Dynamic<'a> {
        Dynamic {
            broker: image.broker_configs.get(&node_id.to_string()),
            default: image.broker_configs.get(""),
        }
    }

    /// The present layers, highest precedence first, with the source each reports.
    fn layers(self) -> impl Iterator<Item = (&'a BTreeMap<String, String>, ConfigSource)> {
        [
            (self.broker, ConfigSource::DynamicBroker),
            (self.default, ConfigSource::DynamicDefaultBroker),
        ]
        .into_iter()
        .filter_map(|(l, s)| Some((l?, s)))
    }
}

/// The broker's effective settings: the static ones with the dynamic defaults, then the
/// broker's own dynamic configs, applied on top. Values were validated when stored; one that
/// no longer parses (a hand-edited metadata file) is skipped with a warning.
pub fn effective_broker_config(static_cfg: &BrokerConfig, dynamic: Dynamic) -> BrokerConfig {
    let mut b = static_cfg.clone();
    let layers: Vec<_> = dynamic.layers().collect();
    // Lowest precedence first, so that the broker's own values win.
    for (layer, _) in layers.into_iter().rev() {
        // Alphabetical order applies `.hours`, then `.minutes`, then `.ms`: the most precise
        // name wins within a layer, as in Kafka.
        for (k, v) in layer {
            if let Err(e) = b.set_value(k, v) {
                tracing::warn!("ignoring stored dynamic broker config: {e}");
            }
        }
    }
    b
}

/// The dynamic configs of one broker resource after `edit`, validated against the static
/// settings.
pub fn edit_broker_configs(
    static_cfg: &BrokerConfig,
    current: &BTreeMap<String, String>,
    edit: &ConfigEdit,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let (touched, next): (Vec<&str>, BTreeMap<String, String>) = match edit {
        ConfigEdit::Replace(all) => (all.keys().map(String::as_str).collect(), all.clone()),
        ConfigEdit::Incremental(ops) => {
            let mut next = current.clone();
            for (name, op, value) in ops {
                broker_op(static_cfg, &mut next, name, *op, value.as_deref())?;
            }
            (ops.iter().map(|(n, _, _)| n.as_str()).collect(), next)
        }
    };
    let fixed: Vec<&str> = touched.into_iter().filter(|k| !is_dynamic(k)).collect();
    if !fixed.is_empty() {
        return Err(ConfigError::NotDynamic(format!(
            "Cannot update these configs dynamically: Set({})",
            fixed.join(", ")
        )));
    }
    let mut check = static_cfg.clone();
    for (k, v) in &next {
        check.set_value(k, v)?;
        // A log default must also be a valid value of the topic config it supplies.
        if let Some(def) = supplied_topic_config(k) {
            let mut scratch = log_config(static_cfg, &BTreeMap::new())?;
            (def.apply)(&mut scratch, def.name, v)
                .map_err(|e| e.map_message(|m| m.replace(def.name, k)))?;
        }
    }
    log_config(&check, &BTreeMap::new())?;
    Ok(next)
}

fn broker_op(
    static_cfg: &BrokerConfig,
    configs: &mut BTreeMap<String, String>,
    name: &str,
    op: AlterOp,
    value: Option<&str>,
) -> Result<(), ConfigError> {
    match op {
        AlterOp::Delete => {
            configs.remove(name);
        }
        AlterOp::Set => {
            let v = value
                .ok_or_else(|| ConfigError::invalid(format!("config {name}: SET needs a value")))?;
            configs.insert(name.to_string(), v.to_string());
        }
        AlterOp::Append | AlterOp::Subtract => {
            let v = value.ok_or_else(|| {
                ConfigError::invalid(format!("config {name}: {op:?} needs a value"))
            })?;
            let setting = described_settings()
                .find(|s| s.name == name && s.config_type == ConfigType::List)
                .ok_or_else(|| {
                    ConfigError::invalid(format!(
                        "config {name}: APPEND and SUBTRACT apply only to LIST configs"
                    ))
                })?;
            let base = configs
                .get(name)
                .cloned()
                .or_else(|| static_cfg.explicit_value(name).map(str::to_string))
                .or_else(|| setting.topic.as_ref().map(|t| (t.inherited)(static_cfg)))
                .or_else(|| setting.default.map(str::to_string))
                .unwrap_or_default();
            configs.insert(name.to_string(), edit_list(name, &base, op, v)?);
        }
    }
    Ok(())
}

/// Every broker setting, as Kafka reports the broker resource `resource` (this broker's id,
/// or `""` for the cluster-wide dynamic defaults, which lists only those). The dynamic ones
/// are writable; the rest are read-only.
pub fn describe_broker(b: &BrokerConfig, dynamic: Dynamic, resource: &str) -> Vec<ConfigEntry> {
    if resource.is_empty() {
        let defaults = dynamic.default.cloned().unwrap_or_default();
        return defaults
            .into_iter()
            .map(|(name, v)| {
                let config_type = described_settings()
                    .find(|s| s.name == name)
                    .map_or(ConfigType::String, |s| s.config_type);
                let source = ConfigSource::DynamicDefaultBroker;
                ConfigEntry {
                    synonyms: vec![(name.clone(), Some(v.clone()), source)],
                    name,
                    value: Some(v),
                    source,
                    read_only: false,
                    config_type,
                    doc: "",
                }
            })
            .collect();
    }
    described_settings()
        .map(|setting| {
            let name = setting.name;
            let mut synonyms = Vec::new();
            for (layer, source) in dynamic.layers() {
                if let Some(v) = layer.get(name) {
                    synonyms.push((name.to_string(), Some(v.clone()), source));
                }
            }
            if let Some(v) = b.explicit_value(name) {
                synonyms.push((
                    name.to_string(),
                    Some(v.to_string()),
                    ConfigSource::StaticBroker,
                ));
            }
            let default = setting.default.map(str::to_string);
            synonyms.push((name.to_string(), default, ConfigSource::Default));
            let (value, source) = (synonyms[0].1.clone(), synonyms[0].2);
            ConfigEntry {
                name: name.to_string(),
                value,
                source,
                read_only: setting.mode != Mode::Dynamic,
                config_type: setting.config_type,
                doc: "",
                synonyms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn topic_configs_are_validated_by_name() {
        let b = BrokerConfig::default();
        assert_eq!(
            log_config(&b, &map(&[("retention.ms", "5")]))
                .unwrap()
                .retention_ms,
            5
        );
        assert!(log_config(&b, &map(&[("nope", "5")]))
            .unwrap_err()
            .message()
            .contains("nope"));
        for (k, v) in [
            ("segment.bytes", "x"),
            ("segment.bytes", "3"),
            ("retention.ms", "-2"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("cleanup.policy", "shred"),
            ("message.timestamp.type", "Now"),
            ("flush.messages", "0"),
        ] {
            assert!(
                log_config(&b, &map(&[(k, v)]))
                    .unwrap_err()
                    .message()
                    .contains(k),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn broker_defaults_match_the_reported_kafka_defaults() {
        let b = BrokerConfig::default();
        for e in describe_topic(&b, Dynamic::default(), &BTreeMap::new()) {
            assert_eq!(e.source, ConfigSource::Default, "{}", e.name);
            let def = schema::topic_config(&e.name).unwrap();
            let reported = def.default;
            let value = e.value.unwrap();
            if def.synonyms.last().is_some_and(|s| s.ends_with(".hours")) {
                assert_eq!(
                    value.parse::<i64>().unwrap(),
                    reported.parse::<i64>().unwrap() * 3_600_000
                );
            } else {
                assert_eq!(value, reported, "{}", e.name);
            }
        }
        // Each reported broker default, set explicitly, changes nothing.
        // (Kafka's "never" for log.flush.interval.messages is Long.MAX_VALUE, ours u64::MAX.)
        for setting in schema::SETTINGS {
            let (name, Some(v)) = (setting.name, setting.default) else {
                continue;
            };
            if name == "log.flush.interval.messages" {
                continue;
            }
            let mut c = BrokerConfig::default();
            c.set(name, v).unwrap();
            c.explicit.clear();
            assert_eq!(format!("{c:?}"), format!("{b:?}"), "{name}");
        }
    }

    #[test]
    fn sources_follow_the_broker_settings() {
        let mut b = BrokerConfig::default();
        b.set("log.retention.hours", "1").unwrap();
        let overrides = map(&[("segment.ms", "1000")]);
        let entries = describe_topic(&b, Dynamic::default(), &overrides);
        let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap().clone();
        let r = get("retention.ms");
        assert_eq!(
            (r.value.as_deref(), r.source),
            (Some("3600000"), ConfigSource::StaticBroker)
        );
        assert_eq!(r.synonyms[0].0, "log.retention.hours");
        assert_eq!(r.synonyms.last().unwrap().2, ConfigSource::Default);
        let s = get("segment.ms");
        assert_eq!(
            (s.value.as_deref(), s.source),
            (Some("1000"), ConfigSource::DynamicTopic)
        );
        assert_eq!(get("cleanup.policy").source, ConfigSource::Default);
    }

    #[test]
    fn incremental_edits_set_delete_append_subtract() {
        let b = BrokerConfig::default();
        let cur = map(&[("retention.ms", "5")]);
        let ops = |v: Vec<(&str, AlterOp, Option<&str>)>| {
            ConfigEdit::Incremental(
                v.into_iter()
                    .map(|(k, o, v)| (k.to_string(), o, v.map(str::to_string)))
                    .collect(),
            )
        };
        let next = edit_configs(
            &b,
            &cur,
            &ops(vec![
                ("retention.ms", AlterOp::Delete, None),
                ("cleanup.policy", AlterOp::Append, Some("compact")),
                ("segment.ms", AlterOp::Set, Some("100")),
            ]),
        )
        .unwrap();
        assert_eq!(
            next,
            map(&[("cleanup.policy", "delete,compact"), ("segment.ms", "100")])
        );
        let next = edit_configs(
            &b,
            &next,
            &ops(vec![("cleanup.policy", AlterOp::Subtract, Some("delete"))]),
        )
        .unwrap();
        assert_eq!(next["cleanup.policy"], "compact");
        let err = edit_configs(
            &b,
            &next,
            &ops(vec![("retention.ms", AlterOp::Append, Some("1"))]),
        )
        .unwrap_err();
        assert!(err.message().contains("retention.ms"), "{err}");
        let err = edit_configs(
            &b,
            &next,
            &ops(vec![("bogus.key", AlterOp::Set, Some("1"))]),
        )
        .unwrap_err();
        assert!(err.message().contains("bogus.key"), "{err}");
        let replaced = edit_configs(
            &b,
            &next,
            &ConfigEdit::Replace(map(&[("retention.ms", "7")])),
        )
        .unwrap();
        assert_eq!(replaced, map(&[("retention.ms", "7")]));
    }

    #[test]
    fn dynamic_broker_configs_layer_over_static_ones_and_refuse_read_only_keys() {
        let mut stat = BrokerConfig::default();
        stat.set("log.retention.hours", "1").unwrap();
        let set = |k: &str, v: &str| {
            ConfigEdit::Incremental(vec![(k.to_string(), AlterOp::Set, Some(v.to_string()))])
        };
        let default_layer =
            edit_broker_configs(&stat, &BTreeMap::new(), &set("log.retention.ms", "60000"))
                .unwrap();
        let broker_layer =
            edit_broker_configs(&stat, &BTreeMap::new(), &set("log.retention.minutes", "3"))
                .unwrap();
        let dynamic = Dynamic {
            broker: Some(&broker_layer),
            default: Some(&default_layer),
        };
        let b = effective_broker_config(&stat, dynamic);
        assert_eq!(b.log_retention_ms, 180_000, "the broker's own layer wins");
        let entries = describe_topic(&b, dynamic, &BTreeMap::new());
        let r = entries.iter().find(|e| e.name == "retention.ms").unwrap();
        assert_eq!(
            (r.value.as_deref(), r.source),
            (Some("180000"), ConfigSource::DynamicBroker)
        );
        let sources: Vec<_> = r
            .synonyms
            .iter()
            .map(|(n, _, s)| (n.as_str(), *s))
            .collect();
        assert_eq!(
            sources,
            [
                ("log.retention.minutes", ConfigSource::DynamicBroker),
                ("log.retention.ms", ConfigSource::DynamicDefaultBroker),
                ("log.retention.hours", ConfigSource::StaticBroker),
                ("log.retention.hours", ConfigSource::Default),
            ]
        );
        let broker = describe_broker(&b, dynamic, "1");
        let get = |n: &str| broker.iter().find(|e| e.name == n).unwrap();
        assert_eq!(
            (
                get("log.retention.ms").source,
                get("log.retention.ms").read_only
            ),
            (ConfigSource::DynamicDefaultBroker, false)
        );
        assert!(get("num.partitions").read_only);
        let defaults = describe_broker(&b, dynamic, "");
        assert_eq!(defaults.len(), 1);
        assert_eq!(defaults[0].source, ConfigSource::DynamicDefaultBroker);

        // Read-only settings, bad values, and a replace that clears the layer.
        let err = edit_broker_configs(&stat, &BTreeMap::new(), &set("num.partitions", "3"));
        assert!(
            matches!(&err, Err(ConfigError::NotDynamic(m)) if m.contains("num.partitions")),
            "{err:?}"
        );
        for (k, v) in [
            ("log.segment.bytes", "3"),
            ("log.retention.ms", "-7"),
            ("log.cleanup.policy", "shred"),
            ("message.max.bytes", "x"),
        ] {
            let err = edit_broker_configs(&stat, &BTreeMap::new(), &set(k, v));
            assert!(
                matches!(&err, Err(ConfigError::Invalid(m)) if m.contains(k)),
                "{k}={v}: {err:?}"
            );
        }
        let cleared =
            edit_broker_configs(&stat, &broker_layer, &ConfigEdit::Replace(BTreeMap::new()));
        assert_eq!(cleared, Ok(BTreeMap::new()));
        let appended = edit_broker_configs(
            &stat,
            &BTreeMap::new(),
            &ConfigEdit::Incremental(vec![(
                "log.cleanup.policy".into(),
                AlterOp::Append,
                Some("compact".into()),
            )]),
        )
        .unwrap();
        assert_eq!(appended["log.cleanup.policy"], "delete,compact");
    }
}

//! The config schema: one table, [`SETTINGS`], of every setting the broker accepts, by Kafka's
//! name. Each row holds what used to be spread over five places: the name and the spellings
//! `--set` also accepts, Kafka's type and default, whether AlterConfigs may change it at run
//! time, whether DescribeConfigs lists it, a documentation line, the parser and validator that
//! store it in [`BrokerConfig`], and the topic config it supplies the default of (with that
//! config's own type, default, validator and documentation).
//!
//! Everything else is derived from the table: `BrokerConfig::set`, the topic-config validation
//! and the DescribeConfigs entries in `metadata::configs` (names, types, sources, synonyms,
//! read-only flags), and the two tables in README.md (`config::docs`; a unit test fails when
//! README.md differs and prints the block to paste).

use super::listeners;
use super::SHARD_INFLIGHT_BYTES_MAX;
use super::{non_negative, parse, BrokerConfig, LOG_CLEANER_DEDUPE_BUFFER_SIZE_MIN};
use crate::error::ConfigError;
use crate::log::{CleanupPolicy, CompressionType, LogConfig, TimestampType};

/// A config's type as DescribeConfigs reports it (v3+), Kafka's `ConfigDef.Type` numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

impl ConfigType {
    /// Kafka's name of the type, as its documentation writes it.
    pub fn name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "boolean",
            ConfigType::String => "string",
            ConfigType::Int => "int",
            ConfigType::Short => "short",
            ConfigType::Long => "long",
            ConfigType::Double => "double",
            ConfigType::List => "list",
        }
    }
}

/// Whether a broker setting may change while the broker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// AlterConfigs and IncrementalAlterConfigs on the broker resource change it at once (Kafka's
    /// dynamic broker configs that tidelog applies at run time).
    Dynamic,
    /// Set at start only; a change answers INVALID_REQUEST, as Kafka does.
    ReadOnly,
}

/// Parses `value` (given under the name `key`), checks it and stores it in the config.
pub type Setter = fn(&mut BrokerConfig, &str, &str) -> Result<(), ConfigError>;

/// One broker setting.
pub struct Setting {
    /// Kafka's name.
    pub name: &'static str,
    /// Other names `BrokerConfig::set` accepts for it (older tidelog spellings, `broker.id`).
    pub aliases: &'static [&'static str],
    pub config_type: ConfigType,
    /// Kafka's default as DescribeConfigs reports it; `None`: unset (null).
    pub default: Option<&'static str>,
    pub mode: Mode,
    /// Whether DescribeConfigs lists it on the broker resource.
    pub described: bool,
    /// One line for the README table.
    pub doc: &'static str,
    pub set: Setter,
    /// The topic config whose default this setting supplies, on the row of its most precise
    /// synonym (`log.retention.ms`, not `.hours`).
    pub topic: Option<TopicConfig>,
}

/// One topic config, as it hangs off the broker setting that supplies its default.
pub struct TopicConfig {
    /// Kafka's name.
    pub name: &'static str,
    /// The broker settings that supply its default, highest precedence first: the first is the
    /// setting of the row, the last the one whose default DescribeConfigs reports.
    pub synonyms: &'static [&'static str],
    pub config_type: ConfigType,
    /// Kafka's default of the last synonym, reported as the DEFAULT_CONFIG synonym.
    pub default: &'static str,
    /// The documentation line DescribeConfigs reports (and the README shows).
    pub doc: &'static str,
    /// Checks a topic override (errors name the key, for INVALID_CONFIG) and applies what the
    /// log obeys of it.
    pub apply: fn(&mut LogConfig, &str, &str) -> Result<(), ConfigError>,
    /// The value a topic without an override has, from the broker's effective settings.
    pub inherited: fn(&BrokerConfig) -> String,
}

const fn setting(
    name: &'static str,
    config_type: ConfigType,
    default: Option<&'static str>,
    mode: Mode,
    doc: &'static str,
    set: Setter,
) -> Setting {
    Setting {
        name,
        aliases: &[],
        config_type,
        default,
        mode,
        described: true,
        doc,
        set,
        topic: None,
    }
}

/// A Kafka setting that a Kafka `server.properties` carries and tidelog has no use for (a
/// thread pool, a replication factor of an internal topic on one node): accepted, so that the
/// file works as it is, checked to be an INT as Kafka would, and not listed by DescribeConfigs
/// (tidelog has no such knob to report).
const fn accepted(name: &'static str, doc: &'static str) -> Setting {
    setting(name, T::Int, None, ReadOnly, doc, |_, key, value| {
        parse::<i32>(key, value).map(|_| ())
    })
    .undescribed()
}

impl Setting {
    const fn aliases(mut self, aliases: &'static [&'static str]) -> Setting {
        self.aliases = aliases;
        self
    }

    /// Accepted in the config file but not listed by DescribeConfigs.
    const fn undescribed(mut self) -> Setting {
        self.described = false;
        self
    }

    const fn topic(mut self, topic: TopicConfig) -> Setting {
        self.topic = Some(topic);
        self
    }
}

use ConfigType as T;
use Mode::{Dynamic, ReadOnly};

const MINUTE_MS: i64 = 60 * 1000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

/// A count of `unit_ms` (hours, minutes) in milliseconds; one that does not fit a Kafka LONG is
/// an invalid value, not an overflow.
fn in_ms(key: &str, value: &str, unit_ms: i64) -> Result<i64, ConfigError> {
    parse::<i64>(key, value)?
        .checked_mul(unit_ms)
        .ok_or_else(|| ConfigError::invalid(format!("{key} is too large, got {value:?}")))
}
const KAFKA_LONG_MAX: &str = "9223372036854775807";

/// Every broker setting, sorted by name (DescribeConfigs lists them in this order).
pub static SETTINGS: &[Setting] = &[
    setting(
        "advertised.listeners",
        T::String,
        None,
        ReadOnly,
        "`NAME://host:port,...`: where clients are told to connect, per listener; unset: the listener's address.",
        |c, key, value| {
            c.advertised_listeners = listeners::parse_listeners(key, value)?;
            Ok(())
        },
    )
    .aliases(&["advertised.listener"]),
    setting(
        "auto.create.topics.enable",
        T::Boolean,
        Some("true"),
        ReadOnly,
        "Create a topic with `num.partitions` partitions when a client first names it.",
        |c, key, value| {
            c.auto_create_topics_enable = parse(key, value)?;
            Ok(())
        },
    ),
    setting(
        "auto.leader.rebalance.enable",
        T::Boolean,
        Some("true"),
        ReadOnly,
        "In a cluster, the active controller moves leadership back to each partition's preferred replica (its first) every `leader.imbalance.check.interval.seconds`.",
        |c, key, value| {
            c.auto_leader_rebalance_enable = parse(key, value)?;
            Ok(())
        },
    ),
    setting(
        "broker.rack",
        T::String,
        None,
        ReadOnly,
        "This broker's rack, reported in Metadata and DescribeCluster (rack-aware placement comes with the cluster).",
        |c, _, value| {
            c.broker_rack = Some(value.to_string());
            Ok(())
        },
    ),
    setting(
        "broker.session.timeout.ms",
        T::Int,
        Some("9000"),
        ReadOnly,
        "In a cluster, how long the active controller waits without hearing from a broker before it fences it (it leads nothing until it is back).",
        |c, key, value| {
            let v: u64 = parse(key, value)?;
            if v < 200 {
                return Err(ConfigError::invalid(format!("{key} must be at least 200, got {value:?}")));
            }
            c.broker_session_timeout_ms = v;
            Ok(())
        },
    ),
    setting(
        "cluster.id",
        T::String,
        None,
        ReadOnly,
        "Generated at the first start when unset, then kept in the data directory.",
        |c, _, value| {
            c.cluster_id = Some(value.to_string());
            Ok(())
        },
    ),
    setting(
        "compression.type",
        T::String,
        Some("producer"),
        Dynamic,
        "The codec batches are stored in; `producer` keeps them as sent.",
        |c, key, value| {
            c.compression_type = CompressionType::parse(value)
                .ok_or_else(|| ConfigError::invalid(format!("invalid value {value:?} for {key}")))?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "compression.type",
        synonyms: &["compression.type"],
        config_type: T::String,
        default: "producer",
        doc: "producer keeps batches as sent; a codec (uncompressed, gzip, snappy, lz4, zstd) rewrites each incoming batch with it.",
        apply: |_, key, value| match CompressionType::parse(value) {
            Some(_) => Ok(()),
            None => Err(ConfigError::invalid(format!("invalid value {value:?} for config {key}"))),
        },
        inherited: |b| b.compression_type.name().to_string(),
    }),
    setting(
        "controller.listener.names",
        T::String,
        None,
        ReadOnly,
        "The listeners the controller uses, not served to clients (KRaft).",
        |c, _, value| {
            c.controller_listener_names = listeners::parse_names(value);
            Ok(())
        },
    ),
    setting(
        "controller.quorum.bootstrap.servers",
        T::List,
        Some(""),
        ReadOnly,
        "`host:port,...` of the controllers (Kafka 4's dynamic quorum); tidelog's quorum is static, so at most one (this node).",
        |c, key, value| {
            c.controller_quorum_bootstrap_servers = listeners::parse_servers(key, value)?;
            Ok(())
        },
    ),
    setting(
        "controller.quorum.voters",
        T::List,
        Some(""),
        ReadOnly,
        "`id@host:port,...` of the controllers (KRaft); several make a cluster of combined nodes.",
        |c, key, value| {
            c.controller_quorum_voters = listeners::parse_voters(key, value)?;
            Ok(())
        },
    ),
    setting(
        "default.replication.factor",
        T::Int,
        Some("1"),
        ReadOnly,
        "Replicas of a topic created with replication factor -1 (and of auto-created ones); more than the brokers is INVALID_REPLICATION_FACTOR.",
        |c, key, value| {
            let v: i16 = parse(key, value)?;
            if v < 1 {
                return Err(ConfigError::invalid(format!("{key} must be at least 1, got {value:?}")));
            }
            c.default_replication_factor = v;
            Ok(())
        },
    ),
    setting(
        "follower.replication.throttled.rate",
        T::Long,
        Some(KAFKA_LONG_MAX),
        Dynamic,
        "Bytes/s this broker's followers fetch for the replicas a topic's `follower.replication.throttled.replicas` names (reassignment throttling).",
        |c, key, value| {
            c.follower_replication_throttled_rate = non_negative(key, value)?;
            Ok(())
        },
    ),
    setting(
        "group.initial.rebalance.delay.ms",
        T::Int,
        Some("3000"),
        ReadOnly,
        "How long a new group waits for more members before its first rebalance.",
        |c, key, value| {
            c.group_initial_rebalance_delay_ms = parse(key, value)?;
            Ok(())
        },
    ),
    setting(
        "group.max.session.timeout.ms",
        T::Int,
        Some("1800000"),
        ReadOnly,
        "The longest session timeout a group member may ask for.",
        |c, key, value| {
            c.group_max_session_timeout_ms = parse(key, value)?;
            Ok(())
        },
    )
    .undescribed(),
    setting(
        "group.min.session.timeout.ms",
        T::Int,
        Some("6000"),
        ReadOnly,
        "The shortest session timeout a group member may ask for.",
        |c, key, value| {
            c.group_min_session_timeout_ms = parse(key, value)?;
            Ok(())
        },
    )
    .undescribed(),
    setting(
        "inter.broker.listener.name",
        T::String,
        None,
        ReadOnly,
        "The listener brokers use among themselves; checked; the cluster's brokers talk over the controller listener today.",
        |c, _, value| {
            c.inter_broker_listener_name = listeners::parse_names(value).pop();
            Ok(())
        },
    ),
    setting(
        "leader.imbalance.check.interval.seconds",
        T::Long,
        Some("300"),
        ReadOnly,
        "How often the active controller moves leadership back to preferred replicas (with `auto.leader.rebalance.enable`).",
        |c, key, value| {
            let v: u64 = parse(key, value)?;
            if v == 0 {
                return Err(ConfigError::invalid(format!("{key} must be positive, got {value:?}")));
            }
            c.leader_imbalance_check_interval_seconds = v;
            Ok(())
        },
    ),
    setting(
        "leader.replication.throttled.rate",
        T::Long,
        Some(KAFKA_LONG_MAX),
        Dynamic,
        "Bytes/s this broker's leaders send to the followers of the replicas a topic's `leader.replication.throttled.replicas` names (reassignment throttling).",
        |c, key, value| {
            c.leader_replication_throttled_rate = non_negative(key, value)?;
            Ok(())
        },
    ),
    setting(
        "listener.security.protocol.map",
        T::String,
        Some("SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"),
        ReadOnly,
        "`NAME:PROTOCOL,...` for each listener; PLAINTEXT only until TLS and SASL land.",
        |c, key, value| {
            c.listener_security_protocol_map = listeners::parse_protocol_map(key, value)?;
            Ok(())
        },
    ),
    setting(
        "listeners",
        T::String,
        Some("PLAINTEXT://127.0.0.1:9092"),
        ReadOnly,
        "`NAME://host:port,...`; every shard listens on the one not in `controller.listener.names` (SO_REUSEPORT).",
        |c, key, value| {
            c.listeners = listeners::parse_listeners(key, value)?;
            Ok(())
        },
    )
    .aliases(&["listen"]),
    setting(
        "log.cleaner.backoff.ms",
        T::Long,
        Some("15000"),
        ReadOnly,
        "The pause between two cleaner passes of a shard.",
        |c, key, value| {
            c.log_cleaner_backoff_ms = parse(key, value)?;
            Ok(())
        },
    )
    .undescribed(),
    setting(
        "log.cleaner.dedupe.buffer.size",
        T::Long,
        Some("16777216"),
        ReadOnly,
        "Bytes of each shard's cleaner key map (24 bytes a key).",
        |c, key, value| {
            let v: usize = parse(key, value)?;
            if v < LOG_CLEANER_DEDUPE_BUFFER_SIZE_MIN {
                return Err(ConfigError::invalid(format!(
                    "{key} must be at least {LOG_CLEANER_DEDUPE_BUFFER_SIZE_MIN}"
                )));
            }
            c.log_cleaner_dedupe_buffer_size = v;
            Ok(())
        },
    )
    .undescribed(),
    setting(
        "log.cleaner.delete.retention.ms",
        T::Long,
        Some("86400000"),
        Dynamic,
        "How long tombstones stay readable on compacted topics.",
        |c, key, value| {
            c.log_cleaner_delete_retention_ms = parse(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "delete.retention.ms",
        synonyms: &["log.cleaner.delete.retention.ms"],
        config_type: T::Long,
        default: "86400000",
        doc: "How long tombstones are kept on a compacted topic.",
        apply: |l, key, value| {
            l.delete_retention_ms = number(key, value, 0, "LONG")?;
            Ok(())
        },
        inherited: |b| b.log_cleaner_delete_retention_ms.to_string(),
    }),
    setting(
        "log.cleaner.min.cleanable.ratio",
        T::Double,
        Some("0.5"),
        Dynamic,
        "Dirty share of the log above which compaction runs.",
        |c, key, value| {
            let r: f64 = parse(key, value)?;
            if !(0.0..=1.0).contains(&r) {
                return Err(ConfigError::invalid(format!("{key} must be between 0 and 1, got {value:?}")));
            }
            c.log_cleaner_min_cleanable_ratio = r;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "min.cleanable.dirty.ratio",
        synonyms: &["log.cleaner.min.cleanable.ratio"],
        config_type: T::Double,
        default: "0.5",
        doc: "Dirty share of the log above which compaction runs.",
        apply: |l, key, value| {
            let r = number::<f64>(key, value, 0.0, "DOUBLE")?;
            if r > 1.0 {
                return Err(ConfigError::invalid(format!(
                    "invalid value {value:?} for config {key}: value must be at most 1"
                )));
            }
            l.min_cleanable_dirty_ratio = r;
            Ok(())
        },
        inherited: |b| b.log_cleaner_min_cleanable_ratio.to_string(),
    }),
    setting(
        "log.cleaner.min.compaction.lag.ms",
        T::Long,
        Some("0"),
        Dynamic,
        "Minimum age of a record before compaction may remove it.",
        |c, key, value| {
            c.log_cleaner_min_compaction_lag_ms = parse(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "min.compaction.lag.ms",
        synonyms: &["log.cleaner.min.compaction.lag.ms"],
        config_type: T::Long,
        default: "0",
        doc: "Minimum age of a record before compaction may remove it.",
        apply: |l, key, value| {
            l.min_compaction_lag_ms = number(key, value, 0, "LONG")?;
            Ok(())
        },
        inherited: |b| b.log_cleaner_min_compaction_lag_ms.to_string(),
    }),
    setting(
        "log.cleanup.policy",
        T::List,
        Some("delete"),
        Dynamic,
        "`delete`, `compact` or both: how old segments are discarded.",
        |c, key, value| {
            c.log_cleanup_policy = CleanupPolicy::parse(value)
                .ok_or_else(|| ConfigError::invalid(format!("invalid value {value:?} for {key}")))?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "cleanup.policy",
        synonyms: &["log.cleanup.policy"],
        config_type: T::List,
        default: "delete",
        doc: "delete, compact, or both: how old segments are discarded.",
        apply: |l, key, value| {
            l.cleanup_policy = CleanupPolicy::parse(value).ok_or_else(|| {
                ConfigError::invalid(format!("invalid value {value:?} for config {key}: expected a list of delete and compact"))
            })?;
            Ok(())
        },
        inherited: |b| b.log_cleanup_policy.name().to_string(),
    }),
    setting(
        "log.dirs",
        T::String,
        Some("./tidelog-data"),
        ReadOnly,
        "The data directory (one; tidelog does not spread partitions over several).",
        |c, _, value| {
            c.data_dir = value.into();
            Ok(())
        },
    )
    .aliases(&["log.dir", "data.dir"]),
    setting(
        "log.flush.interval.messages",
        T::Long,
        Some(KAFKA_LONG_MAX),
        Dynamic,
        "Force an fsync after this many messages appended without one; default never.",
        |c, key, value| {
            c.log_flush_interval_messages = parse(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "flush.messages",
        synonyms: &["log.flush.interval.messages"],
        config_type: T::Long,
        default: KAFKA_LONG_MAX,
        doc: "Force an fsync after this many messages appended without one.",
        apply: |l, key, value| {
            l.flush_messages = number::<i64>(key, value, 1, "LONG")? as u64;
            Ok(())
        },
        // Kafka's "never" is Long.MAX_VALUE, ours u64::MAX.
        inherited: |b| {
            b.log_flush_interval_messages
                .min(i64::MAX as u64)
                .to_string()
        },
    }),
    setting(
        "log.flush.interval.ms",
        T::Long,
        None,
        Dynamic,
        "Force an fsync when the oldest unflushed message is this old; unset: never.",
        |c, key, value| {
            c.log_flush_interval_ms = parse(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "flush.ms",
        synonyms: &["log.flush.interval.ms"],
        config_type: T::Long,
        default: KAFKA_LONG_MAX,
        doc: "Force an fsync when the oldest unflushed message is this old.",
        apply: |l, key, value| {
            l.flush_ms = number(key, value, 0, "LONG")?;
            Ok(())
        },
        inherited: |b| b.log_flush_interval_ms.to_string(),
    }),
    setting(
        "log.index.interval.bytes",
        T::Int,
        Some("4096"),
        Dynamic,
        "Bytes of log between two offset-index entries.",
        |c, key, value| {
            c.log_index_interval_bytes = parse(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "index.interval.bytes",
        synonyms: &["log.index.interval.bytes"],
        config_type: T::Int,
        default: "4096",
        doc: "Bytes of log between two offset-index entries.",
        apply: |l, key, value| {
            l.index_interval_bytes = number::<i32>(key, value, 0, "INT")? as u32;
            Ok(())
        },
        inherited: |b| b.log_index_interval_bytes.to_string(),
    }),
    setting(
        "log.message.timestamp.after.max.ms",
        T::Long,
        Some("3600000"),
        Dynamic,
        "How far ahead of the broker's clock a CreateTime record may be stamped.",
        |c, key, value| {
            c.log_message_timestamp_after_max_ms = non_negative(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "message.timestamp.after.max.ms",
        synonyms: &["log.message.timestamp.after.max.ms"],
        config_type: T::Long,
        default: "3600000",
        doc: "How far ahead of the broker's clock a CreateTime record may be stamped.",
        apply: |l, key, value| {
            l.message_timestamp_after_max_ms = number(key, value, 0, "LONG")?;
            Ok(())
        },
        inherited: |b| b.log_message_timestamp_after_max_ms.to_string(),
    }),
    setting(
        "log.message.timestamp.before.max.ms",
        T::Long,
        Some(KAFKA_LONG_MAX),
        Dynamic,
        "How far behind the broker's clock a CreateTime record may be stamped.",
        |c, key, value| {
            c.log_message_timestamp_before_max_ms = non_negative(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "message.timestamp.before.max.ms",
        synonyms: &["log.message.timestamp.before.max.ms"],
        config_type: T::Long,
        default: KAFKA_LONG_MAX,
        doc: "How far behind the broker's clock a CreateTime record may be stamped.",
        apply: |l, key, value| {
            l.message_timestamp_before_max_ms = number(key, value, 0, "LONG")?;
            Ok(())
        },
        inherited: |b| b.log_message_timestamp_before_max_ms.to_string(),
    }),
    setting(
        "log.message.timestamp.type",
        T::String,
        Some("CreateTime"),
        Dynamic,
        "`CreateTime` keeps the producer's timestamps; `LogAppendTime` stamps the append time.",
        |c, key, value| {
            c.log_message_timestamp_type = TimestampType::parse(value)
                .ok_or_else(|| ConfigError::invalid(format!("invalid value {value:?} for {key}")))?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "message.timestamp.type",
        synonyms: &["log.message.timestamp.type"],
        config_type: T::String,
        default: "CreateTime",
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps the append time.",
        apply: |l, key, value| {
            l.message_timestamp_type = TimestampType::parse(value).ok_or_else(|| {
                ConfigError::invalid(format!("invalid value {value:?} for config {key}: expected CreateTime or LogAppendTime"))
            })?;
            Ok(())
        },
        inherited: |b| b.log_message_timestamp_type.name().to_string(),
    }),
    setting(
        "log.retention.bytes",
        T::Long,
        Some("-1"),
        Dynamic,
        "Partition size above which the oldest segments are deleted; -1 unbounded.",
        |c, key, value| {
            c.log_retention_bytes = parse(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "retention.bytes",
        synonyms: &["log.retention.bytes"],
        config_type: T::Long,
        default: "-1",
        doc: "Partition size above which the oldest segments are deleted; -1 unbounded.",
        apply: |l, key, value| {
            l.retention_bytes = number(key, value, i64::MIN, "LONG")?;
            Ok(())
        },
        inherited: |b| b.log_retention_bytes.to_string(),
    }),
    setting(
        "log.retention.check.interval.ms",
        T::Long,
        Some("300000"),
        ReadOnly,
        "How often each shard deletes segments past retention.",
        |c, key, value| {
            c.log_retention_check_interval_ms = parse(key, value)?;
            Ok(())
        },
    ),
    setting(
        "log.retention.hours",
        T::Int,
        Some("168"),
        Dynamic,
        "`retention.ms` in hours; `.minutes` and `.ms` take precedence.",
        |c, key, value| {
            c.log_retention_ms = in_ms(key, value, HOUR_MS)?;
            Ok(())
        },
    ),
    setting(
        "log.retention.minutes",
        T::Int,
        None,
        Dynamic,
        "`retention.ms` in minutes; `.ms` takes precedence.",
        |c, key, value| {
            c.log_retention_ms = in_ms(key, value, MINUTE_MS)?;
            Ok(())
        },
    ),
    setting(
        "log.retention.ms",
        T::Long,
        None,
        Dynamic,
        "Age after which closed segments are deleted; -1 keeps forever.",
        |c, key, value| {
            c.log_retention_ms = parse(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "retention.ms",
        synonyms: &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        config_type: T::Long,
        default: "168",
        doc: "Age after which closed segments are deleted; -1 keeps forever.",
        apply: |l, key, value| {
            l.retention_ms = number(key, value, -1, "LONG")?;
            Ok(())
        },
        inherited: |b| b.log_retention_ms.to_string(),
    }),
    setting(
        "log.roll.hours",
        T::Int,
        Some("168"),
        Dynamic,
        "`segment.ms` in hours; `log.roll.ms` takes precedence.",
        |c, key, value| {
            c.log_roll_ms = in_ms(key, value, HOUR_MS)?;
            Ok(())
        },
    ),
    setting(
        "log.roll.ms",
        T::Long,
        None,
        Dynamic,
        "Segment age at which the log rolls on the next append.",
        |c, key, value| {
            c.log_roll_ms = parse(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "segment.ms",
        synonyms: &["log.roll.ms", "log.roll.hours"],
        config_type: T::Long,
        default: "168",
        doc: "Segment age at which the log rolls on the next append.",
        apply: |l, key, value| {
            l.segment_ms = number(key, value, 1, "LONG")?;
            Ok(())
        },
        inherited: |b| b.log_roll_ms.to_string(),
    }),
    setting(
        "log.segment.bytes",
        T::Int,
        Some("1073741824"),
        Dynamic,
        "Segment size at which the log rolls to a new segment.",
        |c, key, value| {
            c.log_segment_bytes = parse(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "segment.bytes",
        synonyms: &["log.segment.bytes"],
        config_type: T::Int,
        default: "1073741824",
        doc: "Segment size at which the log rolls to a new segment.",
        // Kafka's minimum: the overhead of one legacy record.
        apply: |l, key, value| {
            l.segment_bytes = number::<i32>(key, value, 14, "INT")? as u64;
            Ok(())
        },
        inherited: |b| b.log_segment_bytes.to_string(),
    }),
    setting(
        "max.connections",
        T::Int,
        Some("10000"),
        Dynamic,
        "Client connections the broker keeps open at most; checked at each accept.",
        |c, key, value| {
            c.max_connections = parse(key, value)?;
            Ok(())
        },
    ),
    setting(
        "message.max.bytes",
        T::Int,
        Some("1048588"),
        Dynamic,
        "The largest record batch accepted.",
        |c, key, value| {
            c.message_max_bytes = parse(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "max.message.bytes",
        synonyms: &["message.max.bytes"],
        config_type: T::Int,
        default: "1048588",
        doc: "The largest record batch accepted.",
        apply: |l, key, value| {
            l.max_message_bytes = number::<i32>(key, value, 0, "INT")? as u32;
            Ok(())
        },
        inherited: |b| b.message_max_bytes.to_string(),
    }),
    setting(
        "min.insync.replicas",
        T::Int,
        Some("1"),
        Dynamic,
        "The in-sync replicas a partition needs for acks=all: fewer answer NOT_ENOUGH_REPLICAS.",
        |c, key, value| {
            c.min_insync_replicas = parse(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "min.insync.replicas",
        synonyms: &["min.insync.replicas"],
        config_type: T::Int,
        default: "1",
        doc: "The in-sync replicas a partition needs for acks=all: fewer answer NOT_ENOUGH_REPLICAS.",
        apply: |_, key, value| number::<i32>(key, value, 1, "INT").map(drop),
        inherited: |b| b.min_insync_replicas.to_string(),
    }),
    setting(
        "node.id",
        T::Int,
        Some("1"),
        ReadOnly,
        "This broker's id, the name of its DescribeConfigs broker resource.",
        |c, key, value| {
            c.node_id = parse(key, value)?;
            Ok(())
        },
    )
    .aliases(&["broker.id"]),
    accepted(
        "num.io.threads",
        "Kafka's request-handler pool; thread-per-core has none (see `shards`). Checked, not used.",
    ),
    accepted(
        "num.network.threads",
        "Kafka's network-thread pool; each shard owns its sockets. Checked, not used.",
    ),
    setting(
        "num.partitions",
        T::Int,
        Some("1"),
        ReadOnly,
        "Partitions of an automatically created topic.",
        |c, key, value| {
            c.num_partitions = parse(key, value)?;
            Ok(())
        },
    ),
    accepted(
        "num.recovery.threads.per.data.dir",
        "Kafka's recovery pool; each shard recovers its own partitions. Checked, not used.",
    ),
    setting(
        "offsets.topic.replication.factor",
        T::Short,
        Some("3"),
        ReadOnly,
        "Replicas of `__consumer_offsets` when it is created: this many, or every live broker when there are fewer (one on a single node).",
        |c, key, value| {
            let v: i16 = parse(key, value)?;
            if v < 1 {
                return Err(ConfigError::invalid(format!("{key} must be at least 1, got {value:?}")));
            }
            c.offsets_topic_replication_factor = v;
            Ok(())
        },
    ),
    setting(
        "process.roles",
        T::List,
        None,
        ReadOnly,
        "`broker,controller` (KRaft combined) or unset; a node with one role needs the cluster.",
        |c, key, value| {
            c.process_roles = Some(listeners::parse_roles(key, value)?);
            Ok(())
        },
    ),
    setting(
        "replica.alter.log.dirs.io.max.bytes.per.second",
        T::Long,
        Some(KAFKA_LONG_MAX),
        Dynamic,
        "Kafka's cap on moving replicas between a broker's log dirs; tidelog has one data dir, so there is nothing to cap. Checked, not used (`kafka-reassign-partitions.sh --verify` clears it).",
        |_, key, value| non_negative(key, value).map(drop),
    ),
    setting(
        "replica.lag.time.max.ms",
        T::Long,
        Some("30000"),
        ReadOnly,
        "How long an in-sync follower may go without catching up to its leader before the leader takes it out of the ISR.",
        |c, key, value| {
            let v: u64 = parse(key, value)?;
            if v == 0 {
                return Err(ConfigError::invalid(format!("{key} must be positive, got {value:?}")));
            }
            c.replica_lag_time_max_ms = v;
            Ok(())
        },
    ),
    setting(
        "shards",
        T::Int,
        None,
        ReadOnly,
        "tidelog's own: executors (one pinned thread each); unset: one per available core.",
        |c, key, value| {
            c.shards = Some(parse(key, value)?);
            Ok(())
        },
    )
    .undescribed(),
    accepted(
        "share.coordinator.state.topic.min.isr",
        "Share groups (KIP-932) are not served. Checked, not used.",
    ),
    accepted(
        "share.coordinator.state.topic.replication.factor",
        "Share groups (KIP-932) are not served. Checked, not used.",
    ),
    accepted(
        "socket.receive.buffer.bytes",
        "SO_RCVBUF in Kafka; tidelog leaves socket buffers to the kernel's autotuning. Checked, not used.",
    ),
    setting(
        "socket.request.max.bytes",
        T::Int,
        Some("104857600"),
        ReadOnly,
        "The largest request frame, checked before anything is allocated for it.",
        |c, key, value| {
            let v: u32 = parse(key, value)?;
            if v as usize > SHARD_INFLIGHT_BYTES_MAX {
                return Err(ConfigError::invalid(format!(
                    "{key} may be at most {SHARD_INFLIGHT_BYTES_MAX}, the in-flight bytes of one shard"
                )));
            }
            c.socket_request_max_bytes = v;
            Ok(())
        },
    ),
    accepted(
        "socket.send.buffer.bytes",
        "SO_SNDBUF in Kafka; tidelog leaves socket buffers to the kernel's autotuning. Checked, not used.",
    ),
    setting(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        T::Int,
        Some("10000"),
        ReadOnly,
        "How often each shard aborts the transactions that outlived their `transaction.timeout.ms`.",
        |c, key, value| {
            let v: i32 = parse(key, value)?;
            if v < 1 {
                return Err(ConfigError::invalid(format!("{key} must be at least 1, got {value:?}")));
            }
            c.transaction_abort_interval_ms = v as u64;
            Ok(())
        },
    ),
    setting(
        "transaction.max.timeout.ms",
        T::Int,
        Some("900000"),
        ReadOnly,
        "The longest `transaction.timeout.ms` a producer may ask (INVALID_TRANSACTION_TIMEOUT beyond).",
        |c, key, value| {
            let v: i32 = parse(key, value)?;
            if v < 1 {
                return Err(ConfigError::invalid(format!("{key} must be at least 1, got {value:?}")));
            }
            c.transaction_max_timeout_ms = v;
            Ok(())
        },
    ),
    accepted(
        "transaction.state.log.min.isr",
        "State writes wait for the in-sync replicas, whatever their number. Checked, not used.",
    ),
    setting(
        "transaction.state.log.num.partitions",
        T::Int,
        Some("50"),
        ReadOnly,
        "Partitions of `__transaction_state` when it is created; a transactional id's partition is Kafka's `abs(hashCode) % this`.",
        |c, key, value| {
            let v: i32 = parse(key, value)?;
            if !(1..=crate::config::PARTITIONS_PER_TOPIC_MAX).contains(&v) {
                return Err(ConfigError::invalid(format!("{key} must be between 1 and {}, got {value:?}", crate::config::PARTITIONS_PER_TOPIC_MAX)));
            }
            c.transaction_state_log_num_partitions = v;
            Ok(())
        },
    ),
    setting(
        "transaction.state.log.replication.factor",
        T::Short,
        Some("3"),
        ReadOnly,
        "Replicas of `__transaction_state` when it is created: this many, or every live broker when there are fewer (one on a single node).",
        |c, key, value| {
            let v: i16 = parse(key, value)?;
            if v < 1 {
                return Err(ConfigError::invalid(format!("{key} must be at least 1, got {value:?}")));
            }
            c.transaction_state_log_replication_factor = v;
            Ok(())
        },
    ),
    setting(
        "transactional.id.expiration.ms",
        T::Int,
        Some("604800000"),
        ReadOnly,
        "A transactional id without a transaction whose state has not changed for this long is forgotten (its producer's next InitProducerId starts afresh).",
        |c, key, value| {
            let v: i32 = parse(key, value)?;
            if v < 1 {
                return Err(ConfigError::invalid(format!("{key} must be at least 1, got {value:?}")));
            }
            c.transactional_id_expiration_ms = i64::from(v);
            Ok(())
        },
    ),
    setting(
        "unclean.leader.election.enable",
        T::Boolean,
        Some("false"),
        Dynamic,
        UNCLEAN_DOC,
        |c, key, value| {
            c.unclean_leader_election_enable = parse(key, value)?;
            Ok(())
        },
    )
    .topic(TopicConfig {
        name: "unclean.leader.election.enable",
        synonyms: &["unclean.leader.election.enable"],
        config_type: T::Boolean,
        default: "false",
        doc: UNCLEAN_DOC,
        apply: |_, key, value| parse::<bool>(key, value).map(drop),
        inherited: |b| b.unclean_leader_election_enable.to_string(),
    }),
];

/// Topic configs no broker setting supplies a default for.
pub static TOPIC_ONLY: &[TopicConfig] = &[
    TopicConfig {
        name: "follower.replication.throttled.replicas",
        synonyms: &[],
        config_type: T::List,
        default: "",
        doc: "`*` or `partition:broker,...`: replicas whose fetching on that broker counts against its `follower.replication.throttled.rate`.",
        apply: |_, key, value| crate::partitions::quota::check_replica_list(key, value),
        inherited: |_| String::new(),
    },
    TopicConfig {
        name: "leader.replication.throttled.replicas",
        synonyms: &[],
        config_type: T::List,
        default: "",
        doc: "`*` or `partition:broker,...`: replicas whose leader on that broker sends to followers within its `leader.replication.throttled.rate`.",
        apply: |_, key, value| crate::partitions::quota::check_replica_list(key, value),
        inherited: |_| String::new(),
    },
];

const UNCLEAN_DOC: &str = "In a cluster, a partition whose in-sync replicas are all down is led by any live replica (losing what only they had) instead of waiting for one of them.";

// The table's shape is checked when the broker compiles: rows sorted by name (DescribeConfigs
// lists them in table order, as Kafka does), and a topic config hung on the row of its first,
// most precise synonym. The unit tests below check the rest (aliases, defaults, docs).
const _: () = {
    let mut i = 0;
    while i < SETTINGS.len() {
        if i > 0 {
            assert!(str_lt(SETTINGS[i - 1].name, SETTINGS[i].name));
        }
        if let Some(t) = &SETTINGS[i].topic {
            assert!(!t.synonyms.is_empty() && str_eq(t.synonyms[0], SETTINGS[i].name));
        }
        i += 1;
    }
};

const fn str_lt(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut i = 0;
    while i < a.len() && i < b.len() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    a.len() < b.len()
}

const fn str_eq(a: &str, b: &str) -> bool {
    !str_lt(a, b) && !str_lt(b, a)
}

/// The setting `key` names, by its Kafka name or one of its aliases.
pub fn setting_named(key: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .find(|s| s.name == key || s.aliases.contains(&key))
}

/// Every topic config, sorted by name (DescribeConfigs lists them in this order).
pub fn topic_configs() -> Vec<&'static TopicConfig> {
    let mut all: Vec<&TopicConfig> = SETTINGS
        .iter()
        .filter_map(|s| s.topic.as_ref())
        .chain(TOPIC_ONLY)
        .collect();
    all.sort_by_key(|t| t.name);
    all
}

/// The topic config named `name`, or `None` for a name Kafka topics do not have.
pub fn topic_config(name: &str) -> Option<&'static TopicConfig> {
    SETTINGS
        .iter()
        .filter_map(|s| s.topic.as_ref())
        .chain(TOPIC_ONLY)
        .find(|t| t.name == name)
}

/// Parses `value` as a number no smaller than `min`, with Kafka's wording for topic configs.
fn number<N: std::str::FromStr + PartialOrd + std::fmt::Display>(
    key: &str,
    value: &str,
    min: N,
    kind: &str,
) -> Result<N, ConfigError> {
    let n: N = value.trim().parse().map_err(|_| {
        ConfigError::invalid(format!(
            "invalid value {value:?} for config {key}: not a number of type {kind}"
        ))
    })?;
    if n < min {
        return Err(ConfigError::invalid(format!(
            "invalid value {value:?} for config {key}: value must be at least {min}"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_sorted_and_every_name_is_unique() {
        for pair in SETTINGS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
        let mut names: Vec<&str> = SETTINGS
            .iter()
            .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a name or alias used twice");
        let mut topics: Vec<&str> = topic_configs().iter().map(|t| t.name).collect();
        topics.dedup();
        assert_eq!(topics.len(), topic_configs().len());
    }

    #[test]
    fn topic_synonyms_name_dynamic_settings_and_end_at_the_reported_default() {
        for s in SETTINGS {
            let Some(t) = &s.topic else { continue };
            assert_eq!(t.synonyms.first(), Some(&s.name), "{}", t.name);
            for synonym in t.synonyms {
                let row = SETTINGS.iter().find(|r| r.name == *synonym);
                let row = row.unwrap_or_else(|| panic!("{}: no setting {synonym}", t.name));
                // A topic follows its broker default at run time, so the default must be
                // changeable at run time too.
                assert_eq!(row.mode, Mode::Dynamic, "{synonym}");
                assert!(row.described, "{synonym}");
            }
            let last = SETTINGS
                .iter()
                .find(|r| Some(&r.name) == t.synonyms.last())
                .unwrap();
            // Kafka reports flush.ms's default (Long.MAX_VALUE) although log.flush.interval.ms
            // itself is null.
            if let Some(d) = last.default {
                assert_eq!(d, t.default, "{}", t.name);
            }
        }
    }

    #[test]
    fn every_default_and_every_alias_parses() {
        for s in SETTINGS {
            let mut c = BrokerConfig::default();
            if let Some(d) = s.default {
                (s.set)(&mut c, s.name, d).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            }
            for alias in s.aliases {
                let value = s.default.unwrap_or("h:1");
                c.set(alias, value).unwrap();
                assert_eq!(c.explicit.last().unwrap().0, s.name, "{alias}");
            }
            if let Some(t) = &s.topic {
                let mut l = LogConfig::default();
                (t.apply)(&mut l, t.name, &(t.inherited)(&BrokerConfig::default()))
                    .unwrap_or_else(|e| panic!("{}: {e}", t.name));
            }
        }
    }

    /// The log's own defaults (used where no broker config is at hand: tests, tools) are the
    /// ones the schema's defaults give a topic.
    #[test]
    fn the_log_defaults_are_the_schema_defaults() {
        let mut from_schema = BrokerConfig::default();
        for s in SETTINGS {
            if let Some(d) = s.default {
                (s.set)(&mut from_schema, s.name, d).unwrap();
            }
        }
        // Kafka's "never" for log.flush.interval.messages is Long.MAX_VALUE, ours u64::MAX.
        from_schema.log_flush_interval_messages = u64::MAX;
        let topic = crate::metadata::log_config(&from_schema, &Default::default()).unwrap();
        assert_eq!(topic, LogConfig::default());
    }

    #[test]
    fn hours_and_minutes_that_overflow_milliseconds_are_refused() {
        let mut c = BrokerConfig::default();
        for key in [
            "log.retention.hours",
            "log.retention.minutes",
            "log.roll.hours",
        ] {
            let err = c.set(key, "9223372036854775807").unwrap_err();
            assert!(err.message().contains(key), "{err}");
        }
        assert_eq!(c.log_retention_ms, BrokerConfig::default().log_retention_ms);
        c.set("log.retention.minutes", "2").unwrap();
        assert_eq!(c.log_retention_ms, 120_000);
    }

    #[test]
    fn typed_values_keep_kafkas_spellings() {
        let mut c = BrokerConfig::default();
        c.set("log.cleanup.policy", "delete, compact").unwrap();
        assert_eq!(
            c.log_cleanup_policy,
            CleanupPolicy {
                delete: true,
                compact: true
            }
        );
        assert_eq!(c.log_cleanup_policy.name(), "compact,delete");
        c.set("compression.type", "zstd").unwrap();
        assert_eq!(c.compression_type, CompressionType::Zstd);
        assert!(c.set("compression.type", "brotli").is_err());
        c.set("log.message.timestamp.type", "LogAppendTime")
            .unwrap();
        assert_eq!(c.log_message_timestamp_type, TimestampType::LogAppendTime);
        assert!(c
            .set("log.message.timestamp.type", "logappendtime")
            .is_err());
        for name in ["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"] {
            assert_eq!(CompressionType::parse(name).unwrap().name(), name);
        }
    }
}

//! `tidelog topic create|list|describe|delete|alter-config|add-partitions|delete-records`, after
//! `kafka-topics.sh`, `kafka-configs.sh` and `kafka-delete-records.sh`.

use std::io::Write;
use std::time::Duration;

use crate::client::admin::TopicInfo;
use crate::client::{ClientError, TopicSpec};

use super::ConnArgs;

/// Topic administration subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names, one per line.
    List {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Describe one topic, or all: partitions, leaders, replicas and the topic's own configs.
    Describe {
        /// Topic to describe; all topics when left out.
        name: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic to delete.
        name: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Set or remove topic configs; they take effect at once (like kafka-configs.sh --alter).
    AlterConfig(AlterConfigArgs),
    /// Raise a topic's partition count (like kafka-topics.sh --alter --partitions).
    AddPartitions {
        /// Topic to grow.
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        partitions: i32,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Delete a partition's records below an offset (like kafka-delete-records.sh).
    DeleteRecords {
        /// Topic name.
        name: String,
        /// Partition index.
        #[arg(long)]
        partition: i32,
        /// Records below this offset are deleted; -1 deletes up to the high watermark.
        #[arg(long, allow_hyphen_values = true)]
        before_offset: i64,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

/// Arguments of `tidelog topic alter-config`.
#[derive(clap::Args, Debug)]
pub struct AlterConfigArgs {
    /// Topic name.
    pub name: String,
    /// A config to set, `key=value`; repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    pub set: Vec<(String, String)>,
    /// A config to remove (back to the broker's default); repeatable.
    #[arg(long, value_name = "KEY")]
    pub delete: Vec<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Arguments of `tidelog topic create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Topic name.
    pub name: String,
    /// Number of partitions (default: the broker's `num.partitions`).
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Replication factor (default: the broker's `default.replication.factor`).
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// A topic config, `key=value` (e.g. `retention.ms=86400000`); repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    pub config: Vec<(String, String)>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs a topic subcommand.
pub fn run(cmd: TopicCommand) -> Result<(), ClientError> {
    match cmd {
        TopicCommand::Create(args) => {
            let mut client = args.conn.connect()?;
            client.create_topic(&TopicSpec {
                name: args.name.clone(),
                partitions: args.partitions,
                replication_factor: args.replication_factor,
                configs: args.config,
            })?;
            println!("Created topic {}.", args.name);
            Ok(())
        }
        TopicCommand::List { conn } => {
            let mut names: Vec<String> = conn
                .connect()?
                .metadata(None, false)?
                .into_iter()
                .map(|t| t.name)
                .collect();
            names.sort();
            let mut out = std::io::stdout().lock();
            for name in names {
                let _ = writeln!(out, "{name}");
            }
            Ok(())
        }
        TopicCommand::Describe { name, conn } => describe(&conn, name.as_deref()),
        TopicCommand::Delete { name, conn } => {
            conn.connect()?.delete_topic(&name)?;
            println!("Deleted topic {name}.");
            Ok(())
        }
        TopicCommand::AlterConfig(args) => {
            if args.set.is_empty() && args.delete.is_empty() {
                return Err(ClientError::Other(
                    "alter-config needs at least one --set or --delete".into(),
                ));
            }
            let mut client = args.conn.connect()?;
            client.alter_topic_configs(&args.name, &args.set, &args.delete)?;
            println!("Completed updating config for topic {}.", args.name);
            Ok(())
        }
        TopicCommand::AddPartitions {
            name,
            partitions,
            conn,
        } => {
            conn.connect()?.create_partitions(&name, partitions)?;
            println!("Topic {name} now has {partitions} partitions.");
            Ok(())
        }
        TopicCommand::DeleteRecords {
            name,
            partition,
            before_offset,
            conn,
        } => {
            let low = conn
                .connect()?
                .delete_records(&name, partition, before_offset)?;
            println!("partition: {name}-{partition}\tlow_watermark: {low}");
            Ok(())
        }
    }
}

/// Prints topics in `kafka-topics.sh --describe`'s shape: a topic line, then one line per
/// partition.
fn describe(conn: &ConnArgs, name: Option<&str>) -> Result<(), ClientError> {
    let mut client = conn.connect()?;
    let mut topics = match name {
        Some(name) => vec![client.topic(name, false, Duration::ZERO)?],
        None => client.metadata(None, false)?,
    };
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    for topic in &topics {
        let configs = client.topic_configs(&topic.name)?.unwrap_or_default();
        out.push_str(&describe_topic(topic, &configs));
    }
    print!("{out}");
    Ok(())
}

/// One topic's description.
pub fn describe_topic(topic: &TopicInfo, configs: &[(String, String)]) -> String {
    let replication = topic.partitions.first().map_or(0, |p| p.replicas.len());
    let configs: Vec<String> = configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut out = format!(
        "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}\n",
        topic.name,
        kafka_uuid(topic.topic_id.as_bytes()),
        topic.partitions.len(),
        replication,
        configs.join(",")
    );
    let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    for p in &topic.partitions {
        let leader = if p.leader < 0 {
            "none".to_owned()
        } else {
            p.leader.to_string()
        };
        out.push_str(&format!(
            "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\n",
            topic.name,
            p.index,
            leader,
            ids(&p.replicas),
            ids(&p.isr)
        ));
    }
    out
}

/// A topic id as Kafka prints it (`Uuid.toString()`): URL-safe base64 without padding.
pub fn kafka_uuid(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::admin::PartitionInfo;

    #[test]
    fn uuids_print_like_kafka() {
        assert_eq!(kafka_uuid(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        // Expected value: Python's `base64.urlsafe_b64encode(uuid.bytes)` without the padding.
        let id = uuid::Uuid::parse_str("63349dcf-59ed-4365-bc20-72eb92951c1d").unwrap();
        assert_eq!(kafka_uuid(id.as_bytes()), "YzSdz1ntQ2W8IHLrkpUcHQ");
    }

    #[test]
    fn descriptions_have_kafka_topics_shape() {
        let topic = TopicInfo {
            name: "t".into(),
            topic_id: uuid::Uuid::nil(),
            error_code: 0,
            is_internal: false,
            partitions: (0..2)
                .map(|index| PartitionInfo {
                    index,
                    leader: 0,
                    replicas: vec![0],
                    isr: vec![0],
                    error_code: 0,
                })
                .collect(),
        };
        let text = describe_topic(&topic, &[("retention.ms".into(), "5".into())]);
        assert_eq!(
            text,
            "Topic: t\tTopicId: AAAAAAAAAAAAAAAAAAAAAA\tPartitionCount: 2\tReplicationFactor: 1\tConfigs: retention.ms=5\n\
             \tTopic: t\tPartition: 0\tLeader: 0\tReplicas: 0\tIsr: 0\n\
             \tTopic: t\tPartition: 1\tLeader: 0\tReplicas: 0\tIsr: 0\n"
        );
    }
}

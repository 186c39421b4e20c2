//! Before the run: find (or create) the topics, their partition leaders and the brokers'
//! addresses, agree on API versions, and resolve where consumers start.
//!
//! This is not the data path, so it reuses tidelog's blocking client; every failure becomes one
//! readable line that says what to do (start the broker, pass `--create-topic`, ...).

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::{
    FetchRequest, FindCoordinatorRequest, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::Request;
use tidelog::client::conn::Connection;
use tidelog::client::{Client, ClientError, OffsetSpec, TopicInfo, TopicSpec};

use crate::args::Args;

/// Produce versions loadgen encodes by hand (v13 names topics by id; never negotiated).
const PRODUCE_VERSION_MAX: i16 = 12;
/// Fetch versions loadgen has been tested against.
const FETCH_VERSION_MAX: i16 = 16;
/// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// How long a just-created topic may take to get leaders.
const TOPIC_READY_WAIT: Duration = Duration::from_secs(60);

/// One partition the run produces to or consumes from.
#[derive(Clone, Debug)]
pub struct Target {
    /// Index into [`Cluster::topics`].
    pub topic: usize,
    pub partition: i32,
    /// Node id of its leader.
    pub leader: i32,
}

/// Everything the workers need to know about the cluster, fixed for the run.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub topics: Vec<TopicInfo>,
    pub targets: Vec<Target>,
    /// Address of each leader node.
    pub nodes: HashMap<i32, String>,
    pub produce_version: i16,
    pub fetch_version: i16,
    /// Where each target's consumer starts, by target index (empty without consumers).
    pub start_offsets: Vec<i64>,
    /// Each target's log end offset at start, by target index (empty without consumers).
    pub end_offsets: Vec<i64>,
    /// The group API versions, with `--group`.
    pub group_versions: Option<Versions>,
}

/// Connects, prepares the topics and reads what the workers need.
pub fn prepare(args: &Args) -> Result<Cluster, String> {
    let mut client = Client::connect(&args.bootstrap_server).map_err(|e| match e {
        ClientError::Unreachable { .. } => format!(
            "{e}\n  is the broker running, and is --bootstrap-server {} its address?",
            args.bootstrap_server
        ),
        e => e.to_string(),
    })?;
    let mut topics = Vec::new();
    for name in args.topic_names() {
        topics.push(ensure_topic(&mut client, args, &name)?);
    }
    let conn = client.any().map_err(|e| e.to_string())?;
    let produce_version = conn
        .version::<ProduceRequest>()
        .map_err(|e| e.to_string())?
        .min(PRODUCE_VERSION_MAX);
    let fetch_version = conn
        .version::<FetchRequest>()
        .map_err(|e| e.to_string())?
        .min(FETCH_VERSION_MAX);
    let nodes = node_addresses(&mut client, &args.bootstrap_server)?;
    let mut targets = Vec::new();
    for (ti, t) in topics.iter().enumerate() {
        for p in &t.partitions {
            if !nodes.contains_key(&p.leader) {
                return Err(format!(
                    "{}-{}: leader {} is not among the brokers in the metadata",
                    t.name, p.index, p.leader
                ));
            }
            targets.push(Target {
                topic: ti,
                partition: p.index,
                leader: p.leader,
            });
        }
    }
    let mut cluster = Cluster {
        topics,
        targets,
        nodes,
        produce_version,
        fetch_version,
        start_offsets: Vec::new(),
        end_offsets: Vec::new(),
        group_versions: None,
    };
    if args.group.is_some() {
        cluster.group_versions = Some(group_versions(client.any().map_err(|e| e.to_string())?)?);
    }
    if args.consumers > 0 {
        let start = if args.consume_from_earliest() {
            OffsetSpec::Earliest
        } else {
            OffsetSpec::Latest
        };
        cluster.start_offsets = offsets(&mut client, &cluster, start)?;
        cluster.end_offsets = offsets(&mut client, &cluster, OffsetSpec::Latest)?;
    }
    Ok(cluster)
}

/// The topic's metadata; creates it when it is missing and `--create-topic` was given.
fn ensure_topic(client: &mut Client, args: &Args, name: &str) -> Result<TopicInfo, String> {
    let found = client
        .metadata(Some(&[name]), false)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|t| t.name == name);
    let missing = found
        .as_ref()
        .is_none_or(|t| t.error_code == UNKNOWN_TOPIC_OR_PARTITION);
    if missing {
        if !args.create_topic {
            return Err(format!(
                "topic {name:?} does not exist; pass --create-topic to create it with \
                 --partitions {} partitions",
                args.partitions
            ));
        }
        let configs = args
            .topic_config
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| format!("--topic-config wants KEY=VALUE, got {kv:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        client
            .create_topic(&TopicSpec {
                name: name.to_owned(),
                partitions: Some(args.partitions),
                replication_factor: args.replication_factor,
                configs,
            })
            .map_err(|e| e.to_string())?;
    }
    let info = client
        .topic(name, false, TOPIC_READY_WAIT)
        .map_err(|e| e.to_string())?;
    if !missing && args.create_topic && info.partitions.len() != args.partitions as usize {
        eprintln!(
            "tidelog-loadgen: topic {name:?} already exists with {} partitions (not {}); using it",
            info.partitions.len(),
            args.partitions
        );
    }
    Ok(info)
}

/// Node id to `HOST:PORT`. A one-broker cluster is reached through the bootstrap address, as
/// tidelog's client does: what a broker advertises may not route from here.
fn node_addresses(client: &mut Client, bootstrap: &str) -> Result<HashMap<i32, String>, String> {
    let req = MetadataRequest::default().with_topics(Some(Vec::new()));
    let conn = client.any().map_err(|e| e.to_string())?;
    let (_, resp) = conn.send(&req, Duration::ZERO).map_err(|e| e.to_string())?;
    let single = resp.brokers.len() <= 1;
    Ok(resp
        .brokers
        .iter()
        .map(|b| {
            let addr = if single {
                bootstrap.to_owned()
            } else {
                format!("{}:{}", b.host.as_str(), b.port)
            };
            (b.node_id.0, addr)
        })
        .collect())
}

/// Resolves `spec` for every target, in target order.
fn offsets(client: &mut Client, cluster: &Cluster, spec: OffsetSpec) -> Result<Vec<i64>, String> {
    let mut out = vec![0; cluster.targets.len()];
    for (ti, topic) in cluster.topics.iter().enumerate() {
        let parts: Vec<i32> = topic.partitions.iter().map(|p| p.index).collect();
        let resolved = client
            .resolve_offsets(topic, &parts, spec)
            .map_err(|e| e.to_string())?;
        let by_partition: HashMap<i32, i64> = resolved.into_iter().collect();
        for (i, t) in cluster.targets.iter().enumerate() {
            if t.topic == ti {
                out[i] = *by_partition
                    .get(&t.partition)
                    .ok_or_else(|| format!("no offset for {}-{}", topic.name, t.partition))?;
            }
        }
    }
    Ok(out)
}

/// The group API versions agreed with the broker (each capped at what loadgen has been tested
/// with); the requests themselves are built by `tidelog::protocol::consumer_group`.
#[derive(Clone, Copy, Debug)]
pub struct Versions {
    pub find_coordinator: i16,
    pub join: i16,
    pub sync: i16,
    pub heartbeat: i16,
    pub leave: i16,
    pub offset_commit: i16,
    pub offset_fetch: i16,
}

impl Versions {
    /// The highest versions loadgen speaks: FindCoordinator v4 and OffsetFetch v8 batch their
    /// keys and groups, which one group has no use for.
    pub const MAX: Versions = Versions {
        find_coordinator: 3,
        join: 9,
        sync: 5,
        heartbeat: 4,
        leave: 5,
        offset_commit: 8,
        offset_fetch: 7,
    };
}

/// The group API versions to speak with this broker.
fn group_versions(conn: &Connection) -> Result<Versions, String> {
    fn v<R: Request>(conn: &Connection, max: i16) -> Result<i16, String> {
        conn.version::<R>()
            .map(|v| v.min(max))
            .map_err(|e| format!("--group: the broker cannot serve consumer groups: {e}"))
    }
    let max = Versions::MAX;
    Ok(Versions {
        find_coordinator: v::<FindCoordinatorRequest>(conn, max.find_coordinator)?,
        join: v::<JoinGroupRequest>(conn, max.join)?,
        sync: v::<SyncGroupRequest>(conn, max.sync)?,
        heartbeat: v::<HeartbeatRequest>(conn, max.heartbeat)?,
        leave: v::<LeaveGroupRequest>(conn, max.leave)?,
        offset_commit: v::<OffsetCommitRequest>(conn, max.offset_commit)?,
        offset_fetch: v::<OffsetFetchRequest>(conn, max.offset_fetch)?,
    })
}

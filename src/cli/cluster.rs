//! `tidelog cluster status`, after `kafka-metadata-quorum.sh describe --status`: the cluster id
//! (DescribeCluster) and the metadata quorum (DescribeQuorum), in the tool's layout.

use std::time::Duration;

use kafka_protocol::messages::describe_quorum_request::TopicData;
use kafka_protocol::messages::describe_quorum_response::PartitionData;
use kafka_protocol::messages::describe_quorum_response::{self, ReplicaState};
use kafka_protocol::messages::{
    DescribeClusterRequest, DescribeQuorumRequest, DescribeQuorumResponse,
};

use crate::client::admin::topic_name;
use crate::client::error::check;
use crate::client::ClientError;

use super::ConnArgs;

/// Cluster subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// The cluster id and the metadata quorum: leader, epoch, high watermark, voters, observers
    /// (like kafka-metadata-quorum.sh describe --status).
    Status {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Each voter's and observer's log end offset, lag and fetch times (like
    /// kafka-metadata-quorum.sh describe --replication).
    Replication {
        #[command(flatten)]
        conn: ConnArgs,
    },
}

pub fn run(cmd: ClusterCommand) -> Result<(), ClientError> {
    match cmd {
        ClusterCommand::Status { conn } => print!("{}", status(&conn)?),
        ClusterCommand::Replication { conn } => print!("{}", replication(&conn)?),
    }
    Ok(())
}

/// The metadata partition's DescribeQuorum answer, checked.
fn describe_quorum(
    c: &mut crate::client::Connection,
) -> Result<(DescribeQuorumResponse, PartitionData), ClientError> {
    let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic_name("__cluster_metadata"))
        .with_partitions(vec![
            kafka_protocol::messages::describe_quorum_request::PartitionData::default()
                .with_partition_index(0),
        ])]);
    let (_, quorum) = c.send(&req, Duration::ZERO)?;
    check(quorum.error_code, quorum.error_message.as_deref(), || {
        "describe quorum".into()
    })?;
    let p = quorum
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .cloned()
        .ok_or_else(|| ClientError::Protocol("DescribeQuorum answered no partition".into()))?;
    check(p.error_code, p.error_message.as_deref(), || {
        "describe quorum".into()
    })?;
    Ok((quorum, p))
}

fn status(conn: &ConnArgs) -> Result<String, ClientError> {
    let mut client = conn.connect()?;
    let c = client.any()?;
    let (_, cluster) = c.send(&DescribeClusterRequest::default(), Duration::ZERO)?;
    check(cluster.error_code, cluster.error_message.as_deref(), || {
        "describe cluster".into()
    })?;
    let (quorum, p) = describe_quorum(c)?;
    let leader = p
        .current_voters
        .iter()
        .find(|v| v.replica_id == p.leader_id);
    let laggiest = p.current_voters.iter().min_by_key(|v| v.log_end_offset);
    let (max_lag, max_lag_ms) = match (leader, laggiest) {
        (Some(l), Some(f)) if l.replica_id == f.replica_id => (0, 0),
        (Some(l), Some(f)) => (
            l.log_end_offset - f.log_end_offset,
            if l.last_caught_up_timestamp >= 0 && f.last_caught_up_timestamp >= 0 {
                l.last_caught_up_timestamp - f.last_caught_up_timestamp
            } else {
                -1
            },
        ),
        _ => (0, -1),
    };
    Ok(format!(
        "ClusterId:              {}\n\
         LeaderId:               {}\n\
         LeaderEpoch:            {}\n\
         HighWatermark:          {}\n\
         MaxFollowerLag:         {max_lag}\n\
         MaxFollowerLagTimeMs:   {max_lag_ms}\n\
         CurrentVoters:          {}\n\
         CurrentObservers:       {}\n",
        cluster.cluster_id.as_str(),
        p.leader_id.0,
        p.leader_epoch,
        p.high_watermark,
        replicas(&p.current_voters, &quorum.nodes),
        replicas(&p.observers, &quorum.nodes),
    ))
}

/// `[{"id": 1, "endpoints": ["CONTROLLER://localhost:9093"]}, ...]`, as Kafka 4.1's
/// kafka-metadata-quorum.sh prints replicas (`"directoryId"` after the id where there is one).
fn replicas(states: &[ReplicaState], nodes: &[describe_quorum_response::Node]) -> String {
    let each: Vec<String> = states
        .iter()
        .map(|r| {
            // Kafka 4.1 leaves the directory id out where the quorum has none (a static one).
            let dir = if r.replica_directory_id.is_nil() {
                String::new()
            } else {
                format!(", \"directoryId\": \"{}\"", r.replica_directory_id)
            };
            let endpoints: Vec<String> = nodes
                .iter()
                .filter(|n| n.node_id == r.replica_id)
                .flat_map(|n| &n.listeners)
                .map(|l| format!("\"{}://{}:{}\"", l.name.as_str(), l.host.as_str(), l.port))
                .collect();
            let endpoints = if endpoints.is_empty() {
                String::new()
            } else {
                format!(", \"endpoints\": [{}]", endpoints.join(", "))
            };
            format!("{{\"id\": {}{dir}{endpoints}}}", r.replica_id.0)
        })
        .collect();
    format!("[{}]", each.join(", "))
}

/// kafka-metadata-quorum.sh describe --replication: the leader, then followers, then
/// observers, one row each, in its table layout (every cell padded to its column, a tab after
/// each).
fn replication(conn: &ConnArgs) -> Result<String, ClientError> {
    let mut client = conn.connect()?;
    let (_, p) = describe_quorum(client.any()?)?;
    let leader = p
        .current_voters
        .iter()
        .find(|v| v.replica_id == p.leader_id)
        .ok_or_else(|| ClientError::Protocol("the quorum's leader is not a voter".into()))?;
    let followers = p
        .current_voters
        .iter()
        .filter(|v| v.replica_id != p.leader_id);
    let rows: Vec<[String; 7]> = std::iter::once((leader, "Leader"))
        .chain(followers.map(|v| (v, "Follower")))
        .chain(p.observers.iter().map(|v| (v, "Observer")))
        .map(|(r, status)| {
            [
                r.replica_id.0.to_string(),
                crate::metadata::base64_uuid(r.replica_directory_id),
                r.log_end_offset.to_string(),
                (leader.log_end_offset - r.log_end_offset).to_string(),
                r.last_fetch_timestamp.to_string(),
                r.last_caught_up_timestamp.to_string(),
                status.to_string(),
            ]
        })
        .collect();
    let header = [
        "NodeId",
        "DirectoryId",
        "LogEndOffset",
        "Lag",
        "LastFetchTimestamp",
        "LastCaughtUpTimestamp",
        "Status",
    ];
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .fold(header[i].len(), usize::max)
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        for (cell, w) in cells.zip(&widths) {
            out.push_str(&format!("{cell:<w$}\t"));
        }
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in &rows {
        line(&mut r.iter().map(String::as_str));
    }
    Ok(out)
}

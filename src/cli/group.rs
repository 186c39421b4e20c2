//! `tidelog group list|describe|delete|reset-offsets`, after `kafka-consumer-groups.sh`: the same
//! columns, the same dry-run-by-default for resets, and Kafka's error names on failure.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::client::groups::{Committed, GroupDescription};
use crate::client::{Client, ClientError, OffsetSpec};

use super::ConnArgs;

/// How long to wait for a topic's metadata when computing log-end offsets.
const TOPIC_WAIT: Duration = Duration::from_secs(5);

/// Consumer-group subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List group ids, one per line (with --state: the group's state beside it).
    List {
        /// Only groups in this state (Empty, Stable, PreparingRebalance, ...); repeatable.
        #[arg(long)]
        state: Vec<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Show a group's committed offsets, log-end offsets, lag and owning members.
    Describe {
        /// Group id.
        group: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Delete a group and its committed offsets; the group must have no members.
    Delete {
        /// Group id.
        group: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Move a group's committed offsets (a dry run unless --execute).
    ResetOffsets(ResetArgs),
}

/// Arguments of `tidelog group reset-offsets`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset"])))]
pub struct ResetArgs {
    /// Group id.
    pub group: String,
    /// The topic whose offsets to reset: `TOPIC` for all partitions, `TOPIC:0,2` for some.
    #[arg(long, value_name = "TOPIC[:P,...]")]
    pub topic: String,
    /// Reset to each partition's log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// Reset to each partition's log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// Reset to this offset (clamped into each partition's range, as Kafka does).
    #[arg(long, value_name = "N")]
    pub to_offset: Option<i64>,
    /// Commit the new offsets; without it only the plan is printed.
    #[arg(long, conflicts_with = "dry_run")]
    pub execute: bool,
    /// Print the plan only (the default; accepted for Kafka's scripts).
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs one group subcommand.
pub fn run(cmd: GroupCommand) -> Result<(), ClientError> {
    match cmd {
        GroupCommand::List { state, conn } => {
            let groups = conn.connect()?.list_groups(&state)?;
            let rows: Vec<Vec<String>> = groups
                .into_iter()
                .map(|g| {
                    if state.is_empty() {
                        vec![g.group_id]
                    } else {
                        vec![g.group_id, g.state]
                    }
                })
                .collect();
            if state.is_empty() {
                rows.iter().for_each(|r| println!("{}", r[0]));
            } else {
                print!("{}", table(&["GROUP", "STATE"], &rows));
            }
            Ok(())
        }
        GroupCommand::Describe { group, conn } => describe(&mut conn.connect()?, &group),
        GroupCommand::Delete { group, conn } => {
            conn.connect()?.delete_group(&group)?;
            println!("Deletion of requested consumer groups ('{group}') was successful.");
            Ok(())
        }
        GroupCommand::ResetOffsets(args) => reset_offsets(args),
    }
}

/// `group describe`: one row per partition the group owns or has committed, one per member
/// that owns nothing.
fn describe(client: &mut Client, group: &str) -> Result<(), ClientError> {
    let desc = client.describe_group(group)?;
    if desc.state == "Dead" {
        return Err(ClientError::Other(format!(
            "consumer group '{group}' does not exist"
        )));
    }
    let committed = client.committed_offsets(group, None)?;
    let owners = owners(&desc);
    let partitions: BTreeSet<(String, i32)> =
        committed.keys().chain(owners.keys()).cloned().collect();
    let mut log_end = BTreeMap::new();
    let topics: BTreeSet<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
    for topic in topics {
        // A topic deleted since the commit has no log end; its rows show `-`.
        if let Ok(ends) = log_end_offsets(client, topic) {
            log_end.extend(ends);
        }
    }
    if desc.members.is_empty() {
        println!("Consumer group '{group}' has no active members.");
    }
    let mut rows = Vec::new();
    for tp in &partitions {
        let current = committed.get(tp).copied();
        let end = log_end.get(tp).copied();
        let lag = current.zip(end).map(|(c, e)| (e - c).max(0));
        let (member, host, client_id) = owners.get(tp).cloned().unwrap_or_default();
        rows.push(vec![
            group.to_owned(),
            tp.0.clone(),
            tp.1.to_string(),
            dash(current),
            dash(end),
            dash(lag),
            or_dash(member),
            or_dash(host),
            or_dash(client_id),
        ]);
    }
    for m in desc.members.iter().filter(|m| m.assignment.is_empty()) {
        let mut row = vec![group.to_owned()];
        row.extend(std::iter::repeat_n("-".to_owned(), 5));
        row.extend([
            m.member_id.clone(),
            host(&m.client_host),
            m.client_id.clone(),
        ]);
        rows.push(row);
    }
    let header = [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ];
    print!("{}", table(&header, &rows));
    Ok(())
}

/// `(member id, host, client id)` of the member that owns each assigned partition.
fn owners(desc: &GroupDescription) -> BTreeMap<(String, i32), (String, String, String)> {
    let mut out = BTreeMap::new();
    for m in &desc.members {
        for tp in &m.assignment {
            let who = (
                m.member_id.clone(),
                host(&m.client_host),
                m.client_id.clone(),
            );
            out.insert(tp.clone(), who);
        }
    }
    out
}

/// Kafka prints hosts as Java's `InetAddress` renders them: with a leading `/`.
fn host(h: &str) -> String {
    if h.is_empty() || h.starts_with('/') {
        h.to_owned()
    } else {
        format!("/{h}")
    }
}

fn dash(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s
    }
}

/// Each partition's log-end offset (`(topic, partition)` → offset).
fn log_end_offsets(client: &mut Client, topic: &str) -> Result<Committed, ClientError> {
    offsets_of(client, topic, None, OffsetSpec::Latest)
}

/// Resolves `spec` for `partitions` of `topic` (all when `None`).
fn offsets_of(
    client: &mut Client,
    topic: &str,
    partitions: Option<&[i32]>,
    spec: OffsetSpec,
) -> Result<Committed, ClientError> {
    let info = client.topic(topic, false, TOPIC_WAIT)?;
    let all: Vec<i32> = info.partitions.iter().map(|p| p.index).collect();
    let wanted = partitions.unwrap_or(&all);
    Ok(client
        .resolve_offsets(&info, wanted, spec)?
        .into_iter()
        .map(|(p, o)| ((topic.to_owned(), p), o))
        .collect())
}

/// Splits `TOPIC` or `TOPIC:0,2` into the topic and its selected partitions.
fn parse_topic_partitions(arg: &str) -> Result<(String, Option<Vec<i32>>), ClientError> {
    let Some((topic, parts)) = arg.split_once(':') else {
        return Ok((arg.to_owned(), None));
    };
    let parts = parts
        .split(',')
        .map(|p| p.trim().parse::<i32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ClientError::Other(format!("--topic {arg:?}: expected TOPIC:P,P,...")))?;
    Ok((topic.to_owned(), Some(parts)))
}

/// `group reset-offsets`: computes the new offsets, prints them, and with `--execute` commits
/// them as a standalone commit, which the coordinator takes only while the group has no
/// members (a live member would overwrite them with its own position).
fn reset_offsets(args: ResetArgs) -> Result<(), ClientError> {
    let (topic, parts) = parse_topic_partitions(&args.topic)?;
    let mut client = args.conn.connect()?;
    let desc = client.describe_group(&args.group)?;
    if desc.state != "Empty" && desc.state != "Dead" {
        return Err(ClientError::Other(format!(
            "Assignments can only be reset if the group '{}' is inactive, but the current state is {}.",
            args.group, desc.state
        )));
    }
    let earliest = offsets_of(&mut client, &topic, parts.as_deref(), OffsetSpec::Earliest)?;
    let latest = offsets_of(&mut client, &topic, parts.as_deref(), OffsetSpec::Latest)?;
    let plan: Committed = earliest
        .iter()
        .map(|(tp, lo)| {
            let hi = latest.get(tp).copied().unwrap_or(*lo);
            let new = match (args.to_earliest, args.to_latest, args.to_offset) {
                (true, _, _) => *lo,
                (_, true, _) => hi,
                (_, _, Some(n)) => n.clamp(*lo, hi.max(*lo)),
                _ => unreachable!("clap requires one of the --to-* options"),
            };
            (tp.clone(), new)
        })
        .collect();
    if args.execute {
        client.commit_offsets(&args.group, -1, "", &plan)?;
    } else {
        eprintln!("WARN: No action will be performed as the --execute option is missing.");
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|((t, p), o)| vec![args.group.clone(), t.clone(), p.to_string(), o.to_string()])
        .collect();
    print!(
        "{}",
        table(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], &rows)
    );
    Ok(())
}

/// A table as kafka-consumer-groups prints it: a blank line, then columns left-aligned and
/// padded to their widest cell plus one space.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::from("\n");
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join(" ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_to_the_widest_cell() {
        let rows = vec![vec!["g".to_owned(), "topic-a".to_owned(), "0".to_owned()]];
        assert_eq!(
            table(&["GROUP", "TOPIC", "PARTITION"], &rows),
            "\nGROUP TOPIC   PARTITION\ng     topic-a 0\n"
        );
    }

    #[test]
    fn topic_arguments_select_partitions() {
        assert_eq!(parse_topic_partitions("t").unwrap(), ("t".into(), None));
        assert_eq!(
            parse_topic_partitions("t:0,2").unwrap(),
            ("t".into(), Some(vec![0, 2]))
        );
        assert!(parse_topic_partitions("t:x").is_err());
    }

    #[test]
    fn hosts_print_like_java_addresses() {
        assert_eq!(host("127.0.0.1"), "/127.0.0.1");
        assert_eq!(host("/10.0.0.1"), "/10.0.0.1");
    }
}

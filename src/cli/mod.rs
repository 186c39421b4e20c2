//! Kafka-console-style client commands (`tidelog topic|produce|consume|group|cluster`).
//!
//! They keep the habits of Kafka's console tools (`kafka-topics.sh`,
//! `kafka-console-producer.sh`, `kafka-console-consumer.sh`, `kafka-consumer-groups.sh`): the
//! same option names where the tools have one, the same output shapes, `--bootstrap-server`
//! defaulting to `localhost:9092`.
//! Each command opens one [`crate::client::Client`], prints errors as `tidelog: <what failed>`
//! on stderr and exits 1 on any error.
//!
//! - [`topic`]: `tidelog topic create|list|describe|delete`.
//! - [`produce`]: `tidelog produce TOPIC`, lines from stdin.
//! - [`consume`]: `tidelog consume TOPIC`, values to stdout; with `--group`, as a group member
//!   ([`group_consume`]).
//! - [`group`]: `tidelog group list|describe|delete|reset-offsets`.
//! - [`cluster`]: `tidelog cluster status` (kafka-metadata-quorum.sh describe --status).
//! - [`transactions`]: `tidelog transactions list|describe` (kafka-transactions.sh).

pub mod cluster;
pub mod consume;
pub mod group;
pub mod group_consume;
pub mod produce;
pub mod topic;
pub mod transactions;

use std::process::ExitCode;

use crate::client::{Client, ClientError};

/// The client subcommands of the `tidelog` binary.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Create, list, describe and delete topics (like kafka-topics.sh).
    Topic {
        #[command(subcommand)]
        cmd: topic::TopicCommand,
    },
    /// Produce lines from stdin, one record per line (like kafka-console-producer.sh).
    Produce(produce::ProduceArgs),
    /// Print records of a topic, one value per line (like kafka-console-consumer.sh).
    Consume(consume::ConsumeArgs),
    /// List, describe, delete consumer groups and reset their offsets (like
    /// kafka-consumer-groups.sh).
    Group {
        #[command(subcommand)]
        cmd: group::GroupCommand,
    },
    /// The cluster id and the metadata quorum (like kafka-metadata-quorum.sh describe --status).
    Cluster {
        #[command(subcommand)]
        cmd: cluster::ClusterCommand,
    },
    /// List and describe transactional ids (like kafka-transactions.sh).
    Transactions {
        #[command(subcommand)]
        cmd: transactions::TransactionsCommand,
    },
}

/// Where to connect; shared by every client command.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnArgs {
    /// The broker to bootstrap from, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", default_value = "localhost:9092")]
    pub bootstrap_server: String,
}

impl ConnArgs {
    /// Connects to the bootstrap broker.
    pub fn connect(&self) -> Result<Client, ClientError> {
        Client::connect(&self.bootstrap_server)
    }
}

/// Runs one client command to completion.
pub fn run(cmd: ClientCommand) -> ExitCode {
    let result = match cmd {
        ClientCommand::Topic { cmd } => topic::run(cmd),
        ClientCommand::Produce(args) => produce::run(args),
        ClientCommand::Consume(args) => consume::run(args),
        ClientCommand::Group { cmd } => group::run(cmd),
        ClientCommand::Cluster { cmd } => cluster::run(cmd),
        ClientCommand::Transactions { cmd } => transactions::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidelog: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `key=value` (a `--config` argument).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The binary's shape, as in src/main.rs, so argument parsing is tested here.
    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("tidelog").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn key_values_parse() {
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert_eq!(
            parse_key_value("retention.ms=").unwrap(),
            ("retention.ms".into(), "".into())
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=v").is_err());
    }

    #[test]
    fn command_lines_parse_like_the_console_tools() {
        let cmd = parse(&[
            "topic",
            "create",
            "t",
            "--partitions",
            "3",
            "--config",
            "retention.ms=1000",
        ])
        .unwrap();
        let ClientCommand::Topic {
            cmd: topic::TopicCommand::Create(c),
        } = cmd
        else {
            panic!("{cmd:?}")
        };
        assert_eq!(c.name, "t");
        assert_eq!(c.partitions, Some(3));
        assert_eq!(c.config, [("retention.ms".to_owned(), "1000".to_owned())]);
        assert_eq!(c.conn.bootstrap_server, "localhost:9092");

        let cmd = parse(&[
            "produce",
            "t",
            "--acks",
            "all",
            "--key-separator",
            ":",
            "--bootstrap-server",
            "h:1",
        ])
        .unwrap();
        let ClientCommand::Produce(p) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(p.acks, crate::client::Acks::All);
        assert_eq!(p.key_separator.as_deref(), Some(":"));
        assert_eq!(p.conn.bootstrap_server, "h:1");

        let cmd = parse(&[
            "consume",
            "t",
            "--from-beginning",
            "--max-messages",
            "5",
            "--timeout-ms",
            "100",
        ])
        .unwrap();
        let ClientCommand::Consume(c) = cmd else {
            panic!("{cmd:?}")
        };
        assert!(c.from_beginning);
        assert_eq!(c.max_messages, Some(5));
        assert_eq!(c.timeout_ms, Some(100));
        assert_eq!(c.group, None);

        let cmd = parse(&["consume", "t", "--group", "g"]).unwrap();
        let ClientCommand::Consume(c) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(c.group.as_deref(), Some("g"));
        assert!(parse(&["consume", "t", "--group", "g", "--partition", "0"]).is_err());
        assert!(parse(&["group", "reset-offsets", "g", "--topic", "t"]).is_err());
        assert!(parse(&[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest"
        ])
        .is_ok());

        let cmd = parse(&["produce", "t", "--acks", "-1"]).unwrap();
        let ClientCommand::Produce(p) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(p.acks, crate::client::Acks::All);
        assert!(parse(&["produce", "t", "--acks", "2"]).is_err());
        assert!(parse(&["consume", "t", "--offset", "soon"]).is_err());
    }
}

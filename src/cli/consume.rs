//! `tidelog consume TOPIC`, after `kafka-console-consumer.sh` without a group: reads the chosen
//! partitions from the chosen offsets and prints one record per line. With `--group` the
//! command is a group member instead ([`super::group_consume`]).
//!
//! Output is buffered and flushed after every fetch, so a pipe gets large writes and a
//! terminal still sees records as they arrive. A closed stdout (`| head`) ends the command
//! quietly, as it ends Kafka's.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use crate::client::admin::TopicInfo;
use crate::client::{Client, ClientError, FetchedRecord, OffsetSpec};

use super::ConnArgs;

/// Longest single fetch wait; a `--timeout-ms` shorter than this shortens it.
pub(super) const FETCH_WAIT_MAX: Duration = Duration::from_millis(500);
/// How long to wait for the topic to appear when no `--timeout-ms` is given.
pub(super) const TOPIC_WAIT: Duration = Duration::from_secs(10);
/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// Arguments of `tidelog consume`.
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Start at the earliest offset of each partition instead of the latest.
    #[arg(long)]
    pub from_beginning: bool,
    /// Consume as a member of this consumer group: read the partitions the group assigns, from
    /// its committed offsets, and commit progress.
    #[arg(long, conflicts_with_all = ["partition", "offset"])]
    pub group: Option<String>,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Where to start: earliest, latest, or an offset (a number needs --partition).
    #[arg(long, value_name = "OFFSET")]
    pub offset: Option<OffsetSpec>,
    /// Exit after printing this many records.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Exit when no record arrives for this long (default: run until --max-messages or Ctrl-C).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Print each record's key before its value.
    #[arg(long)]
    pub print_key: bool,
    /// Print each record's headers (`k:v,k2:v2`, or NO_HEADERS) before its key and value.
    #[arg(long)]
    pub print_headers: bool,
    /// Print each record's partition.
    #[arg(long)]
    pub print_partition: bool,
    /// Print each record's offset.
    #[arg(long)]
    pub print_offset: bool,
    /// Separator between the printed fields.
    #[arg(long, value_name = "SEP", default_value = "\t")]
    pub key_separator: String,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs `tidelog consume` until `--max-messages`, `--timeout-ms` of silence, or a signal.
pub fn run(args: ConsumeArgs) -> Result<(), ClientError> {
    if let Some(group) = &args.group {
        return super::group_consume::run(&args, group);
    }
    let start = match (args.offset, args.partition) {
        (Some(OffsetSpec::At(_)), None) => {
            return Err(ClientError::Other(
                "--offset with a number needs --partition".into(),
            ));
        }
        (Some(spec), _) => spec,
        (None, _) if args.from_beginning => OffsetSpec::Earliest,
        (None, _) => OffsetSpec::Latest,
    };
    let timeout = args.timeout_ms.map(Duration::from_millis);
    let mut client = args.conn.connect()?;
    let topic = client.topic(&args.topic, false, timeout.unwrap_or(TOPIC_WAIT))?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) if topic.partitions.iter().any(|i| i.index == p) => vec![p],
        Some(p) => {
            return Err(ClientError::Other(format!(
                "topic {:?} has no partition {p}",
                args.topic
            )))
        }
        None => topic.partitions.iter().map(|p| p.index).collect(),
    };
    let positions: BTreeMap<i32, i64> = client
        .resolve_offsets(&topic, &partitions, start)?
        .into_iter()
        .collect();
    let mut consumer = Consumer {
        client,
        topic,
        positions,
        reset: if start == OffsetSpec::Latest {
            OffsetSpec::Latest
        } else {
            OffsetSpec::Earliest
        },
        printed: 0,
    };
    let result = consumer.poll_loop(&args, timeout);
    eprintln!("Processed a total of {} messages", consumer.printed);
    result
}

/// The state of one console consumer: where each partition is read up to.
struct Consumer {
    client: Client,
    topic: TopicInfo,
    positions: BTreeMap<i32, i64>,
    /// Where to go when a position falls out of the log (Kafka's `auto.offset.reset`).
    reset: OffsetSpec,
    printed: u64,
}

impl Consumer {
    fn poll_loop(
        &mut self,
        args: &ConsumeArgs,
        timeout: Option<Duration>,
    ) -> Result<(), ClientError> {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut last_record = Instant::now();
        loop {
            let Some(wait) = next_wait(args, self.printed, timeout, last_record) else {
                return Ok(());
            };
            let positions: Vec<(i32, i64)> = self.positions.iter().map(|(p, o)| (*p, *o)).collect();
            let fetched = self.client.fetch(&self.topic, &positions, wait)?;
            let mut any = false;
            for part in fetched {
                if part.error_code != 0 {
                    self.recover(part.partition, part.error_code)?;
                    continue;
                }
                for record in &part.records {
                    if args.max_messages.is_some_and(|max| self.printed >= max) {
                        break;
                    }
                    let line = format_record(args, part.partition, record);
                    if let Err(e) = out.write_all(&line) {
                        return stdout_closed(e);
                    }
                    self.printed += 1;
                    any = true;
                }
                self.positions.insert(part.partition, part.next_offset);
            }
            if let Err(e) = out.flush() {
                return stdout_closed(e);
            }
            if any {
                last_record = Instant::now();
            }
        }
    }

    /// Handles a partition-level fetch error (see [`recover_partition`]).
    fn recover(&mut self, partition: i32, code: i16) -> Result<(), ClientError> {
        recover_partition(
            &mut self.client,
            &mut self.topic,
            &mut self.positions,
            self.reset,
            partition,
            code,
        )
    }
}

/// Handles a partition-level fetch error, for the plain and the group consumer alike: an offset
/// out of range resets the position, a retriable error (leadership moving, topic being created)
/// refreshes metadata, anything else ends the command.
pub(super) fn recover_partition(
    client: &mut Client,
    topic: &mut TopicInfo,
    positions: &mut BTreeMap<i32, i64>,
    reset: OffsetSpec,
    partition: i32,
    code: i16,
) -> Result<(), ClientError> {
    if code == OFFSET_OUT_OF_RANGE {
        let (_, offset) = client.resolve_offsets(topic, &[partition], reset)?[0];
        eprintln!(
            "tidelog: offset {} of {}-{partition} is out of range; resetting to {offset}",
            positions[&partition], topic.name
        );
        positions.insert(partition, offset);
        return Ok(());
    }
    let retriable =
        kafka_protocol::ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable());
    if !retriable {
        return crate::client::error::check(code, None, || {
            format!("fetch from {}-{partition}", topic.name)
        });
    }
    std::thread::sleep(Duration::from_millis(100));
    *topic = client.topic(&topic.name, false, TOPIC_WAIT)?;
    Ok(())
}

/// How long the next fetch may wait, or `None` when the command is done: `--max-messages`
/// printed, or nothing arrived for `--timeout-ms`. Shared by the plain and the group consumer.
pub(super) fn next_wait(
    args: &ConsumeArgs,
    printed: u64,
    timeout: Option<Duration>,
    last_record: Instant,
) -> Option<Duration> {
    if args.max_messages.is_some_and(|max| printed >= max) {
        return None;
    }
    match timeout {
        None => Some(FETCH_WAIT_MAX),
        Some(timeout) => {
            let silent = last_record.elapsed();
            (silent < timeout).then(|| FETCH_WAIT_MAX.min(timeout - silent))
        }
    }
}

/// A closed stdout is the reader saying "enough" (`| head`): not an error.
pub(super) fn stdout_closed(e: std::io::Error) -> Result<(), ClientError> {
    if e.kind() == ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(ClientError::Other(format!("writing to stdout: {e}")))
    }
}

/// One output line in kafka-console-consumer's field order: partition, offset, headers, key,
/// value; a null key or value prints as `null`.
pub fn format_record(args: &ConsumeArgs, partition: i32, record: &FetchedRecord) -> Vec<u8> {
    let sep = args.key_separator.as_bytes();
    let mut line = Vec::with_capacity(record.value.as_ref().map_or(4, |v| v.len()) + 16);
    if args.print_partition {
        line.extend_from_slice(format!("Partition:{partition}").as_bytes());
        line.extend_from_slice(sep);
    }
    if args.print_offset {
        line.extend_from_slice(format!("Offset:{}", record.offset).as_bytes());
        line.extend_from_slice(sep);
    }
    if args.print_headers {
        if record.headers.is_empty() {
            line.extend_from_slice(b"NO_HEADERS");
        }
        for (i, (k, v)) in record.headers.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            line.extend_from_slice(k.as_bytes());
            line.push(b':');
            line.extend_from_slice(v.as_deref().unwrap_or(b"null"));
        }
        line.extend_from_slice(sep);
    }
    if args.print_key {
        line.extend_from_slice(record.key.as_deref().unwrap_or(b"null"));
        line.extend_from_slice(sep);
    }
    line.extend_from_slice(record.value.as_deref().unwrap_or(b"null"));
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ConsumeArgs,
    }

    fn args(extra: &[&str]) -> ConsumeArgs {
        Wrap::parse_from(["consume", "t"].iter().chain(extra)).args
    }

    fn record(key: Option<&'static str>, headers: Vec<(String, Option<Bytes>)>) -> FetchedRecord {
        FetchedRecord {
            offset: 7,
            timestamp: 0,
            key: key.map(|k| Bytes::from_static(k.as_bytes())),
            value: Some(Bytes::from_static(b"v")),
            headers,
        }
    }

    #[test]
    fn values_print_alone_by_default() {
        assert_eq!(
            format_record(&args(&[]), 0, &record(Some("k"), vec![])),
            b"v\n"
        );
    }

    #[test]
    fn keys_headers_partition_and_offset_print_in_kafkas_order() {
        let a = args(&[
            "--print-key",
            "--print-headers",
            "--print-partition",
            "--print-offset",
        ]);
        let h = vec![
            ("a".into(), Some(Bytes::from_static(b"1"))),
            ("b".into(), None),
        ];
        assert_eq!(
            String::from_utf8(format_record(&a, 2, &record(Some("k"), h))).unwrap(),
            "Partition:2\tOffset:7\ta:1,b:null\tk\tv\n"
        );
        let a = args(&["--print-key", "--print-headers", "--key-separator", " | "]);
        assert_eq!(
            String::from_utf8(format_record(&a, 0, &record(None, vec![]))).unwrap(),
            "NO_HEADERS | null | v\n"
        );
    }
}

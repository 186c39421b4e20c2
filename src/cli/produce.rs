//! `tidelog produce TOPIC`, after `kafka-console-producer.sh`: one record per stdin line.
//!
//! Lines are batched the way Kafka's producer batches (`linger.ms`, `batch.size`): a reader
//! thread hands lines over a bounded channel, and a batch closes when it is full or when no
//! line arrives for [`LINGER`]. A pipe of a million lines goes out in large batches; a person
//! typing sees each line sent at once.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::Compression;

use crate::client::produce::{parse_compression, partition_for_key};
use crate::client::{Acks, ClientError, ProduceRecord};

use super::ConnArgs;

/// How long a batch waits for one more line (Kafka's `linger.ms`).
pub const LINGER: Duration = Duration::from_millis(5);
/// Record bytes per produce request; below `message.max.bytes` (1 MiB) so one batch always fits.
pub const BATCH_BYTES_MAX: usize = 512 << 10;
/// Records per produce request.
pub const BATCH_RECORDS_MAX: usize = 16_384;
/// Lines buffered between the stdin reader and the sender.
const LINES_IN_FLIGHT_MAX: usize = 4 * BATCH_RECORDS_MAX;
/// How long to wait for a new (or auto-created) topic to get leaders.
const TOPIC_WAIT: Duration = Duration::from_secs(10);

/// Arguments of `tidelog produce`.
#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    /// Topic to produce to.
    pub topic: String,
    /// Split each line at the first SEP: the text before it is the key, the rest the value.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Split each line into key and value at the key separator (a tab unless --key-separator
    /// says otherwise), like `--property parse.key=true`.
    #[arg(long)]
    pub parse_key: bool,
    /// Acknowledgements to wait for: 0, 1, all or -1.
    #[arg(long, default_value = "all", allow_hyphen_values = true)]
    pub acks: Acks,
    /// Send every record to this partition (default: by key hash, or spread when unkeyed).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Compression codec: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    pub compression_codec: Compression,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs `tidelog produce`: sends stdin, line by line, until EOF.
pub fn run(args: ProduceArgs) -> Result<(), ClientError> {
    let mut client = args.conn.connect()?;
    let topic = client.topic(&args.topic, true, TOPIC_WAIT)?;
    let partitions = topic.partitions.len() as i32;
    if let Some(p) = args.partition {
        if !topic.partitions.iter().any(|info| info.index == p) {
            return Err(ClientError::Other(format!(
                "topic {:?} has no partition {p} (it has {partitions})",
                args.topic
            )));
        }
    }
    let separator = match (&args.key_separator, args.parse_key) {
        (Some(sep), _) => Some(sep.as_bytes().to_vec()),
        (None, true) => Some(b"\t".to_vec()),
        (None, false) => None,
    };
    let lines = spawn_line_reader();
    let mut line_number = 0usize;
    let mut sticky = 0i32;
    while let Some(batch) = next_batch(&lines)? {
        let mut by_partition: BTreeMap<i32, Vec<ProduceRecord>> = BTreeMap::new();
        // Unkeyed records of one batch all go to one partition, the next batch to the next one
        // (Kafka's sticky partitioner): large batches, even spread.
        sticky = (sticky + 1) % partitions;
        for line in batch {
            line_number += 1;
            let record = to_record(line, separator.as_deref(), line_number)?;
            let partition = match (args.partition, &record.key) {
                (Some(p), _) => p,
                (None, Some(key)) => partition_for_key(key, partitions),
                (None, None) => sticky,
            };
            by_partition.entry(partition).or_default().push(record);
        }
        let batches: Vec<(i32, Vec<ProduceRecord>)> = by_partition.into_iter().collect();
        client.produce(&topic, &batches, args.acks, args.compression_codec)?;
    }
    Ok(())
}

/// Turns one line into a record, splitting off the key when a separator is given.
fn to_record(
    line: Vec<u8>,
    separator: Option<&[u8]>,
    line_number: usize,
) -> Result<ProduceRecord, ClientError> {
    let Some(sep) = separator else {
        return Ok(ProduceRecord {
            value: Some(Bytes::from(line)),
            ..Default::default()
        });
    };
    let at = find(&line, sep).ok_or_else(|| {
        ClientError::Other(format!(
            "no key separator {:?} on line {line_number}: {:?}",
            String::from_utf8_lossy(sep),
            String::from_utf8_lossy(&line)
        ))
    })?;
    let line = Bytes::from(line);
    Ok(ProduceRecord {
        key: Some(line.slice(..at)),
        value: Some(line.slice(at + sep.len()..)),
        headers: Vec::new(),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads stdin on a thread, sending each line without its `\n` or `\r\n`.
fn spawn_line_reader() -> Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = sync_channel(LINES_IN_FLIGHT_MAX);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    strip_newline(&mut line);
                    if tx.send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

fn strip_newline(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

/// The next batch of lines: blocks for the first, then takes more until the batch is full or
/// input pauses for [`LINGER`]. `None` at the end of input.
fn next_batch(
    lines: &Receiver<std::io::Result<Vec<u8>>>,
) -> Result<Option<Vec<Vec<u8>>>, ClientError> {
    let stdin_err = |e: std::io::Error| ClientError::Other(format!("reading stdin: {e}"));
    let Ok(first) = lines.recv() else {
        return Ok(None);
    };
    let first = first.map_err(stdin_err)?;
    let mut bytes = first.len();
    let mut batch = vec![first];
    while bytes < BATCH_BYTES_MAX && batch.len() < BATCH_RECORDS_MAX {
        match lines.recv_timeout(LINGER) {
            Ok(line) => {
                let line = line.map_err(stdin_err)?;
                bytes += line.len();
                batch.push(line);
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(Some(batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_the_first_separator() {
        let r = to_record(b"k1::v::1".to_vec(), Some(b"::"), 1).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v::1"[..]));
        let r = to_record(b":v".to_vec(), Some(b":"), 1).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b""[..]));
        let err = to_record(b"novalue".to_vec(), Some(b":"), 7).unwrap_err();
        assert!(err.to_string().contains("line 7"), "{err}");
        let r = to_record(b"a:b".to_vec(), None, 1).unwrap();
        assert_eq!((r.key, r.value.as_deref()), (None, Some(&b"a:b"[..])));
    }

    #[test]
    fn newlines_are_stripped_like_readline() {
        for (input, want) in [
            (&b"a\n"[..], &b"a"[..]),
            (b"a\r\n", b"a"),
            (b"a", b"a"),
            (b"\n", b""),
            (b"a\r", b"a\r"),
        ] {
            let mut line = input.to_vec();
            strip_newline(&mut line);
            assert_eq!(line, want);
        }
    }

    #[test]
    fn batches_close_when_full_or_idle() {
        let (tx, rx) = sync_channel(BATCH_RECORDS_MAX * 2);
        for _ in 0..BATCH_RECORDS_MAX + 3 {
            tx.send(Ok(b"x".to_vec())).unwrap();
        }
        assert_eq!(next_batch(&rx).unwrap().unwrap().len(), BATCH_RECORDS_MAX);
        assert_eq!(next_batch(&rx).unwrap().unwrap().len(), 3);
        drop(tx);
        assert!(next_batch(&rx).unwrap().is_none());
    }
}

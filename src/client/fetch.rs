//! Fetch and ListOffsets, and turning fetched bytes into records.
//!
//! A fetch response's `records` is a run of record batches that may end in a partial batch (the
//! broker cuts at its byte limit), may start before the requested offset (a batch is returned
//! whole) and may hold control batches (transaction markers). [`decode_records`] handles all
//! three, so that callers see exactly the data records from the fetch offset on.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{FetchRequest, ListOffsetsRequest};
use kafka_protocol::records::RecordBatchDecoder;

use super::admin::{topic_name, TopicInfo};
use super::error::{check, ClientError, Result};
use super::Client;
use crate::protocol::batch::{self, be_i32, be_i64};

/// `fetch.max.bytes` of Kafka's consumer: the response's total byte budget.
pub const FETCH_MAX_BYTES: i32 = 50 << 20;
/// `max.partition.fetch.bytes` of Kafka's consumer.
pub const PARTITION_FETCH_MAX_BYTES: i32 = 1 << 20;

/// ListOffsets timestamp meaning "log start offset".
const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp meaning "log end offset" (high watermark for read_uncommitted).
const LATEST_TIMESTAMP: i64 = -1;

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end: only records produced from now on.
    Latest,
    /// This exact offset.
    At(i64),
}

impl std::str::FromStr for OffsetSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "earliest" => Ok(OffsetSpec::Earliest),
            "latest" => Ok(OffsetSpec::Latest),
            n => n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(OffsetSpec::At)
                .ok_or_else(|| {
                    format!("offset must be earliest, latest or a non-negative number, not {s:?}")
                }),
        }
    }
}

/// One record as read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    /// The record's offset.
    pub offset: i64,
    /// Its timestamp in ms.
    pub timestamp: i64,
    /// Key (`None` is a null key).
    pub key: Option<Bytes>,
    /// Value (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// What one fetch returned for one partition.
#[derive(Debug, Clone)]
pub struct PartitionFetch {
    /// Partition index.
    pub partition: i32,
    /// Kafka error code for this partition (0 when fine).
    pub error_code: i16,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// The data records at or past the fetch offset, in offset order.
    pub records: Vec<FetchedRecord>,
    /// Where the next fetch of this partition should start.
    pub next_offset: i64,
}

impl Client {
    /// Resolves `Earliest`/`Latest` to offsets with ListOffsets; `At(n)` passes through.
    pub fn resolve_offsets(
        &mut self,
        topic: &TopicInfo,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<(i32, i64)>> {
        let timestamp = match spec {
            OffsetSpec::At(n) => return Ok(partitions.iter().map(|p| (*p, n)).collect()),
            OffsetSpec::Earliest => EARLIEST_TIMESTAMP,
            OffsetSpec::Latest => LATEST_TIMESTAMP,
        };
        let mut out = Vec::new();
        for (leader, parts) in by_leader(topic, partitions.iter().map(|p| (*p, 0)))? {
            let req = ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(&topic.name))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|(p, _)| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(*p)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    )]);
            let (_, resp) = self.node(leader)?.send(&req, Duration::ZERO)?;
            for p in resp.topics.into_iter().flat_map(|t| t.partitions) {
                check(p.error_code, None, || {
                    format!("list offsets of {}-{}", topic.name, p.partition_index)
                })?;
                out.push((p.partition_index, p.offset));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Fetches `positions` (partition, offset) of `topic`, waiting up to `max_wait` for data.
    pub fn fetch(
        &mut self,
        topic: &TopicInfo,
        positions: &[(i32, i64)],
        max_wait: Duration,
    ) -> Result<Vec<PartitionFetch>> {
        let mut out = Vec::new();
        for (leader, parts) in by_leader(topic, positions.iter().copied())? {
            let partitions = parts
                .iter()
                .map(|(p, offset)| {
                    FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(*offset)
                        .with_partition_max_bytes(PARTITION_FETCH_MAX_BYTES)
                })
                .collect();
            // Topics are named in Fetch v4..v12 and identified by id from v13: fill both.
            let req = FetchRequest::default()
                .with_replica_id((-1).into())
                .with_max_wait_ms(max_wait.as_millis() as i32)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_MAX_BYTES)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(&topic.name))
                    .with_topic_id(topic.topic_id)
                    .with_partitions(partitions)]);
            let (_, resp) = self.node(leader)?.send(&req, max_wait)?;
            check(resp.error_code, None, || {
                format!("fetch from {}", topic.name)
            })?;
            for p in resp.responses.into_iter().flat_map(|t| t.partitions) {
                let offset = parts
                    .iter()
                    .find(|(i, _)| *i == p.partition_index)
                    .map_or(0, |(_, o)| *o);
                let (records, next_offset) = match (p.error_code, p.records) {
                    (0, Some(bytes)) => decode_records(bytes, offset)?,
                    _ => (Vec::new(), offset),
                };
                out.push(PartitionFetch {
                    partition: p.partition_index,
                    error_code: p.error_code,
                    high_watermark: p.high_watermark,
                    records,
                    next_offset,
                });
            }
        }
        Ok(out)
    }
}

/// Groups (partition, offset) pairs by their leader's node id.
fn by_leader(
    topic: &TopicInfo,
    positions: impl Iterator<Item = (i32, i64)>,
) -> Result<BTreeMap<i32, Vec<(i32, i64)>>> {
    let mut groups: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
    for (partition, offset) in positions {
        let info = topic
            .partitions
            .iter()
            .find(|p| p.index == partition)
            .ok_or_else(|| {
                ClientError::Other(format!(
                    "topic {:?} has no partition {partition}",
                    topic.name
                ))
            })?;
        groups
            .entry(info.leader)
            .or_default()
            .push((partition, offset));
    }
    Ok(groups)
}

/// Decodes the complete batches in `bytes`, returning the data records at or past
/// `fetch_offset` and the offset after the last complete batch (or `fetch_offset` if none).
pub fn decode_records(mut bytes: Bytes, fetch_offset: i64) -> Result<(Vec<FetchedRecord>, i64)> {
    let mut records = Vec::new();
    let mut next_offset = fetch_offset;
    while let (Some(base_offset), Some(length)) = (
        be_i64(&bytes, batch::BASE_OFFSET),
        be_i32(&bytes, batch::BATCH_LENGTH),
    ) {
        let total = batch::LOG_OVERHEAD + usize::try_from(length).unwrap_or(0);
        if length < 0 || bytes.len() < total {
            // A partial trailing batch: the broker stopped at its byte limit; the next fetch
            // starts at this batch again.
            break;
        }
        let mut one = bytes.split_to(total);
        let magic = one.get(batch::MAGIC).copied().unwrap_or(0) as i8;
        if magic != batch::MAGIC_V2 {
            return Err(ClientError::Protocol(format!(
                "batch at offset {base_offset} has message format v{magic}; only v2 is supported"
            )));
        }
        let last_delta = be_i32(&one, batch::LAST_OFFSET_DELTA).unwrap_or(0);
        let set = RecordBatchDecoder::decode(&mut one)
            .map_err(|e| ClientError::Protocol(format!("batch at offset {base_offset}: {e}")))?;
        records.extend(
            set.records
                .into_iter()
                .filter(|r| !r.control && r.offset >= fetch_offset)
                .map(|r| FetchedRecord {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                }),
        );
        next_offset = next_offset.max(base_offset + i64::from(last_delta) + 1);
    }
    Ok((records, next_offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::produce::{encode_batch, ProduceRecord};
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::records::Compression;

    fn batch_at(base: i64, values: &[&str], codec: Compression) -> Bytes {
        let records: Vec<ProduceRecord> = values
            .iter()
            .map(|v| ProduceRecord {
                value: Some(Bytes::from(v.to_string())),
                ..Default::default()
            })
            .collect();
        let mut b = BytesMut::from(&encode_batch(&records, codec).unwrap()[..]);
        // The broker assigns base offsets; the CRC does not cover them.
        b[0..8].copy_from_slice(&base.to_be_bytes());
        b.freeze()
    }

    fn values(records: &[FetchedRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn whole_batches_decode_and_advance() {
        let mut buf = BytesMut::new();
        buf.put(batch_at(10, &["a", "b", "c"], Compression::None));
        buf.put(batch_at(13, &["d"], Compression::Gzip));
        let (records, next) = decode_records(buf.freeze(), 10).unwrap();
        assert_eq!(values(&records), ["a", "b", "c", "d"]);
        assert_eq!(
            records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [10, 11, 12, 13]
        );
        assert_eq!(next, 14);
    }

    #[test]
    fn records_before_the_fetch_offset_are_skipped() {
        let (records, next) =
            decode_records(batch_at(10, &["a", "b", "c"], Compression::Lz4), 12).unwrap();
        assert_eq!(values(&records), ["c"]);
        assert_eq!(next, 13);
    }

    #[test]
    fn a_partial_trailing_batch_is_left_for_the_next_fetch() {
        let mut buf = BytesMut::new();
        buf.put(batch_at(0, &["a"], Compression::None));
        let second = batch_at(1, &["b", "c"], Compression::Zstd);
        buf.put(&second[..second.len() - 3]);
        let (records, next) = decode_records(buf.freeze(), 0).unwrap();
        assert_eq!(values(&records), ["a"]);
        assert_eq!(next, 1);
        let (records, next) = decode_records(Bytes::from_static(&[0, 0, 0]), 5).unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 5);
    }

    #[test]
    fn corrupt_batches_are_errors() {
        let mut b = BytesMut::from(&batch_at(0, &["a"], Compression::None)[..]);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        let err = decode_records(b.freeze(), 0).unwrap_err();
        assert!(err.to_string().contains("batch at offset 0"), "{err}");
    }

    #[test]
    fn offset_specs_parse() {
        assert_eq!(
            "earliest".parse::<OffsetSpec>().unwrap(),
            OffsetSpec::Earliest
        );
        assert_eq!("latest".parse::<OffsetSpec>().unwrap(), OffsetSpec::Latest);
        assert_eq!("42".parse::<OffsetSpec>().unwrap(), OffsetSpec::At(42));
        assert!("-3".parse::<OffsetSpec>().is_err());
        assert!("soon".parse::<OffsetSpec>().is_err());
    }
}

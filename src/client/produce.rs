//! Produce: record batches (magic 2) built with kafka-protocol's encoder, sent to each
//! partition's leader with acks 0, 1 or -1, and Kafka's default partitioner for keyed records.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};

use super::admin::{topic_name, TopicInfo};
use super::error::{check, ClientError, Result};
use super::Client;

/// How long the broker may wait for acknowledgements (`request.timeout.ms` in Kafka's producer).
pub const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Kafka's producer `acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: the broker sends no response at all.
    None,
    /// `acks=1`: the leader has appended the batch.
    Leader,
    /// `acks=all` / `-1`: every in-sync replica has it (tidelog: it is fsynced).
    All,
}

impl Acks {
    /// The wire value.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl FromStr for Acks {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err(format!("acks must be 0, 1, all or -1, not {s:?}")),
        }
    }
}

/// Parses a compression codec name as Kafka's `compression.type` spells it.
pub fn parse_compression(s: &str) -> std::result::Result<Compression, String> {
    match s {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        _ => Err(format!(
            "compression must be none, gzip, snappy, lz4 or zstd, not {s:?}"
        )),
    }
}

/// One record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    /// Record key (`None` is Kafka's null key).
    pub key: Option<Bytes>,
    /// Record value (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Record headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl Client {
    /// Produces `batches` (partition, records) to `topic`, one record batch per partition,
    /// grouped into one request per partition leader.
    ///
    /// Returns each partition's base offset, or nothing for `Acks::None` (the broker does not
    /// answer). Any partition's error fails the call, naming the partition.
    pub fn produce(
        &mut self,
        topic: &TopicInfo,
        batches: &[(i32, Vec<ProduceRecord>)],
        acks: Acks,
        compression: Compression,
    ) -> Result<Vec<(i32, i64)>> {
        let mut by_leader: BTreeMap<i32, Vec<PartitionProduceData>> = BTreeMap::new();
        for (partition, records) in batches.iter().filter(|(_, r)| !r.is_empty()) {
            let leader = topic
                .partitions
                .iter()
                .find(|p| p.index == *partition)
                .ok_or_else(|| {
                    ClientError::Other(format!(
                        "topic {:?} has no partition {partition}",
                        topic.name
                    ))
                })?
                .leader;
            let data = PartitionProduceData::default()
                .with_index(*partition)
                .with_records(Some(encode_batch(records, compression)?));
            by_leader.entry(leader).or_default().push(data);
        }
        let mut offsets = Vec::new();
        for (leader, partitions) in by_leader {
            let req = ProduceRequest::default()
                .with_acks(acks.wire())
                .with_timeout_ms(PRODUCE_TIMEOUT.as_millis() as i32)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name(&topic.name))
                    .with_topic_id(topic.topic_id)
                    .with_partition_data(partitions)]);
            let conn = self.node(leader)?;
            if acks == Acks::None {
                conn.send_oneway(&req)?;
                continue;
            }
            let (_, resp) = conn.send(&req, PRODUCE_TIMEOUT)?;
            for t in resp.responses {
                for p in t.partition_responses {
                    check(p.error_code, p.error_message.as_deref(), || {
                        format!("produce to {}-{}", topic.name, p.index)
                    })?;
                    offsets.push((p.index, p.base_offset));
                }
            }
        }
        Ok(offsets)
    }
}

/// Encodes `records` as one magic-2 record batch of a non-idempotent producer.
pub fn encode_batch(records: &[ProduceRecord], compression: Compression) -> Result<Bytes> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever `offset - sequence` changes, and derives
            // the batch's base sequence from the first record; `i - 1` keeps every record in
            // one batch with base sequence -1 (NO_SEQUENCE), as a non-idempotent producer sends.
            sequence: i as i32 - 1,
            timestamp: now_ms,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|e| ClientError::Protocol(format!("encoding a record batch: {e}")))?;
    Ok(buf.freeze())
}

/// Kafka's default partition for a keyed record: `toPositive(murmur2(key)) % partitions`, so
/// that keys land where the Java client (and librdkafka's `murmur2_random`) would put them.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) as i32) % partitions
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    /// Vectors from Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (data, want) in cases {
            assert_eq!(
                murmur2(data) as i32,
                want,
                "{:?}",
                std::str::from_utf8(data)
            );
        }
        assert!((0..7).contains(&partition_for_key(b"foobar", 7)));
    }

    #[test]
    fn acks_parse_like_kafka() {
        assert_eq!("all".parse::<Acks>().unwrap().wire(), -1);
        assert_eq!("-1".parse::<Acks>().unwrap(), Acks::All);
        assert_eq!("0".parse::<Acks>().unwrap().wire(), 0);
        assert_eq!("1".parse::<Acks>().unwrap().wire(), 1);
        assert!("2".parse::<Acks>().is_err());
    }

    /// All records go in one batch, with the header a non-idempotent producer writes, under
    /// every codec, and decode back unchanged.
    #[test]
    fn batches_are_single_and_round_trip() {
        let records: Vec<ProduceRecord> = (0..50)
            .map(|i| ProduceRecord {
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("value {i}"))),
                headers: vec![("h".into(), Some(Bytes::from_static(b"v")))],
            })
            .collect();
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let mut bytes = encode_batch(&records, parse_compression(codec).unwrap()).unwrap();
            let info = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
            assert_eq!(info.len(), 1, "{codec}");
            assert_eq!(info[0].record_count, 50);
            assert_eq!(info[0].base_sequence, -1);
            assert_eq!(info[0].producer_id, -1);
            let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
            assert_eq!(set.records.len(), 50);
            for (i, (got, want)) in set.records.iter().zip(&records).enumerate() {
                assert_eq!(got.offset, i as i64);
                assert_eq!(got.key, want.key);
                assert_eq!(got.value, want.value);
                assert_eq!(got.headers.len(), 1);
            }
        }
    }
}

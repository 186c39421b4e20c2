//! How the group coordinator persists its state: records in the internal topic
//! `__consumer_offsets`, compacted, one key per committed partition and one per group.
//!
//! The record layout is tidelog's own (Kafka's is versioned Java schemas we do not share): a key
//! starts with a one-byte type, then length-prefixed strings; a null value is a tombstone.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::config::OFFSETS_TOPIC_PARTITIONS;

/// The internal topic holding committed offsets and group metadata.
pub use crate::metadata::OFFSETS_TOPIC;

const KEY_OFFSET: u8 = b'o';
const KEY_GROUP: u8 = b'g';

/// The `__consumer_offsets` partition, and so the coordinating shard, of a group: a pure
/// function of the group id (FNV-1a), stable across restarts and shard counts.
pub fn partition_for(group_id: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in group_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % OFFSETS_TOPIC_PARTITIONS as u32) as i32
}

/// A committed offset, as OffsetFetch returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

/// What a group keeps across restarts besides its offsets.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupRecord {
    pub protocol_type: String,
    pub generation: i32,
}

/// One decoded record of the offsets topic.
#[derive(Debug, PartialEq)]
pub enum Entry {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<Committed>,
    },
    Group {
        group: String,
        value: Option<GroupRecord>,
    },
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u16(s.len() as u16);
    b.put_slice(s.as_bytes());
}

fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_u16() as usize;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(KEY_OFFSET);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

pub fn offset_value(c: &Committed) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i64(c.offset);
    b.put_i32(c.leader_epoch);
    match &c.metadata {
        Some(m) => {
            b.put_u8(1);
            put_str(&mut b, m);
        }
        None => b.put_u8(0),
    }
    b.put_i64(c.commit_timestamp_ms);
    b.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(KEY_GROUP);
    put_str(&mut b, group);
    b.freeze()
}

pub fn group_value(g: &GroupRecord) -> Bytes {
    let mut b = BytesMut::new();
    put_str(&mut b, &g.protocol_type);
    b.put_i32(g.generation);
    b.freeze()
}

/// Decodes one record; `None` for anything that is not ours (skipped on replay).
pub fn decode(key: &Bytes, value: Option<&Bytes>) -> Option<Entry> {
    let mut k = key.clone();
    if !k.has_remaining() {
        return None;
    }
    match k.get_u8() {
        KEY_OFFSET => {
            let group = get_str(&mut k)?;
            let topic = get_str(&mut k)?;
            if k.remaining() < 4 {
                return None;
            }
            let partition = k.get_i32();
            let value = match value {
                None => None,
                Some(v) => Some(decode_committed(&mut v.clone())?),
            };
            Some(Entry::Offset {
                group,
                topic,
                partition,
                value,
            })
        }
        KEY_GROUP => {
            let group = get_str(&mut k)?;
            let value = match value {
                None => None,
                Some(v) => {
                    let mut v = v.clone();
                    let protocol_type = get_str(&mut v)?;
                    if v.remaining() < 4 {
                        return None;
                    }
                    Some(GroupRecord {
                        protocol_type,
                        generation: v.get_i32(),
                    })
                }
            };
            Some(Entry::Group { group, value })
        }
        _ => None,
    }
}

fn decode_committed(v: &mut Bytes) -> Option<Committed> {
    if v.remaining() < 13 {
        return None;
    }
    let offset = v.get_i64();
    let leader_epoch = v.get_i32();
    let metadata = match v.get_u8() {
        0 => None,
        _ => Some(get_str(v)?),
    };
    if v.remaining() < 8 {
        return None;
    }
    Some(Committed {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms: v.get_i64(),
    })
}

/// One uncompressed RecordBatch v2 holding `records` (key, value-or-tombstone).
pub fn batch(records: Vec<(Bytes, Option<Bytes>)>, now_ms: i64) -> Result<Bytes, String> {
    encode_batch(records, now_ms, None)
}

/// The records of a transactional offset commit (TxnOffsetCommit): one transactional batch of
/// the producer, without sequence numbers (Kafka's coordinator writes them so; the markers of
/// the transaction decide whether they count).
pub fn txn_batch(
    records: Vec<(Bytes, Option<Bytes>)>,
    now_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<Bytes, String> {
    encode_batch(records, now_ms, Some((producer_id, producer_epoch)))
}

fn encode_batch(
    records: Vec<(Bytes, Option<Bytes>)>,
    now_ms: i64,
    producer: Option<(i64, i16)>,
) -> Result<Bytes, String> {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    // kafka-protocol splits batches where offset - sequence changes; a transactional batch has
    // no sequence (-1 at its base).
    let first_seq = if producer.is_some() { -1 } else { 0 };
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: first_seq + i as i32,
            timestamp: now_ms,
            key: Some(key),
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let c = Committed {
            offset: 42,
            leader_epoch: 3,
            metadata: Some("m".into()),
            commit_timestamp_ms: 9,
        };
        let k = offset_key("g", "t", 7);
        assert_eq!(
            decode(&k, Some(&offset_value(&c))),
            Some(Entry::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7,
                value: Some(c)
            })
        );
        assert_eq!(
            decode(&k, None),
            Some(Entry::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7,
                value: None
            })
        );
        let g = GroupRecord {
            protocol_type: "consumer".into(),
            generation: 5,
        };
        assert_eq!(
            decode(&group_key("g"), Some(&group_value(&g))),
            Some(Entry::Group {
                group: "g".into(),
                value: Some(g)
            })
        );
        assert_eq!(decode(&Bytes::from_static(b"x"), None), None);
        assert_eq!(decode(&Bytes::from_static(b"o\x00\x09ab"), None), None);
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        for g in ["", "a", "my-group", "orders-consumers"] {
            let p = partition_for(g);
            assert!((0..OFFSETS_TOPIC_PARTITIONS).contains(&p));
            assert_eq!(p, partition_for(g));
        }
    }
}

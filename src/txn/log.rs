//! The records of `__transaction_state`, in Kafka's layout, so that the topic reads the same
//! to Kafka's tools (`kafka-dump-log.sh --transaction-log-decoder`) and a partition formula
//! that places a transactional id where Kafka would.
//!
//! Key (`TransactionLogKey` v0): version i16, transactional id (i16-length string).
//! Value (`TransactionLogValue` v0, Kafka's non-flexible version, which Kafka writes unless
//! transaction version 2 is enabled): version i16, producer id i64, producer epoch i16,
//! timeout ms i32, status i8, partitions (nullable i32-count array of topic string and i32
//! array of partition ids), last update ms i64, start ms i64. A null value is a tombstone: the
//! transactional id expired.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Kafka's `TransactionState`, with its wire ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnStatus {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnStatus {
    fn from_id(id: i8) -> Option<TxnStatus> {
        use TxnStatus::*;
        Some(match id {
            0 => Empty,
            1 => Ongoing,
            2 => PrepareCommit,
            3 => PrepareAbort,
            4 => CompleteCommit,
            5 => CompleteAbort,
            6 => Dead,
            7 => PrepareEpochFence,
            _ => return None,
        })
    }

    /// Kafka's name, as DescribeTransactions and ListTransactions report it.
    pub fn name(self) -> &'static str {
        use TxnStatus::*;
        match self {
            Empty => "Empty",
            Ongoing => "Ongoing",
            PrepareCommit => "PrepareCommit",
            PrepareAbort => "PrepareAbort",
            CompleteCommit => "CompleteCommit",
            CompleteAbort => "CompleteAbort",
            Dead => "Dead",
            PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// What the coordinator keeps of one transactional id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnRecord {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    /// The partitions of the open transaction, by topic, each list sorted.
    pub partitions: Vec<(String, Vec<i32>)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
}

/// The `__transaction_state` partition of a transactional id: Kafka's
/// `Utils.abs(transactionalId.hashCode) % transaction.state.log.num.partitions`, with Java's
/// `String.hashCode` over UTF-16 code units.
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    let h = transactional_id
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + transactional_id.len());
    b.put_i16(0);
    put_string(&mut b, transactional_id);
    b.freeze()
}

pub fn decode_key(mut b: &[u8]) -> Option<String> {
    if b.len() < 2 || b.get_i16() != 0 {
        return None;
    }
    let id = take_string(&mut b)?;
    b.is_empty().then_some(id)
}

pub fn encode_value(r: &TxnRecord) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(0);
    b.put_i64(r.producer_id);
    b.put_i16(r.producer_epoch);
    b.put_i32(r.timeout_ms);
    b.put_i8(r.status as i8);
    b.put_i32(r.partitions.len() as i32);
    for (topic, ids) in &r.partitions {
        put_string(&mut b, topic);
        b.put_i32(ids.len() as i32);
        ids.iter().for_each(|&p| b.put_i32(p));
    }
    b.put_i64(r.last_update_ms);
    b.put_i64(r.start_ms);
    b.freeze()
}

/// A value this broker wrote (v0); `None` for anything else, which the loader skips.
pub fn decode_value(mut b: &[u8]) -> Option<TxnRecord> {
    if b.remaining() < 2 + 8 + 2 + 4 + 1 + 4 || b.get_i16() != 0 {
        return None;
    }
    let producer_id = b.get_i64();
    let producer_epoch = b.get_i16();
    let timeout_ms = b.get_i32();
    let status = TxnStatus::from_id(b.get_i8())?;
    let topics = b.get_i32();
    let mut partitions = Vec::new();
    for _ in 0..topics.max(0) {
        let topic = take_string(&mut b)?;
        if b.remaining() < 4 {
            return None;
        }
        let n = b.get_i32();
        if n < 0 || b.remaining() < n as usize * 4 {
            return None;
        }
        partitions.push((topic, (0..n).map(|_| b.get_i32()).collect()));
    }
    if b.remaining() != 16 {
        return None;
    }
    Some(TxnRecord {
        producer_id,
        producer_epoch,
        timeout_ms,
        status,
        partitions,
        last_update_ms: b.get_i64(),
        start_ms: b.get_i64(),
    })
}

fn put_string(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn take_string(b: &mut &[u8]) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_i16();
    if n < 0 || b.remaining() < n as usize {
        return None;
    }
    let s = std::str::from_utf8(&b[..n as usize]).ok()?.to_string();
    b.advance(n as usize);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_formula_is_kafkas() {
        // Values from jshell: "my-txn".hashCode() is -1061187895, Math.abs(it) % 50 is 45;
        // the G clef (a surrogate pair in UTF-16) hashes to 1772394, "é" to 233.
        assert_eq!(partition_for("my-txn", 50), 45);
        assert_eq!(partition_for("\u{1D11E}", 50), 1_772_394 % 50);
        assert_eq!(partition_for("é", 7), 233 % 7);
        assert_eq!(partition_for("", 50), 0);
    }

    #[test]
    fn records_round_trip() {
        let r = TxnRecord {
            producer_id: 4000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            status: TxnStatus::Ongoing,
            partitions: vec![("orders".into(), vec![0, 2]), ("audit".into(), vec![1])],
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
        };
        assert_eq!(decode_value(&encode_value(&r)), Some(r.clone()));
        let empty = TxnRecord {
            partitions: vec![],
            status: TxnStatus::CompleteCommit,
            ..r
        };
        let bytes = encode_value(&empty);
        assert_eq!(decode_value(&bytes), Some(empty));
        assert_eq!(decode_value(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_key(&encode_key("t-1")), Some("t-1".into()));
        assert_eq!(decode_key(&[0, 1, 0, 0]), None);
        // Kafka's layout, byte for byte.
        assert_eq!(&encode_key("ab")[..], &[0, 0, 0, 2, b'a', b'b']);
    }
}

//! RecordBatch v2 header codec: parse, validate, CRC32C, and the in-place header rewrites the
//! broker is allowed to make.
//!
//! This module is sans-io: it works on byte slices only, so it can be property-tested on random
//! bytes and used by the server and the benchmarks alike. Nothing here panics on any input; every
//! read is bounds-checked and reports an error instead.
//!
//! Layout (big-endian, from Kafka's `DefaultRecordBatch`):
//!
//! ```text
//! 0  baseOffset i64        8  batchLength i32     12 partitionLeaderEpoch i32
//! 16 magic i8              17 crc u32 (CRC32C of bytes 21..end)
//! 21 attributes i16        23 lastOffsetDelta i32 27 baseTimestamp i64
//! 35 maxTimestamp i64      43 producerId i64      51 producerEpoch i16
//! 53 baseSequence i32      57 recordCount i32     61 records…
//! ```

use super::LogError;

/// The full check of a produced batch, records included: the entry point fuzz targets call.
pub use super::validate::{validate_batch, TimestampRules, ValidateOptions, Validated};

/// Byte position of `baseOffset`.
pub const BASE_OFFSET: usize = 0;
/// Byte position of `batchLength` (bytes after this field and itself: total length - 12).
pub const BATCH_LENGTH: usize = 8;
/// Byte position of `partitionLeaderEpoch`.
pub const PARTITION_LEADER_EPOCH: usize = 12;
/// Byte position of `magic`.
pub const MAGIC: usize = 16;
/// Byte position of `crc`.
pub const CRC: usize = 17;
/// Byte position of `attributes`; the CRC covers everything from here to the end.
pub const ATTRIBUTES: usize = 21;
/// Byte position of `lastOffsetDelta`.
pub const LAST_OFFSET_DELTA: usize = 23;
/// Byte position of `baseTimestamp`.
pub const BASE_TIMESTAMP: usize = 27;
/// Byte position of `maxTimestamp`.
pub const MAX_TIMESTAMP: usize = 35;
/// Byte position of `producerId`.
pub const PRODUCER_ID: usize = 43;
/// Byte position of `producerEpoch`.
pub const PRODUCER_EPOCH: usize = 51;
/// Byte position of `baseSequence`.
pub const BASE_SEQUENCE: usize = 53;
/// Byte position of `recordCount`.
pub const RECORD_COUNT: usize = 57;
/// Size of the fixed header; the records follow.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` starts counting: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// The only record format this broker stores.
pub const MAGIC_V2: i8 = 2;

/// Attribute bits 0-2: the compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit 3: timestamps are the broker's log append time.
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit 4: part of a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit 5: a control batch (transaction markers); only the broker writes those.
pub const ATTR_CONTROL: i16 = 0x20;
/// Highest compression codec id Kafka defines (zstd).
const COMPRESSION_MAX: i16 = 4;

/// The decoded fixed header of one RecordBatch v2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Total size of the batch on disk and on the wire.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }
    /// Offset of the last record: base + lastOffsetDelta.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }
    /// The compression codec id (attribute bits 0-2).
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }
    /// Whether the timestamps are the broker's log append time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }
    /// Whether this is a control batch.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
    /// Sequence number of the last record, wrapping at `i32::MAX` to 0 as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `baseSequence + delta`, wrapping past `i32::MAX` to 0 (Kafka's `incrementSequence`).
pub fn increment_sequence(sequence: i32, delta: i32) -> i32 {
    if delta > 0 && sequence > i32::MAX - delta {
        delta - (i32::MAX - sequence) - 1
    } else {
        sequence.wrapping_add(delta)
    }
}

fn be_i64(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Decodes the 61-byte header without checking anything but its presence.
pub fn parse_header(b: &[u8]) -> Option<BatchHeader> {
    if b.len() < HEADER_LEN {
        return None;
    }
    Some(BatchHeader {
        base_offset: be_i64(b, BASE_OFFSET)?,
        batch_length: be_i32(b, BATCH_LENGTH)?,
        partition_leader_epoch: be_i32(b, PARTITION_LEADER_EPOCH)?,
        magic: *b.get(MAGIC)? as i8,
        crc: be_i32(b, CRC)? as u32,
        attributes: be_i16(b, ATTRIBUTES)?,
        last_offset_delta: be_i32(b, LAST_OFFSET_DELTA)?,
        base_timestamp: be_i64(b, BASE_TIMESTAMP)?,
        max_timestamp: be_i64(b, MAX_TIMESTAMP)?,
        producer_id: be_i64(b, PRODUCER_ID)?,
        producer_epoch: be_i16(b, PRODUCER_EPOCH)?,
        base_sequence: be_i32(b, BASE_SEQUENCE)?,
        record_count: be_i32(b, RECORD_COUNT)?,
    })
}

/// Reads `(baseOffset, total length)` from the first 12 bytes, for header-skipping scans.
pub fn peek_offset_and_len(b: &[u8]) -> Option<(i64, usize)> {
    let len = be_i32(b, BATCH_LENGTH)?;
    if len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return None;
    }
    Some((be_i64(b, BASE_OFFSET)?, LOG_OVERHEAD + len as usize))
}

/// CRC32C of the part of the batch the `crc` field covers.
pub fn compute_crc(b: &[u8]) -> u32 {
    b.get(ATTRIBUTES..).map_or(0, crc32c::crc32c)
}

/// Checks the structure of a batch that was read back from disk: header present, magic 2, length
/// within `b`, and CRC. Returns the header; the batch occupies `b[..header.total_len()]`.
pub fn check_stored(b: &[u8]) -> Option<BatchHeader> {
    let h = parse_header(b)?;
    if h.magic != MAGIC_V2 || h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return None;
    }
    let data = b.get(..h.total_len())?;
    (compute_crc(data) == h.crc).then_some(h)
}

/// Validates the header of one batch as a producer sent it, before anything is written; the
/// records are checked by [`validate_batch`], which calls this first.
///
/// Structure and CRC problems are CORRUPT_MESSAGE; well-formed batches the broker refuses are
/// INVALID_RECORD; a batch above `max_message_bytes` is MESSAGE_TOO_LARGE.
pub fn validate_produce(b: &[u8], max_message_bytes: u32) -> Result<BatchHeader, LogError> {
    let h = parse_header(b).ok_or_else(|| {
        LogError::CorruptMessage(format!(
            "batch of {} bytes is shorter than its header",
            b.len()
        ))
    })?;
    if h.magic != MAGIC_V2 {
        return Err(LogError::InvalidRecord(format!(
            "magic {} is not supported",
            h.magic
        )));
    }
    if h.batch_length >= 0 && h.total_len() < b.len() {
        // Kafka's rule for magic v2: a produce request carries exactly one batch per partition.
        return Err(LogError::InvalidRecord(format!(
            "{} bytes follow the first record batch; exactly one batch per partition is allowed",
            b.len() - h.total_len()
        )));
    }
    if h.batch_length < 0 || h.total_len() != b.len() {
        return Err(LogError::CorruptMessage(format!(
            "batchLength {} does not match a buffer of {} bytes",
            h.batch_length,
            b.len()
        )));
    }
    if b.len() > max_message_bytes as usize {
        return Err(LogError::MessageTooLarge {
            size: b.len(),
            max: max_message_bytes,
        });
    }
    if h.record_count <= 0 || h.last_offset_delta.checked_add(1) != Some(h.record_count) {
        return Err(LogError::InvalidRecord(format!(
            "lastOffsetDelta {} does not match recordCount {}",
            h.last_offset_delta, h.record_count
        )));
    }
    if h.is_control() {
        return Err(LogError::InvalidRecord(
            "clients may not produce control batches".into(),
        ));
    }
    if h.producer_id >= 0 && h.base_sequence < 0 {
        // Kafka's LogValidator.validateBatch: an idempotent batch must number its records.
        return Err(LogError::InvalidRecord(format!(
            "invalid sequence number {} in a batch with producerId {}",
            h.base_sequence, h.producer_id
        )));
    }
    if h.attributes & ATTR_TRANSACTIONAL != 0 && h.producer_id < 0 {
        // A transaction is a producer's: without a producer id there is no producer state to
        // fence, no transaction to end, and read_committed consumers would wait on it forever.
        return Err(LogError::InvalidRecord(
            "transactional record batch without a producer id".into(),
        ));
    }
    if h.compression() > COMPRESSION_MAX {
        return Err(LogError::CorruptMessage(format!(
            "unknown compression codec {}",
            h.compression()
        )));
    }
    let crc = compute_crc(b);
    if crc != h.crc {
        return Err(LogError::CorruptMessage(format!(
            "CRC mismatch: header {:#010x}, computed {crc:#010x}",
            h.crc
        )));
    }
    Ok(h)
}

/// Rewrites the fields the broker assigns (baseOffset, partitionLeaderEpoch and, for
/// `LogAppendTime`, the timestamp-type bit and maxTimestamp) and recomputes the CRC when a
/// covered field changed. `b` must be a batch that passed [`validate_produce`]; a short buffer
/// is left untouched.
pub fn assign(b: &mut [u8], base_offset: i64, leader_epoch: i32, log_append_time: Option<i64>) {
    if b.len() < HEADER_LEN {
        return;
    }
    b[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    b[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
    if let Some(now) = log_append_time {
        let attrs = be_i16(b, ATTRIBUTES).unwrap_or(0) | ATTR_LOG_APPEND_TIME;
        b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
        b[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now.to_be_bytes());
        let crc = compute_crc(b);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Reads a zigzag varint (Kafka's signed varint/varlong) at `*at`, advancing it.
fn read_varlong(b: &[u8], at: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

/// Calls `f(offset, timestamp)` for the records of an uncompressed batch, in order, until it
/// returns true; returns that record. Only the varint headers of each record are decoded; keys
/// and values are skipped by length. Compressed or malformed batches yield `None` (callers fall
/// back to the batch header), so nothing is decompressed and nothing panics.
pub fn find_record(b: &[u8], mut f: impl FnMut(i64, i64) -> bool) -> Option<(i64, i64)> {
    let h = parse_header(b)?;
    if h.compression() != 0 {
        return None;
    }
    let end = h.total_len().min(b.len());
    let mut at = HEADER_LEN;
    for _ in 0..h.record_count.max(0) {
        let len = read_varlong(b, &mut at)?;
        let body = at;
        let mut p = at + 1; // the record's attributes byte, unused
        let ts = read_varlong(b, &mut p)?;
        let od = read_varlong(b, &mut p)?;
        if len < 0 || p > end {
            return None;
        }
        let rec = (
            h.base_offset.saturating_add(od),
            h.base_timestamp.saturating_add(ts),
        );
        if f(rec.0, rec.1) {
            return Some(rec);
        }
        at = body.checked_add(usize::try_from(len).ok()?)?;
        if at > end {
            return None;
        }
    }
    None
}

/// First record of an uncompressed batch with offset `>= min_offset` and timestamp `>= ts`.
pub fn first_record_at_or_after(b: &[u8], min_offset: i64, ts: i64) -> Option<(i64, i64)> {
    find_record(b, |o, t| o >= min_offset && t >= ts)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn put_varlong(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    /// Builds a valid uncompressed batch of `values`, with record timestamps `ts0 + i`.
    pub(crate) fn make_batch(
        values: &[Vec<u8>],
        ts0: i64,
        pid: i64,
        epoch: i16,
        seq: i32,
    ) -> Vec<u8> {
        let mut recs = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let mut r = vec![0u8];
            put_varlong(&mut r, i as i64); // timestamp delta
            put_varlong(&mut r, i as i64); // offset delta
            put_varlong(&mut r, -1); // null key
            put_varlong(&mut r, v.len() as i64);
            r.extend_from_slice(v);
            put_varlong(&mut r, 0); // no headers
            put_varlong(&mut recs, r.len() as i64);
            recs.extend_from_slice(&r);
        }
        let n = values.len() as i32;
        let mut b = vec![0u8; HEADER_LEN];
        b.extend_from_slice(&recs);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
        b[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
            .copy_from_slice(&(-1i32).to_be_bytes());
        b[MAGIC] = 2;
        b[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&(n - 1).to_be_bytes());
        b[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&ts0.to_be_bytes());
        let max_ts = ts0 + i64::from(n - 1);
        b[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&max_ts.to_be_bytes());
        b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&pid.to_be_bytes());
        b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&epoch.to_be_bytes());
        b[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&seq.to_be_bytes());
        b[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&n.to_be_bytes());
        let crc = compute_crc(&b);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn valid_batch_round_trips() {
        let b = make_batch(&[b"a".to_vec(), b"bc".to_vec()], 1000, 7, 1, 5);
        let h = validate_produce(&b, 1 << 20).unwrap();
        assert_eq!(h.record_count, 2);
        assert_eq!(h.last_sequence(), 6);
        assert_eq!(first_record_at_or_after(&b, 0, 1001), Some((1, 1001)));
        assert_eq!(first_record_at_or_after(&b, 0, 0), Some((0, 1000)));
        assert_eq!(first_record_at_or_after(&b, 0, 1002), None);
        assert!(check_stored(&b).is_some());
    }

    #[test]
    fn rejects_with_kafka_errors() {
        let good = make_batch(&[vec![1; 10]], 0, -1, -1, -1);
        let mut crc = good.clone();
        *crc.last_mut().unwrap() ^= 1;
        assert!(matches!(
            validate_produce(&crc, 1 << 20),
            Err(LogError::CorruptMessage(_))
        ));
        let mut magic = good.clone();
        magic[MAGIC] = 1;
        assert!(matches!(
            validate_produce(&magic, 1 << 20),
            Err(LogError::InvalidRecord(_))
        ));
        assert!(matches!(
            validate_produce(&good[..good.len() - 1], 1 << 20),
            Err(LogError::CorruptMessage(_))
        ));
        assert!(matches!(
            validate_produce(&good, 20),
            Err(LogError::MessageTooLarge { .. })
        ));
        let mut control = good.clone();
        control[ATTRIBUTES + 1] |= ATTR_CONTROL as u8;
        let c = compute_crc(&control);
        control[CRC..CRC + 4].copy_from_slice(&c.to_be_bytes());
        assert!(matches!(
            validate_produce(&control, 1 << 20),
            Err(LogError::InvalidRecord(_))
        ));
    }

    #[test]
    fn assign_keeps_crc_valid() {
        let mut b = make_batch(&[vec![1; 10]], 5, -1, -1, -1);
        assign(&mut b, 42, 3, Some(99));
        let h = check_stored(&b).unwrap();
        assert_eq!(
            (h.base_offset, h.partition_leader_epoch, h.max_timestamp),
            (42, 3, 99)
        );
        assert!(h.is_log_append_time());
    }

    #[test]
    fn sequence_wraps() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(3, 4), 7);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300), max in any::<u32>()) {
            let _ = validate_produce(&b, max);
            let _ = validate_batch(&b, &ValidateOptions::new(max));
            let _ = check_stored(&b);
            let _ = first_record_at_or_after(&b, 0, 0);
            let _ = peek_offset_and_len(&b);
            let mut m = b.clone();
            assign(&mut m, 1, 2, Some(3));
        }

        #[test]
        fn mutated_valid_batches_never_panic(seed in proptest::collection::vec(any::<u8>(), 1..50),
                                             at in any::<usize>(), byte in any::<u8>()) {
            let mut b = make_batch(&[seed.clone(), seed], 0, 1, 0, 0);
            let i = at % b.len();
            b[i] = byte;
            let _ = validate_produce(&b, u32::MAX);
            let _ = validate_batch(&b, &ValidateOptions { compacted: true, ..ValidateOptions::new(u32::MAX) });
            let _ = first_record_at_or_after(&b, 0, 0);
        }
    }
}

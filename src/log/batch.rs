//! The broker's side of the RecordBatch v2 codec: the checks a produced batch's header must
//! pass and the in-place header rewrites the broker is allowed to make. The layout itself, the
//! header decoder, CRC32C and the record walk live in [`crate::protocol::batch`], shared with
//! the CLI client and loadgen, and are re-exported here so the log reads them as `batch::…`.
//!
//! Sans-io like the codec: nothing here panics on any input; every read is bounds-checked and
//! reports an error instead.

use super::LogError;

pub use crate::protocol::batch::*;

/// The full check of a produced batch, records included: the entry point fuzz targets call.
pub use super::validate::{validate_batch, TimestampRules, ValidateOptions, Validated};

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
        patch_crc(b);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

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
        patch_crc(&mut b);
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

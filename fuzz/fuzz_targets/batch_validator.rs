//! The produce-side record-batch validator (`log::batch::validate_batch`: header, CRC, then
//! every record, decompressing as a bounded stream and, when asked, rewriting with the
//! topic's codec) and what the append
//! path does with a batch it accepts: assign the offset and leader epoch (and LogAppendTime),
//! then read it back as recovery and fetch do.
//!
//! Input: one mode byte, then the batch. Mode bit 0 repairs `batchLength` and the CRC before
//! validation, so that the fuzzer spends its time past those two checks (random bytes almost
//! never carry a matching CRC32C); bit 1 validates against a small `max.message.bytes`; bit 2
//! assigns LogAppendTime; bit 3 applies the compacted-topic key rule; bit 4 rewrites with zstd
//! (a topic `compression.type`); bit 5 checks timestamps (bit 6: a CreateTime topic; bit 7: a
//! clock near `i64::MAX`, so the window arithmetic is pushed to overflow).
//!
//! Properties: never a panic; an accepted batch is exactly the buffer, and once assigned it
//! passes the stored-batch check with the assigned fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidelog::config::MAX_MESSAGE_BYTES_DEFAULT;
use tidelog::log::batch::{self, TimestampRules, ValidateOptions, LOG_OVERHEAD};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let mut b = bytes.to_vec();
    if mode & 1 != 0 {
        repair(&mut b);
    }
    let max = if mode & 2 != 0 {
        512
    } else {
        MAX_MESSAGE_BYTES_DEFAULT
    };
    let mut opts = ValidateOptions::new(max);
    opts.compacted = mode & 8 != 0;
    if mode & 16 != 0 {
        opts.target_codec = Some(4);
    }
    if mode & 32 != 0 {
        // Timestamp rules with extreme bounds, so the window arithmetic meets overflow.
        opts.timestamps = Some(TimestampRules {
            create_time: mode & 64 != 0,
            now_ms: if mode & 128 != 0 { i64::MAX - 1 } else { 1_700_000_000_000 },
            before_max_ms: i64::MAX,
            after_max_ms: 3_600_000,
        });
    }
    let Ok(validated) = batch::validate_batch(&b, &opts) else {
        return;
    };
    // With a topic codec, what the log stores is the rewritten batch, and the header
    // describes it: the checks below then apply to that batch.
    let h = validated.header;
    let mut b = match validated.rewritten {
        Some(rewritten) => {
            // The rewrite is bounded by max.message.bytes and is itself a valid batch.
            assert!(rewritten.len() <= max as usize);
            batch::validate_batch(&rewritten, &ValidateOptions::new(max))
                .expect("a rewritten batch validates");
            rewritten
        }
        None => b,
    };
    assert_eq!(
        h.total_len(),
        b.len(),
        "an accepted batch is the whole buffer"
    );
    assert!(b.len() <= max as usize);
    let append_time = (mode & 4 != 0).then_some(1_700_000_000_000);
    batch::assign(&mut b, 42, 7, append_time);
    let stored = batch::check_stored(&b).expect("an accepted, assigned batch reads back");
    assert_eq!(stored.base_offset, 42);
    assert_eq!(stored.partition_leader_epoch, 7);
    assert_eq!(stored.record_count, h.record_count);
    assert_eq!(stored.last_offset(), 42 + i64::from(h.last_offset_delta));
    if let Some(ts) = append_time {
        assert!(stored.is_log_append_time());
        assert_eq!(stored.max_timestamp, ts);
    }
    // Recovery and ListOffsets walk the records of a stored batch this way; the validator
    // does not yet promise what the walk finds, only that it ends.
    let _ = batch::first_record_at_or_after(&b, 0, stored.max_timestamp);
});

/// Sets `batchLength` to the buffer's length and the CRC to the one computed.
fn repair(b: &mut [u8]) {
    if b.len() < batch::HEADER_LEN {
        return;
    }
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[batch::BATCH_LENGTH..batch::BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    let crc = batch::compute_crc(b);
    b[batch::CRC..batch::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

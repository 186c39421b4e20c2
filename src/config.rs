//! Every limit and Kafka-named setting of the broker lives here.
//!
//! Names follow Kafka's config names (`segment.bytes` becomes `segment_bytes`), so that the code
//! can be checked against Kafka's documentation.

/// `index.interval.bytes`: bytes of log between two entries of the sparse offset index.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// `segment.bytes` / `log.segment.bytes` default: 1 GiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// `message.max.bytes` / `max.message.bytes` default, as in Kafka (1 MiB + overhead).
pub const MAX_MESSAGE_BYTES_DEFAULT: u32 = 1_048_588;
/// `retention.ms` default: 7 days.
pub const RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;

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
/// `segment.ms` default: 7 days, as in Kafka.
pub const SEGMENT_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// `retention.bytes` default: -1, no size bound.
pub const RETENTION_BYTES_DEFAULT: i64 = -1;
/// `flush.messages` default: never force a flush by message count (Kafka's `Long.MAX_VALUE`).
pub const FLUSH_MESSAGES_DEFAULT: u64 = u64::MAX;
/// `flush.ms` default: never force a flush by time (Kafka's `Long.MAX_VALUE`).
pub const FLUSH_MS_DEFAULT: i64 = i64::MAX;
/// Largest usable `segment.bytes`: index entries store file positions as u32 and Kafka's own
/// setting is a Java int.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// Batches remembered per idempotent producer for duplicate detection (Kafka's
/// `NUM_BATCHES_TO_RETAIN`; clients keep at most 5 requests in flight).
pub const PRODUCER_BATCHES_RETAINED: usize = 5;
/// Idempotent producers remembered per partition. Kafka expires them by
/// `producer.id.expiration.ms`; we bound the count instead and forget the least recently used.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;
/// Bytes read at a time when recovery scans a segment: large reads keep a 1 GiB scan well under a
/// second when the pages are cached.
pub const RECOVERY_READ_CHUNK_BYTES: usize = 8 << 20;

const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!((MAX_MESSAGE_BYTES_DEFAULT as u64) < SEGMENT_BYTES_DEFAULT);
const _: () = assert!(MAX_MESSAGE_BYTES_DEFAULT as usize <= RECOVERY_READ_CHUNK_BYTES);

//! The per-partition commit log.
//!
//! A [`PartitionLog`] lives on the shard that owns the partition and is never shared across
//! threads; it uses `Cell`/`RefCell` and never holds a borrow across an `.await`.
//!
//! # Layout on disk (Kafka's)
//!
//! ```text
//! <dir>/00000000000000000000.log        record batches byte-for-byte as producers sent them
//! <dir>/00000000000000000000.index      sparse: relative offset u32 -> file position u32
//! <dir>/00000000000000000000.timeindex  sparse: max timestamp i64 -> relative offset u32
//! <dir>/00000000000000000000.txnindex   aborted transactions whose ABORT marker is here
//! <dir>/producer.snapshot               producer state (sequences, open transactions)
//! <dir>/leader-epoch-checkpoint         (epoch, start offset) pairs, Kafka's text format
//! <dir>/recovery-point                  offset below which everything is known to be fsynced
//! <dir>/log-start-offset                the log start offset (DeleteRecords, retention)
//! <dir>/clean-shutdown                  present only while the partition is closed cleanly
//! ```
//!
//! # Modules
//!
//! - [`batch`]: sans-io RecordBatch v2 header codec and validation.
//! - `index`: the sparse offset and time indexes, kept in memory and written at roll/close.
//! - `segment`: one `.log` file with its indexes and file handles.
//! - `producer`: idempotent-producer state (and each producer's open transaction) and its
//!   snapshot.
//! - [`txn`]: transaction markers, the aborted-transaction index, the last stable offset.
//! - `epoch`: the leader-epoch cache.
//! - `partition` (+ `append`, `recovery`, `retention`): [`PartitionLog`] itself.
//! - `replica` (+ `truncate`): what replication needs of the log: a follower's verbatim appends
//!   of its leader's batches, and truncating a divergent tail.
//! - `record`: record-level access (keys, tombstones) and the codecs, for compaction.
//! - [`validate`] (+ `codec`): every record of a produced batch checked as Kafka's
//!   LogValidator does, streaming through the codecs; topic recompression on the same walk.
//! - `offset_map`: the cleaner's bounded map of key hashes to latest offsets.
//! - `compact` (+ `swap`): log compaction (`cleanup.policy=compact`) and its crash-safe swap.

mod append;
pub mod batch;
mod codec;
mod compact;
mod epoch;
mod files;
mod index;
pub mod offset_map;
mod partition;
mod producer;
mod record;
mod recovery;
mod replica;
mod retention;
mod segment;
mod swap;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_compact;
#[cfg(test)]
mod tests_kill;
#[cfg(test)]
mod tests_offshard;
#[cfg(test)]
mod tests_replica;
#[cfg(test)]
mod tests_truncate;
#[cfg(test)]
mod tests_txn;
mod truncate;
pub mod txn;
pub mod validate;

use std::fmt;
use std::sync::Arc;

pub use compact::CleanStats;
pub use offset_map::OffsetMap;
pub use partition::PartitionLog;
pub use replica::ReplicaAppend;

use crate::config;

/// A Kafka offset: the position of a record in the partition, counted in records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub i64);

/// A byte position inside one segment file; never to be confused with an [`Offset`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilePos(pub u64);

/// `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    /// Kafka's spelling, `CreateTime` or `LogAppendTime` (exactly, as Kafka's validator wants).
    pub fn parse(value: &str) -> Option<TimestampType> {
        match value {
            "CreateTime" => Some(TimestampType::CreateTime),
            "LogAppendTime" => Some(TimestampType::LogAppendTime),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

/// `compression.type`: the codec a topic stores its batches in; `Producer` keeps every batch as
/// the producer sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionType {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    const ALL: [CompressionType; 6] = [
        CompressionType::Producer,
        CompressionType::Uncompressed,
        CompressionType::Gzip,
        CompressionType::Snappy,
        CompressionType::Lz4,
        CompressionType::Zstd,
    ];

    /// Kafka's name (`producer`, `uncompressed`, `gzip`, `snappy`, `lz4`, `zstd`), exactly.
    pub fn parse(value: &str) -> Option<CompressionType> {
        Self::ALL.into_iter().find(|c| c.name() == value)
    }

    pub fn name(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Uncompressed => "uncompressed",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
    }
}

/// `cleanup.policy`: which of retention (`delete`) and compaction (`compact`) apply; Kafka's
/// `compact,delete` sets both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    /// Kafka's default, `delete`.
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };

    /// Parses Kafka's comma-separated list; `None` for an unknown or empty policy.
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let mut p = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in value.split(',') {
            match part.trim() {
                "delete" => p.delete = true,
                "compact" => p.compact = true,
                _ => return None,
            }
        }
        Some(p)
    }

    /// Kafka's normal spelling: `delete`, `compact` or `compact,delete`.
    pub fn name(self) -> &'static str {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        }
    }
}

/// The topic configs the log obeys, with Kafka's names and Kafka's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`
    pub segment_bytes: u64,
    /// `segment.ms`
    pub segment_ms: i64,
    /// `retention.ms`; -1 keeps data forever.
    pub retention_ms: i64,
    /// `retention.bytes`; -1 is unbounded.
    pub retention_bytes: i64,
    /// `max.message.bytes`
    pub max_message_bytes: u32,
    /// `index.interval.bytes`
    pub index_interval_bytes: u32,
    /// `message.timestamp.type`
    pub message_timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: under CreateTime, how far in the past a record's
    /// timestamp may lie (INVALID_TIMESTAMP beyond).
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: under CreateTime, how far in the future.
    pub message_timestamp_after_max_ms: i64,
    /// `flush.messages`; `u64::MAX` never forces a flush.
    pub flush_messages: u64,
    /// `flush.ms`; `i64::MAX` never forces a flush.
    pub flush_ms: i64,
    /// `cleanup.policy`
    pub cleanup_policy: CleanupPolicy,
    /// `min.compaction.lag.ms`: a segment whose newest record is younger stays uncompacted.
    pub min_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long compaction keeps a tombstone (null value) readable.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: compact once this share of the cleanable log is dirty.
    pub min_cleanable_dirty_ratio: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: config::SEGMENT_BYTES_DEFAULT,
            segment_ms: config::SEGMENT_MS_DEFAULT,
            retention_ms: config::RETENTION_MS_DEFAULT,
            retention_bytes: config::RETENTION_BYTES_DEFAULT,
            max_message_bytes: config::MAX_MESSAGE_BYTES_DEFAULT,
            index_interval_bytes: config::INDEX_INTERVAL_BYTES_DEFAULT,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: config::MESSAGE_TIMESTAMP_BEFORE_MAX_MS_DEFAULT,
            message_timestamp_after_max_ms: config::MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT,
            flush_messages: config::FLUSH_MESSAGES_DEFAULT,
            flush_ms: config::FLUSH_MS_DEFAULT,
            cleanup_policy: CleanupPolicy::DELETE,
            min_compaction_lag_ms: config::MIN_COMPACTION_LAG_MS_DEFAULT,
            delete_retention_ms: config::DELETE_RETENTION_MS_DEFAULT,
            min_cleanable_dirty_ratio: config::MIN_CLEANABLE_DIRTY_RATIO_DEFAULT,
        }
    }
}

impl LogConfig {
    /// `segment.bytes` clamped to what u32 index positions can address.
    pub(crate) fn segment_bytes_effective(&self) -> u64 {
        self.segment_bytes
            .clamp(batch::HEADER_LEN as u64, config::SEGMENT_BYTES_MAX)
    }
}

/// When an append is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// After an `fdatasync` covering the batch (the server's `acks=-1`).
    Fsync,
    /// After the write reached the page cache (`acks=1`).
    PageCache,
}

/// What an append returns (the fields of a ProduceResponse partition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// -1 unless the topic uses `LogAppendTime`.
    pub log_append_time_ms: i64,
    pub log_start_offset: Offset,
    /// The batch was a retry of one already in the log: nothing was written and the offsets are
    /// those of the original.
    pub duplicate: bool,
}

/// A byte range of one segment file to hand to sendfile(2).
///
/// The file is a plain read-only descriptor shared with the log: if retention deletes the
/// segment meanwhile, the open descriptor still reads the unlinked file.
#[derive(Clone, Debug)]
pub struct ReadSlice {
    pub file: Arc<std::fs::File>,
    pub position: FilePos,
    /// Zero when there is nothing to read.
    pub len: u32,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
}

/// Errors of the log; [`LogError::error_code`] (in `crate::error`) maps them to Kafka's wire codes.
#[derive(Debug)]
pub enum LogError {
    CorruptMessage(String),
    InvalidRecord(String),
    MessageTooLarge {
        size: usize,
        max: u32,
    },
    OffsetOutOfRange {
        requested: Offset,
        log_start: Offset,
        log_end: Offset,
    },
    OutOfOrderSequence(String),
    InvalidProducerEpoch(String),
    Io(std::io::Error),
    /// Well-formed records the topic refuses (a keyless record on a compacted topic): Kafka's
    /// INVALID_RECORD with one KIP-467 `record_errors` entry per record.
    RecordErrors(Vec<validate::RecordError>),
    /// Records whose timestamps the topic refuses (outside `message.timestamp.before/after.max.ms`
    /// under CreateTime, or a producer-set LogAppendTime flag): Kafka's INVALID_TIMESTAMP with
    /// per-record errors; the list may also hold other records' key errors.
    TimestampErrors(Vec<validate::RecordError>),
    /// A batch that is too large in a way `max.message.bytes` alone does not say (it expands
    /// past the decompression bound, or its recompressed form does not fit).
    BatchTooLarge(String),
    /// A write for a role this replica no longer has (it stopped leading, or following that
    /// leader, while the write waited): NOT_LEADER_OR_FOLLOWER.
    NotLeader(String),
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::CorruptMessage(m) => write!(f, "corrupt message: {m}"),
            LogError::InvalidRecord(m) => write!(f, "invalid record: {m}"),
            LogError::MessageTooLarge { size, max } => {
                write!(f, "batch of {size} bytes exceeds max.message.bytes {max}")
            }
            LogError::OffsetOutOfRange {
                requested,
                log_start,
                log_end,
            } => write!(
                f,
                "offset {} is outside [{}, {}]",
                requested.0, log_start.0, log_end.0
            ),
            LogError::OutOfOrderSequence(m) => write!(f, "out of order sequence: {m}"),
            LogError::InvalidProducerEpoch(m) => write!(f, "invalid producer epoch: {m}"),
            LogError::Io(e) => write!(f, "log I/O error: {e}"),
            // Kafka's wording (LogValidator.processRecordErrors), which clients show as is.
            LogError::RecordErrors(errors) => {
                write!(
                    f,
                    "One or more records have been rejected due to {} record errors in total, \
                     and only showing the first three errors at most: [",
                    errors.len()
                )?;
                for (i, e) in errors.iter().take(3).enumerate() {
                    let sep = if i > 0 { ", " } else { "" };
                    write!(
                        f,
                        "{sep}RecordError(batchIndex={}, message='{}')",
                        e.batch_index, e.message
                    )?;
                }
                write!(f, "]")
            }
            // Kafka's wording (LogValidator.processRecordErrors).
            LogError::TimestampErrors(_) => write!(
                f,
                "One or more records have been rejected due to invalid timestamp"
            ),
            LogError::BatchTooLarge(m) => write!(f, "batch too large: {m}"),
            LogError::NotLeader(m) => write!(f, "not the leader: {m}"),
        }
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for LogError {
    fn from(e: std::io::Error) -> Self {
        LogError::Io(e)
    }
}

impl From<glommio::GlommioError<()>> for LogError {
    fn from(e: glommio::GlommioError<()>) -> Self {
        LogError::Io(e.into())
    }
}

/// Wall-clock milliseconds since the Unix epoch, Kafka's timestamp unit.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

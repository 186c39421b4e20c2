//! Every limit and Kafka-named setting of the broker lives here.
//!
//! Names follow Kafka's config names (`segment.bytes` becomes `segment_bytes`), so that the code
//! can be checked against Kafka's documentation.
//!
//! The limits are constants, each with the compile-time assertions that tie it to the others
//! (TigerBeetle's `constants.zig` is the model). The settings an operator may change are rows
//! of one table, [`schema::SETTINGS`], which drives parsing (`BrokerConfig::set`), validation,
//! DescribeConfigs and the README's tables ([`docs`]).

pub mod docs;
pub mod listeners;
pub mod schema;

use crate::error::ConfigError;
use crate::log::{CleanupPolicy, CompressionType, TimestampType};

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

/// `log.cleaner.backoff.ms` default: the pause between two cleaner passes of a shard.
pub const LOG_CLEANER_BACKOFF_MS_DEFAULT: u64 = 15_000;
/// `log.cleaner.dedupe.buffer.size` default, per shard (Kafka's 128 MiB is shared by all cleaner
/// threads; each shard is one cleaner here). Bounds the cleaner's key map: 24 bytes a key.
pub const LOG_CLEANER_DEDUPE_BUFFER_SIZE_DEFAULT: usize = 16 << 20;
/// Smallest accepted `log.cleaner.dedupe.buffer.size`: room for a few thousand keys.
pub const LOG_CLEANER_DEDUPE_BUFFER_SIZE_MIN: usize = 64 << 10;
/// Fraction of the cleaner's key map that may be filled (Kafka's
/// `log.cleaner.io.buffer.load.factor`): linear probing degrades past it.
pub const LOG_CLEANER_LOAD_FACTOR: f64 = 0.9;
/// Bytes the cleaner reads or writes at a time: large enough to amortise io_uring calls, small
/// enough that its buffers stay bounded (a batch larger than this is read whole).
pub const CLEANER_IO_CHUNK_BYTES: usize = 1 << 20;
/// `min.compaction.lag.ms` default, as in Kafka.
pub const MIN_COMPACTION_LAG_MS_DEFAULT: i64 = 0;
/// `delete.retention.ms` default (1 day), as in Kafka.
pub const DELETE_RETENTION_MS_DEFAULT: i64 = 86_400_000;
/// `min.cleanable.dirty.ratio` default, as in Kafka.
pub const MIN_CLEANABLE_DIRTY_RATIO_DEFAULT: f64 = 0.5;

/// `message.timestamp.before.max.ms` (`log.message.timestamp.before.max.ms`): Kafka's default,
/// no bound on how old a CreateTime timestamp may be.
pub const MESSAGE_TIMESTAMP_BEFORE_MAX_MS_DEFAULT: i64 = i64::MAX;
/// `message.timestamp.after.max.ms`: Kafka 4's default (KIP-1030), one hour into the future.
pub const MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT: i64 = 3_600_000;
const _: () = assert!(MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT >= 0);

/// How far one produced batch may expand when decompressed for validation, as a multiple of
/// its topic's `max.message.bytes` (counted as at least [`BATCH_DECOMPRESSED_BYTES_MIN`]): past
/// it the batch is refused with MESSAGE_TOO_LARGE. Kafka has no such bound; records are walked as
/// a stream, so it bounds the CPU one small batch can cost (a 67 KB zstd batch of 2 GiB of
/// zeros), not memory. 32 leaves real producers' ratios (text, JSON: 5-20x) far inside it.
pub const BATCH_DECOMPRESSED_BYTES_FACTOR: u64 = 32;
/// Floor of the `max.message.bytes` that [`BATCH_DECOMPRESSED_BYTES_FACTOR`] multiplies, so a
/// topic with a small `max.message.bytes` still takes well-compressed batches.
pub const BATCH_DECOMPRESSED_BYTES_MIN: u64 = 1 << 20;

const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(LOG_CLEANER_DEDUPE_BUFFER_SIZE_MIN <= LOG_CLEANER_DEDUPE_BUFFER_SIZE_DEFAULT);
const _: () = assert!((MAX_MESSAGE_BYTES_DEFAULT as u64) < SEGMENT_BYTES_DEFAULT);
const _: () = assert!(MAX_MESSAGE_BYTES_DEFAULT as usize <= RECOVERY_READ_CHUNK_BYTES);

/// `socket.request.max.bytes` default, as in Kafka: 100 MiB.
pub const SOCKET_REQUEST_MAX_BYTES_DEFAULT: u32 = 104_857_600;
/// `max.connections` default. Kafka's is unbounded (i32::MAX); ours is a bound because every
/// connection owns buffers on a shard, and nothing on the data path may grow without one.
pub const MAX_CONNECTIONS_DEFAULT: u32 = 10_000;
/// Bytes a shard may hold in requests read but not yet answered before it stops reading from
/// its sockets (back-pressure instead of growth).
pub const SHARD_INFLIGHT_BYTES_MAX: usize = 256 << 20;
/// `fetch.max.bytes` (broker side): the most record bytes one fetch response carries.
pub const FETCH_MAX_BYTES_DEFAULT: u32 = 55 << 20;
/// Batch headers one fetch response may read to cut partitions' ranges down to what is left of
/// its `max_bytes`. Each is a small read from the page cache on the connection's shard; past
/// this bound a range just ends early (a shorter, still valid response), so partitions of tiny
/// batches cannot hold up the shard.
pub const FETCH_CUT_SCAN_BATCHES_MAX: usize = 1024;
/// How long a fetch may be parked waiting for `min_bytes` at most, whatever the client asks.
pub const FETCH_MAX_WAIT_MS_MAX: i32 = 30_000;

/// Kafka's default `replica.lag.time.max.ms`.
pub const REPLICA_LAG_TIME_MAX_MS_DEFAULT: u64 = 30_000;
/// Partitions in one topic at most (CreateTopics answers INVALID_PARTITIONS above it).
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;
/// Kafka's topic-name length limit.
pub const TOPIC_NAME_LEN_MAX: usize = 249;
/// `group.max.size`: members (and reserved member ids) per consumer group. Kafka's default is
/// unbounded; a bound keeps one client's thousands of joins from growing a group without limit.
pub const GROUP_MAX_SIZE: usize = 1000;
/// Interval of the client-error log summaries (`net::client_errors`): per client, one WARN line
/// at its first error and one summary of the rest per interval; every error at debug level.
pub const CLIENT_ERROR_LOG_INTERVAL_MS: u64 = 10_000;
/// Clients per shard and interval that get their own WARN lines; the errors of further clients
/// are counted in one summary line, so that the log stays bounded whatever ids clients send.
pub const CLIENT_ERROR_LOG_CLIENTS_MAX: usize = 32;
/// Back-off after a failed accept (EMFILE: out of descriptors), doubling up to the max.
pub const ACCEPT_BACKOFF_MS_MIN: u64 = 10;
pub const ACCEPT_BACKOFF_MS_MAX: u64 = 1_000;
/// A shard logs failed accepts at most once per this interval, with the count since the last.
pub const ACCEPT_FAILURE_LOG_INTERVAL_MS: u64 = 10_000;
/// Descriptors an open partition holds: its active segment's io_uring writer and the read-only
/// handle given to fetches (indexes are read into memory and written whole at close). Closed
/// segments hold the same two each until retention removes them; the budget counts partitions,
/// so a partition of many segments costs more than it is charged (see README, "Limits").
pub const FDS_PER_PARTITION: u64 = 2;
/// Descriptors reserved for the broker's own files, whatever the shard count: stdio, the data
/// dir lock, the port guard, metadata writes, and the temporaries of recovery.
pub const FD_RESERVE_BASE: u64 = 64;
/// Descriptors reserved per shard: its io_uring rings and eventfds, its listener, compaction's
/// source and `.cleaned` files, replacements written by `replace_durably`.
pub const FD_RESERVE_PER_SHARD: u64 = 16;

/// How RLIMIT_NOFILE is shared out, decided once at start. Connections get a descriptor each,
/// up to `max.connections` but never more than half of what the broker's own reserve leaves;
/// partitions get the rest, [`FDS_PER_PARTITION`] each. CreateTopics and CreatePartitions that
/// would pass `partitions_max` are refused (POLICY_VIOLATION), and a start whose partitions do
/// not fit fails, so that the broker never runs out of descriptors half-way and stops accepting
/// connections (issue 9.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdBudget {
    /// RLIMIT_NOFILE (soft, after raising it to the hard limit); `u64::MAX`: unlimited.
    pub nofile: u64,
    /// Descriptors kept for the broker's own files.
    pub reserved_broker: u64,
    /// Descriptors kept for client connections: at most `max.connections`.
    pub connections_max: u64,
    /// Partitions the rest of the limit can hold.
    pub partitions_max: u64,
}

impl FdBudget {
    pub fn unlimited() -> FdBudget {
        FdBudget {
            nofile: u64::MAX,
            reserved_broker: 0,
            connections_max: u64::MAX,
            partitions_max: u64::MAX,
        }
    }

    pub fn new(nofile: u64, shards: usize, max_connections: u32) -> FdBudget {
        if nofile == u64::MAX || nofile == libc::RLIM_INFINITY {
            return FdBudget::unlimited();
        }
        let reserved_broker = FD_RESERVE_BASE + FD_RESERVE_PER_SHARD * shards as u64;
        let left = nofile.saturating_sub(reserved_broker);
        let connections_max = u64::from(max_connections).min(left / 2);
        FdBudget {
            nofile,
            reserved_broker,
            connections_max,
            partitions_max: (left - connections_max) / FDS_PER_PARTITION,
        }
    }

    /// Why `partitions` do not fit, in one line naming the limit; `None` when they do.
    pub fn refuse(&self, partitions: u64) -> Option<String> {
        (partitions > self.partitions_max).then(|| {
            format!(
                "{partitions} partitions exceed this broker's limit of {} partitions: \
                 RLIMIT_NOFILE is {}, {} descriptors are reserved for connections \
                 (max.connections) and {} for the broker's own files, and each partition holds \
                 {FDS_PER_PARTITION}; raise RLIMIT_NOFILE (ulimit -n, systemd LimitNOFILE) or \
                 lower max.connections",
                self.partitions_max, self.nofile, self.connections_max, self.reserved_broker
            )
        })
    }
}

/// How often a shard looks for partitions whose log failed on a write error (a full disk) and
/// reopens them once there is room again (`Shard::heal_failed_partitions`).
pub const LOG_HEAL_INTERVAL_MS: u64 = 1_000;
/// Available bytes below which a failed partition is not reopened yet (the larger of this and
/// two `message.max.bytes`).
pub const LOG_HEAL_FREE_BYTES_MIN: u64 = 1 << 20;
/// Capacity of each cross-shard channel, in messages. A full channel makes the sender wait.
pub const SHARD_CHANNEL_CAPACITY: usize = 1024;

const _: () = assert!(MAX_MESSAGE_BYTES_DEFAULT < SOCKET_REQUEST_MAX_BYTES_DEFAULT);
const _: () = assert!((SOCKET_REQUEST_MAX_BYTES_DEFAULT as usize) < SHARD_INFLIGHT_BYTES_MAX);
const _: () = assert!(INDEX_INTERVAL_BYTES_DEFAULT as u64 <= SEGMENT_BYTES_DEFAULT);

// Connections and responses (`net/conn.rs`, `net/send.rs`).

/// Bytes read from the socket at a time when no larger frame is pending.
pub const READ_CHUNK_BYTES: usize = 64 << 10;
/// Bytes read through glommio when the socket had nothing ready: only the first bytes of a
/// burst take this copy; the rest go straight into the frame buffer.
pub const WAIT_READ_BYTES: usize = 4 << 10;
/// Bytes copied through memory to wait for a full socket to drain (`net::send`'s fallback when
/// `sendfile` would block).
pub const STALL_CHUNK_BYTES: usize = 16 << 10;
/// The listen backlog each shard's listener asks for (the kernel caps it at
/// `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 1024;

const _: () = assert!(WAIT_READ_BYTES <= READ_CHUNK_BYTES);
const _: () = assert!(READ_CHUNK_BYTES <= SOCKET_REQUEST_MAX_BYTES_DEFAULT as usize);
const _: () = assert!(STALL_CHUNK_BYTES <= FETCH_MAX_BYTES_DEFAULT as usize);
const _: () = assert!(LISTEN_BACKLOG > 0);

// Consumer groups (`group/`) and producer ids (`admin.rs`).

/// Kafka's `offset.metadata.max.bytes`: the longest metadata string an OffsetCommit may carry.
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;
/// Partitions of `__consumer_offsets` (Kafka's `offsets.topic.num.partitions` is 50; fewer
/// files suit a single node, and the count is fixed once the topic exists).
pub const OFFSETS_TOPIC_PARTITIONS: i32 = 16;
/// Segment size of `__consumer_offsets` (Kafka's `offsets.topic.segment.bytes`).
pub const OFFSETS_TOPIC_SEGMENT_BYTES: u64 = 100 << 20;
/// Producer ids are handed out in persisted blocks of this many, so that no id repeats after a
/// restart.
pub const PRODUCER_ID_BLOCK: i64 = 1000;
/// The single node's metadata log is folded into a new snapshot once it holds this many bytes
/// (`metadata::log`). Kafka's `metadata.log.max.snapshot.interval.ms`/`metadata.max.retention.bytes`
/// bound the same log; a record is tens of bytes, so this is thousands of changes, and a
/// snapshot rewrite (one file of the whole image) is paid once per that many.
pub const METADATA_LOG_SNAPSHOT_BYTES: u64 = 1 << 20;

const _: () = assert!(OFFSET_METADATA_MAX_BYTES < MAX_MESSAGE_BYTES_DEFAULT as usize);
const _: () =
    assert!(OFFSETS_TOPIC_PARTITIONS > 0 && OFFSETS_TOPIC_PARTITIONS <= PARTITIONS_PER_TOPIC_MAX);
const _: () = assert!(OFFSETS_TOPIC_SEGMENT_BYTES <= SEGMENT_BYTES_MAX);
const _: () = assert!(MAX_MESSAGE_BYTES_DEFAULT as u64 <= OFFSETS_TOPIC_SEGMENT_BYTES);
const _: () = assert!(PRODUCER_ID_BLOCK > 0);

// Executors, memory and the process (`runtime.rs`, `alloc.rs`, `server.rs`).

/// Locked memory each executor reserves for its io_uring buffers by default.
pub const IO_MEMORY_BYTES_DEFAULT: usize = 2 << 20;
/// Locked memory each executor reserves at the least; below it io_uring buffers thrash.
pub const IO_MEMORY_BYTES_MIN: usize = 256 << 10;
/// When locked memory is short, each executor's share is rounded down to a multiple of this.
pub const IO_MEMORY_GRANULE_BYTES: usize = 64 << 10;
/// Locked memory left over for the process itself when RLIMIT_MEMLOCK is shared out among the
/// executors.
pub const MEMLOCK_RESERVE_BYTES: u64 = 1 << 20;
/// glommio's preemption timer on the broker's shards: how long a task may run before
/// `yield_if_needed` yields to latency-sensitive work.
pub const SHARD_PREEMPT_TIMER_MS: u64 = 5;
/// The preemption timer of the single executor the CLI, tests and tools run on.
pub const TOOL_PREEMPT_TIMER_MS: u64 = 10;
/// Allocations at least this large are reserved with `MAP_NORESERVE`, not committed
/// (`alloc::BrokerAllocator`). Every buffer the broker itself sizes stays below it.
pub const HUGE_ALLOCATION_BYTES: usize = 1 << 30;
/// How long shutdown waits for in-flight requests before closing partitions anyway.
pub const SHUTDOWN_DRAIN_MS_MAX: u64 = 5_000;
/// How often shutdown looks at the in-flight request count while it drains.
pub const SHUTDOWN_DRAIN_POLL_MS: u64 = 10;
/// How long a start waits for a port still held by a dead broker's io_uring rings.
pub const PORT_RELEASE_WAIT_MS_MAX: u64 = 3_000;
/// How often a start retries binding that port meanwhile.
pub const PORT_RELEASE_POLL_MS: u64 = 20;
/// Shortest retention pass interval, whatever `log.retention.check.interval.ms` says.
pub const LOG_RETENTION_CHECK_INTERVAL_MS_MIN: u64 = 100;
/// Shortest pause between cleaner passes, whatever `log.cleaner.backoff.ms` says.
pub const LOG_CLEANER_BACKOFF_MS_MIN: u64 = 10;

const _: () = assert!(IO_MEMORY_BYTES_MIN <= IO_MEMORY_BYTES_DEFAULT);
const _: () = assert!(IO_MEMORY_GRANULE_BYTES.is_power_of_two());
const _: () = assert!(IO_MEMORY_BYTES_MIN % IO_MEMORY_GRANULE_BYTES == 0);
const _: () = assert!(SHARD_INFLIGHT_BYTES_MAX < HUGE_ALLOCATION_BYTES);
const _: () = assert!((SOCKET_REQUEST_MAX_BYTES_DEFAULT as usize) < HUGE_ALLOCATION_BYTES);
const _: () = assert!(LOG_CLEANER_DEDUPE_BUFFER_SIZE_DEFAULT < HUGE_ALLOCATION_BYTES);
const _: () =
    assert!(SHUTDOWN_DRAIN_POLL_MS > 0 && SHUTDOWN_DRAIN_POLL_MS <= SHUTDOWN_DRAIN_MS_MAX);
const _: () = assert!(PORT_RELEASE_POLL_MS > 0 && PORT_RELEASE_POLL_MS <= PORT_RELEASE_WAIT_MS_MAX);
const _: () = assert!(SHARD_PREEMPT_TIMER_MS > 0 && TOOL_PREEMPT_TIMER_MS > 0);
const _: () = assert!(LOG_CLEANER_BACKOFF_MS_MIN <= LOG_CLEANER_BACKOFF_MS_DEFAULT);

/// The broker's settings: built from defaults, then the `--config` file, then `--set` flags.
///
/// Keys use Kafka's names (`num.partitions`, `log.retention.hours`, ...). In the TOML file they
/// may be written either quoted (`"num.partitions" = 3`) or as dotted keys (`num.partitions = 3`);
/// both flatten to the same name.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// The client listener's address, where every shard listens (SO_REUSEPORT); resolved from
    /// `listeners` by [`BrokerConfig::resolve`].
    pub listen: std::net::SocketAddr,
    /// The client listener's entry of `advertised.listeners` (host, port); resolved.
    pub advertised_listener: Option<(String, u16)>,
    /// `listeners`, as given.
    pub listeners: Vec<listeners::Listener>,
    /// `advertised.listeners`, as given.
    pub advertised_listeners: Vec<listeners::Listener>,
    /// `listener.security.protocol.map`; Kafka's default maps each protocol name to itself.
    pub listener_security_protocol_map: Vec<(String, String)>,
    /// `controller.listener.names`.
    pub controller_listener_names: Vec<String>,
    /// `inter.broker.listener.name`.
    pub inter_broker_listener_name: Option<String>,
    /// `process.roles`; `None`: tidelog's own single node.
    pub process_roles: Option<listeners::Roles>,
    /// `controller.quorum.voters`.
    pub controller_quorum_voters: Vec<listeners::Voter>,
    /// `controller.quorum.bootstrap.servers`.
    pub controller_quorum_bootstrap_servers: Vec<(String, u16)>,
    /// `log.dirs`: the data directory.
    pub data_dir: std::path::PathBuf,
    /// Shards (pinned executors). `None`: one per available core.
    pub shards: Option<usize>,
    /// `node.id`.
    pub node_id: i32,
    /// `broker.rack`.
    pub broker_rack: Option<String>,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `broker.session.timeout.ms`: a cluster's broker lease.
    pub broker_session_timeout_ms: u64,
    /// `offsets.topic.replication.factor`.
    pub offsets_topic_replication_factor: i16,
    /// `transaction.state.log.replication.factor`.
    pub transaction_state_log_replication_factor: i16,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`.
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask.
    pub transaction_max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub transaction_abort_interval_ms: u64,
    /// `transactional.id.expiration.ms`: an idle transactional id is forgotten after this.
    pub transactional_id_expiration_ms: i64,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`.
    pub leader_imbalance_check_interval_seconds: u64,
    /// `leader.replication.throttled.rate` and `follower.replication.throttled.rate`, bytes/s
    /// (`partitions::quota`); Kafka's Long.MAX_VALUE is unlimited.
    pub leader_replication_throttled_rate: i64,
    pub follower_replication_throttled_rate: i64,
    /// `unclean.leader.election.enable`: the default of the topic config of that name.
    pub unclean_leader_election_enable: bool,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: u64,
    /// `cluster.id`: generated at first start when unset, then persisted in the data dir.
    pub cluster_id: Option<String>,
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `log.retention.ms` (from `log.retention.hours`/`minutes`/`ms`); -1 keeps forever.
    pub log_retention_ms: i64,
    /// `log.retention.bytes`; -1 is unbounded.
    pub log_retention_bytes: i64,
    /// `log.segment.bytes`.
    pub log_segment_bytes: u64,
    /// `log.roll.ms` (from `log.roll.hours`).
    pub log_roll_ms: i64,
    /// `log.flush.interval.messages`.
    pub log_flush_interval_messages: u64,
    /// `log.flush.interval.ms`.
    pub log_flush_interval_ms: i64,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: u64,
    /// `message.max.bytes`.
    pub message_max_bytes: u32,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: u32,
    /// `max.connections`.
    pub max_connections: u32,
    /// The file-descriptor budget, derived from RLIMIT_NOFILE at start (not a setting):
    /// unlimited until `server::run` computes it.
    pub fd_budget: FdBudget,
    /// `log.message.timestamp.type`.
    pub log_message_timestamp_type: TimestampType,
    /// `log.message.timestamp.before.max.ms`: how far in the past a CreateTime record may be.
    pub log_message_timestamp_before_max_ms: i64,
    /// `log.message.timestamp.after.max.ms`: how far in the future a CreateTime record may be.
    pub log_message_timestamp_after_max_ms: i64,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// `log.cleanup.policy`.
    pub log_cleanup_policy: CleanupPolicy,
    /// `compression.type`: `producer` keeps batches as sent.
    pub compression_type: CompressionType,
    /// `log.cleaner.delete.retention.ms`.
    pub log_cleaner_delete_retention_ms: i64,
    /// `log.cleaner.min.compaction.lag.ms`.
    pub log_cleaner_min_compaction_lag_ms: i64,
    /// `log.cleaner.min.cleanable.ratio`.
    pub log_cleaner_min_cleanable_ratio: f64,
    /// `log.cleaner.backoff.ms`: pause between cleaner passes on each shard.
    pub log_cleaner_backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: bytes of each shard's cleaner key map.
    pub log_cleaner_dedupe_buffer_size: usize,
    /// `log.index.interval.bytes`.
    pub log_index_interval_bytes: u32,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// Every setting given in the config file or by `--set`, by canonical Kafka name, in the
    /// order given: DescribeConfigs reports these as STATIC_BROKER_CONFIG, the rest as
    /// DEFAULT_CONFIG.
    pub explicit: Vec<(String, String)>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: "127.0.0.1:9092".parse().expect("static address"),
            advertised_listener: None,
            listeners: vec![listeners::Listener {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
            }],
            advertised_listeners: Vec::new(),
            listener_security_protocol_map: ["SASL_SSL", "PLAINTEXT", "SSL", "SASL_PLAINTEXT"]
                .iter()
                .map(|p| (p.to_string(), p.to_string()))
                .collect(),
            controller_listener_names: Vec::new(),
            inter_broker_listener_name: None,
            process_roles: None,
            controller_quorum_voters: Vec::new(),
            controller_quorum_bootstrap_servers: Vec::new(),
            data_dir: "./tidelog-data".into(),
            shards: None,
            node_id: 1,
            broker_rack: None,
            default_replication_factor: 1,
            broker_session_timeout_ms: 9000,
            replica_lag_time_max_ms: REPLICA_LAG_TIME_MAX_MS_DEFAULT,
            offsets_topic_replication_factor: 3,
            transaction_state_log_num_partitions: 50,
            transaction_state_log_replication_factor: 3,
            transaction_max_timeout_ms: 900_000,
            transaction_abort_interval_ms: 10_000,
            transactional_id_expiration_ms: 604_800_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            unclean_leader_election_enable: false,
            leader_replication_throttled_rate: i64::MAX,
            follower_replication_throttled_rate: i64::MAX,
            cluster_id: None,
            num_partitions: 1,
            auto_create_topics_enable: true,
            log_retention_ms: RETENTION_MS_DEFAULT,
            log_retention_bytes: -1,
            log_segment_bytes: SEGMENT_BYTES_DEFAULT,
            log_roll_ms: 7 * 24 * 60 * 60 * 1000,
            log_flush_interval_messages: u64::MAX,
            log_flush_interval_ms: i64::MAX,
            log_retention_check_interval_ms: 300_000,
            message_max_bytes: MAX_MESSAGE_BYTES_DEFAULT,
            socket_request_max_bytes: SOCKET_REQUEST_MAX_BYTES_DEFAULT,
            max_connections: MAX_CONNECTIONS_DEFAULT,
            fd_budget: FdBudget::unlimited(),
            log_message_timestamp_type: TimestampType::CreateTime,
            log_message_timestamp_before_max_ms: MESSAGE_TIMESTAMP_BEFORE_MAX_MS_DEFAULT,
            log_message_timestamp_after_max_ms: MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            log_cleanup_policy: CleanupPolicy::DELETE,
            compression_type: CompressionType::Producer,
            log_cleaner_delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
            log_cleaner_min_compaction_lag_ms: MIN_COMPACTION_LAG_MS_DEFAULT,
            log_cleaner_min_cleanable_ratio: MIN_CLEANABLE_DIRTY_RATIO_DEFAULT,
            log_cleaner_backoff_ms: LOG_CLEANER_BACKOFF_MS_DEFAULT,
            log_cleaner_dedupe_buffer_size: LOG_CLEANER_DEDUPE_BUFFER_SIZE_DEFAULT,
            log_index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            min_insync_replicas: 1,
            explicit: Vec::new(),
        }
    }
}

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| ConfigError::invalid(format!("invalid value {value:?} for {key}")))
}

/// A LONG that Kafka's validator bounds below at 0 (`atLeast(0)`).
fn non_negative(key: &str, value: &str) -> Result<i64, ConfigError> {
    let v: i64 = parse(key, value)?;
    if v < 0 {
        return Err(ConfigError::invalid(format!(
            "{key} must be at least 0, got {value:?}"
        )));
    }
    Ok(v)
}

impl BrokerConfig {
    /// Applies one Kafka-named setting from the config file or `--set` (STATIC_BROKER_CONFIG).
    /// Unknown keys are an error naming the key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let setting = schema::setting_named(key)
            .ok_or_else(|| ConfigError::invalid(format!("unknown config {key:?}")))?;
        (setting.set)(self, key, value)?;
        self.explicit.retain(|(k, _)| k != setting.name);
        self.explicit
            .push((setting.name.to_string(), value.trim().to_string()));
        Ok(())
    }

    /// Applies one Kafka-named setting without recording it as given in the config file: how
    /// dynamic broker configs (AlterConfigs on the broker resource) are layered on top.
    pub fn set_value(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let setting = schema::setting_named(key)
            .ok_or_else(|| ConfigError::invalid(format!("unknown config {key:?}")))?;
        (setting.set)(self, key, value)
    }

    /// The value given explicitly (config file or `--set`) for a canonical Kafka name.
    pub fn explicit_value(&self, key: &str) -> Option<&str> {
        self.explicit
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Applies every setting of a TOML config file.
    pub fn apply_toml(&mut self, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e| ConfigError::invalid(format!("config file: {e}")))?;
        let mut flat = Vec::new();
        flatten_toml("", &toml::Value::Table(table), &mut flat);
        for (key, value) in flat {
            self.set(&key, &value)?;
        }
        Ok(())
    }

    /// `--listen ADDR`: moves the client listener (the first one not in
    /// `controller.listener.names`) to `ADDR`, keeping its name and the other listeners.
    pub fn override_client_listener(&mut self, addr: &str) -> Result<(), ConfigError> {
        let given = listeners::parse_listeners("--listen", addr)?;
        let [new] = given.as_slice() else {
            return Err(ConfigError::invalid(format!(
                "--listen takes one HOST:PORT, got {addr:?}"
            )));
        };
        let names = &self.controller_listener_names;
        match self.listeners.iter_mut().find(|l| !names.contains(&l.name)) {
            Some(client) => {
                client.host = new.host.clone();
                client.port = new.port;
            }
            None => self.listeners.insert(0, new.clone()),
        }
        // DescribeConfigs reports where the broker listens, as given on its command line.
        let rendered: Vec<String> = self
            .listeners
            .iter()
            .map(|l| format!("{}://{}:{}", l.name, l.host, l.port))
            .collect();
        self.explicit.retain(|(k, _)| k != "listeners");
        self.explicit
            .push(("listeners".to_string(), rendered.join(",")));
        Ok(())
    }

    /// Checks the settings that Kafka relates to each other (listeners, roles, the quorum) and
    /// derives what the broker uses from them. Call once every setting is in, before starting.
    pub fn resolve(&mut self) -> Result<(), ConfigError> {
        listeners::resolve(self)
    }

    /// Applies every setting of a Java properties file (Kafka's `server.properties`), in name
    /// order as for TOML, so that of synonyms the most precise (`log.retention.ms` after
    /// `.hours`) is applied last and wins, as in Kafka.
    pub fn apply_properties(&mut self, text: &str) -> Result<(), ConfigError> {
        let map = java_properties::read(text.as_bytes())
            .map_err(|e| ConfigError::invalid(format!("config file: {e}")))?;
        let sorted: std::collections::BTreeMap<_, _> = map.into_iter().collect();
        for (key, value) in sorted {
            self.set(&key, &value)?;
        }
        Ok(())
    }

    /// Whether this node is one of a cluster: `controller.quorum.voters` names several
    /// controllers, or controllers other than this node (a broker-only node). One voter that
    /// is this node (Kafka's quickstart), or none, is tidelog's single node.
    pub fn is_cluster(&self) -> bool {
        self.controller_quorum_voters.len() > 1
            || self
                .controller_quorum_voters
                .iter()
                .any(|v| v.id != self.node_id)
    }

    /// Whether this node serves clients: not a controller-only node.
    pub fn serves_clients(&self) -> bool {
        self.process_roles.is_none_or(|r| r.broker)
    }

    /// The address the controller listener binds: the first listener named in
    /// `controller.listener.names`.
    pub fn controller_listener(&self) -> Option<&listeners::Listener> {
        self.listeners
            .iter()
            .find(|l| self.controller_listener_names.contains(&l.name))
    }

    /// The number of shards to run: the configured count, else one per available core.
    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }
}

fn flatten_toml(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_toml(&key, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fd_budget_reserves_connections_and_the_broker_before_partitions() {
        // 20,000 descriptors, 2 shards, default max.connections: 96 for the broker, half of
        // the rest (9,952 < 10,000) for connections, 2 per partition of what remains.
        let b = FdBudget::new(20_000, 2, 10_000);
        assert_eq!(b.reserved_broker, 96);
        assert_eq!(b.connections_max, 9_952);
        assert_eq!(b.partitions_max, 4_976);
        assert!(b.refuse(4_976).is_none());
        let why = b.refuse(4_977).unwrap();
        assert!(why.contains("RLIMIT_NOFILE is 20000"), "{why}");
        // A low limit: connections get at most half of what the broker's reserve leaves.
        let b = FdBudget::new(1_024, 1, 10_000);
        assert_eq!(b.connections_max, (1_024 - 80) / 2);
        assert_eq!(b.partitions_max, (1_024 - 80 - 472) / 2);
        // A small max.connections leaves the rest to partitions.
        assert_eq!(
            FdBudget::new(20_000, 2, 1_000).partitions_max,
            (19_904 - 1_000) / 2
        );
        assert_eq!(FdBudget::new(u64::MAX, 4, 10), FdBudget::unlimited());
        assert_eq!(FdBudget::new(10, 4, 10).partitions_max, 0);
    }

    #[test]
    fn toml_dotted_and_quoted_keys_flatten_to_kafka_names() {
        let mut c = BrokerConfig::default();
        c.apply_toml("num.partitions = 3\n\"log.retention.hours\" = 2\nlisteners = \"PLAINTEXT://127.0.0.1:9999\"\n")
            .unwrap();
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.log_retention_ms, 2 * 3_600_000);
        c.resolve().unwrap();
        assert_eq!(c.listen.port(), 9999);
    }

    #[test]
    fn a_properties_file_applies_like_toml_with_the_most_precise_synonym_winning() {
        let mut c = BrokerConfig::default();
        let text = "# Kafka style\nlog.retention.ms=5000\nlog.retention.hours = 168\n\
                    num.partitions:4\nlisteners=PLAINTEXT://127.0.0.1:9998,\\\n  CONTROLLER://:9093\n\
                    controller.listener.names=CONTROLLER\n\
                    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n";
        c.apply_properties(text).unwrap();
        assert_eq!(c.num_partitions, 4);
        assert_eq!(c.log_retention_ms, 5000, "ms wins over hours, as in Kafka");
        c.resolve().unwrap();
        assert_eq!(c.listen, "127.0.0.1:9998".parse().unwrap());
        let mut bad = BrokerConfig::default();
        let err = bad.apply_properties("no.such.setting=1\n").unwrap_err();
        assert!(err.to_string().contains("no.such.setting"), "{err}");
    }

    #[test]
    fn unknown_key_and_bad_value_are_named() {
        let mut c = BrokerConfig::default();
        assert!(c
            .set("no.such.key", "1")
            .unwrap_err()
            .message()
            .contains("no.such.key"));
        assert!(c
            .set("num.partitions", "x")
            .unwrap_err()
            .message()
            .contains("num.partitions"));
    }
}

//! tidelog: a thread-per-core, Kafka-compatible streaming broker on io_uring.
//!
//! # Layout
//!
//! - [`server`]: `tidelog serve`: one pinned glommio executor per shard, start-up and shutdown.
//! - [`shard`], [`router`], [`partitions`]: the thread-per-core core. A shard is a small struct
//!   of services (its partitions, its group coordinator, its intake, on the metadata shard the
//!   metadata controller) plus its metadata copy; `router::shard_for` decides
//!   ownership; `Router::invoke_on` runs work on another shard over glommio's channel mesh, and
//!   `Router::scatter_gather` sends a request's pieces to their owners and gathers the answers
//!   in request order. [`partitions`] is the owner shard's partition service (append, which
//!   wakes waiting fetches; read-or-watch; offsets; delete records) and the partition
//!   load/unload hook that services such as the group coordinator listen to. Nothing below
//!   `shard` names it (`tests/module_graph.rs`).
//! - [`intake`]: a shard's count of what its clients have handed it (connections, requests,
//!   bytes in flight), with the bounds on each; every listener on the shard counts into it.
//! - [`net`]: the accept loop, the per-connection request loop, `sendfile` for record bytes.
//! - [`api`]: one handler per Kafka API, a file each; [`api::registry`] lists every API with
//!   its versions and handler and drives the version check, dispatch and ApiVersions.
//! - [`protocol`]: the Kafka wire protocol without I/O: frames, headers, request bodies, the
//!   zero-copy Fetch response layout, the RecordBatch v2 codec ([`protocol::batch`]) and the
//!   client side of the consumer group protocol ([`protocol::consumer_group`]), both shared by
//!   the broker, the CLI client and loadgen. Message bodies come from `kafka-protocol`.
//! - [`admin`], [`metadata`]: topics, ids and configs; changes applied on the metadata shard
//!   (under `metadata::controller::Controller`, which also hands out producer ids),
//!   persisted, and broadcast as immutable images.
//! - [`quorum`]: the metadata quorum on raft-rs: a controller's Raft node applying metadata
//!   records to its image, its durable log, and its TCP transport on glommio; tested under a
//!   deterministic lossy network and over loopback (not yet run by `serve`).
//! - [`client`]: a small blocking Kafka client (std `TcpStream`) for the CLI and tests.
//! - [`group`]: the classic consumer-group coordinator and committed offsets (in the internal,
//!   compacted `__consumer_offsets` topic).
//! - [`log`]: the per-partition commit log: segments, indexes, durability, recovery, retention
//!   and idempotent-producer state. Owned by one shard; no locks.
//! - [`config`]: every limit and every Kafka-named setting, in one place.
//! - [`durable`]: CRC-framed append logs and atomically replaced files for the broker's own
//!   files (metadata log, snapshots, producer ids, the quorum's Raft log).
//! - [`error`]: the wire error codes (Kafka's) and their mapping.
//! - [`runtime`]: locked memory for io_uring and executor construction.
//! - [`cli`]: the Kafka-console-style client commands (`tidelog topic|produce|consume`).
//! - [`alloc`]: the global allocator; a second line behind the count checks of the vendored
//!   `kafka-protocol` against hostile array counts.
//! - [`util`]: small async helpers.
//! - [`tune`]: `tidelog tune --check`, the host's OS settings against tuning.md.
pub mod admin;
pub mod alloc;
pub mod api;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod durable;
pub mod error;
pub mod fetcher;
pub mod group;
pub mod intake;
pub mod log;
pub mod metadata;
pub mod net;
pub mod partitions;
pub mod protocol;
pub mod quorum;
pub mod replica;
pub mod router;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod tune;
pub mod txn;
pub mod util;

/// Ends the process on an error the broker cannot recover from (a shard gone or dropping a
/// call). Exiting beats panicking one shard and leaving its siblings half alive. A partition that
/// cannot be opened is not fatal: it stays offline (NOT_LEADER_OR_FOLLOWER), the error is
/// logged, and CreateTopics answers KAFKA_STORAGE_ERROR for its topic.
pub fn fatal(msg: &str) -> ! {
    tracing::error!("fatal: {msg}");
    eprintln!("tidelog: fatal: {msg}");
    std::process::exit(70)
}

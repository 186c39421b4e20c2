//! tidelog: a thread-per-core, Kafka-compatible streaming broker on io_uring.
//!
//! # Layout
//!
//! - [`cli`]: the Kafka-console-style client commands (`tidelog topic|produce|consume`).
//! - [`config`]: every limit and every Kafka-named setting, in one place.
//! - [`error`]: the wire error codes (Kafka's) and the internal error type, mapped in one place.
//! - [`log`]: the per-partition commit log: segments, indexes, durability, recovery, retention
//!   and idempotent-producer state. Owned by one shard; no locks.
//! - [`protocol`]: the Kafka wire protocol without I/O: frames, headers, the API table.
//! - [`runtime`]: locked memory for io_uring and executor construction.
pub mod cli;
pub mod config;
pub mod error;
pub mod log;
pub mod protocol;
pub mod runtime;

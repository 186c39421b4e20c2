//! tidelog: a thread-per-core, Kafka-compatible streaming broker on io_uring.
//!
//! # Layout
//!
//! - [`cli`]: the Kafka-console-style client commands (`tidelog topic|produce|consume`).
//! - [`client`]: a small blocking Kafka client (std `TcpStream`) for the CLI and tests.
//! - [`config`]: every limit and every Kafka-named setting, in one place.
//! - [`error`]: the wire error codes (Kafka's) and the internal error type, mapped in one place.
//! - [`log`]: the per-partition commit log: segments, indexes, durability, recovery, retention
//!   and idempotent-producer state. Owned by one shard; no locks.
//! - [`runtime`]: locked memory for io_uring and executor construction.
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod log;
pub mod runtime;

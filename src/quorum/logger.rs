//! raft-rs logs through `slog`; the broker logs through `tracing`. This drain forwards each
//! slog record to a tracing event at the same level, its key-values appended as `k=v`, so Raft's
//! elections and step-downs show in the broker's log (`RUST_LOG=tidelog::quorum=debug`).

use std::fmt::Write;

use slog::{Drain, Level, OwnedKVList, Record, Serializer, KV};

struct ToTracing;

struct Pairs(String);

impl Serializer for Pairs {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl Drain for ToTracing {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut pairs = Pairs(String::new());
        let _ = record.kv().serialize(record, &mut pairs);
        let _ = values.serialize(record, &mut pairs);
        let msg = record.msg();
        let kv = pairs.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!("raft: {msg}{kv}"),
            Level::Warning => tracing::warn!("raft: {msg}{kv}"),
            Level::Info => tracing::info!("raft: {msg}{kv}"),
            Level::Debug => tracing::debug!("raft: {msg}{kv}"),
            Level::Trace => tracing::trace!("raft: {msg}{kv}"),
        }
        Ok(())
    }
}

/// A slog logger for node `id` whose records go to tracing.
pub fn to_tracing(id: u64) -> slog::Logger {
    slog::Logger::root(ToTracing, slog::o!("node" => id))
}

//! The per-partition commit log (being built on the `storage` branch).

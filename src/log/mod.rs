//! The per-partition commit log (to be filled by the storage work).

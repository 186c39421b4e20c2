//! The Kafka wire protocol, sans I/O: framing, request headers, request body types, response
//! encoding, the zero-copy Fetch response layout, the record batch codec and the client side of
//! the classic consumer group protocol. Which APIs and versions are served is the API
//! registry's (`api::registry`).
//!
//! Nothing here touches a socket or an executor, so every function can be tested (and fuzzed)
//! on bytes alone. Message bodies come from the `kafka-protocol` crate.

pub mod batch;
pub mod bodies;
pub mod consumer_group;
pub mod fetch;
pub mod frame;
pub mod recompress;
pub mod request;
pub mod response;

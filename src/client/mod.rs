//! A small blocking Kafka client over `std::net::TcpStream`, for the CLI and for tests.
//!
//! It speaks to tidelog and to any Kafka-compatible broker. Every message type comes from the
//! `kafka-protocol` crate, the record batch layout from [`crate::protocol::batch`]; this module
//! adds framing, version negotiation, routing to partition leaders and readable errors.
//!
//! # Layout
//!
//! - [`conn`]: one connection: framing, correlation ids, the ApiVersions handshake.
//! - [`error`]: [`ClientError`], with Kafka error codes shown by their Kafka names.
//! - [`admin`]: Metadata, CreateTopics, DeleteTopics, DescribeConfigs.
//! - [`configs`]: IncrementalAlterConfigs, CreatePartitions, DeleteRecords.
//! - [`produce`]: Produce (acks 0/1/-1) and Kafka's default key partitioner.
//! - [`fetch`]: Fetch, ListOffsets and record-batch decoding.
//! - [`groups`]: FindCoordinator, ListGroups, DescribeGroups, DeleteGroups, OffsetFetch,
//!   OffsetCommit.
//! - [`membership`]: JoinGroup, SyncGroup, Heartbeat, LeaveGroup; the requests, the consumer
//!   protocol's payloads and the range assignor come from [`crate::protocol::consumer_group`].
//!
//! The client is blocking and sends one request at a time per connection: it serves people at
//! a terminal and tests, not throughput (that is `loadgen`'s job).

pub mod admin;
pub mod configs;
pub mod conn;
pub mod error;
pub mod fetch;
pub mod groups;
pub mod membership;
pub mod produce;
pub mod transactions;

use std::collections::HashMap;

pub use admin::{TopicInfo, TopicSpec};
pub use conn::Connection;
pub use error::{ClientError, Result};
pub use fetch::{FetchedRecord, OffsetSpec};
pub use produce::{Acks, ProduceRecord};

/// The node id under which the bootstrap connection is kept. Real node ids are `>= 0`.
const BOOTSTRAP_NODE: i32 = -1;

/// A client of one Kafka cluster, reached through one bootstrap address.
pub struct Client {
    bootstrap: String,
    client_id: String,
    /// Open connections by node id; [`BOOTSTRAP_NODE`] is the bootstrap connection.
    conns: HashMap<i32, Connection>,
    /// `HOST:PORT` of each broker, from the latest Metadata response.
    brokers: HashMap<i32, String>,
}

impl Client {
    /// Connects to the bootstrap broker and negotiates API versions.
    ///
    /// Fails fast with [`ClientError::Unreachable`] when nothing listens there.
    pub fn connect(bootstrap: &str) -> Result<Self> {
        let client_id = "tidelog-cli".to_owned();
        let conn = Connection::connect(bootstrap, &client_id)?;
        Ok(Client {
            bootstrap: bootstrap.to_owned(),
            client_id,
            conns: HashMap::from([(BOOTSTRAP_NODE, conn)]),
            brokers: HashMap::new(),
        })
    }

    /// The bootstrap connection, for cluster-wide requests (Metadata, admin APIs).
    pub fn any(&mut self) -> Result<&mut Connection> {
        self.node(BOOTSTRAP_NODE)
    }

    /// The connection to node `node_id`, opened on first use.
    ///
    /// A cluster of one broker is reached through the bootstrap address whatever it advertises:
    /// a broker listening on `0.0.0.0` or behind a port mapping may advertise an address that
    /// does not route from here, and the bootstrap address demonstrably does.
    pub fn node(&mut self, node_id: i32) -> Result<&mut Connection> {
        let key = if self.brokers.len() <= 1 || node_id < 0 {
            BOOTSTRAP_NODE
        } else {
            node_id
        };
        if !self.conns.contains_key(&key) {
            let addr = if key == BOOTSTRAP_NODE {
                self.bootstrap.clone()
            } else {
                self.brokers.get(&key).cloned().ok_or_else(|| {
                    ClientError::Other(format!("broker {key} is not in the cluster metadata"))
                })?
            };
            let conn = Connection::connect(&addr, &self.client_id)?;
            self.conns.insert(key, conn);
        }
        Ok(self.conns.get_mut(&key).expect("inserted above"))
    }

    /// Drops the connection to `node_id` after an I/O error, so the next request reconnects.
    pub fn forget(&mut self, node_id: i32) {
        let key = if self.brokers.len() <= 1 || node_id < 0 {
            BOOTSTRAP_NODE
        } else {
            node_id
        };
        self.conns.remove(&key);
    }
}

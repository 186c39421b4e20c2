//! A broker's membership of a cluster (issue 12): the metadata quorum it runs, and the handle
//! every shard uses to propose metadata changes and to ask who the active controller is.
//!
//! A node is in a cluster when `controller.quorum.voters` names several controllers (or others
//! than itself). A controller (`process.roles` with `controller`) runs the quorum
//! ([`crate::quorum`], raft-rs) on the metadata shard, on its CONTROLLER listener; a broker-only
//! node follows the controllers without a vote (`quorum::observer`). Either way the applied
//! images reach every shard as they do on a single node (`server` installs them). Any shard proposes through
//! [`Cluster::propose`]; a follower's proposal is forwarded to the leader by Raft itself, so a
//! broker never needs to find the active controller to change metadata.
//!
//! What the image says about the cluster, every node derives the same way from it:
//! registered brokers and whether they are fenced, each partition's replicas and leader
//! (`MetadataImage::leader`). A broker registers itself at start ([`register_record`]); the
//! active controller fences one it has not heard from for `broker.session.timeout.ms`
//! (`quorum::leases`).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::BrokerConfig;
use crate::metadata::records::MetadataRecord;
use crate::metadata::MetadataImage;
use crate::quorum::transport::{self, Changes, Command, ProposeError, Status, StatusBoard};
use crate::quorum::QuorumNode;

/// Applied entries between two snapshots of the metadata log.
const SNAPSHOT_ENTRIES: u64 = 1000;
/// How long [`Cluster::propose`] keeps retrying while no leader is known (an election).
const NO_LEADER_WAIT: Duration = Duration::from_secs(15);
/// Between two tries while no leader is known.
const NO_LEADER_RETRY: Duration = Duration::from_millis(100);

/// The handle every shard holds.
pub struct Cluster {
    pub node_id: i32,
    board: Arc<StatusBoard>,
    commands: flume::Sender<Command>,
}

/// What the metadata shard needs to take part in the quorum: built before the shards start, so
/// that a wrong setting or a busy port stops the start with a readable line.
pub struct QuorumStart {
    role: Role,
    /// The controllers this node talks to, by id.
    pub peers: BTreeMap<u64, SocketAddr>,
    pub commands: flume::Receiver<Command>,
    pub board: Arc<StatusBoard>,
    /// Every newly applied image, to install on the shards.
    pub images: flume::Receiver<Arc<MetadataImage>>,
    pub timing: transport::ControllerTiming,
}

/// A voter runs Raft on its controller listener; a broker-only node observes the voters.
enum Role {
    Voter {
        node: Box<QuorumNode>,
        listener: std::net::TcpListener,
    },
    Observer {
        me: u64,
        cluster_id: String,
    },
}

impl QuorumStart {
    /// Takes part in the quorum until the command channel closes (every [`Cluster`] handle
    /// dropped).
    pub async fn run(self) -> Result<(), String> {
        match self.role {
            Role::Voter { node, listener } => {
                // SAFETY: a descriptor bound by `open` and owned by nothing else.
                let listener = unsafe {
                    use std::os::fd::{FromRawFd, IntoRawFd};
                    glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd())
                };
                transport::run(
                    *node,
                    listener,
                    self.peers,
                    self.commands,
                    self.board,
                    self.timing,
                )
                .await
            }
            Role::Observer { me, cluster_id } => {
                crate::quorum::observer::observe(
                    me,
                    &cluster_id,
                    self.peers,
                    self.commands,
                    self.board,
                )
                .await
            }
        }
    }
}

impl Cluster {
    /// Opens this node's share of the quorum: its durable Raft log under the data directory,
    /// its controller listener bound, its peers resolved. `cluster_id` is the formatted data
    /// directory's.
    pub fn open(
        config: &BrokerConfig,
        cluster_id: &str,
    ) -> Result<(Arc<Cluster>, QuorumStart), String> {
        let me = config.node_id;
        let voter = config.controller_quorum_voters.iter().any(|v| v.id == me);
        let mut peers = BTreeMap::new();
        for v in config
            .controller_quorum_voters
            .iter()
            .filter(|v| v.id != me)
        {
            peers.insert(v.id as u64, resolve(&v.host, v.port)?);
        }
        let voters: Vec<u64> = config
            .controller_quorum_voters
            .iter()
            .map(|v| v.id as u64)
            .collect();
        let image = MetadataImage {
            cluster_id: cluster_id.to_string(),
            ..MetadataImage::default()
        };
        let role = if voter {
            let listener = config.controller_listener().ok_or(
                "a controller needs a controller listener: name it in listeners and \
                 controller.listener.names",
            )?;
            let listener = bind_listener(resolve(&listener.host, listener.port)?)?;
            let dir = config.data_dir.join("__cluster_metadata").join("raft");
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let node = QuorumNode::open(&dir, me as u64, &voters, image, SNAPSHOT_ENTRIES)?;
            if node.image().cluster_id != cluster_id {
                return Err(format!(
                    "invalid cluster.id: the metadata log in {} belongs to cluster {}, not \
                     {cluster_id}",
                    dir.display(),
                    node.image().cluster_id
                ));
            }
            Role::Voter {
                node: Box::new(node),
                listener,
            }
        } else {
            // A broker-only node keeps no metadata log: it takes the controllers' images.
            Role::Observer {
                me: me as u64,
                cluster_id: cluster_id.to_string(),
            }
        };
        let (images_tx, images) = flume::unbounded();
        let board = Arc::new(StatusBoard::with_images(
            Arc::new(Changes::default()),
            images_tx,
        ));
        let (commands_tx, commands) = flume::unbounded();
        let cluster = Arc::new(Cluster {
            node_id: me,
            board: board.clone(),
            commands: commands_tx,
        });
        let start = QuorumStart {
            role,
            peers,
            commands,
            board,
            images,
            timing: transport::ControllerTiming {
                session: Duration::from_millis(config.broker_session_timeout_ms),
                rebalance: config
                    .auto_leader_rebalance_enable
                    .then(|| Duration::from_secs(config.leader_imbalance_check_interval_seconds)),
                unclean: config.unclean_leader_election_enable,
            },
        };
        Ok((cluster, start))
    }

    /// The active controller as this node knows it, or `None` during an election.
    pub fn controller(&self) -> Option<i32> {
        match self.board.leader() {
            0 => None,
            id => Some(id as i32),
        }
    }

    /// The quorum's state as this node last published it.
    pub fn status(&self) -> Status {
        self.board.get()
    }

    /// Proposes `records` as one change and waits until it is applied on this node: the image
    /// then, or why not. While no leader is known it retries for a while; a change lost to an
    /// election or refused (it no longer fits the image) is reported, not retried, because
    /// only the caller can decide it again.
    pub async fn propose(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, ProposeError> {
        let deadline = Instant::now() + NO_LEADER_WAIT;
        loop {
            let (tx, rx) = flume::bounded(1);
            self.commands
                .send_async(Command::Propose(records.clone(), tx))
                .await
                .map_err(|_| ProposeError::Stopped)?;
            match rx.recv_async().await {
                Ok(Err(ProposeError::NotLeader { leader: 0 })) if Instant::now() < deadline => {
                    glommio::timer::sleep(NO_LEADER_RETRY).await;
                }
                Ok(answer) => return answer,
                Err(_) => return Err(ProposeError::Stopped),
            }
        }
    }
}

/// The record that registers this broker: its advertised client endpoint and rack.
pub fn register_record(config: &BrokerConfig, host: String, port: i32) -> MetadataRecord {
    MetadataRecord::RegisterBroker {
        id: config.node_id,
        host,
        port,
        rack: config.broker_rack.clone(),
    }
}

/// Whether `image` already holds `record`'s registration as it is.
pub fn registered(image: &MetadataImage, record: &MetadataRecord) -> bool {
    let MetadataRecord::RegisterBroker {
        id,
        host,
        port,
        rack,
    } = record
    else {
        return false;
    };
    image
        .brokers
        .get(id)
        .is_some_and(|b| &b.host == host && b.port == *port && &b.rack == rack && !b.shutting_down)
}

/// Replicas for partitions `first..first + count` over the live brokers, Kafka's way: round
/// robin from `start`, each partition's replicas the next brokers after its first, over a
/// broker list that alternates racks when racks are set (so a partition's replicas land on
/// different racks while there are racks enough). `rf` must not exceed the live brokers.
pub fn place(
    image: &MetadataImage,
    first: i32,
    count: i32,
    rf: usize,
    start: usize,
) -> Vec<Vec<i32>> {
    let brokers = rack_alternated(image);
    let n = brokers.len();
    if n == 0 {
        return Vec::new();
    }
    (first..first + count)
        .map(|p| {
            let lead = (start + p as usize) % n;
            (0..rf).map(|r| brokers[(lead + r) % n]).collect()
        })
        .collect()
}

/// The live brokers, ordered so that consecutive ones are on different racks where possible:
/// the first of each rack (racks in name order), then the second of each, and so on; brokers
/// without a rack count as one rack.
fn rack_alternated(image: &MetadataImage) -> Vec<i32> {
    let mut racks: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for b in image.live_brokers() {
        racks.entry(b.rack.as_deref()).or_default().push(b.id);
    }
    let deepest = racks.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|i| racks.values().filter_map(move |r| r.get(i).copied()))
        .collect()
}

/// A broker's advertised client endpoint as an address to connect to.
pub fn resolve_endpoint(host: &str, port: i32) -> Result<SocketAddr, String> {
    let port = u16::try_from(port).map_err(|_| format!("port {port} is out of range"))?;
    resolve(host, port)
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{host}:{port} has no IPv4 address"))
}

/// Binds the controller listener. A node restarted at once may find its port still held by
/// the previous process's connections, closed on its side but not yet by a peer (FIN-WAIT-2:
/// `listen` refuses the port even with SO_REUSEADDR until they go): it tries again for
/// [`BIND_RETRY_FOR`] before it gives up.
fn bind_listener(addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |e: std::io::Error| format!("cannot listen on the controller listener {addr}: {e}");
    let deadline = std::time::Instant::now() + BIND_RETRY_FOR;
    let mut warned = false;
    loop {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(err)?;
        s.set_reuse_address(true).map_err(err)?;
        let bound = s
            .bind(&addr.into())
            .and_then(|()| s.listen(crate::config::LISTEN_BACKLOG));
        match bound {
            Ok(()) => return Ok(s.into()),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(%addr, "the controller listener's port is still held by closing connections; trying again for up to {} s", BIND_RETRY_FOR.as_secs());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(err(e)),
        }
    }
}

/// How long a start waits for the controller listener's port to be free.
const BIND_RETRY_FOR: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::BrokerMeta;

    fn image(brokers: &[(i32, Option<&str>, bool)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for &(id, rack, fenced) in brokers {
            image.brokers.insert(
                id,
                BrokerMeta {
                    id,
                    host: format!("127.0.0.{id}"),
                    port: 9092,
                    rack: rack.map(str::to_string),
                    fenced,
                    shutting_down: false,
                },
            );
        }
        image
    }

    #[test]
    fn partitions_go_round_robin_over_live_brokers() {
        let image = image(&[(1, None, false), (2, None, true), (3, None, false)]);
        assert_eq!(
            place(&image, 0, 4, 1, 0),
            vec![vec![1], vec![3], vec![1], vec![3]]
        );
        assert_eq!(place(&image, 4, 2, 2, 1), vec![vec![3, 1], vec![1, 3]]);
        assert!(place(&MetadataImage::default(), 0, 3, 1, 0).is_empty());
    }

    #[test]
    fn replicas_alternate_racks() {
        let image = image(&[
            (1, Some("a"), false),
            (2, Some("a"), false),
            (3, Some("b"), false),
            (4, Some("b"), false),
        ]);
        for replicas in place(&image, 0, 8, 2, 3) {
            let racks: Vec<_> = replicas
                .iter()
                .map(|id| image.brokers[id].rack.clone())
                .collect();
            assert_ne!(racks[0], racks[1], "{replicas:?}");
        }
    }
}

//! Three controllers on three executors, talking TCP on loopback through the real transport:
//! they elect a leader, apply proposals everywhere, and when the leader stops, the other two
//! elect another and go on. Real time (100 ms ticks): every wait is for a condition, woken by
//! the nodes' published status changes (`transport::Changes`), under a generous deadline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::transport::{run, Changes, Command, ProposeError, Status, StatusBoard};
use super::*;

const WAIT: Duration = Duration::from_secs(30);
/// No broker registers in these tests, so no lease is ever decided.
const SESSION: Duration = Duration::from_secs(9);

struct Running {
    id: u64,
    addr: SocketAddr,
    commands: Option<flume::Sender<Command>>,
    status: Arc<StatusBoard>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Running {
    fn status(&self) -> Status {
        self.status.get()
    }

    fn propose(&self, records: Vec<MetadataRecord>) -> Result<(), ProposeError> {
        let (tx, rx) = flume::bounded(1);
        let commands = self.commands.as_ref().expect("running");
        commands.send(Command::Propose(records, tx)).unwrap();
        rx.recv_timeout(WAIT).expect("an answer").map(|_| ())
    }

    fn stop(&mut self) {
        self.commands = None;
        let result = self.thread.take().unwrap().join().unwrap();
        assert_eq!(result, Ok(()));
    }
}

/// The nodes, and the change counter they all publish to.
struct Cluster {
    nodes: Vec<Running>,
    changes: Arc<Changes>,
}

impl std::ops::Deref for Cluster {
    type Target = Vec<Running>;
    fn deref(&self) -> &Vec<Running> {
        &self.nodes
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Vec<Running> {
        &mut self.nodes
    }
}

fn start(n: u64) -> Cluster {
    let changes = Arc::new(Changes::default());
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let voters: Vec<u64> = (1..=n).collect();
    let nodes = listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let id = i as u64 + 1;
            let peers: BTreeMap<u64, SocketAddr> = voters
                .iter()
                .filter(|&&p| p != id)
                .map(|&p| (p, addrs[p as usize - 1]))
                .collect();
            let (tx, rx) = flume::unbounded();
            let status = Arc::new(StatusBoard::new(changes.clone()));
            let shown = status.clone();
            let voters = voters.clone();
            let fd = listener.into_raw_fd();
            let thread = std::thread::spawn(move || {
                crate::runtime::block_on(async move {
                    // SAFETY: a listening socket this thread now owns alone.
                    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
                    let image = MetadataImage {
                        cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
                        ..MetadataImage::default()
                    };
                    let node = QuorumNode::new(id, &voters, image, 50)?;
                    let timing = super::transport::ControllerTiming {
                        session: SESSION,
                        rebalance: None,
                        unclean: false,
                    };
                    run(node, listener, peers, rx, shown, timing).await
                })
            });
            Running {
                id,
                addr: addrs[i],
                commands: Some(tx),
                status,
                thread: Some(thread),
            }
        })
        .collect();
    Cluster { nodes, changes }
}

/// Waits until `f` holds, checking it again whenever a node publishes a change.
fn until<T>(changes: &Changes, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = changes.count();
        if let Some(v) = f() {
            return v;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {what}");
        changes.wait_past(seen, left);
    }
}

fn topic(n: u64) -> MetadataRecord {
    MetadataRecord::Topic {
        name: format!("t{n}"),
        id: uuid::Uuid::from_u64_pair(n, n),
        partitions: 1,
        configs: BTreeMap::new(),
    }
}

/// Proposes through whichever node leads, following NotLeader answers, until it applies.
fn propose(cluster: &Cluster, record: MetadataRecord) {
    let nodes = &cluster.nodes;
    until(&cluster.changes, "the proposal to apply", || {
        let leader = nodes
            .iter()
            .filter(|n| n.commands.is_some())
            .find(|n| n.status().is_leader)?;
        match leader.propose(vec![record.clone()]) {
            Ok(()) => Some(()),
            Err(ProposeError::NotLeader { .. } | ProposeError::Lost) => None,
            Err(e) => panic!("{e:?}"),
        }
    });
}

#[test]
fn three_controllers_over_tcp_replicate_and_go_on_without_their_leader() {
    let mut nodes = start(3);
    for n in 1..=5 {
        propose(&nodes, topic(n));
    }
    until(&nodes.changes, "every node to apply the five", || {
        nodes
            .iter()
            .all(|n| n.status().image.topics.len() == 5)
            .then_some(())
    });
    let (old, old_term) = nodes
        .iter()
        .map(|n| (n.id, n.status()))
        .find(|(_, s)| s.is_leader)
        .map(|(id, s)| (id, s.term))
        .unwrap();
    nodes[old as usize - 1].stop();
    let new = until(&nodes.changes, "a new leader", || {
        nodes
            .iter()
            .filter(|n| n.commands.is_some())
            .map(Running::status)
            .find(|s| s.is_leader && s.term > old_term)
            .map(|s| s.leader)
    });
    assert_ne!(new, old);
    propose(&nodes, topic(6));
    until(&nodes.changes, "both survivors to apply the sixth", || {
        nodes
            .iter()
            .filter(|n| n.commands.is_some())
            .all(|n| n.status().image.topics.len() == 6)
            .then_some(())
    });
    // A follower's proposal reaches the leader (Raft forwards it) and its answer comes when
    // the entry is applied on the follower; the same topic again no longer fits and is
    // refused, on every node alike.
    let follower = nodes
        .iter()
        .find(|n| n.commands.is_some() && n.id != new)
        .unwrap();
    assert_eq!(follower.propose(vec![topic(7)]), Ok(()));
    assert!(matches!(
        follower.propose(vec![topic(7)]),
        Err(ProposeError::Refused(_))
    ));
    until(
        &nodes.changes,
        "both survivors to apply the seventh",
        || {
            nodes
                .iter()
                .filter(|n| n.commands.is_some())
                .all(|n| n.status().image.topics.len() == 7)
                .then_some(())
        },
    );
    for n in nodes.iter_mut().filter(|n| n.commands.is_some()) {
        n.stop();
    }
}

/// A controller listener takes bytes from anyone: an oversized length, a frame of no known
/// kind, a connection closed in the middle of a frame, a proposal from a connection that never
/// said who it is, and a frame only controllers send each close only that connection; the
/// quorum goes on.
#[test]
fn hostile_bytes_on_the_controller_listener_close_that_connection_only() {
    use std::io::{Read, Write};
    let mut nodes = start(3);
    propose(&nodes, topic(1));
    for n in nodes.iter() {
        for bytes in [
            vec![0xff, 0xff, 0xff, 0xff],
            [&5u32.to_be_bytes()[..], &[0xde, 0xad, 0xbe, 0xef, 0xff]].concat(),
            [&100u32.to_be_bytes()[..], &[1, 2, 3]].concat(),
            // A proposal before saying who it is, and frames only controllers send.
            super::frames::encode(&super::frames::Frame::Propose {
                tag: vec![1],
                batch: vec![0, 0, 0, 0],
            }),
            super::frames::encode(&super::frames::Frame::Answer {
                tag: vec![],
                outcome: super::frames::Outcome::Applied,
            }),
        ] {
            let mut c = std::net::TcpStream::connect(n.addr).unwrap();
            c.write_all(&bytes).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            c.set_read_timeout(Some(WAIT)).unwrap();
            // The node closes its end: read sees EOF (or a reset), never a hang.
            let mut buf = [0u8; 1];
            assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));
        }
    }
    propose(&nodes, topic(2));
    until(&nodes.changes, "every node to apply both", || {
        nodes
            .iter()
            .all(|n| n.status().image.topics.len() == 2)
            .then_some(())
    });
    for n in nodes.iter_mut() {
        n.stop();
    }
}

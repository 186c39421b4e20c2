//! The controllers' transport and the driver of one [`QuorumNode`], on glommio like the rest
//! of the broker.
//!
//! [`run`] owns the node on one executor: it ticks it every [`TICK`], steps it with messages
//! from the other controllers, takes proposals from a flume channel (so any thread or shard
//! can propose), runs the ready loop after each event, hands Raft's messages to one writer task
//! per peer, and answers each proposal when its entry is applied (or lost to an election).
//! Connections: every node listens on its CONTROLLER listener and reads frames from whoever
//! connects; it dials each peer for its own outgoing messages. A frame is `len: u32` then a
//! raft `Message` in protobuf; a frame over [`FRAME_MAX_BYTES`] or one that does not parse
//! closes that connection (a peer's bytes are no more trusted than a client's).
//!
//! A write that fails drops the connection and its message (Raft resends), reports the peer
//! unreachable, and, for a snapshot, reports the snapshot failed: raft-rs sends nothing more to
//! a follower whose snapshot is outstanding until told (see `QuorumNode::report_snapshot`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

use super::{NotTaken, ProposalId, QuorumNode};
use crate::metadata::records::MetadataRecord;
use crate::metadata::MetadataImage;

/// How often the Raft clocks tick (election after 10-20 ticks, heartbeats every 2).
pub const TICK: Duration = Duration::from_millis(100);
/// The largest frame a controller accepts (a snapshot of the image is the largest message).
pub const FRAME_MAX_BYTES: usize = 64 << 20;
/// Waits between reconnection attempts to a peer.
const RECONNECT_WAIT: Duration = Duration::from_millis(200);
/// How long a connection attempt to a peer may take (a blackholed address).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a proposal did not apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// Not the leader (or not ready yet): ask `leader` (0: unknown).
    NotLeader { leader: u64 },
    /// Lost to an election before it committed; nothing of it applied. Retry.
    Lost,
    /// Applied nowhere: its records did not fit the image.
    Refused(String),
    /// The node stopped.
    Stopped,
}

/// What other threads may ask of a running node.
pub enum Command {
    /// Propose records; the answer comes when the entry is applied.
    Propose(Vec<MetadataRecord>, flume::Sender<Result<(), ProposeError>>),
}

/// What a running node shows other threads.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub term: u64,
    pub leader: u64,
    pub is_leader: bool,
    pub applied_index: u64,
    pub image: MetadataImage,
}

/// A node's [`Status`], published when it changes, and a wake-up for whoever waits on a
/// change: `changes` may be shared by several nodes, so one waiter sees any of them change.
pub struct StatusBoard {
    status: Mutex<Status>,
    changes: Arc<Changes>,
}

/// A counter bumped on every published change, with a condition variable to wait on it.
#[derive(Default)]
pub struct Changes {
    seen: Mutex<u64>,
    changed: Condvar,
}

impl Changes {
    /// The changes published so far.
    pub fn count(&self) -> u64 {
        *self.seen.lock().expect("changes lock")
    }

    /// Waits until more than `seen` changes have been published, or `timeout` passes.
    pub fn wait_past(&self, seen: u64, timeout: Duration) {
        let guard = self.seen.lock().expect("changes lock");
        let _ = self
            .changed
            .wait_timeout_while(guard, timeout, |n| *n <= seen)
            .expect("changes lock");
    }

    fn bump(&self) {
        *self.seen.lock().expect("changes lock") += 1;
        self.changed.notify_all();
    }
}

impl StatusBoard {
    pub fn new(changes: Arc<Changes>) -> StatusBoard {
        StatusBoard {
            status: Mutex::new(Status::default()),
            changes,
        }
    }

    pub fn get(&self) -> Status {
        self.status.lock().expect("status lock").clone()
    }

    /// Publishes the node's state if it differs from the last published.
    fn publish(&self, node: &QuorumNode) {
        let (term, leader) = node.term_and_leader();
        let mut s = self.status.lock().expect("status lock");
        let now = (term, leader, node.is_leader(), node.applied_index());
        if (s.term, s.leader, s.is_leader, s.applied_index) == now {
            return;
        }
        if s.applied_index != node.applied_index() {
            s.image = node.image().clone();
        }
        (s.term, s.leader, s.is_leader, s.applied_index) = now;
        drop(s);
        self.changes.bump();
    }
}

enum Inbound {
    Message(Message),
    /// A writer could not deliver to `to` (`snapshot`: the lost message was a snapshot).
    Undelivered {
        to: u64,
        snapshot: bool,
    },
    /// A snapshot message was written to `to`.
    SnapshotSent {
        to: u64,
    },
}

enum Event {
    Tick,
    Inbound(Inbound),
    Command(Command),
    Stop,
}

/// Runs `node` until `commands` closes: the node's driver, its listener's reader tasks and a
/// writer task per peer in `peers` (id -> CONTROLLER address). Returns the error that stopped
/// it, if its storage failed.
pub async fn run(
    mut node: QuorumNode,
    listener: TcpListener,
    peers: BTreeMap<u64, SocketAddr>,
    commands: flume::Receiver<Command>,
    status: Arc<StatusBoard>,
) -> Result<(), String> {
    let (inbox_tx, inbox) = local_channel::new_unbounded::<Inbound>();
    let inbox_tx = Rc::new(inbox_tx);
    let accept = glommio::spawn_local(accept_loop(listener, inbox_tx.clone()));
    let mut writers = BTreeMap::new();
    let mut tasks = Vec::new();
    for (&id, &addr) in &peers {
        let (tx, rx) = local_channel::new_unbounded::<Message>();
        writers.insert(id, tx);
        tasks.push(glommio::spawn_local(writer(id, addr, rx, inbox_tx.clone())));
    }
    let mut pending: BTreeMap<u64, (ProposalId, flume::Sender<Result<(), ProposeError>>)> =
        BTreeMap::new();
    let mut next_tick = Instant::now() + TICK;
    let result = loop {
        match next_event(&inbox, &commands, next_tick).await {
            Event::Stop => break Ok(()),
            Event::Tick => {
                node.tick();
                next_tick += TICK;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + TICK;
                }
            }
            Event::Inbound(Inbound::Message(m)) => node.step(m),
            Event::Inbound(Inbound::Undelivered { to, snapshot }) => {
                node.report_unreachable(to);
                if snapshot {
                    node.report_snapshot(to, false);
                }
            }
            Event::Inbound(Inbound::SnapshotSent { to }) => node.report_snapshot(to, true),
            Event::Command(Command::Propose(records, reply)) => match node.propose(&records) {
                Ok(id) => {
                    pending.insert(id.index, (id, reply));
                }
                Err(NotTaken::NotLeader { leader }) => {
                    let _ = reply.send(Err(ProposeError::NotLeader { leader }));
                }
                Err(NotTaken::NotReady) => {
                    let _ = reply.send(Err(ProposeError::NotLeader { leader: node.id() }));
                }
            },
        }
        let out = match node.drive() {
            Ok(out) => out,
            Err(e) => break Err(e),
        };
        for m in out.messages {
            if let Some(w) = writers.get(&m.to) {
                let _ = w.try_send(m);
            }
        }
        for a in out.applied {
            if let Some((id, reply)) = pending.remove(&a.proposal.index) {
                let answer = if id.term != a.proposal.term {
                    Err(ProposeError::Lost)
                } else {
                    a.outcome.map_err(ProposeError::Refused)
                };
                let _ = reply.send(answer);
            }
        }
        status.publish(&node);
    };
    for (_, (_, reply)) in pending {
        let _ = reply.send(Err(ProposeError::Stopped));
    }
    drop(writers);
    accept.cancel().await;
    for t in tasks {
        t.cancel().await;
    }
    result
}

async fn next_event(
    inbox: &LocalReceiver<Inbound>,
    commands: &flume::Receiver<Command>,
    next_tick: Instant,
) -> Event {
    let tick = async {
        glommio::timer::sleep(next_tick.saturating_duration_since(Instant::now())).await;
        Event::Tick
    };
    let inbound = async {
        match inbox.recv().await {
            Some(i) => Event::Inbound(i),
            None => Event::Stop,
        }
    };
    let command = async {
        match commands.recv_async().await {
            Ok(c) => Event::Command(c),
            Err(_) => Event::Stop,
        }
    };
    // The tick first: under a stream of messages it must still fire on time.
    futures_lite::future::or(tick, futures_lite::future::or(inbound, command)).await
}

async fn accept_loop(listener: TcpListener, inbox: Rc<LocalSender<Inbound>>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(reader(stream, inbox.clone())).detach();
            }
            Err(e) => {
                tracing::warn!("controller listener: accept failed: {e}");
                glommio::timer::sleep(RECONNECT_WAIT).await;
            }
        }
    }
}

/// Reads frames from one peer connection into the inbox until it closes or misbehaves.
async fn reader(mut stream: TcpStream, inbox: Rc<LocalSender<Inbound>>) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > FRAME_MAX_BYTES {
            tracing::warn!(%peer, len, "controller connection closed: frame too large");
            return;
        }
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        match Message::parse_from_bytes(&body) {
            Ok(m) => {
                if inbox.try_send(Inbound::Message(m)).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(%peer, "controller connection closed: not a raft message: {e}");
                return;
            }
        }
    }
}

/// Delivers this node's messages to peer `to`, connecting (and reconnecting) as needed.
async fn writer(
    to: u64,
    addr: SocketAddr,
    outbox: LocalReceiver<Message>,
    inbox: Rc<LocalSender<Inbound>>,
) {
    let mut conn: Option<TcpStream> = None;
    // While a peer is down, its messages are dropped at once (and reported) rather than
    // queued: Raft resends what matters on its next heartbeat.
    let mut retry_at = Instant::now();
    while let Some(m) = outbox.recv().await {
        let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
        // The length prefix, then the message encoded straight after it: one buffer, no copy.
        let mut frame = vec![0u8; 4];
        if m.write_to_vec(&mut frame).is_err() {
            continue;
        }
        let len = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        if conn.is_none() && Instant::now() >= retry_at {
            conn = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).await.ok();
            match &conn {
                Some(c) => {
                    let _ = c.set_nodelay(true);
                }
                None => retry_at = Instant::now() + RECONNECT_WAIT,
            }
        }
        let sent = match &mut conn {
            Some(c) => c.write_all(&frame).await.is_ok(),
            None => false,
        };
        let report = if sent {
            snapshot.then_some(Inbound::SnapshotSent { to })
        } else {
            conn = None;
            Some(Inbound::Undelivered { to, snapshot })
        };
        if let Some(r) = report {
            let _ = inbox.try_send(r);
        }
    }
}

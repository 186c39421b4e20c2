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

use super::leases::Leases;
use super::{NotTaken, QuorumNode};
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

/// The answer to a proposal: the image once its entry is applied on this node (with every
/// entry applied before it, perhaps some after), or why not.
pub type Proposed = Result<Arc<MetadataImage>, ProposeError>;

/// What other threads may ask of a running node.
pub enum Command {
    /// Propose records, on any node (a follower forwards them to the leader); the answer comes
    /// when the entry is applied here, or after [`PROPOSAL_TIMEOUT`] as `Lost`.
    Propose(Vec<MetadataRecord>, flume::Sender<Proposed>),
}

/// How long a proposal may wait for its entry to be applied before it is answered `Lost`: an
/// entry forwarded to a leader that lost its leadership is never applied, and nothing else
/// tells the proposer.
pub const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// What a running node shows other threads.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub term: u64,
    pub leader: u64,
    pub is_leader: bool,
    pub applied_index: u64,
    pub image: Arc<MetadataImage>,
    /// On the leader, each voter's replicated log position ([`QuorumNode::progress`]).
    pub progress: Vec<(u64, u64)>,
}

/// A node's [`Status`], published when it changes, and a wake-up for whoever waits on a
/// change: `changes` may be shared by several nodes, so one waiter sees any of them change.
pub struct StatusBoard {
    status: Mutex<Status>,
    changes: Arc<Changes>,
    /// Each newly applied image, for whoever installs it (the broker's shards).
    images: Option<flume::Sender<Arc<MetadataImage>>>,
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
            images: None,
        }
    }

    /// A board that also sends every newly applied image to `images`.
    pub fn with_images(
        changes: Arc<Changes>,
        images: flume::Sender<Arc<MetadataImage>>,
    ) -> StatusBoard {
        StatusBoard {
            images: Some(images),
            ..StatusBoard::new(changes)
        }
    }

    /// The leader as this node last knew it (0: none), without copying the image.
    pub fn leader(&self) -> u64 {
        self.status.lock().expect("status lock").leader
    }

    pub fn get(&self) -> Status {
        self.status.lock().expect("status lock").clone()
    }

    /// Publishes the node's state if it differs from the last published; `image` is the
    /// node's image when it applied something since.
    fn publish(&self, node: &QuorumNode, image: Option<&Arc<MetadataImage>>) {
        let (term, leader) = node.term_and_leader();
        let mut s = self.status.lock().expect("status lock");
        let now = (term, leader, node.is_leader(), node.applied_index());
        let progress = node.progress();
        if (s.term, s.leader, s.is_leader, s.applied_index) == now && s.progress == progress {
            return;
        }
        s.progress = progress;
        if let Some(image) = image.filter(|_| s.applied_index != node.applied_index()) {
            s.image = image.clone();
            if let Some(tx) = &self.images {
                let _ = tx.send(image.clone());
            }
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
/// writer task per peer in `peers` (id -> CONTROLLER address). While it leads, it fences the
/// brokers it has not heard from for `session` and unfences them when they are back
/// ([`Leases`]). Returns the error that stopped it, if its storage failed.
pub async fn run(
    mut node: QuorumNode,
    listener: TcpListener,
    peers: BTreeMap<u64, SocketAddr>,
    commands: flume::Receiver<Command>,
    status: Arc<StatusBoard>,
    session: Duration,
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
    let mut proposals = Proposals::new(node.id());
    let mut leases = Leases::new(session);
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
                proposals.expire(Instant::now(), 0);
                let ready = node.can_propose().is_ok();
                let records = leases.decide(ready, node.id(), node.image(), Instant::now());
                for r in records {
                    let _ = node.propose_tagged(proposals.untracked(), &[r]);
                }
            }
            Event::Inbound(Inbound::Message(m)) => {
                leases.heard_from(m.from, Instant::now());
                node.step(m)
            }
            Event::Inbound(Inbound::Undelivered { to, snapshot }) => {
                node.report_unreachable(to);
                if snapshot {
                    node.report_snapshot(to, false);
                }
            }
            Event::Inbound(Inbound::SnapshotSent { to }) => node.report_snapshot(to, true),
            Event::Command(Command::Propose(records, reply)) => {
                let tag = proposals.track(node.term_and_leader().0, reply.clone());
                match node.propose_tagged(tag.clone(), &records) {
                    Ok(()) => {}
                    Err(NotTaken::NotLeader { leader } | NotTaken::NotReady { leader }) => {
                        proposals.answer(&tag, Err(ProposeError::NotLeader { leader }));
                    }
                }
            }
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
        let image = (!out.applied.is_empty()).then(|| Arc::new(node.image().clone()));
        if let Some(image) = &image {
            for a in out.applied {
                let answer = a.outcome.map(|()| image.clone());
                proposals.answer(&a.tag, answer.map_err(ProposeError::Refused));
            }
        }
        proposals.expire(Instant::now(), out.applied_term);
        status.publish(&node, image.as_ref());
    };
    proposals.stop();
    drop(writers);
    accept.cancel().await;
    for t in tasks {
        t.cancel().await;
    }
    result
}

/// The proposals this node made and waits on, by tag: this node's id, a number drawn at start
/// (a restarted node's tags never match its previous life's entries) and a sequence number.
///
/// A proposal is known lost, before its timeout, once an entry of a later term than the one it
/// was proposed in is applied: a leader's log holds the earlier terms' entries it will ever
/// commit before its own term's first entry, so one not applied by then never will be (a
/// follower that forwarded it to a leader that has since died learns so within an election).
struct Proposals {
    prefix: [u8; 16],
    next: u64,
    /// tag -> (deadline, term proposed in, answer).
    waiting: BTreeMap<Vec<u8>, (Instant, u64, flume::Sender<Proposed>)>,
}

impl Proposals {
    fn new(node: u64) -> Proposals {
        let mut prefix = [0u8; 16];
        prefix[..8].copy_from_slice(&node.to_be_bytes());
        prefix[8..].copy_from_slice(&crate::metadata::random_uuid().as_bytes()[..8]);
        Proposals {
            prefix,
            next: 0,
            waiting: BTreeMap::new(),
        }
    }

    /// A fresh tag that nobody waits on (the leader's own fencing decisions).
    fn untracked(&mut self) -> Vec<u8> {
        self.next += 1;
        let mut tag = self.prefix.to_vec();
        tag.extend_from_slice(&self.next.to_be_bytes());
        tag
    }

    /// A fresh tag, proposed in `term`, whose outcome goes to `reply`.
    fn track(&mut self, term: u64, reply: flume::Sender<Proposed>) -> Vec<u8> {
        let tag = self.untracked();
        let deadline = Instant::now() + PROPOSAL_TIMEOUT;
        self.waiting.insert(tag.clone(), (deadline, term, reply));
        tag
    }

    fn answer(&mut self, tag: &[u8], answer: Proposed) {
        if let Some((_, _, reply)) = self.waiting.remove(tag) {
            let _ = reply.send(answer);
        }
    }

    /// Answers `Lost` to the proposals whose entries have not been applied in time, or were
    /// proposed in a term before `applied_term`, the term of an entry just applied.
    fn expire(&mut self, now: Instant, applied_term: u64) {
        let lost: Vec<Vec<u8>> = self
            .waiting
            .iter()
            .filter(|(_, (deadline, term, _))| *deadline <= now || *term < applied_term)
            .map(|(tag, _)| tag.clone())
            .collect();
        for tag in lost {
            self.answer(&tag, Err(ProposeError::Lost));
        }
    }

    fn stop(self) {
        for (_, (_, _, reply)) in self.waiting {
            let _ = reply.send(Err(ProposeError::Stopped));
        }
    }
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

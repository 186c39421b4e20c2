//! The controllers' transport and the driver of one [`QuorumNode`], on glommio like the rest
//! of the broker.
//!
//! [`run`] owns the node on one executor: it ticks it every [`TICK`], steps it with messages
//! from the other controllers, takes proposals from a flume channel (so any thread or shard
//! can propose), runs the ready loop after each event, hands Raft's messages to one writer task
//! per peer, and answers each proposal when its entry is applied (or lost to an election).
//! Connections: every node listens on its CONTROLLER listener and reads frames from whoever
//! connects; it dials each peer for its own outgoing messages. Frames are `quorum::frames`:
//! Raft messages between controllers, and a broker-only node's hello, heartbeats and
//! proposals, whose images and answers go back on the broker's own connection; a frame over
//! [`FRAME_MAX_BYTES`] or one that does not parse closes that connection (a peer's bytes are
//! no more trusted than a client's).
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
use raft::eraftpb::{Message, MessageType};

use super::elections::Elections;
use super::frames::{self, Frame};
use super::leases::Leases;
use super::proposals::{Proposals, Reply};
use super::{NotTaken, QuorumNode};
use crate::metadata::records::MetadataRecord;
use crate::metadata::MetadataImage;

/// How often the Raft clocks tick (election after 10-20 ticks, heartbeats every 2).
pub const TICK: Duration = Duration::from_millis(100);
pub use frames::FRAME_MAX_BYTES;
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

    /// An observer's view (`quorum::observer`): what a controller last told it.
    pub fn publish_observed(
        &self,
        term: u64,
        leader: u64,
        applied_index: u64,
        image: Arc<MetadataImage>,
    ) {
        let mut s = self.status.lock().expect("status lock");
        let image_changed = applied_index != s.applied_index;
        (s.term, s.leader, s.is_leader, s.applied_index) = (term, leader, false, applied_index);
        if image_changed {
            s.image = image.clone();
            if let Some(tx) = &self.images {
                let _ = tx.send(image);
            }
        }
        drop(s);
        self.changes.bump();
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
    /// An observer connected (or said it is alive again): its node id, and the writer of its
    /// connection when it just connected.
    Observer {
        node: u64,
        writer: Option<LocalSender<Vec<u8>>>,
    },
    /// An observer's proposal.
    Remote {
        node: u64,
        tag: Vec<u8>,
        batch: Vec<u8>,
    },
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

/// The active controller's timing: brokers are fenced after `session` without a word
/// (`broker.session.timeout.ms`); with `rebalance`, leadership moves back to preferred replicas
/// that often (`auto.leader.rebalance.enable`, `leader.imbalance.check.interval.seconds`);
/// `unclean` is this node's `unclean.leader.election.enable`, the default that cluster-wide
/// dynamic configs and topic configs override.
#[derive(Clone, Copy, Debug)]
pub struct ControllerTiming {
    pub session: Duration,
    pub rebalance: Option<Duration>,
    pub unclean: bool,
}

/// Runs `node` until `commands` closes: the node's driver, its listener's reader tasks and a
/// writer task per peer in `peers` (id -> CONTROLLER address). While it leads, it fences the
/// brokers it has not heard from for `timing.session` and unfences them when they are back
/// ([`Leases`]), with the partition elections that calls for ([`Elections`]). Returns the error
/// that stopped it, if its storage failed.
pub async fn run(
    mut node: QuorumNode,
    listener: TcpListener,
    peers: BTreeMap<u64, SocketAddr>,
    commands: flume::Receiver<Command>,
    status: Arc<StatusBoard>,
    timing: ControllerTiming,
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
    let mut leases = Leases::new(timing.session);
    let mut elections = Elections::new(timing.rebalance, timing.unclean);
    let mut observers = Observers::default();
    let mut next_tick = Instant::now() + TICK;
    let result = loop {
        let mut remote_answers = Vec::new();
        match next_event(&inbox, &commands, next_tick).await {
            Event::Stop => break Ok(()),
            Event::Tick => {
                node.tick();
                next_tick += TICK;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + TICK;
                }
                remote_answers.extend(proposals.expire(Instant::now(), 0));
                let ready = node.can_propose().is_ok();
                let now = Instant::now();
                let fencing = leases.decide(ready, node.id(), node.image(), now);
                let records = elections.decide(ready, node.image(), fencing, now);
                if !records.is_empty() {
                    let _ = node.propose_tagged(proposals.untracked(), &records);
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
            Event::Inbound(Inbound::Observer { node: id, writer }) => {
                leases.heard_from(id, Instant::now());
                if let Some(w) = writer {
                    let _ = w.try_send(observers.image_frame(&node));
                    observers.writers.insert(id, w);
                }
            }
            Event::Inbound(Inbound::Remote {
                node: id,
                tag,
                batch,
            }) => {
                let term = node.term_and_leader().0;
                proposals.track_as(tag.clone(), term, Reply::Remote(id));
                let taken = crate::metadata::records::decode_batch(&batch)
                    .map_err(|_| ())
                    .and_then(|records| node.propose_tagged(tag.clone(), &records).map_err(|_| ()));
                if taken.is_err() {
                    let leader = node.term_and_leader().1;
                    remote_answers
                        .extend(proposals.answer(&tag, Err(ProposeError::NotLeader { leader })));
                }
            }
            Event::Command(Command::Propose(records, reply)) => {
                let tag = proposals.track(node.term_and_leader().0, reply.clone());
                match node.propose_tagged(tag.clone(), &records) {
                    Ok(()) => {}
                    Err(NotTaken::NotLeader { leader } | NotTaken::NotReady { leader }) => {
                        let _ = proposals.answer(&tag, Err(ProposeError::NotLeader { leader }));
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
                remote_answers
                    .extend(proposals.answer(&a.tag, answer.map_err(ProposeError::Refused)));
            }
        }
        remote_answers.extend(proposals.expire(Instant::now(), out.applied_term));
        status.publish(&node, image.as_ref());
        // The image before the answers: an observer told its change applied already has
        // the image with it.
        observers.follow(&node);
        observers.send(remote_answers);
    };
    proposals.stop();
    drop(writers);
    drop(observers);
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

/// Reads frames from one connection into the inbox until it closes or misbehaves: Raft
/// messages from a controller, or an observer's hello, heartbeats and proposals (an observer's
/// connection is also where its images and answers go back).
async fn reader(stream: TcpStream, inbox: Rc<LocalSender<Inbound>>) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (mut r, w) = futures_lite::io::split(stream);
    let mut w = Some(w);
    let mut observer = None;
    loop {
        let inbound = match frames::read(&mut r).await {
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%peer, "controller connection closed: {e}");
                return;
            }
            Ok(Some(Frame::Raft(m))) => Inbound::Message(m),
            Ok(Some(Frame::Observe { node })) => {
                observer = Some(node);
                let writer = w.take().map(|w| {
                    let (tx, rx) = local_channel::new_unbounded::<Vec<u8>>();
                    glommio::spawn_local(observer_writer(w, rx)).detach();
                    tx
                });
                Inbound::Observer { node, writer }
            }
            Ok(Some(Frame::Propose { tag, batch })) => match observer {
                Some(node) => Inbound::Remote { node, tag, batch },
                None => {
                    tracing::warn!(%peer, "controller connection closed: a proposal before hello");
                    return;
                }
            },
            Ok(Some(_)) => {
                tracing::warn!(%peer, "controller connection closed: a frame only controllers send");
                return;
            }
        };
        if inbox.try_send(inbound).is_err() {
            return;
        }
    }
}

/// Writes frames to one observer until its channel closes or a write fails.
async fn observer_writer(
    mut w: futures_lite::io::WriteHalf<TcpStream>,
    frames: LocalReceiver<Vec<u8>>,
) {
    while let Some(f) = frames.recv().await {
        if w.write_all(&f).await.is_err() {
            return;
        }
    }
}

/// The observers connected to this controller: each gets this node's image when it connects
/// and whenever it changes (or the leader does), and the answers to its proposals.
#[derive(Default)]
struct Observers {
    writers: BTreeMap<u64, LocalSender<Vec<u8>>>,
    /// (term, leader, applied index) last sent.
    sent: (u64, u64, u64),
}

impl Observers {
    fn image_frame(&self, node: &QuorumNode) -> Vec<u8> {
        let (term, leader) = node.term_and_leader();
        frames::encode(&Frame::Image {
            term,
            leader,
            applied_index: node.applied_index(),
            image: node.image().to_snapshot(),
        })
    }

    /// Sends the image to every observer if it changed since last sent.
    fn follow(&mut self, node: &QuorumNode) {
        let (term, leader) = node.term_and_leader();
        let now = (term, leader, node.applied_index());
        if self.writers.is_empty() || now == self.sent {
            return;
        }
        self.sent = now;
        let frame = self.image_frame(node);
        self.writers
            .retain(|_, w| w.try_send(frame.clone()).is_ok());
    }

    fn send(&mut self, answers: Vec<(u64, Frame)>) {
        for (node, frame) in answers {
            if let Some(w) = self.writers.get(&node) {
                if w.try_send(frames::encode(&frame)).is_err() {
                    self.writers.remove(&node);
                }
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
    loop {
        // The peer never writes on this connection: anything it reads (its end closed, the
        // peer gone) drops it at once, so that no socket is left half-closed here, which
        // would keep the peer's port from being bound again when it restarts.
        let next = match &mut conn {
            Some(c) => {
                futures_lite::future::or(async { Some(outbox.recv().await) }, async {
                    let mut byte = [0u8; 1];
                    let _ = c.read(&mut byte).await;
                    None
                })
                .await
            }
            None => Some(outbox.recv().await),
        };
        let m = match next {
            Some(Some(m)) => m,
            Some(None) => return,
            None => {
                conn = None;
                continue;
            }
        };
        let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
        // The message is encoded straight after the length prefix and kind: one buffer.
        let frame = frames::encode(&Frame::Raft(m));
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

//! A broker-only node's side of the quorum (`process.roles=broker`, KRaft's observer): it
//! votes on nothing and keeps no Raft log; it follows the controllers' applied images and
//! proposes through them ([`super::frames`]).
//!
//! [`observe`] keeps a connection to every controller. On each it says hello and then again
//! every [`HEARTBEAT`] (any controller that becomes leader has heard it recently, and fences it
//! once it goes quiet), takes the images it is sent (the newest by applied index wins: every
//! controller's image is committed state) and the answers to its proposals. A proposal goes to
//! the controller it knows as leader when connected to it, else to any connected one (which
//! forwards it, as Raft forwards a follower's proposal); it is answered when applied, refused
//! or lost, or `Lost` after [`PROPOSAL_TIMEOUT`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;

use super::frames::{self, Frame, Outcome};
use super::transport::{Command, ProposeError, Proposed, StatusBoard, PROPOSAL_TIMEOUT};
use crate::metadata::records;
use crate::metadata::MetadataImage;

/// How often an observer says it is alive to each controller.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
const RECONNECT_WAIT: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the observer's loop waits for.
enum Next {
    Event(Event),
    Command(Command),
    /// The earliest proposal's deadline passed.
    Tick,
    Stop,
}

/// What the connections report to the observer's loop.
enum Event {
    Up {
        controller: u64,
        writer: LocalSender<Vec<u8>>,
    },
    Down {
        controller: u64,
    },
    Frame(Frame),
}

/// Follows the controllers (`id -> CONTROLLER address`) of cluster `cluster_id` as node `me`
/// until `commands` closes, publishing what it learns on `board`.
pub async fn observe(
    me: u64,
    cluster_id: &str,
    controllers: BTreeMap<u64, SocketAddr>,
    commands: flume::Receiver<Command>,
    board: Arc<StatusBoard>,
) -> Result<(), String> {
    let (events_tx, events) = local_channel::new_unbounded::<Event>();
    let events_tx = Rc::new(events_tx);
    let tasks: Vec<_> = controllers
        .iter()
        .map(|(&id, &addr)| glommio::spawn_local(connection(me, id, addr, events_tx.clone())))
        .collect();
    let mut up: BTreeMap<u64, LocalSender<Vec<u8>>> = BTreeMap::new();
    // tag -> (deadline, the controller it went to, who waits)
    let mut waiting: BTreeMap<Vec<u8>, (Instant, u64, flume::Sender<Proposed>)> = BTreeMap::new();
    let prefix = {
        let mut p = me.to_be_bytes().to_vec();
        p.extend_from_slice(&crate::metadata::random_uuid().as_bytes()[..8]);
        p
    };
    let mut next_tag = 0u64;
    let mut seen = (0u64, 0u64, 0u64); // (applied index, term, leader)
    loop {
        let next = futures_lite::future::or(
            async {
                match events.recv().await {
                    Some(e) => Next::Event(e),
                    None => Next::Stop,
                }
            },
            futures_lite::future::or(
                async {
                    match commands.recv_async().await {
                        Ok(c) => Next::Command(c),
                        Err(_) => Next::Stop,
                    }
                },
                // Awake only for the next proposal's deadline: an idle broker sleeps.
                async {
                    match waiting.values().map(|(deadline, _, _)| *deadline).min() {
                        Some(d) => {
                            glommio::timer::sleep(d.saturating_duration_since(Instant::now())).await
                        }
                        None => futures_lite::future::pending::<()>().await,
                    }
                    Next::Tick
                },
            ),
        )
        .await;
        match next {
            Next::Stop => break,
            Next::Tick => {}
            Next::Event(Event::Up { controller, writer }) => {
                up.insert(controller, writer);
            }
            Next::Event(Event::Down { controller }) => {
                up.remove(&controller);
                // Sent to a controller now gone: it may have applied them or not; the proposer
                // decides again (a change applied twice is refused the second time).
                waiting.retain(|_, (_, to, reply)| {
                    let keep = *to != controller;
                    if !keep {
                        let _ = reply.send(Err(ProposeError::Lost));
                    }
                    keep
                });
            }
            Next::Event(Event::Frame(Frame::Image {
                term,
                leader,
                applied_index,
                image,
            })) => {
                if (applied_index, term, leader) > seen {
                    match MetadataImage::from_snapshot(&image) {
                        Ok(image) if image.cluster_id != cluster_id => {
                            tracing::warn!(
                                theirs = %image.cluster_id,
                                "a controller of another cluster: its image is ignored"
                            );
                        }
                        Ok(image) => {
                            seen = (applied_index, term, leader);
                            board.publish_observed(term, leader, applied_index, Arc::new(image));
                        }
                        Err(e) => tracing::warn!("an image from a controller does not decode: {e}"),
                    }
                }
            }
            Next::Event(Event::Frame(Frame::Answer { tag, outcome })) => {
                if let Some((_, _, reply)) = waiting.remove(&tag) {
                    let _ = reply.send(match outcome {
                        Outcome::Applied => Ok(board.get().image),
                        Outcome::Refused(why) => Err(ProposeError::Refused(why)),
                        Outcome::Lost => Err(ProposeError::Lost),
                        Outcome::NotLeader => Err(ProposeError::NotLeader { leader: 0 }),
                    });
                }
            }
            Next::Event(Event::Frame(_)) => {}
            Next::Command(Command::Propose(records, reply)) => {
                let leader = seen.2;
                let target = up
                    .get_key_value(&leader)
                    .or_else(|| up.iter().next())
                    .map(|(&id, w)| (id, w));
                let Some((to, w)) = target else {
                    let _ = reply.send(Err(ProposeError::NotLeader { leader: 0 }));
                    continue;
                };
                next_tag += 1;
                let mut tag = prefix.clone();
                tag.extend_from_slice(&next_tag.to_be_bytes());
                let frame = frames::encode(&Frame::Propose {
                    tag: tag.clone(),
                    batch: records::encode_batch(&records),
                });
                if w.try_send(frame).is_err() {
                    let _ = reply.send(Err(ProposeError::NotLeader { leader: 0 }));
                    continue;
                }
                waiting.insert(tag, (Instant::now() + PROPOSAL_TIMEOUT, to, reply));
            }
        }
        let now = Instant::now();
        waiting.retain(|_, (deadline, _, reply)| {
            let keep = *deadline > now;
            if !keep {
                let _ = reply.send(Err(ProposeError::Lost));
            }
            keep
        });
    }
    for t in tasks {
        t.cancel().await;
    }
    Ok(())
}

/// One controller's connection: connect, hello, heartbeats and outgoing frames on the write
/// half, frames read into the observer's loop; reconnects after any failure.
async fn connection(me: u64, controller: u64, addr: SocketAddr, events: Rc<LocalSender<Event>>) {
    loop {
        if let Ok(stream) = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).await {
            let _ = stream.set_nodelay(true);
            let (mut r, w) = futures_lite::io::split(stream);
            let (tx, rx) = local_channel::new_unbounded::<Vec<u8>>();
            let writer = glommio::spawn_local(write_loop(me, w, rx));
            if events
                .try_send(Event::Up {
                    controller,
                    writer: tx,
                })
                .is_err()
            {
                return;
            }
            while let Ok(Some(frame)) = frames::read(&mut r).await {
                if events.try_send(Event::Frame(frame)).is_err() {
                    return;
                }
            }
            writer.cancel().await;
            if events.try_send(Event::Down { controller }).is_err() {
                return;
            }
        }
        glommio::timer::sleep(RECONNECT_WAIT).await;
    }
}

/// Says hello, then writes the loop's frames and a heartbeat every [`HEARTBEAT`].
async fn write_loop(
    me: u64,
    mut w: futures_lite::io::WriteHalf<TcpStream>,
    frames_in: LocalReceiver<Vec<u8>>,
) {
    let hello = frames::encode(&Frame::Observe { node: me });
    if w.write_all(&hello).await.is_err() {
        return;
    }
    loop {
        let next = futures_lite::future::or(async { frames_in.recv().await.map(Some) }, async {
            glommio::timer::sleep(HEARTBEAT).await;
            Some(None)
        })
        .await;
        let bytes = match next {
            None => return,
            Some(Some(f)) => f,
            Some(None) => hello.clone(),
        };
        if w.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

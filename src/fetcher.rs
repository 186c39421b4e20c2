//! Followers fetch from leaders (issue 13): each shard of a cluster's broker copies the
//! partitions it follows from their leaders, over the Kafka Fetch protocol with its broker id as
//! the replica id, as Kafka's replica fetcher threads do.
//!
//! Thread per core: a partition's replica belongs to the shard `shard_for` names on every
//! broker, so each shard runs one fetch loop per leader broker for the partitions it follows
//! there (Kafka's fetchers are per broker pair; ours per shard and broker pair), and appends
//! what it gets to its own logs. Nothing goes through a central thread. The leader serves the
//! fetch like a consumer's (the same zero-copy reads), up to its written end rather than the
//! high watermark, and the fetch offset tells it where the follower is (`crate::replica`).
//!
//! A partition that starts following a leader (a new leader epoch) first truncates its log
//! where it diverges from the leader's (KIP-101 / KIP-279): it asks the leader, with
//! OffsetForLeaderEpoch, where its own latest epoch ends on the leader, and cuts its log there,
//! so a returning old leader drops its divergent tail before it fetches. Batches are appended
//! verbatim (`PartitionLog::append_replica`): offsets, leader epochs and producer fields as
//! the leader wrote them.
//!
//! Each shard also proposes the ISR changes its leaders decide (Kafka's AlterPartition, here a
//! `PartitionChange` proposed to the quorum) and checks its leaders' ISRs for followers that
//! stopped fetching.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use tracing::{debug, info, warn};

use crate::error::ErrorCode;
use crate::metadata::records::MetadataRecord;
use crate::metadata::PartitionState;
use crate::partitions::Partition;
use crate::shard::Shard;

/// How long a leader may hold a follower's fetch when it has nothing new.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// What one partition may bring per fetch, and one fetch in all.
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const FETCH_MAX_BYTES: i32 = 16 << 20;
/// The pause after a failed connection or request before the next try.
const BACKOFF: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request may go unanswered (Kafka's `replica.socket.timeout.ms`).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The Fetch and OffsetForLeaderEpoch versions the fetcher speaks (topics by name).
const FETCH_VERSION: i16 = 12;
const EPOCH_VERSION: i16 = 4;

/// Starts the replication tasks of one shard of a cluster's broker.
pub fn start(shard: Rc<Shard>) {
    glommio::spawn_local(follow_leaders(shard.clone())).detach();
    glommio::spawn_local(propose_isr_changes(shard.clone())).detach();
    glommio::spawn_local(check_isrs(shard)).detach();
}

/// Keeps one fetch loop running per leader this shard follows partitions of, re-examined with
/// every new image.
async fn follow_leaders(shard: Rc<Shard>) {
    let running: Rc<std::cell::RefCell<BTreeSet<i32>>> = Rc::default();
    while !shard.shutting_down.get() {
        for leader in leaders_followed(&shard) {
            if running.borrow_mut().insert(leader) {
                let (shard, running) = (shard.clone(), running.clone());
                glommio::spawn_local(async move {
                    fetch_from(&shard, leader).await;
                    running.borrow_mut().remove(&leader);
                })
                .detach();
            }
        }
        shard.next_image().await;
    }
}

fn leaders_followed(shard: &Shard) -> BTreeSet<i32> {
    shard
        .owned_partitions()
        .into_iter()
        .map(|(_, p)| p.role())
        .filter(|r| r.is_follower())
        .map(|r| r.leader)
        .collect()
}

/// One partition this shard follows on a leader, at the leader epoch the image gave it.
struct Followed {
    key: Key,
    partition: Rc<Partition>,
    epoch: i32,
}

type Key = (Arc<str>, i32);

/// What a round did for one partition.
enum Outcome {
    /// Truncated (or found nothing to cut) for this leader epoch.
    Truncated(i32),
    /// Refused or failed: left alone for a while.
    Failed,
    /// Its log is ahead of the leader's: truncate again before fetching.
    Diverged,
}

/// Fetches from `leader` until this shard follows nothing there. A partition whose epoch is
/// new is truncated first; the others fetch meanwhile. A partition that fails is left out for
/// [`BACKOFF`] (a leadership change on its way, an epoch the leader has not seen yet), so one
/// bad partition neither spins nor holds the others back.
async fn fetch_from(shard: &Rc<Shard>, leader: i32) {
    let me = shard.node_id();
    let mut conn: Option<Conn> = None;
    // Partition -> the leader epoch its log was last truncated for.
    let mut truncated: HashMap<Key, i32> = HashMap::new();
    let mut backoff: HashMap<Key, Instant> = HashMap::new();
    info!(leader, "following partitions on broker {leader}");
    loop {
        if shard.shutting_down.get() {
            return;
        }
        let followed: Vec<Followed> = shard
            .owned_partitions()
            .into_iter()
            .filter_map(|(key, p)| {
                let role = p.role();
                (role.is_follower() && role.leader == leader).then_some(Followed {
                    key,
                    partition: p,
                    epoch: role.leader_epoch,
                })
            })
            .collect();
        if followed.is_empty() {
            info!(
                leader,
                "no partitions to follow on broker {leader} any more"
            );
            return;
        }
        let now = Instant::now();
        backoff.retain(|_, until| *until > now);
        // A log that failed a write takes nothing until it is reopened (it has left the ISR
        // meanwhile: `Shard::heal_failed_partitions`); the loop waits for it.
        let ready: Vec<&Followed> = followed
            .iter()
            .filter(|f| !backoff.contains_key(&f.key))
            .filter(|f| f.partition.log.st.borrow().failed.is_none())
            .collect();
        if ready.is_empty() {
            glommio::timer::sleep(BACKOFF).await;
            continue;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(shard, leader).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    debug!(leader, "cannot reach the leader: {e}");
                    glommio::timer::sleep(BACKOFF).await;
                    continue;
                }
            },
        };
        let (to_truncate, to_fetch): (Vec<&Followed>, Vec<&Followed>) = ready
            .into_iter()
            .partition(|f| truncated.get(&f.key) != Some(&f.epoch));
        let mut outcomes = Vec::new();
        let mut round = Ok(());
        if !to_truncate.is_empty() {
            round = truncate_round(c, me, leader, &to_truncate)
                .await
                .map(|o| outcomes.extend(o));
        }
        if round.is_ok() && !to_fetch.is_empty() {
            round = fetch_round(shard, c, me, leader, &to_fetch)
                .await
                .map(|o| outcomes.extend(o));
        }
        for (key, outcome) in outcomes {
            match outcome {
                Outcome::Truncated(epoch) => {
                    truncated.insert(key, epoch);
                }
                Outcome::Failed => {
                    backoff.insert(key, Instant::now() + BACKOFF);
                }
                Outcome::Diverged => {
                    truncated.remove(&key);
                }
            }
        }
        if let Err(e) = round {
            debug!(leader, "replica fetch from broker {leader} failed: {e}");
            conn = None;
            glommio::timer::sleep(BACKOFF).await;
        }
    }
}

/// Asks the leader where each partition's latest local epoch ends there and truncates the
/// local log to it.
async fn truncate_round(
    c: &mut Conn,
    me: i32,
    leader: i32,
    partitions: &[&Followed],
) -> Result<Vec<(Key, Outcome)>, String> {
    let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
    for f in partitions {
        let latest = f.partition.log.latest_epoch().unwrap_or(-1);
        let p = OffsetForLeaderPartition::default()
            .with_partition(f.key.1)
            .with_current_leader_epoch(f.epoch)
            .with_leader_epoch(latest);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == &*f.key.0) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetForLeaderTopic::default()
                    .with_topic(topic_name(&f.key.0))
                    .with_partitions(vec![p]),
            ),
        }
    }
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(me))
        .with_topics(topics);
    let resp = c.call(&req, EPOCH_VERSION).await?;
    let mut out: Vec<(Key, Outcome)> = partitions
        .iter()
        .map(|f| (f.key.clone(), Outcome::Failed))
        .collect();
    for t in &resp.topics {
        for r in &t.partitions {
            let Some(i) = partitions
                .iter()
                .position(|f| &*f.key.0 == t.topic.0.as_str() && f.key.1 == r.partition)
            else {
                continue;
            };
            let f = partitions[i];
            if r.error_code != 0 {
                // A stale epoch on either side: the next image settles it.
                debug!(topic = %f.key.0, partition = f.key.1, code = r.error_code, "epoch lookup refused");
                continue;
            }
            let log = &f.partition.log;
            let leo = log.log_end_offset().0;
            let target = if r.leader_epoch < 0 || r.end_offset < 0 {
                // The leader knows none of our epochs: keep only what is replicated.
                f.partition.high_watermark()
            } else {
                // Where our copy of the leader's answering epoch ends, and where the leader's does.
                let ours = log
                    .end_offset_for_epoch(r.leader_epoch)
                    .map_or(leo, |(_, o)| o.0);
                r.end_offset.min(ours)
            };
            if target < leo {
                info!(topic = %f.key.0, partition = f.key.1, from = leo, to = target,
                    "truncating the divergent tail of a follower's log");
                if let Err(e) = f
                    .partition
                    .replica_truncate(leader, f.epoch, target, false)
                    .await
                {
                    warn!(topic = %f.key.0, partition = f.key.1, "truncating: {e}");
                    continue;
                }
            }
            out[i].1 = Outcome::Truncated(f.epoch);
        }
    }
    Ok(out)
}

/// One Fetch for the given partitions; appends what comes back.
async fn fetch_round(
    shard: &Shard,
    c: &mut Conn,
    me: i32,
    leader: i32,
    partitions: &[&Followed],
) -> Result<Vec<(Key, Outcome)>, String> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    let mut offsets = Vec::with_capacity(partitions.len());
    // While this shard's follower budget is spent, throttled partitions that are not in sync
    // (a reassignment's new replicas) sit this fetch out (`partitions::quota`).
    let quota = &shard.partitions.follower_quota;
    let held = |f: &Followed| f.partition.throttled.get().follower && !f.partition.in_sync(me);
    let exceeded = quota.exceeded(Instant::now());
    for f in partitions {
        let log = &f.partition.log;
        if exceeded && held(f) {
            offsets.push(-1);
            continue;
        }
        let offset = log.log_end_offset().0;
        offsets.push(offset);
        let p = FetchPartition::default()
            .with_partition(f.key.1)
            .with_current_leader_epoch(f.epoch)
            .with_fetch_offset(offset)
            .with_log_start_offset(log.log_start_offset().0)
            .with_partition_max_bytes(PARTITION_MAX_BYTES);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == &*f.key.0) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(topic_name(&f.key.0))
                    .with_partitions(vec![p]),
            ),
        }
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(FETCH_MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_session_epoch(-1)
        .with_topics(topics);
    let resp = c.call(&req, FETCH_VERSION).await?;
    if resp.error_code != 0 {
        return Err(format!("fetch refused with error {}", resp.error_code));
    }
    let mut out = Vec::new();
    for t in &resp.responses {
        for r in &t.partitions {
            let Some(i) = partitions
                .iter()
                .position(|f| &*f.key.0 == t.topic.0.as_str() && f.key.1 == r.partition_index)
            else {
                continue;
            };
            let f = partitions[i];
            let outcome = match ErrorCode::try_from_code(r.error_code) {
                None => {
                    let records = r.records.as_ref().filter(|b| !b.is_empty());
                    if let Some(records) = records.filter(|_| f.partition.throttled.get().follower)
                    {
                        quota.record(records.len(), Instant::now());
                    }
                    let appended = match records {
                        Some(records) => {
                            f.partition
                                .replica_append(leader, f.epoch, offsets[i], records)
                                .await
                        }
                        None => Ok(()),
                    };
                    match appended {
                        Ok(()) => {
                            f.partition.follow_high_watermark(r.high_watermark);
                            let start = f.partition.follow_log_start(r.log_start_offset).await;
                            if let Err(e) = start {
                                warn!(topic = %f.key.0, partition = f.key.1, "taking the leader's log start: {e}");
                            }
                            continue;
                        }
                        Err(e) => {
                            warn!(topic = %f.key.0, partition = f.key.1, "appending the leader's batches: {e}");
                            Outcome::Failed
                        }
                    }
                }
                Some(ErrorCode::OffsetOutOfRange) if offsets[i] < r.log_start_offset => {
                    // The leader deleted what we lack (retention): start over at its start.
                    let restarted = f
                        .partition
                        .replica_truncate(leader, f.epoch, r.log_start_offset, true)
                        .await;
                    match restarted {
                        Ok(()) => continue,
                        Err(_) => Outcome::Failed,
                    }
                }
                // Our log ends past the leader's: find the divergence again.
                Some(ErrorCode::OffsetOutOfRange) => Outcome::Diverged,
                Some(code) => {
                    debug!(topic = %f.key.0, partition = f.key.1, ?code, "replica fetch refused");
                    Outcome::Failed
                }
            };
            out.push((f.key.clone(), outcome));
        }
    }
    Ok(out)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// A connection to another broker's client listener (a leader, for a follower's fetches; a
/// partition's leader, for a transaction coordinator's markers).
pub(crate) struct Conn {
    stream: TcpStream,
    correlation: i32,
    client_id: StrBytes,
}

impl Conn {
    pub(crate) async fn open(shard: &Shard, leader: i32) -> Result<Conn, String> {
        let image = shard.metadata();
        let b = image
            .brokers
            .get(&leader)
            .ok_or_else(|| format!("broker {leader} is not registered"))?;
        let addr = crate::cluster::resolve_endpoint(&b.host, b.port)?;
        let stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
            .await
            .map_err(|e| format!("connecting to broker {leader} at {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            correlation: 0,
            client_id: StrBytes::from_string(format!("tidelog-replica-{}", shard.node_id())),
        })
    }

    /// One request and its response, within [`CALL_TIMEOUT`] (a leader that died without
    /// closing the connection must not hold the fetcher for ever).
    pub(crate) async fn call<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, String>
    where
        R::Response: Decodable,
    {
        futures_lite::future::or(self.exchange(req, version), async {
            glommio::timer::sleep(CALL_TIMEOUT).await;
            Err(format!("no answer within {CALL_TIMEOUT:?}"))
        })
        .await
    }

    async fn exchange<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response, String>
    where
        R::Response: Decodable,
    {
        self.correlation = self.correlation.wrapping_add(1);
        let frame =
            crate::client::conn::encode_request(req, version, self.correlation, &self.client_id)
                .map_err(|e| e.to_string())?;
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| e.to_string())?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .await
            .map_err(|e| e.to_string())?;
        let size = i32::from_be_bytes(size);
        if size < 0 || size as usize > crate::client::conn::RESPONSE_BYTES_MAX {
            return Err(format!("response frame size {size}"));
        }
        let mut body = vec![0u8; size as usize];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| e.to_string())?;
        let mut body: Bytes = crate::client::conn::decode_response_header::<R>(
            Bytes::from(body),
            version,
            self.correlation,
        )
        .map_err(|e| e.to_string())?;
        let resp = R::Response::decode(&mut body, version).map_err(|e| e.to_string())?;
        if body.has_remaining() {
            return Err("bytes after a response".into());
        }
        Ok(resp)
    }
}

/// Proposes the ISR changes this shard's leaders decide, one at a time, each against the
/// partition state of the current image.
async fn propose_isr_changes(shard: Rc<Shard>) {
    let Some(cluster) = shard.cluster.clone() else {
        return;
    };
    let changes = shard.partitions.isr_changes();
    while let Ok((topic, index, mut isr)) = changes.recv_async().await {
        let image = shard.metadata();
        let Some(t) = image.topic(&topic) else {
            continue;
        };
        let Some(state) = t.state(index) else {
            continue;
        };
        // Only a live broker may join (KIP-841): a fenced one, or one shutting down, would be
        // taken out again by the controller at once.
        isr.retain(|b| state.isr.contains(b) || image.is_live(*b));
        // A leader changes its ISR; any replica may take itself out (its log failed), and a
        // leader that does hands over to the first live in-sync replica.
        let me = shard.node_id();
        let leaving = state.isr.contains(&me) && !isr.contains(&me);
        if (state.leader != me && !leaving) || state.isr == isr || isr.is_empty() {
            if let Some(p) = shard.partition(&topic, index) {
                p.isr_proposal_done();
            }
            continue;
        }
        info!(%topic, partition = index, from = ?state.isr, to = ?isr, "proposing an ISR change");
        let next = match leaving {
            false => crate::replica::with_isr(state, isr),
            true => crate::quorum::reassignment::settle(
                &image,
                state,
                PartitionState {
                    isr,
                    ..state.clone()
                },
            ),
        };
        let record = MetadataRecord::PartitionChange {
            id: t.id,
            index,
            state: next,
        };
        if let Err(e) = cluster.propose(vec![record]).await {
            // Another change won (its partition epoch moved): the leader decides again.
            debug!(%topic, partition = index, "ISR change not applied: {e:?}");
            if let Some(p) = shard.partition(&topic, index) {
                p.isr_proposal_done();
            }
        }
    }
}

/// Checks this shard's leaders for in-sync followers that stopped fetching, every half lag
/// time (a fetching follower is checked at each fetch).
async fn check_isrs(shard: Rc<Shard>) {
    let lag = shard.partitions.replica_lag_max();
    while !shard.shutting_down.get() {
        glommio::timer::sleep(lag / 2).await;
        for ((topic, index), p) in shard.owned_partitions() {
            if let Some(isr) = p.isr_check(lag) {
                shard.partitions.propose_isr(topic, index, isr);
            }
        }
    }
}

//! The transaction coordinator's flows (`crate::txn` holds its state): InitProducerId,
//! AddPartitionsToTxn/AddOffsetsToTxn, EndTxn and its markers, and the timeout sweep. They run
//! on the shard coordinating the transactional id and reach the metadata controller (producer
//! ids) and the partitions' owner shards (markers) through the router.

use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::error::ErrorCode;
use crate::log::txn::Marker;
use crate::partitions::TxnMarker;
use crate::shard::Shard;
use crate::txn::log::{TxnRecord, TxnStatus};
use crate::txn::Txn;

/// How long markers wait for the in-sync replicas of their partitions.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

/// InitProducerId with a transactional id, on its coordinating shard: the id's producer id
/// and its next epoch. A transaction the previous incarnation left open is aborted first
/// (with a bumped epoch, so that producer is fenced); `current`, KIP-360's producer id and
/// epoch of a producer bumping its own epoch, must be the id's current ones.
pub async fn init_producer_id(
    shard: &Rc<Shard>,
    id: String,
    timeout_ms: i32,
    current: Option<(i64, i16)>,
) -> Result<(i64, i16), ErrorCode> {
    let coord = &shard.txns;
    coord.check_loaded(&id)?;
    let now = crate::util::now_ms();
    let existing = {
        let mut txns = coord.txns.borrow_mut();
        match txns.get_mut(&id) {
            Some(t) if t.busy => return Err(ErrorCode::ConcurrentTransactions),
            Some(t) => {
                if let Some((pid, epoch)) = current {
                    let r = &t.record;
                    if pid != r.producer_id {
                        return Err(ErrorCode::InvalidProducerIdMapping);
                    }
                    if epoch != r.producer_epoch {
                        return Err(ErrorCode::ProducerFenced);
                    }
                }
                t.busy = true;
                Some(t.record.clone())
            }
            None => {
                // A new id, claimed while its producer id is allocated, so that a concurrent
                // InitProducerId for it waits its turn (CONCURRENT_TRANSACTIONS).
                let placeholder = TxnRecord {
                    producer_id: -1,
                    producer_epoch: -1,
                    timeout_ms,
                    status: TxnStatus::Empty,
                    partitions: Vec::new(),
                    last_update_ms: now,
                    start_ms: -1,
                };
                let claim = Txn {
                    record: placeholder,
                    busy: true,
                };
                txns.insert(id.clone(), claim);
                None
            }
        }
    };
    let new = existing.is_none();
    let result = init_claimed(shard, &id, timeout_ms, existing, now).await;
    match (&result, new) {
        (Ok(_), _) => {}
        (Err(_), true) => {
            coord.txns.borrow_mut().remove(&id);
        }
        (Err(_), false) => coord.settle(&id, None),
    }
    result
}

/// Marks `id` busy again with `record`, after a step (`finish`) that released it.
fn reclaim(shard: &Shard, id: &str, record: &TxnRecord) {
    let claim = Txn {
        record: record.clone(),
        busy: true,
    };
    shard.txns.txns.borrow_mut().insert(id.to_string(), claim);
}

async fn init_claimed(
    shard: &Rc<Shard>,
    id: &str,
    timeout_ms: i32,
    existing: Option<TxnRecord>,
    now: i64,
) -> Result<(i64, i16), ErrorCode> {
    let coord = &shard.txns;
    let mut record = match existing {
        None => {
            let pid = crate::admin::allocate_producer_id(shard)
                .await
                .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
            TxnRecord {
                producer_id: pid,
                producer_epoch: -1,
                timeout_ms,
                status: TxnStatus::Empty,
                partitions: Vec::new(),
                last_update_ms: now,
                start_ms: -1,
            }
        }
        Some(r) if r.status == TxnStatus::Ongoing => {
            // The previous incarnation's transaction is aborted, under a bumped epoch.
            let aborted = abort(shard, id, r, now).await?;
            reclaim(shard, id, &aborted);
            aborted
        }
        Some(r) if matches!(r.status, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort) => {
            // Its markers are still to be written: finish that first, then bump.
            let finished = finish(shard, id, r.clone()).await?;
            reclaim(shard, id, &finished);
            finished
        }
        Some(r) => r,
    };
    if record.producer_epoch >= i16::MAX - 1 {
        // The epoch is exhausted: a new producer id, as Kafka rotates it.
        record.producer_id = crate::admin::allocate_producer_id(shard)
            .await
            .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
        record.producer_epoch = -1;
    }
    record.producer_epoch += 1;
    record.timeout_ms = timeout_ms;
    record.status = TxnStatus::Empty;
    record.partitions.clear();
    record.last_update_ms = now;
    record.start_ms = -1;
    coord.persist(id, &record).await?;
    let answer = (record.producer_id, record.producer_epoch);
    coord.settle(id, Some(record));
    Ok(answer)
}

/// AddPartitionsToTxn / AddOffsetsToTxn: `partitions` join the producer's transaction,
/// which becomes Ongoing.
pub async fn add_partitions(
    shard: &Rc<Shard>,
    id: String,
    pid: i64,
    epoch: i16,
    partitions: Vec<(String, Vec<i32>)>,
) -> Result<(), ErrorCode> {
    let coord = &shard.txns;
    coord.check_loaded(&id)?;
    let mut record = coord.claim(&id, pid, epoch)?;
    if matches!(
        record.status,
        TxnStatus::PrepareCommit | TxnStatus::PrepareAbort
    ) {
        coord.settle(&id, None);
        return Err(ErrorCode::ConcurrentTransactions);
    }
    let now = crate::util::now_ms();
    if record.status != TxnStatus::Ongoing {
        record.status = TxnStatus::Ongoing;
        record.start_ms = now;
        record.partitions.clear();
    }
    let before = record.partitions.clone();
    for (topic, ids) in partitions {
        match record.partitions.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, have)) => have.extend(ids),
            None => record.partitions.push((topic, ids)),
        }
    }
    for (_, ids) in &mut record.partitions {
        ids.sort_unstable();
        ids.dedup();
    }
    if record.partitions == before && record.start_ms != now {
        // Nothing new: no write (Kafka answers at once too).
        coord.settle(&id, None);
        return Ok(());
    }
    record.last_update_ms = now;
    match coord.persist(&id, &record).await {
        Ok(()) => {
            coord.settle(&id, Some(record));
            Ok(())
        }
        Err(e) => {
            coord.settle(&id, None);
            Err(e)
        }
    }
}

/// EndTxn: the transaction is committed or aborted. Answered once PrepareCommit/Abort is
/// written; the markers follow, and then the Complete state (Kafka's order). A retry of an
/// end already made is answered with success.
pub async fn end_txn(
    shard: &Rc<Shard>,
    id: String,
    pid: i64,
    epoch: i16,
    commit: bool,
) -> Result<(), ErrorCode> {
    let coord = &shard.txns;
    coord.check_loaded(&id)?;
    let mut record = coord.claim(&id, pid, epoch)?;
    let (prepare, complete) = match commit {
        true => (TxnStatus::PrepareCommit, TxnStatus::CompleteCommit),
        false => (TxnStatus::PrepareAbort, TxnStatus::CompleteAbort),
    };
    match record.status {
        TxnStatus::Ongoing => {}
        s if s == complete || s == prepare => {
            coord.settle(&id, None);
            return Ok(());
        }
        _ => {
            coord.settle(&id, None);
            return Err(ErrorCode::InvalidTxnState);
        }
    }
    record.status = prepare;
    record.last_update_ms = crate::util::now_ms();
    if let Err(e) = coord.persist(&id, &record).await {
        coord.settle(&id, None);
        return Err(e);
    }
    // Decided: the client is answered now; the markers are written in the background and a
    // failure there leaves the prepared state for the sweep to finish.
    coord.txns.borrow_mut().insert(
        id.clone(),
        Txn {
            record: record.clone(),
            busy: true,
        },
    );
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let _ = finish(&shard, &id, record).await;
    })
    .detach();
    Ok(())
}

/// Writes the markers of a prepared transaction and then its Complete state; the id stays
/// busy throughout and is released at the end (prepared still, if something failed).
async fn finish(shard: &Rc<Shard>, id: &str, record: TxnRecord) -> Result<TxnRecord, ErrorCode> {
    let coord = &shard.txns;
    let (marker, complete) = match record.status {
        TxnStatus::PrepareCommit => (Marker::Commit, TxnStatus::CompleteCommit),
        _ => (Marker::Abort, TxnStatus::CompleteAbort),
    };
    let done = async {
        crate::util::crash_point("txn-decided");
        write_markers(shard, &record, marker).await?;
        let mut completed = record.clone();
        completed.status = complete;
        completed.partitions.clear();
        completed.last_update_ms = crate::util::now_ms();
        coord.persist(id, &completed).await?;
        Ok(completed)
    }
    .await;
    match &done {
        Ok(completed) => coord.settle(id, Some(completed.clone())),
        Err(e) => {
            warn!(
                transactional_id = id,
                "transaction markers not written yet: {e:?}"
            );
            coord.settle(id, Some(record));
        }
    }
    done
}

/// Aborts an Ongoing transaction with the producer's epoch bumped (a timeout, or a new
/// incarnation of its transactional id): the old producer is fenced by the markers.
async fn abort(
    shard: &Rc<Shard>,
    id: &str,
    mut record: TxnRecord,
    now: i64,
) -> Result<TxnRecord, ErrorCode> {
    if record.producer_epoch < i16::MAX - 1 {
        record.producer_epoch += 1;
    }
    record.status = TxnStatus::PrepareAbort;
    record.last_update_ms = now;
    shard.txns.persist(id, &record).await?;
    finish(shard, id, record).await
}

/// Writes `marker` for the record's producer to every partition of its transaction, each on
/// its owner shard; a partition that no longer exists is skipped (Kafka drops those).
async fn write_markers(
    shard: &Rc<Shard>,
    record: &TxnRecord,
    marker: Marker,
) -> Result<(), ErrorCode> {
    let m = TxnMarker {
        producer_id: record.producer_id,
        producer_epoch: record.producer_epoch,
        marker,
        coordinator_epoch: 0,
    };
    let image = shard.metadata();
    let me = shard.node_id();
    let mut items = Vec::new();
    // Partitions another broker leads, by that broker (or no leader now: retried later).
    let mut remote: std::collections::BTreeMap<i32, Vec<(String, i32)>> = Default::default();
    for (topic, ids) in &record.partitions {
        let Some(meta) = image.topic(topic) else {
            continue;
        };
        for &p in ids.iter().filter(|&&p| p < meta.partitions) {
            match meta.leader(p, me) {
                Some(leader) if leader == me => {
                    items.push((shard.owner(meta, p), (meta.name.clone(), p)))
                }
                Some(leader) => remote.entry(leader).or_default().push((topic.clone(), p)),
                None => return Err(ErrorCode::NotLeaderOrFollower),
            }
        }
    }
    let deadline = Instant::now() + MARKER_TIMEOUT;
    let local = shard
        .router
        .scatter_gather(shard, items, move |s, asked| async move {
            let mut out = Vec::with_capacity(asked.len());
            for (topic, p) in asked {
                out.push(write_marker(&s, &topic, p, m, deadline).await);
            }
            out
        });
    let sends = remote
        .into_iter()
        .map(|(leader, partitions)| send_markers(shard, leader, m, partitions))
        .collect();
    let (local, remote) = futures_lite::future::zip(local, crate::util::join_all(sends)).await;
    local
        .into_iter()
        .chain(remote)
        .find_map(Result::err)
        .map_or(Ok(()), Err)
}

/// Sends `m` for `partitions` to their leader `broker` in a WriteTxnMarkers request, as
/// Kafka's coordinator does; the first partition error, if any, is the answer.
async fn send_markers(
    shard: &Rc<Shard>,
    broker: i32,
    m: TxnMarker,
    partitions: Vec<(String, i32)>,
) -> Result<(), ErrorCode> {
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    use kafka_protocol::messages::{ProducerId, WriteTxnMarkersRequest};
    let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
    for (topic, p) in partitions {
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partition_indexes.push(p),
            None => topics.push(
                WritableTxnMarkerTopic::default()
                    .with_name(super::str_bytes(&topic).into())
                    .with_partition_indexes(vec![p]),
            ),
        }
    }
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(m.producer_id))
        .with_producer_epoch(m.producer_epoch)
        .with_transaction_result(m.marker == Marker::Commit)
        .with_coordinator_epoch(m.coordinator_epoch)
        .with_topics(topics)]);
    let fail = |e: String| {
        warn!(broker, "transaction markers not sent: {e}");
        ErrorCode::CoordinatorNotAvailable
    };
    let mut conn = crate::fetcher::Conn::open(shard, broker)
        .await
        .map_err(fail)?;
    let r = conn.call(&req, 1).await.map_err(fail)?;
    let codes = r
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .flat_map(|t| &t.partitions);
    let gone = ErrorCode::UnknownTopicOrPartition.code();
    match codes.map(|p| p.error_code).find(|&c| c != 0 && c != gone) {
        None => Ok(()),
        Some(c) => Err(ErrorCode::try_from_code(c).unwrap_or(ErrorCode::UnknownServerError)),
    }
}

/// One marker on its owner shard; on a `__consumer_offsets` partition the group coordinator
/// then applies (or drops) the offsets the transaction committed there. As Kafka appends
/// markers with acks=all, a partition whose ISR is below `min.insync.replicas` refuses it
/// (NOT_ENOUGH_REPLICAS; the coordinator tries again at its next sweep).
pub async fn write_marker(
    s: &Rc<Shard>,
    topic: &str,
    p: i32,
    m: TxnMarker,
    deadline: Instant,
) -> Result<(), ErrorCode> {
    if let Some(part) = s.partitions.get(topic, p) {
        if (part.isr_len() as i32) < super::produce::min_insync_replicas(s, topic) {
            return Err(ErrorCode::NotEnoughReplicas);
        }
    }
    match s.partitions.write_marker(topic, p, m, deadline).await {
        Ok(()) => crate::util::crash_point("txn-marker-written"),
        Err(ErrorCode::UnknownTopicOrPartition) => {}
        Err(e) => return Err(e),
    }
    if topic == crate::metadata::OFFSETS_TOPIC {
        s.groups
            .end_txn_offsets(p, m.producer_id, m.marker == Marker::Commit);
    }
    Ok(())
}

/// Aborts the transactions of this shard that outlived their timeout and finishes prepared
/// ones whose markers failed; run periodically on every shard.
pub async fn sweep(shard: &Rc<Shard>) {
    let now = crate::util::now_ms();
    let due: Vec<(String, TxnRecord)> = {
        let mut txns = shard.txns.txns.borrow_mut();
        txns.iter_mut()
            .filter(|(_, t)| !t.busy)
            .filter(|(_, t)| {
                let r = &t.record;
                let expired = r.status == TxnStatus::Ongoing
                    && now.saturating_sub(r.start_ms) > i64::from(r.timeout_ms);
                expired || matches!(r.status, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort)
            })
            .map(|(id, t)| {
                t.busy = true;
                (id.clone(), t.record.clone())
            })
            .collect()
    };
    expire_idle(shard, now).await;
    for (id, record) in due {
        let result = if record.status == TxnStatus::Ongoing {
            info!(transactional_id = %id, timeout_ms = record.timeout_ms, "aborting a transaction that timed out");
            abort(shard, &id, record, now).await
        } else {
            finish(shard, &id, record).await
        };
        if result.is_err() {
            shard.txns.settle(&id, None);
        }
    }
}

/// Forgets the transactional ids without a transaction whose state has not changed for
/// `transactional.id.expiration.ms` (Kafka's default: 7 days), as Kafka expires them.
async fn expire_idle(shard: &Rc<Shard>, now: i64) {
    let expiration = shard.config.transactional_id_expiration_ms;
    let idle: Vec<String> = {
        let mut txns = shard.txns.txns.borrow_mut();
        txns.iter_mut()
            .filter(|(_, t)| {
                let r = &t.record;
                let ended = matches!(
                    r.status,
                    TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
                );
                !t.busy && ended && now.saturating_sub(r.last_update_ms) > expiration
            })
            .map(|(id, t)| {
                t.busy = true;
                id.clone()
            })
            .collect()
    };
    for id in idle {
        match shard.txns.expire(&id).await {
            Ok(()) => info!(transactional_id = %id, "transactional id expired"),
            Err(_) => shard.txns.settle(&id, None),
        }
    }
}

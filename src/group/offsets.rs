//! Committed offsets and group records: commit, fetch, delete, describe, and the replay of
//! `__consumer_offsets` at start-up. Runs on the coordinating shard.

use std::os::unix::fs::FileExt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use tracing::{info, warn};

use super::state::{Group, GroupState};
use super::store::{self, Committed, Entry, GroupRecord, OFFSETS_TOPIC};
use super::Coordinator;
use crate::config::OFFSET_METADATA_MAX_BYTES;
use crate::error::ErrorCode;
use crate::log::{Durability, Offset};
use crate::metadata::MetadataImage;
use crate::partitions::Partition;

/// An OffsetCommit, as the coordinating shard needs it.
#[derive(Clone, Debug)]
pub struct CommitArgs {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// (topic, partition, offset, leader epoch, metadata), in request order.
    pub partitions: Vec<(String, i32, i64, i32, Option<String>)>,
}

/// Kafka's `offsets.commit.timeout.ms`: how long a commit waits for the in-sync replicas.
pub(super) const OFFSET_COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Appends records to the group's offsets partition and waits for fsync and for the in-sync
/// replicas: a commit is acknowledged only once it would survive a crash or the loss of the
/// leader.
async fn append(
    coord: &Coordinator,
    group_id: &str,
    records: Vec<(Bytes, Option<Bytes>)>,
) -> Result<(), ErrorCode> {
    let p = coord
        .partitions
        .leader(OFFSETS_TOPIC, store::partition_for(group_id))
        .map_err(|_| ErrorCode::NotCoordinator)?;
    let batch =
        store::batch(records, crate::util::now_ms()).map_err(|_| ErrorCode::UnknownServerError)?;
    let info = p.append(&batch, Durability::Fsync).await.map_err(|e| {
        warn!(group = group_id, "writing to {OFFSETS_TOPIC}: {e}");
        ErrorCode::CoordinatorNotAvailable
    })?;
    // As Kafka's offset commits (acks=all): answered once the in-sync replicas have it, with
    // the codes its GroupMetadataManager maps append errors to.
    let deadline = std::time::Instant::now() + OFFSET_COMMIT_TIMEOUT;
    p.wait_replicated(info.last_offset.0, deadline)
        .await
        .map_err(|code| match code {
            ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
            _ => ErrorCode::CoordinatorNotAvailable,
        })
}

/// Persists the group's protocol type and generation (its membership is rebuilt by rejoins).
pub async fn persist_group(coord: &Coordinator, group_id: &str) {
    let record = {
        let groups = coord.groups.borrow();
        let Some(g) = groups.get(group_id) else {
            return;
        };
        GroupRecord {
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            generation: g.generation,
        }
    };
    let rec = (
        store::group_key(group_id),
        Some(store::group_value(&record)),
    );
    if let Err(code) = append(coord, group_id, vec![rec]).await {
        warn!(group = group_id, "group record not persisted: {code:?}");
    }
}

/// Checks whether this commit may proceed; `None` means yes.
pub(super) fn commit_allowed(g: Option<&mut Group>, a: &CommitArgs) -> Option<ErrorCode> {
    let standalone = a.generation < 0 && a.member_id.is_empty();
    let Some(g) = g else {
        return (!standalone).then_some(ErrorCode::UnknownMemberId);
    };
    if standalone {
        return (!g.members.is_empty()).then_some(ErrorCode::UnknownMemberId);
    }
    if let Err(code) = super::check_member(
        g,
        &a.member_id,
        a.instance_id.as_deref(),
        Some(a.generation),
    ) {
        return Some(code);
    }
    g.members.get_mut(&a.member_id).expect("checked").last_seen = Instant::now();
    // As Kafka's classic coordinator: a member of the current generation may still commit while
    // the group prepares a rebalance (so it can commit before giving up its partitions), but not
    // between the join and the new assignment.
    (g.state == GroupState::CompletingRebalance).then_some(ErrorCode::RebalanceInProgress)
}

/// OffsetCommit on the coordinating shard: one error (or none) per partition, in order.
pub async fn commit(
    coord: Rc<Coordinator>,
    image: Arc<MetadataImage>,
    a: CommitArgs,
) -> Vec<Option<ErrorCode>> {
    let refused = {
        let mut groups = coord.groups.borrow_mut();
        commit_allowed(groups.get_mut(&a.group_id), &a)
    };
    if let Some(code) = refused {
        return vec![Some(code); a.partitions.len()];
    }
    let Prepared {
        results,
        records,
        accepted,
    } = prepare(&image, &a);
    if records.is_empty() {
        return results;
    }
    if let Err(code) = append(&coord, &a.group_id, records).await {
        return vec![Some(code); a.partitions.len()];
    }
    let mut groups = coord.groups.borrow_mut();
    let g = groups
        .entry(a.group_id.clone())
        .or_insert_with(|| Group::new(&a.group_id));
    g.offsets.extend(accepted);
    results
}

/// An offset commit's per-partition answers, and the records and offsets of the partitions
/// it may commit (known ones, with metadata that fits).
pub(super) struct Prepared {
    pub results: Vec<Option<ErrorCode>>,
    pub records: Vec<(Bytes, Option<Bytes>)>,
    pub accepted: Vec<((String, i32), Committed)>,
}

/// Checks each partition of a commit as Kafka does and builds its records.
pub(super) fn prepare(image: &MetadataImage, a: &CommitArgs) -> Prepared {
    let now = crate::util::now_ms();
    let mut p = Prepared {
        results: Vec::with_capacity(a.partitions.len()),
        records: Vec::new(),
        accepted: Vec::new(),
    };
    for (topic, partition, offset, epoch, metadata) in &a.partitions {
        let known = image
            .topic(topic)
            .is_some_and(|t| (0..t.partitions).contains(partition));
        let error = if !known {
            Some(ErrorCode::UnknownTopicOrPartition)
        } else if metadata
            .as_ref()
            .is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES)
        {
            Some(ErrorCode::OffsetMetadataTooLarge)
        } else {
            None
        };
        if error.is_none() {
            let c = Committed {
                offset: *offset,
                leader_epoch: *epoch,
                metadata: metadata.clone(),
                commit_timestamp_ms: now,
            };
            p.records.push((
                store::offset_key(&a.group_id, topic, *partition),
                Some(store::offset_value(&c)),
            ));
            p.accepted.push(((topic.clone(), *partition), c));
        }
        p.results.push(error);
    }
    p
}

/// OffsetFetch for one group: the committed offset of each asked partition (-1 when none), or
/// every committed partition when `partitions` is `None`.
///
/// With `require_stable` (OffsetFetch v7+, what read_committed consumers send), a partition
/// whose offset an open transaction holds answers UNSTABLE_OFFSET_COMMIT, which clients retry
/// until the transaction ends (Kafka's `hasPendingOffsetCommitsForTopicPartition`).
pub fn fetch(
    coord: &Coordinator,
    group_id: &str,
    partitions: Option<Vec<(String, i32)>>,
    require_stable: bool,
) -> Vec<FetchedOffset> {
    let groups = coord.groups.borrow();
    let g = groups.get(group_id);
    let rows: Vec<(String, i32, Option<Committed>)> = match partitions {
        Some(ps) => ps
            .into_iter()
            .map(|(t, p)| {
                let c = g.and_then(|g| g.offsets.get(&(t.clone(), p)).cloned());
                (t, p, c)
            })
            .collect(),
        None => {
            let mut all: Vec<_> = g
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|((t, p), c)| (t.clone(), *p, Some(c.clone())))
                        .collect()
                })
                .unwrap_or_default();
            all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            all
        }
    };
    rows.into_iter()
        .map(|(t, p, c)| {
            let key = (t, p);
            let held = require_stable && coord.has_held_offset(group_id, &key);
            let (t, p) = key;
            (
                t,
                p,
                if held {
                    Err(ErrorCode::UnstableOffsetCommit)
                } else {
                    Ok(c)
                },
            )
        })
        .collect()
}

/// One partition's answer to OffsetFetch: its committed offset (if any), or why not now.
pub type FetchedOffset = (String, i32, Result<Option<Committed>, ErrorCode>);

/// One group as ListGroups and DescribeGroups report it.
#[derive(Clone, Debug)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_name: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// Every group this shard coordinates, or just `only` when given (missing ones omitted).
pub fn describe(coord: &Coordinator, only: Option<&[String]>) -> Vec<GroupSummary> {
    let groups = coord.groups.borrow();
    let summarize = |g: &Group| {
        let protocol = g.protocol_name.clone().unwrap_or_default();
        GroupSummary {
            group_id: g.id.clone(),
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol.clone(),
            members: g
                .members
                .values()
                .map(|m| {
                    let meta = m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default();
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        meta,
                        m.assignment.clone(),
                    )
                })
                .collect(),
        }
    };
    match only {
        Some(ids) => ids
            .iter()
            .filter_map(|id| groups.get(id).map(summarize))
            .collect(),
        None => groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(summarize)
            .collect(),
    }
}

/// DeleteGroups for one group: only an Empty group can go; its offsets go with it.
pub async fn delete_group(coord: Rc<Coordinator>, group_id: String) -> Option<ErrorCode> {
    let keys = {
        let groups = coord.groups.borrow();
        let Some(g) = groups
            .get(&group_id)
            .filter(|g| g.state != GroupState::Dead)
        else {
            return Some(ErrorCode::GroupIdNotFound);
        };
        if g.state != GroupState::Empty {
            return Some(ErrorCode::NonEmptyGroup);
        }
        let mut keys: Vec<(Bytes, Option<Bytes>)> = g
            .offsets
            .keys()
            .map(|(t, p)| (store::offset_key(&group_id, t, *p), None))
            .collect();
        keys.push((store::group_key(&group_id), None));
        keys
    };
    if let Err(code) = append(&coord, &group_id, keys).await {
        return Some(code);
    }
    coord.groups.borrow_mut().remove(&group_id);
    info!(group = %group_id, "group deleted");
    None
}

/// OffsetDelete: forgets committed offsets of partitions the group is not consuming.
pub async fn delete_offsets(
    coord: Rc<Coordinator>,
    group_id: String,
    partitions: Vec<(String, i32)>,
) -> Result<Vec<Option<ErrorCode>>, ErrorCode> {
    let (results, keys) = {
        let groups = coord.groups.borrow();
        let g = groups
            .get(&group_id)
            .filter(|g| g.state != GroupState::Dead)
            .ok_or(ErrorCode::GroupIdNotFound)?;
        let subscribed = subscribed_topics(g);
        let mut results = Vec::new();
        let mut keys = Vec::new();
        for (t, p) in &partitions {
            if subscribed.contains(t) {
                results.push(Some(ErrorCode::GroupSubscribedToTopic));
            } else {
                results.push(None);
                if g.offsets.contains_key(&(t.clone(), *p)) {
                    keys.push((store::offset_key(&group_id, t, *p), None));
                }
            }
        }
        (results, keys)
    };
    if !keys.is_empty() {
        append(&coord, &group_id, keys).await?;
        let mut groups = coord.groups.borrow_mut();
        if let Some(g) = groups.get_mut(&group_id) {
            for ((t, p), r) in partitions.iter().zip(&results) {
                if r.is_none() {
                    g.offsets.remove(&(t.clone(), *p));
                }
            }
        }
    }
    Ok(results)
}

/// The topics a consumer group's members subscribe to, from their consumer-protocol metadata.
fn subscribed_topics(g: &Group) -> Vec<String> {
    use kafka_protocol::protocol::Decodable;
    if g.protocol_type.as_deref() != Some("consumer") {
        return Vec::new();
    }
    let protocol = g.protocol_name.clone().unwrap_or_default();
    let mut topics = Vec::new();
    for m in g.members.values() {
        let Some((_, meta)) = m.protocols.iter().find(|(n, _)| *n == protocol) else {
            continue;
        };
        let mut b = meta.clone();
        if b.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([b[0], b[1]]);
        let _ = bytes::Buf::get_i16(&mut b);
        if let Ok(sub) = kafka_protocol::messages::ConsumerProtocolSubscription::decode(
            &mut b,
            version.clamp(0, 3),
        ) {
            topics.extend(sub.topics.iter().map(|t| t.to_string()));
        }
    }
    topics
}

/// Replays one `__consumer_offsets` partition into this shard's groups when it is loaded (at
/// start-up, when the topic is created, or when it is reopened after a write failure).
pub(super) async fn replay(coord: &Coordinator, partition: i32, p: &Partition) {
    let mut offset = p.log.log_start_offset();
    let (mut offsets_n, mut groups_n) = (0usize, 0usize);
    while offset < p.log.high_watermark() {
        let records = match read_records(p, offset).await {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                warn!("replaying {OFFSETS_TOPIC}-{partition}: {e}");
                break;
            }
        };
        for r in records {
            offset = Offset(offset.0.max(r.offset + 1));
            let Some(key) = &r.key else { continue };
            if r.control {
                // A transaction's marker: its offsets count, or go (`txn_offsets`).
                let commit = key.get(3) == Some(&1);
                coord.end_txn_offsets(partition, r.producer_id, commit);
                continue;
            }
            match store::decode(key, r.value.as_ref()) {
                Some(Entry::Offset {
                    group,
                    topic,
                    partition: p,
                    value: Some(c),
                }) if r.transactional => {
                    coord.hold_txn_offset(r.producer_id, group, (topic, p), c);
                }
                Some(e) => {
                    apply(coord, e, &mut offsets_n, &mut groups_n);
                }
                None => {
                    warn!("replaying {OFFSETS_TOPIC}-{partition}: skipping an unknown record")
                }
            }
        }
        glommio::yield_if_needed().await;
    }
    if offsets_n + groups_n > 0 {
        info!(
            partition,
            offsets = offsets_n,
            groups = groups_n,
            "replayed committed offsets"
        );
    }
}

/// The records of the batches of `p` from `offset` on (about 1 MiB of them), or `None` at the
/// end of what is committed; shared by the replays of the internal topics.
pub(crate) async fn read_records(
    p: &Partition,
    offset: Offset,
) -> Result<Option<Vec<kafka_protocol::records::Record>>, String> {
    let slice = match p.log.read_async(offset, 1 << 20).await {
        Ok(s) if s.len > 0 => s,
        Ok(_) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut buf = vec![0u8; slice.len as usize];
    slice
        .file
        .read_exact_at(&mut buf, slice.position.0)
        .map_err(|e| e.to_string())?;
    let mut bytes = Bytes::from(buf);
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let set = RecordBatchDecoder::decode(&mut bytes)
            .map_err(|_| format!("undecodable batch at {}", offset.0))?;
        records.extend(set.records);
    }
    Ok(Some(records))
}

fn apply(coord: &Coordinator, e: Entry, offsets_n: &mut usize, groups_n: &mut usize) {
    let mut groups = coord.groups.borrow_mut();
    match e {
        Entry::Offset {
            group,
            topic,
            partition,
            value,
        } => {
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group));
            match value {
                Some(c) => {
                    g.offsets.insert((topic, partition), c);
                    *offsets_n += 1;
                }
                None => {
                    g.offsets.remove(&(topic, partition));
                }
            }
        }
        Entry::Group {
            group,
            value: Some(rec),
        } => {
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group));
            g.protocol_type = (!rec.protocol_type.is_empty()).then_some(rec.protocol_type);
            g.generation = rec.generation;
            *groups_n += 1;
        }
        Entry::Group { group, value: None } => {
            groups.remove(&group);
        }
    }
}

//! Fetch: read file ranges on each owner shard, park until `min_bytes` or `max_wait_ms`, and
//! answer with a response whose record bytes go from the page cache to the socket.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::FetchRequest;
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, Outcome};
use crate::config::{FETCH_MAX_BYTES_DEFAULT, FETCH_MAX_WAIT_MS_MAX};
use crate::error::ErrorCode;
use crate::log::Offset;
use crate::protocol::fetch::{
    encode_fetch_response, FetchHeader, FetchPartition, FetchTopic, FileRange,
};
use crate::protocol::request::{Request, RequestError};
use crate::shard::{check_leader_epoch, Shard};
use crate::util::join_all;

/// One requested topic, in request order, with how many partitions it asked for.
struct RequestedTopic {
    name: StrBytes,
    topic_id: [u8; 16],
    partitions: usize,
}

/// One requested partition, resolved against the metadata.
#[derive(Clone)]
struct Slot {
    topic: Arc<str>,
    partition: i32,
    owner: usize,
    offset: i64,
    max_bytes: u32,
    /// Set when the partition cannot be read at all (unknown topic, fenced epoch).
    error: Option<ErrorCode>,
}

/// What the owner read for one slot.
#[derive(Clone)]
struct Read {
    error: Option<ErrorCode>,
    high_watermark: i64,
    log_start_offset: i64,
    records: Option<FileRange>,
}

impl Read {
    fn failed(code: ErrorCode) -> Read {
        Read {
            error: Some(code),
            high_watermark: -1,
            log_start_offset: -1,
            records: None,
        }
    }

    fn bytes(&self) -> usize {
        self.records.as_ref().map_or(0, |r| r.len as usize)
    }
}

pub async fn handle(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
    let body: FetchRequest = req.decode_body()?;
    let version = req.version();
    let mut header = FetchHeader {
        correlation_id: req.header.correlation_id,
        ..Default::default()
    };
    if body.session_id != 0 {
        // We never hand out a fetch session (every response lists every partition), so a
        // non-zero id is one we do not know.
        header.error_code = ErrorCode::FetchSessionIdNotFound.code();
        return Ok(Outcome::Respond(encode_fetch_response(
            version,
            &header,
            &[],
        )));
    }
    let (topics, slots) = resolve(shard, req, &body);
    let deadline = Instant::now()
        + Duration::from_millis(body.max_wait_ms.clamp(0, FETCH_MAX_WAIT_MS_MAX) as u64);
    let min_bytes = body.min_bytes.max(0) as usize;
    let mut reads = read_all(shard, &slots).await;
    loop {
        let total: usize = reads.iter().map(Read::bytes).sum();
        let failed = reads.iter().any(|r| r.error.is_some());
        if total >= min_bytes.max(1)
            || failed
            || Instant::now() >= deadline
            || shard.shutting_down.get()
        {
            break;
        }
        park(shard, &slots, &reads, deadline).await;
        reads = read_all(shard, &slots).await;
    }
    let max_bytes = (body.max_bytes.max(0) as u32).min(FETCH_MAX_BYTES_DEFAULT);
    trim_to_max_bytes(&mut reads, max_bytes as usize);
    for (slot, read) in slots.iter().zip(&reads) {
        if let Some(code) = read.error {
            log_client_error(
                req,
                &format!("fetch {}-{} at {}", slot.topic, slot.partition, slot.offset),
                code,
                "",
            );
        }
    }
    let response_topics = assemble(topics, &slots, reads);
    Ok(Outcome::Respond(encode_fetch_response(
        version,
        &header,
        &response_topics,
    )))
}

/// Resolves names (v<13) or ids (v13+) into slots, keeping request order.
fn resolve(shard: &Shard, req: &Request, body: &FetchRequest) -> (Vec<RequestedTopic>, Vec<Slot>) {
    let image = shard.metadata();
    let by_id = req.version() >= 13;
    let mut topics = Vec::new();
    let mut slots = Vec::new();
    for t in &body.topics {
        let meta = if by_id {
            image.topic_by_id(t.topic_id)
        } else {
            image.topic(&t.topic.0)
        };
        topics.push(RequestedTopic {
            name: t.topic.0.clone(),
            topic_id: *t.topic_id.as_bytes(),
            partitions: t.partitions.len(),
        });
        for p in &t.partitions {
            let mut slot = Slot {
                topic: meta.map_or_else(|| Arc::from(t.topic.0.as_str()), |m| m.name.clone()),
                partition: p.partition,
                owner: 0,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as u32,
                error: None,
            };
            match meta {
                None if by_id => slot.error = Some(ErrorCode::UnknownTopicId),
                None => slot.error = Some(ErrorCode::UnknownTopicOrPartition),
                Some(m) if p.partition < 0 || p.partition >= m.partitions => {
                    slot.error = Some(ErrorCode::UnknownTopicOrPartition)
                }
                Some(_) if check_leader_epoch(p.current_leader_epoch).is_some() => {
                    slot.error = check_leader_epoch(p.current_leader_epoch)
                }
                Some(m) => slot.owner = shard.owner(m, p.partition),
            }
            slots.push(slot);
        }
    }
    (topics, slots)
}

/// Reads every slot on its owner shard, one call per owner.
async fn read_all(shard: &Rc<Shard>, slots: &[Slot]) -> Vec<Read> {
    let mut reads: Vec<Read> = slots
        .iter()
        .map(|s| Read::failed(s.error.unwrap_or(ErrorCode::UnknownServerError)))
        .collect();
    let mut by_owner: BTreeMap<usize, Vec<(usize, Slot)>> = BTreeMap::new();
    for (i, s) in slots.iter().enumerate().filter(|(_, s)| s.error.is_none()) {
        by_owner.entry(s.owner).or_default().push((i, s.clone()));
    }
    let calls = by_owner.into_iter().map(|(owner, work)| {
        shard.router.invoke_on(shard, owner, move |s| async move {
            work.into_iter()
                .map(|(i, slot)| (i, read_one(&s, &slot)))
                .collect::<Vec<_>>()
        })
    });
    for (i, r) in join_all(calls.collect()).await.into_iter().flatten() {
        reads[i] = r;
    }
    reads
}

/// Runs on the owner shard.
fn read_one(shard: &Shard, slot: &Slot) -> Read {
    let Some(p) = shard.partition(&slot.topic, slot.partition) else {
        return Read::failed(ErrorCode::NotLeaderOrFollower);
    };
    match p.log.read(Offset(slot.offset), slot.max_bytes) {
        Ok(r) => Read {
            error: None,
            high_watermark: r.high_watermark.0,
            log_start_offset: r.log_start_offset.0,
            records: (r.len > 0).then(|| FileRange {
                file: r.file,
                position: r.position.0,
                len: r.len,
            }),
        },
        Err(e) => Read {
            error: Some(e.error_code()),
            high_watermark: p.log.high_watermark().0,
            log_start_offset: p.log.log_start_offset().0,
            records: None,
        },
    }
}

/// Parks until any partition gets data past its fetch offset, or the deadline.
async fn park(shard: &Rc<Shard>, slots: &[Slot], reads: &[Read], deadline: Instant) {
    let (tx, rx) = flume::bounded::<()>(1);
    let mut by_owner: BTreeMap<usize, Vec<(Arc<str>, i32, i64)>> = BTreeMap::new();
    for (s, r) in slots.iter().zip(reads) {
        if s.error.is_none() {
            // Wake on data past what this fetch would already get: past the fetch offset when
            // there is none yet, past the current high watermark when there is too little.
            let after = s.offset.max(r.high_watermark);
            by_owner
                .entry(s.owner)
                .or_default()
                .push((s.topic.clone(), s.partition, after));
        }
    }
    let calls = by_owner.into_iter().map(|(owner, watches)| {
        let tx = tx.clone();
        shard.router.invoke_on(shard, owner, move |s| async move {
            for (topic, partition, offset) in watches {
                if let Some(p) = s.partition(&topic, partition) {
                    p.watch(offset, tx.clone());
                }
            }
        })
    });
    join_all(calls.collect()).await;
    drop(tx);
    let timeout = deadline.saturating_duration_since(Instant::now());
    futures_lite::future::or(
        async {
            // Re-checked while parked, so a lost wake-up costs a few ms, not the whole wait.
            let _ = crate::router::recv_reply(&rx, || {}).await;
        },
        glommio::timer::sleep(timeout),
    )
    .await;
}

/// Applies the response-level `max_bytes`: partitions are filled in request order, and the first
/// one with data is always sent whole (KIP-74), so a consumer can always make progress.
fn trim_to_max_bytes(reads: &mut [Read], max_bytes: usize) {
    let mut used = 0usize;
    for r in reads.iter_mut() {
        let n = r.bytes();
        if n == 0 {
            continue;
        }
        if used > 0 && used + n > max_bytes {
            r.records = None;
            continue;
        }
        used += n;
    }
}

fn assemble(topics: Vec<RequestedTopic>, slots: &[Slot], reads: Vec<Read>) -> Vec<FetchTopic> {
    let mut pairs = slots.iter().zip(reads);
    topics
        .into_iter()
        .map(|t| {
            let RequestedTopic {
                name,
                topic_id,
                partitions: count,
            } = t;
            let partitions = pairs
                .by_ref()
                .take(count)
                .map(|(s, r)| FetchPartition {
                    partition_index: s.partition,
                    error_code: crate::error::code(r.error),
                    high_watermark: r.high_watermark,
                    last_stable_offset: r.high_watermark,
                    log_start_offset: r.log_start_offset,
                    records: r.records,
                })
                .collect();
            FetchTopic {
                name,
                topic_id,
                partitions,
            }
        })
        .collect()
}

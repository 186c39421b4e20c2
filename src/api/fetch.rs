//! Fetch: read file ranges on each owner shard, park until `min_bytes` or `max_wait_ms`, and
//! answer with a response whose record bytes go from the page cache to the socket.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::FetchRequest;
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, Outcome, Session};
use crate::config::{FETCH_CUT_SCAN_BATCHES_MAX, FETCH_MAX_BYTES_DEFAULT, FETCH_MAX_WAIT_MS_MAX};
use crate::error::ErrorCode;
use crate::partitions::{ReadAt, Wait};
use crate::protocol::fetch::{
    encode_fetch_response, FetchHeader, FetchPartition, FetchTopic, FileRange,
};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

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
    /// The follower fetching, for a replica's fetch.
    replica: Option<i32>,
    /// KIP-320's `last_fetched_epoch` (v12+), -1 when not given.
    last_fetched_epoch: i32,
    /// `isolation_level` 1: read_committed.
    read_committed: bool,
}

/// What the owner read for one slot.
#[derive(Clone)]
struct Read {
    error: Option<ErrorCode>,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    aborted: Option<Vec<(i64, i64)>>,
    records: Option<FileRange>,
    diverging: Option<(i32, i64)>,
}

impl Read {
    fn failed(code: ErrorCode) -> Read {
        Read {
            error: Some(code),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted: None,
            records: None,
            diverging: None,
        }
    }

    /// Where the slot's readable data ends: see `PartitionRead::end`.
    fn end(&self, s: &Slot) -> i64 {
        match s.read_committed && s.replica.is_none() {
            true => self.last_stable_offset,
            false => self.high_watermark,
        }
    }

    fn bytes(&self) -> usize {
        self.records.as_ref().map_or(0, |r| r.len as usize)
    }
}

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
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
    // The response-level limit (KIP-74), also a cap on every partition's read, since no single
    // partition may carry more than the whole response (except a first batch, see below).
    let max_bytes = (body.max_bytes.max(0) as u32).min(FETCH_MAX_BYTES_DEFAULT);
    let (topics, slots) = resolve(shard, req, &body, max_bytes);
    let deadline = Instant::now()
        + Duration::from_millis(body.max_wait_ms.clamp(0, FETCH_MAX_WAIT_MS_MAX) as u64);
    let min_bytes = body.min_bytes.max(0) as usize;
    // Each round is one call per owner: it reads, or waits there for news and then reads
    // (`Partitions::read_or_watch`). A round that got less than `min_bytes` is followed by
    // one that waits for data past what this one saw.
    let mut wake_after: Vec<i64> = slots.iter().map(|s| s.offset).collect();
    let mut reads;
    loop {
        let wait = (!shard.shutting_down.get() && Instant::now() < deadline)
            .then(|| Wait::new(deadline, shard.count()));
        reads = read_or_watch(shard, &slots, &wake_after, wait).await;
        let total: usize = reads.iter().map(Read::bytes).sum();
        let failed = reads.iter().any(|r| r.error.is_some());
        if total >= min_bytes.max(1)
            || failed
            || Instant::now() >= deadline
            || shard.shutting_down.get()
        {
            break;
        }
        for ((after, s), r) in wake_after.iter_mut().zip(&slots).zip(&reads) {
            // Wake on data past what this fetch would already get: past the fetch offset when
            // there is none yet, past the current high watermark (last stable offset) when
            // there is too little.
            *after = s.offset.max(r.end(s));
        }
    }
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
fn resolve(
    shard: &Shard,
    req: &Request,
    body: &FetchRequest,
    max_bytes: u32,
) -> (Vec<RequestedTopic>, Vec<Slot>) {
    let image = shard.metadata();
    let by_id = req.version() >= 13;
    // A follower's fetch names its broker (Kafka's FetchRequest.replicaId()); consumers -1.
    let replica_id = if req.version() >= 15 {
        body.replica_state.replica_id.0
    } else {
        body.replica_id.0
    };
    let replica = (replica_id >= 0).then_some(replica_id);
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
                max_bytes: (p.partition_max_bytes.max(0) as u32).min(max_bytes),
                error: None,
                replica,
                last_fetched_epoch: if req.version() >= 12 {
                    p.last_fetched_epoch
                } else {
                    -1
                },
                read_committed: body.isolation_level == 1,
            };
            match meta {
                None if by_id => slot.error = Some(ErrorCode::UnknownTopicId),
                None => slot.error = Some(ErrorCode::UnknownTopicOrPartition),
                Some(m) if p.partition < 0 || p.partition >= m.partitions => {
                    slot.error = Some(ErrorCode::UnknownTopicOrPartition)
                }
                Some(m) => match m.check_leader_epoch(p.partition, p.current_leader_epoch) {
                    Some(e) => slot.error = Some(e),
                    None => slot.owner = shard.owner(m, p.partition),
                },
            }
            slots.push(slot);
        }
    }
    (topics, slots)
}

/// Reads every slot on its owner shard, one call per owner (which may wait there, see
/// [`Partitions::read_or_watch`](crate::partitions::Partitions::read_or_watch)).
async fn read_or_watch(
    shard: &Rc<Shard>,
    slots: &[Slot],
    wake_after: &[i64],
    wait: Option<Wait>,
) -> Vec<Read> {
    let mut reads: Vec<Read> = slots
        .iter()
        .map(|s| Read::failed(s.error.unwrap_or(ErrorCode::UnknownServerError)))
        .collect();
    let (indexes, items): (Vec<usize>, Vec<(usize, ReadAt)>) = slots
        .iter()
        .zip(wake_after)
        .enumerate()
        .filter(|(_, (s, _))| s.error.is_none())
        .map(|(i, (s, &after))| {
            let at = ReadAt {
                topic: s.topic.clone(),
                partition: s.partition,
                offset: s.offset,
                max_bytes: s.max_bytes,
                wake_after: after,
                replica: s.replica,
                last_fetched_epoch: s.last_fetched_epoch,
                read_committed: s.read_committed,
            };
            (i, (s.owner, at))
        })
        .unzip();
    let answers = shard
        .router
        .scatter_gather(shard, items, move |s, reads| async move {
            let wait = wait.map(|w| (s.id(), w));
            s.partitions.read_or_watch(&reads, wait).await
        })
        .await;
    for (i, a) in indexes.into_iter().zip(answers) {
        reads[i] = Read {
            error: a.error,
            high_watermark: a.high_watermark,
            last_stable_offset: a.last_stable_offset,
            log_start_offset: a.log_start_offset,
            aborted: a
                .aborted
                .map(|v| v.iter().map(|t| (t.producer_id, t.first_offset)).collect()),
            diverging: a.diverging,
            records: a.slice.map(|r| FileRange {
                file: r.file,
                position: r.position.0,
                len: r.len,
            }),
        };
    }
    reads
}

/// Applies the response-level `max_bytes` as Kafka does (KIP-74): partitions are filled in
/// request order, each within what the earlier ones left of `max_bytes`, and the limit is
/// exceeded only by the first batch of the first partition with data, which is sent whole even
/// when it alone is larger (so a consumer always makes progress). A later partition whose first
/// batch does not fit in what is left gets no records this time.
///
/// The owners read each partition independently (at most `max_bytes` each), so the ranges
/// of later partitions are cut here, at batch boundaries, by reading batch length fields from
/// the segment file (page cache; the bytes are written and stay readable through the open
/// descriptor even if the segment is deleted meanwhile), at most
/// [`FETCH_CUT_SCAN_BATCHES_MAX`] headers per response.
fn trim_to_max_bytes(reads: &mut [Read], max_bytes: usize) {
    let mut used = 0usize;
    let mut first = true;
    let mut scans_left = FETCH_CUT_SCAN_BATCHES_MAX;
    for r in reads.iter_mut() {
        let Some(range) = r.records.as_mut() else {
            continue;
        };
        let budget = max_bytes.saturating_sub(used);
        match whole_batches_within(range, budget, first, &mut scans_left) {
            Ok(0) => r.records = None,
            Ok(len) => {
                range.len = len;
                used += len as usize;
                first = false;
            }
            Err(e) => {
                // Not a client error: the partition is simply left out of this response and
                // the consumer asks again.
                tracing::warn!("fetch: cannot read batch headers to apply max_bytes: {e}");
                r.records = None;
            }
        }
    }
}

/// The length of a prefix of `range` made of whole batches that fits in `budget` (the longest
/// one, unless `scans_left` runs out first); with `min_one`, at least the first batch whatever
/// its size.
fn whole_batches_within(
    range: &FileRange,
    budget: usize,
    min_one: bool,
    scans_left: &mut usize,
) -> std::io::Result<u32> {
    use crate::log::batch::{peek_offset_and_len, HEADER_LEN, LOG_OVERHEAD};
    use std::os::unix::fs::FileExt;

    let total = range.len as usize;
    if total <= budget {
        return Ok(range.len);
    }
    if budget < HEADER_LEN && !min_one {
        // Not even an empty batch fits: no need to look.
        return Ok(0);
    }
    let mut taken = 0usize;
    let mut head = [0u8; LOG_OVERHEAD];
    while taken + LOG_OVERHEAD <= total && (*scans_left > 0 || (min_one && taken == 0)) {
        *scans_left = scans_left.saturating_sub(1);
        range
            .file
            .read_exact_at(&mut head, range.position + taken as u64)?;
        let (_, len) = peek_offset_and_len(&head).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "corrupt batch header inside a fetch range",
            )
        })?;
        let fits = taken + len <= budget || (min_one && taken == 0);
        if !fits || taken + len > total {
            break;
        }
        taken += len;
    }
    Ok(taken as u32)
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
                    last_stable_offset: r.last_stable_offset,
                    log_start_offset: r.log_start_offset,
                    aborted: r.aborted,
                    records: r.records,
                    diverging: r.diverging,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A file of fake batches of the given total sizes: only the length fields are real, which
    /// is all that `max_bytes` trimming reads.
    fn batches(sizes: &[usize]) -> Arc<std::fs::File> {
        let mut f = tempfile::tempfile().unwrap();
        for (i, &size) in sizes.iter().enumerate() {
            let mut b = vec![0u8; size];
            b[..8].copy_from_slice(&(i as i64).to_be_bytes());
            b[8..12].copy_from_slice(&((size - 12) as i32).to_be_bytes());
            f.write_all(&b).unwrap();
        }
        Arc::new(f)
    }

    fn read(file: &Arc<std::fs::File>, position: u64, len: u32) -> Read {
        Read {
            diverging: None,
            error: None,
            high_watermark: 0,
            last_stable_offset: 0,
            log_start_offset: 0,
            aborted: None,
            records: Some(FileRange {
                file: file.clone(),
                position,
                len,
            }),
        }
    }

    #[test]
    fn a_range_is_cut_at_batch_boundaries() {
        let f = batches(&[100, 200, 300]);
        let r = read(&f, 0, 600).records.unwrap();
        let cut = |budget, min_one| whole_batches_within(&r, budget, min_one, &mut 10).unwrap();
        assert_eq!(cut(600, false), 600);
        assert_eq!(cut(599, false), 300);
        assert_eq!(cut(299, false), 100);
        assert_eq!(cut(99, false), 0);
        // The first batch of the response goes whole whatever the budget.
        assert_eq!(cut(99, true), 100);
        assert_eq!(cut(0, true), 100);
        // Out of header reads: a shorter range, but still the first batch when it must go.
        let mut scans = 1;
        assert_eq!(
            whole_batches_within(&r, 599, false, &mut scans).unwrap(),
            100
        );
        assert_eq!(scans, 0);
        assert_eq!(whole_batches_within(&r, 599, false, &mut scans).unwrap(), 0);
        assert_eq!(
            whole_batches_within(&r, 599, true, &mut scans).unwrap(),
            100
        );
    }

    /// KIP-74: the response stays within `max_bytes` except for the first batch of the first
    /// partition with data; later partitions get what is left, in whole batches.
    #[test]
    fn max_bytes_caps_the_whole_response() {
        let f = batches(&[100, 200, 300, 300, 100]);
        let mut reads = vec![
            Read::failed(ErrorCode::UnknownTopicOrPartition),
            read(&f, 0, 600),
            read(&f, 600, 300),
            read(&f, 900, 100),
        ];
        trim_to_max_bytes(&mut reads, 450);
        let lens: Vec<usize> = reads.iter().map(Read::bytes).collect();
        assert_eq!(lens, vec![0, 300, 0, 100]);
        assert!(reads[2].records.is_none());

        // A first batch larger than max_bytes is sent alone; nothing else fits after it.
        let mut reads = vec![read(&f, 300, 600), read(&f, 900, 100)];
        trim_to_max_bytes(&mut reads, 250);
        let lens: Vec<usize> = reads.iter().map(Read::bytes).collect();
        assert_eq!(lens, vec![300, 0]);
    }
}

//! One consumer's fetch loop against one broker, with the partitions assigned to it (Kafka's
//! `assign()`: no group; TODO(groups): subscribe through a group once tidelog has them).
//!
//! One fetch is outstanding at a time, as in Kafka's consumer, but the next one is sent as soon
//! as the batch headers of the last response say where to continue, before its records are
//! walked, so the broker is never idle while loadgen counts and times records.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::conn::{self, Reader, Writer};
use crate::producer::CLIENT_ID;
use crate::stats::{now_us, Local, Shared};
use crate::wire;
use crate::Plan;

/// Fetch v12 and later use flexible encodings (response header v1).
const FETCH_FLEXIBLE_MIN: i16 = 12;
/// Fetch v13 and later name topics by id.
const FETCH_TOPIC_IDS_MIN: i16 = 13;

/// What one consumer task reads.
pub struct Job {
    pub addr: String,
    /// Indexes into `plan.cluster.targets`.
    pub targets: Vec<usize>,
}

/// One fetched partition, waiting to be walked.
struct Fetched {
    fetch_offset: i64,
    records: Bytes,
    /// When the response arrived: the consume time for end-to-end latency.
    received_us: u64,
}

/// Runs until told to stop, or (reading from the start with no producers) until every
/// partition has reached the end offset it had when the run began.
pub async fn run(plan: Arc<Plan>, job: Job, shared: Arc<Shared>, local: Rc<RefCell<Local>>) {
    if let Err(e) = consume(&plan, &job, &shared, &local).await {
        shared.fail(e);
    }
    shared.consumers_caught_up.fetch_add(1, Ordering::Relaxed);
}

async fn consume(
    plan: &Arc<Plan>,
    job: &Job,
    shared: &Arc<Shared>,
    local: &Rc<RefCell<Local>>,
) -> Result<(), String> {
    let (mut writer, mut reader) = conn::connect(&job.addr).await?;
    let cluster = &plan.cluster;
    let mut offsets: Vec<i64> = job
        .targets
        .iter()
        .map(|&t| cluster.start_offsets[t])
        .collect();
    let ends: Vec<i64> = job
        .targets
        .iter()
        .map(|&t| cluster.end_offsets[t])
        .collect();
    let stop_at_end = plan.args.producers == 0;
    let time_e2e = plan.args.producers > 0;
    let mut correlation_id = 0;
    let mut fetched: Vec<Fetched> = Vec::new();
    loop {
        if shared.stop_consumers.load(Ordering::Relaxed)
            || (stop_at_end && offsets.iter().zip(&ends).all(|(o, e)| o >= e))
        {
            break;
        }
        correlation_id += 1;
        send_fetch(plan, job, &offsets, &mut writer, correlation_id).await?;
        // Walk the previous response's records while the broker serves this fetch.
        walk(&mut fetched, shared, local, time_e2e);
        let resp = read_fetch(plan, &mut reader, correlation_id).await?;
        collect(plan, job, resp, &mut offsets, &mut fetched)?;
    }
    walk(&mut fetched, shared, local, time_e2e);
    Ok(())
}

async fn send_fetch(
    plan: &Plan,
    job: &Job,
    offsets: &[i64],
    writer: &mut Writer,
    correlation_id: i32,
) -> Result<(), String> {
    let args = &plan.args;
    let cluster = &plan.cluster;
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (slot, &t) in job.targets.iter().enumerate() {
        let target = &cluster.targets[t];
        let info = &cluster.topics[target.topic];
        let partition = FetchPartition::default()
            .with_partition(target.partition)
            .with_fetch_offset(offsets[slot])
            .with_partition_max_bytes(args.partition_fetch_bytes);
        match topics.last_mut() {
            Some(ft) if ft.topic.0.as_str() == info.name => ft.partitions.push(partition),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(tidelog::client::admin::topic_name(&info.name))
                    .with_topic_id(info.topic_id)
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let req = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(args.fetch_max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(args.fetch_max_bytes)
        .with_session_epoch(-1)
        .with_topics(topics);
    let frame = tidelog::client::conn::encode_request(
        &req,
        cluster.fetch_version,
        correlation_id,
        &StrBytes::from_static_str(CLIENT_ID),
    )
    .map_err(|e| e.to_string())?;
    writer.write_all(&frame).await
}

async fn read_fetch(
    plan: &Plan,
    reader: &mut Reader,
    correlation_id: i32,
) -> Result<FetchResponse, String> {
    let version = plan.cluster.fetch_version;
    let mut body = reader
        .response(correlation_id, version >= FETCH_FLEXIBLE_MIN)
        .await?;
    let resp = FetchResponse::decode(&mut body, version)
        .map_err(|e| format!("broker {}: fetch response: {e}", reader.addr))?;
    if resp.error_code != 0 {
        return Err(format!(
            "broker {}: fetch failed: {}",
            reader.addr,
            tidelog::client::error::error_name(resp.error_code)
        ));
    }
    Ok(resp)
}

/// Advances each partition's offset past the whole batches it received and keeps the record
/// bytes for [`walk`]. A partition error ends the run with its Kafka name.
fn collect(
    plan: &Plan,
    job: &Job,
    resp: FetchResponse,
    offsets: &mut [i64],
    fetched: &mut Vec<Fetched>,
) -> Result<(), String> {
    let cluster = &plan.cluster;
    let received_us = now_us();
    let by_ids = plan.cluster.fetch_version >= FETCH_TOPIC_IDS_MIN;
    let slots: HashMap<(usize, i32), usize> = job
        .targets
        .iter()
        .enumerate()
        .map(|(slot, &t)| {
            (
                (cluster.targets[t].topic, cluster.targets[t].partition),
                slot,
            )
        })
        .collect();
    for topic in resp.responses {
        let ti = cluster.topics.iter().position(|t| {
            if by_ids {
                t.topic_id == topic.topic_id
            } else {
                t.name == topic.topic.0.as_str()
            }
        });
        let Some(ti) = ti else { continue };
        for p in topic.partitions {
            let Some(&slot) = slots.get(&(ti, p.partition_index)) else {
                continue;
            };
            if p.error_code != 0 {
                return Err(format!(
                    "fetch {}-{} at offset {}: {}",
                    cluster.topics[ti].name,
                    p.partition_index,
                    offsets[slot],
                    tidelog::client::error::error_name(p.error_code)
                ));
            }
            let Some(records) = p.records.filter(|r| !r.is_empty()) else {
                continue;
            };
            if let Some(next) = wire::next_offset(&records) {
                let fetch_offset = offsets[slot];
                offsets[slot] = next.max(fetch_offset);
                fetched.push(Fetched {
                    fetch_offset,
                    records,
                    received_us,
                });
            }
        }
    }
    Ok(())
}

/// Counts the fetched records and times the end-to-end latency of each.
fn walk(fetched: &mut Vec<Fetched>, shared: &Shared, local: &RefCell<Local>, time_e2e: bool) {
    if fetched.is_empty() {
        return;
    }
    let mut local = local.borrow_mut();
    let (mut records, mut bytes, mut last) = (0, 0, 0);
    for f in fetched.drain(..) {
        let now = f.received_us;
        last = now;
        let s = wire::scan_records(f.records, f.fetch_offset, |t| {
            if time_e2e {
                local.e2e_latency(now.saturating_sub(t));
            }
        });
        records += s.records;
        bytes += s.value_bytes;
    }
    shared.consumed.fetch_add(records, Ordering::Relaxed);
    shared.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
    if records > 0 {
        shared.last_consume_us.fetch_max(last, Ordering::Relaxed);
    }
}

//! One producer's pipeline to one broker: records are generated (at the target rate, or as fast
//! as acknowledgements allow), gathered into per-partition batches, and sent in produce
//! requests with up to `--max-in-flight` of them outstanding on the connection.
//!
//! A writing task (this module's [`run`]) and a reading task ([`read_acks`]) share the
//! connection's two halves; requests in flight wait in a FIFO, because Kafka answers in order.
//!
//! Latency is measured from each record's *intended* send time: in an open-loop run that is its
//! slot in the schedule, not the moment the generator got round to it, so a stalled broker
//! shows up as latency instead of silently lowering the offered load (coordinated omission).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::sync::Semaphore;
use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::Compression;

use crate::accum::{Accumulator, Closed};
use crate::args::Keys;
use crate::conn::{self, Reader};
use crate::stats::{now_us, Local, Shared};
use crate::wire::{self, BatchBytes, KeyRef, PendingRecord, ProduceEncoder};
use crate::Plan;

/// The client id every loadgen connection announces.
pub const CLIENT_ID: &str = "tidelog-loadgen";
/// Kafka's UNKNOWN_SERVER_ERROR, for a partition missing from a produce response.
const UNKNOWN_SERVER_ERROR: i16 = -1;

/// What one producer task does: its share of the run.
pub struct Job {
    /// Broker address.
    pub addr: String,
    /// Indexes into `plan.cluster.targets`: the partitions this broker leads.
    pub targets: Vec<usize>,
    /// Messages/s for this task, `None` for as fast as possible.
    pub rate: Option<f64>,
    /// Records to produce at most (`u64::MAX`: until the deadline).
    pub quota: u64,
    /// Seed for keys and the first sticky partition.
    pub seed: u64,
}

/// A produce request in flight: its correlation id and the records of each partition.
struct InFlight {
    correlation_id: i32,
    batches: Vec<Closed>,
}

/// Requests in flight, oldest first: the writer sends, the reader receives in answer order.
type Queue = LocalSender<InFlight>;
/// Record vectors the reader has finished with, on their way back to the accumulator.
type Pool = Rc<RefCell<Vec<Vec<PendingRecord>>>>;

/// Chooses each record's partition and key.
struct Partitioner {
    keys: Keys,
    n: usize,
    sticky: usize,
    rng: u64,
    next_key: u32,
    /// Partition of each round-robin key.
    key_targets: Vec<usize>,
}

impl Partitioner {
    fn new(keys: Keys, plan: &Plan, n: usize, seed: u64) -> Partitioner {
        let key_targets = plan
            .shape
            .keys
            .iter()
            .map(|k| tidelog::client::produce::partition_for_key(k, n as i32) as usize)
            .collect();
        Partitioner {
            keys,
            n,
            sticky: (seed as usize) % n,
            rng: seed | 1,
            next_key: 0,
            key_targets,
        }
    }

    fn next(&mut self) -> (usize, KeyRef) {
        match self.keys {
            Keys::None => (self.sticky, KeyRef::None),
            Keys::Random => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                let k = self.rng;
                let t =
                    tidelog::client::produce::partition_for_key(&k.to_be_bytes(), self.n as i32);
                (t as usize, KeyRef::Random(k))
            }
            Keys::RoundRobin(count) => {
                let i = self.next_key;
                self.next_key = (i + 1) % count;
                (self.key_targets[i as usize], KeyRef::Table(i))
            }
        }
    }

    /// A batch filled up: a keyless producer moves on to the next partition (sticky).
    fn batch_closed(&mut self) {
        self.sticky = (self.sticky + 1) % self.n;
    }
}

/// The generator's position in its schedule.
struct Schedule {
    start_us: u64,
    interval_us: Option<f64>,
    generated: u64,
    quota: u64,
    end_us: u64,
}

impl Schedule {
    /// The intended send time of the next record.
    fn next_due(&self) -> u64 {
        match self.interval_us {
            Some(i) => self.start_us + (self.generated as f64 * i) as u64,
            None => 0,
        }
    }

    fn done(&self, now: u64) -> bool {
        self.generated >= self.quota || now >= self.end_us
    }
}

/// Runs one producer task to its deadline or quota, then waits for every acknowledgement.
pub async fn run(plan: Arc<Plan>, job: Job, shared: Arc<Shared>, local: Rc<RefCell<Local>>) {
    if let Err(e) = produce(&plan, &job, &shared, &local).await {
        shared.fail(e);
    }
    shared.producers_running.fetch_sub(1, Ordering::Relaxed);
}

async fn produce(
    plan: &Arc<Plan>,
    job: &Job,
    shared: &Arc<Shared>,
    local: &Rc<RefCell<Local>>,
) -> Result<(), String> {
    let (mut writer, reader) = conn::connect(&job.addr).await?;
    let args = &plan.args;
    let window = args.max_in_flight as u64;
    let sem = Rc::new(Semaphore::new(window));
    let (queue, answers) = local_channel::new_unbounded();
    let pool: Pool = Rc::default();
    let acks_task = (args.acks != 0).then(|| {
        glommio::spawn_local(read_acks(
            AckReader {
                plan: plan.clone(),
                job_targets: job.targets.clone(),
                reader,
                sem: sem.clone(),
                shared: shared.clone(),
                local: local.clone(),
                pool: pool.clone(),
            },
            answers,
        ))
    });
    let mut accum = Accumulator::new(
        job.targets.len(),
        args.batch_size,
        (args.linger_ms * 1000.0) as u64,
    );
    let mut part = Partitioner::new(args.keys, plan, job.targets.len(), job.seed);
    let mut sched = Schedule {
        start_us: plan.start_us,
        interval_us: job.rate.map(|r| 1e6 / r),
        generated: 0,
        quota: job.quota,
        end_us: plan.end_us,
    };
    let record_bytes = args.record_size + 24;
    let mut sender = Sender::new(plan, job);
    loop {
        let now = now_us();
        if sched.done(now) || shared.failed() {
            break;
        }
        generate(&mut sched, &mut accum, &mut part, now, record_bytes, args);
        accum.expire(now);
        if accum.sendable().0 > 0 {
            if sem.acquire(1).await.is_err() {
                break; // the reader failed and closed the window
            }
            sender.send(&mut writer, &mut accum, &queue, shared).await?;
            for v in pool.borrow_mut().drain(..) {
                accum.recycle(v);
            }
            continue;
        }
        let wake = [Some(sched.next_due()), accum.next_deadline()]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .min()
            .unwrap_or(now + 1000)
            .min(sched.end_us);
        glommio::timer::sleep(Duration::from_micros(wake.saturating_sub(now).max(1))).await;
    }
    accum.close_all();
    while accum.sendable().0 > 0 && !shared.failed() {
        if sem.acquire(1).await.is_err() {
            break;
        }
        sender.send(&mut writer, &mut accum, &queue, shared).await?;
    }
    // Every permit back means every request has been answered.
    if acks_task.is_some() {
        let _ = sem.acquire(window).await;
    }
    drop(acks_task);
    Ok(())
}

/// Generates the records that are due: those whose slot has come (open loop), or enough to fill
/// one request (as fast as possible).
fn generate(
    sched: &mut Schedule,
    accum: &mut Accumulator,
    part: &mut Partitioner,
    now: u64,
    record_bytes: usize,
    args: &crate::args::Args,
) {
    let n = part.n;
    loop {
        if sched.generated >= sched.quota {
            return;
        }
        let t_us = match sched.interval_us {
            Some(_) => {
                let due = sched.next_due();
                if due > now {
                    return;
                }
                due
            }
            None => {
                // Enough for one full request, without piling up batches of partitions that
                // can only leave one per request.
                let (ready, bytes) = accum.sendable();
                if ready >= n
                    || bytes >= args.max_request_bytes
                    || accum.pending_bytes() >= 2 * args.max_request_bytes
                {
                    return;
                }
                now
            }
        };
        let (target, key) = part.next();
        sched.generated += 1;
        if accum.append(target, PendingRecord { key, t_us }, record_bytes) {
            part.batch_closed();
        }
    }
}

/// Encodes and writes produce requests; owns the reusable request buffer.
struct Sender {
    buf: BytesMut,
    taken: Vec<Closed>,
    correlation_id: i32,
    topic_names: Vec<String>,
    /// (topic index, partition) of each of the job's targets.
    targets: Vec<(usize, i32)>,
    plan: Arc<Plan>,
}

impl Sender {
    fn new(plan: &Arc<Plan>, job: &Job) -> Sender {
        let cluster = &plan.cluster;
        Sender {
            buf: BytesMut::with_capacity(plan.args.max_request_bytes + 4096),
            taken: Vec::new(),
            correlation_id: 0,
            topic_names: cluster.topics.iter().map(|t| t.name.clone()).collect(),
            targets: job
                .targets
                .iter()
                .map(|&i| (cluster.targets[i].topic, cluster.targets[i].partition))
                .collect(),
            plan: plan.clone(),
        }
    }

    /// Sends one request with the ready batches that fit.
    async fn send(
        &mut self,
        writer: &mut conn::Writer,
        accum: &mut Accumulator,
        queue: &Queue,
        shared: &Shared,
    ) -> Result<(), String> {
        let plan = self.plan.clone();
        let args = &plan.args;
        self.taken.clear();
        accum.take(args.max_request_bytes, &mut self.taken);
        let targets = &self.targets;
        self.taken.sort_unstable_by_key(|c| targets[c.target]);
        let records: u64 = self.taken.iter().map(|c| c.records.len() as u64).sum();
        self.encode()?;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let batches = std::mem::take(&mut self.taken);
        if args.acks != 0 {
            let inflight = InFlight {
                correlation_id: self.correlation_id,
                batches,
            };
            if queue.try_send(inflight).is_err() {
                return Err("the acknowledgement reader stopped".into());
            }
        }
        writer.write_all(&self.buf).await?;
        self.buf.clear();
        shared.sent.fetch_add(records, Ordering::Relaxed);
        if args.acks == 0 {
            shared.acked.fetch_add(records, Ordering::Relaxed);
            shared
                .acked_bytes
                .fetch_add(records * args.record_size as u64, Ordering::Relaxed);
            shared.last_ack_us.fetch_max(now_us(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes the request for `self.taken` (sorted by topic, then partition) into `self.buf`.
    fn encode(&mut self) -> Result<(), String> {
        let plan = self.plan.clone();
        let args = &plan.args;
        let enc = ProduceEncoder {
            version: plan.cluster.produce_version,
            acks: args.acks,
            timeout_ms: args.request_timeout_ms,
            client_id: CLIENT_ID,
            shape: &plan.shape,
            ts_ms: (now_us() / 1000) as i64,
        };
        let topic_of = |c: &Closed| self.targets[c.target].0;
        let mut topic_count = 0;
        for (i, c) in self.taken.iter().enumerate() {
            if i == 0 || topic_of(&self.taken[i - 1]) != topic_of(c) {
                topic_count += 1;
            }
        }
        let start = enc.begin(
            &mut self.buf,
            self.correlation_id.wrapping_add(1),
            topic_count,
        );
        let mut i = 0;
        while i < self.taken.len() {
            let topic = topic_of(&self.taken[i]);
            let run = self.taken[i..]
                .iter()
                .take_while(|c| topic_of(c) == topic)
                .count();
            enc.begin_topic(&mut self.buf, &self.topic_names[topic], run);
            for c in &self.taken[i..i + run] {
                let partition = self.targets[c.target].1;
                if args.compression == Compression::None {
                    enc.put_partition(&mut self.buf, partition, BatchBytes::Plain(&c.records));
                } else {
                    let b: Bytes = wire::compressed_batch(
                        &plan.shape,
                        &c.records,
                        enc.ts_ms,
                        args.compression,
                    )?;
                    enc.put_partition(&mut self.buf, partition, BatchBytes::Encoded(&b));
                }
            }
            enc.end_topic(&mut self.buf);
            i += run;
        }
        enc.finish(&mut self.buf, start);
        Ok(())
    }
}

/// The reading half of a producer's connection and what it reports to.
struct AckReader {
    plan: Arc<Plan>,
    job_targets: Vec<usize>,
    reader: Reader,
    sem: Rc<Semaphore>,
    shared: Arc<Shared>,
    local: Rc<RefCell<Local>>,
    pool: Pool,
}

/// Reads produce responses in order, records each record's latency, counts refusals.
async fn read_acks(mut r: AckReader, answers: LocalReceiver<InFlight>) {
    let version = r.plan.cluster.produce_version;
    let flexible = version >= 9;
    while let Some(inflight) = answers.recv().await {
        let resp = match r.reader.response(inflight.correlation_id, flexible).await {
            Ok(mut body) => ProduceResponse::decode(&mut body, version)
                .map_err(|e| format!("broker {}: produce response: {e}", r.reader.addr)),
            Err(e) => Err(e),
        };
        match resp {
            Ok(resp) => {
                account(&r, &inflight, &resp);
                let mut pool = r.pool.borrow_mut();
                pool.extend(inflight.batches.into_iter().map(|c| c.records));
                drop(pool);
                r.sem.signal(1);
            }
            Err(e) => {
                r.shared.fail(e);
                r.sem.close();
                return;
            }
        }
    }
}

/// Matches a response's partitions with the batches sent, and counts and times them.
fn account(r: &AckReader, inflight: &InFlight, resp: &ProduceResponse) {
    let (plan, job_targets, shared) = (&r.plan, &r.job_targets, &r.shared);
    let now = now_us();
    let cluster = &plan.cluster;
    let mut acked = 0u64;
    let mut local = r.local.borrow_mut();
    for c in &inflight.batches {
        let target = &cluster.targets[job_targets[c.target]];
        let name = &cluster.topics[target.topic].name;
        let code = resp
            .responses
            .iter()
            .filter(|t| t.name.0.as_str() == name)
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == target.partition)
            .map_or(UNKNOWN_SERVER_ERROR, |p| p.error_code);
        if code != 0 {
            shared.reject(c.records.len() as u64, code);
            continue;
        }
        acked += c.records.len() as u64;
        // Records generated together share a timestamp: record each run once.
        let mut run_start = 0;
        for i in 1..=c.records.len() {
            if i == c.records.len() || c.records[i].t_us != c.records[run_start].t_us {
                let t = c.records[run_start].t_us;
                local.produce_latency(now.saturating_sub(t), (i - run_start) as u64);
                run_start = i;
            }
        }
    }
    shared.acked.fetch_add(acked, Ordering::Relaxed);
    shared
        .acked_bytes
        .fetch_add(acked * plan.args.record_size as u64, Ordering::Relaxed);
    shared.last_ack_us.fetch_max(now, Ordering::Relaxed);
}

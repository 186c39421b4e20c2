//! The run: producers and consumers spread over one pinned glommio executor per CPU, and the
//! main thread reporting progress every second and deciding when the run is over.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use crate::stats::{now_us, Local, Sample, Shared, Totals, FLUSH_INTERVAL};
use crate::{consumer, producer, Plan};

/// How long consumers may take to catch up once the producers are done.
const CATCH_UP_GRACE_US: u64 = 10_000_000;
/// How often the main thread looks at the counters.
const POLL: Duration = Duration::from_millis(20);

/// A unit of work for one executor.
enum Work {
    Produce(producer::Job),
    Consume(consumer::Job),
}

/// What the run measured, over the measurement window (after the warm-up).
pub struct Outcome {
    pub totals: Totals,
    pub sent: u64,
    pub acked: u64,
    pub acked_bytes: u64,
    pub rejected: u64,
    pub rejections: BTreeMap<String, u64>,
    pub consumed: u64,
    pub consumed_bytes: u64,
    /// Seconds from the end of the warm-up to the last acknowledgement / consumed record.
    pub produce_secs: f64,
    pub consume_secs: f64,
    /// Whether the consumers stopped before reading every acknowledged record.
    pub consumers_behind: bool,
    pub fatal: Option<String>,
}

/// Splits the work: every producer gets one task per broker (with the partitions that broker
/// leads); the partitions are dealt round-robin to the consumers, again one task per broker.
fn plan_work(plan: &Plan, executors: usize) -> (Vec<Vec<Work>>, usize) {
    let args = &plan.args;
    let cluster = &plan.cluster;
    let mut by_node: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, t) in cluster.targets.iter().enumerate() {
        by_node.entry(t.leader).or_default().push(i);
    }
    let total = cluster.targets.len() as f64;
    let mut work: Vec<Vec<Work>> = (0..executors).map(|_| Vec::new()).collect();
    let mut producer_tasks = 0;
    let task_count = args.producers * by_node.len();
    for p in 0..args.producers {
        for (node, targets) in &by_node {
            let share = targets.len() as f64 / total / args.producers as f64;
            let k = producer_tasks as u64;
            let quota = args.records.map_or(u64::MAX, |n| {
                n / task_count as u64 + u64::from(k < n % task_count as u64)
            });
            work[producer_tasks % executors].push(Work::Produce(producer::Job {
                addr: cluster.nodes[node].clone(),
                targets: targets.clone(),
                rate: args.target_rate().map(|r| r * share),
                quota,
                seed: 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(p as u64 + 1),
            }));
            producer_tasks += 1;
        }
    }
    for c in 0..args.consumers {
        let mine: Vec<usize> = (c..cluster.targets.len()).step_by(args.consumers).collect();
        let mut per_node: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for t in mine {
            per_node
                .entry(cluster.targets[t].leader)
                .or_default()
                .push(t);
        }
        for (node, targets) in per_node {
            let e = (producer_tasks + c) % executors;
            work[e].push(Work::Consume(consumer::Job {
                addr: cluster.nodes[&node].clone(),
                targets,
            }));
        }
    }
    (work, producer_tasks)
}

/// Runs the workload and returns what it measured.
pub fn run(plan: Arc<Plan>, cpus: &[usize], io_memory: usize) -> Result<Outcome, String> {
    let (work, producer_tasks) = plan_work(&plan, cpus.len());
    let consumer_tasks: usize = work
        .iter()
        .flatten()
        .filter(|w| matches!(w, Work::Consume(_)))
        .count();
    let shared = Arc::new(Shared::new(producer_tasks));
    let running = Arc::new(AtomicUsize::new(cpus.len()));
    let mut handles = Vec::new();
    for (i, (cpu, jobs)) in cpus.iter().zip(work).enumerate() {
        let (plan, shared, running) = (plan.clone(), shared.clone(), running.clone());
        let handle = LocalExecutorBuilder::new(Placement::Fixed(*cpu))
            .name(&format!("loadgen-{i}"))
            .io_memory(io_memory)
            .preempt_timer(Duration::from_millis(10))
            .spawn(move || async move {
                executor_main(plan, jobs, shared.clone()).await;
                running.fetch_sub(1, Ordering::Relaxed);
            })
            .map_err(|e| format!("cannot start an executor on CPU {cpu}: {e}"))?;
        handles.push(handle);
    }
    let (totals, base) = report_until_done(&plan, &shared, &running, consumer_tasks);
    for h in handles {
        let _ = h.join();
    }
    Ok(outcome(&plan, &shared, totals, base))
}

async fn executor_main(plan: Arc<Plan>, jobs: Vec<Work>, shared: Arc<Shared>) {
    let local = Rc::new(RefCell::new(Local::new()));
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|w| match w {
            Work::Produce(job) => glommio::spawn_local(producer::run(
                plan.clone(),
                job,
                shared.clone(),
                local.clone(),
            )),
            Work::Consume(job) => glommio::spawn_local(consumer::run(
                plan.clone(),
                job,
                shared.clone(),
                local.clone(),
            )),
        })
        .collect();
    let flusher = {
        let (local, shared) = (local.clone(), shared.clone());
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(FLUSH_INTERVAL).await;
                local.borrow_mut().flush(&shared);
            }
        })
    };
    for t in tasks {
        t.await;
    }
    drop(flusher);
    local.borrow_mut().flush(&shared);
}

/// Counter values at the end of the warm-up.
#[derive(Default, Clone, Copy)]
pub struct Counts {
    pub sent: u64,
    pub acked: u64,
    pub acked_bytes: u64,
    pub consumed: u64,
    pub consumed_bytes: u64,
}

impl Counts {
    fn read(s: &Shared) -> Counts {
        Counts {
            sent: s.sent.load(Ordering::Relaxed),
            acked: s.acked.load(Ordering::Relaxed),
            acked_bytes: s.acked_bytes.load(Ordering::Relaxed),
            consumed: s.consumed.load(Ordering::Relaxed),
            consumed_bytes: s.consumed_bytes.load(Ordering::Relaxed),
        }
    }
}

/// The main thread's loop: a progress line and a plot sample every second, the warm-up reset,
/// and the end of the run (stopping consumers once they have read what was produced).
fn report_until_done(
    plan: &Plan,
    shared: &Shared,
    running: &AtomicUsize,
    consumer_tasks: usize,
) -> (Totals, Counts) {
    let args = &plan.args;
    let mut totals = Totals::new();
    let mut base = Counts::default();
    let mut prev = Counts::default();
    let mut warm = args.warmup.is_zero();
    let mut next_tick = plan.start_us + 1_000_000;
    let mut producers_done_at = None;
    let hang_deadline = plan.end_us + (args.request_timeout_ms as u64 + 30_000) * 1000;
    while running.load(Ordering::Relaxed) > 0 {
        std::thread::sleep(POLL);
        let now = now_us();
        if !warm && now >= plan.measure_start_us {
            warm = true;
            totals.absorb(shared);
            totals.reset();
            base = Counts::read(shared);
        }
        if now >= next_tick {
            let c = Counts::read(shared);
            let interval = totals.absorb(shared);
            let sample = Sample {
                t_s: (now - plan.start_us) as f64 / 1e6,
                produce_msgs_per_sec: (c.acked - prev.acked) as f64,
                produce_bytes_per_sec: (c.acked_bytes - prev.acked_bytes) as f64,
                consume_msgs_per_sec: (c.consumed - prev.consumed) as f64,
                produce_p99_us: interval.produce.value_at_quantile(0.99),
                e2e_p99_us: interval.e2e.value_at_quantile(0.99),
            };
            if !args.quiet {
                crate::report::progress(args, &sample, &c, &prev, &totals);
            }
            totals.samples.push(sample);
            prev = c;
            next_tick += 1_000_000;
        }
        let producing = shared.producers_running.load(Ordering::Relaxed) > 0;
        if !producing && producers_done_at.is_none() {
            producers_done_at = Some(now);
        }
        let stop = match producers_done_at {
            _ if args.producers == 0 => now >= plan.end_us,
            None => {
                if now >= hang_deadline {
                    shared.fail("the broker stopped acknowledging produce requests".into());
                }
                false
            }
            Some(at) => {
                let c = Counts::read(shared);
                c.consumed >= c.acked || now >= at + CATCH_UP_GRACE_US
            }
        };
        if stop && consumer_tasks > 0 {
            shared.stop_consumers.store(true, Ordering::Relaxed);
        }
    }
    totals.absorb(shared);
    (totals, base)
}

/// The measurement window's figures.
fn outcome(plan: &Plan, shared: &Shared, totals: Totals, base: Counts) -> Outcome {
    let end = Counts::read(shared);
    let window =
        |last_us: u64| (last_us.saturating_sub(plan.measure_start_us) as f64 / 1e6).max(1e-6);
    let acked = end.acked - base.acked;
    let consumed = end.consumed - base.consumed;
    Outcome {
        totals,
        sent: end.sent - base.sent,
        acked,
        acked_bytes: end.acked_bytes - base.acked_bytes,
        rejected: shared.rejected.load(Ordering::Relaxed),
        rejections: shared.rejections.lock().expect("not poisoned").clone(),
        consumed,
        consumed_bytes: end.consumed_bytes - base.consumed_bytes,
        produce_secs: window(shared.last_ack_us.load(Ordering::Relaxed)),
        consume_secs: window(shared.last_consume_us.load(Ordering::Relaxed)),
        consumers_behind: plan.args.producers > 0
            && plan.args.consumers > 0
            && end.consumed < end.acked,
        fatal: shared.fatal.lock().expect("not poisoned").clone(),
    }
}

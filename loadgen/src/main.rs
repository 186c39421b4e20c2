//! `tidelog-loadgen`: a Kafka load generator of our own, thread-per-core like the broker, that
//! drives any Kafka-compatible broker (tidelog, Apache Kafka, Redpanda) with pipelined produce
//! requests and fetches, and measures throughput and latency with HdrHistogram.
//!
//! # Layout
//!
//! - [`args`]: the command line, in the shape of OpenMessaging Benchmark workloads.
//! - [`setup`]: topics, leaders, API versions and start offsets, through tidelog's blocking
//!   client (not the data path).
//! - [`run`]: one pinned glommio executor per CPU, the work spread over them, and the main
//!   thread's progress reporting and end-of-run decisions.
//! - [`producer`], [`accum`]: the pipelined producer and its per-partition batches.
//! - [`consumer`]: the fetch loop (assign(), or a group member's partitions).
//! - [`member`]: a consumer as a group member: join, sync, heartbeat, commit, leave. The
//!   requests, the range assignor and the consumer-protocol payloads are the broker crate's
//!   (`tidelog::protocol::consumer_group`), shared with its CLI client.
//! - [`conn`]: a connection split into a writing and a reading half.
//! - [`wire`]: produce requests and record batches written by hand; record scanning, over the
//!   broker crate's batch codec (`tidelog::protocol::batch`).
//! - [`stats`], [`report`], [`plot`]: counters, histograms, the summary, `--json`, `--plot`.

mod accum;
mod args;
mod conn;
mod consumer;
mod member;
mod plot;
mod producer;
mod report;
mod run;
mod setup;
mod stats;
mod wire;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use args::Args;
use setup::Cluster;
use wire::RecordShape;

/// Everything fixed for the run, shared read-only by every executor.
pub struct Plan {
    pub args: Args,
    pub cluster: Cluster,
    pub shape: RecordShape,
    /// When producing starts, the warm-up ends, and producing stops (µs, `stats::now_us`).
    pub start_us: u64,
    pub measure_start_us: u64,
    pub end_us: u64,
}

/// Exit status when the broker rejected records: the figures are not of a clean run.
const EXIT_REJECTED: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    match run_main(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tidelog-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_main(args: Args) -> Result<ExitCode, String> {
    args.validate()?;
    let cpus = args.cpus.clone().map_or_else(args::allowed_cpus, |c| c.0);
    let memlock = tidelog::runtime::raise_memlock_limit(
        cpus.len(),
        tidelog::runtime::IO_MEMORY_BYTES_DEFAULT,
    )?;
    let cluster = setup::prepare(&args)?;
    let key_count = match args.keys {
        args::Keys::RoundRobin(n) => n,
        _ => 0,
    };
    let start_us = stats::now_us();
    let measure_start_us = start_us + args.warmup.as_micros() as u64;
    let plan = Arc::new(Plan {
        shape: RecordShape::new(args.record_size, key_count),
        cluster,
        start_us,
        measure_start_us,
        end_us: measure_start_us + args.duration.as_micros() as u64,
        args,
    });
    let outcome = run::run(plan.clone(), &cpus, memlock.io_memory)?;
    let args = &plan.args;
    if args.json {
        println!("{}", report::json(args, &outcome));
        report::warnings(&outcome);
    } else {
        report::summary(args, &outcome);
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{} x {} B records, acks={}, {} producer(s), {} consumer(s)",
            args.topic, args.record_size, args.acks, args.producers, args.consumers
        );
        std::fs::write(path, plot::svg(&outcome, &title))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(e) = outcome.fatal {
        return Err(e);
    }
    Ok(if outcome.rejected > 0 {
        ExitCode::from(EXIT_REJECTED)
    } else {
        ExitCode::SUCCESS
    })
}

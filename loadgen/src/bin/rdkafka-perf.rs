//! `rdkafka-perf`: the librdkafka baseline that `benches/run.sh` holds loadgen against.
//!
//! A tuned librdkafka producer (sync `BaseProducer`, `linger.ms`/`batch.size` set for
//! throughput) or consumer (sync `BaseConsumer`, assign() from the beginning), driven as fast as
//! it goes, printing the same JSON keys as `tidelog-loadgen --json` so the two compare
//! line by line. No tokio: librdkafka's own threads do the I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::json;

/// librdkafka producer or consumer throughput, in loadgen's JSON shape.
#[derive(Parser, Debug)]
#[command(name = "rdkafka-perf")]
struct Args {
    /// `produce` or `consume`.
    #[arg(value_parser = ["produce", "consume"])]
    mode: String,
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap_server: String,
    #[arg(long)]
    topic: String,
    /// Value bytes per record.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// `acks`: 0, 1, all.
    #[arg(long, default_value = "1", allow_hyphen_values = true)]
    acks: String,
    /// `linger.ms`.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// `batch.size` (bytes per partition batch).
    #[arg(long, default_value_t = 1_000_000)]
    batch_size: usize,
    /// `compression.type`.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Records to produce, or to consume (consume stops after them).
    #[arg(long)]
    records: Option<u64>,
    /// Seconds to produce for when `--records` is not given.
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Extra librdkafka settings, KEY=VALUE (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print the JSON object (the default prints a one-line summary as well).
    #[arg(long)]
    json: bool,
    /// An idempotent producer (`enable.idempotence=true`); transactions imply it.
    #[arg(long)]
    idempotent: bool,
    /// Produce in transactions (`transactional.id`), committing after this many records...
    #[arg(long, value_name = "N")]
    txn_records: Option<u64>,
    /// ...or after this many milliseconds, whichever comes first.
    #[arg(long, value_name = "MS")]
    txn_ms: Option<u64>,
}

/// When a transactional run commits: every `records` records or `every`, whichever first.
struct TxnPolicy {
    records: u64,
    every: Duration,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Counts deliveries and times them from enqueue to acknowledgement.
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    last_us: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// The enqueue time, µs.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_us: usize) {
        let now = now_us();
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let lat = now.saturating_sub(sent_us as u64).max(1);
                let _ = self.latency.lock().expect("not poisoned").record(lat);
            }
            Err((e, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("rdkafka-perf: delivery failed: {e}");
                }
            }
        }
        self.last_us.fetch_max(now, Ordering::Relaxed);
    }
}

fn config(args: &Args) -> Result<ClientConfig, String> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &args.bootstrap_server);
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set wants KEY=VALUE, got {kv:?}"))?;
        cfg.set(k, v);
    }
    Ok(cfg)
}

fn produce(args: &Args) -> Result<serde_json::Value, String> {
    let txn = (args.txn_records.is_some() || args.txn_ms.is_some()).then(|| TxnPolicy {
        records: args.txn_records.unwrap_or(u64::MAX),
        every: Duration::from_millis(args.txn_ms.unwrap_or(u64::MAX / 2)),
    });
    let mut cfg = config(args)?;
    cfg.set("acks", &args.acks)
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_size.to_string())
        .set("batch.num.messages", "1000000")
        .set("compression.type", &args.compression)
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set(
            "enable.idempotence",
            (args.idempotent || txn.is_some()).to_string(),
        )
        .set("message.timeout.ms", "60000");
    if txn.is_some() {
        cfg.set("transactional.id", "rdkafka-perf-txn");
    }
    let ctx = Deliveries {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        last_us: AtomicU64::new(0),
        latency: Mutex::new(Histogram::new(3).expect("valid")),
    };
    let producer: BaseProducer<Deliveries> = cfg
        .create_with_context(ctx)
        .map_err(|e| format!("cannot create producer: {e}"))?;
    let payload = vec![b'x'; args.record_size];
    let quota = args.records.unwrap_or(u64::MAX);
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration_s);
    let txn_err = |e: rdkafka::error::KafkaError| format!("transaction: {e}");
    if txn.is_some() {
        producer
            .init_transactions(Duration::from_secs(30))
            .map_err(txn_err)?;
        producer.begin_transaction().map_err(txn_err)?;
    }
    let (mut txn_sent, mut txn_began, mut commits) = (0u64, Instant::now(), 0u64);
    let start_us = now_us();
    let mut sent = 0u64;
    while sent < quota && (args.records.is_some() || Instant::now() < deadline) {
        if let Some(t) = &txn {
            if txn_sent >= t.records || txn_began.elapsed() >= t.every {
                producer
                    .commit_transaction(Duration::from_secs(60))
                    .map_err(txn_err)?;
                producer.begin_transaction().map_err(txn_err)?;
                (txn_sent, txn_began) = (0, Instant::now());
                commits += 1;
            }
            txn_sent += 1;
        }
        let mut rec = BaseRecord::with_opaque_to(&args.topic, now_us() as usize).payload(&payload);
        loop {
            match producer.send::<(), _>(rec) {
                Ok(()) => break,
                Err((e, back)) => {
                    if !e.to_string().contains("Queue full") {
                        return Err(format!("send failed: {e}"));
                    }
                    producer.poll(Duration::from_millis(1));
                    rec = back;
                }
            }
        }
        sent += 1;
        if sent % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| format!("flush failed: {e}"))?;
    if txn.is_some() {
        producer
            .commit_transaction(Duration::from_secs(60))
            .map_err(txn_err)?;
        commits += 1;
    }
    let ctx = producer.context();
    let ok = ctx.ok.load(Ordering::Relaxed);
    let secs =
        (ctx.last_us.load(Ordering::Relaxed).saturating_sub(start_us) as f64 / 1e6).max(1e-6);
    let h = ctx.latency.lock().expect("not poisoned");
    Ok(json!({
        "produce_msgs_per_sec": ok as f64 / secs,
        "produce_bytes_per_sec": (ok * args.record_size as u64) as f64 / secs,
        "consume_msgs_per_sec": 0.0,
        "consume_bytes_per_sec": 0.0,
        "produce_latency_us": {"p50": h.value_at_quantile(0.5), "p99": h.value_at_quantile(0.99),
            "p999": h.value_at_quantile(0.999), "max": h.max()},
        "e2e_latency_us": {"p50": 0, "p99": 0, "p999": 0, "max": 0},
        "records_sent": sent,
        "records_acked": ok,
        "records_rejected": ctx.failed.load(Ordering::Relaxed),
        "produce_secs": secs,
        "transactions_committed": commits,
    }))
}

fn consume(args: &Args) -> Result<serde_json::Value, String> {
    let mut cfg = config(args)?;
    cfg.set("group.id", "rdkafka-perf-assign-only")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "1048576")
        .set("queued.max.messages.kbytes", "1048576")
        .set("fetch.wait.max.ms", "500");
    let consumer: BaseConsumer = cfg
        .create()
        .map_err(|e| format!("cannot create consumer: {e}"))?;
    let md = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata: {e}"))?;
    let topic = md
        .topics()
        .iter()
        .find(|t| t.name() == args.topic)
        .ok_or_else(|| format!("topic {:?} not found", args.topic))?;
    let mut tpl = TopicPartitionList::new();
    let mut end_total = 0u64;
    for p in topic.partitions() {
        tpl.add_partition_offset(&args.topic, p.id(), Offset::Beginning)
            .map_err(|e| e.to_string())?;
        let (lo, hi) = consumer
            .fetch_watermarks(&args.topic, p.id(), Duration::from_secs(10))
            .map_err(|e| format!("watermarks: {e}"))?;
        end_total += (hi - lo).max(0) as u64;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let want = args.records.unwrap_or(end_total);
    let start = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut idle_since = Instant::now();
    while n < want {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                bytes += m.payload_len() as u64;
                idle_since = Instant::now();
            }
            Some(Err(e)) => return Err(format!("consume error: {e}")),
            None if idle_since.elapsed() > Duration::from_secs(10) => break,
            None => {}
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-6);
    Ok(json!({
        "produce_msgs_per_sec": 0.0,
        "produce_bytes_per_sec": 0.0,
        "consume_msgs_per_sec": n as f64 / secs,
        "consume_bytes_per_sec": bytes as f64 / secs,
        "produce_latency_us": {"p50": 0, "p99": 0, "p999": 0, "max": 0},
        "e2e_latency_us": {"p50": 0, "p99": 0, "p999": 0, "max": 0},
        "records_consumed": n,
        "consume_secs": secs,
    }))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = if args.mode == "produce" {
        produce(&args)
    } else {
        consume(&args)
    };
    match result {
        Ok(v) => {
            if args.json {
                println!("{v}");
            } else {
                println!(
                    "librdkafka {}: {:.1} msgs/s, {:.2} MB/s",
                    args.mode,
                    v["produce_msgs_per_sec"].as_f64().unwrap_or(0.0)
                        + v["consume_msgs_per_sec"].as_f64().unwrap_or(0.0),
                    (v["produce_bytes_per_sec"].as_f64().unwrap_or(0.0)
                        + v["consume_bytes_per_sec"].as_f64().unwrap_or(0.0))
                        / 1048576.0
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rdkafka-perf: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! What loadgen prints: a progress line every second (like kafka-producer-perf-test), the final
//! summary with latency percentiles, and the `--json` object for scripts.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::args::Args;
use crate::run::{Counts, Outcome};
use crate::stats::{Sample, Totals};

const MB: f64 = 1024.0 * 1024.0;

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One progress line (stderr with `--json`, so stdout stays one JSON object).
pub fn progress(args: &Args, s: &Sample, c: &Counts, prev: &Counts, totals: &Totals) {
    let mut line = String::new();
    if args.producers > 0 {
        line.push_str(&format!(
            "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.2} ms p99 latency (so far)",
            c.sent - prev.sent,
            s.produce_msgs_per_sec,
            s.produce_bytes_per_sec / MB,
            ms(totals.hists.produce.value_at_quantile(0.99)),
        ));
    }
    if args.consumers > 0 {
        if !line.is_empty() {
            line.push_str("; ");
        }
        line.push_str(&format!(
            "{:.1} records/sec consumed ({:.2} MB/sec)",
            s.consume_msgs_per_sec,
            (c.consumed_bytes - prev.consumed_bytes) as f64 / MB,
        ));
        if args.producers > 0 {
            line.push_str(&format!(
                ", {:.2} ms p99 end-to-end (so far)",
                ms(totals.hists.e2e.value_at_quantile(0.99))
            ));
        }
    }
    if args.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// The percentiles every report shows.
const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p999", 0.999),
    ("p9999", 0.9999),
];

fn latency_line(h: &Histogram<u64>) -> String {
    let mut s = format!("  {} samples, mean {:.3} ms", h.len(), h.mean() / 1000.0);
    for (name, q) in QUANTILES {
        let label = match name {
            "p999" => "p99.9",
            "p9999" => "p99.99",
            n => n,
        };
        s.push_str(&format!(", {label} {:.3}", ms(h.value_at_quantile(q))));
    }
    s.push_str(&format!(", max {:.3} ms", ms(h.max())));
    s
}

/// The human summary.
pub fn summary(args: &Args, o: &Outcome) {
    if args.producers > 0 {
        println!(
            "produce: {} records acknowledged in {:.2} s: {:.1} records/sec ({:.2} MB/sec), \
             {} sent, {} rejected",
            o.acked,
            o.produce_secs,
            o.acked as f64 / o.produce_secs,
            o.acked_bytes as f64 / o.produce_secs / MB,
            o.sent,
            o.rejected,
        );
        if args.acks != 0 {
            println!("produce latency (ms, from intended send time to acknowledgement):");
            println!("{}", latency_line(&o.totals.hists.produce));
        }
    }
    if args.consumers > 0 {
        println!(
            "consume: {} records in {:.2} s: {:.1} records/sec ({:.2} MB/sec)",
            o.consumed,
            o.consume_secs,
            o.consumed as f64 / o.consume_secs,
            o.consumed_bytes as f64 / o.consume_secs / MB,
        );
        if args.producers > 0 {
            println!("end-to-end latency (ms, from intended send time to fetch response):");
            println!("{}", latency_line(&o.totals.hists.e2e));
        }
    }
    warnings(o);
}

/// Problems a reader of the figures must see, on stderr whatever the output format.
pub fn warnings(o: &Outcome) {
    if o.rejected > 0 {
        eprintln!(
            "tidelog-loadgen: the broker rejected {} records: {}",
            o.rejected,
            o.rejections
                .iter()
                .map(|(k, v)| format!("{k} x{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if o.consumers_behind {
        eprintln!(
            "tidelog-loadgen: consumers stopped {} records short of what was acknowledged \
             (they did not catch up within 10 s of the producers' end)",
            o.acked.saturating_sub(o.consumed)
        );
    }
}

fn latency_json(h: &Histogram<u64>) -> Value {
    let mut m = serde_json::Map::new();
    for (name, q) in QUANTILES {
        m.insert(name.into(), json!(h.value_at_quantile(q)));
    }
    m.insert("max".into(), json!(h.max()));
    m.insert("mean".into(), json!(h.mean()));
    m.insert("count".into(), json!(h.len()));
    Value::Object(m)
}

/// The `--json` object.
pub fn json(args: &Args, o: &Outcome) -> Value {
    let per_sec = |n: u64, secs: f64| if n == 0 { 0.0 } else { n as f64 / secs };
    json!({
        "produce_msgs_per_sec": per_sec(o.acked, o.produce_secs),
        "produce_bytes_per_sec": per_sec(o.acked_bytes, o.produce_secs),
        "consume_msgs_per_sec": per_sec(o.consumed, o.consume_secs),
        "consume_bytes_per_sec": per_sec(o.consumed_bytes, o.consume_secs),
        "produce_latency_us": latency_json(&o.totals.hists.produce),
        "e2e_latency_us": latency_json(&o.totals.hists.e2e),
        "records_sent": o.sent,
        "records_acked": o.acked,
        "records_rejected": o.rejected,
        "rejections": o.rejections,
        "records_consumed": o.consumed,
        "produce_secs": o.produce_secs,
        "consume_secs": o.consume_secs,
        "consumers_behind": o.consumers_behind,
        "timeline": o.totals.samples.iter().map(|s| json!({
            "t_s": s.t_s,
            "produce_msgs_per_sec": s.produce_msgs_per_sec,
            "produce_bytes_per_sec": s.produce_bytes_per_sec,
            "consume_msgs_per_sec": s.consume_msgs_per_sec,
            "produce_p99_us": s.produce_p99_us,
            "e2e_p99_us": s.e2e_p99_us,
        })).collect::<Vec<_>>(),
        "workload": {
            "topics": args.topics,
            "partitions": args.partitions,
            "producers": args.producers,
            "consumers": args.consumers,
            "record_size": args.record_size,
            "acks": args.acks,
            "batch_size": args.batch_size,
            "linger_ms": args.linger_ms,
            "max_in_flight": args.max_in_flight,
            "rate": args.target_rate(),
            "compression": format!("{:?}", args.compression).to_lowercase(),
            "keys": format!("{:?}", args.keys).to_lowercase(),
        },
    })
}

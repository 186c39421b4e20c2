//! Command-line options, in the shape of the OpenMessaging Benchmark's workloads and Kafka's
//! producer settings (`acks`, `batch.size`, `linger.ms`, `compression.type`).

use std::time::Duration;

use clap::Parser;
use kafka_protocol::records::Compression;

/// A Kafka load generator: pipelined, thread-per-core, for any Kafka-compatible broker.
#[derive(Parser, Debug, Clone)]
#[command(name = "tidelog-loadgen", version)]
pub struct Args {
    /// A broker to bootstrap from, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap_server: String,
    /// Topic name; with `--topics N > 1` the topics are NAME-0 .. NAME-(N-1).
    #[arg(long, default_value = "loadgen")]
    pub topic: String,
    /// Number of topics.
    #[arg(long, default_value_t = 1)]
    pub topics: usize,
    /// Partitions per topic, used when creating them (`--create-topic`).
    #[arg(long, default_value_t = 16)]
    pub partitions: i32,
    /// Create missing topics (CreateTopics) instead of failing.
    #[arg(long)]
    pub create_topic: bool,
    /// Replication factor of created topics (default: the broker's `default.replication.factor`).
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// Topic configs for created topics, KEY=VALUE (repeatable): `--topic-config segment.bytes=…`.
    #[arg(long, value_name = "KEY=VALUE")]
    pub topic_config: Vec<String>,
    /// Producers; each has its own connection to every broker and produces to every partition.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumers; without `--group` the partitions are assigned to them round-robin (Kafka's
    /// assign()).
    #[arg(long, default_value_t = 0)]
    pub consumers: usize,
    /// The consumers join this consumer group (classic protocol, range assignor): each starts
    /// its partitions at the group's committed offsets (else as `--consume-from` says), commits
    /// every `--commit-interval-ms` and at the end, and leaves the group on exit.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// With `--group`: how often consumers commit their positions.
    #[arg(long, default_value_t = 1000)]
    pub commit_interval_ms: u64,
    /// With `--group`: Kafka's `session.timeout.ms` (heartbeats go at a tenth of it).
    #[arg(long, default_value_t = 10_000)]
    pub session_timeout_ms: i32,
    /// Value bytes per record.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Record keys: `none` (sticky partitioning, like Kafka's default), `random`, or
    /// `round-robin:N` (N distinct keys in turn); keyed records go to murmur2(key) % partitions.
    #[arg(long, default_value = "none", value_parser = parse_keys)]
    pub keys: Keys,
    /// Kafka's `compression.type`: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none", value_parser = tidelog::client::produce::parse_compression)]
    pub compression: Compression,
    /// Kafka's `acks`: 0, 1, all (-1).
    #[arg(long, default_value = "1", allow_hyphen_values = true, value_parser = parse_acks)]
    pub acks: i16,
    /// Kafka's `batch.size`: bytes per partition batch at most.
    #[arg(long, default_value_t = 65536)]
    pub batch_size: usize,
    /// Kafka's `linger.ms`: how long a batch waits to fill (fractions allowed, e.g. 0.5).
    #[arg(long, default_value_t = 1.0)]
    pub linger_ms: f64,
    /// Kafka's `max.request.size`: bytes per produce request at most.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_request_bytes: usize,
    /// Requests in flight per connection (Kafka's `max.in.flight.requests.per.connection`).
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Target rate in messages/s over all producers (open loop, latencies corrected for
    /// coordinated omission); absent or 0: as fast as the broker acknowledges.
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<f64>,
    /// Time to run before measuring (statistics are reset when it ends).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Time to produce for, after the warm-up (`10s`, `500ms`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Records to produce in all; when set, the run ends after them instead of `--duration`.
    #[arg(long)]
    pub records: Option<u64>,
    /// Where consumers start: `earliest` or `latest`. Default: latest when producing, earliest
    /// (and stop at the end offsets seen at start) when `--producers 0`.
    #[arg(long, value_parser = ["earliest", "latest"])]
    pub consume_from: Option<String>,
    /// Kafka's `fetch.max.bytes`.
    #[arg(long, default_value_t = 50 << 20)]
    pub fetch_max_bytes: i32,
    /// Kafka's `max.partition.fetch.bytes`.
    #[arg(long, default_value_t = 1 << 20)]
    pub partition_fetch_bytes: i32,
    /// Kafka's `fetch.max.wait.ms`.
    #[arg(long, default_value_t = 500)]
    pub fetch_max_wait_ms: i32,
    /// CPUs to run on, one pinned executor each: `1`, `0,2`, `0-3`. Default: every CPU this
    /// process may use (so `taskset -c 1 tidelog-loadgen …` runs one executor on CPU 1).
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<Cpus>,
    /// Print one JSON object at the end instead of the summary (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Draw throughput over time and the latency percentile curves to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// How long the broker may take to acknowledge (the produce request's timeout).
    #[arg(long, default_value_t = 30_000)]
    pub request_timeout_ms: i32,
}

/// Record key distributions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    None,
    Random,
    RoundRobin(u32),
}

/// CPU ids to pin executors to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpus(pub Vec<usize>);

fn parse_keys(s: &str) -> Result<Keys, String> {
    match s {
        "none" => Ok(Keys::None),
        "random" => Ok(Keys::Random),
        _ => s
            .strip_prefix("round-robin:")
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
            .map(Keys::RoundRobin)
            .ok_or_else(|| format!("keys must be none, random or round-robin:N, not {s:?}")),
    }
}

fn parse_acks(s: &str) -> Result<i16, String> {
    s.parse::<tidelog::client::Acks>().map(|a| a.wire())
}

/// `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds (fractions allowed).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m, h)")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `1`, `0,2`, `0-3`, `0-1,4`.
pub fn parse_cpus(s: &str) -> Result<Cpus, String> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list {s:?} (e.g. 1 or 0,2 or 0-3)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(format!("empty CPU list {s:?}"));
    }
    Ok(Cpus(out))
}

/// The CPUs this process may run on (its affinity mask).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity writes into the zeroed set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|c| libc::CPU_ISSET(*c, &set))
            .collect()
    }
}

impl Args {
    /// Checks the combinations clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(g) = &self.group {
            if g.is_empty() || self.consumers == 0 {
                return Err("--group needs a group name and --consumers N (at least 1)".into());
            }
            if self.commit_interval_ms == 0 || self.session_timeout_ms <= 0 {
                return Err(
                    "--commit-interval-ms and --session-timeout-ms must be positive".into(),
                );
            }
        }
        if self.producers == 0 && self.consumers == 0 {
            return Err("nothing to do: --producers and --consumers are both 0".into());
        }
        if self.topics == 0 || self.partitions <= 0 {
            return Err("--topics and --partitions must be at least 1".into());
        }
        if self.max_in_flight == 0 || self.batch_size == 0 {
            return Err("--max-in-flight and --batch-size must be at least 1".into());
        }
        if self.record_size + 64 > self.max_request_bytes {
            return Err("--record-size does not fit in --max-request-bytes".into());
        }
        if !(self.linger_ms.is_finite() && self.linger_ms >= 0.0) {
            return Err("--linger-ms must be a non-negative number".into());
        }
        if matches!(self.rate, Some(r) if !(r.is_finite() && r >= 0.0)) {
            return Err("--rate must be a non-negative number".into());
        }
        Ok(())
    }

    /// The topic names this run uses.
    pub fn topic_names(&self) -> Vec<String> {
        if self.topics == 1 {
            vec![self.topic.clone()]
        } else {
            (0..self.topics)
                .map(|i| format!("{}-{i}", self.topic))
                .collect()
        }
    }

    /// Whether consumers start at the log start (and stop at the end offsets seen at start).
    pub fn consume_from_earliest(&self) -> bool {
        match self.consume_from.as_deref() {
            Some(s) => s == "earliest",
            None => self.producers == 0,
        }
    }

    /// The target rate, `None` for as fast as possible.
    pub fn target_rate(&self) -> Option<f64> {
        self.rate.filter(|r| *r > 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keys_and_cpus_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert_eq!(parse_keys("round-robin:8"), Ok(Keys::RoundRobin(8)));
        assert!(parse_keys("round-robin:0").is_err());
        assert_eq!(parse_cpus("0-2,5"), Ok(Cpus(vec![0, 1, 2, 5])));
        assert!(parse_cpus("a").is_err());
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
    }

    #[test]
    fn groups_need_consumers() {
        let a = Args::parse_from(["x", "--bootstrap-server", "h:1", "--group", "g"]);
        assert!(a.validate().unwrap_err().contains("--consumers"));
        let a = Args::parse_from(["x", "--bootstrap-server", "h:1", "--group", "g"]);
        let a = Args { consumers: 2, ..a };
        assert_eq!(a.validate(), Ok(()));
        assert_eq!(a.commit_interval_ms, 1000);
    }
}

//! Counters and latency histograms, shared between the executors and the reporting thread.
//!
//! Counters are atomics bumped once per request or fetch, never per record. Latencies are
//! recorded per record into a histogram owned by each executor ([`Local`]) and merged into the
//! shared one every [`FLUSH_INTERVAL`], so the data path never takes a lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// How often each executor merges its latencies into the shared histograms.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Microseconds since the Unix epoch (CLOCK_REALTIME, so that a producer and a consumer in
/// different processes on one machine agree on end-to-end latency).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A histogram of microseconds that grows as needed, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

/// Latencies recorded since the last take.
pub struct Hists {
    pub produce: Histogram<u64>,
    pub e2e: Histogram<u64>,
}

impl Hists {
    pub fn new() -> Hists {
        Hists {
            produce: histogram(),
            e2e: histogram(),
        }
    }

    fn add(&mut self, other: &Hists) {
        // Auto-resizing histograms cannot fail to add.
        let _ = self.produce.add(&other.produce);
        let _ = self.e2e.add(&other.e2e);
    }

    fn reset(&mut self) {
        self.produce.reset();
        self.e2e.reset();
    }
}

/// The run's shared state.
pub struct Shared {
    /// Records written to a socket.
    pub sent: AtomicU64,
    /// Records acknowledged without error (for acks=0: written).
    pub acked: AtomicU64,
    /// Value bytes of the acknowledged records.
    pub acked_bytes: AtomicU64,
    /// Records the broker refused (an error code for their partition).
    pub rejected: AtomicU64,
    /// Data records consumed.
    pub consumed: AtomicU64,
    /// Value bytes consumed.
    pub consumed_bytes: AtomicU64,
    /// When the last acknowledgement and the last consumed record arrived (µs, [`now_us`]).
    pub last_ack_us: AtomicU64,
    pub last_consume_us: AtomicU64,
    /// Producers still running; consumers run until `stop_consumers`.
    pub producers_running: AtomicUsize,
    pub stop_consumers: AtomicBool,
    /// Consumers that have reached the end offsets seen at start (consume-only runs).
    pub consumers_caught_up: AtomicUsize,
    /// The first fatal error of any worker; the run stops when it is set.
    pub fatal: Mutex<Option<String>>,
    /// Rejected records by Kafka error name.
    pub rejections: Mutex<BTreeMap<String, u64>>,
    /// Latencies not yet taken by the reporter.
    pub pending: Mutex<Hists>,
}

impl Shared {
    pub fn new(producers: usize) -> Shared {
        Shared {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            acked_bytes: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            consumed_bytes: AtomicU64::new(0),
            last_ack_us: AtomicU64::new(0),
            last_consume_us: AtomicU64::new(0),
            producers_running: AtomicUsize::new(producers),
            stop_consumers: AtomicBool::new(false),
            consumers_caught_up: AtomicUsize::new(0),
            fatal: Mutex::new(None),
            rejections: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(Hists::new()),
        }
    }

    /// Records a worker's fatal error (the first one wins) and stops the consumers.
    pub fn fail(&self, msg: String) {
        let mut f = self.fatal.lock().expect("not poisoned");
        if f.is_none() {
            *f = Some(msg);
        }
        self.stop_consumers.store(true, Ordering::Relaxed);
    }

    pub fn failed(&self) -> bool {
        self.fatal.lock().expect("not poisoned").is_some()
    }

    /// Counts records the broker refused with `code`.
    pub fn reject(&self, records: u64, code: i16) {
        self.rejected.fetch_add(records, Ordering::Relaxed);
        let name = tidelog::client::error::error_name(code);
        *self
            .rejections
            .lock()
            .expect("not poisoned")
            .entry(name)
            .or_default() += records;
    }

    /// Takes the latencies recorded since the last take.
    pub fn take_pending(&self) -> Hists {
        std::mem::replace(
            &mut *self.pending.lock().expect("not poisoned"),
            Hists::new(),
        )
    }
}

/// One executor's latencies since its last flush. Lives on that executor only.
pub struct Local {
    pub hists: Hists,
}

impl Local {
    pub fn new() -> Local {
        Local {
            hists: Hists::new(),
        }
    }

    /// Records `count` produce acknowledgements that took `us` each.
    pub fn produce_latency(&mut self, us: u64, count: u64) {
        let _ = self.hists.produce.record_n(us.max(1), count);
    }

    /// Records one record's end-to-end latency.
    pub fn e2e_latency(&mut self, us: u64) {
        let _ = self.hists.e2e.record(us.max(1));
    }

    /// Moves what was recorded into the shared histograms.
    pub fn flush(&mut self, shared: &Shared) {
        if self.hists.produce.is_empty() && self.hists.e2e.is_empty() {
            return;
        }
        shared
            .pending
            .lock()
            .expect("not poisoned")
            .add(&self.hists);
        self.hists.reset();
    }
}

/// One second of the run, for the plot.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Seconds since the start of the run (warm-up included).
    pub t_s: f64,
    pub produce_msgs_per_sec: f64,
    pub produce_bytes_per_sec: f64,
    pub consume_msgs_per_sec: f64,
    /// p99 produce latency within this second, µs (0: none recorded).
    pub produce_p99_us: u64,
    pub e2e_p99_us: u64,
}

/// The reporting thread's view: cumulative histograms since the warm-up ended, and samples.
pub struct Totals {
    pub hists: Hists,
    pub samples: Vec<Sample>,
}

impl Totals {
    pub fn new() -> Totals {
        Totals {
            hists: Hists::new(),
            samples: Vec::new(),
        }
    }

    /// Takes the pending latencies, adds them to the totals and returns this interval's own.
    pub fn absorb(&mut self, shared: &Shared) -> Hists {
        let interval = shared.take_pending();
        self.hists.add(&interval);
        interval
    }

    /// Forgets what was measured during the warm-up.
    pub fn reset(&mut self) {
        self.hists.reset();
    }
}

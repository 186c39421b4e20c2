//! Small async helpers with no better home.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Polls every future concurrently on the current task and yields their outputs in order.
///
/// `futures-lite` has no `join_all`; this is its few lines, so a request fanning out to several
/// partitions or shards needs no spawned task per piece.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    JoinAll {
        futures: futures.into_iter().map(|f| Box::pin(f)).collect(),
        outputs: Vec::new(),
    }
    .await
}

struct JoinAll<F: Future> {
    futures: Vec<Pin<Box<F>>>,
    outputs: Vec<Option<F::Output>>,
}

impl<F: Future> Unpin for JoinAll<F> {}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.outputs.is_empty() {
            this.outputs.resize_with(this.futures.len(), || None);
        }
        let mut pending = false;
        for (f, out) in this.futures.iter_mut().zip(this.outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            return Poll::Pending;
        }
        Poll::Ready(
            this.outputs
                .drain(..)
                .map(|o| o.expect("every future finished"))
                .collect(),
        )
    }
}

/// Milliseconds since the Unix epoch, as Kafka timestamps are.
/// A test crash point: with `TIDELOG_CRASH_POINT=<name>` in its environment the broker
/// aborts (no clean-up runs, as with SIGKILL) the first time it reaches `crash_point(<name>)`.
/// Integration tests use it to stop the real binary at one exact step (between a transaction's
/// decision and its markers); without the variable it costs one atomic load.
pub fn crash_point(name: &str) {
    static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let point = POINT.get_or_init(|| std::env::var("TIDELOG_CRASH_POINT").ok());
    if point.as_deref() == Some(name) {
        tracing::error!(
            point = name,
            "crash point reached: aborting (TIDELOG_CRASH_POINT)"
        );
        std::process::abort();
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A seeded xorshift64 generator for the tests that replay their faults and workloads from a
/// seed (the metadata log's and the metadata quorum's).
#[cfg(test)]
pub(crate) struct TestRng(pub u64);

#[cfg(test)]
impl TestRng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// In `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `p` times in 100.
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

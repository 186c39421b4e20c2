//! Partition ownership and the cross-shard call.
//!
//! [`shard_for`] is the only thing that decides which shard owns a partition. [`Router`] carries
//! closures to other shards over one bounded channel per shard, Seastar's `invoke_on` idiom: the caller
//! sends a `Send` closure, the owner runs the future it returns on its own executor, and the
//! result comes back over a one-shot channel. Record bytes travel as `Bytes` (moved, not copied).

use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use uuid::Uuid;

use crate::shard::Shard;

/// A unit of work sent to another shard.
pub type Job = Box<dyn FnOnce(Rc<Shard>) + Send>;

/// The shard that owns `partition` of the topic with id `topic_id`: a pure function of its
/// arguments, so every shard (and every restart with the same shard count) agrees.
pub fn shard_for(topic_id: Uuid, partition: i32, shard_count: usize) -> usize {
    let id = topic_id.as_u128();
    let mut h = (id as u64) ^ ((id >> 64) as u64);
    h ^= (partition as u32 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // A final avalanche so that consecutive partitions spread evenly.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h % shard_count as u64) as usize
}

/// The shard that coordinates metadata changes (topic creation and deletion, producer ids).
pub const METADATA_SHARD: usize = 0;

/// Receives from a cross-shard channel; `None` once every sender is gone and nothing is left in
/// the channel. No timer: the wait is woken by the send (flume fires the receiving task's
/// glommio waker from the sending shard's thread; glommio queues it to this executor and writes
/// its eventfd if it sleeps), so a shard waiting here with nothing else to do sleeps.
///
/// The second look after `Disconnected` is what makes a reply never read as a dropped call:
/// flume 0.10's `RecvFut`, when polled again after its first wait, looks at the queue and then
/// at the disconnected flag without holding the channel lock in between, so a reply sent and its
/// sender dropped in that gap comes back as `Disconnected` with the reply still queued. The
/// sender pushes under the channel lock before its drop sets the flag, so once the flag is seen,
/// `try_recv` (which takes that lock) finds any such reply.
pub async fn recv_cross_shard<T>(rx: &flume::Receiver<T>) -> Option<T> {
    match rx.recv_async().await {
        Ok(v) => Some(v),
        Err(flume::RecvError::Disconnected) => rx.try_recv().ok(),
    }
}

/// How long a wait for a cross-shard reply sleeps before looking again by itself.
///
/// Why it still exists: with no re-check at all, `tests/cross_shard_calls.rs` hangs about once
/// in seven runs with every executor parked in io_uring, every eventfd counter at 0 and no
/// completion pending: a cross-thread wake-up lost inside glommio 0.9's park path (see
/// docs/design-notes.md, "Cross-shard calls"). The re-check is armed only while a call or a
/// parked fetch is waiting, so an idle shard (nothing in flight) arms no timer and sleeps.
pub const CROSS_SHARD_RECHECK: Duration = Duration::from_millis(5);

/// Replies found by a re-check rather than by their wake-up, process-wide: each one is a
/// cross-thread wake-up that was lost or late. Tests and diagnosis read it.
pub static CROSS_SHARD_REPLIES_FOUND_BY_RECHECK: AtomicU64 = AtomicU64::new(0);

/// [`recv_cross_shard`] for a wait that must not hang on a lost wake-up: every
/// [`CROSS_SHARD_RECHECK`] it looks again and calls `nudge` (which wakes the other side again,
/// in case it is the one whose wake-up was lost).
pub async fn recv_reply<T>(rx: &flume::Receiver<T>, nudge: impl Fn()) -> Option<T> {
    loop {
        let next = futures_lite::future::or(async { Some(recv_cross_shard(rx).await) }, async {
            glommio::timer::sleep(CROSS_SHARD_RECHECK).await;
            None
        })
        .await;
        if let Some(v) = next {
            return v;
        }
        if let Ok(v) = rx.try_recv() {
            CROSS_SHARD_REPLIES_FOUND_BY_RECHECK.fetch_add(1, Ordering::Relaxed);
            return Some(v);
        }
        nudge();
    }
}

/// One shard's ends of the cross-shard channels: a sender to every shard's job queue.
pub struct Router {
    id: usize,
    senders: Vec<flume::Sender<Job>>,
}

impl Router {
    pub fn new(id: usize, senders: Vec<flume::Sender<Job>>) -> Router {
        Router { id, senders }
    }

    /// This shard's id (its index; shard `i` runs pinned to the `i`th allowed CPU).
    pub fn shard_id(&self) -> usize {
        self.id
    }

    pub fn shard_count(&self) -> usize {
        self.senders.len()
    }

    /// Runs `f` on shard `target` and returns its result. On the calling shard it runs inline.
    pub async fn invoke_on<R, F, Fut>(&self, me: &Rc<Shard>, target: usize, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if target == self.id {
            return f(me.clone()).await;
        }
        let (tx, rx) = flume::bounded(1);
        let job: Job = Box::new(move |shard| {
            glommio::spawn_local(async move {
                let _ = tx.send(f(shard).await);
            })
            .detach();
        });
        if self.senders[target].send_async(job).await.is_err() {
            crate::fatal(&format!("shard {target} is gone"));
        }
        // A no-op job makes the owner's job loop run (and its executor wake) once more.
        let nudge = || {
            let _ = self.senders[target].try_send(Box::new(|_| {}));
        };
        match recv_reply(&rx, nudge).await {
            Some(r) => r,
            None => crate::fatal(&format!("shard {target} dropped a call")),
        }
    }
}

/// Runs every job that other shards send to this one, until every sender is gone.
pub async fn serve_jobs(shard: Rc<Shard>, jobs: flume::Receiver<Job>) {
    loop {
        let next = futures_lite::future::or(async { Some(recv_cross_shard(&jobs).await) }, async {
            glommio::timer::sleep(JOB_QUEUE_IDLE_RECHECK).await;
            None
        })
        .await;
        let job = match next {
            Some(Some(job)) => job,
            Some(None) => return,
            None => match jobs.try_recv() {
                Ok(job) => {
                    CROSS_SHARD_REPLIES_FOUND_BY_RECHECK.fetch_add(1, Ordering::Relaxed);
                    job
                }
                Err(flume::TryRecvError::Empty) => continue,
                Err(flume::TryRecvError::Disconnected) => return,
            },
        };
        job(shard.clone());
    }
}

/// How often an idle job loop looks at its queue by itself.
///
/// Defence in depth, not the wake-up path: jobs wake the loop through flume's waker. The
/// stress soak (docs/design-notes.md, "Cross-shard calls") still shows rare lost cross-thread
/// wake-ups whose cause is not found; the caller's 5 ms re-check and nudge cover a lost reply,
/// and this bounds a lost job wake-up on an otherwise idle shard to a delay instead of a hang.
/// Four wake-ups a second cost an idle shard well under 0.1% of a core (tuning.md, "Idle CPU").
pub const JOB_QUEUE_IDLE_RECHECK: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_pure_and_spreads_partitions() {
        let id = Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let mut counts = [0usize; 4];
        for p in 0..4000 {
            let s = shard_for(id, p, 4);
            assert_eq!(s, shard_for(id, p, 4));
            counts[s] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert!((0..100).all(|p| shard_for(id, p, 1) == 0));
    }
}

//! Partition ownership and the cross-shard call.
//!
//! [`shard_for`] is the only thing that decides which shard owns a partition. [`Router`] carries
//! closures to other shards over one bounded channel per shard, Seastar's `invoke_on` idiom: the caller
//! sends a `Send` closure, the owner runs the future it returns on its own executor, and the
//! result comes back over a one-shot channel. Record bytes travel as `Bytes` (moved, not copied).

use std::future::Future;
use std::rc::Rc;

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

/// How long a wait on a cross-shard channel sleeps before looking again by itself.
///
/// Why: under heavy load we saw glommio's channel mesh lose the wake-up of an executor parked
/// in io_uring (two shards idle forever at start-up, one having joined the mesh and one still
/// waiting). The channels are now flume's (already in the tree through glommio), created before
/// the executors start, so there is no join handshake; and every wait is also bounded by this
/// local timer, so a lost cross-thread wake-up costs at most this delay instead of a hang.
const CROSS_SHARD_RECHECK: std::time::Duration = std::time::Duration::from_millis(5);

/// Receives from a cross-shard channel; `None` once every sender is gone.
pub async fn recv_cross_shard<T>(rx: &flume::Receiver<T>) -> Option<T> {
    loop {
        let next = futures_lite::future::or(async { Some(rx.recv_async().await.ok()) }, async {
            glommio::timer::sleep(CROSS_SHARD_RECHECK).await;
            None
        })
        .await;
        match next {
            Some(v) => return v,
            None => {
                if let Ok(v) = rx.try_recv() {
                    return Some(v);
                }
                if rx.is_disconnected() {
                    return None;
                }
            }
        }
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
        match recv_cross_shard(&rx).await {
            Some(r) => r,
            None => crate::fatal(&format!("shard {target} dropped a call")),
        }
    }
}

/// Runs every job that other shards send to this one, until every sender is gone.
pub async fn serve_jobs(shard: Rc<Shard>, jobs: flume::Receiver<Job>) {
    while let Some(job) = recv_cross_shard(&jobs).await {
        job(shard.clone());
    }
}

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

//! Partition ownership and the cross-shard call.
//!
//! [`shard_for`] is the only thing that decides which shard owns a partition. [`Router`] carries
//! closures to other shards over glommio's channel mesh, Seastar's `invoke_on` idiom: the caller
//! sends a `Send` closure, the owner runs the future it returns on its own executor, and the
//! result comes back over a one-shot channel. Record bytes travel as `Bytes` (moved, not copied).

use std::future::Future;
use std::rc::Rc;

use glommio::channels::channel_mesh::{Receivers, Senders};
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

/// One shard's ends of the channel mesh.
pub struct Router {
    senders: Senders<Job>,
}

impl Router {
    pub fn new(senders: Senders<Job>) -> Router {
        Router { senders }
    }

    /// This shard's id: its place in the mesh.
    pub fn shard_id(&self) -> usize {
        self.senders.peer_id()
    }

    pub fn shard_count(&self) -> usize {
        self.senders.nr_consumers()
    }

    /// Runs `f` on shard `target` and returns its result. On the calling shard it runs inline.
    pub async fn invoke_on<R, F, Fut>(&self, me: &Rc<Shard>, target: usize, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if target == self.shard_id() {
            return f(me.clone()).await;
        }
        let (tx, rx) = flume::bounded(1);
        let job: Job = Box::new(move |shard| {
            glommio::spawn_local(async move {
                let _ = tx.send(f(shard).await);
            })
            .detach();
        });
        if self.senders.send_to(target, job).await.is_err() {
            crate::fatal(&format!("shard {target} is gone"));
        }
        match rx.recv_async().await {
            Ok(r) => r,
            Err(_) => crate::fatal(&format!("shard {target} dropped a call")),
        }
    }
}

/// Runs every job that other shards send to this one, until the mesh closes.
pub async fn serve_jobs(shard: Rc<Shard>, mut receivers: Receivers<Job>) {
    let tasks: Vec<_> = receivers
        .streams()
        .into_iter()
        .map(|(_, rx)| {
            let shard = shard.clone();
            glommio::spawn_local(async move {
                while let Some(job) = rx.recv().await {
                    job(shard.clone());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
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

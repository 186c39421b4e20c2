//! Partition ownership and the cross-shard call.
//!
//! [`shard_for`] is the only thing that decides which shard owns a partition. [`Router`] carries
//! closures to other shards over one bounded channel per shard, Seastar's `invoke_on` idiom: the caller
//! sends a `Send` closure, the owner runs the future it returns on its own executor, and the
//! result comes back over a one-shot channel. Record bytes travel as `Bytes` (moved, not copied).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

use uuid::Uuid;

/// A unit of work sent to another shard: a closure run with that shard's state `S` (the
/// broker's `shard::Shard`). Generic so that the router, the bottom of the core, names nothing
/// above it (`tests/module_graph.rs` checks that no import cycle runs through it).
pub type Job<S> = Box<dyn FnOnce(Rc<S>) + Send>;

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
/// the channel. No timer: the wait is woken by the send alone (flume fires the receiving task's
/// glommio waker from the sending shard's thread; glommio queues it to this executor and writes
/// its eventfd if it sleeps), so a shard waiting here with nothing else to do sleeps.
///
/// That wake-up is reliable only with the patched glommio in vendor/glommio: glommio 0.9 could
/// park an executor with woken tasks still queued when its preempt timer fired while the thread
/// was descheduled (vendor/glommio/NOTE-tidelog.md, docs/design-notes.md "Cross-shard calls").
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

/// One shard's ends of the cross-shard channels: a sender to every shard's job queue. Lives in
/// its shard's state for the life of the process.
pub struct Router<S> {
    id: usize,
    senders: Vec<flume::Sender<Job<S>>>,
    /// Calls sent to other shards so far (each one a round trip: the job out, the reply back).
    calls_sent: Cell<u64>,
}

impl<S: 'static> Router<S> {
    pub fn new(id: usize, senders: Vec<flume::Sender<Job<S>>>) -> Router<S> {
        Router {
            id,
            senders,
            calls_sent: Cell::new(0),
        }
    }

    /// Cross-shard calls this shard has made: what tests count to hold a request path to its
    /// number of round trips.
    pub fn calls_sent(&self) -> u64 {
        self.calls_sent.get()
    }

    /// This shard's id (its index; shard `i` runs pinned to the `i`th allowed CPU).
    pub fn shard_id(&self) -> usize {
        self.id
    }

    pub fn shard_count(&self) -> usize {
        self.senders.len()
    }

    /// Runs `f` on shard `target` and returns its result. On the calling shard it runs inline.
    pub async fn invoke_on<R, F, Fut>(&self, me: &Rc<S>, target: usize, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(Rc<S>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if target == self.id {
            return f(me.clone()).await;
        }
        self.calls_sent.set(self.calls_sent.get() + 1);
        let (tx, rx) = flume::bounded(1);
        let job: Job<S> = Box::new(move |shard| {
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

impl<S: 'static> Router<S> {
    /// Scatter by owner, gather in request order: `items` are `(owner shard, item)` pairs;
    /// each owner gets one call, with its items in their order, and `on_owner` runs there and
    /// returns one result per item it was given; the owners run concurrently. The results come
    /// back in the order of `items`. Every request that touches partitions on several shards
    /// (Produce, Fetch, ListOffsets, OffsetForLeaderEpoch, DeleteRecords) goes through here.
    pub async fn scatter_gather<T, R, F, Fut>(
        &self,
        me: &Rc<S>,
        items: Vec<(usize, T)>,
        on_owner: F,
    ) -> Vec<R>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: FnOnce(Rc<S>, Vec<T>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Vec<R>> + 'static,
    {
        let n = items.len();
        let mut by_owner: BTreeMap<usize, (Vec<usize>, Vec<T>)> = BTreeMap::new();
        for (i, (owner, item)) in items.into_iter().enumerate() {
            let (slots, batch) = by_owner.entry(owner).or_default();
            slots.push(i);
            batch.push(item);
        }
        let calls = by_owner.into_iter().map(|(owner, (slots, batch))| {
            let f = on_owner.clone();
            async move {
                let results = self.invoke_on(me, owner, move |s| f(s, batch)).await;
                assert_eq!(results.len(), slots.len(), "one result per item");
                slots.into_iter().zip(results)
            }
        });
        let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
        for (i, r) in crate::util::join_all(calls.collect())
            .await
            .into_iter()
            .flatten()
        {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.expect("every item answered"))
            .collect()
    }
}

/// Runs every job that other shards send to this one, until every sender is gone. The loop arms
/// no timer: an idle shard sleeps until a job arrives.
pub async fn serve_jobs<S>(shard: Rc<S>, jobs: flume::Receiver<Job<S>>) {
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

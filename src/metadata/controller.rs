//! The metadata controller: the state only the metadata shard (`router::METADATA_SHARD`) holds.
//!
//! Every metadata change (`admin`) and every producer id is serialised here. The controller lives
//! in that shard's `Shard::controller` for the life of the process; the other shards have none,
//! so nothing can take a lock that does not serialise anything.

use std::cell::Cell;
use std::path::Path;

use crate::config::PRODUCER_ID_BLOCK;
use crate::error::MetadataError;

/// Shard-0-only state: the metadata lock and the block of producer ids being handed out.
pub struct Controller {
    /// Serialises metadata changes: one change builds, persists and installs its image before
    /// the next starts.
    lock: glommio::sync::Semaphore,
    /// The next producer id to hand out and the end of the persisted block.
    producer_ids: Cell<(i64, i64)>,
}

impl Default for Controller {
    fn default() -> Controller {
        Controller {
            lock: glommio::sync::Semaphore::new(1),
            producer_ids: Cell::new((0, 0)),
        }
    }
}

/// Held while one metadata change runs; dropping it lets the next one in.
pub type ChangeGuard<'a> = glommio::sync::Permit<'a>;

impl Controller {
    /// Waits for the metadata changes before this one to finish.
    pub async fn lock(&self) -> ChangeGuard<'_> {
        self.lock
            .acquire_permit(1)
            .await
            .expect("lock never closes")
    }

    /// A fresh producer id, unique for the life of `data_dir`: the next of the current block,
    /// or the first of a new block reserved (and persisted) off the executor.
    pub async fn allocate_producer_id(&self, data_dir: &Path) -> Result<i64, MetadataError> {
        let data_dir = data_dir.to_path_buf();
        self.allocate_producer_id_with(|| async move {
            glommio::executor()
                .spawn_blocking(move || super::reserve_producer_ids(&data_dir, PRODUCER_ID_BLOCK))
                .await
        })
        .await
    }

    /// A fresh producer id: the next of the current block, or the first of a block of
    /// [`PRODUCER_ID_BLOCK`] that `reserve` makes durable and returns the start of (a single
    /// node's data directory, a cluster's quorum).
    pub async fn allocate_producer_id_with<F, R>(&self, reserve: F) -> Result<i64, MetadataError>
    where
        F: FnOnce() -> R,
        R: std::future::Future<Output = Result<i64, MetadataError>>,
    {
        let _guard = self.lock().await;
        let (next, end) = self.producer_ids.get();
        if next < end {
            self.producer_ids.set((next + 1, end));
            return Ok(next);
        }
        let block_start = reserve().await?;
        self.producer_ids
            .set((block_start + 1, block_start + PRODUCER_ID_BLOCK));
        Ok(block_start)
    }
}

//! A shard: one pinned executor's share of the broker.
//!
//! Each [`Shard`] lives on one executor for the life of the process and owns the partitions that
//! [`shard_for`] gives it, the connections its listener accepted, and its copy of the metadata
//! image. Nothing in it is shared with another thread; other shards reach it only through
//! [`Router::invoke_on`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::config::BrokerConfig;
use crate::group::Coordinator;
use crate::intake::Intake;
use crate::log::{LogError, OffsetMap, PartitionLog};
use crate::metadata::controller::Controller;
use crate::metadata::{self, configs, MetadataImage, TopicMeta};
use crate::partitions::quota::{self, Throttled};
use crate::partitions::Partitions;
pub use crate::partitions::{Partition, PartitionKey, Role};
use crate::router::{shard_for, Router, METADATA_SHARD};

/// The suffix of a deleted partition's directory, as in Kafka (`<topic>-<p>.<id>-delete`).
const DELETED_SUFFIX: &str = "-delete";

/// Removes the directories of partitions deleted before a crash; called once at start-up.
pub fn remove_deleted_dirs(data_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().ends_with(DELETED_SUFFIX) {
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                warn!(dir = %e.path().display(), "cannot remove a deleted partition: {err}");
            }
        }
    }
}

/// Per-shard state: the services this shard runs, and what its connections share. See the
/// module docs for its lifecycle. Each service holds only what it uses (the group coordinator,
/// for one, holds the partition service and the static config, not the shard), so the
/// services below never name `Shard`.
pub struct Shard {
    /// The static settings (defaults, config file, `--set`).
    pub config: Arc<BrokerConfig>,
    /// `config` with the dynamic broker configs of the current image applied; replaced with
    /// each image (see [`Shard::broker_config`]).
    broker_config: RefCell<Arc<BrokerConfig>>,
    pub router: Router<Shard>,
    metadata: RefCell<Arc<MetadataImage>>,
    /// The partitions this shard owns.
    pub partitions: Rc<Partitions>,
    /// What this shard's connections have taken in (connections, requests, bytes), shared
    /// by every listener on the shard.
    pub intake: Rc<Intake>,
    /// Set when shutdown begins: listeners stop accepting, connections stop reading, and the
    /// background passes (retention, compaction, healing) stop at their next step.
    pub shutting_down: Cell<bool>,
    /// The consumer groups this shard coordinates.
    pub groups: Rc<Coordinator>,
    /// The transactional ids this shard coordinates.
    pub txns: Rc<crate::txn::Coordinator>,
    /// The metadata controller; on the metadata shard only.
    pub controller: Option<Controller>,
    /// The cluster this broker belongs to; `None` on a single node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Woken (and emptied) whenever an image is installed.
    image_waiters: RefCell<Vec<flume::Sender<()>>>,
    /// When a failed partition's reopen was last logged as failing (ms), to log it once a minute.
    heal_warned_ms: Cell<i64>,
}

impl Shard {
    pub fn new(
        config: Arc<BrokerConfig>,
        router: Router<Shard>,
        image: Arc<MetadataImage>,
    ) -> Shard {
        let dynamic = configs::Dynamic::of(&image, config.node_id);
        let effective = Arc::new(configs::effective_broker_config(&config, dynamic));
        let partitions = Rc::new(Partitions::default());
        let groups = Coordinator::new(config.clone(), partitions.clone());
        let txns = crate::txn::Coordinator::new(
            partitions.clone(),
            config.transaction_state_log_num_partitions,
        );
        let controller = (router.shard_id() == METADATA_SHARD).then(Controller::default);
        partitions.set_replica_lag_max(std::time::Duration::from_millis(
            config.replica_lag_time_max_ms,
        ));
        Shard {
            config,
            broker_config: RefCell::new(effective),
            router,
            metadata: RefCell::new(image),
            partitions,
            intake: Rc::new(Intake::new(crate::config::SHARD_INFLIGHT_BYTES_MAX as u64)),
            shutting_down: Cell::new(false),
            heal_warned_ms: Cell::new(0),
            groups,
            txns,
            controller,
            cluster: None,
            image_waiters: RefCell::new(Vec::new()),
        }
    }

    pub fn id(&self) -> usize {
        self.router.shard_id()
    }

    pub fn count(&self) -> usize {
        self.router.shard_count()
    }

    /// The broker's settings in force now: the static ones with the dynamic broker configs
    /// (AlterConfigs on the broker resource) on top. Read settings that Kafka lets change at
    /// run time (`Mode::Dynamic` in `config::schema::SETTINGS`) from here, the rest from `config`.
    pub fn broker_config(&self) -> Arc<BrokerConfig> {
        self.broker_config.borrow().clone()
    }

    /// The current metadata image.
    pub fn metadata(&self) -> Arc<MetadataImage> {
        self.metadata.borrow().clone()
    }

    /// The shard that owns a partition of `topic`.
    pub fn owner(&self, topic: &TopicMeta, partition: i32) -> usize {
        shard_for(topic.id, partition, self.count())
    }

    /// A partition this shard owns, if it is open.
    /// Returns once this broker may serve clients: at once on a single node; in a cluster once
    /// the image has this broker registered and unfenced. Kafka's brokers too bind their
    /// listener at start but process no request until they are unfenced, so that no client
    /// is told a metadata view with no brokers, or with none it can use.
    pub async fn until_serving(&self) {
        if self.cluster.is_none() {
            return;
        }
        loop {
            let me = self.node_id();
            if self.metadata().brokers.get(&me).is_some_and(|b| !b.fenced) {
                return;
            }
            let (tx, rx) = flume::bounded(1);
            self.image_waiters.borrow_mut().push(tx);
            let _ = rx.recv_async().await;
        }
    }

    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Whether this broker holds a replica of the partition (every partition, on a single
    /// node). Only those are opened here.
    pub fn hosts(&self, topic: &TopicMeta, partition: i32) -> bool {
        topic
            .state(partition)
            .is_none_or(|s| s.replicas.contains(&self.node_id()))
    }

    /// The role `topic` gives this broker's replica of `partition`.
    fn role(&self, topic: &TopicMeta, partition: i32) -> Role {
        Role::of(topic, partition, self.node_id())
    }

    /// Waits for the next metadata image to be installed (its partitions opened and their
    /// roles taken).
    pub async fn next_image(&self) {
        let (tx, rx) = flume::bounded(1);
        self.image_waiters.borrow_mut().push(tx);
        let _ = rx.recv_async().await;
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions.get(topic, partition)
    }

    /// Installs a new metadata image: opens the partitions it gives this shard and removes the
    /// ones whose topic is gone (or was re-created under a new id).
    pub async fn apply_metadata(&self, image: Arc<MetadataImage>) {
        // Images may arrive out of order (a change's proposer installs the image its answer
        // carried while the quorum's installer installs a later one): never step back.
        if image.applied < self.metadata.borrow().applied {
            return;
        }
        let previous = std::mem::replace(&mut *self.metadata.borrow_mut(), image.clone());
        if previous.broker_configs != image.broker_configs {
            let dynamic = configs::Dynamic::of(&image, self.config.node_id);
            let effective = configs::effective_broker_config(&self.config, dynamic);
            *self.broker_config.borrow_mut() = Arc::new(effective);
        }
        let stale: Vec<_> = self
            .owned_partitions()
            .into_iter()
            .filter(|((t, i), p)| {
                image
                    .topic(t)
                    .is_none_or(|m| m.id != p.topic_id || !self.hosts(m, *i))
            })
            .map(|(k, _)| k)
            .collect();
        for key in stale {
            let Some(p) = self.partitions.unload(&key) else {
                continue;
            };
            self.discard_partition_dir(&key, p.topic_id).await;
        }
        self.refresh_quotas();
        self.refresh_configs(&image);
        self.refresh_roles(&image).await;
        for topic in image.topics.values() {
            for p in 0..topic.partitions {
                if self.owner(topic, p) != self.id()
                    || !self.hosts(topic, p)
                    || self.partition(&topic.name, p).is_some()
                {
                    continue;
                }
                if let Err(e) = self.open_partition(topic, p).await {
                    // The rest of the broker keeps serving; this partition stays offline
                    // (NOT_LEADER_OR_FOLLOWER) until the cause is fixed and it reopens.
                    error!(topic = %topic.name, partition = p, "cannot open partition: {e}");
                }
            }
        }
        for w in self.image_waiters.borrow_mut().drain(..) {
            let _ = w.try_send(());
        }
    }

    /// Gives this shard's partitions the roles the image names (a leader elected, moved away
    /// or at a new epoch).
    async fn refresh_roles(&self, image: &MetadataImage) {
        for ((topic, index), p) in self.owned_partitions() {
            let Some(meta) = image.topic(&topic).filter(|m| m.id == p.topic_id) else {
                continue;
            };
            let role = self.role(meta, index);
            if role == p.role() {
                continue;
            }
            info!(%topic, partition = index, leader = role.leader, epoch = role.leader_epoch,
                isr = ?role.isr, "partition role changed");
            let (was, is) = (p.is_leader(), role.is_leader());
            if let Err(e) = p.set_role(role).await {
                error!(%topic, partition = index, "taking the partition's new role: {e}");
            }
            match (was, is) {
                (false, true) => self.partitions.led(&topic, index, &p).await,
                (true, false) => self.partitions.resigned(&topic, index),
                _ => {}
            }
        }
    }

    /// Gives this shard its share of the broker's replication rates (`partitions::quota`).
    fn refresh_quotas(&self) {
        let cfg = self.broker_config();
        let share = |rate: i64| match rate as u64 {
            r if r >= quota::UNLIMITED => quota::UNLIMITED,
            r => r / self.count() as u64,
        };
        let p = &self.partitions;
        p.leader_quota
            .set_rate(share(cfg.leader_replication_throttled_rate));
        p.follower_quota
            .set_rate(share(cfg.follower_replication_throttled_rate));
    }

    /// Hands changed topic configs to the logs of this shard's partitions, so that
    /// AlterConfigs takes effect on the next append, roll and retention pass without a restart.
    fn refresh_configs(&self, image: &MetadataImage) {
        for ((topic, index), p) in self.owned_partitions() {
            let Some(meta) = image.topic(&topic).filter(|m| m.id == p.topic_id) else {
                continue;
            };
            p.throttled
                .set(Throttled::of(&meta.configs, index, self.node_id()));
            let Ok(cfg) = metadata::log_config(&self.broker_config(), &meta.configs) else {
                warn!(%topic, "ignoring invalid topic config");
                continue;
            };
            if cfg != p.log.config() {
                info!(%topic, partition = index, "topic config changed");
                p.log.set_config(cfg);
            }
        }
    }

    /// Moves a deleted partition's directory aside at once (so a topic re-created under the
    /// same name starts empty even while a fetch still holds the old files open) and then
    /// removes it. Readers of the old files keep their open descriptors. Directories left
    /// behind by a crash are removed at the next start ([`remove_deleted_dirs`]).
    async fn discard_partition_dir(&self, key: &PartitionKey, topic_id: uuid::Uuid) {
        let dir = metadata::partition_dir(&self.config.data_dir, &key.0, key.1);
        let trash = dir.with_file_name(format!(
            "{}-{}.{}{DELETED_SUFFIX}",
            key.0,
            key.1,
            topic_id.simple()
        ));
        if let Err(e) = std::fs::rename(&dir, &trash) {
            error!(topic = %key.0, partition = key.1, "moving the deleted partition aside: {e}");
            return;
        }
        let removed = glommio::executor()
            .spawn_blocking(move || std::fs::remove_dir_all(&trash))
            .await;
        if let Err(e) = removed {
            error!(topic = %key.0, partition = key.1, "removing the deleted partition: {e}");
        }
    }

    async fn open_partition(&self, topic: &TopicMeta, partition: i32) -> Result<(), LogError> {
        let dir = metadata::partition_dir(&self.config.data_dir, &topic.name, partition);
        let broker = self.broker_config();
        let cfg = metadata::log_config(&broker, &topic.configs).unwrap_or_else(|e| {
            warn!(topic = %topic.name, "ignoring invalid stored config: {e}");
            metadata::log_config(&broker, &Default::default()).expect("broker defaults are valid")
        });
        let log = PartitionLog::open(dir, cfg).await?;
        let role = self.role(topic, partition);
        let p = Rc::new(Partition::new(topic.id, log, role.clone()));
        p.throttled
            .set(Throttled::of(&topic.configs, partition, self.node_id()));
        p.set_role(role).await?;
        self.partitions.load(topic.name.clone(), partition, p).await;
        Ok(())
    }

    /// Every partition this shard owns.
    pub fn owned_partitions(&self) -> Vec<(PartitionKey, Rc<Partition>)> {
        self.partitions.owned()
    }

    /// Flushes and closes every partition (clean-shutdown markers), for SIGTERM.
    pub async fn close_all(&self) {
        let parts = self.owned_partitions();
        info!(
            shard = self.id(),
            partitions = parts.len(),
            "closing partitions"
        );
        for ((t, i), p) in parts {
            if let Err(e) = p.log.close().await {
                error!(topic = %t, partition = i, "closing partition: {e}");
            }
        }
    }

    /// Reopens the partitions whose log failed on a write error, once the data dir has room
    /// again, so that a full disk heals without a restart (issue 9.6).
    ///
    /// A failed log refuses every append (KAFKA_STORAGE_ERROR, which clients retry) and writes
    /// nothing more. Reopening it runs the same recovery as a start after a crash: the tail past
    /// the recovery point is scanned and cut at the torn batch the failed write left, and the
    /// indexes and producer state are rebuilt from the log; every acknowledged batch is below
    /// the high watermark and therefore whole on disk. The new log replaces the old one in the
    /// partition map only once it is open; requests that still hold the old one get its error.
    /// Nothing is tried while the file system has less than [`heal_free_bytes_min`] available,
    /// so a disk that is still full costs one `statvfs` per interval.
    pub async fn heal_failed_partitions(&self) {
        if self.shutting_down.get() {
            return;
        }
        let failed: Vec<_> = self
            .owned_partitions()
            .into_iter()
            .filter(|(_, p)| p.log.st.borrow().failed.is_some())
            .collect();
        if failed.is_empty() {
            return;
        }
        let need = heal_free_bytes_min(&self.config);
        let image = self.metadata();
        for ((t, i), old) in failed {
            if self.shutting_down.get() {
                return;
            }
            let Some(meta) = image.topic(&t).filter(|m| m.id == old.topic_id).cloned() else {
                continue;
            };
            // In a cluster, a replica that cannot write leaves the ISR (and a leader its
            // leadership) until it has room again, as Kafka's offline replicas do: the others
            // go on taking acks=all writes without it.
            if let Some(state) = meta.state(i) {
                let me = self.node_id();
                if state.isr.contains(&me) && state.isr.len() > 1 {
                    let isr = state.isr.iter().copied().filter(|&b| b != me).collect();
                    self.partitions.propose_isr(t.clone(), i, isr);
                }
            }
            // The file system that holds this partition (a mount of its own, possibly).
            let free = free_bytes(&metadata::partition_dir(&self.config.data_dir, &t, i));
            if free < need {
                continue;
            }
            let reason = old.log.st.borrow().failed.clone().unwrap_or_default();
            match self.open_partition(&meta, i).await {
                Ok(()) => {
                    old.notify_gone();
                    info!(topic = %t, partition = i, free_bytes = free, failure = %reason,
                        "partition reopened after a write failure; appends resume");
                }
                Err(e) => {
                    let now = crate::util::now_ms();
                    if now - self.heal_warned_ms.get() >= 60_000 {
                        self.heal_warned_ms.set(now);
                        warn!(topic = %t, partition = i, failure = %reason,
                            "partition still offline: reopening it failed: {e} (retried every {} ms, logged once a minute)",
                            crate::config::LOG_HEAL_INTERVAL_MS);
                    }
                }
            }
        }
    }

    /// Applies retention to every partition this shard owns.
    ///
    /// Budgeted: it yields to request handling between partitions (`yield_if_needed`), works on
    /// a snapshot of the partition list so no borrow spans an await, and stops at shutdown so
    /// that closing the logs never waits behind a long pass.
    pub async fn enforce_retention(&self) {
        let now = crate::util::now_ms();
        for ((t, i), p) in self.owned_partitions() {
            if self.shutting_down.get() {
                return;
            }
            if p.log.st.borrow().failed.is_some() {
                // Offline until `heal_failed_partitions` reopens it; its files are the reopened
                // log's then, so the failed one must not delete any.
                continue;
            }
            match p.log.enforce_retention(now).await {
                Ok(0) => {}
                Ok(n) => {
                    info!(topic = %t, partition = i, segments = n, "retention deleted segments")
                }
                Err(e) => error!(topic = %t, partition = i, "retention: {e}"),
            }
            glommio::yield_if_needed().await;
        }
    }

    /// One cleaner pass: compacts this shard's `cleanup.policy=compact` partitions that are
    /// due, one at a time, with the shard's key map (`map`, allocated here at the first
    /// compacted partition so that shards without any never hold it).
    pub async fn compact_partitions(&self, map: &mut Option<OffsetMap>) {
        for ((t, i), p) in self.owned_partitions() {
            if self.shutting_down.get() {
                return;
            }
            if !p.log.config().cleanup_policy.compact || p.log.st.borrow().failed.is_some() {
                continue;
            }
            let map = map
                .get_or_insert_with(|| OffsetMap::new(self.config.log_cleaner_dedupe_buffer_size));
            match p.log.compact(crate::util::now_ms(), map).await {
                Ok(None) => {}
                Ok(Some(s)) => info!(topic = %t, partition = i, bytes_cleaned = s.bytes_cleaned,
                    bytes_written = s.bytes_written, segments_before = s.segments_before,
                    segments_after = s.segments_after, records_removed = s.records_removed,
                    first_dirty = s.first_dirty, "compacted"),
                Err(e) => error!(topic = %t, partition = i, "compaction: {e}"),
            }
            glommio::yield_if_needed().await;
        }
    }
}

/// Bytes the data dir's file system must have available before a failed partition is
/// reopened: room for two of the largest batches, so that the first retried appends fit.
fn heal_free_bytes_min(config: &BrokerConfig) -> u64 {
    (2 * u64::from(config.message_max_bytes)).max(crate::config::LOG_HEAL_FREE_BYTES_MIN)
}

/// Bytes available to the broker on the file system that holds `dir` (0 when unknown).
fn free_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs fills the zeroed struct we own from a NUL-terminated path.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut st) != 0 {
            return 0;
        }
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

//! Cluster metadata: topics, their ids, partition counts and configs.
//!
//! A [`MetadataImage`] is an immutable snapshot. Shard 0 owns the mutable store: it turns each
//! change into [`records::MetadataRecord`]s, applies them to a copy of the image, makes them
//! durable in the metadata log ([`log`]), and broadcasts the new image to every shard, which
//! swaps its `Arc`. Readers never lock anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::config::{PARTITIONS_PER_TOPIC_MAX, TOPIC_NAME_LEN_MAX};
use crate::error::{ErrorCode, MetadataError};

pub mod configs;
pub mod controller;
pub mod log;
pub mod records;
mod snapshot;

use snapshot::{decode, encode};

pub use configs::log_config;

/// One topic as every shard sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicMeta {
    pub name: Arc<str>,
    pub id: Uuid,
    pub partitions: i32,
    /// Topic-level overrides only, by Kafka name (`retention.ms`, ...).
    pub configs: BTreeMap<String, String>,
    /// Each partition's replicas, ISR, leader and epochs (a cluster's topics, by partition
    /// index); empty on a single node, where every partition is the one broker's and its
    /// leader epoch never changes ([`SINGLE_NODE_EPOCH`]).
    pub states: Vec<PartitionState>,
}

/// The leader epoch of a single node's partitions: a single node never changes leader.
pub const SINGLE_NODE_EPOCH: i32 = 0;

/// No leader: the partition is offline (Kafka's `NO_LEADER`).
pub const NO_LEADER: i32 = -1;

impl TopicMeta {
    /// The state of `partition` in a cluster; `None` on a single node (or out of range).
    pub fn state(&self, partition: i32) -> Option<&PartitionState> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.states.get(p))
    }

    /// The replicas of `partition`: its state's, or `single` (the one node's id) when the
    /// topic has none.
    pub fn replicas(&self, partition: i32, single: i32) -> Vec<i32> {
        self.state(partition)
            .map_or_else(|| vec![single], |s| s.replicas.clone())
    }

    /// The in-sync replicas of `partition` (`single` on a single node).
    pub fn isr(&self, partition: i32, single: i32) -> Vec<i32> {
        self.state(partition)
            .map_or_else(|| vec![single], |s| s.isr.clone())
    }

    /// The leader of `partition`: `single` on a single node, else its state's leader, `None`
    /// when it has none (offline).
    pub fn leader(&self, partition: i32, single: i32) -> Option<i32> {
        match self.state(partition) {
            None => Some(single),
            Some(s) => (s.leader != NO_LEADER).then_some(s.leader),
        }
    }

    /// The current leader epoch of `partition`.
    pub fn leader_epoch(&self, partition: i32) -> i32 {
        self.state(partition)
            .map_or(SINGLE_NODE_EPOCH, |s| s.leader_epoch)
    }

    /// Checks a client's `current_leader_epoch` for `partition` (-1: not given) against ours
    /// (KIP-320): newer than ours is UNKNOWN_LEADER_EPOCH (this broker has not seen the change
    /// yet), older is FENCED_LEADER_EPOCH (the client's metadata is stale).
    pub fn check_leader_epoch(&self, partition: i32, current: i32) -> Option<ErrorCode> {
        let ours = self.leader_epoch(partition);
        match current {
            c if c > ours => Some(ErrorCode::UnknownLeaderEpoch),
            c if c >= 0 && c < ours => Some(ErrorCode::FencedLeaderEpoch),
            _ => None,
        }
    }
}

/// One partition of a cluster topic: Kafka's PartitionRecord, as its PartitionChangeRecords
/// leave it. Every node reads the leader and the epochs from here; only the active controller
/// changes them (`quorum::elections`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// The replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas: never empty; a partition whose last in-sync replica is fenced
    /// keeps it here (and has no leader) so that only it can lead again, as Kafka does.
    pub isr: Vec<i32>,
    /// The leader, a member of the ISR, or [`NO_LEADER`].
    pub leader: i32,
    /// Raised on every change of leader (KIP-101, KIP-320): clients and replicas detect a
    /// stale leader and a divergent log by it.
    pub leader_epoch: i32,
    /// Raised on every change of the partition (Kafka's partition epoch), so that two changes
    /// decided from the same state cannot both apply.
    pub partition_epoch: i32,
    /// A reassignment in progress (Kafka's addingReplicas / removingReplicas): replicas that
    /// join (`replicas` holds them already; they follow but lead nothing until they are in
    /// sync) and replicas that leave once every replica of the target is in sync. Both empty
    /// when no reassignment is in progress.
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl PartitionState {
    /// A new partition on `replicas`, led by the first with every replica in sync.
    pub fn new(replicas: Vec<i32>) -> PartitionState {
        PartitionState {
            leader: replicas.first().copied().unwrap_or(NO_LEADER),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// Whether a reassignment is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas a reassignment in progress ends with (all of them, when none is).
    pub fn target(&self) -> Vec<i32> {
        without(&self.replicas, &self.removing)
    }

    /// The replicas before the reassignment in progress began (all of them, when none is).
    pub fn original(&self) -> Vec<i32> {
        without(&self.replicas, &self.adding)
    }

    /// Checks the state's own rules: replicas given and distinct, the ISR a non-empty subset
    /// of them, the leader in the ISR or none, epochs not negative.
    pub fn check(&self) -> Result<(), String> {
        let distinct = self
            .replicas
            .iter()
            .enumerate()
            .all(|(i, r)| !self.replicas[..i].contains(r));
        if self.replicas.is_empty() || !distinct {
            return Err(format!("bad replicas {:?}", self.replicas));
        }
        if self.isr.is_empty() || !self.isr.iter().all(|b| self.replicas.contains(b)) {
            return Err(format!(
                "ISR {:?} is not a subset of replicas {:?}",
                self.isr, self.replicas
            ));
        }
        if self.leader != NO_LEADER && !self.isr.contains(&self.leader) {
            return Err(format!(
                "leader {} is not in the ISR {:?}",
                self.leader, self.isr
            ));
        }
        if self.leader_epoch < 0 || self.partition_epoch < 0 {
            return Err("negative epoch".into());
        }
        let moving = self.adding.iter().chain(&self.removing);
        let distinct = !self.adding.iter().any(|b| self.removing.contains(b));
        if !distinct || !moving.clone().all(|b| self.replicas.contains(b)) {
            return Err(format!(
                "adding {:?} and removing {:?} are not distinct replicas of {:?}",
                self.adding, self.removing, self.replicas
            ));
        }
        Ok(())
    }

    /// Whether `next` may follow this state: one partition epoch later, and a leader epoch
    /// that rises exactly when the leader changes.
    pub fn check_change(&self, next: &PartitionState) -> Result<(), String> {
        next.check()?;
        if next.partition_epoch != self.partition_epoch + 1 {
            return Err(format!(
                "partition epoch {} follows {}",
                next.partition_epoch, self.partition_epoch
            ));
        }
        let expected = self.leader_epoch + i32::from(next.leader != self.leader);
        if next.leader_epoch != expected {
            return Err(format!(
                "leader epoch {} after {} (leader {} -> {})",
                next.leader_epoch, self.leader_epoch, self.leader, next.leader
            ));
        }
        Ok(())
    }
}

/// `list` without the members of `minus`, in order.
fn without(list: &[i32], minus: &[i32]) -> Vec<i32> {
    list.iter()
        .copied()
        .filter(|b| !minus.contains(b))
        .collect()
}

/// A registered broker (Kafka's RegisterBrokerRecord and its fencing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerMeta {
    pub id: i32,
    /// The client listener's advertised host and port.
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Fenced by the active controller: it lost its lease; it leads nothing and clients are
    /// not told about it.
    pub fenced: bool,
    /// In controlled shutdown (SIGTERM): it leads nothing and is in no ISR, though it still
    /// serves until it exits; cleared when it registers again.
    pub shutting_down: bool,
}

#[cfg(test)]
impl MetadataImage {
    /// An image for unit tests with brokers `(id, fenced)` registered on 127.0.0.id:9092.
    pub fn with_brokers(brokers: &[(i32, bool)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for &(id, fenced) in brokers {
            let broker = BrokerMeta {
                id,
                host: format!("127.0.0.{id}"),
                port: 9092,
                rack: None,
                fenced,
                shutting_down: false,
            };
            image.brokers.insert(id, broker);
        }
        image
    }
}

/// An immutable snapshot of cluster metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetadataImage {
    pub cluster_id: String,
    /// How many metadata records this image holds: the offset of the next record to apply.
    pub applied: u64,
    pub topics: BTreeMap<Arc<str>, Arc<TopicMeta>>,
    /// Dynamic broker configs by broker resource name: `""` holds the cluster-wide defaults
    /// (DYNAMIC_DEFAULT_BROKER_CONFIG), a node id that broker's own (DYNAMIC_BROKER_CONFIG).
    /// Kafka keeps them in the metadata log; so do we, so they survive a restart.
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The registered brokers of a cluster, by node id; empty on a single node.
    pub brokers: BTreeMap<i32, BrokerMeta>,
    /// Where the next block of producer ids starts (a cluster's; a single node reserves its
    /// blocks in its own data directory).
    pub producer_ids_next: i64,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&Arc<TopicMeta>> {
        self.topics.values().find(|t| t.id == id)
    }

    /// Whether broker `id` may lead and be in sync: registered, not fenced, not shutting down.
    pub fn is_live(&self, id: i32) -> bool {
        self.brokers
            .get(&id)
            .is_some_and(|b| !b.fenced && !b.shutting_down)
    }

    /// The brokers clients are told about: registered and not fenced.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerMeta> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// The image as a snapshot's bytes (the `topics.toml` text), for a Raft snapshot.
    pub fn to_snapshot(&self) -> Vec<u8> {
        encode(self).into_bytes()
    }

    /// The image a [`MetadataImage::to_snapshot`] holds.
    pub fn from_snapshot(bytes: &[u8]) -> Result<MetadataImage, String> {
        decode(std::str::from_utf8(bytes).map_err(|e| e.to_string())?)
    }
}

/// The internal topic of committed offsets and group records (`group::store`). Named here,
/// below the services that use it, so that the metadata layer never imports `group`.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The topics the broker keeps for itself (Kafka's `Topic.isInternal` plus the KRaft metadata
/// log): `__consumer_offsets` today, `__transaction_state` and `__cluster_metadata` to come.
/// Clients may read them but not create, delete, grow, produce to or truncate them.
pub const INTERNAL_TOPICS: &[&str] = &[OFFSETS_TOPIC, "__transaction_state", "__cluster_metadata"];

/// Whether `name` is one of [`INTERNAL_TOPICS`].
pub fn is_internal_topic(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

/// Kafka's topic-name rule: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), MetadataError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(MetadataError::InvalidTopicName(format!(
            "topic name {name:?} is illegal"
        )));
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return Err(MetadataError::InvalidTopicName(format!(
            "topic name is longer than {TOPIC_NAME_LEN_MAX} characters"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(MetadataError::InvalidTopicName(format!(
            "topic name {name:?} contains {c:?}; legal characters are ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Checks a CreateTopics partition count.
pub fn validate_partitions(n: i32) -> Result<(), MetadataError> {
    if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&n) {
        return Err(MetadataError::InvalidPartitions(format!(
            "number of partitions must be between 1 and {PARTITIONS_PER_TOPIC_MAX}, got {n}"
        )));
    }
    Ok(())
}

/// The directory of one partition: `<data_dir>/<topic>-<partition>`, as in Kafka.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// A fresh random id (topic ids, cluster id).
pub fn random_uuid() -> Uuid {
    let mut bytes = [0u8; 16];
    match std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
    {
        Ok(()) => {}
        Err(_) => {
            // Fall back on the clock and the pid: unique enough for one node.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            bytes[..8].copy_from_slice(&(t.as_nanos() as u64).to_le_bytes());
            bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        }
    }
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Where the metadata lives inside the data directory.
fn metadata_file(data_dir: &Path) -> PathBuf {
    data_dir.join("__cluster_metadata").join("topics.toml")
}

/// Loads the persisted image (the snapshot with the metadata log's records on top), or a new
/// one with `cluster_id` (`cluster.id`), or a fresh one when that is unset: an empty data
/// directory is formatted on its first start. A directory formatted for another cluster id than
/// a given `cluster.id` is refused, as Kafka refuses it.
pub fn load(data_dir: &Path, cluster_id: Option<&str>) -> Result<MetadataImage, MetadataError> {
    let path = metadata_file(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = cluster_id
                .map(str::to_string)
                .unwrap_or_else(|| base64_uuid(random_uuid()));
            let image = MetadataImage {
                cluster_id: id,
                ..MetadataImage::default()
            };
            store(data_dir, &image)?;
            return Ok(image);
        }
        Err(e) => {
            return Err(MetadataError::Storage(format!(
                "reading {}: {e}",
                path.display()
            )))
        }
    };
    let mut image =
        decode(&text).map_err(|e| MetadataError::Storage(format!("{}: {e}", path.display())))?;
    if let Some(given) = cluster_id.filter(|id| *id != image.cluster_id) {
        return Err(MetadataError::Storage(format!(
            "invalid cluster.id: {} was formatted for cluster {}, but cluster.id is {given}",
            data_dir.display(),
            image.cluster_id
        )));
    }
    log::recover(data_dir, &mut image)?;
    Ok(image)
}

/// Persists the image atomically (write a temporary file, fsync, rename, fsync the directory),
/// so a crash leaves either the old image or the new one.
pub fn store(data_dir: &Path, image: &MetadataImage) -> Result<(), MetadataError> {
    let path = metadata_file(data_dir);
    let dir = path.parent().expect("metadata file has a parent");
    let io = |e: std::io::Error| MetadataError::Storage(format!("writing {}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    crate::durable::replace_file(dir, "topics.toml", encode(image).as_bytes()).map_err(io)
}

/// What [`format`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Formatted {
    /// The directory was empty and now belongs to the cluster.
    Now,
    /// It was formatted before, for this cluster id.
    Already(String),
}

/// `kafka-storage.sh format`: makes an empty data directory belong to `cluster_id` (a new
/// cluster's metadata with nothing in it). A directory formatted before is left alone and
/// reported with the cluster id it has. `tidelog serve` formats an empty directory itself on
/// its first start, so this step is for Kafka's habit of formatting first.
pub fn format(data_dir: &Path, cluster_id: &str) -> Result<Formatted, MetadataError> {
    if !valid_cluster_id(cluster_id) {
        return Err(MetadataError::Storage(format!(
            "cluster id {cluster_id:?} is not a UUID in url-safe base64 (22 characters, as \
             `tidelog storage random-uuid` prints)"
        )));
    }
    if let Ok(text) = std::fs::read_to_string(metadata_file(data_dir)) {
        let image = decode(&text).map_err(MetadataError::Storage)?;
        return Ok(Formatted::Already(image.cluster_id));
    }
    load(data_dir, Some(cluster_id))?;
    Ok(Formatted::Now)
}

/// A new cluster id (`kafka-storage.sh random-uuid`).
pub fn random_cluster_id() -> String {
    base64_uuid(random_uuid())
}

/// Kafka's rule for a cluster id: the url-safe base64 of 16 bytes, unpadded (22 characters;
/// like Java's decoder, the unused low bits of the last one are not checked, so Kafka's own
/// documentation example `MkU3OEVBNTcwNTJENDM2Qk` passes).
fn valid_cluster_id(id: &str) -> bool {
    id.len() == 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Kafka prints cluster ids (and directory ids) as url-safe base64 of a UUID (22 characters).
pub fn base64_uuid(id: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in id.as_bytes().chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Reserves `count` producer ids and returns the first. The high-water mark is persisted before
/// any id of the block is used.
pub fn reserve_producer_ids(data_dir: &Path, count: i64) -> Result<i64, MetadataError> {
    let path = data_dir.join("__cluster_metadata").join("producer_ids");
    let start = match std::fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|e| MetadataError::Storage(format!("{}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(MetadataError::Storage(format!("{}: {e}", path.display()))),
    };
    let io = |e: std::io::Error| MetadataError::Storage(format!("writing {}: {e}", path.display()));
    let dir = path.parent().expect("producer-id file has a parent");
    crate::durable::replace_file(dir, "producer_ids", (start + count).to_string().as_bytes())
        .map_err(io)?;
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_makes_an_empty_directory_belong_to_a_cluster_once() {
        let dir = tempfile::tempdir().unwrap();
        let id = random_cluster_id();
        assert!(valid_cluster_id(&id), "{id}");
        assert_eq!(format(dir.path(), &id).unwrap(), Formatted::Now);
        assert_eq!(load(dir.path(), None).unwrap().cluster_id, id);
        assert_eq!(
            format(dir.path(), &random_cluster_id()).unwrap(),
            Formatted::Already(id)
        );
        for bad in [
            "",
            "short",
            "MkU3OEVBNTcwNTJENDM2Q!",
            "MkU3OEVBNTcwNTJENDM2Qk=",
        ] {
            assert!(format(dir.path(), bad).is_err(), "{bad:?}");
        }
        assert!(valid_cluster_id("MkU3OEVBNTcwNTJENDM2Qk"));
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn image_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut image = load(dir.path(), None).unwrap();
        assert_eq!(image.cluster_id.len(), 22);
        let name: Arc<str> = "t".into();
        let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        image.topics.insert(
            name.clone(),
            Arc::new(TopicMeta {
                name,
                id: random_uuid(),
                partitions: 3,
                configs,
                states: vec![
                    PartitionState::new(vec![1, 2]),
                    PartitionState {
                        adding: vec![3],
                        removing: vec![1],
                        ..PartitionState::new(vec![2, 3, 1])
                    },
                    PartitionState::new(vec![2, 1]),
                ],
            }),
        );
        let dynamic = BTreeMap::from([("log.retention.ms".to_string(), "5".to_string())]);
        image.broker_configs.insert(String::new(), dynamic.clone());
        image.broker_configs.insert("1".to_string(), dynamic);
        store(dir.path(), &image).unwrap();
        let again = load(dir.path(), None).unwrap();
        assert_eq!(again.cluster_id, image.cluster_id);
        assert_eq!(load(dir.path(), Some(&image.cluster_id)).unwrap(), again);
        let err = load(dir.path(), Some("another")).unwrap_err().to_string();
        assert!(
            err.contains("formatted for cluster") && err.contains("another"),
            "{err}"
        );
        assert_eq!(again.topics, image.topics);
        assert_eq!(again.broker_configs, image.broker_configs);
    }

    #[test]
    fn compaction_configs_map_to_the_log_config() {
        use crate::config::BrokerConfig;
        use crate::log::CleanupPolicy;
        let mut b = BrokerConfig::default();
        let d = log_config(&b, &BTreeMap::new()).unwrap();
        assert_eq!(d.cleanup_policy, CleanupPolicy::DELETE);
        assert_eq!(d.delete_retention_ms, 86_400_000);
        assert_eq!(d.min_cleanable_dirty_ratio, 0.5);
        b.set("log.cleanup.policy", "compact").unwrap();
        b.set("log.cleaner.delete.retention.ms", "7").unwrap();
        b.set("log.cleaner.backoff.ms", "200").unwrap();
        assert_eq!(b.log_cleaner_backoff_ms, 200);
        let c = log_config(&b, &BTreeMap::new()).unwrap();
        assert!(c.cleanup_policy.compact && !c.cleanup_policy.delete);
        assert_eq!(c.delete_retention_ms, 7);
        let topic = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact,delete".to_string()),
            ("min.compaction.lag.ms".to_string(), "5".to_string()),
            ("delete.retention.ms".to_string(), "9".to_string()),
            ("min.cleanable.dirty.ratio".to_string(), "0.01".to_string()),
        ]);
        let c = log_config(&b, &topic).unwrap();
        assert!(c.cleanup_policy.compact && c.cleanup_policy.delete);
        assert_eq!((c.min_compaction_lag_ms, c.delete_retention_ms), (5, 9));
        assert_eq!(c.min_cleanable_dirty_ratio, 0.01);
        for (k, v) in [
            ("cleanup.policy", "shred"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("delete.retention.ms", "-1"),
        ] {
            let bad = BTreeMap::from([(k.to_string(), v.to_string())]);
            assert!(
                log_config(&b, &bad).unwrap_err().message().contains(k),
                "{k}={v}"
            );
        }
    }
}

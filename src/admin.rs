//! Metadata changes: creating and deleting topics, changing topic configs, adding partitions,
//! allocating producer ids.
//!
//! Every change runs on the metadata shard under its lock: it decides the change against the
//! current image and writes it as metadata records (`metadata::records`), each applied to a
//! copy of the image as it is written, so later parts of the same request see earlier ones;
//! then the records are made durable in the metadata log and the new image is installed on
//! every shard (which opens or removes partitions) before answering, so a client that saw its
//! CreateTopics succeed can produce at once on any connection.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use tracing::info;

use crate::error::{ApiError, ErrorCode, MetadataError};
use crate::metadata::configs::{self, ConfigEdit};
use crate::metadata::controller::Controller;
use crate::metadata::records::{self, MetadataRecord};
use crate::metadata::{self, MetadataImage, PartitionState, TopicMeta};
use crate::router::METADATA_SHARD;
use crate::shard::Shard;

/// A topic to create.
#[derive(Clone, Debug)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker's `num.partitions`.
    pub partitions: i32,
    /// -1: the broker's `default.replication.factor`.
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// A manual replica assignment (`--replica-assignment`), checked by the caller: each
    /// partition's replicas in partition order, the first its preferred leader.
    pub assignment: Option<Vec<Vec<i32>>>,
}

/// The outcome for one topic: its id and partition count, or Kafka's error with a message.
pub type TopicResult = Result<Arc<TopicMeta>, ApiError>;

/// Checks a topic to create against Kafka's rules and the current image: its partition count
/// and replication factor.
fn validate(shard: &Shard, image: &MetadataImage, t: &NewTopic) -> Result<(i32, i16), ApiError> {
    metadata::validate_topic_name(&t.name)?;
    if image.topic(&t.name).is_some() {
        return Err(ApiError::new(
            ErrorCode::TopicAlreadyExists,
            format!("topic '{}' already exists", t.name),
        ));
    }
    let partitions = if t.partitions == -1 {
        shard.config.num_partitions
    } else {
        t.partitions
    };
    metadata::validate_partitions(partitions)?;
    // Kafka's checks and messages (ReplicationControlManager, StripedReplicaPlacer).
    let replication_factor = match t.replication_factor {
        -1 => shard.config.default_replication_factor,
        rf if rf < -1 || rf == 0 => {
            return Err(ApiError::new(
                ErrorCode::InvalidReplicationFactor,
                "Replication factor must be larger than 0, or -1 to use the default value.",
            ))
        }
        rf => rf,
    };
    let brokers = match &shard.cluster {
        Some(_) => image.live_brokers().count(),
        None => 1,
    };
    // A manual assignment names its brokers (checked registered by the caller), live or not.
    if t.assignment.is_none() && replication_factor as usize > brokers {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicationFactor,
            format!(
                "Unable to replicate the partition {replication_factor} time(s): The target \
                 replication factor of {replication_factor} cannot be reached because only \
                 {brokers} broker(s) are registered."
            ),
        ));
    }
    metadata::log_config(&shard.broker_config(), &t.configs)?;
    Ok((partitions, replication_factor))
}

/// Creates topics (or only validates them). Runs on the metadata shard whatever shard calls it.
pub async fn create_topics(
    shard: &Rc<Shard>,
    topics: Vec<NewTopic>,
    validate_only: bool,
) -> Vec<TopicResult> {
    change_metadata(shard, "topics created", move |s, change| {
        let mut total = partition_count(change.image());
        topics
            .iter()
            .map(|t| {
                let (partitions, rf) = validate(s, change.image(), t)?;
                check_fd_budget(s, &mut total, partitions.into())?;
                let mut meta = TopicMeta {
                    name: t.name.as_str().into(),
                    id: metadata::random_uuid(),
                    partitions,
                    configs: t.configs.clone(),
                    states: Vec::new(),
                };
                if s.cluster.is_some() {
                    meta.states = match &t.assignment {
                        Some(a) => a.iter().cloned().map(PartitionState::new).collect(),
                        None => place(change.image(), 0, partitions, rf as usize),
                    };
                }
                if !validate_only {
                    change.write(MetadataRecord::Topic {
                        name: t.name.clone(),
                        id: meta.id,
                        partitions,
                        configs: meta.configs.clone(),
                    })?;
                    write_states(change, meta.id, 0, &meta.states)?;
                }
                Ok(Arc::new(meta))
            })
            .collect()
    })
    .await
}

/// Deletes topics by name. Unknown names get UNKNOWN_TOPIC_OR_PARTITION.
pub async fn delete_topics(
    shard: &Rc<Shard>,
    names: Vec<String>,
) -> Vec<Result<Arc<TopicMeta>, ApiError>> {
    change_metadata(shard, "topics deleted", move |_, change| {
        names
            .iter()
            .map(|n| {
                let meta = change
                    .image()
                    .topic(n)
                    .cloned()
                    .ok_or_else(|| unknown_topic(n))?;
                change.write(MetadataRecord::RemoveTopic { id: meta.id })?;
                Ok(meta)
            })
            .collect()
    })
    .await
}

/// The outcome of one config change or partition addition: Kafka's error with a message.
pub type ChangeResult = Result<(), ApiError>;

/// Changes the configs of topics (AlterConfigs, IncrementalAlterConfigs), or only validates the
/// changes. Applied configs are persisted in the image and take effect on every owner shard
/// before the call returns (`Shard::apply_metadata` hands them to the logs), without a restart.
pub async fn alter_topic_configs(
    shard: &Rc<Shard>,
    edits: Vec<(String, ConfigEdit)>,
    validate_only: bool,
) -> Vec<ChangeResult> {
    change_metadata(shard, "topic configs changed", move |s, change| {
        edits
            .iter()
            .map(|(name, edit)| {
                let meta = change
                    .image()
                    .topic(name)
                    .cloned()
                    .ok_or_else(|| unknown_topic(name))?;
                let next = configs::edit_configs(&s.broker_config(), &meta.configs, edit)?;
                if !validate_only && next != meta.configs {
                    change.write(MetadataRecord::TopicConfigs {
                        id: meta.id,
                        configs: next,
                    })?;
                }
                Ok(())
            })
            .collect()
    })
    .await
}

/// Changes dynamic broker configs (AlterConfigs and IncrementalAlterConfigs on a broker
/// resource: `""` for the cluster-wide defaults, or the node id), or only validates. Stored in
/// the image like topic configs, so they survive a restart and reach every shard, whose topics
/// without their own override follow them at once.
pub async fn alter_broker_configs(
    shard: &Rc<Shard>,
    edits: Vec<(String, ConfigEdit)>,
    validate_only: bool,
) -> Vec<ChangeResult> {
    change_metadata(shard, "broker configs changed", move |s, change| {
        edits
            .iter()
            .map(|(name, edit)| {
                let current = change
                    .image()
                    .broker_configs
                    .get(name)
                    .cloned()
                    .unwrap_or_default();
                let next = configs::edit_broker_configs(&s.config, &current, edit)?;
                if !validate_only && next != current {
                    change.write(MetadataRecord::BrokerConfigs {
                        resource: name.clone(),
                        configs: next,
                    })?;
                }
                Ok(())
            })
            .collect()
    })
    .await
}

/// Raises the partition counts of topics (CreatePartitions), or only validates. New partitions
/// are opened on their owner shards (`shard_for`) when the new image is installed.
pub async fn create_partitions(
    shard: &Rc<Shard>,
    counts: Vec<PartitionsWanted>,
    validate_only: bool,
) -> Vec<ChangeResult> {
    change_metadata(shard, "partitions added", move |s, change| {
        let mut total = partition_count(change.image());
        counts
            .iter()
            .map(
                |PartitionsWanted {
                     name,
                     count,
                     assignment,
                 }| {
                    let meta = change
                        .image()
                        .topic(name)
                        .cloned()
                        .ok_or_else(|| unknown_topic(name))?;
                    check_partition_count(&meta, *count)?;
                    check_fd_budget(s, &mut total, i64::from(*count - meta.partitions))?;
                    let added = *count - meta.partitions;
                    // The topic's replica count (a reassignment in progress counts its target).
                    let rf = meta.states.first().map_or(1, |st| st.target().len());
                    if let Some(a) = assignment {
                        check_added_assignment(a, added, rf)?;
                    }
                    if !validate_only {
                        change.write(MetadataRecord::Partitions {
                            id: meta.id,
                            partitions: *count,
                        })?;
                        if !meta.states.is_empty() {
                            let states = match assignment {
                                Some(a) => a.iter().cloned().map(PartitionState::new).collect(),
                                None => place(change.image(), meta.partitions, added, rf),
                            };
                            write_states(change, meta.id, meta.partitions, &states)?;
                        }
                    }
                    Ok(())
                },
            )
            .collect()
    })
    .await
}

/// A topic's new partition count, and where its added partitions' replicas go when the
/// request names them (`kafka-topics.sh --alter --replica-assignment`).
pub struct PartitionsWanted {
    pub name: String,
    pub count: i32,
    pub assignment: Option<Vec<Vec<i32>>>,
}

/// Checks a manual assignment of `added` new partitions against the topic's replica count
/// `rf`, with Kafka's messages (INVALID_REPLICA_ASSIGNMENT); the caller has checked that the
/// brokers are registered and not repeated.
fn check_added_assignment(a: &[Vec<i32>], added: i32, rf: usize) -> Result<(), ApiError> {
    let invalid = |m: String| ApiError::new(ErrorCode::InvalidReplicaAssignment, m);
    if a.len() != added as usize {
        return Err(invalid(format!(
            "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
            a.len()
        )));
    }
    if let Some(r) = a.iter().find(|r| r.len() != rf) {
        return Err(invalid(format!(
            "The manual partition assignment includes a partition with {} replica(s), but this \
             is inconsistent with previous partitions, which have {rf} replicas.",
            r.len()
        )));
    }
    Ok(())
}

/// Leader elections an operator asks for (ElectLeaders, `kafka-leader-election.sh`): for each
/// partition, the preferred replica (or, `unclean`, any live replica) made leader, or why not.
/// On a single node every partition already has its only possible leader.
pub async fn elect_leaders(
    shard: &Rc<Shard>,
    partitions: Vec<(String, i32)>,
    unclean: bool,
) -> Vec<ChangeResult> {
    use crate::quorum::elections::{self, NoElection};
    change_metadata(shard, "leaders elected", move |_, change| {
        partitions
            .iter()
            .map(|(name, index)| {
                let meta = existing_partition(change, name, *index)?;
                let Some(state) = meta.state(*index) else {
                    return Err(ApiError::new(
                        ErrorCode::ElectionNotNeeded,
                        "a single node leads every partition",
                    ));
                };
                let elected = match unclean {
                    false => elections::preferred(change.image(), state),
                    true => elections::unclean(change.image(), state),
                };
                let next = elected.map_err(|why| match why {
                    NoElection::NotNeeded => ApiError::new(
                        ErrorCode::ElectionNotNeeded,
                        "the leader is already the one this election would choose",
                    ),
                    NoElection::PreferredNotAvailable => ApiError::new(
                        ErrorCode::PreferredLeaderNotAvailable,
                        format!(
                            "the preferred leader {} is not live or not in sync",
                            state.replicas[0]
                        ),
                    ),
                    NoElection::NoEligibleLeader => ApiError::new(
                        ErrorCode::EligibleLeadersNotAvailable,
                        "no live replica can lead",
                    ),
                })?;
                change.write(MetadataRecord::PartitionChange {
                    id: meta.id,
                    index: *index,
                    state: next,
                })
            })
            .collect()
    })
    .await
}

/// Partition reassignments an operator asks for (AlterPartitionReassignments,
/// `kafka-reassign-partitions.sh --execute` and `--cancel`): for each partition, a target
/// replica list to move to, or `None` to cancel the reassignment in progress
/// (`quorum::reassignment`). With `allow_factor_change` false the target must keep the
/// replica count (KIP-860). On a single node the only replica list is this node.
pub async fn alter_reassignments(
    shard: &Rc<Shard>,
    moves: Vec<(String, i32, Option<Vec<i32>>)>,
    allow_factor_change: bool,
) -> Vec<ChangeResult> {
    use crate::quorum::reassignment::{self, Refusal};
    change_metadata(shard, "reassignments changed", move |s, change| {
        moves
            .iter()
            .map(|(name, index, target)| {
                let meta = existing_partition(change, name, *index)?;
                let refused = |why| match why {
                    Refusal::BadTarget(m) => ApiError::new(ErrorCode::InvalidReplicaAssignment, m),
                    Refusal::FactorChange { from, to } => ApiError::new(
                        ErrorCode::InvalidReplicationFactor,
                        format!("the reassignment changes the replica count from {from} to {to}; allow_replication_factor_change is false"),
                    ),
                    Refusal::NoneInProgress => ApiError::new(
                        ErrorCode::NoReassignmentInProgress,
                        format!("no reassignment of {name}-{index} is in progress"),
                    ),
                };
                let Some(state) = meta.state(*index) else {
                    return match target.as_deref() {
                        Some([b]) if *b == s.node_id() => Ok(()),
                        Some(_) => Err(refused(Refusal::BadTarget(format!(
                            "a single node holds every replica on broker {}",
                            s.node_id()
                        )))),
                        None => Err(refused(Refusal::NoneInProgress)),
                    };
                };
                let next = match target {
                    Some(t) => reassignment::start(change.image(), state, t, allow_factor_change),
                    None => reassignment::cancel(change.image(), state),
                }
                .map_err(refused)?;
                if next.replicas == state.replicas && next.isr == state.isr && next.leader == state.leader {
                    return Ok(());
                }
                info!(topic = %name, partition = index, from = ?state.replicas, to = ?next.replicas,
                    adding = ?next.adding, removing = ?next.removing, "partition reassignment");
                change.write(MetadataRecord::PartitionChange {
                    id: meta.id,
                    index: *index,
                    state: next,
                })
            })
            .collect()
    })
    .await
}

/// The topic of partition `name`-`index` in the change's image, or UNKNOWN_TOPIC_OR_PARTITION.
fn existing_partition(change: &Change, name: &str, index: i32) -> Result<Arc<TopicMeta>, ApiError> {
    let meta = change
        .image()
        .topic(name)
        .cloned()
        .ok_or_else(|| unknown_topic(name))?;
    if index < 0 || index >= meta.partitions {
        return Err(ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("{name}-{index} does not exist"),
        ));
    }
    Ok(meta)
}

/// The states of new partitions `first..first + count` of a cluster's topic, `rf` replicas
/// each, round robin over the live brokers from a random start as Kafka places them, each led
/// by its first replica with every replica in sync.
fn place(image: &MetadataImage, first: i32, count: i32, rf: usize) -> Vec<PartitionState> {
    let start = metadata::random_uuid().as_u128() as usize;
    crate::cluster::place(image, first, count, rf, start)
        .into_iter()
        .map(PartitionState::new)
        .collect()
}

/// Writes the Partition records of new partitions `first..` (none on a single node).
fn write_states(
    change: &mut Change,
    id: uuid::Uuid,
    first: i32,
    states: &[PartitionState],
) -> Result<(), ApiError> {
    for (index, state) in (first..).zip(states) {
        change.write(MetadataRecord::Partition {
            id,
            index,
            state: state.clone(),
        })?;
    }
    Ok(())
}

/// Partitions in `image`, every topic (internal ones too) counted.
pub fn partition_count(image: &MetadataImage) -> i64 {
    image.topics.values().map(|t| i64::from(t.partitions)).sum()
}

/// Adds `added` partitions to the running `total` of one request if the descriptor budget
/// (`config::FdBudget`) holds them. Kafka has no such limit; POLICY_VIOLATION is the code Kafka
/// gives a create that a broker-side policy refuses, and the message names the limit.
fn check_fd_budget(s: &Shard, total: &mut i64, added: i64) -> Result<(), ApiError> {
    let after = *total + added;
    if let Some(why) = s.config.fd_budget.refuse(after.max(0) as u64) {
        return Err(ApiError::new(ErrorCode::PolicyViolation, why));
    }
    *total = after;
    Ok(())
}

/// Kafka's rule: partitions can only be added, never removed.
fn check_partition_count(meta: &TopicMeta, count: i32) -> ChangeResult {
    if count <= meta.partitions {
        let msg = if count == meta.partitions {
            format!("topic '{}' already has {count} partitions", meta.name)
        } else {
            format!(
                "topic '{}' currently has {} partitions, which is higher than the requested {count}",
                meta.name, meta.partitions
            )
        };
        return Err(ApiError::new(ErrorCode::InvalidPartitions, msg));
    }
    Ok(metadata::validate_partitions(count)?)
}

fn unknown_topic(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownTopicOrPartition,
        format!("topic '{name}' does not exist"),
    )
}

/// A metadata change being decided: the image as the records written so far leave it, and
/// those records.
struct Change {
    image: MetadataImage,
    records: Vec<MetadataRecord>,
}

impl Change {
    /// The image with every record written so far applied.
    fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Writes one record of the change and applies it to [`Change::image`]. A record that does
    /// not fit the image it was decided against is a bug here, answered as
    /// UNKNOWN_SERVER_ERROR for that item rather than a broken image.
    fn write(&mut self, record: MetadataRecord) -> Result<(), ApiError> {
        records::apply(&mut self.image, &record)
            .map_err(|e| ApiError::new(ErrorCode::UnknownServerError, e))?;
        self.records.push(record);
        Ok(())
    }
}

/// The skeleton every metadata change shares: on the metadata shard, under its lock, `edit`
/// decides each item of the request against the current image and writes its records; if it
/// wrote any, they are committed (a single node's metadata log, or a cluster's quorum) and
/// the new image is installed on every shard before the results are returned. If committing
/// fails, every would-be success gets the failure's code (KAFKA_STORAGE_ERROR,
/// REQUEST_TIMED_OUT).
///
/// In a cluster another broker may change the metadata between this decision and its commit;
/// the quorum then refuses the whole change (it no longer fits), and it is decided again
/// against the newer image, a few times at most; so is a change lost to a controller election
/// (`quorum::transport` tells it lost only once it can no longer apply).
async fn change_metadata<T, F>(
    shard: &Rc<Shard>,
    what: &'static str,
    edit: F,
) -> Vec<Result<T, ApiError>>
where
    T: Send + 'static,
    F: FnMut(&Shard, &mut Change) -> Vec<Result<T, ApiError>> + Send + 'static,
{
    shard
        .router
        .invoke_on(shard, METADATA_SHARD, move |s| async move {
            let mut edit = edit;
            let _guard = controller(&s).lock().await;
            let mut tries = 0;
            loop {
                tries += 1;
                let mut change = Change {
                    image: (*s.metadata()).clone(),
                    records: Vec::new(),
                };
                let results = edit(&s, &mut change);
                if change.records.is_empty() {
                    return results;
                }
                let e = match commit(&s, change).await {
                    Ok(()) => {
                        info!(
                            changes = results.iter().filter(|r| r.is_ok()).count(),
                            "{what}"
                        );
                        return results;
                    }
                    Err(Commit::Again(_)) if tries < CHANGE_TRIES => continue,
                    Err(Commit::Again(why)) => MetadataError::Quorum(format!(
                        "the metadata change did not go through in {CHANGE_TRIES} tries: {why}"
                    )),
                    Err(Commit::Failed(e)) => e,
                };
                let e = ApiError::from(e);
                return results.into_iter().map(|r| r.and(Err(e.clone()))).collect();
            }
        })
        .await
}

/// How many times a cluster's change is decided again after the quorum refused or lost it.
const CHANGE_TRIES: usize = 3;

enum Commit {
    /// Nothing of the change applied, and deciding it again may work: the quorum applied
    /// another change first and this one no longer fits, or it was lost to an election. The
    /// newest image is installed, so deciding again sees every change before it.
    Again(String),
    Failed(MetadataError),
}

/// Makes the change's records durable and installs its image on every shard, the metadata
/// shard last: on a single node through its metadata log; in a cluster through the quorum,
/// whose applied image (with every change before this one) is installed.
async fn commit(s: &Rc<Shard>, change: Change) -> Result<(), Commit> {
    let Some(cluster) = s.cluster.clone() else {
        return publish(s, change).await.map_err(Commit::Failed);
    };
    use crate::quorum::transport::ProposeError;
    match cluster.propose(change.records).await {
        Ok(image) => {
            install(s, image).await;
            Ok(())
        }
        Err(ProposeError::Refused(why)) => {
            install(s, cluster.status().image).await;
            Err(Commit::Again(why))
        }
        Err(ProposeError::Lost) => {
            install(s, cluster.status().image).await;
            Err(Commit::Again("lost to a controller election".into()))
        }
        Err(ProposeError::NotLeader { .. }) => Err(Commit::Failed(MetadataError::Quorum(
            "no active controller: the metadata quorum has no leader".into(),
        ))),
        Err(ProposeError::Stopped) => Err(Commit::Failed(MetadataError::Quorum(
            "the metadata quorum is stopping".into(),
        ))),
    }
}

/// A single node's commit: the records into the metadata log, then the image everywhere.
async fn publish(s: &Rc<Shard>, change: Change) -> Result<(), MetadataError> {
    let data_dir = s.config.data_dir.clone();
    let image = Arc::new(change.image);
    let after = image.clone();
    let records = change.records;
    glommio::executor()
        .spawn_blocking(move || metadata::log::commit(&data_dir, &records, &after))
        .await?;
    install(s, image).await;
    Ok(())
}

/// Installs `image` on every shard, the metadata shard last (a shard skips an image older than
/// the one it has).
pub async fn install(s: &Rc<Shard>, image: Arc<MetadataImage>) {
    for target in 0..s.count() {
        let image = image.clone();
        s.router
            .invoke_on(
                s,
                target,
                move |t| async move { t.apply_metadata(image).await },
            )
            .await;
    }
}

/// A fresh producer id, unique for the life of the data directory.
pub async fn allocate_producer_id(shard: &Rc<Shard>) -> Result<i64, MetadataError> {
    shard
        .router
        .invoke_on(shard, METADATA_SHARD, move |s| async move {
            match s.cluster.clone() {
                None => {
                    controller(&s)
                        .allocate_producer_id(&s.config.data_dir)
                        .await
                }
                Some(cluster) => {
                    let node = s.node_id();
                    controller(&s)
                        .allocate_producer_id_with(|| reserve_block(cluster, node))
                        .await
                }
            }
        })
        .await
}

/// A cluster's block of producer ids for this broker: the next one in the image, through the
/// quorum; a block another broker took first is refused there, and the next one tried.
async fn reserve_block(
    cluster: Arc<crate::cluster::Cluster>,
    node: i32,
) -> Result<i64, MetadataError> {
    use crate::config::PRODUCER_ID_BLOCK;
    use crate::quorum::transport::ProposeError;
    for _ in 0..CHANGE_TRIES {
        let start = cluster.status().image.producer_ids_next;
        let record = MetadataRecord::ProducerIds {
            broker: node,
            start,
            len: PRODUCER_ID_BLOCK,
        };
        match cluster.propose(vec![record]).await {
            Ok(_) => return Ok(start),
            Err(ProposeError::Refused(_)) => continue,
            Err(e) => {
                return Err(MetadataError::Quorum(format!(
                    "reserving producer ids: {e:?}"
                )))
            }
        }
    }
    Err(MetadataError::Quorum(
        "reserving producer ids: other brokers kept taking the next block".into(),
    ))
}

/// The metadata shard's controller; this module only reaches it through `invoke_on` to
/// [`METADATA_SHARD`].
fn controller(s: &Shard) -> &Controller {
    s.controller
        .as_ref()
        .expect("metadata changes run on the metadata shard")
}

//! Partition leadership, decided by the active controller (Kafka's `PartitionChangeBuilder`
//! and the controller's reaction to a fenced or unfenced broker).
//!
//! Every leader, ISR and leader epoch is a record in the metadata log: brokers read them from
//! the image and never derive them. The active controller changes them with
//! `PartitionChange` records, decided here from the image it has applied:
//!
//! - a replica on a broker that is not live (fenced, or never registered) leaves the ISR,
//!   unless it is the last member: a partition keeps its last in-sync replica, so that only
//!   that replica can lead it again (no unclean election);
//! - a partition whose leader is not live, or that has none, is led by the first replica in
//!   preference order that is in the ISR and live, at the next leader epoch; when there is
//!   none it has no leader (offline) until one comes back.
//!
//! A fencing decision and the partition changes it calls for are proposed as one entry, so no
//! image ever shows a fenced broker leading. Each change fits only the partition epoch it was
//! decided from, so a decision proposed twice (a retry, two controllers across an election)
//! applies once.

use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use tracing::warn;

use super::reassignment;
use crate::metadata::records::{self, MetadataRecord};
use crate::metadata::{MetadataImage, PartitionState, NO_LEADER};

/// How long a decision stays in flight before the same image may call for it again.
const RETRY: Duration = Duration::from_secs(2);

/// The partition changes `image` calls for (see the module docs), in topic and partition
/// order.
pub fn reconcile(image: &MetadataImage, unclean_default: bool) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in image.topics.values() {
        let unclean = unclean_allowed(image, &t.configs, unclean_default);
        for (index, state) in (0..).zip(&t.states) {
            if let Some(next) = next_state(image, state, unclean) {
                out.push(MetadataRecord::PartitionChange {
                    id: t.id,
                    index,
                    state: next,
                });
            }
        }
    }
    out
}

/// Whether a topic with `configs` may elect an out-of-sync replica: its own
/// `unclean.leader.election.enable`, else the cluster-wide dynamic one, else `default`.
fn unclean_allowed(
    image: &MetadataImage,
    configs: &BTreeMap<String, String>,
    default: bool,
) -> bool {
    const KEY: &str = "unclean.leader.election.enable";
    configs
        .get(KEY)
        .or_else(|| image.broker_configs.get("").and_then(|c| c.get(KEY)))
        .map_or(default, |v| v.eq_ignore_ascii_case("true"))
}

/// The state that should follow `state` in `image`, or `None` when it stands. With `unclean`
/// (`unclean.leader.election.enable`), a partition left without an in-sync replica to lead
/// takes any live replica instead, as Kafka's controller does.
fn next_state(
    image: &MetadataImage,
    state: &PartitionState,
    unclean: bool,
) -> Option<PartitionState> {
    let live: Vec<i32> = state
        .isr
        .iter()
        .copied()
        .filter(|&b| image.is_live(b))
        .collect();
    let isr = if live.is_empty() {
        state.isr.clone()
    } else {
        live
    };
    let mut next = PartitionState {
        isr,
        ..state.clone()
    };
    // A reassignment whose target is all in sync completes (`reassignment`).
    if let Some(done) = reassignment::completed(&next) {
        next = done;
    }
    let mut next = reassignment::settle(image, state, next);
    if next.leader == NO_LEADER && unclean {
        if let Ok(elected) = self::unclean(image, state) {
            warn!(leader = elected.leader, isr = ?elected.isr, "unclean leader election");
            next = elected;
        }
    }
    let same = PartitionState {
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        ..next.clone()
    };
    (same != *state).then_some(next)
}

/// Why a requested election (ElectLeaders) does not happen, as Kafka's error codes say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoElection {
    /// The wanted leader leads already (ELECTION_NOT_NEEDED).
    NotNeeded,
    /// The preferred replica is not live or not in sync (PREFERRED_LEADER_NOT_AVAILABLE).
    PreferredNotAvailable,
    /// No live replica may lead (ELIGIBLE_LEADERS_NOT_AVAILABLE).
    NoEligibleLeader,
}

/// A preferred-leader election (Kafka's `PREFERRED` election type and the controller's
/// auto-rebalance): the first replica leads, if it is live and in sync.
pub fn preferred(
    image: &MetadataImage,
    state: &PartitionState,
) -> Result<PartitionState, NoElection> {
    let want = state.replicas[0];
    if state.leader == want {
        return Err(NoElection::NotNeeded);
    }
    if !image.is_live(want) || !state.isr.contains(&want) {
        return Err(NoElection::PreferredNotAvailable);
    }
    Ok(PartitionState {
        leader: want,
        leader_epoch: state.leader_epoch + 1,
        partition_epoch: state.partition_epoch + 1,
        ..state.clone()
    })
}

/// An unclean election (Kafka's `UNCLEAN` type): a partition without a live leader is led by a
/// live in-sync replica if there is one, else by any live replica, which becomes the whole ISR
/// (records only the old ISR had are lost: the operator asked for availability over them).
pub fn unclean(
    image: &MetadataImage,
    state: &PartitionState,
) -> Result<PartitionState, NoElection> {
    if state.leader != NO_LEADER && image.is_live(state.leader) {
        return Err(NoElection::NotNeeded);
    }
    let live = |b: &&i32| image.is_live(**b);
    let (leader, isr) = match state
        .replicas
        .iter()
        .filter(|b| state.isr.contains(b))
        .find(live)
    {
        Some(&b) => (
            b,
            state
                .isr
                .iter()
                .copied()
                .filter(|&i| image.is_live(i))
                .collect(),
        ),
        None => match state.replicas.iter().find(live) {
            Some(&b) => (b, vec![b]),
            None => return Err(NoElection::NoEligibleLeader),
        },
    };
    Ok(PartitionState {
        leader,
        isr,
        leader_epoch: state.leader_epoch + 1,
        partition_epoch: state.partition_epoch + 1,
        ..state.clone()
    })
}

/// The preferred-leader elections a rebalance makes now (Kafka's `auto.leader.rebalance.enable`):
/// every partition whose preferred replica is live, in sync and not leading.
pub fn rebalance(image: &MetadataImage) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in image.topics.values() {
        for (index, state) in (0..).zip(&t.states) {
            if let Ok(next) = preferred(image, state) {
                out.push(MetadataRecord::PartitionChange {
                    id: t.id,
                    index,
                    state: next,
                });
            }
        }
    }
    out
}

/// The controller's side: what to propose on each tick.
#[derive(Default)]
pub struct Elections {
    /// The image (by applied count) a proposal was last decided from, and when.
    tried: Option<(u64, Instant)>,
    /// How often leadership moves back to preferred replicas (`None`: never), and when it
    /// last did.
    rebalance_every: Option<Duration>,
    rebalanced: Option<Instant>,
    /// `unclean.leader.election.enable` where neither the topic nor the cluster sets it.
    unclean_default: bool,
}

impl Elections {
    /// Elections that also move leadership back to preferred replicas every `rebalance_every`
    /// (`leader.imbalance.check.interval.seconds` with `auto.leader.rebalance.enable`).
    pub fn new(rebalance_every: Option<Duration>, unclean_default: bool) -> Elections {
        Elections {
            rebalance_every,
            unclean_default,
            ..Elections::default()
        }
    }

    /// The records to propose now, as one entry: the leases' `fencing` decisions with the
    /// partition changes they call for; or, with none, the changes the image calls for on its
    /// own (an offline partition whose replica is back, a change lost to an election), once
    /// per applied image or [`RETRY`]. Nothing unless `ready` (this node leads and may
    /// propose).
    pub fn decide(
        &mut self,
        ready: bool,
        image: &MetadataImage,
        fencing: Vec<MetadataRecord>,
        now: Instant,
    ) -> Vec<MetadataRecord> {
        if !ready {
            self.tried = None;
            self.rebalanced = None;
            return Vec::new();
        }
        if fencing.is_empty() {
            if let Some(every) = self.rebalance_every {
                // A new leader waits one interval, as Kafka's controller schedules its check.
                let last = *self.rebalanced.get_or_insert(now);
                if now.duration_since(last) >= every {
                    self.rebalanced = Some(now);
                    let moves = rebalance(image);
                    if !moves.is_empty() {
                        self.tried = Some((image.applied, now));
                        return moves;
                    }
                }
            }
            if let Some((applied, at)) = self.tried {
                if applied == image.applied && now.duration_since(at) < RETRY {
                    return Vec::new();
                }
            }
            let changes = reconcile(image, self.unclean_default);
            if !changes.is_empty() {
                self.tried = Some((image.applied, now));
            }
            return changes;
        }
        let mut after = image.clone();
        for r in &fencing {
            // Fencing records always fit: the leases decided them from this image.
            let _ = records::apply(&mut after, r);
        }
        self.tried = Some((image.applied, now));
        let mut out = fencing;
        out.extend(reconcile(&after, self.unclean_default));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::TopicMeta;
    use std::sync::Arc;

    fn image(brokers: &[(i32, bool)], states: Vec<PartitionState>) -> MetadataImage {
        let mut image = MetadataImage::with_brokers(brokers);
        let name: Arc<str> = "t".into();
        image.topics.insert(
            name.clone(),
            Arc::new(TopicMeta {
                name,
                id: uuid::Uuid::from_u64_pair(1, 1),
                partitions: states.len() as i32,
                configs: Default::default(),
                states,
            }),
        );
        image
    }

    fn changed(records: &[MetadataRecord]) -> Vec<(i32, PartitionState)> {
        records
            .iter()
            .filter_map(|r| match r {
                MetadataRecord::PartitionChange { index, state, .. } => {
                    Some((*index, state.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn state(replicas: &[i32], isr: &[i32], leader: i32, epoch: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: epoch,
            partition_epoch: epoch,
            ..PartitionState::default()
        }
    }

    #[test]
    fn a_fenced_leader_hands_over_to_the_next_in_sync_replica_at_the_next_epoch() {
        let states = vec![
            state(&[1, 2, 3], &[1, 2, 3], 1, 4),
            state(&[2, 1], &[2], 2, 0),
        ];
        let img = image(&[(1, true), (2, false), (3, false)], states);
        let got = changed(&reconcile(&img, false));
        // Partition 0: 1 leaves the ISR and 2 leads at epoch 5; partition 1 is untouched.
        assert_eq!(
            got,
            vec![(
                0,
                PartitionState {
                    partition_epoch: 5,
                    ..state(&[1, 2, 3], &[2, 3], 2, 5)
                }
            )]
        );
        // Applied, the image calls for nothing more.
        let mut after = img.clone();
        for r in reconcile(&img, false) {
            records::apply(&mut after, &r).unwrap();
        }
        assert!(reconcile(&after, false).is_empty());
    }

    #[test]
    fn the_last_in_sync_replica_stays_and_alone_leads_again() {
        let states = vec![state(&[1, 2], &[1], 1, 0)];
        // 1 fenced: no leader, ISR kept as [1]; 2 is live but out of sync, so not elected.
        let img = image(&[(1, true), (2, false)], states);
        let got = changed(&reconcile(&img, false));
        let offline = PartitionState {
            partition_epoch: 1,
            ..state(&[1, 2], &[1], NO_LEADER, 1)
        };
        assert_eq!(got, vec![(0, offline.clone())]);
        // 1 back: it leads again, one epoch later.
        let back = image(&[(1, false), (2, false)], vec![offline]);
        let got = changed(&reconcile(&back, false));
        assert_eq!(
            got,
            vec![(
                0,
                PartitionState {
                    partition_epoch: 2,
                    ..state(&[1, 2], &[1], 1, 2)
                }
            )]
        );
    }

    #[test]
    fn fencing_and_its_changes_go_out_together_once_per_image() {
        let states = vec![state(&[1], &[1], 1, 0)];
        let img = image(&[(1, false), (2, false)], states);
        let mut e = Elections::default();
        let t0 = Instant::now();
        assert!(e.decide(true, &img, Vec::new(), t0).is_empty());
        let fence = MetadataRecord::BrokerFenced {
            id: 1,
            fenced: true,
        };
        let out = e.decide(true, &img, vec![fence.clone()], t0);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], fence);
        assert_eq!(changed(&out)[0].1.leader, NO_LEADER);
        // The whole batch applies to the image it was decided from.
        let mut after = img.clone();
        for r in &out {
            records::apply(&mut after, r).unwrap();
        }
        assert!(e.decide(true, &after, Vec::new(), t0).is_empty());
        // A follower never decides.
        assert!(e.decide(false, &img, vec![fence], t0).is_empty());
    }

    #[test]
    fn preferred_and_unclean_elections_follow_kafka() {
        // 1 is preferred, in sync and live, but 2 leads (after 1 came back).
        let st = state(&[1, 2, 3], &[2, 1], 2, 4);
        let img = image(&[(1, false), (2, false), (3, false)], vec![st.clone()]);
        let next = preferred(&img, &st).unwrap();
        assert_eq!(
            (next.leader, next.leader_epoch, next.isr.clone()),
            (1, 5, vec![2, 1])
        );
        assert_eq!(preferred(&img, &next), Err(NoElection::NotNeeded));
        // Out of sync, or fenced: not available.
        let out = state(&[3, 2, 1], &[2, 1], 2, 4);
        assert_eq!(
            preferred(&img, &out),
            Err(NoElection::PreferredNotAvailable)
        );
        let fenced = image(&[(1, true), (2, false), (3, false)], vec![st.clone()]);
        assert_eq!(
            preferred(&fenced, &st),
            Err(NoElection::PreferredNotAvailable)
        );
        // Unclean: a live leader needs none; an offline partition takes a live in-sync replica
        // first, else any live replica, which becomes the whole ISR.
        assert_eq!(unclean(&img, &st), Err(NoElection::NotNeeded));
        let offline = state(&[1, 2, 3], &[1], NO_LEADER, 4);
        let only3 = image(&[(1, true), (2, true), (3, false)], vec![offline.clone()]);
        let next = unclean(&only3, &offline).unwrap();
        assert_eq!(
            (next.leader, next.isr.clone(), next.leader_epoch),
            (3, vec![3], 5)
        );
        let none = image(&[(1, true), (2, true), (3, true)], vec![offline.clone()]);
        assert_eq!(unclean(&none, &offline), Err(NoElection::NoEligibleLeader));
    }

    #[test]
    fn unclean_elections_follow_the_topic_then_the_cluster_then_the_default() {
        // 1, the only in-sync replica, is fenced; 2 is live but out of sync.
        let st = state(&[1, 2], &[1], 1, 0);
        let mut img = image(&[(1, true), (2, false)], vec![st]);
        let leader = |img: &MetadataImage, default| changed(&reconcile(img, default))[0].1.leader;
        assert_eq!(leader(&img, false), NO_LEADER);
        assert_eq!(leader(&img, true), 2);
        let key = "unclean.leader.election.enable".to_string();
        img.broker_configs
            .insert(String::new(), [(key.clone(), "true".to_string())].into());
        assert_eq!(leader(&img, false), 2);
        let mut topic = (*img.topics["t"]).clone();
        topic.configs.insert(key, "false".into());
        img.topics.insert("t".into(), Arc::new(topic));
        assert_eq!(leader(&img, true), NO_LEADER);
    }

    #[test]
    fn a_reassignment_completes_when_its_target_is_in_sync() {
        // 1,2 → 2,3: 3 added; once the leader 1 has 3 in its ISR, 1 leaves and 2 leads.
        let moving = PartitionState {
            adding: vec![3],
            removing: vec![1],
            ..state(&[2, 3, 1], &[1, 2], 1, 2)
        };
        let img = image(&[(1, false), (2, false), (3, false)], vec![moving.clone()]);
        assert!(reconcile(&img, false).is_empty());
        let in_sync = PartitionState {
            isr: vec![1, 2, 3],
            ..moving
        };
        let img = image(&[(1, false), (2, false), (3, false)], vec![in_sync]);
        let got = changed(&reconcile(&img, false));
        assert_eq!(
            got,
            vec![(
                0,
                PartitionState {
                    partition_epoch: 3,
                    ..state(&[2, 3], &[2, 3], 2, 3)
                }
            )]
        );
    }

    #[test]
    fn the_controller_rebalances_to_preferred_leaders_once_an_interval() {
        let every = Duration::from_secs(300);
        let st = state(&[1, 2], &[2, 1], 2, 0);
        let img = image(&[(1, false), (2, false)], vec![st]);
        let mut e = Elections::new(Some(every), false);
        let t0 = Instant::now();
        // A new leader waits a whole interval first.
        assert!(e.decide(true, &img, Vec::new(), t0).is_empty());
        let later = t0 + every;
        let moves = changed(&e.decide(true, &img, Vec::new(), later));
        assert_eq!(moves.len(), 1);
        assert_eq!((moves[0].1.leader, moves[0].1.leader_epoch), (1, 1));
        // Not again before the next interval; never without auto-rebalance.
        assert!(e.decide(true, &img, Vec::new(), later).is_empty());
        let mut off = Elections::new(None, false);
        assert!(off.decide(true, &img, Vec::new(), later).is_empty());
    }
}

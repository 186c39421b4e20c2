//! Partition reassignment (KIP-455; what `kafka-reassign-partitions.sh` and
//! `Admin.alterPartitionReassignments` ask for), decided from the image like every other
//! partition change.
//!
//! A reassignment from the original replicas to a target is one `PartitionChange` that makes
//! the replicas the target followed by the original replicas not in it, with the replicas the
//! target adds in `adding` and those it drops in `removing` (Kafka's PartitionChangeRecord
//! fields). The added replicas are opened by their brokers, follow the leader and join the ISR
//! like any follower that catches up; they lead nothing before. When every replica of the
//! target is in sync, the controller completes it (`completed`, from `elections::reconcile`):
//! the replicas become the target, the ISR loses the removed ones, and a leader that was
//! removed hands over to the first in-sync replica of the target. The removed replicas'
//! brokers then delete their copies. A cancellation goes back to the original replicas.

use crate::metadata::{MetadataImage, PartitionState, NO_LEADER};

/// Why a reassignment cannot begin or be cancelled, as Kafka's error codes say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Empty, repeated or unregistered brokers (INVALID_REPLICA_ASSIGNMENT).
    BadTarget(String),
    /// The replica count would change and the client did not allow it (KIP-860,
    /// INVALID_REPLICATION_FACTOR).
    FactorChange { from: usize, to: usize },
    /// A cancellation with none in progress (NO_REASSIGNMENT_IN_PROGRESS).
    NoneInProgress,
}

/// The state that begins moving `state` to `target` (replacing a reassignment in progress, as
/// Kafka does: the new target counts from the original replicas). A target equal to the
/// replicas (in any order) completes at once: the order, and so the preferred leader, is the
/// target's.
pub fn start(
    image: &MetadataImage,
    state: &PartitionState,
    target: &[i32],
    allow_factor_change: bool,
) -> Result<PartitionState, Refusal> {
    let distinct = target
        .iter()
        .enumerate()
        .all(|(i, b)| !target[..i].contains(b));
    if target.is_empty() || !distinct {
        return Err(Refusal::BadTarget(format!(
            "the replica list {target:?} is empty or names a broker twice"
        )));
    }
    if let Some(b) = target.iter().find(|b| !image.brokers.contains_key(b)) {
        return Err(Refusal::BadTarget(format!(
            "the replica list names broker {b}, but no such broker is registered"
        )));
    }
    let original = state.original();
    if !allow_factor_change && target.len() != original.len() {
        return Err(Refusal::FactorChange {
            from: original.len(),
            to: target.len(),
        });
    }
    let mut replicas = target.to_vec();
    replicas.extend(original.iter().filter(|b| !target.contains(b)));
    let moving = PartitionState {
        adding: target
            .iter()
            .copied()
            .filter(|b| !original.contains(b))
            .collect(),
        removing: original
            .iter()
            .copied()
            .filter(|b| !target.contains(b))
            .collect(),
        isr: state
            .isr
            .iter()
            .copied()
            .filter(|b| replicas.contains(b))
            .collect(),
        replicas,
        ..state.clone()
    };
    Ok(settle(image, state, completed(&moving).unwrap_or(moving)))
}

/// The state that cancels the reassignment in progress: the original replicas again, the added
/// ones out of the ISR (and out of the leadership, if one had taken it).
pub fn cancel(image: &MetadataImage, state: &PartitionState) -> Result<PartitionState, Refusal> {
    if !state.is_reassigning() {
        return Err(Refusal::NoneInProgress);
    }
    let original = state.original();
    let mut isr: Vec<i32> = state
        .isr
        .iter()
        .copied()
        .filter(|b| original.contains(b))
        .collect();
    if isr.is_empty() {
        // Only added replicas were in sync: the original preferred replica is the one that
        // may lead again, as after an unclean election (its tail beyond theirs is lost).
        isr.push(original[0]);
    }
    let reverted = PartitionState {
        replicas: original,
        isr,
        adding: Vec::new(),
        removing: Vec::new(),
        ..state.clone()
    };
    Ok(settle(image, state, reverted))
}

/// The state that completes the reassignment in progress in `state`, once every replica of its
/// target is in sync; `None` before, or when there is none.
pub fn completed(state: &PartitionState) -> Option<PartitionState> {
    let target = state.target();
    if !state.is_reassigning() || !target.iter().all(|b| state.isr.contains(b)) {
        return None;
    }
    Some(PartitionState {
        isr: state
            .isr
            .iter()
            .copied()
            .filter(|b| target.contains(b))
            .collect(),
        replicas: target,
        adding: Vec::new(),
        removing: Vec::new(),
        ..state.clone()
    })
}

/// `next` as a change of `from`: its leader kept if it is still a live in-sync replica, else
/// the first live in-sync replica in preference order; the epochs that change calls for.
pub fn settle(
    image: &MetadataImage,
    from: &PartitionState,
    next: PartitionState,
) -> PartitionState {
    let eligible = |b: i32| next.isr.contains(&b) && image.is_live(b);
    let leader = if from.leader != NO_LEADER && eligible(from.leader) {
        from.leader
    } else {
        next.replicas
            .iter()
            .copied()
            .find(|&b| eligible(b) && !next.adding.contains(&b))
            .unwrap_or(NO_LEADER)
    };
    PartitionState {
        leader,
        leader_epoch: from.leader_epoch + i32::from(leader != from.leader),
        partition_epoch: from.partition_epoch + 1,
        ..next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(live: &[i32], fenced: &[i32]) -> MetadataImage {
        let brokers: Vec<(i32, bool)> = live
            .iter()
            .map(|&b| (b, false))
            .chain(fenced.iter().map(|&b| (b, true)))
            .collect();
        MetadataImage::with_brokers(&brokers)
    }

    fn state(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 3,
            partition_epoch: 7,
            ..PartitionState::default()
        }
    }

    #[test]
    fn a_move_adds_first_and_removes_once_the_target_is_in_sync() {
        let img = image(&[1, 2, 3, 4], &[]);
        let st = state(&[1, 2, 3], &[1, 2, 3], 1);
        // 1,2,3 → 4,2,3: 4 is added (out of sync), 1 leaves later; 1 still leads.
        let moving = start(&img, &st, &[4, 2, 3], false).unwrap();
        assert_eq!(moving.replicas, vec![4, 2, 3, 1]);
        assert_eq!(
            (moving.adding.clone(), moving.removing.clone()),
            (vec![4], vec![1])
        );
        assert_eq!(
            (moving.leader, moving.leader_epoch, moving.partition_epoch),
            (1, 3, 8)
        );
        assert_eq!(moving.target(), vec![4, 2, 3]);
        assert_eq!(moving.original(), vec![2, 3, 1]);
        moving.check().unwrap();
        st.check_change(&moving).unwrap();
        assert_eq!(completed(&moving), None);
        // 4 joins the ISR: complete, and the removed leader hands over to the target's first
        // in-sync replica, 4, at the next epoch.
        let in_sync = PartitionState {
            isr: vec![1, 2, 3, 4],
            partition_epoch: 9,
            ..moving.clone()
        };
        let done = settle(&img, &in_sync, completed(&in_sync).unwrap());
        assert_eq!(done.replicas, vec![4, 2, 3]);
        assert_eq!(done.isr, vec![2, 3, 4]);
        assert!(!done.is_reassigning());
        assert_eq!(
            (done.leader, done.leader_epoch, done.partition_epoch),
            (4, 4, 10)
        );
        in_sync.check_change(&done).unwrap();
    }

    #[test]
    fn reorders_and_shrinks_complete_at_once_and_a_cancel_goes_back() {
        let img = image(&[1, 2, 3], &[]);
        let st = state(&[1, 2, 3], &[1, 2, 3], 1);
        let reordered = start(&img, &st, &[3, 1, 2], false).unwrap();
        assert_eq!(
            (reordered.replicas.clone(), reordered.leader),
            (vec![3, 1, 2], 1)
        );
        assert!(!reordered.is_reassigning());
        assert_eq!(
            start(&img, &st, &[1, 2], false),
            Err(Refusal::FactorChange { from: 3, to: 2 })
        );
        let shrunk = start(&img, &st, &[2, 3], true).unwrap();
        assert_eq!(
            (shrunk.replicas.clone(), shrunk.isr.clone()),
            (vec![2, 3], vec![2, 3])
        );
        assert_eq!((shrunk.leader, shrunk.leader_epoch), (2, 4));
        // Unknown, repeated or no brokers.
        assert!(matches!(
            start(&img, &st, &[1, 2, 9], false),
            Err(Refusal::BadTarget(_))
        ));
        assert!(matches!(
            start(&img, &st, &[1, 1, 2], false),
            Err(Refusal::BadTarget(_))
        ));
        assert!(matches!(
            start(&img, &st, &[], true),
            Err(Refusal::BadTarget(_))
        ));
        // Cancel: nothing in progress, then a move to a fenced broker taken back.
        assert_eq!(cancel(&img, &st), Err(Refusal::NoneInProgress));
        let img4 = image(&[1, 2, 3], &[4]);
        let moving = start(&img4, &st, &[1, 2, 4], false).unwrap();
        let back = cancel(&img4, &moving).unwrap();
        assert_eq!(
            (back.replicas.clone(), back.isr.clone()),
            (vec![1, 2, 3], vec![1, 2, 3])
        );
        assert!(!back.is_reassigning());
        moving.check_change(&back).unwrap();
        // A new target while one is in progress counts from the original replicas.
        let again = start(&img4, &moving, &[1, 3, 4], false).unwrap();
        assert_eq!(
            (again.adding.clone(), again.removing.clone()),
            (vec![4], vec![2])
        );
        assert_eq!(again.replicas, vec![1, 3, 4, 2]);
    }
}

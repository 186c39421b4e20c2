//! The metadata state machine and its log: replay is deterministic, a snapshot plus the tail
//! gives the image the whole log gives, and a crash at any point of an append or a snapshot
//! leaves an image some prefix of the changes made.

use std::collections::BTreeMap;

use super::super::records::{apply, MetadataRecord};
use super::super::{load, MetadataImage, PartitionState, TopicMeta, NO_LEADER, SINGLE_NODE_EPOCH};
use super::*;
use crate::util::TestRng;

const CLUSTER: &str = "MkU3OEVBNTcwNTJENDM2Qk";

fn configs(rng: &mut TestRng) -> BTreeMap<String, String> {
    (0..rng.below(3))
        .map(|i| (format!("k{i}"), rng.below(1000).to_string()))
        .collect()
}

/// A valid next change for `image`: one record the controller could have written, a
/// cluster's (brokers, partition states and their changes, producer ids) among them.
fn change(rng: &mut TestRng, image: &MetadataImage, serial: &mut u64) -> MetadataRecord {
    let topics: Vec<_> = image.topics.values().cloned().collect();
    let pick = rng.below(10);
    match pick {
        5 => {
            let id = 1 + rng.below(3) as i32;
            return MetadataRecord::RegisterBroker {
                id,
                host: format!("127.0.0.{id}"),
                port: 9092 + rng.below(2) as i32,
                rack: (rng.below(2) == 0).then(|| format!("r{}", rng.below(2))),
            };
        }
        6 if !image.brokers.is_empty() => {
            let ids: Vec<i32> = image.brokers.keys().copied().collect();
            return MetadataRecord::BrokerFenced {
                id: ids[rng.below(ids.len() as u64) as usize],
                fenced: rng.below(2) == 0,
            };
        }
        7 => {
            return MetadataRecord::ProducerIds {
                broker: 1,
                start: image.producer_ids_next,
                len: 1 + rng.below(1000) as i64,
            }
        }
        8 => {
            if let Some(t) = topics
                .iter()
                .find(|t| t.states.len() < t.partitions as usize)
            {
                let p = t.states.len() as i32;
                return MetadataRecord::Partition {
                    id: t.id,
                    index: p,
                    state: PartitionState::new(vec![1 + p % 3, 1 + (p + 1) % 3]),
                };
            }
        }
        9 => {
            if let Some(t) = topics.iter().find(|t| !t.states.is_empty()) {
                let index = rng.below(t.states.len() as u64) as i32;
                let mut state = t.states[index as usize].clone();
                state.leader = match state.leader {
                    NO_LEADER => state.isr[rng.below(state.isr.len() as u64) as usize],
                    _ => NO_LEADER,
                };
                state.leader_epoch += 1;
                state.partition_epoch += 1;
                // Every other change begins or ends a reassignment that adds broker 9.
                if state.is_reassigning() {
                    state.replicas.retain(|&b| b != 9);
                    state.adding.clear();
                } else if rng.below(2) == 0 {
                    state.replicas.push(9);
                    state.adding.push(9);
                }
                return MetadataRecord::PartitionChange {
                    id: t.id,
                    index,
                    state,
                };
            }
        }
        _ => {}
    }
    let pick = pick % 5;
    if topics.is_empty() || pick == 0 {
        *serial += 1;
        return MetadataRecord::Topic {
            name: format!("t{serial}"),
            id: uuid::Uuid::from_u64_pair(*serial, rng.next()),
            partitions: 1 + rng.below(8) as i32,
            configs: configs(rng),
        };
    }
    let t = &topics[rng.below(topics.len() as u64) as usize];
    match pick {
        1 => MetadataRecord::RemoveTopic { id: t.id },
        2 => MetadataRecord::Partitions {
            id: t.id,
            partitions: t.partitions + 1 + rng.below(3) as i32,
        },
        3 => MetadataRecord::TopicConfigs {
            id: t.id,
            configs: configs(rng),
        },
        _ => MetadataRecord::BrokerConfigs {
            resource: ["", "1", "2"][rng.below(3) as usize].to_string(),
            configs: configs(rng),
        },
    }
}

/// `n` changes from `seed`, committed in groups of 1 to 4 records with the given snapshot
/// threshold; returns the image after each group (the first: the empty image).
fn run(dir: &Path, seed: u64, n: usize, snapshot_bytes: u64) -> Vec<MetadataImage> {
    let mut rng = TestRng(seed);
    let mut image = load(dir, Some(CLUSTER)).unwrap();
    let mut after_each = vec![image.clone()];
    let mut serial = 0;
    let mut done = 0;
    while done < n {
        let group = 1 + rng.below(4) as usize;
        let mut records = Vec::new();
        for _ in 0..group {
            let r = change(&mut rng, &image, &mut serial);
            apply(&mut image, &r).unwrap();
            records.push(r);
        }
        commit_with(dir, &records, &image, snapshot_bytes).unwrap();
        after_each.push(image.clone());
        done += group;
    }
    after_each
}

#[test]
fn every_record_round_trips_and_a_damaged_one_is_refused() {
    let mut rng = TestRng(7);
    let mut image = MetadataImage::default();
    let mut serial = 0;
    for _ in 0..500 {
        let r = change(&mut rng, &image, &mut serial);
        let bytes = r.encode();
        assert_eq!(MetadataRecord::decode(&bytes).unwrap(), r);
        assert!(MetadataRecord::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(MetadataRecord::decode(&longer).is_err());
        apply(&mut image, &r).unwrap();
    }
    assert_eq!(image.applied, 500);
    assert!(MetadataRecord::decode(&[99]).is_err());
    assert!(!image.brokers.is_empty() && image.producer_ids_next > 0);
    assert!(image.topics.values().any(|t| !t.states.is_empty()));
    assert!(image
        .topics
        .values()
        .any(|t| t.states.iter().any(|s| s.is_reassigning())));
}

#[test]
fn a_partition_change_applies_only_to_the_state_it_was_decided_from() {
    let mut image = MetadataImage::default();
    let id = uuid::Uuid::from_u64_pair(1, 1);
    let records = [
        MetadataRecord::Topic {
            name: "a".into(),
            id,
            partitions: 2,
            configs: BTreeMap::new(),
        },
        MetadataRecord::Partition {
            id,
            index: 0,
            state: PartitionState::new(vec![2, 1]),
        },
        MetadataRecord::Partition {
            id,
            index: 1,
            state: PartitionState::new(vec![3]),
        },
    ];
    for r in &records {
        apply(&mut image, r).unwrap();
    }
    let t = image.topic("a").unwrap().clone();
    assert_eq!((t.leader(0, 9), t.leader_epoch(0)), (Some(2), 0));
    assert_eq!(t.isr(0, 9), vec![2, 1]);
    // Leader 2 fenced: 1 leads at the next epoch, 2 leaves the ISR.
    let moved = PartitionState {
        leader: 1,
        isr: vec![1],
        leader_epoch: 1,
        partition_epoch: 1,
        ..t.states[0].clone()
    };
    let change = MetadataRecord::PartitionChange {
        id,
        index: 0,
        state: moved.clone(),
    };
    apply(&mut image, &change).unwrap();
    let t = image.topic("a").unwrap().clone();
    assert_eq!((t.leader(0, 9), t.leader_epoch(0)), (Some(1), 1));
    // The same decision again (a second controller's, or a retry) no longer fits.
    let before = image.clone();
    assert!(apply(&mut image, &change).is_err());
    // Nor does a leader change without a new leader epoch, an ISR-only change that raises
    // it, or a leader outside the ISR.
    for bad in [
        PartitionState {
            leader: NO_LEADER,
            partition_epoch: 2,
            ..moved.clone()
        },
        PartitionState {
            isr: vec![1, 2],
            leader_epoch: 2,
            partition_epoch: 2,
            ..moved.clone()
        },
        PartitionState {
            leader: 2,
            leader_epoch: 2,
            partition_epoch: 2,
            ..moved.clone()
        },
    ] {
        let r = MetadataRecord::PartitionChange {
            id,
            index: 0,
            state: bad,
        };
        assert!(apply(&mut image, &r).is_err(), "{r:?}");
        assert_eq!(image, before);
    }
    // An offline partition has no leader; a single node's topic (no states) is the node's,
    // at the single node's epoch.
    let offline = PartitionState {
        leader: NO_LEADER,
        leader_epoch: 1,
        partition_epoch: 1,
        ..t.states[1].clone()
    };
    let r = MetadataRecord::PartitionChange {
        id,
        index: 1,
        state: offline,
    };
    apply(&mut image, &r).unwrap();
    assert_eq!(image.topic("a").unwrap().leader(1, 9), None);
    let single = TopicMeta {
        states: Vec::new(),
        ..(*t).clone()
    };
    assert_eq!(single.leader(1, 7), Some(7));
    assert_eq!(single.leader_epoch(1), SINGLE_NODE_EPOCH);
}

#[test]
fn a_record_that_does_not_fit_the_image_is_refused_and_changes_nothing() {
    let mut image = MetadataImage::default();
    let id = uuid::Uuid::from_u64_pair(1, 1);
    let topic = MetadataRecord::Topic {
        name: "a".into(),
        id,
        partitions: 2,
        configs: BTreeMap::new(),
    };
    apply(&mut image, &topic).unwrap();
    let before = image.clone();
    for bad in [
        topic.clone(),
        MetadataRecord::RemoveTopic {
            id: uuid::Uuid::from_u64_pair(2, 2),
        },
        MetadataRecord::Partitions { id, partitions: 2 },
        // Partitions get a state in order, within the partitions, with valid replicas.
        MetadataRecord::Partition {
            id,
            index: 1,
            state: PartitionState::new(vec![1]),
        },
        MetadataRecord::Partition {
            id,
            index: 2,
            state: PartitionState::new(vec![1]),
        },
        MetadataRecord::Partition {
            id,
            index: 0,
            state: PartitionState::new(vec![]),
        },
        MetadataRecord::Partition {
            id,
            index: 0,
            state: PartitionState::new(vec![1, 1]),
        },
        MetadataRecord::PartitionChange {
            id,
            index: 0,
            state: PartitionState::new(vec![1]),
        },
        MetadataRecord::BrokerFenced {
            id: 1,
            fenced: true,
        },
        MetadataRecord::ProducerIds {
            broker: 1,
            start: 1000,
            len: 1000,
        },
    ] {
        assert!(apply(&mut image, &bad).is_err(), "{bad:?}");
        assert_eq!(image, before);
    }
}

#[test]
fn replaying_the_log_gives_the_image_the_controller_built() {
    for seed in [1, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let images = run(dir.path(), seed, 300, u64::MAX);
        let last = images.last().unwrap();
        assert!(last.applied >= 300);
        assert_eq!(&load(dir.path(), None).unwrap(), last, "seed {seed}");
        // The same records applied to a fresh image in a second run give the same image.
        let again = tempfile::tempdir().unwrap();
        assert_eq!(run(again.path(), seed, 300, u64::MAX).last(), Some(last));
    }
}

#[test]
fn a_snapshot_and_the_tail_give_the_image_the_whole_log_gives() {
    let whole = tempfile::tempdir().unwrap();
    let snapshotted = tempfile::tempdir().unwrap();
    let a = run(whole.path(), 11, 400, u64::MAX);
    // A threshold of 600 bytes takes a snapshot every few changes.
    let b = run(snapshotted.path(), 11, 400, 600);
    assert_eq!(a, b);
    let log_len = std::fs::metadata(log_file(snapshotted.path()))
        .unwrap()
        .len();
    assert!(
        log_len < 1000,
        "the log was folded into snapshots: {log_len} bytes"
    );
    assert_eq!(load(snapshotted.path(), None).unwrap(), *a.last().unwrap());
    assert_eq!(load(whole.path(), None).unwrap(), *a.last().unwrap());
}

#[test]
fn a_crash_between_the_snapshot_and_emptying_the_log_replays_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let images = run(dir.path(), 5, 100, u64::MAX);
    // The snapshot of a middle image is written, the log still holds every record.
    let middle = &images[images.len() / 2];
    super::super::store(dir.path(), middle).unwrap();
    assert_eq!(&load(dir.path(), None).unwrap(), images.last().unwrap());
    // And the snapshot of the last image with the whole log behind it.
    super::super::store(dir.path(), images.last().unwrap()).unwrap();
    assert_eq!(&load(dir.path(), None).unwrap(), images.last().unwrap());
}

#[test]
fn a_torn_append_is_cut_off_and_the_next_change_follows_the_last_whole_one() {
    let dir = tempfile::tempdir().unwrap();
    let images = run(dir.path(), 9, 60, u64::MAX);
    let path = log_file(dir.path());
    let whole = std::fs::read(&path).unwrap();
    // Every cut inside the last change's frame recovers to the image before that change, as
    // the controller built it: never a part of a change, never an error.
    let before_last = &images[images.len() - 2];
    let (all, end) = crate::durable::frames(&whole);
    assert_eq!(end, whole.len());
    let last_frame_start = whole.len() - crate::durable::FRAME_HEADER - all.last().unwrap().len();
    for cut in last_frame_start..whole.len() {
        std::fs::write(&path, &whole[..cut]).unwrap();
        let got = load(dir.path(), None).unwrap();
        assert_eq!(&got, before_last, "cut at {cut} of {}", whole.len());
        assert!(std::fs::metadata(&path).unwrap().len() as usize <= cut);
    }
    // A flipped byte in the last frame fails its CRC: the whole last change is gone.
    let mut flipped = whole.clone();
    *flipped.last_mut().unwrap() ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    let got = load(dir.path(), None).unwrap();
    assert_eq!(&got, before_last);
    // The next change is written at the offset after the last whole record.
    let mut next = got.clone();
    let r = MetadataRecord::BrokerConfigs {
        resource: String::new(),
        configs: BTreeMap::from([("a".to_string(), "b".to_string())]),
    };
    apply(&mut next, &r).unwrap();
    commit(dir.path(), &[r], &next).unwrap();
    assert_eq!(load(dir.path(), None).unwrap(), next);
}

#[test]
fn a_gap_in_the_log_stops_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut image = load(dir.path(), Some(CLUSTER)).unwrap();
    let r = MetadataRecord::BrokerConfigs {
        resource: "1".into(),
        configs: BTreeMap::from([("a".to_string(), "b".to_string())]),
    };
    // Written as if two records came before it.
    image.applied = 2;
    apply(&mut image, &r).unwrap();
    commit(dir.path(), &[r], &image).unwrap();
    let err = load(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("gap"), "{err}");
}

mod damaged {
    use proptest::prelude::*;

    use super::super::super::records::MetadataRecord;
    use super::*;

    proptest! {
        /// Whatever bytes a damaged disk hands back, decoding a record or recovering a log
        /// answers an error or an image, never a panic or a runaway allocation.
        #[test]
        fn any_bytes_decode_to_a_record_or_an_error(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = MetadataRecord::decode(&b);
        }

        #[test]
        fn any_log_bytes_recover_or_refuse(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let dir = tempfile::tempdir().unwrap();
            load(dir.path(), Some(CLUSTER)).unwrap();
            std::fs::write(log_file(dir.path()), &b).unwrap();
            let _ = load(dir.path(), None);
        }
    }
}

//! Tests of truncation: a follower's copy of a leader's log (`tests_replica.rs`) cut in a
//! segment, at a segment boundary, inside a batch and below the log start, then copied on; and
//! a crash simulated after every disk step of a truncation, which must reopen to a valid prefix.

use std::path::{Path, PathBuf};

use kafka_protocol::records::Compression;

use super::batch::{self, tests::make_batch};
use super::tests_replica::{
    assert_same, batch_of, config, leader, picture, read_bytes, reopened, replicate, split, Picture,
};
use super::truncate::CRASH_AFTER_STEPS;
use super::*;
use crate::runtime::block_on;

/// A follower's copy of `leader` in `path`, up to `upto`.
async fn copy(leader: &PartitionLog, path: &Path, upto: Offset) -> PartitionLog {
    let log = PartitionLog::open(path.to_path_buf(), config())
        .await
        .unwrap();
    replicate(leader, &log, upto).await;
    log
}

/// Base offsets of the leader's segments and of the batches in each.
fn layout(log: &PartitionLog) -> Vec<(Offset, Vec<i64>)> {
    let st = log.st.borrow();
    st.segments
        .iter()
        .map(|seg| {
            let mut bases = Vec::new();
            let mut at = seg.base;
            while let Some((_, h)) = seg.find_batch(at).unwrap() {
                bases.push(h.base_offset);
                at = Offset(h.last_offset() + 1);
            }
            (seg.base, bases)
        })
        .collect()
}

/// The picture of `log` without its producer state, which after a truncation holds less than a
/// copy made up to the same point (see `truncate.rs`), checked separately.
async fn picture_but_producers(log: &PartitionLog) -> Picture {
    let mut p = picture(log).await;
    p.producers.clear();
    p
}

/// After a truncation at `end`: no remembered batch at or past it, and every one below is
/// remembered as the copy made up to `end` remembers it.
fn producers_cut_at(truncated: &PartitionLog, reference: &PartitionLog, end: Offset) {
    let (t, r) = (truncated.st.borrow(), reference.st.borrow());
    for (pid, _, batches) in t.producers.view() {
        let theirs = r.producers.view().into_iter().find(|p| p.0 == pid);
        let theirs: Vec<_> = theirs.map(|p| p.2).unwrap_or_default();
        for b in &batches {
            assert!(b.base_offset < end.0, "producer {pid} remembers {b:?}");
            assert!(
                theirs.contains(b),
                "producer {pid}: {b:?} is not in the log"
            );
        }
    }
}

/// Truncates a full copy at `offset`, checks it against a copy made only up to where the
/// truncation ends, copies on to the leader's end and checks it against the leader, through
/// crashes and a clean reopen; then appends as a leader would.
///
/// The clean reopen comes last: it trusts the index files and restarts the count of bytes
/// since the last index entry, so a log appended to after it places its (sparse) index entries
/// elsewhere than a log that never closed, with or without a truncation.
async fn cut_and_copy_on(leader: &PartitionLog, offset: Offset, end: Offset) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let dirs = [dirs[0].path().to_path_buf(), dirs[1].path().to_path_buf()];
    let follower = copy(leader, &dirs[0], leader.log_end_offset()).await;
    follower.truncate_to(offset).await.unwrap();
    assert_eq!(follower.log_end_offset(), end, "truncated at {offset:?}");
    assert_eq!(follower.high_watermark(), end);
    let reference = copy(leader, &dirs[1], end).await;
    let want = picture_but_producers(&reference).await;
    assert_same(&picture_but_producers(&follower).await, &want, "truncated");
    producers_cut_at(&follower, &reference, end);
    // A reopen gives the same state, producers included.
    let before = picture(&follower).await;
    let follower = reopened(dirs[0].clone(), follower, true).await;
    assert_same(
        &picture(&follower).await,
        &before,
        "truncated, after a crash",
    );
    // Copied on, it is the leader's log again, producer state included.
    replicate(leader, &follower, leader.log_end_offset()).await;
    let all = picture(leader).await;
    assert_same(&picture(&follower).await, &all, "copied on");
    let follower = reopened(dirs[0].clone(), follower, true).await;
    assert_same(&picture(&follower).await, &all, "copied on, after a crash");
    let follower = reopened(dirs[0].clone(), follower, false).await;
    assert_same(
        &picture(&follower).await,
        &all,
        "copied on, after a clean close",
    );
    // And it takes a leader's appends.
    let leo = follower.log_end_offset();
    let b = batch_of(2, 9_000, Compression::Lz4, (-1, -1, -1));
    let info = follower.append(&b, 4, Durability::Fsync).await.unwrap();
    assert_eq!(info.base_offset, leo);
}

fn dirs() -> ([tempfile::TempDir; 3], PathBuf, [PathBuf; 2]) {
    let d = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let leader = d[0].path().to_path_buf();
    let rest = [d[1].path().to_path_buf(), d[2].path().to_path_buf()];
    (d, leader, rest)
}

#[test]
fn truncation_inside_a_segment_then_copying_on() {
    let (_d, lp, _) = dirs();
    block_on(async move {
        let leader = leader(lp).await;
        let segments = layout(&leader);
        // The third batch of the second segment: earlier batches stay in it, later segments go.
        let at = Offset(segments[1].1[2]);
        cut_and_copy_on(&leader, at, at).await;
        // In the active segment.
        let last = segments.last().unwrap();
        let at = Offset(last.1[last.1.len() / 2]);
        cut_and_copy_on(&leader, at, at).await;
    });
}

#[test]
fn truncation_at_a_segment_boundary_then_copying_on() {
    let (_d, lp, _) = dirs();
    block_on(async move {
        let leader = leader(lp).await;
        let segments = layout(&leader);
        let at = segments[3].0;
        cut_and_copy_on(&leader, at, at).await;
        // The whole first segment kept, everything after it gone.
        let at = segments[1].0;
        cut_and_copy_on(&leader, at, at).await;
    });
}

#[test]
fn truncation_inside_a_batch_removes_the_whole_batch() {
    let (_d, lp, _) = dirs();
    block_on(async move {
        let leader = leader(lp).await;
        let segments = layout(&leader);
        // A batch of several records in the middle of a segment.
        let base = segments[2].1[1];
        let h = batch::check_stored(&read_bytes(&leader.read(Offset(base), 0).unwrap()));
        let h = h.unwrap();
        assert!(h.last_offset_delta > 0);
        cut_and_copy_on(&leader, Offset(base + 1), Offset(base)).await;
        // The first batch of a segment: the segment goes, the one before ends where it did.
        let base = segments[2].1[0];
        let h = batch::check_stored(&read_bytes(&leader.read(Offset(base), 0).unwrap()));
        assert!(
            h.unwrap().last_offset_delta > 0,
            "pick a multi-record batch"
        );
        cut_and_copy_on(&leader, Offset(base + 1), Offset(base)).await;
    });
}

#[test]
fn truncation_at_or_below_the_log_start_starts_over() {
    let (_d, lp, rest) = dirs();
    block_on(async move {
        let leader = leader(lp).await;
        let follower = copy(&leader, &rest[0], leader.log_end_offset()).await;
        follower.truncate_to(Offset(0)).await.unwrap();
        assert_eq!(follower.log_end_offset(), Offset(0));
        assert_eq!(follower.latest_epoch(), None);
        assert!(follower.st.borrow().producers.view().is_empty());
        replicate(&leader, &follower, leader.log_end_offset()).await;
        assert_same(
            &picture(&follower).await,
            &picture(&leader).await,
            "started over",
        );
        // Below a log start that DeleteRecords moved: the log starts over at the offset.
        let segments = layout(&leader);
        let deleted_to = Offset(segments[2].1[1]);
        assert_eq!(
            follower.delete_records(deleted_to).await.unwrap(),
            deleted_to
        );
        let start = Offset(segments[2].1[0]);
        follower.truncate_to(start).await.unwrap();
        let check = |log: &PartitionLog| {
            assert_eq!(log.log_start_offset(), start);
            assert_eq!(log.log_end_offset(), start);
            assert_eq!(log.high_watermark(), start);
            assert_eq!(log.read(start, 100).unwrap().len, 0);
            assert!(log.read(Offset(start.0 - 1), 100).is_err());
            assert_eq!(log.st.borrow().segments.len(), 1);
        };
        check(&follower);
        let follower = reopened(rest[0].clone(), follower, true).await;
        check(&follower);
        // Nothing left but one empty segment file, named after the new start.
        let logs: Vec<_> = std::fs::read_dir(&rest[0])
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".log"))
            .collect();
        assert_eq!(logs, vec![format!("{:020}.log", start.0)]);
        // Copied on from there, it is the leader's log from there.
        replicate(&leader, &follower, segments[4].0).await;
        let kept = picture(&follower).await;
        assert_eq!(kept.batches[0].0, start.0);
        // A truncation that would keep nothing at or above the log start starts over too: the
        // log start inside a batch, and the cut inside the same batch.
        let (base, n) = segments[3]
            .1
            .iter()
            .map(|&b| {
                (
                    b,
                    batch::check_stored(&read_bytes(&follower.read(Offset(b), 0).unwrap())),
                )
            })
            .map(|(b, h)| (b, h.unwrap().last_offset_delta))
            .find(|&(_, d)| d >= 2)
            .unwrap();
        assert!(n >= 2);
        follower.delete_records(Offset(base + 1)).await.unwrap();
        follower.truncate_to(Offset(base + 2)).await.unwrap();
        assert_eq!(follower.log_start_offset(), Offset(base + 2));
        assert_eq!(follower.log_end_offset(), Offset(base + 2));
    });
}

#[test]
fn truncate_fully_and_start_at_then_copying_from_there() {
    let (_d, lp, rest) = dirs();
    block_on(async move {
        let leader = leader(lp).await;
        let follower = copy(&leader, &rest[0], Offset(30)).await;
        follower
            .truncate_fully_and_start_at(Offset(1000))
            .await
            .unwrap();
        let check = |log: &PartitionLog| {
            assert_eq!(log.log_start_offset(), Offset(1000));
            assert_eq!(log.log_end_offset(), Offset(1000));
            assert_eq!(log.read(Offset(1000), 100).unwrap().len, 0);
            assert!(log.read(Offset(999), 100).is_err());
            assert_eq!(log.end_offset_for_epoch(3), None);
            assert_eq!(log.max_timestamp(), None);
        };
        check(&follower);
        let follower = reopened(rest[0].clone(), follower, true).await;
        check(&follower);
        let follower = reopened(rest[0].clone(), follower, false).await;
        check(&follower);
        let at = |base: i64| {
            let mut b = make_batch(&[vec![4; 100], vec![5; 100]], base, 11, 0, 0);
            batch::assign(&mut b, base, 6, None);
            b
        };
        assert!(follower.append_replica(&at(999)).await.is_err());
        let r = follower.append_replica(&at(1000)).await.unwrap();
        assert_eq!(r.log_end_offset, Offset(1002));
        assert_eq!(follower.end_offset_for_epoch(6), Some((6, Offset(1002))));
        let follower = reopened(rest[0].clone(), follower, true).await;
        assert_eq!(
            read_bytes(&follower.read(Offset(1000), 0).unwrap()),
            at(1000)
        );
        assert!(follower
            .truncate_fully_and_start_at(Offset(-1))
            .await
            .is_err());
    });
}

/// A batch the truncation removed is no duplicate any more, of a producer with batches left or
/// of one whose every batch went; one that stayed still is.
#[test]
fn removed_batches_are_no_duplicates_after_truncation() {
    let (_d, lp, _) = dirs();
    block_on(async move {
        let log = PartitionLog::open(lp.clone(), config()).await.unwrap();
        let b0 = make_batch(&[vec![1; 20], vec![2; 20]], 0, 42, 0, 0);
        let b1 = make_batch(&[vec![3; 20]], 0, 42, 0, 2);
        let b2 = make_batch(&[vec![4; 20]], 0, 42, 0, 3);
        let other = make_batch(&[vec![5; 20]], 0, 43, 0, 0);
        for b in [&b0, &b1, &b2, &other] {
            log.append(b, 1, Durability::PageCache).await.unwrap();
        }
        log.truncate_to(Offset(3)).await.unwrap();
        assert!(
            log.append(&b1, 2, Durability::PageCache)
                .await
                .unwrap()
                .duplicate
        );
        let again = log.append(&b2, 2, Durability::PageCache).await.unwrap();
        assert_eq!((again.duplicate, again.base_offset), (false, Offset(3)));
        let again = log.append(&other, 2, Durability::PageCache).await.unwrap();
        assert_eq!((again.duplicate, again.base_offset), (false, Offset(4)));
        // The producer state written at the truncation, and replayed from the log since.
        let log = reopened(lp, log, true).await;
        let retry = log.append(&b2, 2, Durability::PageCache).await.unwrap();
        assert_eq!((retry.duplicate, retry.base_offset), (true, Offset(3)));
    });
}

/// Appends (both kinds) that arrive while a truncation runs wait for it, and land after it.
#[test]
fn appends_wait_for_a_truncation_in_progress() {
    let (_d, lp, rest) = dirs();
    block_on(async move {
        let leader = leader(lp).await;
        let follower = copy(&leader, &rest[0], leader.log_end_offset()).await;
        let cut = layout(&leader)[1].0;
        // Started and stopped at its first wait for the disk, with the gate closed.
        let mut truncation = Box::pin(follower.truncate_to(cut));
        assert!(futures_lite::future::poll_once(&mut truncation)
            .await
            .is_none());
        assert!(follower.st.borrow().truncating);
        let b = batch_of(1, 7_000, Compression::None, (-1, -1, -1));
        let append = follower.append(&b, 9, Durability::PageCache);
        let mut r = make_batch(&[vec![3; 10]], 0, -1, -1, -1);
        batch::assign(&mut r, cut.0 + 1, 9, None);
        let replica = follower.append_replica(&r);
        let (t, (a, r)) =
            futures_lite::future::zip(truncation, futures_lite::future::zip(append, replica)).await;
        t.unwrap();
        assert_eq!(a.unwrap().base_offset, cut);
        assert_eq!(r.unwrap().log_end_offset, Offset(cut.0 + 2));
    });
}

/// A compaction pass that read segments before a truncation changed them does not install its
/// copies; the next pass, planned after, does.
#[test]
fn a_compaction_planned_before_a_truncation_does_not_install() {
    let (_d, lp, rest) = dirs();
    block_on(async move {
        let leader = leader(lp).await;
        let follower = copy(&leader, &rest[0], leader.log_end_offset()).await;
        follower.set_config(LogConfig {
            cleanup_policy: CleanupPolicy::parse("compact").unwrap(),
            min_cleanable_dirty_ratio: 0.0,
            ..config()
        });
        let mut map = OffsetMap::new(1 << 16);
        let mut pass = Box::pin(follower.compact(now_ms(), &mut map));
        assert!(futures_lite::future::poll_once(&mut pass).await.is_none());
        follower.truncate_to(layout(&leader)[3].0).await.unwrap();
        replicate(&leader, &follower, leader.log_end_offset()).await;
        let stats = pass.await.unwrap().unwrap();
        assert_eq!(stats.segments_after, stats.segments_before, "{stats:?}");
        let want = picture(&leader).await;
        assert_same(&picture(&follower).await, &want, "after the stale pass");
        let mut map = OffsetMap::new(1 << 16);
        let stats = follower.compact(now_ms(), &mut map).await.unwrap().unwrap();
        assert!(stats.records_removed > 0, "{stats:?}");
        assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        picture(&follower).await; // every batch whole and found by the index
    });
}

/// What each simulated crash must reopen to: the leader's batches from the start, whole, up to
/// somewhere at or past `cut` (a torn truncation may leave the tail), every batch found by the
/// index; then truncating again at `cut` gives `want`.
async fn check_crashed(path: &Path, leader: &[(i64, Vec<u8>)], cut: Offset, want: &Picture) {
    let log = PartitionLog::open(path.to_path_buf(), config())
        .await
        .unwrap();
    let got = picture(&log).await;
    let leo = log.log_end_offset();
    let empty = got.batches.is_empty();
    assert!(leo >= cut || empty, "reopened at {leo:?}, below {cut:?}");
    let (bases, bytes): (Vec<i64>, Vec<&Vec<u8>>) =
        got.batches.iter().map(|(o, _, b)| (*o, &b.0)).unzip();
    let prefix: Vec<_> = leader.iter().take(bases.len()).collect();
    assert_eq!(bases, prefix.iter().map(|b| b.0).collect::<Vec<_>>());
    assert!(
        bytes.iter().zip(&prefix).all(|(a, b)| **a == b.1),
        "not the leader's batches"
    );
    if empty {
        return; // started over, or torn before any batch: the follower copies from its start
    }
    log.truncate_to(cut).await.unwrap();
    let mut p = picture(&log).await;
    p.producers.clear();
    assert_same(&p, want, "truncated again");
}

/// A crash after every disk step of a truncation (the state in memory is lost, the files stay
/// as they are) reopens to a valid log holding a prefix of the old one, cut at the target or
/// later; a second truncation then gives what the first would have.
#[test]
fn a_crash_at_any_step_of_a_truncation_reopens_to_a_valid_prefix() {
    let (_d, lp, rest) = dirs();
    block_on(async move {
        let leader = leader(lp).await;
        let full = leader.log_end_offset();
        let all: Vec<(i64, Vec<u8>)> = {
            let mut v = Vec::new();
            let mut at = Offset(0);
            while at < full {
                for (h, b) in split(&read_bytes(&leader.read(at, 1 << 20).unwrap())) {
                    at = Offset(h.last_offset() + 1);
                    v.push((h.base_offset, b));
                }
            }
            v
        };
        let segments = layout(&leader);
        let inside = Offset(segments[1].1[2]);
        let boundary = segments[2].0;
        for (cut, fully) in [(inside, false), (boundary, false), (Offset(0), true)] {
            let reference = copy(&leader, &rest[1], cut).await;
            let mut want = picture(&reference).await;
            want.producers.clear();
            reference.remove().await.unwrap();
            let mut completed = false;
            for steps in 1.. {
                let path = rest[0].join(format!("{}-{steps}", cut.0));
                let follower = copy(&leader, &path, full).await;
                CRASH_AFTER_STEPS.with(|c| c.set(Some(steps)));
                let result = if fully {
                    follower.truncate_fully_and_start_at(cut).await
                } else {
                    follower.truncate_to(cut).await
                };
                CRASH_AFTER_STEPS.with(|c| c.set(None));
                if let Ok(()) = result {
                    // Every step was a crash point: the metadata writes, each segment, the cut.
                    assert!(steps > 4, "only {steps} steps");
                    completed = true;
                    break;
                }
                // A failed truncation fails the log until it is reopened.
                let refused = follower.append_replica(&all[0].1).await;
                assert!(matches!(refused, Err(LogError::Io(_))), "{refused:?}");
                drop(follower);
                check_crashed(&path, &all, cut, &want).await;
                std::fs::remove_dir_all(&path).unwrap();
            }
            assert!(completed);
        }
    });
}

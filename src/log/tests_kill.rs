//! A follower killed with SIGKILL while it truncates and copies, at a random moment, as
//! `tests/log_crash.rs` kills an appender: the test binary re-runs itself with
//! `TRUNCATE_KILL_CHILD_DIRS` set, and in that role `child_truncates_and_copies` cuts a copy of
//! a leader's log at one point after another (inside a segment, at a boundary, inside a batch,
//! at the start) and copies it on again, for ever. Whatever moment the kill lands on, the
//! reopened copy must be a prefix of the leader's log, whole batches found by their index, and
//! copying on must make it the leader's log again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::tests_replica::{assert_same, config, leader, picture, replicate};
use super::*;
use crate::runtime::block_on;

const CHILD_ENV: &str = "TRUNCATE_KILL_CHILD_DIRS";

/// The child role: truncate and copy on, for ever.
#[test]
fn child_truncates_and_copies() {
    let Ok(dirs) = std::env::var(CHILD_ENV) else {
        return; // an ordinary test run: nothing to do
    };
    let (lp, fp) = dirs.split_once('\n').unwrap();
    let (lp, fp) = (PathBuf::from(lp), PathBuf::from(fp));
    block_on(async move {
        let leader = PartitionLog::open(lp, config()).await.unwrap();
        let follower = PartitionLog::open(fp, config()).await.unwrap();
        let end = leader.log_end_offset();
        let segments: Vec<Offset> = leader.st.borrow().segments.iter().map(|s| s.base).collect();
        let cuts = [
            Offset(segments[1].0 + 2),
            segments[3],
            Offset(end.0 - 3),
            Offset(0),
            Offset(segments[2].0 + 1),
        ];
        for round in 0.. {
            let cut = cuts[round % cuts.len()];
            if round % 7 == 6 {
                follower
                    .truncate_fully_and_start_at(Offset(0))
                    .await
                    .unwrap();
            } else {
                follower.truncate_to(cut).await.unwrap();
            }
            replicate(&leader, &follower, end).await;
            let mut out = std::io::stdout().lock();
            writeln!(out, "ROUND {round}").unwrap();
            out.flush().unwrap();
        }
    });
}

/// Runs the child on the two logs and kills it after `kill_after`; returns the rounds it
/// finished.
fn run_child_and_kill(leader: &Path, follower: &Path, kill_after: Duration) -> usize {
    let dirs = format!("{}\n{}", leader.display(), follower.display());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "log::tests_kill::child_truncates_and_copies",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dirs)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text.lines().filter(|l| l.starts_with("ROUND")).count()
    });
    std::thread::sleep(kill_after);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap()
}

/// A pseudo-random number from the clock, so each run kills at a different moment.
fn random_u64() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos.wrapping_mul(6_364_136_223_846_793_005) >> 20
}

#[test]
fn a_follower_killed_while_truncating_reopens_to_a_prefix_of_its_leader() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (lp, fp) = (dirs[0].path().to_path_buf(), dirs[1].path().to_path_buf());
    let (l, f) = (lp.clone(), fp.clone());
    block_on(async move {
        let leader = leader(l).await;
        let follower = PartitionLog::open(f, config()).await.unwrap();
        replicate(&leader, &follower, leader.log_end_offset()).await;
        follower.close().await.unwrap();
        leader.close().await.unwrap();
    });
    for round in 0..3 {
        let kill_after = Duration::from_millis(100 + random_u64() % 400);
        let rounds = run_child_and_kill(&lp, &fp, kill_after);
        eprintln!("kill {round}: after {kill_after:?}, {rounds} rounds of truncating and copying");
        let (l, f) = (lp.clone(), fp.clone());
        block_on(async move {
            let leader = PartitionLog::open(l, config()).await.unwrap();
            let follower = PartitionLog::open(f, config()).await.unwrap();
            let want = picture(&leader).await;
            // Whole batches, each the leader's at the same offset, from the start on: the
            // picture reads them all and finds each by its index.
            let got = picture(&follower).await;
            assert_eq!(follower.log_start_offset(), Offset(0));
            assert!(got.batches.len() <= want.batches.len());
            for (g, w) in got.batches.iter().zip(&want.batches) {
                assert_eq!((g.0, &g.2), (w.0, &w.2), "a batch that is not the leader's");
            }
            replicate(&leader, &follower, leader.log_end_offset()).await;
            let got = picture(&follower).await;
            assert_same(&got, &want, "copied on after the kill");
            follower.close().await.unwrap();
            leader.close().await.unwrap();
        });
    }
}

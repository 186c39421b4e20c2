//! Crash tests of the partition log.
//!
//! The test binary re-executes itself (`std::env::current_exe()`) with `LOG_CRASH_CHILD_DIR`
//! set; in that role `child_appender` appends with fsync acknowledgements from several tasks
//! and prints `ACK <base offset> <task> <counter>` for every acknowledged batch. The parent
//! kills it with SIGKILL at a random moment, reopens the log, and checks that every acknowledged
//! batch is there byte-for-byte and that no partial batch remains. The second variant also tears
//! or corrupts the tail on disk before reopening.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tidelog::runtime::block_on;

use tidelog::log::batch;
use tidelog::log::{Durability, LogConfig, Offset, PartitionLog};

const CHILD_ENV: &str = "LOG_CRASH_CHILD_DIR";
const TASKS: u64 = 4;
const LEADER_EPOCH: i32 = 7;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 10,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A deterministic batch for `(task, counter)`, so the parent can rebuild what was acked.
fn make_batch(task: u64, counter: u64) -> Vec<u8> {
    let n = 1 + (counter % 3) as usize;
    let size = 50 + ((task * 7919 + counter * 104_729) % 3000) as usize;
    let mut recs = Vec::new();
    for i in 0..n {
        let mut r = vec![0u8];
        put_varint(&mut r, i as i64);
        put_varint(&mut r, i as i64);
        put_varint(&mut r, -1);
        put_varint(&mut r, size as i64);
        r.extend((0..size).map(|k| (k as u64 ^ task ^ counter) as u8));
        put_varint(&mut r, 0);
        put_varint(&mut recs, r.len() as i64);
        recs.extend_from_slice(&r);
    }
    let mut b = vec![0u8; batch::HEADER_LEN];
    b.extend_from_slice(&recs);
    let len = (b.len() - batch::LOG_OVERHEAD) as i32;
    b[batch::BATCH_LENGTH..][..4].copy_from_slice(&len.to_be_bytes());
    b[batch::MAGIC] = 2;
    b[batch::LAST_OFFSET_DELTA..][..4].copy_from_slice(&(n as i32 - 1).to_be_bytes());
    b[batch::BASE_TIMESTAMP..][..8].copy_from_slice(&1_000i64.to_be_bytes());
    b[batch::MAX_TIMESTAMP..][..8].copy_from_slice(&(1_000 + n as i64 - 1).to_be_bytes());
    b[batch::PRODUCER_ID..][..8].copy_from_slice(&(-1i64).to_be_bytes());
    b[batch::PRODUCER_EPOCH..][..2].copy_from_slice(&(-1i16).to_be_bytes());
    b[batch::BASE_SEQUENCE..][..4].copy_from_slice(&(-1i32).to_be_bytes());
    b[batch::RECORD_COUNT..][..4].copy_from_slice(&(n as i32).to_be_bytes());
    let crc = batch::compute_crc(&b);
    b[batch::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The child role: append forever, printing every acknowledged batch.
#[test]
fn child_appender() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // an ordinary test run: nothing to do
    };
    block_on(async move {
        let log = Rc::new(
            PartitionLog::open(PathBuf::from(dir), config())
                .await
                .unwrap(),
        );
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    for counter in 0.. {
                        let b = make_batch(task, counter);
                        let info = log
                            .append(&b, LEADER_EPOCH, Durability::Fsync)
                            .await
                            .unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {} {task} {counter}", info.base_offset.0).unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
    });
}

/// Runs the child, kills it after `kill_after`, and returns the acknowledged batches as
/// `(base offset, task, counter)`.
fn run_child_and_kill(dir: &Path, kill_after: Duration) -> Vec<(i64, u64, u64)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_appender",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() == 4 && parts[0] == "ACK" {
                acks.push((
                    parts[1].parse().unwrap(),
                    parts[2].parse().unwrap(),
                    parts[3].parse().unwrap(),
                ));
            }
        }
        acks
    });
    std::thread::sleep(kill_after);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap()
}

/// A pseudo-random duration from the clock, so each run kills at a different moment.
fn random_u64() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos.wrapping_mul(6_364_136_223_846_793_005) >> 20
}

/// Reopens the log and checks it: the acknowledged batches below `intact_below` are present
/// byte-for-byte, and the log holds only whole, CRC-valid, contiguous batches.
fn verify(dir: &Path, acks: Vec<(i64, u64, u64)>, intact_below: i64) -> i64 {
    let dir = dir.to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(dir, config()).await.unwrap();
        let end = log.log_end_offset().0;
        assert_eq!(log.high_watermark().0, end);
        for &(base, task, counter) in &acks {
            let mut want = make_batch(task, counter);
            batch::assign(&mut want, base, LEADER_EPOCH, None);
            if batch::parse_header(&want).unwrap().last_offset() >= intact_below {
                continue;
            }
            let s = log.read(Offset(base), 0).unwrap();
            let mut got = vec![0u8; s.len as usize];
            s.file.read_exact_at(&mut got, s.position.0).unwrap();
            assert_eq!(got, want, "acknowledged batch at {base}");
        }
        // Walk the whole log: whole batches, contiguous offsets, valid CRCs.
        let mut next = log.log_start_offset().0;
        while next < end {
            let s = log.read(Offset(next), 1 << 20).unwrap();
            let mut bytes = vec![0u8; s.len as usize];
            s.file.read_exact_at(&mut bytes, s.position.0).unwrap();
            let mut at = 0;
            while at < bytes.len() {
                let h = batch::check_stored(&bytes[at..]).expect("whole, valid batch");
                assert_eq!(h.base_offset, next);
                next = h.last_offset() + 1;
                at += h.total_len();
            }
        }
        assert_eq!(next, end);
        // The log accepts appends again after recovery.
        let b = make_batch(99, 0);
        assert_eq!(
            log.append(&b, LEADER_EPOCH, Durability::Fsync)
                .await
                .unwrap()
                .base_offset
                .0,
            end
        );
        log.close().await.unwrap();
        end
    })
}

#[test]
fn sigkill_keeps_every_acknowledged_batch() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let kill_after = Duration::from_millis(150 + random_u64() % 500);
        let acks = run_child_and_kill(dir.path(), kill_after);
        assert!(
            !acks.is_empty() || round > 0,
            "the child acknowledged nothing"
        );
        eprintln!("round {round}: {} acknowledged batches", acks.len());
        let end = verify(dir.path(), acks.clone(), i64::MAX);
        assert!(acks.iter().all(|a| a.0 < end));
    }
}

#[test]
fn torn_or_corrupt_tail_is_truncated() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let acks = run_child_and_kill(dir.path(), Duration::from_millis(300 + random_u64() % 300));
    assert!(!acks.is_empty());
    // Damage the last segment: cut a random number of bytes, then flip a byte near the new end.
    let last = last_segment(dir.path());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&last)
        .unwrap();
    let len = f.metadata().unwrap().len();
    if len < 200 {
        // Killed right after a roll: nothing to damage in the tail; still verify recovery.
        verify(dir.path(), acks, i64::MAX);
        return;
    }
    let new_len = len - (1 + random_u64() % 2000.min(len - 100));
    f.set_len(new_len).unwrap();
    let flip_at = new_len - 1 - random_u64() % 4000.min(new_len - 1);
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, flip_at).unwrap();
    f.write_all_at(&[byte[0] ^ 0x5a], flip_at).unwrap();
    drop(f);
    // Every batch before the one holding the flipped byte is intact.
    let (intact_below, in_batch) = batch_at(&last, flip_at);
    let end = verify(dir.path(), acks, intact_below);
    // partitionLeaderEpoch (bytes 12..16) is the one field no check covers, in Kafka too.
    if (12..16).contains(&in_batch) {
        assert!(end >= intact_below);
    } else {
        assert_eq!(end, intact_below, "recovery must stop at the damaged batch");
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

/// Base offset of the batch that contains file position `pos` and `pos`'s place in it.
fn batch_at(path: &Path, pos: u64) -> (i64, u64) {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0usize;
    loop {
        let (base, len) = batch::peek_offset_and_len(&bytes[at..]).unwrap();
        if (at + len) as u64 > pos {
            return (base, pos - at as u64);
        }
        at += len;
    }
}

//! A full disk heals without a restart (issue 9.6). Before, after ENOSPC the partition refused
//! every append until the broker was restarted (57,229 acks=1 records timed out after space was
//! freed). Now the partition is reopened (crash recovery of its tail) once the file system has
//! room again, and appends resume; a clean shutdown on a full disk still exits 0, and the next
//! start recovers every acknowledged record.
//!
//! Runs on an 8 MiB tmpfs mounted for the test; where mounting is not permitted (not root, no
//! CAP_SYS_ADMIN) it says so loudly and passes without checking anything.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::raw::{batch, topic, Raw};
use common::serve::{command, Serve};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, ProduceRequest};
use kafka_protocol::records::RecordBatchDecoder;
use tidelog::error::ErrorCode;

const VALUE_BYTES: usize = 100 << 10;

/// An 8 MiB tmpfs, unmounted on drop.
struct Tmpfs {
    _parent: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount() -> Option<Tmpfs> {
        let parent = common::serve::data_dir();
        let path = parent.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(&path)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "\n!!! SKIPPED full_disk_heals: cannot mount a tmpfs ({}) !!!\n",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs {
            _parent: parent,
            path,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Fills the file system holding `path` with a file there until ENOSPC.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.flush();
}

fn produce(c: &mut Raw, value: &str) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("full"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(&[value], None, 1)))])]);
    let r = c.call(&req, 9);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Every record of the partition, as (offset, value).
fn read_all(c: &mut Raw) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    loop {
        let next = out.last().map_or(0, |(o, _): &(i64, Bytes)| o + 1);
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(4 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic("full"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(next)
                    .with_partition_max_bytes(4 << 20)])]);
        let r = c.call(&req, 11);
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch at {next}");
        let Some(mut records) = p.records.clone().filter(|r| !r.is_empty()) else {
            return out;
        };
        let set = RecordBatchDecoder::decode(&mut records).expect("decode fetched batches");
        let before = out.len();
        for r in set.records {
            if r.offset >= next {
                out.push((r.offset, r.value.unwrap_or_default()));
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

fn start(dir: &Path) -> Serve {
    let mut s = Serve::spawn(command("127.0.0.1:0", dir, &["--shards", "1"], None));
    assert!(s.wait_listening().is_some(), "broker starts");
    s
}

#[test]
fn appends_resume_once_space_returns_and_a_full_disk_shutdown_recovers() {
    let Some(fs) = Tmpfs::mount() else { return };
    let dir = fs.path.join("data");
    let ballast = fs.path.join("ballast");
    let mut serve = start(&dir);
    let addr = serve.addr.unwrap().to_string();
    let mut c = Raw::connect(&addr);
    let mut cli = std::process::Command::new(common::tidelog_bin());
    cli.args([
        "topic",
        "create",
        "full",
        "--partitions",
        "1",
        "--bootstrap-server",
        &addr,
    ]);
    assert!(common::run_with_stdin(cli, b"").status.success());

    // Fill the disk: the broker's appends fail once the ballast has taken the rest.
    let mut acked: Vec<(i64, String)> = Vec::new();
    for i in 0..10 {
        let v = format!("{i:06}").repeat(VALUE_BYTES / 6);
        let (code, offset) = produce(&mut c, &v);
        assert_eq!(code, 0);
        acked.push((offset, v));
    }
    fill(&ballast);
    let mut refused = None;
    for i in 10..200 {
        let v = format!("{i:06}").repeat(VALUE_BYTES / 6);
        match produce(&mut c, &v) {
            (0, offset) => acked.push((offset, v)),
            (code, _) => {
                refused = Some(code);
                break;
            }
        }
    }
    assert_eq!(
        refused,
        Some(ErrorCode::KafkaStorageError.code()),
        "a full disk refuses appends"
    );

    // Space returns: appends resume by themselves, without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let healed = common::eventually(Duration::from_secs(30), || {
        let v = "after".repeat(10);
        match produce(&mut c, &v) {
            (0, offset) => Some((offset, v)),
            _ => None,
        }
    });
    let healed = healed.expect("appends resume once the disk has room");
    acked.push(healed);
    let read = read_all(&mut c);
    let want: Vec<(i64, Bytes)> = acked
        .iter()
        .map(|(o, v)| (*o, Bytes::copy_from_slice(v.as_bytes())))
        .collect();
    assert_eq!(
        read.len(),
        want.len(),
        "every acknowledged record, nothing else"
    );
    assert!(
        read == want,
        "the acknowledged records, in order, byte for byte"
    );

    // A clean shutdown on a full disk still exits cleanly.
    fill(&ballast);
    let status = serve.stop();
    assert!(status.success(), "SIGTERM on a full disk exits 0: {status}");
    std::fs::remove_file(&ballast).unwrap();
    let serve = start(&dir);
    let mut c = Raw::connect(&serve.addr.unwrap().to_string());
    assert!(
        read_all(&mut c) == want,
        "after the restart every acknowledged record is there"
    );
    drop(c);
    drop(serve);
}

/// A metadata change that hits a full disk is refused (KAFKA_STORAGE_ERROR) and takes its
/// partial write back, so a change acknowledged after space returns survives a SIGKILL. Before,
/// the torn record stayed in the metadata log, and recovery stopped there and dropped every
/// change after it.
#[test]
fn a_metadata_change_refused_on_a_full_disk_leaves_later_ones_durable() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest};
    let Some(fs) = Tmpfs::mount() else { return };
    let dir = fs.path.join("data");
    let ballast = fs.path.join("ballast");
    let mut serve = start(&dir);
    let addr = serve.addr.unwrap().to_string();
    let mut c = Raw::connect(&addr);
    // Many topics in one request: one append of several KiB, more than a page can take.
    let create = |c: &mut Raw, prefix: &str, n: usize| {
        let topics = (0..n)
            .map(|i| {
                CreatableTopic::default()
                    .with_name(topic(&format!("{prefix}-{i:04}-{}", "x".repeat(150))))
                    .with_num_partitions(1)
                    .with_replication_factor(1)
            })
            .collect();
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(topics);
        c.call(&req, 7)
            .topics
            .iter()
            .map(|t| t.error_code)
            .collect::<Vec<_>>()
    };
    assert!(create(&mut c, "before", 1).iter().all(|&e| e == 0));
    fill(&ballast);
    let refused = create(&mut c, "full", 60);
    assert!(
        refused.contains(&ErrorCode::KafkaStorageError.code()),
        "{refused:?}"
    );
    std::fs::remove_file(&ballast).unwrap();
    assert!(create(&mut c, "after", 1).iter().all(|&e| e == 0));
    // SIGKILL: nothing but what was fsynced survives.
    let _ = serve.child.kill();
    let _ = serve.child.wait();
    drop(serve);
    let serve = start(&dir);
    let mut c = Raw::connect(&serve.addr.unwrap().to_string());
    let names: Vec<String> = c
        .call(&MetadataRequest::default().with_topics(None), 12)
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    assert!(names.iter().any(|n| n.starts_with("before-")), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("after-")),
        "the change acknowledged after the refused one survives: {names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("full-")), "{names:?}");
}

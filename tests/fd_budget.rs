//! File descriptors are budgeted (issue 9.5). With 10,000 partitions under RLIMIT_NOFILE
//! 20,000 the broker used to run out of descriptors: partitions failed to open and no connection
//! could be accepted. Now RLIMIT_NOFILE is shared out at start (the broker's own files,
//! max.connections, then partitions): CreateTopics and CreatePartitions past the budget get
//! POLICY_VIOLATION naming the limit, and a start whose partitions do not fit fails in one line.

mod common;

use common::raw::{topic, Raw};
use common::serve::{command, data_dir, open_fds, Serve};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest};
use tidelog::config::FdBudget;
use tidelog::error::ErrorCode;

const NOFILE: u64 = 1024;
const MAX_CONNECTIONS: u32 = 100;

fn start(dir: &std::path::Path, nofile: u64) -> Serve {
    let max = format!("max.connections={MAX_CONNECTIONS}");
    let args = ["--shards", "1", "--set", &max];
    Serve::spawn(command("127.0.0.1:0", dir, &args, Some(nofile)))
}

/// CreateTopics of one topic: (error code, error message).
fn create(c: &mut Raw, name: &str, partitions: i32) -> (i16, String) {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    let r = c.call(&req, 7);
    let t = &r.topics[0];
    (
        t.error_code,
        t.error_message.as_deref().unwrap_or("").to_string(),
    )
}

#[test]
fn creates_past_the_descriptor_budget_are_refused_and_a_start_that_cannot_fit_fails() {
    let budget = FdBudget::new(NOFILE, 1, MAX_CONNECTIONS);
    let max = budget.partitions_max as i32;
    assert!(
        max > 100,
        "the test's limit leaves room for partitions: {budget:?}"
    );
    let dir = data_dir();
    let mut serve = start(dir.path(), NOFILE);
    let addr = serve.wait_listening().expect("broker starts").to_string();
    let pid = serve.child.id();
    let mut c = Raw::connect(&addr);

    let before = open_fds(pid);
    let first = max - 20;
    assert_eq!(create(&mut c, "fill", first).0, 0);
    let opened = open_fds(pid) - before;
    let per_partition = opened as f64 / f64::from(first);
    eprintln!("descriptors per idle partition: {per_partition:.2} ({first} partitions)");
    // Each partition holds what the budget charges; a few more may be the broker's own (a
    // blocking-pool thread's, the metadata write's), which its reserve covers.
    assert!(
        opened as u64 <= tidelog::config::FDS_PER_PARTITION * first as u64 + 8,
        "{opened} descriptors for {first} partitions"
    );

    // One topic past the budget: refused whole, with a message naming the limit.
    let (code, msg) = create(&mut c, "too-many", 21);
    assert_eq!(code, ErrorCode::PolicyViolation.code(), "{msg}");
    assert!(msg.contains("RLIMIT_NOFILE"), "{msg}");
    let grow = CreatePartitionsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_assignments(None)
            .with_name(topic("fill"))
            .with_count(first + 21)]);
    let r = c.call(&grow, 3);
    assert_eq!(
        r.results[0].error_code,
        ErrorCode::PolicyViolation.code(),
        "{:?}",
        r.results[0].error_message
    );
    // Exactly the budget fits.
    assert_eq!(create(&mut c, "last", 20).0, 0);
    // And connections are still accepted: their descriptors were never handed to partitions.
    for _ in 0..20 {
        let mut other = Raw::connect(&addr);
        assert_eq!(other.call(&ApiVersionsRequest::default(), 3).error_code, 0);
    }
    drop(c);
    let status = serve.stop();
    assert!(status.success(), "clean shutdown: {status}");

    // Half the descriptors: the partitions on disk do not fit, so the broker says so and exits
    // instead of running half-open.
    let mut small = start(dir.path(), NOFILE / 2);
    let status = small
        .wait_exit(common::START_TIMEOUT)
        .expect("a start that cannot fit its partitions exits");
    assert!(!status.success(), "{status}");
    let stderr = small.stderr_after_exit();
    let reasons: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("RLIMIT_NOFILE is 512"))
        .collect();
    assert_eq!(reasons.len(), 1, "one line says why: {stderr}");
    assert!(
        reasons[0].contains(&format!("{max} partitions")),
        "{}",
        reasons[0]
    );

    // With the limit back, the same data dir starts.
    let mut again = start(dir.path(), NOFILE);
    assert!(again.wait_listening().is_some(), "the broker starts again");
}

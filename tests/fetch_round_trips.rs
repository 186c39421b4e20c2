//! A fetch that waits for data costs one cross-shard round trip per owner shard (issue 11
//! item 2): the owner reads, or registers and waits there, and answers once, where it used to
//! take three (read, park, read again).
//!
//! Shards run in this process with their job loops, as in `tidelog serve`. Shard 0 handles a
//! Fetch (through `api::handle`, the path a connection takes) for partitions that other shards
//! own; one owner appends a batch once the fetch is parked there. The count is
//! `Router::calls_sent` on shard 0.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tidelog::api::{Outcome, Session};
use tidelog::config::{BrokerConfig, SHARD_CHANNEL_CAPACITY};
use tidelog::log::Durability;
use tidelog::metadata::{MetadataImage, TopicMeta};
use tidelog::router::{self, shard_for, Job, Router};
use tidelog::runtime::{raise_memlock_limit, IO_MEMORY_BYTES_MIN};
use tidelog::shard::Shard;

const TOPIC: &str = "waits";

/// The fetch's `max_wait_ms`: far longer than a wake-up takes.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A topic id whose partition `i` lives on shard `owners[i]` of `shards`.
fn topic_owned_by(owners: &[usize], shards: usize) -> uuid::Uuid {
    (1u128..)
        .map(uuid::Uuid::from_u128)
        .find(|id| {
            owners
                .iter()
                .enumerate()
                .all(|(p, &o)| shard_for(*id, p as i32, shards) == o)
        })
        .expect("some id maps the partitions so")
}

/// A Fetch v12 (topics by name) of partitions `0..n` from offset 0, waiting up to 30 s for a
/// byte.
fn fetch_frame(n: i32) -> Bytes {
    let partitions = (0..n)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    let body = FetchRequest::default()
        .with_max_wait_ms(MAX_WAIT.as_millis() as i32)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(partitions)]);
    let client = StrBytes::from_static_str("round-trips");
    let frame = tidelog::client::conn::encode_request(&body, 12, 7, &client).expect("encodes");
    Bytes::copy_from_slice(&frame[4..])
}

/// Runs `shards` shards; partition `i` of the topic lives on `owners[i]` (never shard 0). Shard
/// 0 fetches every partition while partition `append_to`'s owner appends one batch as soon as
/// the fetch is parked there. Returns shard 0's cross-shard calls for the fetch, whether the
/// response carried record bytes, and how long the fetch took.
fn fetch_while_appending(
    shards: usize,
    owners: &[usize],
    append_to: i32,
) -> (u64, bool, std::time::Duration) {
    fetch_while(shards, owners, append_to, Then::Append)
}

/// What the owner of the watched partition does once the fetch is parked there.
#[derive(Clone, Copy)]
enum Then {
    Append,
    /// Installs an image without the topic, as a DeleteTopics does on the owner.
    Delete,
}

fn fetch_while(
    shards: usize,
    owners: &[usize],
    append_to: i32,
    then: Then,
) -> (u64, bool, std::time::Duration) {
    assert!(owners.iter().all(|&o| o != 0 && o < shards));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Arc::new(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    });
    let meta = TopicMeta {
        name: TOPIC.into(),
        id: topic_owned_by(owners, shards),
        partitions: owners.len() as i32,
        configs: BTreeMap::new(),
        states: Vec::new(),
    };
    let mut image = MetadataImage::default();
    image.topics.insert(meta.name.clone(), Arc::new(meta));
    let image = Arc::new(image);
    let appender = owners[append_to as usize];
    let partitions = owners.len() as i32;

    let plan = raise_memlock_limit(2 * shards, IO_MEMORY_BYTES_MIN).expect("locked memory");
    let (job_senders, job_receivers): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| flume::bounded::<Job<Shard>>(SHARD_CHANNEL_CAPACITY))
        .unzip();
    // The other shards say when their partitions are open; shard 0 says when it is done.
    let (opened_tx, opened_rx) = flume::unbounded::<()>();
    let (done_tx, done_rx) = flume::unbounded::<()>();
    let (result_tx, result_rx) = std::sync::mpsc::channel::<(u64, bool, std::time::Duration)>();
    let mut handles = Vec::new();
    for (id, jobs) in job_receivers.into_iter().enumerate() {
        let (senders, config, image) = (job_senders.clone(), config.clone(), image.clone());
        let (opened_tx, opened_rx) = (opened_tx.clone(), opened_rx.clone());
        let (done_tx, done_rx) = (done_tx.clone(), done_rx.clone());
        let result_tx = result_tx.clone();
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("round-trips-{id}"))
            .io_memory(plan.io_memory)
            .spawn(move || async move {
                let shard = Rc::new(Shard::new(config, Router::new(id, senders), image.clone()));
                glommio::spawn_local(router::serve_jobs(shard.clone(), jobs)).detach();
                shard.apply_metadata(image).await;
                if id != 0 {
                    opened_tx.send_async(()).await.expect("shard 0 listens");
                    if id == appender {
                        let p = shard.partition(TOPIC, append_to).expect("the owner has it");
                        // Append only once the fetch waits here, so that it must wait.
                        while p.parked() == 0 {
                            futures_lite::future::yield_now().await;
                        }
                        match then {
                            Then::Append => {
                                let batch = tidelog::group::store::batch(
                                    vec![(
                                        Bytes::from_static(b"k"),
                                        Some(Bytes::from_static(b"v")),
                                    )],
                                    tidelog::util::now_ms(),
                                )
                                .expect("a batch");
                                p.append(&batch, Durability::PageCache)
                                    .await
                                    .expect("appended");
                            }
                            Then::Delete => {
                                drop(p);
                                shard
                                    .apply_metadata(Arc::new(MetadataImage::default()))
                                    .await;
                            }
                        }
                    }
                    router::recv_cross_shard(&done_rx).await;
                    return;
                }
                for _ in 1..shards {
                    router::recv_cross_shard(&opened_rx).await;
                }
                let before = shard.router.calls_sent();
                let started = std::time::Instant::now();
                let mut session = Session::default();
                let frame = fetch_frame(partitions);
                let outcome = tidelog::api::handle(&shard, frame, &mut session).await;
                let calls = shard.router.calls_sent() - before;
                let took = started.elapsed();
                let got_records = match outcome {
                    Outcome::Respond(chunks) => chunks.iter().any(
                        |c| matches!(c, tidelog::protocol::fetch::Chunk::File(r) if r.len > 0),
                    ),
                    _ => false,
                };
                let _ = result_tx.send((calls, got_records, took));
                for _ in 1..shards {
                    done_tx.send_async(()).await.expect("the owners listen");
                }
            })
            .expect("start an executor");
        handles.push(handle);
    }
    drop((job_senders, opened_tx, done_tx, result_tx));
    let result = result_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the fetch is answered");
    for h in handles {
        h.join().expect("executor ended cleanly");
    }
    result
}

#[test]
fn a_waiting_fetch_costs_one_round_trip_per_owner() {
    let (calls, got_records, took) = fetch_while_appending(2, &[1], 0);
    assert!(got_records, "the fetch returns the appended batch");
    assert!(
        took < MAX_WAIT / 2,
        "answered when the data landed, not at max_wait: {took:?}"
    );
    assert_eq!(
        calls, 1,
        "cross-shard calls for one waiting fetch on one owner"
    );
}

/// Two owners: the one whose partition gets data wakes the other (which reads again and
/// answers), so the fetch still costs one call per owner and answers at once.
#[test]
fn data_on_one_owner_answers_the_fetch_from_both() {
    let (calls, got_records, took) = fetch_while_appending(3, &[1, 2], 1);
    assert!(got_records, "the fetch returns the appended batch");
    // Without the other owner's wake-up, shard 1's part would sit out the whole max_wait.
    assert!(
        took < MAX_WAIT / 2,
        "answered when the data landed, not at max_wait: {took:?}"
    );
    assert_eq!(
        calls, 2,
        "cross-shard calls for one waiting fetch on two owners"
    );
}

/// A parked fetch whose partition is deleted on its owner is answered then, not at max_wait,
/// as before the partition service (the owner's wait ends when the partition drops its end).
#[test]
fn a_deleted_partition_ends_the_wait() {
    let (calls, got_records, took) = fetch_while(2, &[1], 0, Then::Delete);
    assert!(!got_records, "nothing to return from a deleted partition");
    assert_eq!(
        calls, 1,
        "cross-shard calls for one waiting fetch on one owner"
    );
    assert!(
        took < MAX_WAIT / 2,
        "answered at the deletion, not at max_wait: {took:?}"
    );
}

//! A fetch that waits for data costs one cross-shard round trip per owner shard (issue 11
//! item 2): the owner reads, or registers and waits there, and answers once, where it used to
//! take three (read, park, read again).
//!
//! Two shards run in this process with their job loops, as in `tidelog serve`. Shard 0 handles
//! a Fetch (through `api::handle`, the path a connection takes) for a partition that shard 1
//! owns; shard 1 appends a batch once the fetch is parked there. The count is
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

/// A topic id whose partition 0 lives on shard 1 of 2.
fn topic_on_shard_1() -> uuid::Uuid {
    (1u128..)
        .map(uuid::Uuid::from_u128)
        .find(|id| shard_for(*id, 0, 2) == 1)
        .expect("some id maps to shard 1")
}

/// A Fetch v12 (topics by name) of partition 0 from offset 0, waiting up to 30 s for a byte.
fn fetch_frame() -> Bytes {
    let body = FetchRequest::default()
        .with_max_wait_ms(30_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let client = StrBytes::from_static_str("round-trips");
    let frame = tidelog::client::conn::encode_request(&body, 12, 7, &client).expect("encodes");
    Bytes::copy_from_slice(&frame[4..])
}

#[test]
fn a_waiting_fetch_costs_one_round_trip_per_owner() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Arc::new(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    });
    let meta = TopicMeta {
        name: TOPIC.into(),
        id: topic_on_shard_1(),
        partitions: 1,
        configs: BTreeMap::new(),
    };
    let mut image = MetadataImage::default();
    image.topics.insert(meta.name.clone(), Arc::new(meta));
    let image = Arc::new(image);

    let plan = raise_memlock_limit(2, IO_MEMORY_BYTES_MIN).expect("locked memory");
    let (job_senders, job_receivers): (Vec<_>, Vec<_>) = (0..2)
        .map(|_| flume::bounded::<Job<Shard>>(SHARD_CHANNEL_CAPACITY))
        .unzip();
    // Shard 1 says when its partition is open; shard 0 says when its fetch is answered.
    let (opened_tx, opened_rx) = flume::bounded::<()>(1);
    let (done_tx, done_rx) = flume::bounded::<()>(1);
    let (result_tx, result_rx) = std::sync::mpsc::channel::<(u64, bool)>();
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
                if id == 1 {
                    opened_tx.send_async(()).await.expect("shard 0 listens");
                    let p = shard.partition(TOPIC, 0).expect("shard 1 owns partition 0");
                    // Append only once the fetch waits here, so that it must wait.
                    while p.parked() == 0 {
                        futures_lite::future::yield_now().await;
                    }
                    let batch = tidelog::group::store::batch(
                        vec![(Bytes::from_static(b"k"), Some(Bytes::from_static(b"v")))],
                        tidelog::util::now_ms(),
                    )
                    .expect("a batch");
                    p.append(&batch, Durability::PageCache)
                        .await
                        .expect("appended");
                    router::recv_cross_shard(&done_rx).await;
                } else {
                    router::recv_cross_shard(&opened_rx).await;
                    let before = shard.router.calls_sent();
                    let mut session = Session::default();
                    let outcome = tidelog::api::handle(&shard, fetch_frame(), &mut session).await;
                    let calls = shard.router.calls_sent() - before;
                    let got_records = match outcome {
                        Outcome::Respond(chunks) => chunks.iter().any(
                            |c| matches!(c, tidelog::protocol::fetch::Chunk::File(r) if r.len > 0),
                        ),
                        _ => false,
                    };
                    let _ = result_tx.send((calls, got_records));
                    done_tx.send_async(()).await.expect("shard 1 listens");
                }
            })
            .expect("start an executor");
        handles.push(handle);
    }
    drop((job_senders, opened_tx, done_tx, result_tx));
    let (calls, got_records) = result_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the fetch is answered");
    for h in handles {
        h.join().expect("executor ended cleanly");
    }
    assert!(got_records, "the fetch returns the appended batch");
    assert_eq!(
        calls, 1,
        "cross-shard calls for one waiting fetch on one owner"
    );
}

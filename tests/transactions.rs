//! Transactions on the partition side (issue 14), against the real binary: transactional
//! batches produced by hand, ended by WriteTxnMarkers (the request a transaction coordinator
//! sends), then read back by `read_committed` fetches (raw bytes and librdkafka) and
//! ListOffsets. The last stable offset holds at an open transaction's first offset; aborted
//! transactions come with the records they overlap; both survive a restart and a crash.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::{batch, topic, Raw};
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::records::RecordBatchDecoder;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "txn";

fn create(c: &mut Raw, name: &str, partitions: i32) {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    assert_eq!(c.call(&req, 7).topics[0].error_code, 0);
}

/// A fresh producer id (the idempotent path: the coordinator side is not here yet).
fn producer_id(c: &mut Raw) -> i64 {
    let r = c.call(
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
        4,
    );
    assert_eq!(r.error_code, 0);
    r.producer_id.0
}

/// `values` as one transactional batch of `pid` (epoch 0) starting at sequence `seq`.
fn txn_batch(values: &[&str], pid: i64, seq: i32) -> Bytes {
    let mut b = batch(values, Some((pid, 0, seq)), 1).to_vec();
    b[22] |= 0x10; // attributes: transactional
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

fn produce(c: &mut Raw, partition: i32, records: Bytes, transactional_id: Option<&str>) -> i64 {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_transactional_id(transactional_id.map(|t| TransactionalId(t.to_string().into())))
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let r = c.call(&req, 9);
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "produce");
    p.base_offset
}

/// Ends `pid`'s transaction in `partitions` of the topic; the per-partition error codes.
fn end_txn(c: &mut Raw, pid: i64, commit: bool, partitions: &[i32]) -> Vec<i16> {
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(0)
        .with_transaction_result(commit)
        .with_coordinator_epoch(0)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(topic(TOPIC))
            .with_partition_indexes(partitions.to_vec())])]);
    let r = c.call(&req, 1);
    r.markers[0].topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

/// What a fetch of partition 0 from `offset` returns: record values (control records
/// excluded), the LSO, the HWM, and the aborted transactions `(pid, first offset)`.
struct Fetched {
    values: Vec<String>,
    last_stable_offset: i64,
    high_watermark: i64,
    aborted: Option<Vec<(i64, i64)>>,
}

fn fetch(c: &mut Raw, offset: i64, isolation_level: i8, version: i16) -> Fetched {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation_level)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(TOPIC))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let r = c.call(&req, version);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let mut values = Vec::new();
    let mut bytes = p.records.clone().unwrap_or_default();
    while !bytes.is_empty() {
        let set = RecordBatchDecoder::decode(&mut bytes).expect("batches decode");
        for r in set.records.iter().filter(|r| !r.control) {
            values.push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into());
        }
    }
    Fetched {
        values,
        last_stable_offset: p.last_stable_offset,
        high_watermark: p.high_watermark,
        aborted: p.aborted_transactions.as_ref().map(|a| {
            a.iter()
                .map(|t| (t.producer_id.0, t.first_offset))
                .collect()
        }),
    }
}

fn latest(c: &mut Raw, isolation_level: i8) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic(TOPIC))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let r = c.call(&req, 7);
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

#[test]
fn read_committed_stops_at_the_last_stable_offset_and_learns_the_aborted_transactions() {
    let mut broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, TOPIC, 1);
    let (a, b) = (producer_id(&mut c), producer_id(&mut c));
    assert_eq!(
        produce(&mut c, 0, txn_batch(&["a1", "a2"], a, 0), Some("ta")),
        0
    );
    assert_eq!(produce(&mut c, 0, txn_batch(&["b1"], b, 0), Some("tb")), 2);
    assert_eq!(produce(&mut c, 0, batch(&["plain"], None, 1), None), 3);

    // Both transactions open: nothing is stable yet.
    for v in [4, 11, 12] {
        let f = fetch(&mut c, 0, 1, v);
        assert_eq!((f.last_stable_offset, f.high_watermark), (0, 4), "v{v}");
        assert!(f.values.is_empty(), "v{v}: read_committed reads nothing");
        let u = fetch(&mut c, 0, 0, v);
        assert_eq!(u.values, ["a1", "a2", "b1", "plain"], "v{v}");
        assert_eq!(u.last_stable_offset, 0, "the LSO is reported to both");
        assert_eq!(u.aborted, None, "read_uncommitted gets no aborted list");
    }
    assert_eq!((latest(&mut c, 1), latest(&mut c, 0)), (0, 4));

    // A's aborted: stable up to B's first batch, with A's transaction to skip.
    assert_eq!(end_txn(&mut c, a, false, &[0]), [0]);
    let f = fetch(&mut c, 0, 1, 12);
    assert_eq!(f.last_stable_offset, 2);
    assert_eq!(
        f.values,
        ["a1", "a2"],
        "records come; the client drops them"
    );
    assert_eq!(f.aborted, Some(vec![(a, 0)]));
    assert_eq!(latest(&mut c, 1), 2);

    // B's committed: everything is stable.
    assert_eq!(end_txn(&mut c, b, true, &[0]), [0]);
    let want_all = |c: &mut Raw, end: i64, what: &str| {
        let f = fetch(c, 0, 1, 12);
        assert_eq!(
            (f.last_stable_offset, f.high_watermark),
            (end, end),
            "{what}"
        );
        assert_eq!(f.values, ["a1", "a2", "b1", "plain"], "{what}");
        assert_eq!(f.aborted, Some(vec![(a, 0)]), "{what}");
        // Its range runs to its marker (offset 4); from past that, it is not listed.
        assert_eq!(fetch(c, 4, 1, 12).aborted, Some(vec![(a, 0)]), "{what}");
        assert_eq!(fetch(c, 5, 1, 12).aborted, Some(vec![]), "{what}");
        assert_eq!(latest(c, 1), end, "{what}");
    };
    want_all(&mut c, 6, "after the commit");

    // A marker for an unknown partition is refused, the others written (here a marker that
    // ends no transaction, at offset 6, as Kafka writes it).
    assert_eq!(end_txn(&mut c, b, true, &[0, 7]), [0, 3]);
    want_all(&mut c, 7, "after an empty commit");

    broker.restart();
    let mut c = Raw::connect(&broker.addr());
    want_all(&mut c, 7, "after a clean restart");
    // An open transaction is open after a crash too.
    let open = produce(&mut c, 0, txn_batch(&["a3"], a, 2), Some("ta"));
    broker.kill_and_restart();
    let mut c = Raw::connect(&broker.addr());
    assert_eq!(latest(&mut c, 1), open, "after a crash");
    assert_eq!(end_txn(&mut c, a, false, &[0]), [0]);
    let f = fetch(&mut c, 0, 1, 12);
    assert_eq!(f.aborted, Some(vec![(a, 0), (a, open)]));
}

#[test]
fn a_read_committed_long_poll_waits_for_the_transaction_to_end() {
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, TOPIC, 1);
    let a = producer_id(&mut c);
    produce(&mut c, 0, txn_batch(&["x"], a, 0), Some("ta"));
    // Data past the fetch offset exists, but not below the LSO: the fetch waits its
    // max_wait_ms rather than answering at once (or spinning).
    let req = |offset: i64| {
        FetchRequest::default()
            .with_max_wait_ms(400)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_isolation_level(1)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic(TOPIC))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])])
    };
    let started = Instant::now();
    let r = c.call(&req(0), 12);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "answered before max_wait_ms"
    );
    assert!(r.responses[0].partitions[0]
        .records
        .as_ref()
        .is_none_or(|b| b.is_empty()));
    // A parked read_committed fetch is answered when the commit lands.
    let mut other = Raw::connect(&broker.addr());
    c.send(&req(0).with_max_wait_ms(30_000), 12);
    assert_eq!(end_txn(&mut other, a, true, &[0]), [0]);
    let r = c.receive::<FetchRequest>(12);
    assert_eq!(r.responses[0].partitions[0].last_stable_offset, 2);
    assert!(r.responses[0].partitions[0]
        .records
        .as_ref()
        .is_some_and(|b| !b.is_empty()));
}

/// librdkafka's read_committed consumer drops the aborted records (and never shows control
/// records); its read_uncommitted consumer shows every data record.
#[test]
fn librdkafka_read_committed_sees_exactly_the_committed_records() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, TOPIC, 1);
    let (a, b) = (producer_id(&mut c), producer_id(&mut c));
    let mut committed = Vec::new();
    let mut all = Vec::new();
    // Interleaved transactions, some aborted, with plain records between them.
    for round in 0..20 {
        let (ka, kb) = (format!("a{round}"), format!("b{round}"));
        produce(&mut c, 0, txn_batch(&[&ka], a, round), Some("ta"));
        produce(&mut c, 0, txn_batch(&[&kb], b, round), Some("tb"));
        let plain = format!("p{round}");
        produce(&mut c, 0, batch(&[&plain], None, 1), None);
        let (commit_a, commit_b) = (round % 3 != 0, round % 2 == 0);
        assert_eq!(end_txn(&mut c, a, commit_a, &[0]), [0]);
        assert_eq!(end_txn(&mut c, b, commit_b, &[0]), [0]);
        all.extend([ka.clone(), kb.clone(), plain.clone()]);
        if commit_a {
            committed.push(ka);
        }
        if commit_b {
            committed.push(kb);
        }
        committed.push(plain);
    }
    // In offset order: a, b, plain per round, aborted ones left out.
    let mut want_committed = Vec::new();
    for v in &all {
        if committed.contains(v) {
            want_committed.push(v.clone());
        }
    }
    assert_eq!(
        consume(&broker, "read_committed", want_committed.len()),
        want_committed
    );
    assert_eq!(consume(&broker, "read_uncommitted", all.len()), all);
}

fn consume(broker: &Broker, isolation: &str, count: usize) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", "unused-assign-only")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < count && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume error");
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    assert!(
        consumer.poll(Duration::from_millis(500)).is_none(),
        "{isolation}: a record beyond the {count} expected"
    );
    out
}

/// Offsets a transaction commits (TxnOffsetCommit) are held until its marker lands on the
/// group's `__consumer_offsets` partition: a read_committed consumer's OffsetFetch
/// (`require_stable`) gets the retriable UNSTABLE_OFFSET_COMMIT meanwhile, others the offset
/// committed before; after a COMMIT marker the offset is the group's, after an ABORT it is gone.
#[test]
fn transactional_offsets_are_unstable_until_the_marker() {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    let mut c = Raw::connect(&broker.addr());
    create(&mut c, TOPIC, 1);
    let group = "txn-group";
    let pid = producer_id(&mut c);
    let commit = |c: &mut Raw, offset: i64| {
        let r = c.call(
            &TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId("t".into()))
                .with_group_id(GroupId(group.into()))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(0)
                .with_generation_id(-1)
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(topic(TOPIC))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)])]),
            3,
        );
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    };
    let fetch = |c: &mut Raw, stable: bool| {
        let r = c.call(
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(group.into()))
                .with_require_stable(stable)
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(topic(TOPIC))
                    .with_partition_indexes(vec![0])])),
            7,
        );
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.committed_offset)
    };
    let offsets_partition = tidelog::group::store::partition_for(group);
    let end = |c: &mut Raw, commit: bool| {
        let req =
            WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(0)
                .with_transaction_result(commit)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(topic("__consumer_offsets"))
                    .with_partition_indexes(vec![offsets_partition])])]);
        assert_eq!(
            c.call(&req, 1).markers[0].topics[0].partitions[0].error_code,
            0
        );
    };
    let unstable = kafka_protocol::error::ResponseError::UnstableOffsetCommit.code();
    commit(&mut c, 5);
    assert_eq!(fetch(&mut c, true), (unstable, -1));
    assert_eq!(fetch(&mut c, false), (0, -1), "nothing committed before");
    end(&mut c, true);
    assert_eq!(fetch(&mut c, true), (0, 5));
    commit(&mut c, 9);
    assert_eq!(fetch(&mut c, true), (unstable, -1));
    assert_eq!(fetch(&mut c, false), (0, 5));
    end(&mut c, false);
    assert_eq!(
        fetch(&mut c, true),
        (0, 5),
        "an aborted transaction's offset is dropped"
    );
}

/// `transactional.id.expiration.ms`: an id without a transaction is forgotten once its state
/// is that old (a tombstone in `__transaction_state`); its next InitProducerId starts afresh.
#[test]
fn an_idle_transactional_id_expires() {
    let broker = Broker::start_with(
        BrokerOptions::default()
            .set("transactional.id.expiration.ms", "1500")
            .set(
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                "200",
            ),
    );
    let mut c = Raw::connect(&broker.addr());
    let init = |c: &mut Raw| {
        let r = c.call(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId("t-idle".into())))
                .with_transaction_timeout_ms(60_000),
            4,
        );
        assert_eq!(r.error_code, 0);
        (r.producer_id.0, r.producer_epoch)
    };
    let (pid, epoch) = init(&mut c);
    assert_eq!(init(&mut c), (pid, epoch + 1), "known: the epoch moves on");
    let describe = |c: &mut Raw| {
        let r = c.call(
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId("t-idle".into())]),
            0,
        );
        r.transaction_states[0].error_code
    };
    assert_eq!(describe(&mut c), 0);
    let not_found = kafka_protocol::error::ResponseError::TransactionalIdNotFound.code();
    let gone = common::eventually(Duration::from_secs(10), || {
        (describe(&mut c) == not_found).then_some(())
    });
    assert!(gone.is_some(), "the idle transactional id expired");
    let (_, fresh_epoch) = init(&mut c);
    assert_eq!(fresh_epoch, 0, "a forgotten id starts again at epoch 0");
}

//! librdkafka's transactional producer against the real binary (issue 14): init, produce to
//! partitions on both shards, offsets sent to the transaction, commit; the abort path; a
//! read_committed consumer sees exactly the committed records; a second producer with the
//! same transactional id fences the first; a transaction left open is aborted by its
//! timeout. A restart in the middle keeps every transactional id's state.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::raw::{topic, Raw};
use common::txn::values;
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, DescribeTransactionsRequest, ListTransactionsRequest, TransactionalId,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 4;
const T: Duration = Duration::from_secs(30);

fn create(broker: &Broker) {
    let mut c = Raw::connect(&broker.addr());
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic(TOPIC))
            .with_num_partitions(PARTITIONS)
            .with_replication_factor(1)]);
    assert_eq!(c.call(&req, 7).topics[0].error_code, 0);
}

fn producer(broker: &Broker, id: &str, timeout_ms: &str) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("transactional.id", id)
        .set("transaction.timeout.ms", timeout_ms)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    p.init_transactions(T).expect("init_transactions");
    p
}

fn send(p: &BaseProducer, values: &[String]) {
    common::txn::send(p, TOPIC, PARTITIONS, values)
}

fn consumer(broker: &Broker, isolation: &str, group: &str) -> BaseConsumer {
    common::txn::consumer(&broker.addr(), isolation, group)
}

/// Everything `isolation` lets a consumer read, from the start of every partition.
fn read_all(broker: &Broker, isolation: &str, expect: usize) -> BTreeSet<String> {
    common::txn::read_all(&broker.addr(), TOPIC, PARTITIONS, isolation, expect)
}

#[test]
fn commit_abort_offsets_fencing_and_timeout() {
    let mut broker = Broker::start_with(BrokerOptions::default().shards(2).set(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "200",
    ));
    create(&broker);
    let p = producer(&broker, "copier-1", "60000");

    // Committed, with the consumer group's offsets in the same transaction.
    let group = consumer(&broker, "read_committed", "copier");
    let committed = values("c", 20);
    p.begin_transaction().unwrap();
    send(&p, &committed);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(TOPIC, 0, Offset::Offset(5))
        .unwrap();
    offsets
        .add_partition_offset(TOPIC, 3, Offset::Offset(2))
        .unwrap();
    p.send_offsets_to_transaction(&offsets, &group.group_metadata().unwrap(), T)
        .expect("send_offsets_to_transaction");
    p.commit_transaction(T).expect("commit");

    // Aborted.
    let aborted = values("a", 12);
    p.begin_transaction().unwrap();
    send(&p, &aborted);
    p.abort_transaction(T).expect("abort");

    // The coordinator's state survives a restart; the producer carries on.
    broker.restart();
    let more = values("c2", 8);
    p.begin_transaction().unwrap();
    send(&p, &more);
    p.commit_transaction(T).expect("commit after a restart");

    let want: BTreeSet<String> = committed.iter().chain(&more).cloned().collect();
    assert_eq!(read_all(&broker, "read_committed", want.len()), want);
    let everything = want.len() + aborted.len();
    let all = read_all(&broker, "read_uncommitted", everything);
    assert_eq!(all.len(), everything);

    // The offsets the transaction committed are the group's.
    let mut asked = TopicPartitionList::new();
    asked.add_partition(TOPIC, 0);
    asked.add_partition(TOPIC, 3);
    let got = group
        .committed_offsets(asked, T)
        .expect("committed offsets");
    let got: Vec<Offset> = got.elements().iter().map(|e| e.offset()).collect();
    assert_eq!(got, [Offset::Offset(5), Offset::Offset(2)]);

    // A second producer with the same transactional id fences the first.
    let p2 = producer(&broker, "copier-1", "60000");
    p.begin_transaction().unwrap();
    let _ = p.send(
        BaseRecord::<(), _>::to(TOPIC)
            .payload("zombie")
            .partition(0),
    );
    let _ = p.flush(Duration::from_secs(10));
    match p.commit_transaction(Duration::from_secs(10)) {
        Err(rdkafka::error::KafkaError::Transaction(e)) => {
            assert!(e.is_fatal(), "a fenced producer's error is fatal: {e:?}")
        }
        other => panic!("a fenced producer committed: {other:?}"),
    }
    p2.begin_transaction().unwrap();
    send(&p2, &values("p2", 4));
    p2.commit_transaction(T).expect("the new producer commits");

    // A transaction left open past its timeout is aborted by the coordinator (fencing its
    // producer): the records committed after it become readable, its own never.
    let slow = producer(&broker, "slow-1", "1500");
    slow.begin_transaction().unwrap();
    send(&slow, &values("slow", 4));
    p2.begin_transaction().unwrap();
    send(&p2, &values("after", 4));
    p2.commit_transaction(T)
        .expect("commit behind an open transaction");
    let want: BTreeSet<String> = want
        .into_iter()
        .chain(values("p2", 4))
        .chain(values("after", 4))
        .collect();
    assert_eq!(read_all(&broker, "read_committed", want.len()), want);
    match slow.commit_transaction(Duration::from_secs(10)) {
        Err(rdkafka::error::KafkaError::Transaction(e)) => {
            assert!(
                !e.is_retriable(),
                "the timed-out transaction cannot commit: {e:?}"
            )
        }
        other => panic!("a timed-out transaction committed: {other:?}"),
    }
}

/// SIGKILL with a transaction open: after the restart the coordinator has it from
/// `__transaction_state`, aborts it when its timeout passes, and read_committed consumers move
/// past it; what was committed before the crash stays committed.
#[test]
fn a_transaction_open_at_a_crash_is_aborted_after_the_restart() {
    let mut broker = Broker::start_with(BrokerOptions::default().shards(2).set(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "200",
    ));
    create(&broker);
    let p = producer(&broker, "crashy", "3000");
    p.begin_transaction().unwrap();
    send(&p, &values("before", 8));
    p.commit_transaction(T).expect("commit");
    p.begin_transaction().unwrap();
    send(&p, &values("open", 8));
    broker.kill_and_restart();
    let other = producer(&broker, "after-crash", "60000");
    other.begin_transaction().unwrap();
    send(&other, &values("after", 8));
    other.commit_transaction(T).expect("commit after the crash");
    let want: BTreeSet<String> = values("before", 8)
        .into_iter()
        .chain(values("after", 8))
        .collect();
    assert_eq!(read_all(&broker, "read_committed", want.len()), want);

    // What kafka-transactions.sh list and describe show.
    let mut c = Raw::connect(&broker.addr());
    let list = |c: &mut Raw, state: &str| -> Vec<String> {
        let r = c.call(
            &ListTransactionsRequest::default()
                .with_state_filters(vec![state.to_string().into()])
                .with_duration_filter(-1),
            1,
        );
        r.transaction_states
            .iter()
            .map(|s| s.transactional_id.0.to_string())
            .collect()
    };
    let aborted = common::eventually(Duration::from_secs(10), || {
        Some(list(&mut c, "CompleteAbort")).filter(|l| !l.is_empty())
    });
    assert_eq!(aborted, Some(vec!["crashy".to_string()]));
    assert_eq!(list(&mut c, "CompleteCommit"), ["after-crash"]);
    let r = c.call(
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId("after-crash".into())]),
        0,
    );
    let s = &r.transaction_states[0];
    assert_eq!(
        (s.error_code, s.transaction_state.as_str()),
        (0, "CompleteCommit")
    );
    assert!(s.producer_id.0 >= 0 && s.topics.is_empty());

    // The same through `tidelog transactions`, in kafka-transactions.sh's columns.
    let listed = broker.cli_ok(&["transactions", "list"], b"");
    assert!(
        listed.contains("TransactionalId Coordinator ProducerId TransactionState"),
        "{listed}"
    );
    let row = |id: &str| {
        let line = listed.lines().find(|l| l.starts_with(id));
        line.unwrap_or_default().to_string()
    };
    assert!(row("after-crash ").ends_with("CompleteCommit"), "{listed}");
    assert!(row("crashy ").ends_with("CompleteAbort"), "{listed}");
    let ongoing = broker.cli_ok(&["transactions", "list", "--state", "Ongoing"], b"");
    assert_eq!(
        ongoing.trim().lines().count(),
        1,
        "only the header: {ongoing}"
    );
    let described = broker.cli_ok(
        &[
            "transactions",
            "describe",
            "--transactional-id",
            "after-crash",
        ],
        b"",
    );
    assert!(described.contains("TransactionTimeoutMs"), "{described}");
    assert!(described.contains(" CompleteCommit "), "{described}");
    assert!(described.contains(" 60000 "), "{described}");
    let unknown = broker.run_cli(
        &["transactions", "describe", "--transactional-id", "nope"],
        b"",
    );
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("TRANSACTIONAL_ID_NOT_FOUND"), "{err}");
}

/// The broker crashes right after a commit is decided (PrepareCommit written), and right after
/// the first of its markers: after the restart the transaction is fully committed, as the
/// producer was (or, had the answer been lost, would have been) told, and the next
/// transaction of the same transactional id commits too.
#[test]
fn a_crash_between_the_decision_and_the_markers_commits_what_was_decided() {
    for point in ["txn-decided", "txn-marker-written"] {
        let mut broker = Broker::start_with(
            BrokerOptions::default()
                .shards(2)
                .env("TIDELOG_CRASH_POINT", point),
        );
        create(&broker);
        let p = producer(&broker, "decided", "60000");
        p.begin_transaction().unwrap();
        send(&p, &values("decided", 8));
        // The answer may or may not reach the producer before the broker aborts.
        let _ = p.commit_transaction(Duration::from_secs(5));
        let status = broker.wait_exit(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| !s.success()),
            "{point}: the broker stopped at its crash point"
        );
        drop(p);
        broker.clear_envs();
        broker.start_again();
        let want: BTreeSet<String> = values("decided", 8).into_iter().collect();
        assert_eq!(read_all(&broker, "read_committed", 8), want, "{point}");
        let p = producer(&broker, "decided", "60000");
        p.begin_transaction().unwrap();
        send(&p, &values("next", 4));
        p.commit_transaction(T)
            .expect("the next transaction commits");
        let want: BTreeSet<String> = want.into_iter().chain(values("next", 4)).collect();
        assert_eq!(read_all(&broker, "read_committed", 12), want, "{point}");
    }
}

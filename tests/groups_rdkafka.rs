//! Consumer groups with librdkafka: partitions split across members, exactly-once consumption in
//! a stable group, rebalances when a member leaves or dies, and commits that survive restarts.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Broker, BrokerOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn broker() -> Broker {
    Broker::start_with(
        BrokerOptions::default()
            .shards(2)
            .set("group.initial.rebalance.delay.ms", "0")
            .set("group.min.session.timeout.ms", "1000"),
    )
}

fn consumer(broker: &Broker, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", broker.addr())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg.create().expect("consumer")
}

fn produce(broker: &Broker, topic: &str, n: usize, from: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for i in from..from + n {
        let v = i.to_string();
        let key = format!("k{}", i % 97);
        let mut rec = BaseRecord::to(topic).key(&key).payload(&v);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    p.poll(Duration::from_millis(10));
                    rec = back;
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

fn assigned(c: &BaseConsumer) -> usize {
    c.assignment().map(|a| a.count()).unwrap_or(0)
}

/// Polls every consumer until `done` holds for their assignment counts, or panics.
fn poll_until(
    consumers: &[&BaseConsumer],
    what: &str,
    timeout: Duration,
    done: impl Fn(&[usize]) -> bool,
) -> Vec<(usize, String)> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    loop {
        for (i, c) in consumers.iter().enumerate() {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                got.push((
                    i,
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                ));
            }
        }
        let counts: Vec<usize> = consumers.iter().map(|c| assigned(c)).collect();
        if done(&counts) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: assignments stuck at {counts:?}"
        );
    }
}

#[test]
fn three_members_split_six_partitions_consume_once_and_rebalance_on_leave() {
    let broker = broker();
    broker.cli_ok(&["topic", "create", "six", "--partitions", "6"], b"");
    produce(&broker, "six", 3000, 0);
    let (a, b) = (
        consumer(&broker, "trio", &[]),
        consumer(&broker, "trio", &[]),
    );
    let c = consumer(&broker, "trio", &[]);
    for x in [&a, &b, &c] {
        x.subscribe(&["six"]).unwrap();
    }
    let mut got = poll_until(
        &[&a, &b, &c],
        "three members",
        Duration::from_secs(60),
        |n| n == [2, 2, 2],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < 3000 && Instant::now() < deadline {
        got.extend(poll_until(
            &[&a, &b, &c],
            "steady",
            Duration::from_secs(60),
            |_| true,
        ));
    }
    let values: Vec<&String> = got.iter().map(|(_, v)| v).collect();
    let distinct: HashSet<&String> = values.iter().copied().collect();
    assert_eq!(values.len(), 3000, "every record once");
    assert_eq!(distinct.len(), 3000, "no duplicates");
    let per_member: HashMap<usize, usize> = got.iter().fold(HashMap::new(), |mut m, (i, _)| {
        *m.entry(*i).or_default() += 1;
        m
    });
    assert_eq!(per_member.len(), 3, "every member consumed: {per_member:?}");
    // One member leaves: its partitions move to the other two within the session timeout.
    c.unsubscribe();
    drop(c);
    poll_until(&[&a, &b], "after a leave", Duration::from_secs(30), |n| {
        n == [3, 3]
    });
}

#[test]
fn a_member_killed_without_leaving_is_expired_and_its_partitions_move() {
    let broker = broker();
    broker.cli_ok(&["topic", "create", "kill", "--partitions", "4"], b"");
    let a = consumer(&broker, "survivors", &[]);
    a.subscribe(&["kill"]).unwrap();
    poll_until(&[&a], "first member", Duration::from_secs(30), |n| n == [4]);
    // A second member in another process (kcat's balanced consumer), then SIGKILLed.
    let mut kcat = Command::new("kcat")
        .args([
            "-b",
            &broker.addr(),
            "-G",
            "survivors",
            "-X",
            "session.timeout.ms=3000",
            "-X",
            "heartbeat.interval.ms=300",
            "-q",
            "kill",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat must be installed (scripts/test.sh installs it)");
    poll_until(&[&a], "kcat joined", Duration::from_secs(30), |n| n == [2]);
    kcat.kill().unwrap();
    kcat.wait().unwrap();
    let start = Instant::now();
    poll_until(&[&a], "kcat expired", Duration::from_secs(30), |n| n == [4]);
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "rebalanced before the session could expire"
    );
}

/// Reads from `group` what comes after its committed offsets.
fn resume(broker: &Broker, group: &str, want: usize) -> Vec<String> {
    let c = consumer(broker, group, &[("enable.auto.commit", "false")]);
    c.subscribe(&["durable"]).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
    got
}

#[test]
fn committed_offsets_survive_clean_and_unclean_restarts() {
    let mut broker = broker();
    broker.cli_ok(&["topic", "create", "durable", "--partitions", "3"], b"");
    produce(&broker, "durable", 300, 0);
    assert_eq!(resume(&broker, "keeper", 300).len(), 300);
    broker.restart();
    produce(&broker, "durable", 100, 300);
    let after_clean = resume(&broker, "keeper", 100);
    assert_eq!(after_clean.len(), 100);
    assert!(
        after_clean
            .iter()
            .all(|v| v.parse::<usize>().unwrap() >= 300),
        "re-read committed records"
    );
    broker.kill_and_restart();
    produce(&broker, "durable", 50, 400);
    let after_kill = resume(&broker, "keeper", 50);
    let mut values: Vec<usize> = after_kill.iter().map(|v| v.parse().unwrap()).collect();
    values.sort();
    assert_eq!(values, (400..450).collect::<Vec<_>>());
    // The committed positions, as a client reads them back.
    let c = consumer(&broker, "keeper", &[]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition("durable", p);
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            other => panic!("no committed offset: {other:?}"),
        })
        .sum();
    assert_eq!(total, 450);
}

//! End to end through our own CLI against the real broker binary: Kafka's quickstart, topic
//! administration, keys and partitions, acks, restarts.

mod common;

use common::Broker;

/// Consumes everything in `topic` from the beginning, expecting `n` records.
fn consume_all(broker: &Broker, topic: &str, n: usize, extra: &[&str]) -> Vec<String> {
    let max = n.to_string();
    let mut args = vec![
        "consume",
        topic,
        "--from-beginning",
        "--max-messages",
        &max,
        "--timeout-ms",
        "10000",
    ];
    args.extend_from_slice(extra);
    let out = broker.cli_ok(&args, b"");
    out.lines().map(str::to_owned).collect()
}

/// Kafka's quickstart: create a topic, write events, read them back.
#[test]
fn quickstart() {
    let broker = Broker::start();
    let out = broker.cli_ok(&["topic", "create", "quickstart-events"], b"");
    assert_eq!(out.trim(), "Created topic quickstart-events.");
    broker.cli_ok(
        &["produce", "quickstart-events"],
        b"Hello, World\nThis is my first event\nThis is my second event\n",
    );
    let got = consume_all(&broker, "quickstart-events", 3, &[]);
    assert_eq!(
        got,
        [
            "Hello, World",
            "This is my first event",
            "This is my second event"
        ]
    );
}

#[test]
fn topics_are_created_listed_described_and_deleted() {
    let broker = Broker::start();
    broker.cli_ok(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
        ],
        b"",
    );
    broker.cli_ok(
        &[
            "topic",
            "create",
            "audit",
            "--config",
            "retention.ms=3600000",
        ],
        b"",
    );
    let list = broker.cli_ok(&["topic", "list"], b"");
    assert!(list.lines().any(|l| l == "orders"), "{list}");
    assert!(list.lines().any(|l| l == "audit"), "{list}");

    let describe = broker.cli_ok(&["topic", "describe", "orders"], b"");
    assert!(describe.contains("Topic: orders\t"), "{describe}");
    assert!(describe.contains("PartitionCount: 3"), "{describe}");
    for p in 0..3 {
        assert!(
            describe.contains(&format!("\tPartition: {p}\tLeader: ")),
            "{describe}"
        );
    }

    let again = broker.run_cli(&["topic", "create", "orders"], b"");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("TOPIC_ALREADY_EXISTS"));

    broker.cli_ok(&["topic", "delete", "orders"], b"");
    let list = broker.cli_ok(&["topic", "list"], b"");
    assert!(!list.lines().any(|l| l == "orders"), "{list}");
    let missing = broker.run_cli(&["topic", "describe", "orders"], b"");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("UNKNOWN_TOPIC_OR_PARTITION"));
}

/// Keyed records land on one partition per key and keep their order there.
#[test]
fn keys_choose_partitions_and_keep_order() {
    let broker = Broker::start();
    broker.cli_ok(&["topic", "create", "keyed", "--partitions", "4"], b"");
    let mut input = String::new();
    for i in 0..200 {
        input.push_str(&format!("user{}:event{i}\n", i % 10));
    }
    broker.cli_ok(
        &["produce", "keyed", "--key-separator", ":"],
        input.as_bytes(),
    );
    let lines = consume_all(&broker, "keyed", 200, &["--print-key", "--print-partition"]);
    let mut partition_of = std::collections::HashMap::new();
    let mut last_event = std::collections::HashMap::new();
    for line in &lines {
        let fields: Vec<&str> = line.split('\t').collect();
        let [partition, key, value] = fields[..] else {
            panic!("unexpected line {line:?}")
        };
        let event: u32 = value.trim_start_matches("event").parse().unwrap();
        assert_eq!(
            *partition_of.entry(key.to_owned()).or_insert(partition),
            partition,
            "{key}"
        );
        if let Some(prev) = last_event.insert(key.to_owned(), event) {
            assert!(prev < event, "{key}: event{event} after event{prev}");
        }
    }
    assert_eq!(last_event.len(), 10);
}

#[test]
fn every_acks_setting_delivers() {
    let broker = Broker::start();
    for acks in ["0", "1", "all", "-1"] {
        let topic = format!("acks{}", acks.replace('-', "m"));
        broker.cli_ok(&["topic", "create", &topic], b"");
        broker.cli_ok(&["produce", &topic, "--acks", acks], b"a\nb\nc\n");
        assert_eq!(
            consume_all(&broker, &topic, 3, &[]),
            ["a", "b", "c"],
            "acks={acks}"
        );
    }
}

/// Many lines go out in several batches and all come back, in order, per partition.
#[test]
fn large_inputs_are_batched_and_complete() {
    let broker = Broker::start();
    broker.cli_ok(&["topic", "create", "bulk", "--partitions", "1"], b"");
    let n = 50_000;
    let input: String = (0..n)
        .map(|i| format!("line {i:06} {}\n", "x".repeat(40)))
        .collect();
    broker.cli_ok(
        &["produce", "bulk", "--compression-codec", "lz4"],
        input.as_bytes(),
    );
    let got = consume_all(&broker, "bulk", n, &[]);
    assert_eq!(got.len(), n);
    assert!(got.iter().zip(input.lines()).all(|(a, b)| a == b));
}

#[test]
fn data_survives_clean_and_crash_restarts() {
    let mut broker = Broker::start();
    broker.cli_ok(&["topic", "create", "durable", "--partitions", "2"], b"");
    broker.cli_ok(&["produce", "durable", "--partition", "1"], b"one\ntwo\n");
    broker.restart();
    assert!(broker
        .cli_ok(&["topic", "list"], b"")
        .lines()
        .any(|l| l == "durable"));
    assert_eq!(consume_all(&broker, "durable", 2, &[]), ["one", "two"]);

    // acks=all is acknowledged after fsync, so SIGKILL right after must lose nothing.
    broker.cli_ok(
        &["produce", "durable", "--partition", "1", "--acks", "all"],
        b"three\n",
    );
    broker.kill_and_restart();
    assert_eq!(
        consume_all(&broker, "durable", 3, &[]),
        ["one", "two", "three"]
    );
}

#[test]
fn consume_from_an_offset_and_time_out() {
    let broker = Broker::start();
    broker.cli_ok(&["topic", "create", "offsets"], b"");
    broker.cli_ok(&["produce", "offsets"], b"r0\nr1\nr2\nr3\n");
    let out = broker.cli_ok(
        &[
            "consume",
            "offsets",
            "--partition",
            "0",
            "--offset",
            "2",
            "--timeout-ms",
            "1500",
            "--print-offset",
        ],
        b"",
    );
    assert_eq!(out, "Offset:2\tr2\nOffset:3\tr3\n");
    // Default start is the end of the log: nothing to print, exit after the timeout.
    let out = broker.run_cli(&["consume", "offsets", "--timeout-ms", "500"], b"");
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Processed a total of 0 messages"));
}

/// Needs no broker: nothing listens on the port.
#[test]
fn an_unreachable_broker_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = std::process::Command::new(common::tidelog_bin());
    cmd.args([
        "topic",
        "list",
        "--bootstrap-server",
        &format!("127.0.0.1:{port}"),
    ]);
    let out = common::run_with_stdin(cmd, b"");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to broker 127.0.0.1:{port}")),
        "{stderr}"
    );
}

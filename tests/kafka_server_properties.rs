//! Kafka's own KRaft quickstart `server.properties`, unchanged but for its ports, starts tidelog
//! as one combined node, and clients use it as they would Kafka; a quorum that leaves this
//! node out is refused with the reason, as is a data directory formatted for another cluster
//! id. (A quorum of several nodes is a cluster: `tests/cluster.rs`.)

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{tidelog_bin, Broker, BrokerOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::Message;

/// `config/server.properties` of Kafka 4 (KRaft, combined node; `config/kraft/server.properties`
/// in 3.x), its comments dropped, with `PORT` and `CPORT` for the two listeners' ports.
const KAFKA_QUICKSTART: &str = "\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:CPORT
listeners=PLAINTEXT://:PORT,CONTROLLER://:CPORT
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:PORT,CONTROLLER://localhost:CPORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kraft-combined-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
";

/// A port free now (the kernel's next ephemeral one). Kafka's file names fixed ports, so the
/// test picks them this way; another process taking it in the next milliseconds would fail the
/// start loudly, not silently.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kafka's quickstart file in `dir` with free ports: (its path, client port, controller port).
fn write_quickstart(dir: &Path) -> (std::path::PathBuf, u16, u16) {
    let (port, cport) = (free_port(), free_port());
    let text = KAFKA_QUICKSTART
        .replace("CPORT", &cport.to_string())
        .replace("PORT", &port.to_string());
    let path = dir.join("server.properties");
    std::fs::write(&path, text).unwrap();
    (path, port, cport)
}

#[test]
fn kafkas_quickstart_server_properties_runs_a_combined_node_that_clients_use() {
    let files = tempfile::tempdir().unwrap();
    let (props, port, cport) = write_quickstart(files.path());
    let mut broker = Broker::start_with(
        BrokerOptions::default()
            .config_file(&props)
            .listen_from_config()
            .shards(2),
    );
    // `:PORT` binds every interface; clients are told `localhost:PORT`.
    assert_eq!(broker.addr(), format!("0.0.0.0:{port}"));
    let bootstrap = format!("127.0.0.1:{port}");
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for i in 0..100 {
        producer
            .send(BaseRecord::<str, str>::to("quickstart-events").payload(&format!("event {i}")))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "quickstart")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    assert_eq!(md.brokers().len(), 1);
    assert_eq!(md.brokers()[0].id(), 1, "node.id");
    assert_eq!(
        (md.brokers()[0].host(), md.brokers()[0].port()),
        ("localhost", i32::from(port)),
        "the PLAINTEXT entry of advertised.listeners"
    );
    consumer.subscribe(&["quickstart-events"]).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got.len() < 100 && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    let want: Vec<String> = (0..100).map(|i| format!("event {i}")).collect();
    assert_eq!(got, want);
    drop(consumer);

    // kafka-metadata-quorum.sh describe --status, from DescribeCluster and DescribeQuorum: a
    // quorum of one, this node, reached at its CONTROLLER listener.
    let status = broker.cli_ok(&["cluster", "status"], b"");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .trim()
            .to_string()
    };
    assert_eq!(field("LeaderId"), "1");
    assert_eq!(field("LeaderEpoch"), "1");
    assert_eq!(field("MaxFollowerLag"), "0");
    assert!(
        field("HighWatermark").parse::<i64>().unwrap() >= 1,
        "the topic is a record"
    );
    assert_eq!(
        field("CurrentVoters"),
        format!(r#"[{{"id": 1, "endpoints": ["CONTROLLER://localhost:{cport}"]}}]"#)
    );
    assert_eq!(field("CurrentObservers"), "[]");
    assert_eq!(field("ClusterId").len(), 22);
    // describe --replication: Kafka's header, and this node as the leader with no lag.
    let table = broker.cli_ok(&["cluster", "replication"], b"");
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| {
            l.split('\t')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        lines[0],
        [
            "NodeId",
            "DirectoryId",
            "LogEndOffset",
            "Lag",
            "LastFetchTimestamp",
            "LastCaughtUpTimestamp",
            "Status"
        ]
    );
    assert_eq!(lines.len(), 2, "{table}");
    let row = &lines[1];
    assert_eq!(
        (row[0], row[1], row[3], row[6]),
        ("1", "AAAAAAAAAAAAAAAAAAAAAA", "0", "Leader")
    );
    assert_eq!(row[2], field("HighWatermark"));

    // A restart with the same file comes back on the same port with the data.
    broker.restart();
    assert_eq!(broker.addr(), format!("0.0.0.0:{port}"));
}

/// DescribeQuorum for anything but `__cluster_metadata` partition 0 answers each partition it
/// names with UNKNOWN_TOPIC_OR_PARTITION, as Kafka's Raft leader does.
#[test]
fn describe_quorum_of_another_partition_is_unknown() {
    use common::raw::{topic, Raw};
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::DescribeQuorumRequest;
    let broker = Broker::start();
    let mut c = Raw::connect(&broker.addr());
    for (name, partitions) in [
        ("__cluster_metadata", vec![1]),
        ("orders", vec![0]),
        ("__cluster_metadata", vec![0, 1]),
    ] {
        let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(topic(name))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| PartitionData::default().with_partition_index(p))
                    .collect(),
            )]);
        let r = c.call(&req, 2);
        assert_eq!(r.error_code, 0);
        let got: Vec<_> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        let unknown = tidelog::error::ErrorCode::UnknownTopicOrPartition.code();
        let want: Vec<_> = partitions.iter().map(|&p| (p, unknown)).collect();
        assert_eq!(got, want, "{name} {partitions:?}");
    }
}

/// Runs `tidelog serve` expecting it to refuse to start; returns its stderr.
fn refused(config: &Path, data_dir: &Path, sets: &[&str]) -> String {
    let mut cmd = Command::new(tidelog_bin());
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    assert!(
        !out.status.success(),
        "started with {sets:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_quorum_without_this_node_and_a_foreign_data_directory_are_refused_with_the_reason() {
    let files = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (props, _, _) = write_quickstart(files.path());
    let voters = "controller.quorum.voters=2@127.0.0.2:19093,3@127.0.0.3:19093";
    let err = refused(&props, data.path(), &[voters]);
    assert!(err.contains("not in controller.quorum.voters"), "{err}");
    let err = refused(&props, data.path(), &["process.roles=broker"]);
    assert!(err.contains("does not include controller"), "{err}");
    let err = refused(
        &props,
        data.path(),
        &["listener.security.protocol.map=PLAINTEXT:SSL,CONTROLLER:PLAINTEXT"],
    );
    assert!(err.contains("uses SSL"), "{err}");

    // Formatted for one cluster id on its first start, the directory refuses another.
    let mut broker = Broker::start_with(
        BrokerOptions::default()
            .config_file(&props)
            .set("cluster.id", "MkU3OEVBNTcwNTJENDM2Qk"),
    );
    broker.stop();
    let err = refused(
        &props,
        broker.data_dir(),
        &["cluster.id=AAAAAAAAAAAAAAAAAAAAAA"],
    );
    assert!(
        err.contains("formatted for cluster MkU3OEVBNTcwNTJENDM2Qk"),
        "{err}"
    );
}

/// `tidelog storage random-uuid` and `tidelog storage format` as `kafka-storage.sh` runs them
/// (`-t ID -c server.properties`), with its messages and exit codes.
#[test]
fn storage_format_and_random_uuid_work_like_kafka_storage_sh() {
    let files = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (props, _, _) = write_quickstart(files.path());
    let run = |args: &[&str]| {
        let out = Command::new(tidelog_bin()).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, id, _) = run(&["storage", "random-uuid"]);
    let id = id.trim().to_string();
    assert!(ok && id.len() == 22, "{id:?}");
    let dir = data.path().to_str().unwrap();
    let props = props.to_str().unwrap();
    let format = [
        "storage",
        "format",
        "-t",
        &id,
        "-c",
        props,
        "--data-dir",
        dir,
    ];
    let (ok, out, err) = run(&format);
    assert!(ok, "{err}");
    assert!(out.contains("Formatting data directory"), "{out}");
    assert_eq!(
        tidelog::metadata::load(data.path(), None)
            .unwrap()
            .cluster_id,
        id
    );
    let (ok, _, err) = run(&format);
    assert!(!ok && err.contains("is already formatted"), "{err}");
    let mut ignore = format.to_vec();
    ignore.push("--ignore-formatted");
    let (ok, out, _) = run(&ignore);
    assert!(ok && out.contains("already formatted"), "{out}");
    let (ok, _, err) = run(&["storage", "format", "-t", "not-a-uuid", "--data-dir", dir]);
    assert!(!ok && err.contains("url-safe base64"), "{err}");
}

"""kafka-python and confluent-kafka against a three-node cluster on 127.0.0.1/2/3 (issue 12):
each client bootstraps from one node, creates a topic spread over the brokers, produces through
one node and consumes through another, and runs a consumer group whose coordinator is another
broker; after SIGKILL of the active controller, a topic is created through the survivors."""

import os
import signal
import random
import socket
import subprocess
import threading
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic as CkNewTopic

from conftest import START_TIMEOUT_S, tidelog_bin, wait_for

CLUSTER_ID = "MkU3OEVBNTcwNTJENDM2Qk"


def port_free_on_all():
    # Below the kernel's ephemeral range (32768 and up): a restarted node binds its ports
    # again, and an ephemeral port may meanwhile be some connection's source port.
    while True:
        port = random.randrange(20000, 32000)
        try:
            for i in (1, 2, 3):
                with socket.socket() as s:
                    s.bind((f"127.0.0.{i}", port))
            return port
        except OSError:
            continue


class Cluster:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.port = port_free_on_all()
        self.cport = port_free_on_all()
        while self.cport == self.port:
            self.cport = port_free_on_all()
        self.procs = {}
        self.output = []
        for i in (1, 2, 3):
            self.start(i)

    def bootstrap(self, i):
        return f"127.0.0.{i}:{self.port}"

    def start(self, i):
        c, p = self.cport, self.port
        cmd = [
            tidelog_bin(), "serve", "--data-dir", str(self.tmp / f"node{i}"), "--shards", "1",
            "--set", f"node.id={i}",
            "--set", "process.roles=broker,controller",
            "--set", f"cluster.id={CLUSTER_ID}",
            "--set", f"controller.quorum.voters=1@127.0.0.1:{c},2@127.0.0.2:{c},3@127.0.0.3:{c}",
            "--set", f"listeners=PLAINTEXT://127.0.0.{i}:{p},CONTROLLER://127.0.0.{i}:{c}",
            "--set", "controller.listener.names=CONTROLLER",
        ]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def pump(stream, watch):
            for line in stream:
                self.output.append(f"[{i}] {line.rstrip()}")
                if watch and line.startswith("listening on "):
                    ready.set()
            ready.set()

        threading.Thread(target=pump, args=(proc.stdout, True), daemon=True).start()
        threading.Thread(target=pump, args=(proc.stderr, False), daemon=True).start()
        assert ready.wait(START_TIMEOUT_S) and proc.poll() is None, "\n".join(self.output[-30:])
        self.procs[i] = proc

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        del self.procs[i]

    def close(self):
        for proc in self.procs.values():
            proc.kill()
            proc.wait()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.close()


def live_brokers(ck):
    return set(ck.list_topics(timeout=10).brokers)


def leaders(ck, topic):
    t = ck.list_topics(topic, timeout=10).topics[topic]
    return {p.leader for p in t.partitions.values()}


def test_kafka_python_and_confluent_kafka_use_the_cluster(cluster):
    ck = AdminClient({"bootstrap.servers": cluster.bootstrap(2)})
    assert wait_for(lambda: live_brokers(ck) == {1, 2, 3}, timeout_s=30)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(2), request_timeout_ms=20000)
    admin.create_topics([NewTopic(name="orders", num_partitions=6, replication_factor=1)])
    admin.close()
    led = wait_for(lambda: leaders(ck, "orders") if -1 not in leaders(ck, "orders") else None,
                   timeout_s=30)
    assert len(led) >= 2, led

    # kafka-python produces through node 1; confluent-kafka reads through node 3.
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap(1), acks="all")
    for n in range(300):
        producer.send("orders", key=f"k{n}".encode(), value=f"v{n}".encode())
    producer.flush(30)
    producer.close()
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(3), "group.id": "ck-readers",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe(["orders"])
    seen = set()
    deadline = time.monotonic() + 30
    while len(seen) < 300 and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            seen.add(m.value().decode())
    consumer.close()
    assert seen == {f"v{n}" for n in range(300)}

    # A kafka-python group: its coordinator need not be the bootstrap node; it commits there.
    group = KafkaConsumer("orders", bootstrap_servers=cluster.bootstrap(1), group_id="kp-group",
                          auto_offset_reset="earliest", enable_auto_commit=False,
                          consumer_timeout_ms=10000)
    got = 0
    for _ in group:
        got += 1
        if got == 300:
            break
    group.commit()
    committed = sum(group.committed(TopicPartition("orders", p)) or 0 for p in range(6))
    group.close()
    assert got == 300
    assert committed == 300

    # confluent-kafka produces through node 2, too.
    p = Producer({"bootstrap.servers": cluster.bootstrap(2)})
    for n in range(10):
        p.produce("orders", key=f"x{n}", value=f"x{n}")
    assert p.flush(30) == 0

    # SIGKILL the active controller: a topic is created through a survivor.
    controller = ck.describe_cluster(request_timeout=10).result(20).controller.id
    cluster.kill(controller)
    survivor = next(iter(cluster.procs))

    def created():
        # A fresh client each try: librdkafka sends CreateTopics to the controller its last
        # metadata named, which may be the dead one until the survivors elect another.
        ck = AdminClient({"bootstrap.servers": cluster.bootstrap(survivor)})
        futures = ck.create_topics([CkNewTopic("after", num_partitions=3, replication_factor=1)],
                                   request_timeout=5)
        try:
            futures["after"].result(10)
            return True
        except Exception as e:  # a retriable error while the quorum elects: try again
            return "TOPIC_ALREADY_EXISTS" in str(e)

    assert wait_for(created, timeout_s=30, interval_s=0.5)
    ck = AdminClient({"bootstrap.servers": cluster.bootstrap(survivor)})
    assert "after" in ck.list_topics(timeout=10).topics


def test_clients_carry_on_through_the_loss_of_a_leader(cluster):
    """Issue 13: an RF=3 topic with min.insync.replicas=2; kafka-python (acks=all, retries) and
    confluent-kafka (idempotent) produce through a SIGKILL of a partition leader; every
    acknowledged record is read back, and the clients saw only retriable errors."""
    ck = AdminClient({"bootstrap.servers": cluster.bootstrap(1)})
    assert wait_for(lambda: live_brokers(ck) == {1, 2, 3}, timeout_s=30)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(1), request_timeout_ms=20000)
    admin.create_topics([NewTopic(name="replicated", num_partitions=3, replication_factor=3,
                                  topic_configs={"min.insync.replicas": "2"})])
    admin.close()

    def states():
        t = ck.list_topics("replicated", timeout=10).topics["replicated"]
        return {p.id: (p.leader, set(p.isrs)) for p in t.partitions.values()}

    first = wait_for(lambda: (lambda s: s if len(s) == 3 and all(
        isr == {1, 2, 3} for _, isr in s.values()) else None)(states()), timeout_s=30)

    acked = set()
    errors = []

    def delivered(err, msg):
        if err is None:
            acked.add(msg.value().decode())
        else:
            errors.append(err)

    ckp = Producer({"bootstrap.servers": cluster.bootstrap(1), "enable.idempotence": True,
                    "message.timeout.ms": 60000})
    kp = KafkaProducer(bootstrap_servers=cluster.bootstrap(1), acks="all", retries=20,
                       retry_backoff_ms=500, request_timeout_ms=30000)
    futures = []

    def produce(prefix, n):
        for i in range(n):
            ckp.produce("replicated", key=f"{prefix}{i}", value=f"ck-{prefix}{i}",
                        on_delivery=delivered)
            ckp.poll(0)
            futures.append(kp.send("replicated", key=f"{prefix}{i}".encode(),
                                   value=f"kp-{prefix}{i}".encode()))

    produce("a", 300)
    assert ckp.flush(30) == 0
    kp.flush(30)
    # SIGKILL the leader of partition 0 while both producers go on.
    victim = first[0][0]
    cluster.kill(victim)
    produce("b", 300)
    assert ckp.flush(90) == 0, errors
    kp.flush(90)
    kp.close()
    for f in futures:
        f.get(timeout=1)  # raises if kafka-python gave up on a record
    kp_acked = {f"kp-{p}{i}" for p in "ab" for i in range(300)}
    assert not errors, errors
    survivor = next(iter(cluster.procs))
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(survivor),
                         "group.id": "replicated-readers", "auto.offset.reset": "earliest"})
    consumer.subscribe(["replicated"])
    want = acked | kp_acked
    seen = set()
    deadline = time.monotonic() + 60
    while not want <= seen and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            seen.add(m.value().decode())
    consumer.close()
    assert want - seen == set(), sorted(want - seen)[:5]

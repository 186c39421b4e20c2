"""The newest confluent-kafka (librdkafka) against tidelog where it used to differ from Kafka
(issue 10, items 5, 7 and 8): listing all topics, transactional producers (issue 14), manual
replica assignments, authorized operations."""

import time

import pytest

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import AclOperation, AdminClient, NewTopic

from conftest import wait_for

# Every operation Kafka grants on a topic and on the cluster when it has no authorizer.
TOPIC_OPERATIONS = {
    AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
    AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
    AclOperation.ALTER_CONFIGS,
}
CLUSTER_OPERATIONS = {
    AclOperation.CREATE, AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.CLUSTER_ACTION,
    AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE,
}
# tidelog's default node.id.
NODE = 1


def admin_for(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(admin, new_topic):
    admin.create_topics([new_topic])[new_topic.topic].result(timeout=15)


def test_list_topics_lists_every_topic(broker, topic):
    # librdkafka 2.15+ asks for all topics with Metadata v12 and 3 bytes after the body.
    admin = admin_for(broker)
    create(admin, NewTopic(topic, 3, 1))
    listed = admin.list_topics(timeout=15)
    assert topic in listed.topics
    assert len(listed.topics[topic].partitions) == 3
    assert list(listed.brokers) == [NODE]


def test_transactions_commit_and_abort_and_read_committed_sees_only_commits(broker, topic):
    admin = admin_for(broker)
    create(admin, NewTopic(topic, 2, 1))
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "txn-1"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, value=f"commit-{i}".encode(), partition=i % 2)
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=f"abort-{i}".encode(), partition=i % 2)
    producer.abort_transaction(30)
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "txn-readers",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    seen = set()
    deadline = time.time() + 30
    while len(seen) < 10 and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            seen.add(m.value().decode())
    consumer.close()
    assert seen == {f"commit-{i}" for i in range(10)}


def test_create_topic_with_a_manual_replica_assignment(broker, topic):
    admin = admin_for(broker)
    # librdkafka wants the count here but sends -1 for it and the factor, as Kafka requires.
    create(admin, NewTopic(topic, 2, replica_assignment=[[NODE], [NODE]]))
    partitions = admin.list_topics(topic, timeout=15).topics[topic].partitions
    assert sorted(partitions) == [0, 1]
    assert all(p.replicas == [NODE] for p in partitions.values())

    other = NewTopic(topic + "-bad", 1, replica_assignment=[[NODE + 1]])
    with pytest.raises(KafkaException) as raised:
        create(admin, other)
    assert raised.value.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT
    assert topic + "-bad" not in admin.list_topics(timeout=15).topics


def test_describe_cluster_and_topics_with_authorized_operations(broker, topic):
    admin = admin_for(broker)
    create(admin, NewTopic(topic, 1, 1))
    cluster = admin.describe_cluster(include_authorized_operations=True).result(timeout=15)
    assert set(cluster.authorized_operations) == CLUSTER_OPERATIONS
    assert [n.id for n in cluster.nodes] == [NODE]

    described = admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True)
    description = described[topic].result(timeout=15)
    assert set(description.authorized_operations) == TOPIC_OPERATIONS
    assert len(description.partitions) == 1

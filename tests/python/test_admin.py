"""KafkaAdminClient: create, list, delete topics."""

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from conftest import wait_for


def test_create_list_delete(broker, topic):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=4, replication_factor=1)])
        assert topic in admin.list_topics()
        described = admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == 4

        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(name=topic, num_partitions=1, replication_factor=1)])

        admin.delete_topics([topic])
        assert wait_for(lambda: topic not in admin.list_topics())
    finally:
        admin.close()
    assert topic.encode() not in broker.cli("topic", "list").stdout.splitlines()


def test_create_with_configs(broker, topic):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=1, replication_factor=1,
                                      topic_configs={"retention.ms": "3600000"})])
        assert topic in admin.list_topics()
    finally:
        admin.close()

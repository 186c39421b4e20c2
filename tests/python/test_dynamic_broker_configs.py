"""Dynamic broker configs through real admin clients: confluent-kafka's AdminClient (librdkafka)
and kafka-python's KafkaAdminClient change broker defaults at run time on the broker resource,
see Kafka's sources in DescribeConfigs, and get Kafka's error for read-only settings."""

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic as CkNewTopic,
    ResourceType,
)
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType
from kafka.admin import NewTopic

from conftest import wait_for


def describe(admin, kind, name):
    res = ConfigResource(kind, name)
    return admin.describe_configs([res])[res].result(timeout=15)


def incremental(admin, name, key, value, op=AlterConfigOpType.SET):
    res = ConfigResource(ResourceType.BROKER, name, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=op)])
    return admin.incremental_alter_configs([res])[res].result(timeout=15)


def test_confluent_changes_broker_defaults_at_run_time(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([CkNewTopic(topic, 1, 1)])[topic].result(timeout=15)

    # (Both clients refuse a broker resource named "", the cluster-wide default; the
    # hand-built frames of tests/broker_dynamic_configs.rs cover that one.)
    incremental(admin, "1", "log.segment.bytes", "2097152")
    configs = describe(admin, ResourceType.TOPIC, topic)
    assert configs["segment.bytes"].value == "2097152"
    assert configs["segment.bytes"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value

    broker_configs = describe(admin, ResourceType.BROKER, "1")
    assert broker_configs["log.segment.bytes"].value == "2097152"
    assert not broker_configs["log.segment.bytes"].is_read_only
    assert broker_configs["log.dirs"].is_read_only

    with pytest.raises(KafkaException) as e:
        incremental(admin, "1", "num.partitions", "3")
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST
    assert "Cannot update these configs dynamically" in e.value.args[0].str()

    incremental(admin, "1", "log.segment.bytes", None, AlterConfigOpType.DELETE)
    configs = describe(admin, ResourceType.TOPIC, topic)
    assert configs["segment.bytes"].value == "1073741824"
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value


def test_kafka_python_alters_a_broker_config_that_survives_a_restart(broker, topic):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=1, replication_factor=1)])
        admin.alter_configs([KpConfigResource(ConfigResourceType.BROKER, "1",
                                              configs={"log.retention.ms": "86400000"})])
    finally:
        admin.close()
    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    configs = wait_for(lambda: describe(admin, ResourceType.TOPIC, topic))
    assert configs["retention.ms"].value == "86400000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value

"""Admin clients: kafka-python's KafkaAdminClient and confluent-kafka's AdminClient create,
list and delete topics, describe and alter configs, add partitions, delete records; consumers
recover from retention by auto.offset.reset."""

import time

import kafka
import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic as CkNewTopic,
    ResourceType,
)

from conftest import Broker, wait_for


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


# ---- Topic configs, partitions and records: confluent-kafka's AdminClient (librdkafka) ----



def ck_admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def ck_configs(admin, kind, name):
    res = ConfigResource(kind, name)
    return admin.describe_configs([res])[res].result(timeout=15)


def ck_create(admin, topic, partitions=1, config=None):
    futures = admin.create_topics([CkNewTopic(topic, partitions, 1, config=config or {})])
    futures[topic].result(timeout=15)


def test_confluent_describe_alter_and_incremental_alter_configs(broker, topic):
    admin = ck_admin(broker)
    ck_create(admin, topic, config={"retention.ms": "3600000"})
    configs = ck_configs(admin, ResourceType.TOPIC, topic)
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].value == "delete"
    assert configs["cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["segment.bytes"].value == "1073741824"

    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"segment.ms": "60000"})
    admin.alter_configs([res])[res].result(timeout=15)
    configs = ck_configs(admin, ResourceType.TOPIC, topic)
    assert configs["segment.ms"].value == "60000"
    # AlterConfigs replaces the whole set: retention.ms went back to the default.
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
        ConfigEntry("segment.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET),
    ])
    admin.incremental_alter_configs([res])[res].result(timeout=15)
    configs = ck_configs(admin, ResourceType.TOPIC, topic)
    assert configs["cleanup.policy"].value == "delete,compact"
    assert configs["segment.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["max.message.bytes"].value == "2000"

    # validate_only changes nothing; an unknown key is INVALID_CONFIG naming the key.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "3000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res], validate_only=True)[res].result(timeout=15)
    assert ck_configs(admin, ResourceType.TOPIC, topic)["max.message.bytes"].value == "2000"
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.msec", "1", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as e:
        admin.incremental_alter_configs([res])[res].result(timeout=15)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert "retention.msec" in e.value.args[0].str()

    broker_configs = ck_configs(admin, ResourceType.BROKER, "1")
    assert broker_configs["num.partitions"].value == "1"
    assert broker_configs["num.partitions"].is_read_only


def test_confluent_create_partitions_delete_records_describe_cluster(broker, topic):
    admin = ck_admin(broker)
    ck_create(admin, topic)
    admin.create_partitions([NewPartitions(topic, 5)], validate_only=True)[topic].result(timeout=15)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 1
    admin.create_partitions([NewPartitions(topic, 3)])[topic].result(timeout=15)
    assert wait_for(lambda: len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 3)

    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        p.produce(topic, value=f"v{i}".encode(), partition=2)
    assert p.flush(15) == 0
    tp = TopicPartition(topic, 2, 4)
    deleted = admin.delete_records([tp])[tp].result(timeout=15)
    assert deleted.low_watermark == 4

    cluster = admin.describe_cluster().result(timeout=15)
    assert cluster.controller.id == 1
    assert [n.id for n in cluster.nodes] == [1]


def test_kafka_python_describe_alter_configs_and_create_partitions(broker, topic):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=1, replication_factor=1,
                                      topic_configs={"retention.ms": "3600000"})])
        from kafka.admin import ConfigResource as KpResource, ConfigResourceType, NewPartitions as KpNew
        assert kp_topic_config(admin, KpResource, ConfigResourceType, topic, "retention.ms") == "3600000"
        admin.alter_configs([KpResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "7200000"})])
        assert kp_topic_config(admin, KpResource, ConfigResourceType, topic, "retention.ms") == "7200000"
        admin.create_partitions({topic: KpNew(total_count=4)})
        assert wait_for(lambda: len(admin.describe_topics([topic])[0]["partitions"]) == 4)
        if hasattr(admin, "delete_records"):
            from kafka import TopicPartition as KpTp
            p = kafka.KafkaProducer(bootstrap_servers=broker.bootstrap)
            for i in range(5):
                p.send(topic, value=b"x", partition=0)
            p.flush()
            p.close()
            admin.delete_records({KpTp(topic, 0): 3})
    finally:
        admin.close()


def kp_topic_config(admin, resource, resource_type, topic, key):
    """One topic config through kafka-python, whose result shape changed in 3.x."""
    result = admin.describe_configs([resource(resource_type.TOPIC, topic)])
    if isinstance(result, dict):  # 3.x: {"topic": {name: {key: {...}}}}
        entry = result["topic"][topic][key]
        return entry["value"] if isinstance(entry, dict) else entry
    entries = result[0].resources[0][4]  # 2.0.2: the raw response
    return next(e[1] for e in entries if e[0] == key)


def test_consumers_at_a_deleted_offset_reset_to_earliest(tmp_path, topic):
    """Retention removes old segments in the background; rdkafka and kafka-python consumers at
    offset 0 get OFFSET_OUT_OF_RANGE and reset by auto.offset.reset=earliest."""
    broker = Broker(tmp_path / "data", sets=["log.retention.check.interval.ms=200"])
    try:
        admin = ck_admin(broker)
        ck_create(admin, topic, config={"retention.ms": "1000", "segment.ms": "100"})
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        for round_ in range(3):
            for i in range(5):
                p.produce(topic, value=f"r{round_}-{i}".encode(), partition=0)
            assert p.flush(15) == 0
            time.sleep(0.3)
        probe = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "probe"})
        low = wait_for(lambda: probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[0],
                       timeout_s=20)
        probe.close()
        assert low and low > 0, "retention moved the log start offset"

        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-ck",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.assign([TopicPartition(topic, 0, 0)])
        msg = None
        deadline = time.monotonic() + 20
        while msg is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                msg = m
        c.close()
        assert msg is not None and msg.offset() >= low

        kc = kafka.KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                                 enable_auto_commit=False, consumer_timeout_ms=15000)
        ktp = kafka.TopicPartition(topic, 0)
        kc.assign([ktp])
        kc.seek(ktp, 0)
        first = next(iter(kc))
        kc.close()
        assert first.offset >= low
    finally:
        broker.close()

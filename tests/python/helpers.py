"""kafka-python helpers shared by the tests: the producer and consumer set up the way Kafka's
quickstart and most tutorials set them up."""

import json

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic


def create_topic(bootstrap, name, partitions=1):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name=name, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def json_producer(bootstrap, **config):
    """A producer of string keys and JSON values, as in the tutorials."""
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        key_serializer=lambda k: k.encode("utf-8") if k is not None else None,
        value_serializer=lambda v: json.dumps(v).encode("utf-8"),
        **config,
    )


def consume_all(bootstrap, topic, expected, timeout_ms=15000):
    """Reads `topic` from the beginning without a consumer group until `expected` records
    arrived or nothing came for `timeout_ms`; returns the ConsumerRecords."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=timeout_ms,
        key_deserializer=lambda k: k.decode("utf-8") if k is not None else None,
        value_deserializer=lambda v: json.loads(v.decode("utf-8")),
    )
    records = []
    try:
        for record in consumer:
            records.append(record)
            if len(records) >= expected:
                break
    finally:
        consumer.close()
    return records

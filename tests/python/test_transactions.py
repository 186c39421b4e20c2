"""Transactions (issue 14) from the Python clients that have them: kafka-python 3.x's
transactional producer (with offsets sent to the transaction) and aiokafka's. A read_committed
consumer of each client sees exactly the committed records."""

import asyncio

import pytest

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from helpers import create_topic

kafka_python_txn = pytest.mark.skipif(
    not hasattr(KafkaProducer, "init_transactions"),
    reason="kafka-python 2.0.2 has no transactional producer (3.x has)",
)


def read_committed(bootstrap, topic, expected, timeout_ms=15000):
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        consumer_timeout_ms=timeout_ms,
    )
    values = []
    try:
        for m in consumer:
            values.append(m.value.decode())
            if len(values) >= expected:
                break
    finally:
        consumer.close()
    return values


@kafka_python_txn
def test_kafka_python_commits_aborts_and_sends_offsets(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="kp-txn")
    producer.init_transactions()
    producer.begin_transaction()
    for i in range(10):
        producer.send(topic, value=f"commit-{i}".encode(), partition=i % 2)
    producer.send_offsets_to_transaction(
        {TopicPartition(topic, 0): OffsetAndMetadata(7, "", -1)}, "kp-group"
    )
    producer.commit_transaction()
    producer.begin_transaction()
    for i in range(4):
        producer.send(topic, value=f"abort-{i}".encode(), partition=i % 2)
    producer.flush()
    producer.abort_transaction()
    producer.close()

    assert sorted(read_committed(broker.bootstrap, topic, 10)) == sorted(f"commit-{i}" for i in range(10))
    group = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="kp-group", enable_auto_commit=False)
    try:
        assert group.committed(TopicPartition(topic, 0)) == 7
    finally:
        group.close()


def test_aiokafka_transactions_commit_and_abort(broker, topic):
    aiokafka = pytest.importorskip("aiokafka", reason="aiokafka is installed in the kafka-python 3 venv only")
    create_topic(broker.bootstrap, topic, partitions=2)

    async def run():
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="aio-txn")
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(6):
                    await producer.send(topic, value=f"commit-{i}".encode(), partition=i % 2)
            with pytest.raises(RuntimeError):
                async with producer.transaction():
                    for i in range(3):
                        await producer.send_and_wait(topic, value=f"abort-{i}".encode(), partition=i % 2)
                    raise RuntimeError("abort this one")
        finally:
            await producer.stop()
        consumer = aiokafka.AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        got = []
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while len(got) < 6 and asyncio.get_running_loop().time() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(r.value.decode() for r in records)
            # Nothing more: the aborted records are dropped, the markers never shown.
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                got.extend(r.value.decode() for r in records)
        finally:
            await consumer.stop()
        return got

    assert sorted(asyncio.run(run())) == sorted(f"commit-{i}" for i in range(6))

"""aiokafka, the asyncio client, which speaks only the non-flexible protocol versions: keyed
records in, all of them back out per partition in order, with every codec it has."""

import asyncio
from collections import defaultdict

import pytest

from helpers import create_topic

aiokafka = pytest.importorskip("aiokafka", reason="aiokafka is installed in the kafka-python 3 venv only")


async def produce_and_consume(bootstrap, topic, n, compression):
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=compression, acks="all")
    await producer.start()
    acked = {}
    try:
        for i in range(n):
            md = await producer.send_and_wait(topic, key=f"k{i % 5}".encode(), value=f"{i}".encode())
            acked[(md.partition, md.offset)] = i
    finally:
        await producer.stop()

    consumer = aiokafka.AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got = []
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while len(got) < n and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                got.extend(records)
    finally:
        await consumer.stop()
    return acked, got


@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
def test_aiokafka_round_trip(broker, topic, compression):
    create_topic(broker.bootstrap, topic, partitions=3)
    acked, got = asyncio.run(produce_and_consume(broker.bootstrap, topic, 200, compression))
    assert len(got) == 200
    assert {(r.partition, r.offset): int(r.value) for r in got} == acked
    by_key = defaultdict(list)
    for r in sorted(got, key=lambda r: (r.partition, r.offset)):
        by_key[r.key].append(int(r.value))
    for key, values in by_key.items():
        assert values == sorted(values), f"{key} out of order"

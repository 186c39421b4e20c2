"""Every producer acks setting gets its records stored."""

import pytest

from helpers import consume_all, create_topic, json_producer


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks(broker, topic, acks):
    create_topic(broker.bootstrap, topic, partitions=2)
    producer = json_producer(broker.bootstrap, acks=acks)
    futures = [producer.send(topic, key=f"k{i % 4}", value=i) for i in range(40)]
    producer.flush()
    for f in futures:
        metadata = f.get(timeout=30)
        if acks != 0:
            assert metadata.offset >= 0
    producer.close()
    records = consume_all(broker.bootstrap, topic, 40)
    assert sorted(r.value for r in records) == list(range(40))

"""Kafka's quickstart with kafka-python: keyed JSON records in, all of them back out, with keys
and per-partition order intact."""

from collections import defaultdict

from helpers import consume_all, create_topic, json_producer


def test_keyed_json_round_trip(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    producer = json_producer(broker.bootstrap)
    sent = []
    for i in range(60):
        key = f"user-{i % 6}"
        value = {"seq": i, "user": key, "text": f"event {i}"}
        metadata = producer.send(topic, key=key, value=value).get(timeout=30)
        sent.append((key, value, metadata.partition, metadata.offset))
    producer.flush()
    producer.close()

    records = consume_all(broker.bootstrap, topic, len(sent))
    assert len(records) == len(sent)
    assert sorted(r.value["seq"] for r in records) == list(range(60))

    partition_of_key = {}
    by_partition = defaultdict(list)
    for r in records:
        assert r.key == r.value["user"]
        assert partition_of_key.setdefault(r.key, r.partition) == r.partition, "a key moved partition"
        by_partition[r.partition].append((r.offset, r.value["seq"]))
    # Within a partition, offsets increase and follow the send order.
    for partition, entries in by_partition.items():
        assert entries == sorted(entries), f"partition {partition} out of order"
        seqs = [s for _, s in entries]
        assert seqs == sorted(seqs)
    # The offsets the broker acknowledged are the offsets the consumer sees.
    acked = {(p, o): v["seq"] for _, v, p, o in sent}
    assert {(r.partition, r.offset): r.value["seq"] for r in records} == acked


def test_unkeyed_send_and_auto_created_topic(broker, topic):
    producer = json_producer(broker.bootstrap)
    for i in range(10):
        producer.send(topic, value={"n": i})
    producer.flush()
    producer.close()
    records = consume_all(broker.bootstrap, topic, 10)
    assert sorted(r.value["n"] for r in records) == list(range(10))
    assert all(r.key is None for r in records)


def test_our_cli_reads_what_kafka_python_wrote(broker, topic):
    create_topic(broker.bootstrap, topic)
    producer = json_producer(broker.bootstrap)
    producer.send(topic, key="k", value="Hello, World")
    producer.flush()
    producer.close()
    out = broker.cli("consume", topic, "--from-beginning", "--max-messages", "1", "--timeout-ms", "10000",
                     "--print-key").stdout
    assert out == b'k\t"Hello, World"\n'

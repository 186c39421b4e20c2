"""A broker restart keeps topics and data, and the log goes on from where it was."""

from kafka import KafkaAdminClient

from helpers import consume_all, create_topic, json_producer


def produce(bootstrap, topic, values):
    producer = json_producer(bootstrap, acks="all")
    for v in values:
        producer.send(topic, key=f"k{v % 3}", value=v)
    producer.flush()
    producer.close()


def test_restart_keeps_topics_and_data(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    produce(broker.bootstrap, topic, range(30))
    broker.restart()

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert topic in admin.list_topics()
    finally:
        admin.close()
    assert sorted(r.value for r in consume_all(broker.bootstrap, topic, 30)) == list(range(30))

    produce(broker.bootstrap, topic, range(30, 40))
    records = consume_all(broker.bootstrap, topic, 40)
    assert sorted(r.value for r in records) == list(range(40))
    # Offsets continue after a restart: no partition reuses an offset.
    assert len({(r.partition, r.offset) for r in records}) == 40


def test_acks_all_survives_sigkill(broker, topic):
    create_topic(broker.bootstrap, topic)
    produce(broker.bootstrap, topic, range(20))
    broker.kill()
    broker._start()
    assert sorted(r.value for r in consume_all(broker.bootstrap, topic, 20)) == list(range(20))

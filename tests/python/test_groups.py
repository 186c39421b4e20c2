"""The tutorial consumer: `group_id='my-group'`, `enable_auto_commit=True`, a JSON deserializer.
It reads everything; closed and reopened, it resumes from its committed offset with no
duplicates and no gaps, also across a broker restart."""

import json

from kafka import KafkaConsumer

from helpers import create_topic, json_producer


def tutorial_consumer(bootstrap, topic):
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="my-group",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=200,
        consumer_timeout_ms=8000,
        value_deserializer=lambda x: json.loads(x.decode("utf-8")),
    )


def read(bootstrap, topic, count):
    consumer = tutorial_consumer(bootstrap, topic)
    got = []
    try:
        for message in consumer:
            got.append(message.value["n"])
            if len(got) >= count:
                break
    finally:
        # close() commits the position reached, as the tutorials rely on.
        consumer.close()
    return got


def send(bootstrap, topic, numbers):
    producer = json_producer(bootstrap)
    for n in numbers:
        producer.send(topic, value={"n": n})
    producer.flush()
    producer.close()


def test_tutorial_consumer_resumes_without_duplicates_or_gaps(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    send(broker.bootstrap, topic, range(0, 60))
    first = read(broker.bootstrap, topic, 60)
    assert sorted(first) == list(range(60))

    send(broker.bootstrap, topic, range(60, 90))
    second = read(broker.bootstrap, topic, 30)
    assert sorted(second) == list(range(60, 90)), "resumed at the committed offsets"

    broker.restart()
    send(broker.bootstrap, topic, range(90, 100))
    third = read(broker.bootstrap, topic, 10)
    assert sorted(third) == list(range(90, 100)), "commits survived the restart"


def test_group_admin_lists_and_describes_the_group(broker, topic):
    from kafka import KafkaAdminClient

    create_topic(broker.bootstrap, topic, partitions=2)
    send(broker.bootstrap, topic, range(10))
    consumer = tutorial_consumer(broker.bootstrap, topic)
    seen = 0
    for _ in consumer:
        seen += 1
        if seen >= 10:
            break
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    consumer.commit()
    try:
        if hasattr(admin, "list_consumer_groups"):  # kafka-python 2.x
            groups = [g[0] for g in admin.list_consumer_groups()]
            described = admin.describe_consumer_groups(["my-group"])[0]
            state, members = described.state, described.members
            offsets = admin.list_consumer_group_offsets("my-group")
        else:  # kafka-python 3.x renamed the group admin calls and returns dicts
            groups = [g["group_id"] for g in admin.list_groups()]
            described = admin.describe_groups(["my-group"])["my-group"]
            state, members = described["group_state"], described["members"]
            offsets = admin.list_group_offsets({"my-group": None})["my-group"]
        assert "my-group" in groups
        assert state == "Stable"
        assert len(members) == 1
        assert sum(o.offset for o in offsets.values()) == 10
    finally:
        consumer.close()
        admin.close()

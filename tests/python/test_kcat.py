"""kcat (librdkafka) as producer, consumer and metadata client. Runs once per test run, in the
suite that sets TIDELOG_KCAT=1, since it does not depend on kafka-python."""

import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("TIDELOG_KCAT") != "1", reason="kcat runs in one suite only")


def kcat(broker, *args, input=None):
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed (scripts/test.sh installs it)")
    return subprocess.run(["kcat", "-b", broker.bootstrap, *args], input=input, capture_output=True,
                          timeout=60, check=True)


def test_kcat_produce_consume(broker, topic):
    broker.cli("topic", "create", topic, "--partitions", "1")
    lines = [f"message {i}" for i in range(100)]
    kcat(broker, "-P", "-t", topic, input="\n".join(lines).encode() + b"\n")
    out = kcat(broker, "-C", "-t", topic, "-e", "-o", "beginning", "-q").stdout.decode()
    assert out.splitlines() == lines


def test_kcat_keys_and_compression(broker, topic):
    broker.cli("topic", "create", topic, "--partitions", "2")
    kcat(broker, "-P", "-t", topic, "-K", ":", "-z", "lz4", input=b"a:1\nb:2\na:3\n")
    out = kcat(broker, "-C", "-t", topic, "-e", "-o", "beginning", "-q", "-f", "%p %k %s\n").stdout.decode()
    rows = [line.split() for line in out.splitlines()]
    assert sorted(r[2] for r in rows) == ["1", "2", "3"]
    a = [r for r in rows if r[1] == "a"]
    assert [r[2] for r in a] == ["1", "3"] and len({r[0] for r in a}) == 1


def test_kcat_metadata(broker, topic):
    broker.cli("topic", "create", topic, "--partitions", "3")
    out = kcat(broker, "-L").stdout.decode()
    assert f'topic "{topic}" with 3 partitions' in out
    assert "1 brokers" in out

"""Compressed batches from kafka-python are stored and served back (the broker never
decompresses on the produce path, so this checks it leaves them intact)."""

import pytest
from kafka import codec

from helpers import consume_all, create_topic, json_producer

CODEC_AVAILABLE = {
    "gzip": codec.has_gzip,
    "snappy": codec.has_snappy,
    "lz4": codec.has_lz4,
    "zstd": getattr(codec, "has_zstd", lambda: False),
}


@pytest.mark.parametrize("compression", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_round_trip(broker, topic, compression):
    if not CODEC_AVAILABLE[compression]():
        pytest.skip(f"this kafka-python cannot {compression}")
    create_topic(broker.bootstrap, topic)
    try:
        producer = json_producer(broker.bootstrap, compression_type=compression, linger_ms=50)
    except (AssertionError, ValueError) as e:
        # kafka-python 2.0.2 allows zstd only for brokers it takes to be >= 2.1.
        pytest.skip(f"kafka-python refuses {compression} with this broker: {e!r}")
    values = [{"i": i, "pad": "x" * 100} for i in range(200)]
    for v in values:
        producer.send(topic, value=v)
    producer.flush()
    producer.close()
    records = consume_all(broker.bootstrap, topic, len(values))
    assert [r.value for r in records] == values
    # Our CLI decodes the same compressed batches.
    out = broker.cli("consume", topic, "--from-beginning", "--max-messages", "200", "--timeout-ms", "10000").stdout
    assert len(out.splitlines()) == 200

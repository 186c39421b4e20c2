package dev.tidelog.peers;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;

/** seek, seekToBeginning/End, beginningOffsets/endOffsets and offsetsForTimes (ListOffsets). */
class SeekAndTimesTest {
    private static final int RECORDS = 100;
    /** Record i carries timestamp BASE_TS + 1000 * i: create-time, set by the producer. */
    private static final long BASE_TS = 1_700_000_000_000L;

    @Test
    void seekAndOffsetsForTimes() throws Exception {
        String topic = "java-seek";
        TopicPartition tp = new TopicPartition(topic, 0);
        try (TidelogBroker broker = TidelogBroker.start()) {
            try (Admin admin = Admin.create(Clients.admin(broker.bootstrap()))) {
                admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
            }
            var props = Clients.producer(broker.bootstrap());
            // Small batches, so that timestamps and offsets fall in many batches, not one.
            props.put(ProducerConfig.BATCH_SIZE_CONFIG, "256");
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
                List<Future<?>> acks = new ArrayList<>();
                for (int i = 0; i < RECORDS; i++) {
                    acks.add(producer.send(new ProducerRecord<>(topic, 0, BASE_TS + 1000L * i, "k" + i, "v" + i)));
                }
                for (Future<?> f : acks) {
                    f.get();
                }
            }

            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(Clients.consumer(broker.bootstrap(), null))) {
                assertEquals(0L, c.beginningOffsets(List.of(tp)).get(tp));
                assertEquals((long) RECORDS, c.endOffsets(List.of(tp)).get(tp));

                // Exact timestamps, a timestamp between two records, one before all, one after all.
                Map<TopicPartition, OffsetAndTimestamp> at = c.offsetsForTimes(Map.of(tp, BASE_TS + 1000L * 42));
                assertEquals(42L, at.get(tp).offset());
                assertEquals(BASE_TS + 1000L * 42, at.get(tp).timestamp());
                at = c.offsetsForTimes(Map.of(tp, BASE_TS + 1000L * 42 + 1));
                assertEquals(43L, at.get(tp).offset(), "the first record at or after the time");
                at = c.offsetsForTimes(Map.of(tp, 0L));
                assertEquals(0L, at.get(tp).offset());
                at = c.offsetsForTimes(Map.of(tp, BASE_TS + 1000L * RECORDS));
                assertNull(at.get(tp), "no record at or after a time past the last one");

                c.assign(List.of(tp));
                c.seek(tp, 73);
                List<ConsumerRecord<String, String>> got = Clients.pollExactly(c, RECORDS - 73);
                assertEquals(RECORDS - 73, got.size());
                assertEquals(73L, got.get(0).offset(), "the first record after seek(73) is offset 73");
                assertEquals("v73", got.get(0).value());
                assertEquals(BASE_TS + 1000L * 73, got.get(0).timestamp());

                c.seekToBeginning(List.of(tp));
                assertEquals(0L, c.position(tp));
                c.seekToEnd(List.of(tp));
                assertEquals((long) RECORDS, c.position(tp));
                assertEquals(0, c.poll(Duration.ofMillis(300)).count(), "nothing past the end");

                // Seek into the middle of a batch: Kafka returns the whole batch, the client skips
                // the records before the position.
                c.seek(tp, 5);
                got = Clients.pollExactly(c, 1);
                assertEquals(5L, got.get(0).offset());
            }
        }
    }
}

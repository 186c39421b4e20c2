package dev.tidelog.peers;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The idempotent producer (the Java client's default since 3.0) with each codec: acks=all,
 * pipelined batches, every record read back once, in order, byte for byte.
 */
class IdempotentProducerTest {
    private static final int RECORDS = 2000;
    private static TidelogBroker broker;

    @BeforeAll
    static void start() throws Exception {
        broker = TidelogBroker.start();
    }

    @AfterAll
    static void stop() throws Exception {
        if (broker != null) {
            broker.close();
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    void everyRecordOnceInOrder(String codec) throws Exception {
        String topic = "java-idem-" + codec;
        try (Admin admin = Admin.create(Clients.admin(broker.bootstrap()))) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
        }
        Properties props = Clients.producer(broker.bootstrap());
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        props.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.BATCH_SIZE_CONFIG, "16384");
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < RECORDS; i++) {
                acks.add(producer.send(new ProducerRecord<>(topic, 0, "k" + i, value(codec, i))));
            }
            producer.flush();
        }
        for (int i = 0; i < RECORDS; i++) {
            assertEquals(i, acks.get(i).get().offset(), "record " + i + " acknowledged at its offset");
        }

        try (KafkaConsumer<String, String> consumer =
                new KafkaConsumer<>(Clients.consumer(broker.bootstrap(), null))) {
            TopicPartition tp = new TopicPartition(topic, 0);
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            List<ConsumerRecord<String, String>> got = Clients.pollExactly(consumer, RECORDS);
            assertEquals(RECORDS, got.size(), "every record read back (codec " + codec + ")");
            for (int i = 0; i < RECORDS; i++) {
                ConsumerRecord<String, String> r = got.get(i);
                assertEquals(i, r.offset());
                assertEquals("k" + i, r.key());
                assertEquals(value(codec, i), r.value());
            }
            assertTrue(consumer.poll(java.time.Duration.ofMillis(300)).isEmpty(), "nothing twice");
        }
    }

    /** A value that compresses (repeated text) but differs per record, so order is checked. */
    private static String value(String codec, int i) {
        return codec + "-" + i + "-" + "tidelog ".repeat(8 + i % 16);
    }
}

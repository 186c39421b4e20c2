package dev.tidelog.peers;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.OutOfOrderSequenceException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.junit.jupiter.api.Test;

/**
 * Kafka's TransactionalMessageCopier loop (consume, produce to another topic and send the
 * consumer's offsets in one transaction, commit) copies every record exactly once while the
 * broker is SIGKILLed and restarted half way: a failed transaction is aborted and the consumer
 * rewound to the offsets the last committed transaction stored.
 */
class TransactionalCopyTest {
    private static final int PARTITIONS = 3;
    private static final int RECORDS = 3000;

    @Test
    void copiesEveryRecordExactlyOnceAcrossACrash() throws Exception {
        String input = "copy-in", output = "copy-out", group = "copier";
        try (TidelogBroker broker = TidelogBroker.start(
                "--set", "transaction.abort.timed.out.transaction.cleanup.interval.ms=500")) {
            try (Admin admin = Admin.create(Clients.admin(broker.bootstrap()))) {
                admin.createTopics(List.of(new NewTopic(input, PARTITIONS, (short) 1),
                        new NewTopic(output, PARTITIONS, (short) 1))).all().get();
            }
            try (KafkaProducer<String, String> p = new KafkaProducer<>(Clients.producer(broker.bootstrap()))) {
                for (int i = 0; i < RECORDS; i++) {
                    p.send(new ProducerRecord<>(input, i % PARTITIONS, "k" + i, "v" + i));
                }
                p.flush();
            }

            long copied = copy(broker, input, output, group);
            assertEquals(RECORDS, copied, "input offsets the copier's transactions committed");

            Properties c = Clients.consumer(broker.bootstrap(), null);
            c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
            try (KafkaConsumer<String, String> reader = new KafkaConsumer<>(c)) {
                List<TopicPartition> parts = new ArrayList<>();
                for (int i = 0; i < PARTITIONS; i++) {
                    parts.add(new TopicPartition(output, i));
                }
                reader.assign(parts);
                reader.seekToBeginning(parts);
                List<ConsumerRecord<String, String>> got = Clients.pollExactly(reader, RECORDS);
                Set<String> values = new HashSet<>();
                got.forEach(r -> values.add(r.value()));
                assertEquals(RECORDS, got.size(), "committed copies read back");
                assertEquals(RECORDS, values.size(), "each record copied once");
                assertEquals(0, reader.poll(Duration.ofSeconds(1)).count(), "nothing beyond");
            }
        }
    }

    /**
     * The copy loop, until the offsets its transactions committed cover the input; kills and
     * restarts the broker once they cover half. Returns what they cover.
     */
    private static long copy(TidelogBroker broker, String input, String output, String group) throws Exception {
        Properties pp = Clients.producer(broker.bootstrap());
        pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "copier-1");
        pp.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 10000);
        pp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 20000);
        Properties cp = Clients.consumer(broker.bootstrap(), group);
        cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 200);
        long copied = 0;
        boolean crashed = false;
        long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp);
                KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
            producer.initTransactions();
            List<TopicPartition> parts = new ArrayList<>();
            for (int i = 0; i < PARTITIONS; i++) {
                parts.add(new TopicPartition(input, i));
            }
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            while (copied < RECORDS && System.nanoTime() < deadline) {
                if (!crashed && copied >= RECORDS / 2) {
                    broker.killAndRestart();
                    crashed = true;
                }
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
                if (records.isEmpty()) {
                    continue;
                }
                Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                for (TopicPartition tp : records.partitions()) {
                    List<ConsumerRecord<String, String>> rs = records.records(tp);
                    next.put(tp, new OffsetAndMetadata(rs.get(rs.size() - 1).offset() + 1));
                }
                try {
                    producer.beginTransaction();
                    for (ConsumerRecord<String, String> r : records) {
                        producer.send(new ProducerRecord<>(output, r.partition(), r.key(), r.value()));
                    }
                    producer.sendOffsetsToTransaction(next, consumer.groupMetadata());
                    producer.commitTransaction();
                } catch (ProducerFencedException | OutOfOrderSequenceException | AuthorizationException e) {
                    throw e; // fatal: nothing else may write as copier-1
                } catch (KafkaException e) {
                    // Abortable (the broker went away mid-transaction): abort, and start again
                    // from what the last committed transaction stored.
                    producer.abortTransaction();
                    Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(new HashSet<>(parts));
                    for (TopicPartition tp : parts) {
                        OffsetAndMetadata o = committed.get(tp);
                        if (o == null) {
                            consumer.seekToBeginning(List.of(tp));
                        } else {
                            consumer.seek(tp, o.offset());
                        }
                    }
                }
                copied = committedTotal(consumer, parts);
            }
        }
        return copied;
    }

    private static long committedTotal(KafkaConsumer<String, String> consumer, List<TopicPartition> parts) {
        return consumer.committed(new HashSet<>(parts)).values().stream()
                .filter(o -> o != null).mapToLong(OffsetAndMetadata::offset).sum();
    }
}

package dev.tidelog.peers;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.junit.jupiter.api.Test;

/**
 * Three members of one consumer group share a topic, commit what they consumed, the broker
 * restarts, and the group resumes from the committed offsets: nothing lost, nothing twice.
 */
class ConsumerGroupRestartTest {
    private static final int PARTITIONS = 6;
    private static final int RECORDS = 600;
    private static final int MEMBERS = 3;

    @Test
    void threeMembersCommitAndResumeAcrossRestart() throws Exception {
        String topic = "java-group", group = "java-group-g";
        try (TidelogBroker broker = TidelogBroker.start()) {
            try (Admin admin = Admin.create(Clients.admin(broker.bootstrap()))) {
                admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get();
            }
            produce(broker, topic, 0, RECORDS);

            Set<String> first = consumeAsGroup(broker, topic, group, RECORDS, true);
            assertEquals(RECORDS, first.size(), "the three members consumed every record once");

            broker.restart();

            try (Admin admin = Admin.create(Clients.admin(broker.bootstrap()))) {
                Map<TopicPartition, OffsetAndMetadata> committed =
                        admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
                long total = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
                assertEquals(PARTITIONS, committed.size(), "a commit per partition survived: " + committed);
                assertEquals(RECORDS, total, "committed offsets survived the restart: " + committed);
            }

            produce(broker, topic, RECORDS, RECORDS);
            Set<String> second = consumeAsGroup(broker, topic, group, RECORDS, false);
            assertEquals(RECORDS, second.size(), "after the restart the group reads only new records");
            for (String v : second) {
                assertTrue(Integer.parseInt(v) >= RECORDS, "record " + v + " was consumed again");
            }
        }
    }

    private static void produce(TidelogBroker broker, String topic, int from, int count) throws Exception {
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(Clients.producer(broker.bootstrap()))) {
            List<Future<?>> acks = new ArrayList<>();
            for (int i = from; i < from + count; i++) {
                acks.add(producer.send(new ProducerRecord<>(topic, "key-" + i, Integer.toString(i))));
            }
            for (Future<?> f : acks) {
                f.get();
            }
        }
    }

    /**
     * Runs three members until together they consumed {@code expected} distinct records, each
     * committing synchronously after every poll; checks the assignment split the partitions.
     * Returns the values consumed; fails on a value consumed twice.
     */
    private static Set<String> consumeAsGroup(TidelogBroker broker, String topic, String group,
            int expected, boolean checkGroup) throws Exception {
        Map<String, String> seen = new ConcurrentHashMap<>();
        List<String> duplicates = new ArrayList<>();
        AtomicBoolean done = new AtomicBoolean();
        ExecutorService pool = Executors.newFixedThreadPool(MEMBERS);
        List<KafkaConsumer<String, String>> members = new ArrayList<>();
        List<Future<?>> loops = new ArrayList<>();
        for (int m = 0; m < MEMBERS; m++) {
            KafkaConsumer<String, String> c = new KafkaConsumer<>(Clients.consumer(broker.bootstrap(), group));
            members.add(c);
            String name = "member-" + m;
            loops.add(pool.submit(() -> {
                // The Java user's at-most-once-per-record idiom: commit after every poll, and
                // commit again when partitions are taken away, so a rebalance hands over exactly
                // the committed position.
                c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    @Override
                    public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                        c.commitSync();
                    }

                    @Override
                    public void onPartitionsAssigned(Collection<TopicPartition> partitions) {}
                });
                while (!done.get()) {
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100))) {
                        if (seen.putIfAbsent(r.value(), name) != null) {
                            synchronized (duplicates) {
                                duplicates.add(r.value() + " (" + name + " and " + seen.get(r.value()) + ")");
                            }
                        }
                    }
                    try {
                        c.commitSync();
                    } catch (RebalanceInProgressException e) {
                        // Kafka's answer while the group completes a rebalance; the revoke
                        // listener commits these positions before the partitions move.
                    }
                }
                c.commitSync();
                return null;
            }));
        }
        long deadline = System.nanoTime() + Clients.RECORDS_TIMEOUT.toNanos();
        boolean allMembersAssigned = false;
        try (Admin admin = Admin.create(Clients.admin(broker.bootstrap()))) {
            while (System.nanoTime() < deadline && (seen.size() < expected || (checkGroup && !allMembersAssigned))) {
                if (checkGroup && !allMembersAssigned) {
                    ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group))
                            .all().get().get(group);
                    allMembersAssigned = d.members().size() == MEMBERS
                            && d.members().stream().allMatch(mem -> mem.assignment().topicPartitions().size() == PARTITIONS / MEMBERS);
                }
                TimeUnit.MILLISECONDS.sleep(100); // pacing of the progress check, not synchronisation
            }
        }
        done.set(true);
        for (Future<?> f : loops) {
            f.get(60, TimeUnit.SECONDS);
        }
        for (KafkaConsumer<String, String> c : members) {
            c.close(Duration.ofSeconds(30));
        }
        pool.shutdown();
        assertTrue(duplicates.isEmpty(), "records consumed twice: " + duplicates);
        if (checkGroup) {
            assertTrue(allMembersAssigned, "all three members got " + PARTITIONS / MEMBERS + " partitions each");
        }
        return new HashSet<>(seen.keySet());
    }
}

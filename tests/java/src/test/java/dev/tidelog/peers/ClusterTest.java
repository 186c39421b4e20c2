package dev.tidelog.peers;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.NoReassignmentInProgressException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The Java client against a three-node tidelog cluster on 127.0.0.1, .2 and .3 (every node
 * broker and controller): the admin client sees three brokers and a topic spread over them, an
 * idempotent producer (producer ids from the cluster's quorum) writes through node 1, a consumer
 * group reads through node 3 and commits to its coordinator, and after SIGKILL of the active
 * controller a topic is created through the survivors.
 */
class ClusterTest {
    private static final String CLUSTER_ID = "MkU3OEVBNTcwNTJENDM2Qk";
    private static final int RECORDS = 1000;
    private final List<Process> nodes = new ArrayList<>();
    private final Map<Integer, Process> byId = new HashMap<>();
    private Path dir;
    private int port;
    private int controllerPort;

    @AfterEach
    void stopAll() throws Exception {
        for (Process p : nodes) {
            p.destroyForcibly().waitFor();
        }
    }

    private static int freeOnAll() throws IOException {
        // Below the kernel's ephemeral range (32768 and up): a restarted node binds its ports
        // again, and an ephemeral port may meanwhile be some connection's source port.
        java.util.Random random = new java.util.Random();
        while (true) {
            int port = 20000 + random.nextInt(12000);
            boolean free = true;
            for (int i = 1; i <= 3 && free; i++) {
                try (ServerSocket s = new ServerSocket(port, 1, InetAddress.getByName("127.0.0." + i))) {
                    // free
                } catch (IOException e) {
                    free = false;
                }
            }
            if (free) {
                return port;
            }
        }
    }

    private String bootstrap(int i) {
        return "127.0.0." + i + ":" + port;
    }

    private void startNode(int i) throws Exception {
        int c = controllerPort;
        Path log = dir.resolve("node" + i + ".log");
        List<String> cmd = List.of(TidelogBroker.binary(), "serve",
                "--data-dir", dir.resolve("node" + i).toString(), "--shards", "1",
                "--set", "node.id=" + i,
                "--set", "process.roles=broker,controller",
                "--set", "cluster.id=" + CLUSTER_ID,
                "--set", "controller.quorum.voters=1@127.0.0.1:" + c + ",2@127.0.0.2:" + c + ",3@127.0.0.3:" + c,
                "--set", "listeners=PLAINTEXT://127.0.0." + i + ":" + port + ",CONTROLLER://127.0.0." + i + ":" + c,
                "--set", "controller.listener.names=CONTROLLER");
        Files.writeString(log, "");
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline && p.isAlive()
                && Files.readAllLines(log, StandardCharsets.UTF_8).stream().noneMatch(l -> l.startsWith("listening on "))) {
            Thread.sleep(50);
        }
        assertTrue(p.isAlive(), "node " + i + " started: " + Files.readString(log));
        nodes.add(p);
        byId.put(i, p);
    }

    private static Properties admin(String bootstrap) {
        Properties p = Clients.admin(bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        return p;
    }

    /** Polls {@code check} every 200 ms for up to 30 s; fails with {@code what} if it never holds. */
    private static void eventually(String what, Check check) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        Exception last = null;
        while (System.nanoTime() < deadline) {
            try {
                if (check.holds()) {
                    return;
                }
            } catch (Exception e) {
                last = e;
            }
            Thread.sleep(200);
        }
        throw new AssertionError("timed out waiting for " + what, last);
    }

    interface Check {
        boolean holds() throws Exception;
    }

    private void startCluster() throws Exception {
        dir = Files.createTempDirectory("tidelog-java-cluster-");
        port = freeOnAll();
        controllerPort = freeOnAll();
        while (controllerPort == port) {
            controllerPort = freeOnAll();
        }
        for (int i = 1; i <= 3; i++) {
            startNode(i);
        }
    }

    @Test
    void threeNodesServeTheJavaClientAndSurviveTheLossOfTheirController() throws Exception {
        startCluster();
        try (Admin admin = Admin.create(admin(bootstrap(2)))) {
            eventually("three brokers", () -> admin.describeCluster().nodes().get().size() == 3);
            admin.createTopics(List.of(new NewTopic("java-spread", 6, (short) 1))).all().get();
            Set<Integer> leaders = new HashSet<>();
            eventually("six led partitions", () -> {
                TopicDescription d = admin.describeTopics(List.of("java-spread")).allTopicNames().get().get("java-spread");
                leaders.clear();
                for (TopicPartitionInfo p : d.partitions()) {
                    if (p.leader() == null || p.leader().id() < 0) {
                        return false;
                    }
                    leaders.add(p.leader().id());
                }
                return d.partitions().size() == 6;
            });
            assertTrue(leaders.size() >= 2, "leaders " + leaders);
        }

        Properties pp = Clients.producer(bootstrap(1));
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            for (int i = 0; i < RECORDS; i++) {
                producer.send(new ProducerRecord<>("java-spread", "k" + i, "v" + i));
            }
            producer.flush();
        }

        Set<String> seen = new HashSet<>();
        try (KafkaConsumer<String, String> consumer =
                new KafkaConsumer<>(Clients.consumer(bootstrap(3), "java-cluster-group"))) {
            consumer.subscribe(List.of("java-spread"));
            for (ConsumerRecord<String, String> r : Clients.pollExactly(consumer, RECORDS)) {
                seen.add(r.value());
            }
            consumer.commitSync();
            Set<TopicPartition> parts = new HashSet<>();
            for (int p = 0; p < 6; p++) {
                parts.add(new TopicPartition("java-spread", p));
            }
            long committed = consumer.committed(parts).values().stream()
                    .filter(o -> o != null).mapToLong(OffsetAndMetadata::offset).sum();
            assertEquals(RECORDS, committed, "committed offsets cover every record");
        }
        assertEquals(RECORDS, seen.size(), "every record read once");

        int controller;
        try (Admin admin = Admin.create(admin(bootstrap(1)))) {
            Node c = admin.describeCluster().controller().get();
            controller = c.id();
        }
        byId.get(controller).destroyForcibly().waitFor();
        int survivor = controller == 1 ? 2 : 1;
        long killedAt = System.nanoTime();
        try (Admin admin = Admin.create(admin(bootstrap(survivor)))) {
            eventually("a topic created through the survivors", () -> {
                admin.createTopics(List.of(new NewTopic("java-after", 3, (short) 1))).all().get();
                return true;
            });
            System.out.println("topic created " + TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - killedAt)
                    + " ms after the controller's SIGKILL");
            eventually("a new controller", () -> admin.describeCluster().controller().get().id() != controller);
            assertNotEquals(controller, admin.describeCluster().controller().get().id());
            Set<String> names = admin.listTopics().names().get().stream().collect(Collectors.toSet());
            assertTrue(names.contains("java-after"), "topics " + names);
        }
    }

    /**
     * Issue 13: an RF=3 topic with min.insync.replicas=2; an idempotent acks=all producer writes
     * through the SIGKILL of a partition leader without an application-visible error (the client
     * retries what is retriable), and a consumer group reads every acknowledged record.
     */
    @Test
    void anIdempotentProducerCarriesOnThroughTheLossOfALeader() throws Exception {
        startCluster();
        int victim;
        try (Admin admin = Admin.create(admin(bootstrap(1)))) {
            eventually("three brokers", () -> admin.describeCluster().nodes().get().size() == 3);
            admin.createTopics(List.of(new NewTopic("java-replicated", 3, (short) 3)
                    .configs(Map.of("min.insync.replicas", "2")))).all().get();
            eventually("every replica in sync", () -> {
                TopicDescription d = admin.describeTopics(List.of("java-replicated"))
                        .allTopicNames().get().get("java-replicated");
                return d.partitions().size() == 3 && d.partitions().stream()
                        .allMatch(p -> p.leader() != null && p.isr().size() == 3);
            });
            victim = admin.describeTopics(List.of("java-replicated")).allTopicNames().get()
                    .get("java-replicated").partitions().get(0).leader().id();
        }
        Properties pp = Clients.producer(bootstrap(victim == 1 ? 2 : 1));
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        Set<String> acked = java.util.concurrent.ConcurrentHashMap.newKeySet();
        List<Exception> failures = java.util.Collections.synchronizedList(new ArrayList<>());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            for (int round = 0; round < 2; round++) {
                for (int i = 0; i < RECORDS; i++) {
                    String v = "r" + round + "-" + i;
                    producer.send(new ProducerRecord<>("java-replicated", "k" + i, v), (m, e) -> {
                        if (e == null) {
                            acked.add(v);
                        } else {
                            failures.add(e);
                        }
                    });
                }
                if (round == 0) {
                    producer.flush();
                    byId.get(victim).destroyForcibly().waitFor();
                }
            }
            producer.flush();
        }
        assertTrue(failures.isEmpty(), "no application-visible errors: " + failures);
        assertEquals(2 * RECORDS, acked.size(), "every record acknowledged");
        int survivor = victim == 1 ? 2 : 1;
        Set<String> seen = new HashSet<>();
        try (KafkaConsumer<String, String> consumer =
                new KafkaConsumer<>(Clients.consumer(bootstrap(survivor), "java-replicated-group"))) {
            consumer.subscribe(List.of("java-replicated"));
            for (ConsumerRecord<String, String> r : Clients.pollExactly(consumer, 2 * RECORDS)) {
                seen.add(r.value());
            }
        }
        assertEquals(acked, seen, "every acknowledged record read back");
    }

    /**
     * Issue 13: what kafka-reassign-partitions.sh does, through the admin client it uses. A
     * partition on two brokers moves off its leader to the third broker; the admin client sees
     * the move listed until it completes, the replicas and ISR become the target, and every
     * record is read back from the new replica's broker. Cancelling when nothing is in progress
     * is NoReassignmentInProgressException.
     */
    @Test
    void aPartitionMovesAsKafkaReassignPartitionsMovesIt() throws Exception {
        startCluster();
        TopicPartition tp = new TopicPartition("java-moving", 0);
        List<Integer> target;
        try (Admin admin = Admin.create(admin(bootstrap(1)))) {
            eventually("three brokers", () -> admin.describeCluster().nodes().get().size() == 3);
            admin.createTopics(List.of(new NewTopic("java-moving", 1, (short) 2))).all().get();
            eventually("both replicas in sync", () -> {
                TopicPartitionInfo p = admin.describeTopics(List.of("java-moving")).allTopicNames().get()
                        .get("java-moving").partitions().get(0);
                return p.leader() != null && p.isr().size() == 2;
            });
        }
        Properties pp = Clients.producer(bootstrap(1));
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            for (int i = 0; i < RECORDS; i++) {
                producer.send(new ProducerRecord<>("java-moving", "k" + i, "v" + i)).get();
            }
        }
        try (Admin admin = Admin.create(admin(bootstrap(2)))) {
            TopicPartitionInfo p = admin.describeTopics(List.of("java-moving")).allTopicNames().get()
                    .get("java-moving").partitions().get(0);
            Set<Integer> on = p.replicas().stream().map(Node::id).collect(Collectors.toSet());
            int fresh = List.of(1, 2, 3).stream().filter(b -> !on.contains(b)).findFirst().orElseThrow();
            int kept = p.replicas().stream().map(Node::id).filter(b -> b != p.leader().id()).findFirst().orElseThrow();
            target = List.of(fresh, kept);
            try {
                admin.alterPartitionReassignments(Map.of(tp, java.util.Optional.empty())).all().get();
                throw new AssertionError("a cancel with nothing in progress succeeded");
            } catch (java.util.concurrent.ExecutionException e) {
                assertTrue(e.getCause() instanceof NoReassignmentInProgressException, e.toString());
            }
            admin.alterPartitionReassignments(Map.of(tp,
                    java.util.Optional.of(new NewPartitionReassignment(target)))).all().get();
            eventually("the move completes", () -> {
                TopicPartitionInfo now = admin.describeTopics(List.of("java-moving")).allTopicNames().get()
                        .get("java-moving").partitions().get(0);
                List<Integer> replicas = now.replicas().stream().map(Node::id).collect(Collectors.toList());
                return admin.listPartitionReassignments().reassignments().get().isEmpty()
                        && replicas.equals(target) && now.isr().size() == 2;
            });
        }
        Set<String> seen = new HashSet<>();
        try (KafkaConsumer<String, String> consumer =
                new KafkaConsumer<>(Clients.consumer(bootstrap(target.get(0)), "java-moving-group"))) {
            consumer.subscribe(List.of("java-moving"));
            for (ConsumerRecord<String, String> r : Clients.pollExactly(consumer, RECORDS)) {
                seen.add(r.value());
            }
        }
        assertEquals(RECORDS, seen.size(), "every record read back after the move");
    }
}

package dev.tidelog.peers;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** AdminClient: topics and configs, as a Java user manages them. */
class AdminFlowsTest {
    private static TidelogBroker broker;
    private static Admin admin;

    @BeforeAll
    static void start() throws Exception {
        broker = TidelogBroker.start();
        admin = Admin.create(Clients.admin(broker.bootstrap()));
    }

    @AfterAll
    static void stop() throws Exception {
        if (admin != null) {
            admin.close();
        }
        if (broker != null) {
            broker.close();
        }
    }

    @Test
    void describeClusterNamesOneController() throws Exception {
        DescribeClusterResult cluster = admin.describeCluster();
        assertEquals(1, cluster.nodes().get().size(), "one broker");
        assertTrue(cluster.controller().get() != null, "a controller is named");
        assertFalse(cluster.clusterId().get().isEmpty(), "a cluster id");
    }

    @Test
    void createListDescribeDeleteTopics() throws Exception {
        String a = "java-admin-a", b = "java-admin-b";
        admin.createTopics(List.of(
                new NewTopic(a, 3, (short) 1),
                new NewTopic(b, 1, (short) 1).configs(Map.of("cleanup.policy", "compact"))))
                .all().get();

        Set<String> names = admin.listTopics().names().get();
        assertTrue(names.containsAll(Set.of(a, b)), "listTopics shows both: " + names);

        Map<String, TopicDescription> described = admin.describeTopics(List.of(a, b)).allTopicNames().get();
        assertEquals(3, described.get(a).partitions().size());
        assertEquals(1, described.get(b).partitions().size());
        described.get(a).partitions().forEach(p -> {
            assertEquals(1, p.replicas().size(), "partition " + p.partition() + " has one replica");
            assertEquals(1, p.isr().size(), "partition " + p.partition() + " has one in-sync replica");
        });

        ExecutionException dup = assertThrows(ExecutionException.class,
                () -> admin.createTopics(List.of(new NewTopic(a, 3, (short) 1))).all().get());
        assertInstanceOf(TopicExistsException.class, dup.getCause());

        admin.createPartitions(Map.of(a, NewPartitions.increaseTo(5))).all().get();
        assertEquals(5, admin.describeTopics(List.of(a)).allTopicNames().get().get(a).partitions().size());

        admin.deleteTopics(List.of(a, b)).all().get();
        Set<String> after = admin.listTopics().names().get();
        assertFalse(after.contains(a) || after.contains(b), "deleted topics are gone: " + after);
        ExecutionException gone = assertThrows(ExecutionException.class,
                () -> admin.describeTopics(List.of(a)).allTopicNames().get());
        assertInstanceOf(UnknownTopicOrPartitionException.class, gone.getCause());
    }

    @Test
    void describeAndAlterTopicConfigs() throws Exception {
        String topic = "java-admin-configs";
        admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1)
                .configs(Map.of("retention.ms", "3600000")))).all().get();
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);

        Config config = admin.describeConfigs(List.of(res)).all().get().get(res);
        ConfigEntry retention = config.get("retention.ms");
        assertEquals("3600000", retention.value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, retention.source());
        assertTrue(config.get("cleanup.policy") != null, "defaults are described too");

        Collection<AlterConfigOp> ops = List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("segment.bytes", "1048576"), AlterConfigOp.OpType.SET));
        admin.incrementalAlterConfigs(Map.of(res, ops)).all().get();
        config = admin.describeConfigs(List.of(res)).all().get().get(res);
        assertEquals("7200000", config.get("retention.ms").value());
        assertEquals("1048576", config.get("segment.bytes").value());

        admin.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(
                new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE)))).all().get();
        config = admin.describeConfigs(List.of(res)).all().get().get(res);
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, config.get("retention.ms").source(),
                "a deleted override falls back to the default");

        ConfigResource brokerRes = new ConfigResource(ConfigResource.Type.BROKER,
                String.valueOf(admin.describeCluster().nodes().get().iterator().next().id()));
        Config brokerConfig = admin.describeConfigs(List.of(brokerRes)).all().get().get(brokerRes);
        assertFalse(brokerConfig.entries().isEmpty(), "the broker describes its configs");
        admin.deleteTopics(List.of(topic)).all().get();
    }
}

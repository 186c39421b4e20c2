// kafka-javascript (librdkafka 2.15 inside) lists all topics against tidelog: the request that
// issue 10 item 5 found broken (Metadata v12 for all topics, sent with 3 bytes after the body).
// Run by scripts/peers/js.sh with BOOTSTRAP set to a broker it started; exits non-zero on failure.
const assert = require('node:assert/strict');
const { Kafka } = require('@confluentinc/kafka-javascript').KafkaJS;

async function main() {
  const kafka = new Kafka({ kafkaJS: { brokers: [process.env.BOOTSTRAP], clientId: 'tidelog-js' } });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topics = ['js-list-a', 'js-list-b'];
    await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: 3 })) });
    const listed = await admin.listTopics();
    for (const t of topics) {
      assert.ok(listed.includes(t), `listTopics shows ${t}: ${JSON.stringify(listed)}`);
    }
    console.log(`listTopics: ${listed.length} topics, including ${topics.join(', ')}`);
  } finally {
    await admin.disconnect();
  }
}

main().then(
  () => console.log('js list_topics: PASSED'),
  (err) => {
    console.error('js list_topics: FAILED:', err);
    process.exit(1);
  },
);

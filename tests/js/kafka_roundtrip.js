// kafka_roundtrip.js BROKER - kafkajs against the Kafka door: create a
// topic, produce a batch, consume it in a consumer group with two members
// (rebalance), commit, and check every record arrives once. Exits 0 on
// success; run by tests/integration/test_kafka.py::test_kafkajs.
import kafkajs from "kafkajs";

const { Kafka, logLevel } = kafkajs;
const broker = process.argv[2];
const kafka = new Kafka({ clientId: "jn-kafkajs", brokers: [broker], logLevel: logLevel.ERROR });
const topic = `kjs-${Date.now()}`;
const N = 50;

function fail(msg) {
  console.error(msg);
  process.exit(1);
}

const timer = setTimeout(() => fail("timed out"), 80000);

const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] });
await admin.disconnect();

const producer = kafka.producer();
await producer.connect();
const messages = [];
for (let i = 0; i < N; i++) messages.push({ key: `k${i % 7}`, value: `v${i}`, headers: { h: "x" } });
await producer.send({ topic, messages });
await producer.disconnect();

const seen = new Set();
let resolveDone;
const done = new Promise((r) => (resolveDone = r));
function member() {
  const c = kafka.consumer({ groupId: `${topic}-g`, sessionTimeout: 10000, heartbeatInterval: 500 });
  return c;
}
const a = member();
const b = member();
for (const c of [a, b]) {
  await c.connect();
  await c.subscribe({ topic, fromBeginning: true });
}
const each = async ({ message }) => {
  if (message.headers.h.toString() !== "x") fail("header lost");
  seen.add(message.value.toString());
  if (seen.size === N) resolveDone();
};
await a.run({ eachMessage: each });
await b.run({ eachMessage: each });
await done;
await a.disconnect();
await b.disconnect();
clearTimeout(timer);
if (seen.size !== N) fail(`got ${seen.size} of ${N}`);
console.log(`ok: ${seen.size} records through a two-member group`);

// amqp_client.mjs <amqp-port> - the AMQP door with amqplib (npm): a round
// trip through a queue with publisher confirms, then prefetch: with
// prefetch 2 the broker holds back the third delivery until an ack.
// Prints one JSON line; exits non-zero on failure.
import amqp from 'amqplib';

const port = process.argv[2];
const fail = (m) => { console.error(m); process.exit(1); };
setTimeout(() => fail('timeout'), 20000);

const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${port}`);
const ch = await conn.createConfirmChannel();
const q = (await ch.assertQueue('', { exclusive: true })).queue;
await new Promise((res, rej) => ch.sendToQueue(q, Buffer.from('round'), { persistent: true, headers: { n: 1 } },
                                                (err) => (err ? rej(err) : res())));
const m = await ch.get(q, { noAck: true });
if (!m || m.content.toString() !== 'round' || m.properties.headers.n !== 1) fail('round trip: ' + JSON.stringify(m));

for (let i = 0; i < 5; i++) ch.sendToQueue(q, Buffer.from('p' + i));
await ch.waitForConfirms();
await ch.prefetch(2);
const held = [];
await ch.consume(q, (msg) => held.push(msg));
await new Promise((r) => setTimeout(r, 300));
const before = held.length;
ch.ack(held[0]);
await new Promise((r) => setTimeout(r, 300));
const after = held.length;
console.log(JSON.stringify({ round: true, before, after }));
if (before !== 2 || after !== 3) fail('prefetch');
await conn.close();
process.exit(0);

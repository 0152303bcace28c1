// sse_client.mjs URL N - a real EventSource client against the SSE door.
// Publishes N records over REST to two streams while an EventSource reads
// them with limit=5: the server ends every stream after 5 events and the
// client reconnects on its own, sending Last-Event-ID. Prints one JSON
// line: {"values":[...], "ids":[...], "reconnects":n}. Exit 0 when all N
// arrived, 1 on timeout.
import { EventSource } from 'eventsource';

const [base, nArg] = process.argv.slice(2);
const n = Number(nArg || 30);
const values = [];
const ids = [];
let opens = 0;

await fetch(`${base}/v1/streams`, { method: 'POST', body: JSON.stringify({ name: 'js', partitions: 3 }) });

const es = new EventSource(`${base}/v1/events?filter=%2B%2F%23&retry=100&limit=5`);
const done = new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`timeout with ${values.length} of ${n}`)), 60000);
  es.addEventListener('open', () => {
    opens++;
    if (opens === 1) publishAll().catch(reject);
  });
  es.addEventListener('record', (ev) => {
    values.push(JSON.parse(ev.data).value);
    ids.push(ev.lastEventId);
    if (values.length >= n) {
      clearTimeout(timer);
      // Give a duplicate, if any, the chance to show up.
      setTimeout(resolve, 300);
    }
  });
});

async function publishAll() {
  for (let i = 0; i < n; i++) {
    const subject = i % 4 ? `js/k${i}` : `jsother/k${i}`;
    const r = await fetch(`${base}/v1/publish/${subject}`, { method: 'POST', body: String(i) });
    if (r.status !== 201) throw new Error(`publish ${i}: ${r.status}`);
    if (i % 7 === 0) await new Promise((r) => setTimeout(r, 20));
  }
}

try {
  await done;
  es.close();
  console.log(JSON.stringify({ values, ids, reconnects: opens - 1 }));
  process.exit(0);
} catch (e) {
  es.close();
  console.log(JSON.stringify({ values, ids, reconnects: opens - 1, error: String(e) }));
  process.exit(1);
}

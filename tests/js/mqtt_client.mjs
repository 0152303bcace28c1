// mqtt_client.mjs <url> <protocol version 4|5> - the MQTT door with mqtt.js
// (npm `mqtt`), over TCP (mqtt://host:port) or WebSocket
// (ws://host:port/mqtt): connect, a retained message delivered on
// subscribe, publish and receive at QoS 0, 1 and 2, and (5.0) user
// properties and content type carried through. Prints one JSON line with
// what it saw; exits non-zero on failure.
import mqtt from 'mqtt';

const url = process.argv[2];
const version = Number(process.argv[3] || 5);
const tag = Math.random().toString(16).slice(2, 10);
const base = `js/${tag}`;
const fail = (m) => { console.error(m); process.exit(1); };
setTimeout(() => fail('timeout: ' + JSON.stringify(seen)), 20000);
const seen = { url, version, messages: [], retained: null };

const opts = (id) => ({
  clientId: `${id}-${tag}`,
  protocolVersion: version,
  clean: true,
  keepalive: 30,
  connectTimeout: 5000,
  reconnectPeriod: 0,
});

const pub = await mqtt.connectAsync(url, opts('pub'));
const sub = await mqtt.connectAsync(url, opts('sub'));
seen.transport = pub.stream.constructor.name;

// A retained message first: it must reach the later subscription.
await pub.publishAsync(`${base}/retained`, 'kept', { qos: 1, retain: true });

const want = version === 5 ? 4 : 3;
const done = new Promise((resolve) => {
  sub.on('message', (topic, payload, packet) => {
    const m = { topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain };
    if (packet.properties) {
      m.userProperties = packet.properties.userProperties;
      m.contentType = packet.properties.contentType;
    }
    if (topic.endsWith('/retained')) seen.retained = seen.retained || m;
    else seen.messages.push(m);
    if (seen.retained && seen.messages.length >= want) resolve();
  });
});

const granted = await sub.subscribeAsync({ [`${base}/q/#`]: { qos: 2 }, [`${base}/retained`]: { qos: 1 } });
seen.granted = granted.map((g) => g.qos);

for (const qos of [0, 1, 2])
  await pub.publishAsync(`${base}/q/${qos}`, `m${qos}`, { qos });
if (version === 5) {
  await pub.publishAsync(`${base}/q/props`, 'with properties', {
    qos: 1,
    properties: { userProperties: { a: '1', b: ['x', 'y'] }, contentType: 'text/plain' },
  });
}
await done;

// Clear the retained message (empty payload), as a good citizen.
await pub.publishAsync(`${base}/retained`, '', { qos: 1, retain: true });
await sub.endAsync();
await pub.endAsync();
console.log(JSON.stringify(seen));
process.exit(0);

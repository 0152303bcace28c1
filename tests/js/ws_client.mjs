// ws_client.mjs <http-url> - the WebSocket door with the `ws` npm client
// (the most used Node WebSocket library): handshake with the junction.v1
// subprotocol and permessage-deflate, subscribe from earliest, publish with
// ack, a binary envelope publish into a binary subscription, and a ping.
// Prints one JSON line with what it saw; exits non-zero on failure.
import WebSocket from 'ws';

const base = process.argv[2].replace(/^http/, 'ws');
const ws = new WebSocket(base + '/v1/ws', ['junction.v1'], { perMessageDeflate: true });
const seen = { events: [], binary: [] };
const fail = (m) => { console.error(m); process.exit(1); };
setTimeout(() => fail('timeout: ' + JSON.stringify(seen)), 20000);

function envPublish(subject, value, ref) {
  const s = Buffer.from(subject), r = Buffer.from(ref);
  const h = Buffer.alloc(8);
  h[0] = 1; h[1] = 1; h[2] = r.length; h[3] = 0;
  h.writeUInt16BE(s.length, 4); h.writeUInt16BE(0, 6);
  return Buffer.concat([h, r, s, value]);
}

ws.on('open', () => {
  seen.protocol = ws.protocol;
  seen.extensions = ws.extensions;
  ws.send(JSON.stringify({ op: 'subscribe', id: 'j', filter: 'node/#', from: 'earliest' }));
  ws.send(JSON.stringify({ op: 'subscribe', id: 'b', filter: 'nodebin/#', format: 'binary' }));
  ws.send(JSON.stringify({ op: 'publish', subject: 'node/1', value: 'x'.repeat(1000), ack: true, ref: 'r1' }));
  ws.send(envPublish('nodebin/1', Buffer.from([0, 1, 2, 255]), 'r2'));
  ws.ping('hi');
});
ws.on('pong', (d) => { seen.pong = d.toString(); check(); });
ws.on('message', (data, isBinary) => {
  if (isBinary) {
    const b = Buffer.from(data);
    const s = b[2], t = b[3], j = b.readUInt16BE(4), k = b.readUInt16BE(6);
    const off = 28 + s + t + j + k;
    seen.binary.push({ sub: b.subarray(28, 28 + s).toString(), value: [...b.subarray(off)] });
  } else {
    seen.events.push(JSON.parse(data.toString()));
  }
  check();
});
ws.on('error', (e) => fail('error: ' + e.message));

function check() {
  const types = seen.events.map((e) => e.type);
  const rec = seen.events.find((e) => e.type === 'record' && e.sub === 'j');
  const acks = seen.events.filter((e) => e.type === 'ack').map((e) => e.ref).sort();
  if (rec && acks.length === 2 && seen.binary.length === 1 && seen.pong !== undefined) {
    console.log(JSON.stringify({ protocol: seen.protocol, extensions: seen.extensions, types, acks,
                                 value_len: rec.value.length, binary: seen.binary[0], pong: seen.pong }));
    ws.close(1000);
    ws.on('close', (code) => process.exit(code === 1000 ? 0 : 2));
  }
}

// bench/ws_ref_server.js - a reference broadcast server on the npm `ws`
// package, for bench/ws_compare.sh: the same load generator
// (`junction bench ws`) drives it and Junction's /v1/ws side by side.
//
// It speaks the small part of docs/ws.md that the load generator uses:
//   - subprotocol junction.v1 (ws picks the first offered by default);
//   - text {"op":"subscribe","id","filter","format":"binary"|"json"} ->
//     {"type":"subscribed","id"}; filters are MQTT-style (+ and #);
//   - text {"op":"unsubscribe","id"}, {"op":"ping"};
//   - text {"op":"publish","subject","value"[,"ack"]} and the binary publish
//     envelope (type 0x01, flag 1 = ack) -> every matching subscription gets
//     the record: a binary record envelope (type 0x02, 28-byte header) or a
//     JSON record event; acks as {"type":"ack","ref",...}.
// Nothing is stored: a record is broadcast to the subscribers connected now
// (the idiomatic `ws` broadcast: the frame is built once per subscription id
// and sent to each client with ws.send). Offsets count per stream from 0.
//
// usage: NODE_PATH=tests/js/node_modules node bench/ws_ref_server.js PORT [HOST]
// Prints "listening PORT" on stdout once ready.
'use strict';

const { WebSocketServer } = require('ws');

const port = parseInt(process.argv[2] || '0', 10);
const host = process.argv[3] || '127.0.0.1';

const subs = new Set();           // {ws, id, filter, levels, binary}
const offsets = new Map();        // stream -> next offset

function matches(levels, subject) {
  const s = subject.split('/');
  for (let i = 0; i < levels.length; i++) {
    if (levels[i] === '#') return true;
    if (i >= s.length) return false;
    if (levels[i] !== '+' && levels[i] !== s[i]) return false;
  }
  return levels.length === s.length;
}

function binaryRecord(id, stream, subject, partition, offset, ts, value) {
  const idb = Buffer.from(id);
  const sb = Buffer.from(stream);
  const jb = Buffer.from(subject);
  const h = Buffer.alloc(28);
  h[0] = 0x02;
  h[1] = value ? 0 : 4;
  h[2] = idb.length;
  h[3] = sb.length;
  h.writeUInt16BE(jb.length, 4);
  h.writeUInt16BE(0, 6);
  h.writeUInt32BE(partition, 8);
  h.writeBigUInt64BE(BigInt(offset), 12);
  h.writeBigUInt64BE(BigInt(ts), 20);
  return Buffer.concat([h, idb, sb, jb, value || Buffer.alloc(0)]);
}

function jsonRecord(id, stream, subject, partition, offset, ts, value) {
  return JSON.stringify({
    type: 'record', sub: id, stream, partition, offset, subject, timestamp: ts, key: null, headers: {},
    value: value ? value.toString('base64') : null, encoding: 'base64',
  });
}

function publish(subject, value) {
  const stream = subject.split('/')[0];
  const offset = offsets.get(stream) || 0;
  offsets.set(stream, offset + 1);
  const ts = Date.now();
  const frames = new Map(); // one frame per (format, id), shared by its clients
  for (const sub of subs) {
    if (!matches(sub.levels, subject)) continue;
    const k = (sub.binary ? 'b:' : 'j:') + sub.id;
    let f = frames.get(k);
    if (!f) {
      f = sub.binary ? binaryRecord(sub.id, stream, subject, 0, offset, ts, value)
                     : jsonRecord(sub.id, stream, subject, 0, offset, ts, value);
      frames.set(k, f);
    }
    if (sub.ws.readyState === 1) sub.ws.send(f, { binary: sub.binary });
  }
  return { stream, partition: 0, offset };
}

function error(ws, code, message, ref) {
  const e = { type: 'error', code, message };
  if (ref) e.ref = ref;
  ws.send(JSON.stringify(e));
}

const wss = new WebSocketServer({ host, port, perMessageDeflate: false, maxPayload: 1 << 20 });

wss.on('connection', (ws) => {
  const mine = new Map(); // id -> sub
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      const p = data;
      if (p.length < 8 || p[0] !== 0x01) return error(ws, 'bad_request', 'malformed binary envelope');
      const flags = p[1];
      const r = p[2], j = p.readUInt16BE(4), k = p.readUInt16BE(6);
      if (8 + r + j + k > p.length) return error(ws, 'bad_request', 'malformed binary envelope');
      const ref = r ? p.toString('utf8', 8, 8 + r) : undefined;
      const subject = p.toString('utf8', 8 + r, 8 + r + j);
      const value = flags & 4 ? null : p.subarray(8 + r + j + k);
      const res = publish(subject, value);
      if (flags & 1) ws.send(JSON.stringify({ type: 'ack', ref, ...res }));
      return;
    }
    let c;
    try { c = JSON.parse(data.toString()); } catch (e) { return error(ws, 'invalid_json', 'not valid JSON'); }
    if (c.op === 'subscribe') {
      if (typeof c.id !== 'string' || typeof c.filter !== 'string') return error(ws, 'bad_request', 'id and filter', c.ref);
      if (mine.has(c.id)) return error(ws, 'already_exists', 'subscription exists', c.ref);
      const sub = { ws, id: c.id, filter: c.filter, levels: c.filter.split('/'), binary: c.format === 'binary' };
      mine.set(c.id, sub);
      subs.add(sub);
      ws.send(JSON.stringify({ type: 'subscribed', id: c.id, ...(c.ref ? { ref: c.ref } : {}) }));
    } else if (c.op === 'unsubscribe') {
      const sub = mine.get(c.id);
      if (!sub) return error(ws, 'not_found', 'no such subscription', c.ref);
      mine.delete(c.id);
      subs.delete(sub);
      ws.send(JSON.stringify({ type: 'unsubscribed', id: c.id }));
    } else if (c.op === 'publish') {
      if (typeof c.subject !== 'string') return error(ws, 'bad_request', 'subject', c.ref);
      const v = c.value === null || c.value === undefined ? null
        : Buffer.from(typeof c.value === 'string' ? c.value : JSON.stringify(c.value));
      const res = publish(c.subject, v);
      if (c.ack) ws.send(JSON.stringify({ type: 'ack', ref: c.ref, ...res }));
    } else if (c.op === 'ping') {
      ws.send(JSON.stringify({ type: 'pong' }));
    } else {
      error(ws, 'unknown_op', 'unknown op', c.ref);
    }
  });
  ws.on('close', () => { for (const sub of mine.values()) subs.delete(sub); mine.clear(); });
  ws.on('error', () => {});
});

wss.on('listening', () => {
  process.stdout.write(`listening ${wss.address().port}\n`);
});

function stop() { wss.close(); process.exit(0); }
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

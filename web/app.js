// app.js - the Junction console: polls /v1/streams, /v1/stats and
// /v1/groups, tails a filter over SSE (/v1/events) and publishes over REST.
// The Webhooks view (#webhooks) lists /v1/webhooks endpoints with their
// recent attempts, and retries, enables and disables through the same API.
// No framework and no build step; DOM is built with textContent only, so a
// record's bytes can never become markup.

import { LineChart, short } from './chart.js';

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const STATS_MS = 1000;
const TAIL_MAX = 500; // records kept on screen
const PALETTE = ['#4c6ef5', '#12b886', '#f59f00', '#e64980', '#7950f2', '#15aabf', '#fa5252', '#82c91e'];

// ---- auth: an optional API token, kept in this browser ----
let token = localStorage.getItem('junction.token') || '';
function headers(extra = {}) {
  return token ? { ...extra, Authorization: 'Bearer ' + token } : extra;
}
async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: headers(opts.headers || {}) });
  if (r.status === 401) {
    $('tokenbar').hidden = false;
    $('token-hint').textContent = 'This server needs credentials: paste an API token.';
    throw new Error('unauthorized');
  }
  return r;
}
async function getJSON(path) {
  const r = await api(path);
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

// ---- theme ----
function applyTheme(t) {
  if (t) document.documentElement.dataset.theme = t;
  else delete document.documentElement.dataset.theme;
  chart.draw();
}
$('theme-btn').addEventListener('click', () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === 'dark'
    : matchMedia('(prefers-color-scheme: dark)').matches;
  const next = dark ? 'light' : 'dark';
  localStorage.setItem('junction.theme', next);
  applyTheme(next);
});
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => chart.draw());

$('token-btn').addEventListener('click', () => ($('tokenbar').hidden = !$('tokenbar').hidden));
$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  token = $('token-input').value.trim();
  localStorage.setItem('junction.token', token);
  $('tokenbar').hidden = true;
  refresh();
});
$('token-clear').addEventListener('click', () => {
  token = '';
  localStorage.removeItem('junction.token');
  $('token-input').value = '';
});

// ---- formatting ----
function bytes(n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return (i ? n.toFixed(n >= 100 ? 0 : 1) : n) + ' ' + u[i];
}
const num = (n) => Number(n).toLocaleString('en-US');
function duration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `up ${s}s`;
  if (s < 3600) return `up ${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `up ${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `up ${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function setLive(ok, text) {
  $('live-dot').className = 'dot ' + (ok ? 'ok' : 'bad');
  $('live-text').textContent = text;
}

// ---- streams, with rates from the deltas of two polls ----
const prevStreams = new Map(); // name -> { t, records }
const openStreams = new Set();
async function pollStreams() {
  const t = performance.now();
  const { streams } = await getJSON('/v1/streams');
  const tbody = $('streams').tBodies[0];
  tbody.replaceChildren();
  let parts = 0;
  const rates = new Map();
  for (const s of streams) {
    const p = prevStreams.get(s.name);
    rates.set(s.name, p && t > p.t ? Math.max(0, ((s.records - p.records) * 1000) / (t - p.t)) : 0);
    prevStreams.set(s.name, { t, records: s.records });
  }
  const top = Math.max(1, ...rates.values());
  for (const s of streams) {
    parts += s.partitions;
    const tr = el('tr', 'stream' + (openStreams.has(s.name) ? ' open' : ''));
    tr.dataset.stream = s.name;
    tr.append(el('td', 'name', s.name), el('td', 'num', String(s.partitions)), el('td', 'num', num(s.records)),
      el('td', 'num', bytes(s.bytes)));
    const rate = rates.get(s.name);
    const rc = el('td', 'num');
    const bar = el('span', 'rate-bar');
    bar.style.width = `${Math.round((rate / top) * 48)}px`;
    rc.append(bar, document.createTextNode(`${short(rate)}/s`));
    tr.append(rc);
    tr.addEventListener('click', () => {
      openStreams.has(s.name) ? openStreams.delete(s.name) : openStreams.add(s.name);
      pollStreams().catch(() => {});
    });
    tbody.append(tr);
    if (openStreams.has(s.name))
      for (const pi of s.partition_info || []) {
        const r = el('tr', 'parts');
        const c = el('td', '', `partition ${pi.partition} · offsets ${num(pi.start_offset)}–${num(pi.end_offset)} · ${pi.segments} segment${pi.segments === 1 ? '' : 's'}`);
        c.colSpan = 3;
        r.append(c, el('td', 'num', bytes(pi.bytes)), el('td', 'num', ''));
        tbody.append(r);
      }
  }
  $('streams-empty').hidden = streams.length > 0;
  $('k-streams').textContent = num(streams.length);
  $('k-parts').textContent = `${num(parts)} partition${parts === 1 ? '' : 's'}`;
}

// ---- consumer groups ----
async function pollGroups() {
  const { groups } = await getJSON('/v1/groups');
  const tbody = $('groups').tBodies[0];
  const rows = await Promise.all(
    groups.slice(0, 50).map((g) => getJSON('/v1/groups/' + encodeURIComponent(g)).catch(() => null)),
  );
  tbody.replaceChildren();
  rows.forEach((g, i) => {
    if (!g) return;
    const lag = (g.offsets || []).reduce((a, o) => a + Math.max(0, o.lag || 0), 0);
    const tr = el('tr');
    tr.append(el('td', 'name', groups[i]), el('td', 'num', String((g.offsets || []).length)),
      el('td', 'num ' + (lag ? 'lag-n' : 'lag-0'), num(lag)));
    tbody.append(tr);
  });
  $('groups-empty').hidden = groups.length > 0;
}

// ---- doors and throughput, from /v1/stats counters ----
const chart = new LineChart($('chart'), { window: 120 });
const colors = new Map();
let prevStats = null;
function colorOf(name) {
  if (!colors.has(name)) colors.set(name, PALETTE[colors.size % PALETTE.length]);
  return colors.get(name);
}
async function pollStats() {
  const st = await getJSON('/v1/stats');
  setLive(true, 'connected');
  $('uptime').textContent = duration(st.uptime_ms);
  const dt = prevStats ? (st.time_ms - prevStats.time_ms) / 1000 : 0;
  const prevDoor = new Map((prevStats?.doors || []).map((d) => [d.door, d]));
  const rate = (a, b) => (dt > 0 && b !== undefined ? Math.max(0, (a - b) / dt) : 0);
  const tbody = $('doors').tBodies[0];
  tbody.replaceChildren();
  let conns = 0, out = 0;
  const legend = $('legend');
  legend.replaceChildren();
  const pubRate = rate(st.published.records, prevStats?.published.records);
  if (prevStats) chart.push('published', colorOf('published'), st.time_ms, pubRate);
  const lg = el('span', '', 'published');
  lg.style.setProperty('--c', colorOf('published'));
  legend.append(lg);
  for (const d of st.doors) {
    const p = prevDoor.get(d.door);
    const rin = rate(d.messages_in, p?.messages_in), rout = rate(d.messages_out, p?.messages_out);
    conns += d.door === 'http' ? 0 : d.connections;
    out += d.door === 'http' ? 0 : rout;
    const tr = el('tr');
    const name = el('td', 'name');
    const sw = el('span', 'rate-bar');
    sw.style.width = '10px';
    sw.style.background = colorOf(d.door);
    name.append(sw, document.createTextNode(d.door));
    tr.append(name, el('td', 'num', num(d.connections)), el('td', 'num', short(rin)), el('td', 'num', short(rout)));
    tbody.append(tr);
    if (prevStats) chart.push(d.door, colorOf(d.door), st.time_ms, rin + rout);
    const l = el('span', '', d.door);
    l.style.setProperty('--c', colorOf(d.door));
    legend.append(l);
  }
  const http = st.doors.find((d) => d.door === 'http');
  $('k-conns').textContent = num(http ? http.connections : conns);
  $('k-doors').textContent = st.doors.map((d) => `${d.door} ${d.connections}`).join(' · ');
  $('k-rate').textContent = `${short(pubRate)}/s`;
  $('k-records').textContent = `${num(st.published.records)} records · ${bytes(st.published.bytes)}`;
  $('k-out').textContent = `${short(out)}/s`;
  prevStats = st;
  chart.draw();
}

async function loadVersion() {
  const h = await getJSON('/v1/health');
  $('version').textContent = 'v' + h.version;
}

function refresh() {
  pollStreams().catch(fail);
  pollGroups().catch(fail);
}
function fail(e) {
  if (String(e.message) !== 'unauthorized') setLive(false, 'unreachable');
}

// ---- live tail over SSE ----
// Pausing closes the EventSource; resuming reopens it with the last event
// id, so the server sends exactly what came after it (docs/sse.md).
const tail = { es: null, lastId: '', count: 0, filter: '', from: 'live', paused: false };

function tailState(text, cls) {
  const b = $('tail-state');
  b.textContent = text;
  b.className = 'badge ' + (cls || '');
}
function openTail() {
  const q = new URLSearchParams({ filter: tail.filter, from: tail.from });
  if (tail.lastId) q.set('last_event_id', tail.lastId);
  if (token) q.set('token', token);
  const es = new EventSource('/v1/events?' + q.toString());
  tail.es = es;
  es.addEventListener('open', () => tailState('live', 'on'));
  es.addEventListener('record', (ev) => {
    tail.lastId = ev.lastEventId;
    addRecord(JSON.parse(ev.data));
  });
  es.addEventListener('error', () => {
    if (es.readyState === EventSource.CLOSED) tailState('closed', '');
    else tailState('reconnecting', 'paused');
  });
}
function closeTail() {
  if (tail.es) tail.es.close();
  tail.es = null;
}
$('tail-form').addEventListener('submit', (e) => {
  e.preventDefault();
  closeTail();
  tail.filter = $('tail-filter').value.trim() || '#';
  tail.from = $('tail-from').value;
  tail.lastId = '';
  tail.paused = false;
  $('tail-pause').disabled = false;
  $('tail-pause').textContent = 'Pause';
  tailState('connecting', '');
  openTail();
});
$('tail-pause').addEventListener('click', () => {
  if (!tail.filter) return;
  tail.paused = !tail.paused;
  if (tail.paused) {
    closeTail();
    tailState('paused', 'paused');
    $('tail-pause').textContent = 'Resume';
  } else {
    $('tail-pause').textContent = 'Pause';
    openTail();
  }
});
$('tail-clear').addEventListener('click', () => {
  $('records').replaceChildren();
  tail.count = 0;
  $('tail-count').textContent = '';
  $('records-empty').hidden = false;
});
$('tail-pretty').addEventListener('change', () => {
  for (const li of $('records').children) renderValue(li, li._rec);
});

function decodeValue(rec) {
  if (rec.value === null) return { text: '(tombstone)', json: undefined };
  if (rec.encoding === 'base64') return { text: `base64: ${rec.value}`, json: undefined };
  try {
    return { text: rec.value, json: JSON.parse(rec.value) };
  } catch {
    return { text: rec.value, json: undefined };
  }
}

// Pretty JSON with coloured tokens, built as text nodes.
function jsonNodes(v, indent, out) {
  const pad = '  '.repeat(indent);
  if (v === null || typeof v === 'boolean') out.push(el('span', 'j-lit', String(v)));
  else if (typeof v === 'number') out.push(el('span', 'j-num', String(v)));
  else if (typeof v === 'string') out.push(el('span', 'j-str', JSON.stringify(v)));
  else if (Array.isArray(v)) {
    if (!v.length) return out.push(document.createTextNode('[]'));
    out.push(document.createTextNode('[\n'));
    v.forEach((x, i) => {
      out.push(document.createTextNode(pad + '  '));
      jsonNodes(x, indent + 1, out);
      out.push(document.createTextNode(i < v.length - 1 ? ',\n' : '\n'));
    });
    out.push(document.createTextNode(pad + ']'));
  } else {
    const keys = Object.keys(v);
    if (!keys.length) return out.push(document.createTextNode('{}'));
    out.push(document.createTextNode('{\n'));
    keys.forEach((k, i) => {
      out.push(document.createTextNode(pad + '  '), el('span', 'j-key', JSON.stringify(k)), document.createTextNode(': '));
      jsonNodes(v[k], indent + 1, out);
      out.push(document.createTextNode(i < keys.length - 1 ? ',\n' : '\n'));
    });
    out.push(document.createTextNode(pad + '}'));
  }
  return out;
}

function renderValue(li, rec) {
  const pre = li.querySelector('.rec-value');
  const { text, json } = decodeValue(rec);
  if (json !== undefined && typeof json === 'object' && $('tail-pretty').checked) pre.replaceChildren(...jsonNodes(json, 0, []));
  else pre.textContent = text;
}

function addRecord(rec) {
  const li = el('li');
  li._rec = rec;
  li.dataset.offset = `${rec.stream}/${rec.partition}/${rec.offset}`;
  const head = el('div', 'rec-head');
  head.append(el('span', 'rec-subject', rec.subject), el('span', 'rec-pos', `${rec.stream}/${rec.partition}/${rec.offset}`));
  if (rec.key !== null && rec.key !== undefined) head.append(el('span', 'rec-key', `key ${rec.key}`));
  const ts = new Date(rec.timestamp);
  head.append(el('span', 'rec-time', ts.toLocaleTimeString('en-GB', { hour12: false }) + '.' + String(ts.getMilliseconds()).padStart(3, '0')));
  li.append(head, el('pre', 'rec-value'));
  renderValue(li, rec);
  const list = $('records');
  list.prepend(li);
  while (list.children.length > TAIL_MAX) list.lastElementChild.remove();
  tail.count++;
  $('tail-count').textContent = `${num(tail.count)} received`;
  $('records-empty').hidden = true;
}

// ---- publish ----
$('pub-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const res = $('pub-result');
  const subject = $('pub-subject').value.trim();
  const q = $('pub-key').value ? '?key=' + encodeURIComponent($('pub-key').value) : '';
  const path = '/v1/publish/' + subject.split('/').map(encodeURIComponent).join('/') + q;
  $('pub-send').disabled = true;
  try {
    const r = await api(path, { method: 'POST', headers: { 'Content-Type': $('pub-ctype').value }, body: $('pub-body').value });
    const j = await r.json();
    if (!r.ok) throw new Error(j.message || r.status);
    res.className = 'result ok';
    res.textContent = `✓ ${j.stream}/${j.partition}/${j.offset}`;
    refresh();
  } catch (err) {
    res.className = 'result err';
    res.textContent = '✗ ' + err.message;
  } finally {
    $('pub-send').disabled = false;
  }
});

// ---- webhooks view: endpoints, their attempts, retry / enable / disable ----
// Polled only while the view is shown. Attempt records come from
// GET /v1/webhooks/{id}/attempts (docs/webhooks.md): an aggregated record
// of successes has a count and every webhook_id.
const ATTEMPTS_SHOWN = 50;
const wh = { selected: '', timer: 0 };

function whTime(ms) {
  const t = new Date(ms);
  return t.toLocaleDateString('en-CA') + ' ' + t.toLocaleTimeString('en-GB', { hour12: false }) + '.' +
    String(t.getMilliseconds()).padStart(3, '0');
}
function whSay(ok, text) {
  const r = $('wh-result');
  r.className = 'result ' + (ok ? 'ok' : 'err');
  r.textContent = (ok ? '✓ ' : '✗ ') + text;
}
// Sends one action to the webhooks API and reports its outcome.
async function whAction(path, method, body, done) {
  try {
    const r = await api(path, { method, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.message || String(r.status));
    whSay(true, done(j));
  } catch (err) {
    whSay(false, err.message);
  }
  pollWebhooks().catch(whFail);
}
function whButton(text, title, onClick) {
  const b = el('button', 'ghost small', text);
  b.type = 'button';
  b.title = title;
  b.addEventListener('click', (e) => {
    e.stopPropagation();
    onClick();
  });
  return b;
}
function whState(ep) {
  const st = ep.status || {};
  const td = el('td', 'wh-state');
  if (ep.disabled) {
    td.append(el('span', 'badge paused', 'disabled'));
    if (ep.disabled_reason) td.append(el('div', 'hint', ep.disabled_reason));
  } else if (st.failing_since) {
    td.append(el('span', 'badge bad', 'failing'));
    td.append(el('div', 'hint', 'since ' + whTime(st.failing_since)));
  } else {
    td.append(el('span', 'badge on', 'enabled'));
  }
  return td;
}
async function pollWebhooks() {
  const { webhooks } = await getJSON('/v1/webhooks');
  const tbody = $('webhooks').tBodies[0];
  tbody.replaceChildren();
  if (!webhooks.some((e) => e.id === wh.selected)) wh.selected = webhooks.length ? webhooks[0].id : '';
  for (const ep of webhooks) {
    const st = ep.status || {};
    const tr = el('tr', 'endpoint' + (ep.id === wh.selected ? ' open' : ''));
    tr.dataset.id = ep.id;
    const name = el('td', 'name');
    name.append(el('div', 'wh-id', ep.id), el('div', 'wh-url', ep.url));
    if (ep.description) name.append(el('div', 'hint', ep.description));
    const actions = el('td', 'wh-actions');
    actions.append(ep.disabled
      ? whButton('Enable', 'PATCH {"disabled": false}: resume from its progress', () =>
        whAction('/v1/webhooks/' + encodeURIComponent(ep.id), 'PATCH', { disabled: false }, () => `${ep.id} enabled`))
      : whButton('Disable', 'PATCH {"disabled": true}', () =>
        whAction('/v1/webhooks/' + encodeURIComponent(ep.id), 'PATCH', { disabled: true }, () => `${ep.id} disabled`)));
    tr.append(name, el('td', 'mono', ep.filter), whState(ep), el('td', 'num', num(st.delivered || 0)),
      el('td', 'num' + (st.failed_attempts ? ' lag-n' : ''), num(st.failed_attempts || 0)),
      el('td', 'num' + (st.dead_lettered ? ' lag-n' : ''), num(st.dead_lettered || 0)),
      el('td', 'num', num(st.pending || 0)), el('td', 'num', num(st.lag || 0)), actions);
    tr.addEventListener('click', () => {
      wh.selected = ep.id;
      pollWebhooks().catch(whFail);
    });
    tbody.append(tr);
  }
  $('webhooks-empty').hidden = webhooks.length > 0;
  await pollAttempts();
}
async function pollAttempts() {
  const panel = $('attempts-panel');
  if (!wh.selected) {
    panel.hidden = true;
    return;
  }
  const id = wh.selected;
  const { attempts } = await getJSON(`/v1/webhooks/${encodeURIComponent(id)}/attempts?limit=${ATTEMPTS_SHOWN}`);
  if (id !== wh.selected) return; // another endpoint was picked meanwhile
  panel.hidden = false;
  $('attempts-ep').textContent = id;
  const tbody = $('attempts').tBodies[0];
  tbody.replaceChildren();
  for (const a of attempts) {
    const count = a.count || 1;
    const tr = el('tr', 'attempt ' + (a.result || ''));
    tr.dataset.seq = String(a.seq);
    const msg = el('td', 'mono', a.webhook_id);
    if (count > 1) {
      msg.append(el('div', 'hint', `+ ${num(count - 1)} more delivered together`));
      msg.title = (a.webhook_ids || []).join('\n');
    }
    if (a.manual) msg.append(el('div', 'hint', 'manual'));
    const lat = count > 1 ? `${a.latency_ms.toFixed(1)} ms avg · ${a.latency_ms_max.toFixed(1)} max`
      : `${Number(a.latency_ms).toFixed(1)} ms`;
    const res = el('td', '');
    res.append(el('span', 'badge ' + (a.result === 'delivered' ? 'on' : a.result === 'retry' ? 'paused' : 'bad'),
      a.result));
    if (a.result === 'retry' && a.next_attempt_in_ms >= 0)
      res.append(el('div', 'hint', `retry ${(a.next_attempt_in_ms / 1000).toFixed(1)} s later`));
    if (a.redirects) {
      const r = el('div', 'hint', `${a.redirects} redirect${a.redirects === 1 ? '' : 's'}`);
      if (a.url) r.title = a.url;
      res.append(r);
    }
    const detail = el('td', 'wh-detail');
    if (a.error) detail.append(el('div', 'wh-error', a.error));
    if (a.response) detail.append(el('pre', 'wh-resp', a.response));
    const act = el('td', 'wh-actions');
    if (count === 1 && a.webhook_id)
      act.append(whButton('Retry', 'POST /v1/webhooks/{id}/retry: send this message again', () =>
        whAction(`/v1/webhooks/${encodeURIComponent(id)}/retry`, 'POST', { message_id: a.webhook_id },
          (j) => `${a.webhook_id} queued (${j.queued ?? 1})`)));
    tr.append(el('td', 'mono nowrap', whTime(a.time)), msg, el('td', 'num', String(a.attempt)),
      el('td', 'num' + (a.status >= 200 && a.status < 300 ? '' : ' lag-n'), a.status ? String(a.status) : '—'),
      el('td', 'num nowrap', lat), res, detail, act);
    tbody.append(tr);
  }
  $('attempts-empty').hidden = attempts.length > 0;
}
function whFail(e) {
  if (String(e.message) === 'unauthorized') return;
  whSay(false, 'cannot read /v1/webhooks: ' + e.message + ' (an admin token is needed)');
}

// ---- views: the overview and the webhooks view, by the URL's hash ----
function showView() {
  const view = location.hash === '#webhooks' ? 'webhooks' : 'overview';
  for (const m of document.querySelectorAll('main[data-view]')) m.hidden = m.dataset.view !== view;
  for (const t of document.querySelectorAll('.tab')) t.classList.toggle('active', t.dataset.view === view);
  clearInterval(wh.timer);
  wh.timer = 0;
  if (view === 'webhooks') {
    pollWebhooks().catch(whFail);
    wh.timer = setInterval(() => pollWebhooks().catch(whFail), POLL_MS);
  } else {
    chart.draw(); // its canvas had no size while hidden
  }
}
window.addEventListener('hashchange', showView);

// ---- start ----
applyTheme(localStorage.getItem('junction.theme') || '');
$('token-input').value = token;
loadVersion().catch(fail);
refresh();
pollStats().catch(fail);
setInterval(refresh, POLL_MS);
setInterval(() => pollStats().catch(fail), STATS_MS);
// Start tailing everything from now: the console opens on a live view.
$('tail-form').requestSubmit();
showView();

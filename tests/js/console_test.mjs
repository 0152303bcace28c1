// console_test.mjs URL SCREENSHOT - the web console in headless Chromium
// (Debian's /usr/bin/chromium) driven by playwright-core. Opens the
// console, waits for the live tail, publishes a record over REST and waits
// for it to appear in the tail, checks that the streams table and the door
// table filled, saves a screenshot (light, and a -dark variant) and fails
// on any console error or page error. Then the Webhooks view: one endpoint
// delivering to a receiver run here on loopback (the server must allow
// 127.0.0.1 in webhooks.allow_hosts), its attempts table, Retry, Disable
// and Enable (screenshot -webhooks). Prints one JSON line.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, shot] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'junction-chromium-'));
const errors = [];
let browser;
let receiver;
try {
  // A fresh --user-data-dir: playwright passes |profile| as that flag.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1440, height: 1100 },
    colorScheme: 'light',
  });
  const page = browser.pages()[0] || (await browser.newPage());
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => {
    // The EventSource is cut when the page closes: that is not an error.
    if (!r.url().includes('/v1/events')) errors.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`);
  });

  // Some history so that the tables and the chart have something to show.
  const pub = async (subject, body, ctype = 'application/json') => {
    const r = await fetch(`${base}/v1/publish/${subject}`, { method: 'POST', body, headers: { 'Content-Type': ctype } });
    if (r.status !== 201) throw new Error(`publish ${subject}: ${r.status}`);
    return r.json();
  };
  await fetch(`${base}/v1/streams`, { method: 'POST', body: JSON.stringify({ name: 'sensors', partitions: 4 }) });
  for (let i = 0; i < 40; i++) await pub(`sensors/room${i % 5}/temp`, JSON.stringify({ c: 20 + (i % 7) / 2 }));
  await pub('orders/eu/1001', JSON.stringify({ id: 1001, total: 99.5 }));
  await fetch(`${base}/v1/groups/billing/offsets`, {
    method: 'POST', body: JSON.stringify({ offsets: [{ stream: 'sensors', partition: 0, offset: 3 }] }),
  });

  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForFunction(() => document.getElementById('tail-state').textContent === 'live', null, { timeout: 15000 });
  await page.waitForSelector('#streams tbody tr.stream');

  // Publish through the REST door; the record must reach the live tail.
  const marker = `browser-${Date.now()}`;
  const res = await pub('sensors/kitchen/temp', JSON.stringify({ c: 21.5, marker, tags: ['a', 'b'], ok: true }));
  const pos = `${res.stream}/${res.partition}/${res.offset}`;
  await page.waitForSelector(`#records li[data-offset="${pos}"]`, { timeout: 15000 });
  const text = await page.textContent(`#records li[data-offset="${pos}"]`);
  if (!text.includes(marker) || !text.includes('sensors/kitchen/temp')) throw new Error('record shown wrongly: ' + text);

  // Publish from the console's own form too.
  await page.fill('#pub-subject', 'orders/eu/1002');
  await page.fill('#pub-body', JSON.stringify({ id: 1002, from: 'form' }));
  await page.click('#pub-send');
  await page.waitForFunction(() => document.getElementById('pub-result').textContent.startsWith('✓'), null, { timeout: 10000 });
  await page.waitForFunction(() => [...document.querySelectorAll('#records li .rec-subject')].some((e) => e.textContent === 'orders/eu/1002'), null, { timeout: 10000 });

  // Let the stats poll a few times so the chart has lines, with traffic.
  for (let i = 0; i < 12; i++) {
    await pub(`sensors/room${i % 3}/temp`, JSON.stringify({ c: 19 + i / 4 }));
    await new Promise((r) => setTimeout(r, 250));
  }
  await page.waitForFunction(() => document.querySelectorAll('#doors tbody tr').length >= 2, null, { timeout: 10000 });
  await page.waitForFunction(() => document.querySelectorAll('#groups tbody tr').length >= 1, null, { timeout: 10000 });
  await page.click('#streams tbody tr.stream[data-stream="sensors"]');
  await page.waitForSelector('#streams tbody tr.parts');
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: shot, fullPage: true });

  // Pause, publish, resume: the record published while paused arrives once.
  await page.click('#tail-pause');
  await page.waitForFunction(() => document.getElementById('tail-state').textContent === 'paused');
  const res2 = await pub('sensors/hall/temp', JSON.stringify({ c: 18, while: 'paused' }));
  const pos2 = `${res2.stream}/${res2.partition}/${res2.offset}`;
  await page.click('#tail-pause');
  await page.waitForSelector(`#records li[data-offset="${pos2}"]`, { timeout: 15000 });
  const copies = await page.$$eval(`#records li[data-offset="${pos2}"]`, (l) => l.length);
  if (copies !== 1) throw new Error(`record after resume shown ${copies} times`);

  // Dark theme screenshot, via the toggle.
  await page.click('#theme-btn');
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(300);
  await page.screenshot({ path: shot.replace(/\.png$/, '-dark.png'), fullPage: true });

  // ---- Webhooks view ----
  // The receiver accepts every message but those whose body says "fail".
  const got = [];
  receiver = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      got.push(body);
      if (body.includes('fail')) {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end('receiver says no');
      } else {
        res.writeHead(204);
        res.end();
      }
    });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
  const rxUrl = `http://127.0.0.1:${receiver.address().port}/hook`;
  const cr = await fetch(`${base}/v1/webhooks`, {
    method: 'POST',
    body: JSON.stringify({ url: rxUrl, filter: 'hooks/#', retry_schedule: [600000], description: 'console test' }),
  });
  if (cr.status !== 201) throw new Error('create webhook: ' + cr.status + ' ' + (await cr.text()));
  const ep = await cr.json();
  await pub('hooks/ok', JSON.stringify({ n: 1 }));
  await pub('hooks/bad', JSON.stringify({ n: 2, fail: true }));
  await page.click('#theme-btn'); // back to light
  await page.click('#tab-webhooks');
  await page.waitForSelector(`#webhooks tbody tr.endpoint[data-id="${ep.id}"]`, { timeout: 10000 });
  // Both attempts in the table: the delivery and the failure with its
  // status, response excerpt and error.
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#attempts tbody tr.attempt')];
    return rows.some((r) => r.classList.contains('delivered')) && rows.some((r) => r.classList.contains('retry'));
  }, null, { timeout: 15000 });
  const failRow = await page.textContent('#attempts tbody tr.attempt.retry');
  for (const want of ['500', 'receiver says no', 'HTTP 500', 'retry', 'msg_'])
    if (!failRow.includes(want)) throw new Error(`attempt row lacks ${want}: ${failRow}`);
  const okRow = await page.textContent('#attempts tbody tr.attempt.delivered');
  if (!okRow.includes('delivered') || !okRow.includes('ms')) throw new Error('delivered row: ' + okRow);
  const epRow = await page.textContent(`#webhooks tbody tr.endpoint[data-id="${ep.id}"]`);
  if (!epRow.includes(rxUrl) || !epRow.includes('hooks/#') || !epRow.includes('failing'))
    throw new Error('endpoint row: ' + epRow);

  // Retry the failed message by hand: a manual attempt is recorded.
  await page.click('#attempts tbody tr.attempt.retry button');
  await page.waitForFunction(() => document.getElementById('wh-result').textContent.startsWith('✓'), null, { timeout: 10000 });
  await page.waitForFunction(() => [...document.querySelectorAll('#attempts tbody tr.attempt .hint')]
    .some((e) => e.textContent === 'manual'), null, { timeout: 15000 });
  if (got.filter((b) => b.includes('fail')).length < 2) throw new Error('manual retry not received: ' + got);
  await page.waitForTimeout(300);
  await page.screenshot({ path: shot.replace(/\.png$/, '-webhooks.png'), fullPage: true });

  // Disable, then enable again, from the endpoint row.
  const epSel = `#webhooks tbody tr.endpoint[data-id="${ep.id}"]`;
  await page.click(`${epSel} button`);
  await page.waitForFunction((s) => document.querySelector(s)?.textContent.includes('disabled'), epSel, { timeout: 10000 });
  const stored = await (await fetch(`${base}/v1/webhooks/${ep.id}`)).json();
  if (stored.disabled !== true) throw new Error('not disabled: ' + JSON.stringify(stored));
  await page.click(`${epSel} button`);
  await page.waitForFunction((s) => document.querySelector(s)?.textContent.includes('Disable'), epSel, { timeout: 10000 });
  const again = await (await fetch(`${base}/v1/webhooks/${ep.id}`)).json();
  if (again.disabled !== false) throw new Error('not enabled: ' + JSON.stringify(again));
  // Back to the overview: it is still live.
  await page.click('#tab-overview');
  await page.waitForSelector('#streams tbody tr.stream');

  if (errors.length) throw new Error(errors.join('\n'));
  console.log(JSON.stringify({ ok: true, record: pos, screenshot: shot }));
  receiver.close();
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e), errors }));
  if (browser) await browser.close().catch(() => {});
  if (receiver) receiver.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(1);
}

/**
 * The /dashboard page in a real browser: Debian's Chromium (scripts/chromium installs it) driven
 * by playwright-core, against runService with real consumers on the memory broker and on
 * RabbitMQ. Every number is read from the page's DOM and compared with what `status()` reports.
 * Screenshots go to $SLUICE_SCREENSHOTS (`SLUICE_SCREENSHOTS=docs/images` refreshes the ones in
 * the docs), else to a temporary folder.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import { rabbitConsumer } from '../../adapters/rabbitmq/index.js';
import { CircuitBreaker, prometheusMetrics, runService, WorkerPool, type Consumer, type Service } from '../../src/index.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { until } from '../helpers/wait.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const shots = resolve(root, process.env.SLUICE_SCREENSHOTS ?? join(tmpdir(), 'sluice-dashboard-screenshots'));

let browser: Browser | undefined;
/** The browser, launched once; without Chromium each browser test fails (never skips) naming scripts/chromium. */
async function theBrowser(): Promise<Browser> {
  if (browser) return browser;
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM}: run scripts/chromium (it installs Debian's chromium with apt-get)` +
        (process.env.CI === 'true' ? '; CI runs it from .ci/run before the tests' : ''),
    );
  }
  mkdirSync(shots, { recursive: true });
  // The machine's network is closed: no background fetches, no component updates.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return browser;
}
afterAll(async () => {
  await browser?.close();
});

type Fields = Record<string, string>;

// What the page.evaluate callback below uses of the browser (the project compiles without the DOM lib).
interface DomNode {
  className: string;
  textContent: string | null;
  getAttribute(name: string): string | null;
  querySelectorAll(selector: string): Iterable<DomNode>;
}
declare const document: { querySelector(selector: string): DomNode | null };
declare const CSS: { escape(text: string): string };

/** Opens the dashboard, collecting every console error, page error and failed request. */
async function open(url: string): Promise<{ page: Page; problems: string[] }> {
  const page = await (await theBrowser()).newPage({ viewport: { width: 1280, height: 900 } });
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  await page.goto(url);
  return { page, problems };
}

/** Every `data-field` of one card (consumer, pool or breaker row), as the page shows it. */
function read(page: Page, attr: 'data-consumer' | 'data-pool' | 'data-breaker', name: string): Promise<Fields | undefined> {
  return page.evaluate(
    ([attr, name]) => {
      const card = document.querySelector(`[${attr}="${CSS.escape(name)}"]`);
      if (!card) return undefined;
      const out: Record<string, string> = { className: card.className };
      for (const n of card.querySelectorAll('[data-field]')) out[n.getAttribute('data-field')!] = n.textContent ?? '';
      return out;
    },
    [attr, name] as const,
  );
}

/** Waits (polling the DOM) until the card satisfies `ok`; returns what it showed then. */
async function untilShown(page: Page, attr: 'data-consumer' | 'data-pool' | 'data-breaker', name: string, ok: (f: Fields) => boolean, what: string): Promise<Fields> {
  let shown: Fields | undefined;
  try {
    await until(() => shown !== undefined && ok(shown), `the page shows ${what}`, 15_000, async () => {
      shown = await read(page, attr, name);
    });
  } catch (error) {
    throw new Error(`${(error as Error).message}; it showed ${JSON.stringify(shown)}`);
  }
  return shown!;
}

const COUNTERS = ['handled', 'retried', 'deadLettered', 'givenBack', 'failed', 'overloaded', 'gated'] as const;

/** The consumer card's numbers are status()'s: waits until the page has a sample taken after the counts settled. */
async function expectConsumerMatches(page: Page, consumer: Consumer): Promise<Fields> {
  const s = consumer.status();
  const shown = await untilShown(page, 'data-consumer', consumer.name, (f) => COUNTERS.every((k) => f[k] === String(s[k])), `${consumer.name}'s counters`);
  for (const k of COUNTERS) expect(shown[k], k).toBe(String(s[k]));
  expect(shown.state).toBe(s.state);
  expect(shown.paused).toBe(s.paused ? 'paused' : 'consuming');
  expect(shown.pausedBy).toBe(s.pausedBy.length ? s.pausedBy.join(', ') : '–');
  expect(shown.inFlight).toBe(String(s.inFlight));
  return shown;
}

async function expectPoolMatches(page: Page, pool: WorkerPool, name: string): Promise<Fields> {
  const s = pool.status();
  const fields = ['limit', 'active', 'pending', 'held', 'maxConcurrency', 'maxQueueSize'] as const;
  const shown = await untilShown(page, 'data-pool', name, (f) => fields.every((k) => f[k] === String(s[k])), `pool ${name} as status() reports it`);
  for (const k of fields) expect(shown[k], k).toBe(String(s[k]));
  return shown;
}

const base = (service: Service) => `http://127.0.0.1:${service.httpAddress!.port}`;

describe('the dashboard in a real browser (Chromium via playwright-core)', () => {
  it('is off unless enabled', async () => {
    const consumer = memoryConsumer({ broker: new MemoryBroker(), queue: 'off', pool: { maxConcurrency: 1, maxQueueSize: 1 }, handler: async () => {} });
    const service = await runService({ consumers: [consumer], signals: [], exitOnSignal: false, http: { port: 0 } });
    try {
      expect(service.dashboard).toBeUndefined();
      expect((await fetch(`${base(service)}/dashboard`)).status).toBe(404);
      expect((await fetch(`${base(service)}/dashboard/events`)).status).toBe(404);
    } finally {
      await service.stop();
    }
  });

  it('memory broker: shows status(), follows messages, a paused consumer, an open breaker and redacted errors; costs nothing once closed', async () => {
    const broker = new MemoryBroker();
    const pool = new WorkerPool({ name: 'orders', maxConcurrency: 2, maxQueueSize: 6 });
    const breaker = new CircuitBreaker({ name: 'inventory', minCalls: 1000, openMs: 60_000, halfOpenProbes: 1 });
    let holding = false;
    const held: (() => void)[] = [];
    const consumer = memoryConsumer({
      broker,
      queue: 'orders',
      pool,
      flow: { gates: [breaker] },
      retry: { maxAttempts: 2, backoff: { initialMs: 1, jitter: 0 } },
      handler: async (m) => {
        const order = m.json<{ i: number; fail?: boolean }>();
        if (order.fail) throw new Error(`inventory at amqp://shop:s3cret@inventory.internal:5672/ refused order ${order.i}`);
        if (holding) await new Promise<void>((r) => held.push(r));
        await new Promise((r) => setTimeout(r, 1 + (order.i % 4)));
      },
    });
    const service = await runService({ consumers: [consumer], pools: [pool], signals: [], exitOnSignal: false, http: { port: 0, dashboard: { breakers: [breaker] } } });
    expect(service.httpAddress!.address).toBe('127.0.0.1'); // the same bind address as /healthz and /metrics
    let seq = 0;
    const publish = (n: number, extra: object = {}) => {
      for (let k = 0; k < n; k++, seq++) broker.publishJson('orders', { i: seq, ...extra }, { id: `o-${seq}` });
    };
    try {
      // Nobody watching: no listener of the dashboard's on the consumer (runService's logger has its
      // own on 'failed'), so no per-message work for it: not even the timing of each handler.
      publish(10);
      publish(1, { fail: true });
      await until(() => consumer.status().handled === 10 && consumer.status().deadLettered === 1, 'the first burst settled');
      const failedListeners = consumer.listenerCount('failed');
      expect(consumer.listenerCount('handled')).toBe(0);
      expect(service.dashboard!.watchers).toBe(0);

      const { page, problems } = await open(`${base(service)}/dashboard`);
      await untilShown(page, 'data-consumer', consumer.name, (f) => f.handled === '10', 'the first burst');
      await expectConsumerMatches(page, consumer);
      await expectPoolMatches(page, pool, 'orders');
      expect(service.dashboard!.watchers).toBe(1);
      expect(consumer.listenerCount('handled')).toBe(1);
      expect(consumer.listenerCount('failed')).toBe(failedListeners + 1);
      expect(await page.locator('header.top [data-field="connection"]').textContent()).toBe('live');

      // Held handlers: the pool's numbers while it is full, then the counts after the flow.
      holding = true;
      publish(20);
      await until(() => pool.status().active === 2 && pool.status().pending === 6, 'the pool full: 2 running, 6 waiting');
      const full = await expectPoolMatches(page, pool, 'orders');
      expect(full.runningText).toBe('2 / 2 of 2');
      expect(full.capacityText).toBe('8 of 8');
      await page.screenshot({ path: join(shots, 'dashboard-memory.png'), fullPage: true });
      holding = false;
      held.splice(0).forEach((release) => release());
      await until(() => consumer.status().handled === 30, 'the second burst handled');
      const flowed = await expectConsumerMatches(page, consumer);
      expect(flowed.handled).toBe('30');
      // Latency percentiles of what ran while the page watched.
      await untilShown(page, 'data-consumer', consumer.name, (f) => Number(f.latencySamples) >= 20 && Number.isFinite(Number(f.p99)), 'latency percentiles');
      const lat = (await read(page, 'data-consumer', consumer.name))!;
      expect(Number(lat.p50)).toBeLessThanOrEqual(Number(lat.p95));
      expect(Number(lat.p95)).toBeLessThanOrEqual(Number(lat.p99));
      // A rate once two samples saw messages flow (drawn in the chart as well).
      publish(40);
      await untilShown(page, 'data-consumer', consumer.name, (f) => Number(f['rate-handled']) > 0, 'a handled rate above 0');
      expect(await page.locator(`[data-consumer="${consumer.name}"] svg[data-chart="rates"] path`).count()).toBeGreaterThan(1);

      // A failure while watched: listed, with the password of the URL in its message removed.
      publish(1, { fail: true });
      await until(() => consumer.status().deadLettered === 2, 'the second failure dead-lettered');
      const failed = await untilShown(page, 'data-consumer', consumer.name, (f) => f.errorCount === '2', 'two errors (both attempts)');
      expect(failed.errors).toContain('amqp://shop:***@inventory.internal:5672/');
      expect(failed.errors).not.toContain('s3cret');
      expect(failed.errors).toContain('attempt 2 → dead-letter');
      expect(await page.content()).not.toContain('s3cret');

      // Paused by the caller: the page says so, with the reason status() gives.
      let bands = 0;
      await consumer.pause();
      const paused = await untilShown(page, 'data-consumer', consumer.name, (f) => f.paused === 'paused', 'the consumer paused');
      expect(consumer.status().pausedBy).toEqual(['user']);
      expect(paused.pausedBy).toBe('user');
      expect(paused.className).toContain('paused');
      await expectConsumerMatches(page, consumer);
      // ... and the rates chart marks the time it spent paused.
      const band = page.locator(`[data-consumer="${consumer.name}"] svg[data-chart="rates"] rect[data-band="paused"]`);
      await until(() => bands > 0, 'a paused band in the rates chart', 10_000, async () => (bands = await band.count()));
      await page.screenshot({ path: join(shots, 'dashboard-paused.png'), fullPage: true });
      await consumer.resume();
      await untilShown(page, 'data-consumer', consumer.name, (f) => f.paused === 'consuming' && f.pausedBy === '–', 'the consumer consuming again');

      // The breaker opens: the consumer pauses under its name at the next delivery.
      breaker.open();
      publish(1);
      const gated = await untilShown(page, 'data-consumer', consumer.name, (f) => f.pausedBy?.includes('inventory') === true, 'paused by the open breaker');
      expect(gated.breakers).toBe('inventory open');
      expect(consumer.status().pausedBy).toContain('inventory');
      expect((await untilShown(page, 'data-breaker', 'inventory', (f) => f.state === 'open', 'the breaker open')).opened).toBe('1');
      await page.screenshot({ path: join(shots, 'dashboard-breaker-open.png'), fullPage: true });
      breaker.halfOpen(); // one probe: the waiting message, which succeeds and closes it
      await untilShown(page, 'data-breaker', 'inventory', (f) => f.state === 'closed', 'the breaker closed again');
      await untilShown(page, 'data-consumer', consumer.name, (f) => f.paused === 'consuming' && f.breakers === 'inventory closed', 'consuming, breaker closed');
      await expectConsumerMatches(page, consumer);

      expect(problems).toEqual([]);
      await page.close();
      // The last page gone: the listeners and the sampler are gone with it.
      await until(() => service.dashboard!.watchers === 0 && consumer.listenerCount('handled') === 0 && consumer.listenerCount('failed') === failedListeners, 'the dashboard stopped listening');
    } finally {
      await service.stop();
    }
  });

  describe('RabbitMQ', () => {
    let rabbit: RabbitFixture;
    beforeAll(async () => {
      rabbit = await rabbitFixture();
    });
    afterAll(async () => {
      await rabbit?.close();
    });

    it('shows a real RabbitMQ consumer on an adaptive pool as status() reports it, live, and paused', async () => {
      const queue = rabbit.queue('sluice-dash');
      await rabbit.fill(queue, 40, 'a');
      const pool = new WorkerPool({ name: 'rabbit-orders', maxConcurrency: 8, maxQueueSize: 8, adaptive: { min: 2 } });
      const consumer = rabbitConsumer({
        url: rabbit.url,
        queue,
        pool,
        handler: async (m) => {
          await new Promise((r) => setTimeout(r, 1 + (m.body.length % 3)));
        },
      });
      const service = await runService({ consumers: [consumer], pools: [pool], signals: [], exitOnSignal: false, http: { port: 0, dashboard: true } });
      try {
        await until(() => consumer.status().handled === 40, 'the first 40 handled', 30_000);
        const { page, problems } = await open(`${base(service)}/dashboard`);
        const shown = await expectConsumerMatches(page, consumer);
        expect(shown.state).toBe('running');
        expect(shown.conn).toBe('connected');
        expect(shown.source).toBe(consumer.source.name);
        // An idle adaptive pool keeps its limit: the page shows the one status() has.
        const p = await expectPoolMatches(page, pool, 'rabbit-orders');
        expect(p.mode).toBe('adaptive gradient');
        expect(p.adaptive).toContain(`limit ${pool.status().limit} between 2 and 8`);

        // Four waves of 15, each one seen by the page in a sample of its own: the count follows each.
        for (let wave = 1; wave <= 4; wave++) {
          const before = (await read(page, 'data-consumer', consumer.name))!.handled;
          await rabbit.fill(queue, 15, `w${wave}`);
          await until(() => consumer.status().handled === 40 + 15 * wave, `wave ${wave} handled`, 30_000);
          const after = await untilShown(page, 'data-consumer', consumer.name, (f) => f.handled === String(40 + 15 * wave), `wave ${wave} counted`);
          expect(after.handled).not.toBe(before);
        }
        await expectConsumerMatches(page, consumer);
        // The charts draw what the samples saw: the handled line and the pool's active line.
        const lines = page.locator(`[data-consumer="${consumer.name}"] svg[data-chart="rates"] path[stroke="#1f9d55"], [data-pool="rabbit-orders"] svg[data-chart="slots"] path[stroke="#2f6fde"]`);
        let drawn = 0;
        await until(() => drawn === 2, 'the handled and active lines drawn', 10_000, async () => (drawn = await lines.count()));
        await page.screenshot({ path: join(shots, 'dashboard-rabbitmq.png'), fullPage: true });

        await consumer.pause('maintenance');
        const paused = await untilShown(page, 'data-consumer', consumer.name, (f) => f.paused === 'paused', 'the RabbitMQ consumer paused');
        expect(paused.pausedBy).toBe('maintenance');
        await expectConsumerMatches(page, consumer);
        await rabbit.fill(queue, 5, 'c');
        expect((await rabbit.depth(queue)).consumerCount).toBe(0); // basic.cancel: really paused at the broker
        await consumer.resume('maintenance');
        await until(() => consumer.status().handled === 105, 'the 5 handled after resume', 30_000);
        await untilShown(page, 'data-consumer', consumer.name, (f) => f.paused === 'consuming' && f.handled === '105', 'consuming again, 105 handled');
        await expectConsumerMatches(page, consumer);

        expect(problems).toEqual([]);
        await page.close();
        await until(() => service.dashboard!.watchers === 0 && consumer.listenerCount('handled') === 0, 'the dashboard stopped listening');
      } finally {
        await service.stop();
      }
    }, 90_000);
  });
});

describe('ops/grafana/sluice.json', () => {
  it('is a Grafana dashboard whose every query names a metric prometheusMetrics registers', async () => {
    const grafana = JSON.parse(readFileSync(join(root, 'ops/grafana/sluice.json'), 'utf8')) as {
      title: string;
      uid: string;
      schemaVersion: number;
      templating: { list: { name: string; query?: unknown }[] };
      panels: { id: number; type: string; title: string; targets?: { expr: string }[]; panels?: unknown[] }[];
    };
    expect(grafana.title).toBe('sluice');
    expect(grafana.templating.list.map((v) => v.name)).toEqual(expect.arrayContaining(['datasource', 'consumer', 'pool']));
    const ids = grafana.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const metrics = await prometheusMetrics({ consumers: [], pools: [] });
    const exprs = grafana.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    expect(exprs.length).toBeGreaterThan(15);
    const named = new Set(exprs.flatMap((e) => e.match(/\bsluice_[a-z_]+/g) ?? []));
    for (const variable of grafana.templating.list) {
      const q = typeof variable.query === 'string' ? variable.query : JSON.stringify(variable.query ?? '');
      for (const m of q.match(/\bsluice_[a-z_]+/g) ?? []) named.add(m);
    }
    const unknown = [...named].filter((m) => !metrics.registry.getSingleMetric(m.replace(/_(bucket|sum|count)$/, '')));
    expect(unknown).toEqual([]);
    // Every metric in the docs' table is on the dashboard.
    const registered = (await metrics.registry.getMetricsAsJSON()).map((m) => m.name);
    const shown = new Set([...named].map((m) => m.replace(/_(bucket|sum|count)$/, '')));
    expect(registered.filter((m) => !shown.has(m))).toEqual([]);
    for (const e of exprs) expect(e.split('(').length, e).toBe(e.split(')').length);
  });
});

import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, { types: string; default: string }> };
const app = mkdtempSync(join(tmpdir(), 'sluice-consumer-app-'));
afterAll(() => rmSync(app, { recursive: true, force: true }));

describe('the built package', () => {
  it('npm run build emits JavaScript and .d.ts for every entry, and another package can import them', async () => {
    await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root });
    for (const [entry, target] of Object.entries(pkg.exports)) {
      expect(existsSync(join(root, target.default)), `${entry} → ${target.default}`).toBe(true);
      expect(existsSync(join(root, target.types)), `${entry} → ${target.types}`).toBe(true);
    }
    // A separate package that depends on sluice by name, as a user's app would.
    mkdirSync(join(app, 'node_modules'));
    symlinkSync(root, join(app, 'node_modules', 'sluice'));
    writeFileSync(join(app, 'package.json'), JSON.stringify({ type: 'module' }));
    const entries = Object.keys(pkg.exports).map((e) => e.replace(/^\./, 'sluice'));
    writeFileSync(
      join(app, 'main.js'),
      `import { WorkerPool } from 'sluice';
const loaded = await Promise.all(${JSON.stringify(entries)}.map(async (e) => [e, Object.keys(await import(e)).length]));
const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 1 });
let release;
const gate = new Promise((r) => (release = r));
const answers = [pool.submit(async () => 41 + 1), pool.submit(() => gate), pool.submit(() => gate), pool.submit(() => gate)];
release();
const results = [await answers[0].task, ...answers.slice(1).map((a) => a.ok)];
// sluice/testing drives the built runtime: a declined charge retried on the fake clock, then dead-lettered.
const { testConsumer } = await import('sluice/testing');
const t = testConsumer({
  retry: { maxAttempts: 2, backoff: { initialMs: 60000, jitter: 0 } },
  handler: (msg) => { if (msg.json().declined) throw new Error('declined'); },
});
const testing = [(await t.push({ json: {} })).status, ...(await t.pushUntilSettled({ json: { declined: true } })).history.map((o) => o.status), t.clock.now];
await t.close();
console.log(JSON.stringify({ loaded, results, status: pool.status().rejected, testing }));`,
    );
    const { stdout } = await run(process.execPath, ['main.js'], { cwd: app });
    const out = JSON.parse(stdout) as { loaded: [string, number][]; results: unknown[]; status: number; testing: unknown[] };
    expect(out.loaded.map(([e]) => e)).toEqual(entries);
    for (const [entry, exported] of out.loaded) expect(exported, entry).toBeGreaterThan(0);
    // 2 slots + 1 queue place: the fourth concurrent submit is overloaded.
    expect(out.results).toEqual([42, true, true, false]);
    expect(out.status).toBe(1);
    expect(out.testing).toEqual(['acked', 'retried', 'dead-lettered', 60_000]);
  }, 120_000);
});

/**
 * Which NATS client an application gets from what it has installed. sluice is built and copied
 * into an application's node_modules (as npm installs it), beside only `nats`, only the
 * `@nats-io` 3.x packages, both, or neither; the application makes a natsSubscriber and a
 * natsPublisher from `servers` (no `client` option) and does a request-reply through the real
 * server, printing which generation each used. The rule: docs/nats.md, "Client packages".
 * Independent of SLUICE_NATS_CLIENT (removed for the applications but where a case sets it), so
 * it runs in the default pass only.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsUrl } from '../helpers/brokers.js';
import { unique } from '../helpers/names.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'sluice-nats-packages-'));
const built = join(work, 'sluice');
let url: string;

const V2 = ['nats'];
const V3 = ['@nats-io/transport-node', '@nats-io/jetstream'];

beforeAll(async () => {
  url = await natsUrl();
  // Its own output directory: test/unit/package.test.ts builds ./dist at the same time.
  await run('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', join(built, 'dist')], { cwd: root });
  cpSync(join(root, 'package.json'), join(built, 'package.json'));
}, 120_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** An application with sluice and these packages installed; prints the generations and the reply. */
async function app(packages: string[], options: { dependencies?: Record<string, string>; env?: Record<string, string> } = {}) {
  const dir = mkdtempSync(join(work, 'app-'));
  mkdirSync(join(dir, 'node_modules', '@nats-io'), { recursive: true });
  cpSync(built, join(dir, 'node_modules', 'sluice'), { recursive: true });
  // Each package's own dependencies resolve from where it really lives (the project's node_modules).
  for (const name of packages) symlinkSync(join(root, 'node_modules', name), join(dir, 'node_modules', name));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', dependencies: options.dependencies ?? {} }));
  const subject = unique('sluice.packages');
  writeFileSync(
    join(dir, 'main.js'),
    `import { natsPublisher, natsSubscriber } from 'sluice/nats';
const servers = ${JSON.stringify(url)};
let publisher, subscriber;
try {
  publisher = await natsPublisher({ servers });
  subscriber = natsSubscriber({ servers, subject: ${JSON.stringify(subject)}, pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async (m) => void m.raw.respond('pong ' + m.text()) });
  await subscriber.start();
  const reply = await publisher.request(${JSON.stringify(subject)}, 'ping');
  console.log(JSON.stringify({ publisher: publisher.client, subscriber: subscriber.source.client, reply: new TextDecoder().decode(reply.data) }));
} catch (error) {
  console.log(JSON.stringify({ error: error.message }));
} finally {
  await subscriber?.stop();
  await publisher?.close();
}`,
  );
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  if (!options.env?.SLUICE_NATS_CLIENT) delete env.SLUICE_NATS_CLIENT;
  const { stdout } = await run(process.execPath, ['main.js'], { cwd: dir, env });
  return JSON.parse(stdout.trim().split('\n').pop()!) as { publisher?: string; subscriber?: string; reply?: string; error?: string };
}

describe('the NATS client an application gets from what it installed', () => {
  it('only nats: 2.x', async () => {
    expect(await app(V2)).toEqual({ publisher: 'v2', subscriber: 'v2', reply: 'pong ping' });
  });

  it('only @nats-io/transport-node + @nats-io/jetstream: 3.x', async () => {
    expect(await app(V3)).toEqual({ publisher: 'v3', subscriber: 'v3', reply: 'pong ping' });
  });

  it('both: nats, unless the package.json names only @nats-io/transport-node, or SLUICE_NATS_CLIENT says v3', async () => {
    expect(await app([...V2, ...V3])).toMatchObject({ publisher: 'v2', subscriber: 'v2' });
    expect(await app([...V2, ...V3], { dependencies: { nats: '^2.29.0', '@nats-io/transport-node': '^3.0.0' } })).toMatchObject({ publisher: 'v2', subscriber: 'v2' });
    expect(await app([...V2, ...V3], { dependencies: { '@nats-io/transport-node': '^3.0.0', '@nats-io/jetstream': '^3.0.0' } })).toEqual({ publisher: 'v3', subscriber: 'v3', reply: 'pong ping' });
    expect(await app([...V2, ...V3], { dependencies: { '@nats-io/transport-node': '^3.0.0' }, env: { SLUICE_NATS_CLIENT: 'v2' } })).toMatchObject({ publisher: 'v2', subscriber: 'v2' });
    expect(await app([...V2, ...V3], { env: { SLUICE_NATS_CLIENT: 'v3' } })).toMatchObject({ publisher: 'v3', subscriber: 'v3' });
  });

  it('neither, or not the one asked for: one error naming what to install', async () => {
    expect(await app([])).toEqual({ error: 'natsPublisher: no NATS client is installed: npm install nats, or npm install @nats-io/transport-node @nats-io/jetstream' });
    expect((await app(V2, { env: { SLUICE_NATS_CLIENT: 'v3' } })).error).toBe(
      'natsPublisher: the NATS client @nats-io/transport-node + @nats-io/jetstream (3.x) is not installed (npm install @nats-io/transport-node @nats-io/jetstream)',
    );
    // Without @nats-io/jetstream, JetStream (the publisher) says what is missing.
    expect((await app(['@nats-io/transport-node'])).error).toMatch(/^JetStream with the 3\.x NATS client needs @nats-io\/jetstream \(npm install @nats-io\/jetstream\)$/);
  });
});

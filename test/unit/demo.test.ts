import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const run = (args: string[]) =>
  promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/payment-handler/main.ts', ...args], { cwd: root });

describe('the payment-handler demo (npm start)', () => {
  it('processes or dead-letters every payment on the in-memory broker and exits 0', async () => {
    const { stdout } = await run(['--count', '150']);
    expect(stdout).toContain('on memory: 151 messages, pool 8 running + 16 waiting');
    // 150 payments: ids 22, 45, …, 137 are declined (6), plus the malformed message: 7 dead letters.
    expect(stdout).toMatch(/processed \(acked\)\s+144\n/);
    expect(stdout).toMatch(/unique ids processed\s+144\n/);
    expect(stdout).toMatch(/duplicates\s+0\n/);
    expect(stdout).toMatch(/dead-lettered\s+7 \(7 in the dead-letter queue\)/);
    expect(stdout).toContain('every payment was processed or dead-lettered; none lost.');
    // Piped, progress is plain lines: no cursor control.
    expect(stdout).not.toContain('\x1b[');
  }, 60_000);

  it('refuses a bad option with a message naming it, and exit code 1', async () => {
    const failure = await run(['--concurrency', 'lots']).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(failure?.code).toBe(1);
    expect(failure?.stderr).toContain('option "maxConcurrency" must be an integer >= 1, got NaN');
  }, 60_000);
});

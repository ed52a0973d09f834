import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const run = (args: string[]) =>
  promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/payment-handler/main.ts', ...args], { cwd: root });

// 150 payments: ids 22, 45, …, 137 are declined (6), plus the malformed message: 7 dead letters,
// the same as without the flags. Anything more would be a healthy payment walked into the DLQ.
const DECLINED_AND_MALFORMED = 7;

describe('the payment-handler demo: --downstream-outage and --rate (memory broker)', () => {
  it('--downstream-outage: the breaker opens and closes, only the declined payments are dead-lettered, exit 0', async () => {
    const { stdout } = await run(['--count', '150', '--downstream-outage', '--outage-ms', '600']);
    expect(stdout).toContain('the card gateway goes DOWN for 0.6 s');
    expect(stdout).toMatch(/breaker OPEN \(/);
    expect(stdout).toMatch(/paused at the broker \(card-gateway\)/);
    expect(stdout).toMatch(/breaker half-open: 3 probe payments may go through/);
    expect(stdout).toMatch(/breaker CLOSED: every probe succeeded/);
    const [, opened, closed] = /breaker opened \/ closed\s+(\d+) \/ (\d+) times/.exec(stdout) ?? [];
    expect(Number(opened)).toBeGreaterThanOrEqual(1);
    expect(Number(closed)).toBeGreaterThanOrEqual(1);
    expect(Number(/gateway calls failed while down\s+(\d+)\n/.exec(stdout)?.[1])).toBeGreaterThan(0);
    expect(stdout).toMatch(/processed \(acked\)\s+144\n/);
    expect(stdout).toMatch(/unique ids processed\s+144\n/);
    expect(stdout).toMatch(/duplicates\s+0\n/);
    expect(stdout).toMatch(new RegExp(`dead-lettered\\s+${DECLINED_AND_MALFORMED} \\(${DECLINED_AND_MALFORMED} in the dead-letter queue\\)`));
    expect(stdout).toContain('every payment was processed or dead-lettered; none lost.');
    expect(stdout).not.toContain('\x1b[');
  }, 60_000);

  it('--rate 200: admitted ≤ limit × t + burst over the run, from the printed counts; exit 0', async () => {
    const { stdout } = await run(['--count', '150', '--rate', '200']);
    const [, limit, burst] = /rate limit\s+(\d+)\/s, burst (\d+)\n/.exec(stdout) ?? [];
    const [, admitted, seconds] = /admitted by the limiter\s+(\d+) in (\d+\.\d+) s/.exec(stdout) ?? [];
    expect(Number(limit)).toBe(200);
    expect(Number(burst)).toBeGreaterThanOrEqual(1);
    // Every payment ran at least once, so at least 151 admissions went through the limiter.
    expect(Number(admitted)).toBeGreaterThanOrEqual(151);
    // The token bucket's guarantee (a correctness bound, not a speed): over t seconds at most perSecond × t + burst.
    expect(Number(admitted)).toBeLessThanOrEqual(Number(limit) * Number(seconds) + Number(burst));
    expect(stdout).toMatch(/processed \(acked\)\s+144\n/);
    expect(stdout).toMatch(new RegExp(`dead-lettered\\s+${DECLINED_AND_MALFORMED} \\(${DECLINED_AND_MALFORMED} in the dead-letter queue\\)`));
    expect(stdout).toContain('every payment was processed or dead-lettered; none lost.');
  }, 60_000);

  it('refuses a bad --rate with a message naming the option, and exit code 1', async () => {
    const failure = await run(['--count', '10', '--rate', 'fast']).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(failure?.code).toBe(1);
    expect(failure?.stderr).toContain('perSecond');
  }, 60_000);
});

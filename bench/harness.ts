/** Small helpers shared by the benchmarks: best-of-N timing and markdown tables. */

export async function bestOf(runs: number, fn: () => Promise<number>): Promise<number> {
  let best = 0;
  for (let i = 0; i < runs; i++) best = Math.max(best, await fn());
  return best;
}

/** Operations per second of one run of `fn` doing `ops` operations. */
export async function opsPerSecond(ops: number, fn: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await fn();
  return ops / ((performance.now() - started) / 1000);
}

export function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error('run the benchmarks with node --expose-gc (npm run bench does)');
  collect();
  collect();
}

export function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
export const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;

/**
 * Messages/s of a sluice consumer over `n` messages. `build` gets the handler to install; the
 * clock starts at the first message (connecting is not what is compared) and stops after the
 * n-th message's ack was sent.
 */
export async function consumerRate(
  n: number,
  build: (handler: () => Promise<void>) => { start(): Promise<void>; stop(): Promise<unknown> },
  work?: () => Promise<void>,
): Promise<number> {
  let seen = 0;
  let started = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const consumer = build(async () => {
    if (started === 0) started = performance.now();
    if (work) await work();
    if (++seen === n) setImmediate(done);
  });
  await consumer.start();
  await all;
  const rate = n / ((performance.now() - started) / 1000);
  await consumer.stop();
  return rate;
}

/**
 * Resident memory of a running consumer with a deep backlog and a slow handler: `count` samples
 * `intervalMs` apart after a GC each. Bounded memory means the late sample equals the early one.
 */
export async function rssWhileConsuming(consumer: { start(): Promise<void>; stop(): Promise<unknown> }, count = 10, intervalMs = 300): Promise<{ early: number; late: number }> {
  await consumer.start();
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    await new Promise((r) => setTimeout(r, intervalMs));
    gc();
    samples.push(process.memoryUsage().rss);
  }
  await consumer.stop();
  return { early: samples[1]!, late: samples[samples.length - 1]! };
}

export const mb = (bytes: number): string => fmt(bytes / 1024 / 1024, 1);

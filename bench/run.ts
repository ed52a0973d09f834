/**
 * `npm run bench`: runs every benchmark in one process, one after the other (2 cores: never in
 * parallel), prints the results and rewrites BENCHMARKS.md's measured section.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';

const suites = ['pool', 'rabbitmq', 'kafka', 'nats', 'idle', 'flow', 'batch'] as const;
const only = process.argv.slice(2);
const sections: string[] = [];

for (const name of suites) {
  if (only.length > 0 && !only.includes(name)) continue;
  // A suite is bench/<name>.ts, or a folder bench/<name>/ whose index.ts has its run().
  const file = [`./${name}.ts`, `./${name}/index.ts`].find((f) => existsSync(new URL(f, import.meta.url)));
  if (file === undefined) continue;
  console.error(`bench: ${name}…`);
  try {
    const suite = (await import(file.replace(/\.ts$/, '.js'))) as { run(): Promise<string> };
    sections.push(await suite.run());
  } catch (error) {
    // A broker that is not running makes its section say so; the others still run.
    sections.push(`## ${name}\n\nNot measured in this run: ${error instanceof Error ? error.message : String(error)}`);
  }
}

const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const measured = [
  `<!-- measured:start -->`,
  `Measured ${new Date().toISOString().slice(0, 10)} by \`npm run bench${only.length ? ` ${only.join(' ')}` : ''}\` on ${os.cpus().length} × ${cpu}, Node ${process.version}.`,
  '',
  ...sections.flatMap((s) => [s, '']),
  `<!-- measured:end -->`,
].join('\n');

console.log(measured);
const file = new URL('../BENCHMARKS.md', import.meta.url);
if (existsSync(file)) {
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf('<!-- measured:start -->');
  const end = text.indexOf('<!-- measured:end -->');
  if (start >= 0 && end > start && only.length === 0) {
    writeFileSync(file, text.slice(0, start) + measured + text.slice(end + '<!-- measured:end -->'.length));
    console.error('bench: BENCHMARKS.md updated');
  }
}

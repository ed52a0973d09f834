/**
 * `npm run bench -- flow`: the flow-control suite (issue 11), one markdown section.
 *
 * Each part is one entry of PARTS, measured one after the other (2 cores: never in parallel); a
 * part that fails (a broker not running) says so in its place and the others still run.
 * Extension point: adaptive concurrency (adaptive vs fixed limits on `Downstream` with a
 * capacity schedule) and fair share (a flooded and a trickling queue on one pool) go in PARTS
 * as `{ title, measure }`; `./downstream.ts` is the simulated downstream they share.
 */
import { existsSync } from 'node:fs';
import { adaptiveVsFixed } from './adaptive.js';
import { fairShare } from './fair.js';
import { outageConfig, outageHeading, outageScenario, outageTable } from './outage.js';

export interface FlowPart {
  /** The `###` heading of the part. */
  readonly title: string;
  /** Markdown under it (text and tables, no `##` headings). */
  measure(): Promise<string>;
}

/** Rate-limit accuracy is bench/flow-rate.ts's own (`run()`); its `##` headings become `###` here. */
async function rateLimitAccuracy(): Promise<string> {
  const file = new URL('../flow-rate.ts', import.meta.url);
  if (!existsSync(file)) return '| limiter | admitted |\n| --- | --- |\n| TODO: measured by bench/flow-rate.ts (not present in this checkout) | — |';
  const module = (await import('../flow-rate.js')) as { run?: () => Promise<string> };
  if (typeof module.run !== 'function') return '| limiter | admitted |\n| --- | --- |\n| TODO: measured by bench/flow-rate.ts (`node --import tsx bench/flow-rate.ts`) | — |';
  return (await module.run()).replace(/^## .*\n+/, '').replace(/^## /gm, '### ');
}

async function outage(broker: 'memory' | 'rabbitmq'): Promise<string> {
  const result = await outageScenario(broker, outageConfig());
  return `${outageHeading(result)}\n\n${outageTable(result)}`;
}

export const PARTS: FlowPart[] = [
  { title: 'Downstream outage, memory broker', measure: () => outage('memory') },
  { title: 'Downstream outage, RabbitMQ', measure: () => outage('rabbitmq') },
  { title: 'Rate limit accuracy', measure: rateLimitAccuracy },
  { title: 'Adaptive concurrency vs fixed limits', measure: () => adaptiveVsFixed() },
  { title: 'Fair share of one pool', measure: () => fairShare() },
];

export async function run(parts: readonly FlowPart[] = PARTS): Promise<string> {
  const out = ['## Flow control', '', 'Issue 11\'s scenarios on the simulated downstream of `bench/flow/downstream.ts` (at most C calls at once, the rest queue inside it). No time is asserted in tests; targets are read here.'];
  for (const part of parts) {
    console.error(`bench: flow: ${part.title}…`);
    let body: string;
    try {
      body = await part.measure();
    } catch (error) {
      body = `Not measured in this run: ${error instanceof Error ? error.message : String(error)}`;
    }
    out.push('', `### ${part.title}`, '', body);
  }
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await run());

import { ValidationError } from './errors.js';
import type { Headers, Message } from './message.js';
import type { ValidationIssue } from './schema.js';

/** What the runtime tells an adapter when a message goes to the dead-letter path. */
export interface DeadLetterInfo {
  error: { name: string; message: string };
  /** Handler runs spent on the message (its delivery attempt when it failed for the last time). */
  attempts: number;
  source: string;
  reason: 'max-attempts' | 'permanent-error' | 'failure-policy' | 'invalid';
  at: Date;
  /** With reason 'invalid': what the schema found wrong. */
  issues?: ValidationIssue[];
}

/** Header names every adapter writes on a dead-lettered message, so tooling can read them on any broker. */
export const DEAD_LETTER_HEADERS = {
  error: 'x-sluice-error',
  errorName: 'x-sluice-error-name',
  attempts: 'x-sluice-attempts',
  source: 'x-sluice-source',
  reason: 'x-sluice-reason',
  messageId: 'x-sluice-message-id',
  key: 'x-sluice-key',
  at: 'x-sluice-dead-lettered-at',
  /** JSON `[{ path, message }]` of a message that failed the consumer's schema (cut at 4 KiB). */
  issues: 'x-sluice-validation-issues',
  /**
   * On a dead letter written without its body (the destination refused the whole message as too
   * large, and the broker keeps the original): what was left out, and where the original still is.
   */
  bodyOmitted: 'x-sluice-body-omitted',
} as const;

/** The header that carries the attempt count where the broker does not count deliveries itself. */
export const ATTEMPT_HEADER = 'x-sluice-attempt';

export function deadLetterInfo(error: unknown, attempts: number, source: string, reason: DeadLetterInfo['reason']): DeadLetterInfo {
  const e = error instanceof Error ? error : new Error(String(error));
  const info: DeadLetterInfo = { error: { name: e.name, message: e.message }, attempts, source, reason, at: new Date() };
  if (error instanceof ValidationError) info.issues = error.issues;
  return info;
}

/** The original headers plus the dead-letter facts, as strings (every broker can carry strings). */
export function deadLetterHeaders(message: Message, info: DeadLetterInfo): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of Object.keys(message.headers)) {
    const value = message.header(name);
    if (value !== undefined) headers[name] = value;
  }
  headers[DEAD_LETTER_HEADERS.error] = info.error.message.slice(0, 1024);
  headers[DEAD_LETTER_HEADERS.errorName] = info.error.name;
  headers[DEAD_LETTER_HEADERS.attempts] = String(info.attempts);
  headers[DEAD_LETTER_HEADERS.source] = info.source;
  headers[DEAD_LETTER_HEADERS.reason] = info.reason;
  headers[DEAD_LETTER_HEADERS.messageId] = message.id;
  if (message.key !== undefined) headers[DEAD_LETTER_HEADERS.key] = message.key;
  headers[DEAD_LETTER_HEADERS.at] = info.at.toISOString();
  if (info.issues !== undefined) headers[DEAD_LETTER_HEADERS.issues] = issuesHeader(info.issues);
  return headers;
}

/**
 * The headers of a dead letter written without its body (the destination refused the whole message
 * as too large, and the broker keeps the original): sluice's dead-letter facts from `headers`, the
 * adapter's `origin` headers saying where the original is, and `bodyOmitted` set to `omitted`.
 */
export function bodylessDeadLetterHeaders(headers: Record<string, string>, origin: readonly string[], omitted: string): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const name of [...Object.values(DEAD_LETTER_HEADERS), ...origin]) if (headers[name] !== undefined) kept[name] = headers[name];
  kept[DEAD_LETTER_HEADERS.bodyOmitted] = omitted;
  return kept;
}

/** As many whole issues as fit in 4 KiB of JSON (a header must stay small on every broker). */
function issuesHeader(issues: ValidationIssue[]): string {
  let json = JSON.stringify(issues);
  for (let n = issues.length - 1; json.length > 4096 && n >= 1; n--) json = JSON.stringify(issues.slice(0, n));
  return json.length > 4096 ? json.slice(0, 4096) : json;
}

export type { Headers };

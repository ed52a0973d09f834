import type { Consumer } from '../consumer.js';
import { redactText } from '../redact.js';

/** pino- and console-compatible: an object first, then an optional message. */
export interface Logger {
  debug(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
}

/** The default: sluice says nothing unless given a logger. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
type Level = (typeof LEVELS)[number];

/** One JSON line per entry on stderr, at `level` and above. */
export function jsonLogger(level: Level = 'info', write: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Logger {
  const min = LEVELS.indexOf(level);
  const at = (l: Level) => (fields: object, message?: string) => {
    if (LEVELS.indexOf(l) < min) return;
    write(JSON.stringify({ level: l, time: new Date().toISOString(), ...fields, ...(message ? { msg: message } : {}) }));
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** An error as loggable fields, with any credential in a URL removed. */
export function errorFields(error: unknown): { error: { name: string; message: string } } {
  const e = error instanceof Error ? error : new Error(String(error));
  return { error: { name: e.name, message: redactText(e.message) } };
}

/**
 * Wraps a logger so that every string it is given, however deep, has URL credentials removed:
 * the last line of defence for broker URLs with passwords.
 */
export function redactingLogger(logger: Logger): Logger {
  const clean = (value: unknown, depth = 0): unknown => {
    if (typeof value === 'string') return redactText(value);
    if (value instanceof Error) return errorFields(value).error;
    if (depth > 4 || value === null || typeof value !== 'object') return value;
    if (Array.isArray(value)) return value.map((v) => clean(v, depth + 1));
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, clean(v, depth + 1)]));
  };
  const at = (l: Level) => (fields: object, message?: string) =>
    logger[l](clean(fields) as object, message === undefined ? undefined : redactText(message));
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** Logs what a consumer does that an operator should see; returns the function that stops it. */
export function logConsumer(consumer: Consumer, logger: Logger): () => void {
  const log = redactingLogger(logger);
  const consumerName = consumer.name;
  const offs = [
    consumer.on('state', ({ state }) => log.info({ consumer: consumerName, state }, `consumer ${state}`)),
    consumer.on('connection', ({ state, detail, error }) =>
      (state === 'disconnected' ? log.warn : log.info)({ consumer: consumerName, connection: state, detail, ...(error ? errorFields(error) : {}) }, `broker ${state}`),
    ),
    consumer.on('failed', ({ message, error, attempt, next }) =>
      log.warn({ consumer: consumerName, messageId: message.id, attempt, next, ...errorFields(error) }, 'handler failed'),
    ),
    consumer.on('deadLettered', ({ message, info }) =>
      log.error({ consumer: consumerName, messageId: message.id, attempts: info.attempts, reason: info.reason, error: info.error }, 'message dead-lettered'),
    ),
    consumer.on('paused', ({ reason }) => log.info({ consumer: consumerName, reason }, 'consumption paused')),
    consumer.on('resumed', ({ pausedMs }) => log.info({ consumer: consumerName, pausedMs: Math.round(pausedMs) }, 'consumption resumed')),
    consumer.on('stalled', ({ inFlight, sinceMs }) => log.error({ consumer: consumerName, inFlight, sinceMs: Math.round(sinceMs) }, 'consumer stalled')),
    consumer.on('unstalled', ({ stalledMs }) => log.warn({ consumer: consumerName, stalledMs: Math.round(stalledMs) }, 'consumer progressing again')),
    consumer.on('error', ({ error, during, message }) =>
      log.error({ consumer: consumerName, during, messageId: message?.id, ...errorFields(error) }, 'consumer error'),
    ),
  ];
  return () => offs.forEach((off) => off());
}

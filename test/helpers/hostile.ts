/**
 * Hostile input for the property tests (test/faults/hostile-*.test.ts): bodies (random bytes,
 * invalid UTF-8, empty, JSON that fits the schema or not, text), what a handler does with them,
 * hostile values of sluice's own `x-sluice-attempt` header and other headers, in a broker-neutral
 * form each broker's test maps to what it can carry. The oracle says what must become of each
 * message: handled, or dead-lettered with which reason, after how many handler runs.
 */
import { isUtf8 } from 'node:buffer';
import fc from 'fast-check';
import { z } from 'zod';

/** What the handler does with a message: nothing, `msg.text()`, `msg.json()`, or throw (retried). */
export type Mode = 'none' | 'text' | 'json' | 'fail';

/** A header value in a broker-neutral form; each broker carries what it can of it. */
export type HostileValue =
  | { kind: 'string'; value: string }
  | { kind: 'number'; value: number }
  | { kind: 'array'; value: string[] }
  | { kind: 'bytes'; value: Uint8Array }
  | { kind: 'bool'; value: boolean }
  | { kind: 'null' }
  | { kind: 'object'; value: Record<string, string> };

export interface HostileCase {
  /** Assigned by `hostileBatch`: the case's index in its batch, prefixed. */
  id: string;
  /**
   * A hostile id to publish the message under (empty, huge, control characters, the same for
   * several messages); the case's own id then travels in the CASE_HEADER header. Undefined: `id`.
   */
  messageId?: string | undefined;
  body: Uint8Array;
  mode: Mode;
  /** `x-sluice-attempt` as the producer sets it (undefined: not set). */
  attempt: HostileValue | undefined;
  /** Other headers: name and value. */
  headers: [string, HostileValue][];
  /** Kafka's key: bytes, an empty key, or none (null). Other brokers ignore it. */
  key: Uint8Array | null;
}

/** The schema the schema-validating consumers use. */
export const Order = z.object({ id: z.string(), n: z.number() });

const enc = new TextEncoder();
const bytes = (s: string) => enc.encode(s);

/** Sequences no UTF-8 decoder may accept: a stray continuation, overlong forms, a surrogate, a truncated sequence, bytes never used. */
const BAD_UTF8: number[][] = [[0x80], [0xc0, 0x80], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf0, 0x9f, 0x98], [0xff], [0xfe, 0xff], [0xf5, 0x80, 0x80, 0x80]];

/** Valid text (JSON or not) with one invalid sequence spliced in at a random place. */
const invalidUtf8 = fc
  .tuple(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v) ?? 'null')), fc.constantFrom(...BAD_UTF8), fc.nat())
  .map(([text, bad, at]) => {
    const good = bytes(text);
    const cut = good.length === 0 ? 0 : at % (good.length + 1);
    return Uint8Array.from([...good.subarray(0, cut), ...bad, ...good.subarray(cut)]);
  });

/** Bodies of every kind, small (the near-maximum sizes are a test of their own per broker). */
export const body: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.constant(new Uint8Array(0)),
  fc.uint8Array({ maxLength: 256 }),
  invalidUtf8,
  fc.record({ id: fc.string({ maxLength: 12 }), n: fc.double() }).map((o) => bytes(JSON.stringify(o))), // fits the schema (NaN/Infinity become null: does not)
  fc.jsonValue({ maxDepth: 3 }).map((v) => bytes(JSON.stringify(v) ?? '')),
  fc.string({ unit: 'grapheme', maxLength: 64 }).map(bytes),
  fc.record({ id: fc.string({ maxLength: 8 }), n: fc.integer() }).map((o) => bytes(`\uFEFF${JSON.stringify(o)}`)), // a BOM before JSON
  fc.constantFrom('{', '"', 'nul', '{"id":"x","n":1', '\u0000', '1e999', '[]'.repeat(50)).map(bytes),
);

/** Hostile values of sluice's own attempt header. */
export const attemptValue: fc.Arbitrary<HostileValue> = fc.oneof(
  fc.constantFrom<HostileValue>(
    { kind: 'string', value: 'abc' },
    { kind: 'string', value: '-1' },
    { kind: 'string', value: '0' },
    { kind: 'string', value: '' },
    { kind: 'string', value: '1e308' },
    { kind: 'string', value: 'NaN' },
    { kind: 'string', value: 'Infinity' },
    { kind: 'string', value: '2.5' },
    { kind: 'string', value: ' 2 ' },
    { kind: 'string', value: '0x2' },
    { kind: 'string', value: '9'.repeat(17) },
    { kind: 'string', value: '9'.repeat(400) },
    { kind: 'string', value: '2' },
    { kind: 'string', value: '3' },
    { kind: 'number', value: -1 },
    { kind: 'number', value: 0 },
    { kind: 'number', value: 2 },
    { kind: 'number', value: 2.5 },
    { kind: 'number', value: 1e308 },
    { kind: 'number', value: Number.NaN },
    { kind: 'number', value: Number.POSITIVE_INFINITY },
    { kind: 'number', value: 2 ** 60 },
    { kind: 'array', value: ['2', 'abc'] },
    { kind: 'array', value: ['abc', '2'] },
    { kind: 'array', value: [] },
    { kind: 'bytes', value: bytes('2') },
    { kind: 'bytes', value: Uint8Array.from([0xff, 0x32]) },
    { kind: 'bool', value: true },
    { kind: 'null' },
    { kind: 'object', value: { attempt: '2' } },
  ),
  fc.string({ unit: 'binary', maxLength: 20 }).map((value): HostileValue => ({ kind: 'string', value })),
);

/** Any header value. */
export const headerValue: fc.Arbitrary<HostileValue> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }).map((value): HostileValue => ({ kind: 'string', value })),
  fc.double().map((value): HostileValue => ({ kind: 'number', value })),
  fc.integer().map((value): HostileValue => ({ kind: 'number', value })),
  fc.array(fc.string({ maxLength: 10 }), { maxLength: 4 }).map((value): HostileValue => ({ kind: 'array', value })),
  fc.uint8Array({ maxLength: 40 }).map((value): HostileValue => ({ kind: 'bytes', value })),
  fc.boolean().map((value): HostileValue => ({ kind: 'bool', value })),
  fc.constant<HostileValue>({ kind: 'null' }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }).map((value): HostileValue => ({ kind: 'object', value })),
);

/** Header names: anything (each broker keeps the ones it can carry), plus names that mean something to sluice. */
export const headerName: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'binary', minLength: 1, maxLength: 30 }),
  fc.stringMatching(/^[A-Za-z0-9-]{1,20}$/),
  fc.constantFrom(
    'x-sluice-reason', // a producer's own dead-letter "facts": the dead letter's must win
    'x-sluice-error',
    'x-sluice-attempts',
    'x-sluice-source',
    'X-Sluice-Attempt', // another case of the attempt header
    'content-type',
    '__proto__', // names that are also members of every JS object
    'constructor',
    'toString',
    'hasOwnProperty',
  ),
);

const mode: fc.Arbitrary<Mode> = fc.constantFrom('none', 'text', 'json', 'fail');

/** The header that names a case whose message id is hostile. */
export const CASE_HEADER = 'x-hostile-case';

/** Message ids a producer may set: empty, blank, huge, with control characters, shared by several messages. */
const messageId: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', ' ', 'same-id', 'same-id', 'line\r\nbreak', '\u0000', 'x'.repeat(2000), '__proto__'),
  fc.string({ unit: 'binary', maxLength: 300 }),
);

/** One message. `extraHeaders` adds broker-specific names (reserved ones) to the mix. */
export function hostileCase(extraHeaders: fc.Arbitrary<[string, HostileValue]> = fc.tuple(headerName, headerValue)): fc.Arbitrary<HostileCase> {
  return fc.record({
    id: fc.constant(''),
    body,
    mode,
    attempt: fc.option(attemptValue, { freq: 2, nil: undefined }),
    messageId: fc.option(messageId, { freq: 3, nil: undefined }),
    headers: fc.array(fc.oneof(fc.tuple(headerName, headerValue), extraHeaders), { maxLength: 4 }),
    key: fc.oneof(fc.constant(null), fc.constant(new Uint8Array(0)), fc.uint8Array({ minLength: 1, maxLength: 16 })),
  });
}

/** A batch of `min`–`max` messages, ids `<prefix>-<i>`. */
export function hostileBatch(prefix: string, min: number, max: number, extraHeaders?: fc.Arbitrary<[string, HostileValue]>): fc.Arbitrary<HostileCase[]> {
  return fc.array(hostileCase(extraHeaders), { minLength: min, maxLength: max }).map((cases) => cases.map((c, i) => ({ ...c, id: `${prefix}-${i}` })));
}

// --- the oracle -----------------------------------------------------------------------------------

/** The body as text when it is valid UTF-8 (a leading BOM dropped, as TextDecoder does). */
function textOf(b: Uint8Array): string | undefined {
  if (!isUtf8(b)) return undefined;
  const text = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
  return text.startsWith('\uFEFF') ? text.slice(1) : text;
}

function jsonOf(b: Uint8Array): { ok: true; value: unknown } | { ok: false } {
  const text = textOf(b);
  if (text === undefined) return { ok: false };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

/**
 * The attempt a broker that counts attempts in the header (RabbitMQ) starts a message at: the
 * header's first value as text, if that is a whole number from 1 up to 2^53 − 1; else 1.
 */
export function startAttempt(v: HostileValue | undefined): number {
  if (v === undefined) return 1;
  let text: string | undefined;
  switch (v.kind) {
    case 'string':
      text = v.value;
      break;
    case 'number':
      text = String(v.value);
      break;
    case 'array':
      text = v.value[0];
      break;
    case 'bytes':
      text = Buffer.from(v.value).toString('utf8');
      break;
    case 'bool':
      text = String(v.value);
      break;
    case 'object':
      text = JSON.stringify(v.value);
      break;
    case 'null':
      text = undefined;
  }
  const n = Number(text);
  return text !== undefined && Number.isSafeInteger(n) && n > 0 ? n : 1;
}

export interface Expectation {
  outcome: 'handled' | 'dead-letter';
  reason?: 'max-attempts' | 'permanent-error' | 'invalid';
  errorName?: string;
  /** Handler runs. */
  calls: number;
}

export interface OracleOptions {
  schema: boolean;
  maxAttempts: number;
  /** The attempt the broker starts this message at (1 unless the broker reads the attempt header). */
  start: number;
}

export function expected(c: HostileCase, o: OracleOptions): Expectation {
  if (o.schema) {
    const json = jsonOf(c.body);
    if (!json.ok || !Order.safeParse(json.value).success) return { outcome: 'dead-letter', reason: 'invalid', errorName: 'ValidationError', calls: 0 };
  }
  switch (c.mode) {
    case 'none':
      return { outcome: 'handled', calls: 1 };
    case 'text':
      return textOf(c.body) !== undefined ? { outcome: 'handled', calls: 1 } : { outcome: 'dead-letter', reason: 'permanent-error', errorName: 'DecodeError', calls: 1 };
    case 'json':
      return jsonOf(c.body).ok ? { outcome: 'handled', calls: 1 } : { outcome: 'dead-letter', reason: 'permanent-error', errorName: 'DecodeError', calls: 1 };
    case 'fail':
      return { outcome: 'dead-letter', reason: 'max-attempts', errorName: 'Error', calls: o.start >= o.maxAttempts ? 1 : o.maxAttempts - o.start + 1 };
  }
}

/** A short description of a case for failure messages (bodies can be large and binary). */
export function describeCase(c: HostileCase): string {
  const b = Buffer.from(c.body);
  const preview = b.length > 32 ? `${b.subarray(0, 32).toString('hex')}…(${b.length} bytes)` : b.toString('hex');
  const show = (v: HostileValue | undefined) => (v === undefined ? '-' : JSON.stringify(v, (_k, x) => (x instanceof Uint8Array ? `bytes:${Buffer.from(x).toString('hex')}` : typeof x === 'number' && !Number.isFinite(x) ? String(x) : x)));
  return `${c.id}${c.messageId === undefined ? '' : ` (published as ${JSON.stringify(c.messageId.length > 40 ? `${c.messageId.slice(0, 40)}…` : c.messageId)})`} mode=${c.mode} body=${preview || '(empty)'} attempt=${show(c.attempt)} headers=${c.headers.map(([n, v]) => `${JSON.stringify(n)}:${show(v)}`).join(',')} key=${c.key === null ? 'null' : Buffer.from(c.key).toString('hex') || '(empty)'}`;
}

/**
 * Room a dead letter needs beyond the original message: the x-sluice-* headers (an error message
 * of up to 1024 characters, validation issues up to 4 KiB of JSON, ids, source, time), in UTF-8.
 */
export const DEAD_LETTER_HEADROOM = 16 * 1024;

/**
 * Messages with bodies of `size` bytes (near a broker's maximum): binary that fails every attempt,
 * JSON that decodes, JSON broken near its end, binary read as text, plain text left alone.
 */
export function bigCases(prefix: string, size: number, random: () => number, only?: 'handled'): HostileCase[] {
  const noise = () => Uint8Array.from({ length: size }, (_, i) => (i === 0 ? 0xff : Math.floor(random() * 256)));
  const json = () => {
    const head = '{"id":"big","n":1,"pad":"';
    return bytes(`${head}${'x'.repeat(size - head.length - 2)}"}`);
  };
  const broken = json();
  broken[size - 10] = 0xc0; // an overlong form: invalid UTF-8 near the end
  const plain = { attempt: undefined, headers: [], key: null };
  const cases: HostileCase[] = [
    { id: `${prefix}-0`, body: noise(), mode: 'fail', ...plain },
    { id: `${prefix}-1`, body: json(), mode: 'json', ...plain },
    { id: `${prefix}-2`, body: broken, mode: 'json', ...plain },
    { id: `${prefix}-3`, body: noise(), mode: 'text', ...plain },
    { id: `${prefix}-4`, body: bytes('t'.repeat(size)), mode: 'none', ...plain },
  ];
  // 'handled': only those that end handled (no dead letter, which needs room of its own).
  return only === 'handled' ? cases.filter((c) => c.mode === 'none' || c.id.endsWith('-1')) : cases;
}

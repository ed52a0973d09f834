import { headerText, type Headers } from '../../src/message.js';
import type { MsgHdrs, NatsClient } from './client.js';

/** NATS headers as the broker-neutral record (first value of each key). */
export function fromNatsHeaders(h: MsgHdrs | undefined): Headers {
  const out: Headers = {};
  if (!h) return out;
  for (const key of h.keys()) out[key] = h.get(key);
  return out;
}

/**
 * A received message's headers as the record, and its `Nats-Msg-Id`; never throws. nats.js
 * refuses to decode a header name it would not send itself (a space, a control or non-ASCII
 * byte), which other clients can send: its decoder throws inside the connection's reader, which
 * then stops reading for good. Such a block is read here leniently from the message's raw bytes.
 */
export function receivedHeaders(msg: { readonly headers?: MsgHdrs | undefined }): { headers: Headers; msgId: string | undefined } {
  let headers: Headers;
  try {
    headers = fromNatsHeaders(msg.headers);
  } catch {
    headers = lenientHeaders(rawHeaderBlock(msg));
  }
  return { headers, msgId: headerText(headers['Nats-Msg-Id']) || undefined };
}

/** The header bytes of a nats.js message (v2 and v3 keep them alike), or undefined when they are not where expected. */
function rawHeaderBlock(msg: unknown): Uint8Array | undefined {
  const inner = (msg as { msg?: unknown }).msg ?? msg; // a pulled JetStream message wraps the client's
  const { _rdata: data, _msg: parsed } = inner as { _rdata?: unknown; _msg?: { hdr?: unknown } };
  return data instanceof Uint8Array && typeof parsed?.hdr === 'number' && parsed.hdr > 0 ? data.subarray(0, parsed.hdr) : undefined;
}

/** `NATS/1.0…` then `name: value` lines: every name as sent, the first value of a repeated one. */
function lenientHeaders(block: Uint8Array | undefined): Headers {
  const out: Headers = {};
  if (!block) return out;
  for (const line of new TextDecoder().decode(block).split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !(line.slice(0, colon) in out)) out[line.slice(0, colon)] = line.slice(colon + 1).trim();
  }
  return out;
}

/** Headers of the connection's own client generation (a connection encodes only its own kind). */
export function toNatsHeaders(client: NatsClient, record: Record<string, string>): MsgHdrs {
  const h = client.headers();
  for (const [key, value] of Object.entries(record)) h.set(key, value);
  return h;
}

/** A byte nats.js refuses in a header name: outside 33–126, or ':'. */
const REFUSED_IN_NAME = /[^\x21-\x39\x3b-\x7e]/gu;

const percentEncoded = (c: string) => [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');

/**
 * Headers sluice writes from what came in (dead letters, error replies to requests), which the
 * client must not refuse: a name it would refuse is percent-encoded (UTF-8), CR and LF in a value
 * (an error message may span lines) become spaces.
 */
export function writableNatsHeaders(client: NatsClient, record: Record<string, string>): MsgHdrs {
  const h = client.headers();
  for (const [key, value] of Object.entries(record)) {
    h.set(key.replace(REFUSED_IN_NAME, percentEncoded), value.replace(/[\r\n]/g, ' '));
  }
  return h;
}

/**
 * A dead letter's headers, as `writableNatsHeaders`, without the original's `Nats-*` headers: they
 * are directions to the server (Nats-Msg-Id deduplicates, Nats-Expected-Stream / -Last-Sequence
 * make the dead-letter stream refuse it, Nats-Rollup purges it); the id stays in x-sluice-message-id.
 */
export function deadLetterNatsHeaders(client: NatsClient, record: Record<string, string>): MsgHdrs {
  const kept: Record<string, string> = {};
  for (const [key, value] of Object.entries(record)) if (!/^nats-/i.test(key)) kept[key] = value;
  return writableNatsHeaders(client, kept);
}

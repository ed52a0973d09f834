import type { Headers } from '../../src/message.js';
import type { MsgHdrs, NatsClient } from './client.js';

/** NATS headers as the broker-neutral record (first value of each key). */
export function fromNatsHeaders(h: MsgHdrs | undefined): Headers {
  const out: Headers = {};
  if (!h) return out;
  for (const key of h.keys()) out[key] = h.get(key);
  return out;
}

/** Headers of the connection's own client generation (a connection encodes only its own kind). */
export function toNatsHeaders(client: NatsClient, record: Record<string, string>): MsgHdrs {
  const h = client.headers();
  for (const [key, value] of Object.entries(record)) h.set(key, value);
  return h;
}

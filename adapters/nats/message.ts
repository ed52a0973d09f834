import { headers as natsHeaders, type MsgHdrs } from 'nats';
import type { Headers } from '../../src/message.js';

/** NATS headers as the broker-neutral record (first value of each key). */
export function fromNatsHeaders(h: MsgHdrs | undefined): Headers {
  const out: Headers = {};
  if (!h) return out;
  for (const key of h.keys()) out[key] = h.get(key);
  return out;
}

export function toNatsHeaders(record: Record<string, string>): MsgHdrs {
  const h = natsHeaders();
  for (const [key, value] of Object.entries(record)) h.set(key, value);
  return h;
}

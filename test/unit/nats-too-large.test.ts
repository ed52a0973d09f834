/** Recognising a NATS "message too large" refusal on either client generation (pure logic; the real refusals are in test/faults/hostile-nats). */
import { describe, expect, it } from 'vitest';
import { tooLargeRefusal } from '../../adapters/nats/jetstream-delivery.js';

describe('tooLargeRefusal (NATS)', () => {
  it("finds nats 2.x's MAX_PAYLOAD_EXCEEDED, @nats-io 3.x's max_payload argument error and JetStream's 10054, also as a cause", () => {
    expect(tooLargeRefusal(Object.assign(new Error('MAX_PAYLOAD_EXCEEDED'), { code: 'MAX_PAYLOAD_EXCEEDED' }))).toBe('MAX_PAYLOAD_EXCEEDED');
    expect(tooLargeRefusal(new Error("invalid argument: 'payload' max_payload size exceeded"))).toMatch(/max_payload/);
    expect(tooLargeRefusal(Object.assign(new Error('message size exceeds maximum allowed'), { api_error: { err_code: 10054 } }))).toMatch(/exceeds maximum/);
    const wrapped = new Error('publish failed', { cause: Object.assign(new Error('stored? no'), { code: 10054 }) });
    expect(tooLargeRefusal(wrapped)).toBe('stored? no');
  });

  it('is undefined for other refusals and for what is not an error', () => {
    expect(tooLargeRefusal(Object.assign(new Error('no responders'), { code: '503' }))).toBeUndefined();
    expect(tooLargeRefusal(Object.assign(new Error('maximum messages exceeded'), { api_error: { err_code: 10077 } }))).toBeUndefined();
    expect(tooLargeRefusal(undefined)).toBeUndefined();
    expect(tooLargeRefusal('max_payload size exceeded')).toBeUndefined();
  });
});

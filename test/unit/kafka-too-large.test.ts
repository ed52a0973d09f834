/** Recognising Kafka's "record too large" refusal on either driver (pure logic; the real refusals are in test/faults/hostile-kafka). */
import { describe, expect, it } from 'vitest';
import { tooLargeRefusal } from '../../adapters/kafka/dead-letters.js';

const protocolError = (fields: Record<string, unknown>) => Object.assign(new Error('The request included a message larger than the max message size the server will accept.'), fields);

describe('tooLargeRefusal', () => {
  it("finds kafkajs's type and platformatic's apiId, also inside wrappers (errors, cause)", () => {
    const kafkajs = protocolError({ type: 'MESSAGE_TOO_LARGE', code: 10 });
    expect(tooLargeRefusal(kafkajs)).toBe(kafkajs);
    const platformatic = protocolError({ apiId: 'RECORD_LIST_TOO_LARGE', apiCode: 18 });
    const wrapped = Object.assign(new Error('Producing messages failed.'), { errors: [new Error('other'), Object.assign(new Error('Received response with error.'), { errors: [platformatic] })] });
    expect(tooLargeRefusal(wrapped)).toBe(platformatic);
    expect(tooLargeRefusal(new Error('publish failed', { cause: kafkajs }))).toBe(kafkajs);
  });

  it('is undefined for any other refusal, and for what is not an error', () => {
    expect(tooLargeRefusal(protocolError({ type: 'UNKNOWN_TOPIC_OR_PARTITION' }))).toBeUndefined();
    expect(tooLargeRefusal(new Error('MESSAGE_TOO_LARGE in the text only'))).toBeUndefined();
    expect(tooLargeRefusal(undefined)).toBeUndefined();
    expect(tooLargeRefusal('MESSAGE_TOO_LARGE')).toBeUndefined();
    const cyclic: Error & { cause?: unknown } = new Error('loop');
    cyclic.cause = cyclic;
    expect(tooLargeRefusal(cyclic)).toBeUndefined();
  });
});

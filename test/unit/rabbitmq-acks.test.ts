import { describe, expect, it } from 'vitest';
import { AckBatcher } from '../../adapters/rabbitmq/acks.js';

/** A channel that records the acks it is asked to send (pure logic: no broker involved). */
function recordingChannel() {
  const sent: [number, boolean][] = [];
  const channel = { ack: (m: { fields: { deliveryTag: number } }, multiple = false) => sent.push([m.fields.deliveryTag, multiple]) };
  return { sent, channel: channel as never };
}

describe('AckBatcher', () => {
  it('acks a settled prefix with one multiple-ack', () => {
    const { sent, channel } = recordingChannel();
    const acks = new AckBatcher(channel, () => true);
    for (let t = 1; t <= 5; t++) acks.track(t);
    for (const t of [3, 1, 2, 5, 4]) acks.ack(t);
    acks.flush();
    expect(sent).toEqual([[5, true]]);
  });

  it('acks deliveries behind a running one singly, then the rest of the prefix later', () => {
    const { sent, channel } = recordingChannel();
    const acks = new AckBatcher(channel, () => true);
    for (let t = 1; t <= 4; t++) acks.track(t);
    acks.ack(1);
    acks.ack(3);
    acks.ack(4);
    acks.flush();
    expect(sent).toEqual([[1, true], [3, false], [4, false]]);
    sent.length = 0;
    acks.track(5);
    acks.ack(2);
    acks.ack(5);
    acks.flush();
    // 3 and 4 were already acked and left the order: the prefix is 2, then 5.
    expect(sent).toEqual([[5, true]]);
  });

  it('a released (nacked) delivery does not block the prefix and is never acked', () => {
    const { sent, channel } = recordingChannel();
    const acks = new AckBatcher(channel, () => true);
    for (let t = 1; t <= 3; t++) acks.track(t);
    acks.release(2);
    acks.ack(1);
    acks.ack(3);
    acks.flush();
    expect(sent).toEqual([[3, true]]);
    acks.track(4);
    acks.release(4);
    acks.flush();
    expect(sent).toEqual([[3, true]]);
  });

  it('sends nothing once the channel is gone', () => {
    const { sent, channel } = recordingChannel();
    let open = true;
    const acks = new AckBatcher(channel, () => open);
    acks.track(1);
    acks.ack(1);
    open = false;
    acks.flush();
    expect(sent).toEqual([]);
  });

  it('flushes by itself on the next turn of the event loop', async () => {
    const { sent, channel } = recordingChannel();
    const acks = new AckBatcher(channel, () => true);
    acks.track(1);
    acks.track(2);
    acks.ack(1);
    acks.ack(2);
    expect(sent).toEqual([]);
    await new Promise((r) => setImmediate(r));
    expect(sent).toEqual([[2, true]]);
  });
});

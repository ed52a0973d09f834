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

  it('never names a tag acked singly before as the multiple-ack tag (the broker would close the channel)', () => {
    const { sent, channel } = recordingChannel();
    const acks = new AckBatcher(channel, () => true);
    for (let t = 1; t <= 3; t++) acks.track(t);
    acks.ack(2);
    acks.ack(3);
    acks.flush();
    expect(sent).toEqual([[2, false], [3, false]]);
    sent.length = 0;
    acks.ack(1);
    acks.flush();
    // 2 and 3 are no longer outstanding: the multiple ack is on 1, the highest acked in this flush.
    expect(sent).toEqual([[1, true]]);
  });

  it('a released tag at the end of the prefix is covered but not named', () => {
    const { sent, channel } = recordingChannel();
    const acks = new AckBatcher(channel, () => true);
    for (let t = 1; t <= 3; t++) acks.track(t);
    acks.ack(1);
    acks.release(2);
    acks.release(3);
    acks.flush();
    expect(sent).toEqual([[1, true]]);
  });

  it('ignores a second ack, an ack after a release and an untracked tag', () => {
    const { sent, channel } = recordingChannel();
    const acks = new AckBatcher(channel, () => true);
    for (let t = 1; t <= 3; t++) acks.track(t);
    acks.ack(1);
    acks.ack(1);
    acks.release(2);
    acks.ack(2);
    acks.ack(99);
    acks.flush();
    expect(sent).toEqual([[1, true]]);
  });

  it('sends one multiple-ack per turn of the event loop however many acks arrive in it', async () => {
    const { sent, channel } = recordingChannel();
    const acks = new AckBatcher(channel, () => true);
    for (let t = 1; t <= 1000; t++) acks.track(t);
    for (let t = 1000; t >= 1; t--) acks.ack(t);
    await new Promise((r) => setImmediate(r));
    expect(sent).toEqual([[1000, true]]);
  });

  it('random acks, releases and flushes against a model broker: every ack names an outstanding tag, nothing released is acked, nothing stays unacked', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let round = 0; round < 50; round++) {
      const outstanding = new Set<number>();
      const released = new Set<number>();
      const acked = new Set<number>();
      const channel = {
        ack: (m: { fields: { deliveryTag: number } }, multiple = false) => {
          const tag = m.fields.deliveryTag;
          // What RabbitMQ checks: the named tag must be outstanding, or the channel is closed.
          expect(outstanding.has(tag), `ack of unknown tag ${tag}`).toBe(true);
          for (const t of multiple ? [...outstanding].filter((t) => t <= tag) : [tag]) {
            expect(released.has(t)).toBe(false);
            outstanding.delete(t);
            acked.add(t);
          }
        },
      };
      const acks = new AckBatcher(channel as never, () => true);
      let next = 1;
      const open: number[] = [];
      for (let step = 0; step < 400; step++) {
        const r = random();
        if (r < 0.4 || open.length === 0) {
          const tag = next;
          next += 1 + Math.floor(random() * 2); // tags increase; gaps are fine
          acks.track(tag);
          outstanding.add(tag);
          open.push(tag);
        } else if (r < 0.85) {
          const [tag] = open.splice(Math.floor(random() * open.length), 1);
          acks.ack(tag!);
        } else if (r < 0.95) {
          const [tag] = open.splice(Math.floor(random() * open.length), 1);
          outstanding.delete(tag!); // the nack, sent by the delivery itself
          released.add(tag!);
          acks.release(tag!);
        } else acks.flush();
      }
      for (const tag of open.splice(0)) acks.ack(tag);
      acks.flush();
      expect([...outstanding]).toEqual([]);
      for (const tag of released) expect(acked.has(tag)).toBe(false);
    }
  });
});

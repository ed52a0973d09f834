/**
 * The NATS adapter's client shim without a server: which generation is chosen (the rule in
 * docs/nats.md), the delivery info read from a JetStream reply subject, what each
 * acknowledgement sends, and (at compile time) that both generations' objects fit the adapter's
 * structural types. Messages through a real server on both generations: test/integration/nats-*.
 */
import type * as V2 from 'nats';
import type * as V3 from '@nats-io/transport-node';
import type * as V3Js from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { chooseGeneration, connectionGeneration, generationOption, type ConsumerConfig, type JetStreamManager, type Msg, type MsgHdrs, type NatsConnectOptions, type NatsConnection } from '../../adapters/nats/client.js';
import { natsConsumer, natsSubscriber, type JsMsg } from '../../adapters/nats/index.js';
import { parseDeliveryInfo, PulledJsMsg } from '../../adapters/nats/jsmsg.js';

// Compile-time: a connection of either generation can be passed as `connection`; sluice's JsMsg
// is still a `nats` 2.x JsMsg for code written against that type.
declare const objects: {
  v2: { nc: V2.NatsConnection; msg: V2.Msg; hdrs: V2.MsgHdrs; jsm: V2.JetStreamManager; opts: Omit<V2.ConnectionOptions, 'servers'>; config: Partial<V2.ConsumerConfig> };
  v3: { nc: V3.NatsConnection; msg: V3.Msg; hdrs: V3.MsgHdrs; jsm: V3Js.JetStreamManager; opts: Omit<V3.NodeConnectionOptions, 'servers'>; config: Partial<V3Js.ConsumerConfig> };
  jsMsg: JsMsg;
};
export function typeChecks(): unknown[] {
  const v2: [NatsConnection, Msg, MsgHdrs, JetStreamManager] = [objects.v2.nc, objects.v2.msg, objects.v2.hdrs, objects.v2.jsm];
  const v3: [NatsConnection, Msg, MsgHdrs, JetStreamManager] = [objects.v3.nc, objects.v3.msg, objects.v3.hdrs, objects.v3.jsm];
  const jsMsg: V2.JsMsg = objects.jsMsg;
  // Options typed with either package's types can be handed to sluice as they are.
  const options: [NatsConnectOptions, ConsumerConfig, NatsConnectOptions, ConsumerConfig] = [objects.v2.opts, objects.v2.config, objects.v3.opts, objects.v3.config];
  return [v2, v3, jsMsg, options];
}

const v2Like = { jetstream() {}, jetstreamManager() {}, publish() {}, subscribe() {}, status() {} };
const v3Like = { publish() {}, subscribe() {}, status() {} };

describe('which NATS client generation', () => {
  it('a given connection decides: nats 2.x connections have jetstream(), 3.x ones do not', () => {
    expect(connectionGeneration(v2Like)).toBe('v2');
    expect(connectionGeneration(v3Like)).toBe('v3');
    // Whatever else is said, the connection's own generation is used …
    expect(chooseGeneration('t', { connection: v3Like, env: 'v2', appDependencies: () => ['v2'] })).toBe('v3');
    expect(chooseGeneration('t', { connection: v2Like, env: 'v3' })).toBe('v2');
    expect(chooseGeneration('t', { connection: v2Like, client: 'v2' })).toBe('v2');
    // … and a `client` option that contradicts it is an error naming both.
    expect(() => chooseGeneration('natsConsumer("S"/"d")', { connection: v2Like, client: 'v3' })).toThrow(/natsConsumer\("S"\/"d"\): option "client" is 'v3' but the given connection is a nats \(2\.x\) connection/);
  });

  it('without a connection: the client option, then SLUICE_NATS_CLIENT, then the app package.json, then undefined (whichever is installed, nats first)', () => {
    let looked = 0;
    const app = (deps: ('v2' | 'v3')[]) => () => (looked++, deps);
    expect(chooseGeneration('t', { client: 'v3', env: 'v2', appDependencies: app(['v2']) })).toBe('v3');
    expect(chooseGeneration('t', { env: 'v3', appDependencies: app(['v2']) })).toBe('v3');
    expect(chooseGeneration('t', { env: 'v2', appDependencies: app(['v3']) })).toBe('v2');
    expect(looked).toBe(0); // package.json is read only when nothing before it decided
    expect(chooseGeneration('t', { env: '', appDependencies: app(['v3']) })).toBe('v3');
    expect(chooseGeneration('t', { appDependencies: app(['v2']) })).toBe('v2');
    expect(chooseGeneration('t', { appDependencies: app(['v2', 'v3']) })).toBeUndefined();
    expect(chooseGeneration('t', { appDependencies: app([]) })).toBeUndefined();
    expect(() => chooseGeneration('t', { env: '3' })).toThrow(/SLUICE_NATS_CLIENT must be 'v2' or 'v3', got "3"/);
  });

  it('the client option is validated at construction, naming the consumer and the value', () => {
    expect(generationOption('o', undefined)).toBeUndefined();
    expect(() => generationOption('o', 'nats')).toThrow(/o: option "client" must be 'v2'.*got "nats"/);
    expect(() => natsConsumer({ servers: 'nats://127.0.0.1:1', stream: 'S', durable: 'd', client: 'v4' as never, pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {} })).toThrow(
      /natsConsumer\("S"\/"d"\): option "client" must be/,
    );
    expect(() => natsSubscriber({ connection: {} as never, subject: 's', pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {} })).toThrow(/option "connection" must be a NatsConnection/);
  });
});

describe('a pulled JetStream message', () => {
  const sent: { payload: string; reply?: string }[] = [];
  const raw = (reply: string): Msg =>
    ({
      subject: 'orders.eu',
      sid: 1,
      reply,
      data: new TextEncoder().encode('{"n":1}'),
      respond(payload?: Uint8Array | string, opts?: { reply?: string }) {
        sent.push({ payload: typeof payload === 'string' ? payload : new TextDecoder().decode(payload), ...(opts?.reply ? { reply: opts.reply } : {}) });
        return true;
      },
      json: () => ({ n: 1 }),
      string: () => '{"n":1}',
    }) as unknown as Msg;

  it('reads the delivery info from the reply subject, with and without domain and account hash', () => {
    expect(parseDeliveryInfo('$JS.ACK.ORDERS.workers.3.120.77.1700000000123456789.5')).toMatchObject({
      domain: '',
      stream: 'ORDERS',
      consumer: 'workers',
      deliveryCount: 3,
      redeliveryCount: 3,
      redelivered: true,
      streamSequence: 120,
      deliverySequence: 77,
      pending: 5,
    });
    expect(parseDeliveryInfo('$JS.ACK.hub.ACCHASH.ORDERS.workers.1.9.9.1700000000123456789.0.rnd')).toMatchObject({ domain: 'hub', account_hash: 'ACCHASH', stream: 'ORDERS', deliveryCount: 1, redelivered: false });
    expect(parseDeliveryInfo('$JS.ACK._.ACCHASH.ORDERS.workers.1.9.9.1700000000123456789.0.rnd').domain).toBe('');
    expect(() => parseDeliveryInfo('_INBOX.abc')).toThrow(/not a JetStream message/);
  });

  it('sends +ACK, -NAK, -NAK {delay}, +WPI, +TERM to the reply subject; nothing after a final one but working()', () => {
    sent.length = 0;
    const m = new PulledJsMsg(raw('$JS.ACK.ORDERS.workers.2.10.4.1700000000000000000.0'));
    expect([m.seq, m.redelivered, m.info.deliveryCount, m.time.toISOString()]).toEqual([10, true, 2, '2023-11-14T22:13:20.000Z']);
    m.working();
    m.working();
    m.nak(1500);
    m.ack();
    m.term();
    expect(sent.map((s) => s.payload)).toEqual(['+WPI', '+WPI', '-NAK {"delay":1500000000}']);
    sent.length = 0;
    new PulledJsMsg(raw('$JS.ACK.S.c.1.1.1.1.0')).ack();
    new PulledJsMsg(raw('$JS.ACK.S.c.1.1.1.1.0')).nak();
    new PulledJsMsg(raw('$JS.ACK.S.c.1.1.1.1.0')).term();
    new PulledJsMsg(raw('$JS.ACK.S.c.1.1.1.1.0')).term('poison');
    new PulledJsMsg(raw('$JS.ACK.S.c.1.1.1.1.0')).next('_INBOX.x', { batch: 5 });
    expect(sent).toEqual([{ payload: '+ACK' }, { payload: '-NAK' }, { payload: '+TERM' }, { payload: '+TERM poison' }, { payload: '+NXT {"batch":5,"no_wait":false}', reply: '_INBOX.x' }]);
  });
});

/**
 * TLS settings in socketOptions with an amqp:// address: amqplib would ignore them and connect in
 * plaintext, so the consumer and the publisher refuse it at construction.
 */
import { describe, expect, it } from 'vitest';
import { rabbitConsumer, rabbitPublisher } from '../../adapters/rabbitmq/index.js';

const base = { queue: 'orders', pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {} };
const ca = Buffer.from('-----BEGIN CERTIFICATE-----\n');

describe('RabbitMQ TLS options', () => {
  it('TLS settings with an amqp:// URL throw at construction, naming the setting and the address (password removed)', () => {
    expect(() => rabbitConsumer({ ...base, url: 'amqp://svc:s3cret@broker:5672/orders', socketOptions: { ca, cert: ca } })).toThrow(
      'rabbitConsumer("orders"): option "socketOptions" has TLS settings (ca, cert) but option "url" (amqp://svc:***@broker:5672/orders) is not amqps://: it would connect without TLS',
    );
    expect(() => rabbitConsumer({ ...base, url: ['amqps://a:5671', 'amqp://b:5672'], socketOptions: { ca } })).toThrow(/option "url\[1\]" \(amqp:\/\/b:5672\) is not amqps/);
    expect(() => rabbitConsumer({ ...base, url: { hostname: 'broker', port: 5672 }, socketOptions: { key: ca } })).toThrow(/TLS settings \(key\).*is not amqps/);
  });

  it('amqps URLs and connect objects with protocol amqps take them; without TLS settings amqp:// is fine', () => {
    expect(() => rabbitConsumer({ ...base, url: 'AMQPS://svc:pw@broker:5671', socketOptions: { ca } })).not.toThrow();
    expect(() => rabbitConsumer({ ...base, url: { protocol: 'amqps', hostname: 'broker' }, socketOptions: { ca } })).not.toThrow();
    expect(() => rabbitConsumer({ ...base, url: 'amqp://broker', socketOptions: { timeout: 1000, clientProperties: {} } })).not.toThrow();
  });

  it('the publisher refuses it too, before connecting', async () => {
    await expect(rabbitPublisher({ url: 'amqp://127.0.0.1:1', socketOptions: { ca } })).rejects.toThrow(/rabbitPublisher: option "socketOptions" has TLS settings \(ca\)/);
  });
});

describe('RabbitMQ URL options', () => {
  it('a URL amqplib cannot read throws at construction, without its password, saying to percent-encode', () => {
    const build = (url: string) => () => rabbitConsumer({ ...base, url });
    expect(build('amqp://svc:Pw#sl/7f@mq:5672/v')).toThrow(
      'rabbitConsumer("orders"): option "url" (amqp://svc:***@mq:5672/v) is not an amqp:// or amqps:// URL; percent-encode special characters of the user name and password (encodeURIComponent)',
    );
    expect(build('http://mq:15672')).toThrow(/option "url" \(http:\/\/mq:15672\) is not an amqp:\/\/ or amqps:\/\/ URL/);
    expect(() => rabbitConsumer({ ...base, url: ['amqp://a', 'mq:5672'] })).toThrow(/option "url\[1\]" \(mq:5672\)/);
    expect(build(`amqp://svc:${encodeURIComponent('Pw#sl/7f')}@mq:5672/v?heartbeat=10`)).not.toThrow();
  });
});

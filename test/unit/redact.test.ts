/** Passwords out of URLs in text, also when they were not percent-encoded (the URL then does not parse, and is shown as written). */
import { describe, expect, it } from 'vitest';
import { redactError, redactText, redactUrl } from '../../src/redact.js';

describe('redaction', () => {
  it('removes the password of a well-formed URL and keeps the rest', () => {
    expect(redactUrl('amqps://svc:S3cr%2Ft@mq:5671/orders')).toBe('amqps://svc:***@mq:5671/orders');
    expect(redactText('RabbitMQ at amqp://a:p1@h1:5672, amqp://b:p2@h2:5672 refused')).toBe('RabbitMQ at amqp://a:***@h1:5672, amqp://b:***@h2:5672 refused');
    expect(redactUrl('amqp://h:5672/v')).toBe('amqp://h:5672/v');
    expect(redactText('nats://h:4222 and mail to ops@example.com')).toBe('nats://h:4222 and mail to ops@example.com');
  });

  it.each([
    ['a slash', 'amqp://svc:pa/ss@mq:5672/v', 'amqp://svc:***@mq:5672/v'],
    ['an at sign', 'amqp://svc:p@ss@mq:5672', 'amqp://svc:***@mq:5672'],
    ['# and ?', 'amqps://svc:Pw#sl?7f@mq/v', 'amqps://svc:***@mq/v'],
    ['all of them', 'amqps://svc:Pw#sluice/7f3a@orders!@127.0.0.1:5741/sec-orders', 'amqps://svc:***@127.0.0.1:5741/sec-orders'],
  ])('removes a password that was not percent-encoded, with %s', (_what, url, redacted) => {
    expect(redactUrl(url)).toBe(redacted);
    expect(redactText(`could not connect to ${url} after 3 attempt(s)`)).toBe(`could not connect to ${redacted} after 3 attempt(s)`);
    expect(redactError(new Error(`at ${url}: refused`))).toBe(`at ${redacted}: refused`);
  });

  it('a password with a space: the whole of it when the text is the URL', () => {
    expect(redactUrl('amqp://svc:pa ss@mq')).toBe('amqp://svc:***@mq');
  });
});

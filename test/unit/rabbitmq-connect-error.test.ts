/**
 * explainConnectError on the errors amqplib and Node give for refused RabbitMQ connections, as
 * seen against a real RabbitMQ 3.10 over TLS (test/faults/rabbitmq-security.test.ts runs them for real).
 */
import { describe, expect, it } from 'vitest';
import { explainConnectError } from '../../adapters/rabbitmq/connect-error.js';

const failure = (message: string, code?: string) => Object.assign(new Error(message), code ? { code } : {});
const URL = 'amqps://orders-svc:S3cr%23t%2Fpw@broker.test:5671/orders';

describe('explainConnectError', () => {
  it('a refused vhost names the vhost and the user (amqplib drops the broker reason)', () => {
    const cause = failure('Expected ConnectionOpenOk; got <ConnectionClose channel:0>');
    const error = explainConnectError(cause, URL);
    expect(error.message).toMatch(/^access to vhost "orders" refused for user "orders-svc": the vhost does not exist, the user has no permissions on it/);
    expect(error.cause).toBe(cause);
    expect(explainConnectError(cause, 'amqp://broker.test').message).toContain('access to vhost "/" refused for user "guest"');
    expect(explainConnectError(cause, { hostname: 'h', username: 'u', password: 'p', vhost: 'v' }).message).toContain('vhost "v" refused for user "u"');
  });

  it('a refused login names the user and keeps the broker text', () => {
    const broker = 'Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN."';
    const message = explainConnectError(failure(broker), URL).message;
    expect(message).toMatch(/^login refused for user "orders-svc"/);
    expect(message).toContain('ACCESS_REFUSED');
  });

  it("says whose certificate failed: the broker's (did not verify, wrong host) or ours (the broker's alert)", () => {
    expect(explainConnectError(failure('self-signed certificate in certificate chain', 'SELF_SIGNED_CERT_IN_CHAIN'), URL).message).toBe(
      "the broker's TLS certificate did not verify (SELF_SIGNED_CERT_IN_CHAIN): self-signed certificate in certificate chain; give the CA that signed it as socketOptions.ca",
    );
    const altname = "Hostname/IP does not match certificate's altnames: IP: 127.0.0.2 is not in the cert's list: 127.0.0.1";
    expect(explainConnectError(failure(altname, 'ERR_TLS_CERT_ALTNAME_INVALID'), URL).message).toMatch(
      /^the broker's TLS certificate does not name the host connected to \(ERR_TLS_CERT_ALTNAME_INVALID\)/,
    );
    const alert =
      '80BC427D1E7F0000:error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1601:SSL alert number 116\n';
    expect(explainConnectError(failure(alert, 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED'), URL).message).toMatch(
      /^the broker ended the TLS handshake \(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED\): alert certificate required; .*socketOptions\.cert and key/,
    );
    expect(explainConnectError(failure('…wrong version number…', 'ERR_SSL_WRONG_VERSION_NUMBER'), URL).message).toMatch(/^the port does not speak TLS/);
  });

  it('anything else passes through, first line only, URL passwords removed', () => {
    expect(explainConnectError(failure('connect ECONNREFUSED 127.0.0.1:5671', 'ECONNREFUSED'), URL).message).toBe('connect ECONNREFUSED 127.0.0.1:5671');
    const message = explainConnectError(failure(`bad ${URL}\nmore`), URL).message;
    expect(message).toBe('bad amqps://orders-svc:***@broker.test:5671/orders');
  });
});

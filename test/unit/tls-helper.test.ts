/** test/helpers/tls.ts: the CA and certificates it makes verify (or not) as a TLS test needs, with Node's own TLS. */
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { connect, createServer, type ConnectionOptions } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCA, type CertificateAuthority, type IssuedCertificate } from '../helpers/tls.js';

let ca: CertificateAuthority;
let other: CertificateAuthority;
let client: IssuedCertificate;
let port: number;
const server = createServer({ requestCert: true, rejectUnauthorized: true }, (socket) => socket.end('hello'));

beforeAll(async () => {
  [ca, other] = await Promise.all([createCA(), createCA({ name: 'another CA' })]);
  const cert = await ca.issue('localhost', { altNames: ['127.0.0.1', 'localhost'] });
  client = await ca.issue('a client', { client: true });
  server.setSecureContext({ cert: cert.cert, key: cert.key, ca: ca.cert });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as { port: number }).port;
}, 60_000);

afterAll(async () => {
  server.close();
  await ca?.dispose();
  await other?.dispose();
});

/** 'ok' once the server's greeting arrives over a verified connection, else the error's code. */
function talk(options: ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', ...options }, () => socket.once('data', () => resolve('ok')));
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    // TLS 1.3: a client certificate the server refuses shows after the handshake, as an alert or a close.
    socket.on('close', () => resolve('closed'));
  });
}

describe('test/helpers/tls', () => {
  it('a server certificate verifies against its CA, with a client certificate of the same CA', async () => {
    expect(await talk({ ca: ca.cert, cert: client.cert, key: client.key })).toBe('ok');
    expect(client.caPath).toBe(ca.certPath);
  });

  it('not against another CA, not for a host it does not name, and a client certificate of another CA is refused', async () => {
    expect(await talk({ ca: other.cert, cert: client.cert, key: client.key })).toBe('SELF_SIGNED_CERT_IN_CHAIN');
    expect(await talk({ ca: ca.cert, cert: client.cert, key: client.key, servername: 'elsewhere.test' })).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    const foreign = await other.issue('a stranger', { client: true });
    expect(await talk({ ca: ca.cert, cert: foreign.cert, key: foreign.key })).not.toBe('ok');
  });

  it('dispose() removes the files', async () => {
    const temporary = await createCA();
    const issued = await temporary.issue('x');
    await temporary.dispose();
    expect(existsSync(issued.keyPath) || existsSync(temporary.dir)).toBe(false);
  });
});

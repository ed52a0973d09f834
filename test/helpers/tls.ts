/**
 * Throwaway certificate authorities and certificates for TLS tests, made with the `openssl` binary
 * (OpenSSL 1.1.1 or 3.x) in a temp dir that `dispose()` removes (or, if the process ends first,
 * an exit handler). Keys are EC P-256: fast to make, and taken by Node, Erlang (RabbitMQ), Go
 * (nats-server) and Java (Kafka, PEM stores).
 *
 *   const ca = await createCA({ name: 'sluice test CA' });
 *   const server = await ca.issue('localhost', { altNames: ['localhost', '127.0.0.1'] });
 *   const client = await ca.issue('sluice-consumer', { client: true });
 *   tls.connect({ host: '127.0.0.1', port, ca: ca.cert, cert: client.cert, key: client.key });
 *   // brokers take paths: server.certPath, server.keyPath, ca.certPath
 *   const rogue = await createCA({ name: 'another CA' });   // its certificates do not verify against `ca`
 *   await ca.dispose(); await rogue.dispose();
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A certificate and its private key, as PEM files and as their contents. */
export interface Pem {
  readonly certPath: string;
  readonly keyPath: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export interface IssueOptions {
  /**
   * Subject alternative names: `'localhost'` / `'127.0.0.1'` (DNS or IP, told apart) or already
   * typed (`'DNS:broker.test'`, `'IP:::1'`). Default: none (a client certificate needs none; a
   * server's host name is checked against these, not the common name).
   */
  altNames?: string[];
  /**
   * true: a client certificate (extended key usage clientAuth) instead of a server one
   * (serverAuth); 'also': both, for a node that is server and client to its peers (a broker cluster).
   */
  client?: boolean | 'also';
  /** Validity in days from now. Default 2. */
  days?: number;
}

export interface IssuedCertificate extends Pem {
  readonly commonName: string;
  /** The issuing CA's certificate path: what the other side trusts. */
  readonly caPath: string;
}

export interface CertificateAuthority extends Pem {
  readonly name: string;
  /** The temp dir holding this CA and everything it issued. */
  readonly dir: string;
  /** Issues a certificate signed by this CA (a new key each time). */
  issue(commonName: string, options?: IssueOptions): Promise<IssuedCertificate>;
  /** Removes the temp dir. */
  dispose(): Promise<void>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (error) {
    const e = error as { code?: unknown; stderr?: string };
    if (e.code === 'ENOENT') throw new Error('openssl not found: install it (Debian: apt-get install openssl)');
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.trim() || String(error)}`, { cause: error });
  }
}

function pem(certPath: string, keyPath: string): Pem {
  return { certPath, keyPath, cert: readFileSync(certPath), key: readFileSync(keyPath) };
}

/** File-name-safe, distinct per certificate. */
function fileStem(commonName: string): string {
  return `${commonName.replace(/[^A-Za-z0-9.-]+/g, '_').slice(0, 40)}-${randomBytes(3).toString('hex')}`;
}

function typedAltName(name: string): string {
  if (/^(DNS|IP|email|URI):/.test(name)) return name;
  return isIP(name) ? `IP:${name}` : `DNS:${name}`;
}

/** A self-signed CA (basicConstraints CA:TRUE) in a new temp dir. */
export async function createCA(options: { name?: string; days?: number } = {}): Promise<CertificateAuthority> {
  const name = options.name ?? 'sluice test CA';
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tls-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  process.once('exit', cleanup);
  const certPath = join(dir, 'ca.crt');
  const keyPath = join(dir, 'ca.key');
  try {
    await openssl(
      [
        'req', '-x509', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
        '-keyout', keyPath, '-out', certPath, '-days', String(options.days ?? 2), '-subj', `/CN=${name}`,
        '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      ],
      dir,
    );
  } catch (error) {
    cleanup();
    process.removeListener('exit', cleanup);
    throw error;
  }
  const self = pem(certPath, keyPath);
  return {
    ...self,
    name,
    dir,
    async issue(commonName, { altNames = [], client = false, days = 2 } = {}) {
      const stem = join(dir, fileStem(commonName));
      const [key, csr, crt, ext] = ['.key', '.csr', '.crt', '.ext'].map((suffix) => stem + suffix) as [string, string, string, string];
      writeFileSync(
        ext,
        [
          'basicConstraints = critical, CA:FALSE',
          'keyUsage = critical, digitalSignature, keyEncipherment',
          `extendedKeyUsage = ${client === 'also' ? 'serverAuth, clientAuth' : client ? 'clientAuth' : 'serverAuth'}`,
          ...(altNames.length > 0 ? [`subjectAltName = ${altNames.map(typedAltName).join(', ')}`] : []),
        ].join('\n') + '\n',
      );
      await openssl(
        ['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-keyout', key, '-out', csr, '-subj', `/CN=${commonName}`],
        dir,
      );
      await openssl(
        [
          'x509', '-req', '-in', csr, '-CA', certPath, '-CAkey', keyPath, '-set_serial', `0x${randomBytes(8).toString('hex')}`,
          '-days', String(days), '-sha256', '-extfile', ext, '-out', crt,
        ],
        dir,
      );
      return { ...pem(crt, key), commonName, caPath: certPath };
    },
    async dispose() {
      process.removeListener('exit', cleanup);
      cleanup();
    },
  };
}

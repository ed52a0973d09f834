import type { Options } from 'amqplib';
import { redactError } from '../../src/redact.js';

/**
 * Why amqplib could not open a connection, in words an operator can act on. amqplib reports a
 * refused vhost as "Expected ConnectionOpenOk; got <ConnectionClose channel:0>" (the broker's
 * reason is dropped), and Node reports TLS failures without saying whose certificate failed.
 * The result never holds a password; the original error is its `cause`.
 */
export function explainConnectError(error: unknown, address: string | Options.Connect): Error {
  const detail = redactError(error).trim().split('\n')[0]!;
  const code = (error as { code?: unknown } | null)?.code;
  const { user, vhost } = identity(address);
  let text = detail;
  if (/^Handshake terminated by server: 403/.test(detail)) {
    text = `login refused for user "${user}" (wrong user name or password, or the user may not log in from here): ${detail}`;
  } else if (/^Expected ConnectionOpenOk; got <ConnectionClose/.test(detail)) {
    text =
      `access to vhost "${vhost}" refused for user "${user}": the vhost does not exist, the user has no permissions on it, ` +
      `or its connection limit is reached (the broker's log says which)`;
  } else if (typeof code === 'string' && SERVER_CERT_REJECTED.has(code)) {
    text =
      code === 'ERR_TLS_CERT_ALTNAME_INVALID'
        ? `the broker's TLS certificate does not name the host connected to (${code}): ${detail}; connect by a name or IP the certificate lists`
        : `the broker's TLS certificate did not verify (${code}): ${detail}; give the CA that signed it as socketOptions.ca`;
  } else if (typeof code === 'string' && /^ERR_SSL_(SSLV3|TLSV1[0-9]?)_ALERT_/.test(code)) {
    text = `the broker ended the TLS handshake (${code}): ${tlsAlert(detail)}; a broker that verifies peers needs socketOptions.cert and key signed by a CA it trusts`;
  } else if (code === 'ERR_SSL_WRONG_VERSION_NUMBER') {
    text = `the port does not speak TLS (${code}; a plain AMQP listener?): amqps:// needs the broker's TLS listener (5671 by default)`;
  }
  return new Error(text, { cause: error });
}

/** Node's codes for a peer certificate that failed verification (the broker's, seen from the client). */
const SERVER_CERT_REJECTED = new Set([
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'INVALID_CA',
  'INVALID_PURPOSE',
]);

/** OpenSSL's "…:tlsv13 alert certificate required:../deps/…:SSL alert number 116" → "alert certificate required". */
function tlsAlert(detail: string): string {
  return /alert [a-z ]+/.exec(detail)?.[0].trim() ?? detail;
}

/** The user and vhost an address logs in with, as amqplib reads them (guest and "/" by default). */
function identity(address: string | Options.Connect): { user: string; vhost: string } {
  if (typeof address !== 'string') {
    const user = address.username ?? (address.password === undefined ? 'guest' : '');
    return { user, vhost: address.vhost ?? '/' };
  }
  try {
    const url = new URL(address);
    const user = url.username === '' && url.password === '' ? 'guest' : decodeURIComponent(url.username);
    return { user, vhost: url.pathname.length > 1 ? decodeURIComponent(url.pathname.slice(1)) : '/' };
  } catch {
    return { user: '?', vhost: '?' };
  }
}

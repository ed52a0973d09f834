/**
 * NATS at the protocol level, for hostile input: a client library refuses to send what another
 * client (or a hand-written one) can, such as header names with spaces or non-ASCII bytes, header
 * values with invalid UTF-8, or a status in the header line. `RawNats` speaks HPUB over a plain
 * socket; `readStream` reads a stream's messages through the JetStream API without decoding
 * their headers with the client (which throws on such names).
 */
import { connect, type Socket } from 'node:net';
import type { NatsConnection } from 'nats';
import type { HostileValue } from './hostile.js';

const CRLF = '\r\n';

/** A header block: `NATS/1.0[ status]`, then `name: value` lines, each of any bytes but CR and LF. */
export function headerBlock(lines: [Uint8Array, Uint8Array][], status = ''): Buffer {
  const parts: Buffer[] = [Buffer.from(`NATS/1.0${status ? ` ${status}` : ''}${CRLF}`)];
  for (const [name, value] of lines) parts.push(Buffer.from(name), Buffer.from(': '), Buffer.from(value), Buffer.from(CRLF));
  parts.push(Buffer.from(CRLF));
  return Buffer.concat(parts);
}

/** What a header line can carry of a name or value: CR and LF (and ':' in a name) become '_'. */
export function lineBytes(text: string | Uint8Array, isName: boolean): Uint8Array {
  const b = Buffer.from(typeof text === 'string' ? Buffer.from(text, 'utf8') : text);
  for (let i = 0; i < b.length; i++) if (b[i] === 13 || b[i] === 10 || (isName && b[i] === 58)) b[i] = 95;
  return b;
}

/** The header lines of one hostile value: a repeated header per array element, bytes as they are. */
export function valueLines(name: string, v: HostileValue): [Uint8Array, Uint8Array][] {
  const n = lineBytes(name, true);
  const one = (text: string | Uint8Array): [Uint8Array, Uint8Array] => [n, lineBytes(text, false)];
  switch (v.kind) {
    case 'array':
      return v.value.length === 0 ? [one('')] : v.value.map(one);
    case 'bytes':
      return [one(v.value)];
    case 'null':
      return [one('')];
    case 'object':
      return [one(JSON.stringify(v.value))];
    default:
      return [one(String(v.value))];
  }
}

/** A bare NATS connection that publishes with HPUB and confirms with PING/PONG. */
export class RawNats {
  #socket: Socket;
  #buffered = '';
  #waiting: (() => void)[] = [];
  readonly #errors: string[] = [];
  maxPayload = 0;

  private constructor(socket: Socket) {
    this.#socket = socket;
  }

  static async open(url: string): Promise<RawNats> {
    const { hostname, port } = new URL(url);
    const socket = connect({ host: hostname, port: Number(port) || 4222 });
    const raw = new RawNats(socket);
    const info = await new Promise<string>((resolve, reject) => {
      socket.once('error', reject);
      socket.on('data', (chunk) => raw.#read(chunk.toString('latin1'), resolve));
    });
    raw.maxPayload = (JSON.parse(info.slice('INFO '.length)) as { max_payload: number }).max_payload;
    socket.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1,"name":"sluice-hostile"}${CRLF}`);
    await raw.flush();
    return raw;
  }

  #read(text: string, onInfo: (info: string) => void): void {
    this.#buffered += text;
    for (let at = this.#buffered.indexOf(CRLF); at >= 0; at = this.#buffered.indexOf(CRLF)) {
      const line = this.#buffered.slice(0, at);
      this.#buffered = this.#buffered.slice(at + 2);
      if (line.startsWith('INFO ')) onInfo(line);
      else if (line === 'PING') this.#socket.write(`PONG${CRLF}`);
      else if (line === 'PONG') this.#waiting.shift()?.();
      else if (line.startsWith('-ERR')) this.#errors.push(line);
    }
  }

  /** Publishes with headers (HPUB); a message the server refuses shows as an -ERR at the next flush. */
  publish(subject: string, headers: Buffer, body: Uint8Array): void {
    const total = headers.length + body.length;
    this.#socket.write(Buffer.concat([Buffer.from(`HPUB ${subject} ${headers.length} ${total}${CRLF}`), headers, Buffer.from(body), Buffer.from(CRLF)]));
  }

  /** Resolves when the server has read everything sent so far; throws on any -ERR it sent. */
  async flush(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#waiting.push(resolve);
      this.#socket.write(`PING${CRLF}`);
    });
    if (this.#errors.length > 0) throw new Error(`nats-server refused: ${this.#errors.splice(0).join('; ')}`);
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** A stored message: data and headers parsed leniently from the raw header block (repeated names keep their first value). */
export interface RawStored {
  data: Buffer;
  headers: Record<string, string>;
}

/** Parses a header block as bytes; names and values as UTF-8 text (invalid bytes replaced). */
export function parseHeaderBlock(block: Buffer | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!block) return out;
  for (const line of block.toString('utf8').split(CRLF).slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon);
    if (!(name in out)) out[name] = line.slice(colon + 1).trim();
  }
  return out;
}

/** Every message of `stream` (sequence 1 …), through `$JS.API.STREAM.MSG.GET` (no client-side header decoding). */
export async function readStream(nc: NatsConnection, stream: string, count: number): Promise<RawStored[]> {
  const out: RawStored[] = [];
  for (let seq = 1; out.length < count && seq <= count * 4; seq++) {
    const reply = await nc.request(`$JS.API.STREAM.MSG.GET.${stream}`, new TextEncoder().encode(JSON.stringify({ seq })), { timeout: 5000 });
    const answer = JSON.parse(new TextDecoder().decode(reply.data)) as { message?: { data?: string; hdrs?: string }; error?: { code: number } };
    if (!answer.message) continue; // deleted or not there
    out.push({
      data: Buffer.from(answer.message.data ?? '', 'base64'),
      headers: parseHeaderBlock(answer.message.hdrs ? Buffer.from(answer.message.hdrs, 'base64') : undefined),
    });
  }
  return out;
}

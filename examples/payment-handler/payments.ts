import type { Payment } from './demo-broker.js';

/** A card the simulated gateway always declines: those payments end in the dead-letter queue. */
export const DECLINED_CARD = '4000-0000-0000-0002';

/** A deterministic burst: every 23rd payment is declined for good, every 7th fails once then succeeds. */
export function makePayments(count: number, runId: string): Payment[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `${runId}-${String(i).padStart(5, '0')}`,
    amountCents: 100 + ((i * 7919) % 100_000),
    currency: i % 3 === 0 ? 'EUR' : 'USD',
    card: i % 23 === 22 ? DECLINED_CARD : `4242-4242-4242-${String(4242 + (i % 5))}`,
  }));
}

/** The gateway's own failure (a timeout, a 503): what a circuit breaker counts. */
export class GatewayError extends Error {
  override readonly name = 'GatewayError';
}

/** The gateway answered and said no: the payment's fault, not the gateway's. */
export class CardDeclinedError extends Error {
  override readonly name = 'CardDeclinedError';
}

/** `--downstream-outage`: while `isDown()` says so, every call fails with a 503 after its usual latency. */
export interface GatewayHealth {
  isDown(): boolean;
  /** Told of each call that failed because the gateway was down. */
  failedWhileDown?(): void;
}

const seenOnce = new Set<string>();

/** The slow downstream: 10-40 ms per call, a transient timeout on the first try of every 7th payment. */
export async function chargeCard(payment: Payment, signal: AbortSignal, health?: GatewayHealth): Promise<void> {
  const ms = 10 + (Number(payment.id.slice(-5)) % 31);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
  if (health?.isDown()) {
    health.failedWhileDown?.();
    throw new GatewayError('503 card gateway unavailable');
  }
  if (payment.card === DECLINED_CARD) throw new CardDeclinedError(`card ${payment.card} declined`);
  if (Number(payment.id.slice(-5)) % 7 === 3 && !seenOnce.has(payment.id)) {
    seenOnce.add(payment.id);
    throw new GatewayError('payment gateway timed out');
  }
}

import type { Consumer, ConsumerOptions } from '../../src/index.js';

/** A payment as the demo publishes it. */
export interface Payment {
  id: string;
  amountCents: number;
  currency: string;
  /** The simulated downstream rejects these, to show retry and dead-letter. */
  card: string;
}

/**
 * What the demo needs from a broker: publish a burst, build a consumer of the demo's queue /
 * topic / subject with its dead-letter destination set, count dead letters, clean up.
 * One file per broker under ./brokers implements it.
 */
export interface DemoBroker {
  readonly name: string;
  publish(payments: Payment[]): Promise<void>;
  consumer(options: Omit<ConsumerOptions, 'name'>): Promise<Consumer>;
  /** How many messages sit in the dead-letter destination now. */
  deadLettered(): Promise<number>;
  close(): Promise<void>;
}

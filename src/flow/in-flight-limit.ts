import { integerOption } from '../validate.js';
import { ADMIT, type FlowGate, type GateDecision, type GatedConsumer } from './gate.js';

export interface InFlightLimitOptions {
  /** Messages of one consumer accepted and not yet settled, at most. Required; an integer ≥ 1. */
  max: number;
}

/**
 * The example gate: at most `max` messages of each consumer in flight, so that one consumer of a
 * shared pool cannot take all of it. Over the limit, the consumer pauses at the broker until one
 * of its messages settles. Stateless across consumers: one gate object may serve many.
 */
export class InFlightLimit implements FlowGate {
  readonly name = 'in-flight-limit';
  readonly max: number;
  /** Consumers paused by this gate, each with the resolver of its resume promise. */
  readonly #waiting = new Map<GatedConsumer, { resume: () => void; resumeWhen: Promise<void> }>();

  constructor(options: InFlightLimitOptions) {
    this.max = integerOption('InFlightLimit', 'max', options?.max, { min: 1 });
  }

  admit(_message: unknown, consumer: GatedConsumer): GateDecision {
    if (consumer.inFlight < this.max) return ADMIT;
    // Refusals while it already waits share one promise: the consumer resumes once, when room comes.
    let waiting = this.#waiting.get(consumer);
    if (waiting === undefined) {
      let resume!: () => void;
      const resumeWhen = new Promise<void>((resolve) => (resume = resolve));
      waiting = { resume, resumeWhen };
      this.#waiting.set(consumer, waiting);
    }
    return { admit: false, resumeWhen: waiting.resumeWhen };
  }

  done(_message: unknown, _outcome: unknown, consumer: GatedConsumer): void {
    // `inFlight` still counts the message being settled: room exists once it is below max - 1.
    if (consumer.inFlight - 1 >= this.max) return;
    const waiting = this.#waiting.get(consumer);
    if (waiting === undefined) return;
    this.#waiting.delete(consumer);
    waiting.resume();
  }

  capacity(consumer: GatedConsumer): number {
    return Math.max(0, this.max - consumer.inFlight);
  }
}

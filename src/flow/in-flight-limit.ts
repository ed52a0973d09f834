import { integerOption } from '../validate.js';
import { ADMIT, type FlowGate, type GateDecision, type GatedConsumer } from './gate.js';

export interface InFlightLimitOptions {
  /** Messages of one consumer admitted and not yet done (handled or failed), at most. Required; an integer ≥ 1. */
  max: number;
}

/**
 * The example gate: at most `max` messages of each consumer at a time, so that one consumer of a
 * shared pool cannot take all of it. Over the limit, the consumer pauses at the broker until one
 * of its messages is done. One gate object may serve many consumers; each has its own count.
 */
export class InFlightLimit implements FlowGate {
  readonly name = 'in-flight-limit';
  readonly max: number;
  /**
   * Per consumer: messages admitted and not yet reported done, and the resume promise of its
   * refusals. Its own count, not `consumer.inFlight`: a message is reported done before its
   * settlement is carried out, and the count must fall exactly when `done` can say so.
   */
  readonly #consumers = new Map<GatedConsumer, { admitted: number; waiting?: { resume: () => void; resumeWhen: Promise<void> } }>();

  constructor(options: InFlightLimitOptions) {
    this.max = integerOption('InFlightLimit', 'max', options?.max, { min: 1 });
  }

  admit(_message: unknown, consumer: GatedConsumer): GateDecision {
    const state = this.#state(consumer);
    if (state.admitted < this.max) {
      state.admitted++;
      return ADMIT;
    }
    // Refusals while it already waits share one promise: the consumer resumes once, when room comes.
    if (state.waiting === undefined) {
      let resume!: () => void;
      const resumeWhen = new Promise<void>((resolve) => (resume = resolve));
      state.waiting = { resume, resumeWhen };
    }
    return { admit: false, resumeWhen: state.waiting.resumeWhen };
  }

  done(_message: unknown, _outcome: unknown, consumer: GatedConsumer): void {
    const state = this.#state(consumer);
    if (state.admitted > 0) state.admitted--;
    const waiting = state.waiting;
    if (waiting === undefined || state.admitted >= this.max) return;
    state.waiting = undefined;
    waiting.resume();
  }

  capacity(consumer: GatedConsumer): number {
    return Math.max(0, this.max - this.#state(consumer).admitted);
  }

  #state(consumer: GatedConsumer) {
    let state = this.#consumers.get(consumer);
    if (state === undefined) this.#consumers.set(consumer, (state = { admitted: 0 }));
    return state;
  }
}

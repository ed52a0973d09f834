/**
 * A tiny typed event emitter. Listeners that throw are isolated (reported through
 * `onListenerError`) so that one bad metrics hook cannot break the pool or a consumer.
 */
export type Listener<T> = (payload: T) => void;

export class TypedEmitter<Events extends { [K in keyof Events]: unknown }> {
  #listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Subscribes; returns the function that unsubscribes. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(event, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.#listeners.get(event)?.delete(listener as Listener<never>);
  }

  listenerCount(event: keyof Events): number {
    return this.#listeners.get(event)?.size ?? 0;
  }

  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.#listeners.get(event);
    if (!set || set.size === 0) return;
    // A copy only when several listen (one may remove another); the usual single listener needs none.
    if (set.size === 1) {
      for (const listener of set) return this.#call(listener as Listener<Events[K]>, payload, event);
    }
    for (const listener of [...set]) this.#call(listener as Listener<Events[K]>, payload, event);
  }

  #call<T>(listener: Listener<T>, payload: T, event: PropertyKey): void {
    try {
      listener(payload);
    } catch (error) {
      this.onListenerError(error, String(event));
    }
  }

  /** Where a throwing listener's error goes; never back into the emitting code path. */
  protected onListenerError(error: unknown, event: string): void {
    queueMicrotask(() => {
      process.emitWarning(`sluice: a listener for "${event}" threw: ${String(error)}`);
    });
  }
}

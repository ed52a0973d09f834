/**
 * Commits of the @platformatic/kafka driver across a rebalance (classic group protocol).
 *
 * The client answers a commit refused because the group is rebalancing by joining the group
 * itself and sending the same offsets again under the new generation: also those of partitions
 * the new generation gave to another member, overwriting that member's newer commit (seen: a
 * partition's commit moved back from 54 to 4, and stayed there once its new owner had nothing
 * more to commit), and with a JoinGroup of its own that starts one more rebalance. So the driver
 * stops that rejoin: the refusal comes back here, this waits for the client's own rejoin (its
 * heartbeat rejoins after a rebalance) and commits again only what this member still owns. What
 * moved is its new owner's: it reads from the last commit and commits its own progress.
 */
import type { CommitOffset } from '../driver.js';
import { findError } from '../../../src/adapter/find-error.js';

type PConsumer = import('@platformatic/kafka').Consumer;

/** Errors that only mean "the group moved on" (a commit the next owner does not need). */
const REBALANCE_ERRORS = new Set(['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID', 'NOT_COORDINATOR', 'FENCED_MEMBER_EPOCH', 'STALE_MEMBER_EPOCH', 'UNRELEASED_INSTANCE_ID']);

export const isRebalance = (error: unknown) => findError(error, (e) => e.needsRejoin === true || (typeof e.apiId === 'string' && REBALANCE_ERRORS.has(e.apiId))) !== undefined;

/** A group error after which the client rejoins by itself (its heartbeat meets the same one). */
const needsRejoin = (error: unknown) => findError(error, (e) => e.needsRejoin === true) !== undefined;

/** What the client's commit rejects with in place of its own rejoin: a rebalance error (`needsRejoin`). */
class CommitRefusedByRebalance extends Error {
  readonly needsRejoin = true;
  constructor() {
    super('the commit was refused: the group is rebalancing (sent again once the member has rejoined)');
  }
}

export class RebalanceAwareCommits {
  #committing = 0;
  #joins = 0;
  readonly #waiters = new Set<(joined: boolean) => void>();

  /** `limitMs`: how long a refused commit waits for the rejoin (the broker ends a join phase within the rebalance timeout). */
  constructor(
    private readonly client: PConsumer,
    private readonly limitMs: number,
  ) {
    // The client's commit calls its public joinGroup (with a callback) to rejoin and resend; the
    // driver joins with a promise, and the heartbeat's rejoin is the client's private one.
    const join = client.joinGroup.bind(client) as (options: unknown, callback?: (error: Error | null) => void) => unknown;
    client.joinGroup = ((options: unknown, callback?: (error: Error | null) => void) => {
      if (this.#committing > 0 && typeof callback === 'function') return void callback(new CommitRefusedByRebalance());
      return join(options, callback);
    }) as PConsumer['joinGroup'];
    client.on('consumer:group:join', () => this.#settle(true));
  }

  /** The member crashed or leaves: nobody waits for a rejoin any more. */
  interrupted(): void {
    this.#settle(false);
  }

  /** Commits under the current generation; refused by a rebalance, again under the next one for the partitions still assigned here. */
  async commit(offsets: CommitOffset[]): Promise<void> {
    const deadline = Date.now() + this.limitMs;
    for (;;) {
      const joins = this.#joins;
      try {
        await this.#send(offsets);
        return;
      } catch (error) {
        if (!needsRejoin(error)) throw error;
        // A rejoin completed while the commit was out: no need to wait for one.
        if (this.#joins === joins && !(await this.#rejoined(deadline - Date.now()))) throw error;
        offsets = offsets.filter(({ topic, partition }) => this.client.assignments?.some((a) => a.topic === topic && a.partitions.includes(partition)));
        if (offsets.length === 0) return;
      }
    }
  }

  async #send(offsets: CommitOffset[]): Promise<void> {
    this.#committing++;
    try {
      await this.client.commit({ offsets: offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset: BigInt(offset), leaderEpoch: -1 })) });
    } finally {
      this.#committing--;
    }
  }

  /** True once the client has joined again (a SyncGroup gave it an assignment), false after `ms` or when interrupted. */
  #rejoined(ms: number): Promise<boolean> {
    if (ms <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(false), ms);
      const done = (joined: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve(joined);
      };
      this.#waiters.add(done);
    });
  }

  #settle(joined: boolean): void {
    if (joined) this.#joins++;
    for (const waiter of [...this.#waiters]) waiter(joined);
  }
}

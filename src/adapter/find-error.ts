/** An error as found in a client's error tree: any fields the client put on it. */
export type FoundError = Error & Record<string, unknown>;

/**
 * The first error in `error`'s tree that `match` accepts: the error itself, then, depth first, the
 * ones it wraps — `errors` (an AggregateError, @platformatic/kafka's MultipleErrors), `cause`, and
 * kafkajs's `originalError`. Six levels at most, so a cycle ends. Undefined when none matches.
 */
export function findError(error: unknown, match: (e: FoundError) => boolean, depth = 0): FoundError | undefined {
  if (typeof error !== 'object' || error === null || depth > 5) return undefined;
  const e = error as FoundError;
  if (match(e)) return e;
  if (Array.isArray(e.errors)) {
    for (const inner of e.errors) {
      const found = findError(inner, match, depth + 1);
      if (found) return found;
    }
  }
  return findError(e.cause, match, depth + 1) ?? findError(e.originalError, match, depth + 1);
}

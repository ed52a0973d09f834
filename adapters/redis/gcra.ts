import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * GCRA (generic cell rate algorithm) over one key, in one atomic script, on Redis's own clock
 * (`TIME`), so that the processes sharing the limit need no synchronised clocks.
 *
 * The key holds the theoretical arrival time (TAT) in microseconds. A grant of n tokens moves it
 * n intervals ahead; a grant is allowed while TAT − now stays within the tolerance
 * (burst × interval). Hence, over any window of t seconds, the tokens granted — summed over
 * every process — are at most rate·t + burst. The script grants up to `want` tokens at once (a
 * lease); with none to give it answers how long until `want` are there, so a waiting process
 * asks again once rather than polling.
 *
 * KEYS[1]  the limit's key
 * ARGV[1]  interval between tokens, µs (may be fractional)
 * ARGV[2]  tolerance, µs: burst × interval
 * ARGV[3]  want: tokens asked for, an integer ≥ 1
 * returns  { granted, waitUs }: granted ∈ 0..want; when 0, µs until `want` tokens are there
 */
export const GCRA_SCRIPT = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local available = math.floor((tolerance - (tat - now)) / interval + 1e-9)
if available >= 1 then
  local granted = math.min(want, available)
  tat = tat + granted * interval
  -- Past its TAT the bucket is full, which is what a missing key means too: let it expire then.
  redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  return { granted, 0 }
end
local need = math.min(want, math.floor(tolerance / interval + 1e-9))
return { 0, math.ceil(tat + need * interval - tolerance - now) }
`;

export const GCRA_SHA = createHash('sha1').update(GCRA_SCRIPT).digest('hex');

export interface Grant {
  granted: number;
  /** When nothing was granted: milliseconds until the tokens asked for are there. */
  waitMs: number;
}

/** One call of the script: EVALSHA, and EVAL when the server does not have it (restarted, flushed, failed over). */
export async function takeTokens(redis: Redis, key: string, intervalUs: number, toleranceUs: number, want: number): Promise<Grant> {
  const args = [key, String(intervalUs), String(toleranceUs), String(want)] as const;
  let reply: unknown;
  try {
    reply = await redis.evalsha(GCRA_SHA, 1, ...args);
  } catch (error) {
    if (!(error instanceof Error) || !/NOSCRIPT/.test(error.message)) throw error;
    reply = await redis.eval(GCRA_SCRIPT, 1, ...args);
  }
  if (!Array.isArray(reply) || reply.length !== 2) throw new Error(`unexpected reply from the rate-limit script: ${JSON.stringify(reply)}`);
  const [granted, waitUs] = reply.map(Number) as [number, number];
  return { granted, waitMs: waitUs / 1000 };
}

/** Loads the script (and so checks that Redis answers and runs scripts); the SHA must be ours. */
export async function loadScript(redis: Redis): Promise<void> {
  const sha = await redis.script('LOAD', GCRA_SCRIPT);
  if (sha !== GCRA_SHA) throw new Error(`Redis returned SHA ${String(sha)} for the rate-limit script, expected ${GCRA_SHA}`);
}

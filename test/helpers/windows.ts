/** The most admissions in any closed window [x, x + windowMs] (times sorted, in ms). */
export function maxInWindow(times: readonly number[], windowMs: number): number {
  let most = 0;
  for (let i = 0, j = 0; i < times.length; i++) {
    while (j < times.length && times[j]! <= times[i]! + windowMs) j++;
    most = Math.max(most, j - i);
  }
  return most;
}

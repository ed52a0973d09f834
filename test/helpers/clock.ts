/**
 * Epoch milliseconds on the monotonic clock, comparable across processes: performance.timeOrigin can be
 * off by the time a loaded machine took to start the process, so the offset to Date.now() is measured
 * once per process (the largest of many samples: Date.now() truncates to whole milliseconds).
 */
const offset = (() => {
  let best = -Infinity;
  const until = performance.now() + 3;
  while (performance.now() < until) best = Math.max(best, Date.now() - performance.now());
  return best;
})();

export const crossProcessNow = (): number => offset + performance.now();

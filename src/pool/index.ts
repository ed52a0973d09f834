export { WorkerPool } from './worker-pool.js';
export type * from './types.js';

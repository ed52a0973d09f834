/** Suite 'flow' of `npm run bench` (bench/run.ts imports `./flow.js`): the parts live in bench/flow/. */
export { run } from './flow/index.js';

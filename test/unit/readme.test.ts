import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

describe('README', () => {
  it('shows examples/quickstart.ts exactly as it is, and the file prints what the README says', async () => {
    const quickstart = read('examples/quickstart.ts');
    expect(read('README.md')).toContain('```ts\n' + quickstart + '```');
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/quickstart.ts'], { cwd: root });
    expect(stdout).toBe('dead-lettered p-13: card declined\n99 handled; 1 in the dead-letter queue\n');
  }, 60_000);

  it('names the test command CI runs', () => {
    expect(read('README.md')).toContain('npm test');
    expect(read('.ci/run')).toContain('npm test');
  });

  it('names the fault suite CI runs, and the command is the one package.json defines', () => {
    expect(read('README.md')).toContain('npm run test:faults');
    expect(read('.ci/run')).toContain('npm run test:faults');
    expect(JSON.parse(read('package.json')).scripts['test:faults']).toBe('vitest run --config vitest.faults.config.ts');
  });
});

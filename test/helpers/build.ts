import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './process.ts';

/**
 * Loaded by mocha before any test (`.mocharc.json`): tests that start the executables
 * run the compiled code in dist/, so it is rebuilt first when a source is newer.
 */
export function mochaGlobalSetup(): void {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'build.js'), '--if-stale'], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('dist/ could not be built; the executables cannot be tested');
}

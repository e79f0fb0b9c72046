/**
 * `npm run bench:mall [-- --quick]`: the embedded mall against the parse+verify+hash
 * ceiling (embedded.ts). `npm run bench:mall -- --store postgres [--quick]`: 1,000
 * vendors on the embedded mall, on PostgreSQL with 1, 2 and 4 worker processes, and the
 * ceiling, plus the cost of an event in a large database (postgres.ts).
 */
import { spawnSync } from 'node:child_process';
import { ROOT } from './children.ts';

// The mall children run the compiled dist/, as an operator does: build it first when a source changed.
const built = spawnSync(process.execPath, ['bin/build.js', '--if-stale'], { cwd: ROOT, stdio: ['ignore', 2, 2] });
if (built.status !== 0) {
  console.error('bench:mall: the build failed');
  process.exit(1);
}
const args = process.argv.slice(2);
const at = args.indexOf('--store');
const store = at === -1 ? 'embedded' : args[at + 1];
if (store === 'postgres') await import('./postgres.ts');
else if (store === 'embedded') await import('./embedded.ts');
else {
  console.error('--store takes embedded or postgres');
  process.exitCode = 2;
}

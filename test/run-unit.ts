/**
 * `npm run test:unit`: every `test/**\/*.test.ts` under mocha in parallel mode, the files
 * spread over worker processes (a worker runs one file at a time, then the next one
 * waiting), the slowest files first (by their last recorded time).
 * Most tests wait on child processes, sockets, fsync and a browser rather than compute,
 * so more workers than CPUs keep the CPUs busy. MALLPOS_TEST_JOBS sets the number of
 * workers (default: twice the CPUs, 4 to 8); arguments are passed on to mocha
 * (`npm run test:unit -- --grep ledger`).
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { slowestFirst } from './helpers/file-times.ts';
import { ROOT } from './helpers/process.ts';

/** Two workers a CPU, at least four and at most eight: each worker may run servers, a database client and a browser. */
const DEFAULT_JOBS = Math.min(8, Math.max(4, 2 * availableParallelism()));

const fromEnv = Number(process.env['MALLPOS_TEST_JOBS']);
const jobs = Number.isSafeInteger(fromEnv) && fromEnv > 0 ? fromEnv : DEFAULT_JOBS;
const files = slowestFirst(
  readdirSync(join(ROOT, 'test'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => join('test', f)),
);

const mocha = spawn(process.execPath, [join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js'), '--parallel', '--jobs', String(jobs), ...process.argv.slice(2), ...files], {
  cwd: ROOT,
  stdio: 'inherit',
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => mocha.kill(signal));
mocha.once('exit', (code, signal) => process.exit(code ?? (signal === null ? 1 : 128)));

/**
 * `npm run test:loaded`: the whole suite (`npm test`) while two busy processes burn both
 * CPUs, as on a shared machine doing other work. The tests wait for events and
 * conditions, never for wall-clock speed, so they must pass like this too.
 *
 * The burners stop when the suite ends, when this runner is interrupted, and, because
 * each checks that its parent is still there, when the runner is killed outright.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const BURNERS = 2;

/** A tight loop that looks up now and then whether its parent still lives. */
const BURNER = `
const parent = Number(process.argv[1]);
let n = 0;
for (;;) {
  n += 1;
  if ((n & 0xfffff) === 0) {
    if (process.ppid !== parent) process.exit(0);
    try { process.kill(parent, 0); } catch { process.exit(0); }
  }
}`;

function startBurner(): ChildProcess {
  return spawn(process.execPath, ['-e', BURNER, String(process.pid)], { stdio: 'ignore' });
}

const burners = Array.from({ length: BURNERS }, startBurner);
const stopBurners = () => {
  for (const b of burners) if (b.exitCode === null && b.signalCode === null) b.kill('SIGKILL');
};
process.once('exit', stopBurners);

// npm sets npm_execpath for scripts; run the same npm that started this, or the one on the PATH.
const npmCli = process.env['npm_execpath'];
const suite = npmCli === undefined ? spawn('npm', ['test'], { cwd: ROOT, stdio: 'inherit' }) : spawn(process.execPath, [npmCli, 'test'], { cwd: ROOT, stdio: 'inherit' });
console.error(`test:loaded: ${BURNERS} busy processes (pids ${burners.map((b) => b.pid).join(', ')}) burn the CPUs (${cpus().length} here) while npm test runs`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    suite.kill(signal);
    stopBurners();
  });
}

const started = Date.now();
suite.once('exit', (code, signal) => {
  stopBurners();
  console.error(`test:loaded: npm test ended with ${code ?? signal} after ${Math.round((Date.now() - started) / 1000)} s under load`);
  process.exit(code ?? 1);
});

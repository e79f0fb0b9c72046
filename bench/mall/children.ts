import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Output kept per child for error messages. */
const OUTPUT_KEEP_CHARS = 16 * 1024;
const STARTUP_OUTPUT_CHARS_MAX = 1024 * 1024;

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  url: string;
  /** Lines before readiness that parse as JSON (the mall's start-up log). */
  startupLog: Record<string, unknown>[];
  tail: () => string;
}

// Every child ever started, so that any exit path of the bench can kill what is left.
const live = new Set<ChildProcess>();

export function killAllChildren(): void {
  for (const proc of live) {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  }
  live.clear();
}

function parseLine(line: string): Record<string, unknown> | null {
  if (!line.startsWith('{')) return null;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/**
 * Starts a node child on 127.0.0.1 and resolves once one of its stdout lines says where
 * it listens. Its output keeps being drained afterwards (only a tail is kept).
 */
function spawnChild(name: string, args: string[], readyUrl: (line: Record<string, unknown>) => string | null, timeoutMs: number, env: Record<string, string> = {}): Promise<Child> {
  const proc = spawn(process.execPath, args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MALLPOS_BENCH_WATCH_PARENT: '1', LOG_LEVEL: 'info', ...env },
  });
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  let tail = '';
  const keep = (text: string) => {
    tail = (tail + text).slice(-OUTPUT_KEEP_CHARS);
  };
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', keep);
  proc.stdout?.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let pending = '';
    let seen = 0;
    let done = false;
    const startupLog: Record<string, unknown>[] = [];
    const finish = (err: Error | null, child?: Child) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      proc.stdout?.off('data', onStartup);
      proc.stdout?.on('data', keep);
      if (err !== null) {
        proc.kill('SIGKILL');
        reject(err);
      } else if (child !== undefined) {
        resolve(child);
      }
    };
    const onStartup = (chunk: string) => {
      keep(chunk);
      seen += chunk.length;
      pending += chunk;
      let nl = pending.indexOf('\n');
      while (nl !== -1) {
        const line = parseLine(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
        nl = pending.indexOf('\n');
        if (line === null) continue;
        startupLog.push(line);
        const url = readyUrl(line);
        if (url !== null && proc.pid !== undefined) {
          finish(null, { name, proc, pid: proc.pid, url, startupLog, tail: () => tail });
          return;
        }
      }
      if (seen > STARTUP_OUTPUT_CHARS_MAX) finish(new Error(`${name} wrote ${seen} characters without saying where it listens:\n${tail}`));
    };
    proc.stdout?.on('data', onStartup);
    const timer = setTimeout(() => finish(new Error(`${name} did not start within ${timeoutMs} ms:\n${tail}`)), timeoutMs);
    proc.once('exit', (code, signal) => finish(new Error(`${name} exited with ${code ?? signal} before listening:\n${tail}`)));
  });
}

/**
 * The mall as an operator runs it: `bin/mall-sync.js serve`, on 127.0.0.1 with an
 * ephemeral port. The watch-parent preload makes it exit if the bench dies.
 */
export function spawnMall(name: string, dataDir: string, opts: { timeoutMs: number; nodeArgs?: string[]; env?: Record<string, string> }): Promise<Child> {
  return spawnChild(
    name,
    [...(opts.nodeArgs ?? []), '--import', 'tsx', '--import', './bench/mall/exit-with-parent.ts', 'bin/mall-sync.js', 'serve', '--data-dir', dataDir, '--port', '0', '--host', '127.0.0.1'],
    (line) => (line['msg'] === 'mall-sync listening' && typeof line['url'] === 'string' ? line['url'] : null),
    opts.timeoutMs,
    opts.env,
  );
}

/** The ceiling server (HTTPS, its authority in tlsDir); it prints `{"port":N}` once it listens on 127.0.0.1. */
export function spawnCeiling(keysFile: string, tlsDir: string, timeoutMs: number): Promise<Child> {
  return spawnChild(
    'ceiling',
    ['--import', 'tsx', 'bench/mall/ceiling-server.ts', keysFile, tlsDir],
    (line) => (typeof line['port'] === 'number' ? `https://127.0.0.1:${line['port']}` : null),
    timeoutMs,
  );
}

/**
 * Stops a child: SIGTERM lets the mall close its store (and a profiler write its
 * profile); SIGKILL follows when it takes longer than graceMs.
 */
export function stopChild(child: Child, graceMs: number): Promise<{ code: number | null; signal: string | null }> {
  const proc = child.proc;
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      resolve({ code: proc.exitCode, signal: proc.signalCode });
      return;
    }
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
    proc.kill('SIGTERM');
  });
}

export const CLOCK_TICKS_PER_S = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat (0 where there is no /proc). */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) / CLOCK_TICKS_PER_S;
}

/**
 * Stops a benchmark run cleanly on Ctrl-C, SIGTERM or when it runs past `limitMs`: `cleanup`
 * stops the children and removes the run's files, then the process exits. Returns the
 * deadline timer, which the run clears when it finishes in time.
 */
export function abandonOnSignalsAndDeadline(log: (line: string) => void, cleanup: () => void, what: string, limitMs: number): NodeJS.Timeout {
  const abandon = (why: string, code: number): never => {
    log(`${why}: ${what}`);
    cleanup();
    process.exit(code);
  };
  process.once('SIGINT', () => abandon('interrupted', 130));
  process.once('SIGTERM', () => abandon('terminated', 143));
  process.once('exit', cleanup);
  return setTimeout(() => abandon(`over the ${limitMs / 1000} s limit of this mode`, 1), limitMs);
}

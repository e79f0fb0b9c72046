import { trustAuthorityFile, trustDataDir } from '../tls-client.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Output kept per child for error messages; a server logging every sale must not grow the bench's heap. */
const OUTPUT_KEEP_CHARS = 16 * 1024;
const STARTUP_OUTPUT_CHARS_MAX = 1024 * 1024;
const NOTABLE_LINES_MAX = 40;
// Log lines worth keeping among thousands of "sale committed": warnings, errors, and terminals coming and going.
const NOTABLE = /"level":(?:[4-6]\d)|terminal (?:dis)?connected|checkpoint/;

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  /** performance.now() of the bench when the child was spawned. */
  spawnedAt: number;
  /** Wall-clock ms from spawn until the child said it was listening. */
  startMs: number;
  /** The line that announced readiness, parsed as JSON. */
  ready: Record<string, unknown>;
  /** Lines before readiness that parse as JSON (the vendor server's start-up log). */
  startupLog: Record<string, unknown>[];
  url: string;
  tail: () => string;
  /** The last warnings, errors and connection changes the child logged. */
  notable: () => string[];
}

// Every child ever started, so that any exit path of the bench can kill what is left.
const live = new Set<ChildProcess>();

export function killAllChildren(): void {
  for (const proc of live) {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  }
  live.clear();
}

export interface SpawnOptions {
  name: string;
  args: string[];
  env?: Record<string, string>;
  /** Picks the ready line and returns the URL to connect to, or null to keep waiting. */
  readyUrl: (line: Record<string, unknown>) => string | null;
  timeoutMs: number;
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
 * Starts a node child and resolves once one of its stdout lines says where it listens.
 * The child's stdout keeps being drained afterwards, because a server that logs every
 * sale would otherwise block on a full pipe.
 */
export function spawnChild(opts: SpawnOptions): Promise<Child> {
  const started = performance.now();
  const proc = spawn(process.execPath, opts.args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  let tail = '';
  const notable: string[] = [];
  // One per stream, so that a line split across chunks is joined with its own stream's rest.
  const keeper = () => {
    let partial = '';
    return (text: string) => {
      tail = (tail + text).slice(-OUTPUT_KEEP_CHARS);
      const lines = (partial + text).split('\n');
      partial = (lines.pop() ?? '').slice(-OUTPUT_KEEP_CHARS);
      for (const line of lines) {
        if (!NOTABLE.test(line)) continue;
        notable.push(line.slice(0, 500));
        if (notable.length > NOTABLE_LINES_MAX) notable.shift();
      }
    };
  };
  const keep = keeper();
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', keeper());
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
        const url = opts.readyUrl(line);
        if (url !== null) {
          const pid = proc.pid;
          if (pid === undefined) throw new Error(`assertion failed: ${opts.name} has a pid`);
          finish(null, { name: opts.name, proc, pid, spawnedAt: started, startMs: performance.now() - started, ready: line, startupLog, url, tail: () => tail, notable: () => [...notable] });
          return;
        }
      }
      if (seen > STARTUP_OUTPUT_CHARS_MAX) finish(new Error(`${opts.name} wrote ${seen} characters without saying where it listens:\n${tail}`));
    };
    proc.stdout?.on('data', onStartup);
    const timer = setTimeout(() => finish(new Error(`${opts.name} did not start within ${opts.timeoutMs} ms:\n${tail}`)), opts.timeoutMs);
    proc.once('exit', (code, signal) => finish(new Error(`${opts.name} exited with ${code ?? signal} before listening:\n${tail}`)));
  });
}

/**
 * The node options on an executable's `#!/usr/bin/env -S node ...` line. The bench runs
 * the executable with them, as the kernel would, and can add its own (a profiler's
 * `--cpu-prof` is not allowed in NODE_OPTIONS) while still measuring this node binary.
 */
export function shebangNodeArgs(bin: string): string[] {
  const first = readFileSync(join(ROOT, bin), 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\S*env(?: -S)? node((?: \S+)*)\s*$/.exec(first);
  if (m === null) throw new Error(`${bin} does not start with "#!/usr/bin/env -S node ...": ${first}`);
  return (m[1] ?? '').split(' ').filter((a) => a !== '');
}

/**
 * The vendor server as an operator runs it: `bin/vendor-server.js start`, the compiled
 * code in dist/ with the V8 flags of its #! line.
 */
export async function spawnMallpos(name: string, dataDir: string, opts: { timeoutMs: number; nodeArgs?: string[]; env?: Record<string, string> }): Promise<Child> {
  const bin = 'bin/vendor-server.js';
  const child = await spawnChild({
    name,
    args: [...shebangNodeArgs(bin), ...(opts.nodeArgs ?? []), bin, 'start', '--data-dir', dataDir, '--port', '0', '--host', '127.0.0.1'],
    ...(opts.env === undefined ? {} : { env: opts.env }),
    timeoutMs: opts.timeoutMs,
    readyUrl: (line) => (line['msg'] === 'vendor server listening' && typeof line['url'] === 'string' ? line['url'] : null),
  });
  // The vendor server speaks TLS only: the bench trusts the store's own authority, as a paired terminal does.
  await trustDataDir(child.url, dataDir);
  return child;
}

/**
 * A bench server script; it prints `{"port":N}` once it listens on 127.0.0.1. It serves
 * TLS from its own authority, which it writes to tlsDir and the bench then trusts.
 */
export async function spawnScript(name: string, script: string, args: string[], tlsDir: string, timeoutMs: number): Promise<Child> {
  const child = await spawnChild({
    name,
    args: ['--import', 'tsx', script, ...args, '--tls-dir', tlsDir],
    timeoutMs,
    readyUrl: (line) => (typeof line['port'] === 'number' ? `https://127.0.0.1:${line['port']}` : null),
  });
  await trustAuthorityFile(child.url, tlsDir);
  return child;
}

/**
 * Stops a child: SIGTERM lets the vendor server write its closing checkpoint (and a
 * profiler its profile); SIGKILL follows when it takes longer than graceMs.
 */
export function stopChild(child: Child, graceMs: number): Promise<{ ms: number; code: number | null; signal: string | null }> {
  const started = performance.now();
  const proc = child.proc;
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      resolve({ ms: 0, code: proc.exitCode, signal: proc.signalCode });
      return;
    }
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ ms: performance.now() - started, code, signal });
    });
    proc.kill('SIGTERM');
  });
}

/** Peak resident set size of a live process in MiB (VmHWM), or null where /proc does not say. */
export async function peakRssMb(pid: number): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status);
    return m?.[1] === undefined ? null : Number(m[1]) / 1024;
  } catch {
    return null;
  }
}

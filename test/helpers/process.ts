import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import { createServer } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { fetchTls, trustDataDir } from './http.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Starts one of the project's executables (`bin/*.js`) the way an operator does: the file
 * itself, so the compiled code in dist/ runs with the V8 flags on its #! line. The node
 * running the tests comes first on the PATH, so `env node` finds the same one.
 */
export function spawnExecutable(bin: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcessByStdio<null, Readable, Readable> {
  const path = `${dirname(process.execPath)}${delimiter}${process.env['PATH'] ?? ''}`;
  return spawn(join(ROOT, bin), args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PATH: path, ...env } });
}

export interface ChildServer {
  child: ChildProcess;
  url: string;
  output: () => string;
}

/** How long a child gets to say it is up: a bound on a hang, generous for a busy machine. */
export const START_DEADLINE_MS = 60_000;

/** The URL a server logs as JSON when it listens ({"url":"https://..."}). */
export const LOGGED_URL = /"url":"(https?:\/\/[^"]+)"/;

/**
 * Starts one of the project's executables as a child process and waits until its output
 * matches `ready` (whose first group is the URL it serves).
 */
export function spawnUntil(bin: string, args: string[], ready: RegExp, timeoutMs = START_DEADLINE_MS, env: NodeJS.ProcessEnv = {}): Promise<ChildServer> {
  const child = spawnExecutable(bin, args, { LOG_LEVEL: 'info', ...env });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${bin} did not start:\n${out}`));
    }, timeoutMs);
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`${bin} exited with ${code}:\n${out}`));
    };
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        child.off('exit', onExit);
        resolve({ child, url: m[1], output: () => out });
      }
    });
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', onExit);
  });
}

/** Starts `vendor-server start` as a child process and waits for its URL; its authority is trusted by the test helpers. */
export async function spawnVendorServer(dataDir: string, timeoutMs = START_DEADLINE_MS, port = 0, env: NodeJS.ProcessEnv = {}): Promise<ChildServer & { caPem: string }> {
  const server = await spawnUntil('bin/vendor-server.js', ['start', '--data-dir', dataDir, '--port', String(port)], LOGGED_URL, timeoutMs, env);
  return { ...server, caPem: await trustDataDir(server.url, dataDir) };
}

/** Starts `pos-terminal start` as a child process and waits for its screen URL. */
export function spawnTerminal(args: string[], timeoutMs = START_DEADLINE_MS): Promise<ChildServer> {
  return spawnUntil('bin/pos-terminal.js', ['start', ...args], /Cashier screen: (http:\/\/\S+)/, timeoutMs);
}

/** Starts `mall-sync serve` as a child process and waits for its URL; its authority is trusted by the test helpers. */
export async function spawnMall(dataDir: string, port = 0, timeoutMs = START_DEADLINE_MS, env: NodeJS.ProcessEnv = {}): Promise<ChildServer & { caPem: string }> {
  const server = await spawnUntil('bin/mall-sync.js', ['serve', '--data-dir', dataDir, '--port', String(port)], LOGGED_URL, timeoutMs, env);
  return { ...server, caPem: await trustDataDir(server.url, dataDir) };
}

export function killHard(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve();
      return;
    }
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** Runs one of the project's executables to completion. */
export function runBin(bin: string, args: string[], timeoutMs = START_DEADLINE_MS): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnExecutable(bin, args);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs the vendor-server CLI to completion. */
export function runCli(args: string[], timeoutMs = START_DEADLINE_MS): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runBin('bin/vendor-server.js', args, timeoutMs);
}

/** A port that was free a moment ago (for a server that must come back on the same port). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Polls until `probe` returns something other than undefined, or fails after the timeout. */
export async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = START_DEADLINE_MS): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** One request to a vendor server's operator API: its status and body text. */
export type OperatorCall = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<{ status: number; text: string }>;

/**
 * The operator API of a spawned vendor server with this bearer token. Both are read at
 * each call: a test respawns the server, and learns the token in a `before` hook.
 */
export function operatorApi(server: () => ChildServer | null, token: () => string): OperatorCall {
  return async (method, path, body, headers = {}) => {
    const running = server();
    if (running === null) throw new Error('no server');
    const res = await fetchTls(`${running.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token()}`, 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, text: await res.text() };
  };
}

/** Creates a terminal through the operator API and pairs it at `url` as `pos-terminal pair` does. */
export async function pairTill(op: OperatorCall, url: string, name: string): Promise<{ terminalId: string; credential: string }> {
  const created = JSON.parse((await op('POST', '/api/terminals', { name })).text) as { pairingCode: string };
  const res = await fetchTls(`${url}/pair`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: created.pairingCode }) });
  return (await res.json()) as { terminalId: string; credential: string };
}

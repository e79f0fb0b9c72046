import type { ScryptOptions } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/**
 * scrypt for the whole process, run one call at a time on one thread of its own.
 *
 * Each call takes 128 * N * r bytes (16 MiB at the costs used here) from the C heap. Run
 * on Node's thread pool, calls land on up to four threads, and glibc keeps such a block
 * in each thread's own arena once freed: twenty tills signing in raise the process's
 * resident memory by 64 MiB for good. On one dedicated thread, one block is reused. A
 * call takes a few tens of milliseconds, so a queue of sign-ins still clears within a
 * second or two. The thread starts on first use and keeps the process alive only while a
 * call waits for it.
 */

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { scryptSync } = require('node:crypto');
parentPort.on('message', (m) => {
  try {
    parentPort.postMessage({ id: m.id, key: scryptSync(m.password, m.salt, m.keyBytes, m.options) });
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) });
  }
});
`;

interface Pending {
  resolve: (key: Buffer) => void;
  reject: (err: Error) => void;
}

let worker: Worker | null = null;
let nextId = 1;
const pending = new Map<number, Pending>();

function failAll(err: Error): void {
  for (const p of pending.values()) p.reject(err);
  pending.clear();
}

function scryptWorker(): Worker {
  if (worker !== null) return worker;
  // The thread only calls into C: a small JavaScript heap is all it needs, and a default
  // one would reserve some fifteen megabytes more. It takes none of the process's Node
  // options (a loader, --input-type) that would change how its source is read.
  const w = new Worker(WORKER_SOURCE, {
    eval: true,
    execArgv: [],
    resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 8, codeRangeSizeMb: 2 },
  });
  w.unref();
  w.on('message', (m: { id: number; key?: Uint8Array; error?: string }) => {
    const p = pending.get(m.id);
    if (p === undefined) return;
    pending.delete(m.id);
    if (pending.size === 0) w.unref();
    if (m.key !== undefined) p.resolve(Buffer.from(m.key.buffer, m.key.byteOffset, m.key.byteLength));
    else p.reject(new Error(`scrypt failed: ${m.error ?? 'unknown error'}`));
  });
  // A thread that dies takes its queue with it; the next call starts a new one.
  w.on('error', (err) => {
    if (worker === w) worker = null;
    failAll(err);
  });
  w.on('exit', (code) => {
    if (worker === w) worker = null;
    failAll(new Error(`the scrypt thread exited with code ${code}`));
  });
  worker = w;
  return w;
}

/** How many scrypt calls this process has made: what a cache of their results saves shows here. */
export function scryptCalls(): number {
  return nextId - 1;
}

export function scryptQueued(password: Buffer | string, salt: Buffer, keyBytes: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    const w = scryptWorker();
    w.ref();
    w.postMessage({ id, password, salt, keyBytes, options });
  });
}

import { Worker } from 'node:worker_threads';

/**
 * The sha256 half of a long replay, run on a thread of its own.
 *
 * A full replay spends about a third of its time hashing lines and the rest parsing them.
 * During a replay of several segments the replaying thread reads and parses the lines and
 * checks their framing, seqs and the prev links between their stored hashes, without
 * hashing; it hands this thread a copy of the bytes of the lines it checked, and this
 * thread checks that every line's stored hash is the sha256 of its event bytes. Both see
 * the same bytes, read once. After every VERDICT_LINES lines (and at each segment's end)
 * the replaying thread asks for a verdict: the number of lines checked so far and the
 * hash of the last one, which it compares with its own count and stored hash. It hands
 * events on to its consumer only once their verdict has arrived, parsing the next batch
 * meanwhile.
 *
 * The thread judges nothing beyond "these hashes match": any problem (a mismatch, a line
 * it cannot frame, an error, the thread dying) only makes the replay fall back to the
 * sequential scan, which reports it exactly as it always has.
 *
 * Like the scrypt thread, it runs source of its own, evaluated as CommonJS with none of the
 * process's Node options, so that it starts the same from the TypeScript sources and from
 * the compiled build, without a loader.
 */

/** Lines per verdict: the most events the replaying thread holds per batch before handing them on. */
export const VERDICT_LINES = 4096;

export interface Verdict {
  /** Lines checked since the thread started. */
  n: number;
  /** Stored (and computed) hash of line n; '' when n is 0. */
  last: string;
}

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { hash } = require('node:crypto');
// {"h":" + 64 hex + ","e": before the event, } after it.
const HASH_AT = 6, EVENT_AT = 76, OVERHEAD = 78;
let n = 0, last = '', bad = null;
parentPort.on('message', (m) => {
  if (bad !== null) return;
  if (m === 'verdict') {
    parentPort.postMessage({ n, last });
    return;
  }
  const buf = Buffer.from(m.buffer, m.byteOffset, m.byteLength);
  let pos = 0;
  while (pos < buf.length) {
    const nl = buf.indexOf(10, pos);
    if (nl === -1) { bad = 'bytes that end inside a line'; break; }
    if (nl - pos < OVERHEAD) { bad = 'a line too short to be a journal line'; break; }
    const h = hash('sha256', buf.subarray(pos + EVENT_AT, nl - 1), 'hex');
    if (h !== buf.toString('latin1', pos + HASH_AT, pos + HASH_AT + 64)) { bad = 'a hash mismatch after line ' + n; break; }
    last = h;
    n += 1;
    pos = nl + 1;
  }
  if (bad !== null) parentPort.postMessage({ n, last, bad });
});
`;

/** Lets a test watch (and stop) the verifying thread as it starts. */
export const replayThreadHooks: { onStart: ((worker: Worker) => void) | null } = { onStart: null };

/**
 * The verifying thread of one replay. verdict() returns the answers to ask() in order; it
 * rejects once the thread found a problem, failed or exited before answering.
 */
export class ChainVerifier {
  private readonly worker: Worker;
  private readonly queue: Verdict[] = [];
  private failure: Error | null = null;
  private waiting: { resolve: (v: Verdict) => void; reject: (err: Error) => void } | null = null;
  private stopped = false;

  constructor() {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
    this.worker.on('message', (m: Verdict & { bad?: string }) => {
      if (m.bad !== undefined) this.fail(new Error(`the verifying thread found ${m.bad}`));
      else this.deliver(m);
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`the verifying thread exited with code ${code}`)));
    replayThreadHooks.onStart?.(this.worker);
  }

  /** Hands the thread a copy of whole lines to check. */
  send(buf: Buffer, start: number, end: number): void {
    if (end <= start || this.failure !== null) return;
    const copy = new Uint8Array(end - start);
    copy.set(buf.subarray(start, end));
    this.worker.postMessage(copy, [copy.buffer]);
  }

  /** Asks for a verdict on everything sent so far; verdict() returns them in order. */
  ask(): void {
    if (this.failure === null) this.worker.postMessage('verdict');
  }

  /** The next report, in the order the thread sent them. */
  verdict(): Promise<Verdict> {
    const v = this.queue.shift();
    if (v !== undefined) return Promise.resolve(v);
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.worker.terminate();
  }

  private deliver(v: Verdict): void {
    const w = this.waiting;
    if (w === null) {
      this.queue.push(v);
      return;
    }
    this.waiting = null;
    w.resolve(v);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiting;
    if (w === null) return;
    this.waiting = null;
    w.reject(this.failure);
  }
}

import { Worker } from 'node:worker_threads';

/**
 * The sha256 half of a long replay, run on a thread of its own.
 *
 * A full replay spends about a third of its time hashing lines and the rest parsing them.
 * During a replay of several segments the thread reads the same closed segment files and
 * checks that every line's stored hash is the sha256 of its event bytes; the replaying
 * thread meanwhile parses the lines, checks their framing, seqs and the prev links between
 * the stored hashes, and hands an event to its consumer only once the thread has confirmed
 * the lines up to it. The thread reports after every VERDICT_LINES lines of a segment and
 * at the segment's end, with the hash of the last line it checked, so the replaying thread
 * can compare what both of them read.
 *
 * Both threads read the same files, which this relies on not changing during the replay:
 * the journal has one writer (platform/lock.ts), it never rewrites a written line, and a
 * replay covers only durable lines. Each batch is still compared: the replaying thread
 * checks that every line's prev is the stored hash of the line before, and that the
 * thread counted as many lines and ended on the same stored hash, so lines added, dropped
 * or re-hashed between the two reads are caught; event bytes changed between the two
 * reads while keeping their stored hash would not be.
 *
 * The thread judges nothing beyond "these hashes match": any problem (a mismatch, a line
 * it cannot frame, a file shorter than planned, an I/O error, the thread dying) only makes
 * the replay fall back to the sequential scan, which reports it exactly as it always has.
 *
 * Like the scrypt thread, it runs source of its own, evaluated as CommonJS with none of the
 * process's Node options, so that it starts the same from the TypeScript sources and from
 * the compiled build, without a loader.
 */

/**
 * Lines per verdict: the most events the replaying thread holds before handing them on.
 * Few, so that the events die young: a replay's consumer keeps little of each event, and
 * thousands held across a verdict outlive a scavenge or two and are copied into the old
 * generation, which made the garbage collector a quarter of a long replay. A verdict
 * costs a message, a few microseconds; fewer lines than this save nothing more.
 */
export const VERDICT_LINES = 256;

export interface VerifyRange {
  path: string;
  /** Byte offset of the first line to check. */
  start: number;
  /** Bytes of the file to read at most (the segment's durable length). */
  end: number;
  /** Lines to check from start. */
  lines: number;
}

export interface Verdict {
  /** Index of the range in the plan. */
  k: number;
  /** Lines of the range checked so far. */
  n: number;
  /** Stored (and computed) hash of line n; '' when n is 0. */
  last: string;
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { openSync, readSync, closeSync } = require('node:fs');
const { hash } = require('node:crypto');
const { ranges, lineBytesMax, step, chunkBytes } = workerData;
// {"h":" + 64 hex + ","e": before the event, } after it.
const HASH_AT = 6, EVENT_AT = 76, OVERHEAD = 78;
let buf = Buffer.allocUnsafe(chunkBytes);
function verify(k, r) {
  let n = 0, last = '';
  const fd = openSync(r.path, 'r');
  try {
    let filled = 0, at = r.start;
    while (n < r.lines && at < r.end) {
      if (filled === buf.length) {
        if (buf.length >= lineBytesMax) break;
        const grown = Buffer.allocUnsafe(Math.min(buf.length * 2, lineBytesMax));
        buf.copy(grown, 0, 0, filled);
        buf = grown;
      }
      const got = readSync(fd, buf, filled, Math.min(buf.length - filled, r.end - at), at);
      if (got === 0) break;
      at += got;
      filled += got;
      const view = buf.subarray(0, filled);
      let pos = 0;
      while (n < r.lines) {
        const nl = view.indexOf(10, pos);
        if (nl === -1) break;
        if (nl - pos < OVERHEAD) return { k, n, last, bad: 'a line too short to be a journal line' };
        const h = hash('sha256', view.subarray(pos + EVENT_AT, nl - 1), 'hex');
        if (h !== view.toString('latin1', pos + HASH_AT, pos + HASH_AT + 64)) return { k, n, last, bad: 'a hash mismatch' };
        last = h;
        n += 1;
        pos = nl + 1;
        if (n % step === 0 && n < r.lines) parentPort.postMessage({ k, n, last });
      }
      buf.copyWithin(0, pos, filled);
      filled -= pos;
    }
  } finally {
    closeSync(fd);
  }
  return { k, n, last };
}
for (let k = 0; k < ranges.length; k++) {
  let v;
  try {
    v = verify(k, ranges[k]);
  } catch (err) {
    v = { k, n: -1, last: '', bad: err instanceof Error ? err.message : String(err) };
  }
  parentPort.postMessage(v);
  if (v.bad !== undefined || v.n !== ranges[k].lines) break;
}
`;

/** Lets a test watch (and stop) the verifying thread as it starts. */
export const replayThreadHooks: { onStart: ((worker: Worker) => void) | null } = { onStart: null };

/**
 * The verifying thread of one replay. verdict() returns its reports in order; it rejects
 * once the thread found a problem, failed or exited before reporting.
 */
export class ChainVerifier {
  private readonly worker: Worker;
  private readonly queue: Verdict[] = [];
  private failure: Error | null = null;
  private waiting: { resolve: (v: Verdict) => void; reject: (err: Error) => void } | null = null;
  private stopped = false;

  constructor(ranges: VerifyRange[], lineBytesMax: number, chunkBytes: number) {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      execArgv: [],
      workerData: { ranges, lineBytesMax, step: VERDICT_LINES, chunkBytes },
    });
    this.worker.on('message', (m: Verdict & { bad?: string }) => {
      if (m.bad !== undefined) this.fail(new Error(`the verifying thread found ${m.bad} in range ${m.k}`));
      else this.deliver(m);
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`the verifying thread exited with code ${code}`)));
    replayThreadHooks.onStart?.(this.worker);
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

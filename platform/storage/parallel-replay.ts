import { hash as digest } from 'node:crypto';
import { open, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isMainThread, parentPort, Worker, workerData, type MessagePort } from 'node:worker_threads';
import { JournalCorruptError, type JournalCorruptDetails } from './errors.ts';
import type { Journal } from './journal.ts';

/**
 * A full replay of a long journal, spread over worker threads: each worker reads whole
 * segments, checks every line's framing and that its stored hash is the sha256 of its
 * event bytes, and hands the event texts with their hashes back; this thread parses them
 * and applies them in seq order, checking each event's seq and its link to the hash
 * before it. Reading, hashing and decoding then run beside the apply instead of before
 * it, which roughly halves a cold start without a checkpoint.
 *
 * The line format is the journal's own (journal.ts): `{"h":"<64 hex>","e":<event>}\n`,
 * where the hash covers the event bytes exactly. `Journal.open` has already checked the
 * segment table and the last segment; this checks every line of the range again.
 */

/** What the apply callback gets of each line: its seq and the hash the next line links to. */
export interface ReplayedLine {
  seq: number;
  hash: string;
}

export interface ParallelReplayOptions {
  /** Worker threads; default the machine's parallelism, at most WORKERS_MAX. Below 1 the replay runs on this thread. */
  workers?: number;
  /** A replay of fewer events runs on this thread: starting workers would cost more than they save. */
  eventsMin?: number;
}

const WORKERS_MAX = 4;
const EVENTS_MIN_DEFAULT = 50_000;
// A worker reads this much of a segment at a time and sends the lines of each read as one batch.
const READ_CHUNK_BYTES = 4 * 1024 * 1024;
// Batches a worker may have sent that this thread has not applied yet: bounds memory when
// the apply is slower than the workers.
const BATCHES_IN_FLIGHT_MAX = 2;
// The journal's framing: {"h":" (6 bytes), 64 hex, ","e": (6 bytes), the event, }\n.
const HASH_AT = 6;
const MID_AT = 70;
const EVENT_AT = 76;
const LINE_OVERHEAD = EVENT_AT + 2;
const HEAD = Buffer.from('{"h":"', 'latin1');
const MID = Buffer.from('","e":', 'latin1');
const NEWLINE = 0x0a;
const CLOSE_BRACE = 0x7d;
// Matches journal.ts: the largest event append accepts by default, plus the framing.
const LINE_BYTES_MAX = 1024 * 1024 + LINE_OVERHEAD;
const SEGMENT_NAME = /^journal-(\d{16})\.jsonl$/;
const WORKER_ROLE = 'mallpos-journal-replay';

/** One segment's share of the replay: lines from..to, found by counting from the segment's first seq. */
interface Piece {
  path: string;
  name: string;
  firstSeq: number;
  from: number;
  to: number;
}

type ToWorker = { type: 'piece'; index: number; piece: Piece } | { type: 'credit' };

/** Lines in.. seq order: their texts, hashes (64 hex each, concatenated) and byte offsets. */
interface BatchMessage {
  type: 'batch';
  index: number;
  seqFrom: number;
  texts: string[];
  hashes: string;
  offsets: Uint32Array;
}

type FromWorker =
  | BatchMessage
  | { type: 'done'; index: number }
  | { type: 'corrupt'; index: number; details: JournalCorruptDetails }
  | { type: 'failed'; index: number; message: string };

/**
 * Replays fromSeq..the journal's last seq into onEvent, in order, like `Journal.replay`;
 * a replay too short to gain from workers, or a journal with appends still waiting for
 * the disk, goes through `Journal.replay` itself. Any corrupt line throws
 * JournalCorruptError naming its segment, offset and seq, and nothing after the line
 * before it is applied.
 */
export async function replayInParallel<E = unknown>(
  journal: Journal,
  fromSeq: number,
  expectedPrev: string,
  onEvent: (line: ReplayedLine, event: E) => void,
  opts: ParallelReplayOptions = {},
): Promise<{ count: number; lastSeq: number; lastHash: string }> {
  const toSeq = journal.lastSeq;
  const workersWanted = Math.min(opts.workers ?? availableParallelism(), WORKERS_MAX);
  const sequential =
    !Number.isSafeInteger(fromSeq) || fromSeq < 1 || fromSeq > toSeq ||
    toSeq - fromSeq + 1 < (opts.eventsMin ?? EVENTS_MIN_DEFAULT) ||
    journal.durableSeq !== toSeq || workersWanted < 1;
  if (sequential) return journal.replay(fromSeq, expectedPrev, onEvent);

  const pieces = await piecesOf(journal.dir, fromSeq, toSeq);
  const workers: Worker[] = [];
  const states = pieces.map(() => ({ batches: [] as BatchMessage[], done: false, error: null as Error | null, worker: null as Worker | null }));
  let wake: (() => void) | null = null;
  let fatal: Error | null = null;
  let assigned = 0;
  const signal = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const assign = (worker: Worker) => {
    if (assigned >= pieces.length) return;
    const index = assigned++;
    (states[index] as (typeof states)[number]).worker = worker;
    worker.postMessage({ type: 'piece', index, piece: pieces[index] as Piece } satisfies ToWorker);
  };

  try {
    for (let i = 0; i < Math.min(workersWanted, pieces.length); i++) {
      const worker = startWorker();
      workers.push(worker);
      worker.on('message', (msg: FromWorker) => {
        const st = states[msg.index];
        if (st === undefined) return;
        if (msg.type === 'batch') st.batches.push(msg);
        else if (msg.type === 'done') {
          st.done = true;
          assign(worker);
        } else if (msg.type === 'corrupt') st.error = new JournalCorruptError(msg.details);
        else st.error = new Error(`journal replay worker: ${msg.message}`);
        signal();
      });
      worker.on('error', (err) => {
        fatal ??= err;
        signal();
      });
      worker.on('exit', (code) => {
        if (code !== 0) fatal ??= new Error(`journal replay worker exited with code ${code}`);
        signal();
      });
      assign(worker);
    }

    let seq = fromSeq;
    let prev = expectedPrev;
    for (let index = 0; index < pieces.length; index++) {
      const piece = pieces[index] as Piece;
      const st = states[index] as (typeof states)[number];
      for (;;) {
        const batch = st.batches.shift();
        if (batch !== undefined) {
          if (batch.seqFrom !== seq) throw new Error(`journal replay invariant broken: batch starts at seq ${batch.seqFrom}, not ${seq}`);
          for (let i = 0; i < batch.texts.length; i++) {
            const at = { segment: piece.name, offset: batch.offsets[i] ?? 0, seq };
            let event: unknown;
            try {
              event = JSON.parse(batch.texts[i] as string);
            } catch (err) {
              throw new JournalCorruptError({ ...at, reason: 'malformed', detail: `event is not valid JSON (${(err as Error).message})` });
            }
            const e = (typeof event === 'object' && event !== null ? event : {}) as { seq?: unknown; prev?: unknown };
            if (e.seq !== seq) {
              const found = typeof e.seq === 'number' ? e.seq : Number.NaN;
              throw new JournalCorruptError({ ...at, reason: found > seq ? 'seq-gap' : found < seq ? 'seq-disorder' : 'malformed', detail: `expected seq ${seq}, found ${String(e.seq)}` });
            }
            if (e.prev !== prev) {
              throw new JournalCorruptError({ ...at, reason: 'chain-break', detail: `prev ${String(e.prev)} is not the hash of the event before it (${prev})` });
            }
            const hash = batch.hashes.slice(i * 64, i * 64 + 64);
            onEvent({ seq, hash }, event as E);
            prev = hash;
            seq += 1;
          }
          st.worker?.postMessage({ type: 'credit' } satisfies ToWorker);
          continue;
        }
        if (st.error !== null) throw st.error;
        if (st.done) break;
        if (fatal !== null) throw fatal;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
      if (seq !== piece.to + 1) {
        throw new JournalCorruptError({ segment: piece.name, offset: 0, seq, reason: 'seq-gap', detail: `the segment ends before seq ${piece.to}` });
      }
    }
    return { count: toSeq - fromSeq + 1, lastSeq: toSeq, lastHash: prev };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** A worker running this module. */
function startWorker(): Worker {
  const self = import.meta.url;
  const options = { workerData: { role: WORKER_ROLE } };
  if (!self.endsWith('.ts')) return new Worker(new URL(self), options);
  // Sources run through tsx (tests, development) need it in the worker too: its loader
  // hooks do not reach worker threads by themselves.
  // The ESM build of tsx's API, next to its `tsx/esm` entry: the CommonJS one that
  // require() would resolve cannot be imported.
  const tsx = new URL('./api/index.mjs', pathToFileURL(createRequire(self).resolve('tsx/esm'))).href;
  return new Worker(`import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(self)}); })`, { ...options, eval: true });
}

/** The segments holding fromSeq..toSeq, each with the part of the range it holds. */
async function piecesOf(dir: string, fromSeq: number, toSeq: number): Promise<Piece[]> {
  const firsts = (await readdir(dir))
    .map((name) => ({ name, m: SEGMENT_NAME.exec(name) }))
    .filter((x): x is { name: string; m: RegExpExecArray } => x.m !== null)
    .map(({ name, m }) => ({ name, firstSeq: Number(m[1]) }))
    .sort((a, b) => a.firstSeq - b.firstSeq);
  const pieces: Piece[] = [];
  for (let k = 0; k < firsts.length; k++) {
    const seg = firsts[k] as { name: string; firstSeq: number };
    const last = k + 1 < firsts.length ? (firsts[k + 1] as { firstSeq: number }).firstSeq - 1 : toSeq;
    if (last < fromSeq || seg.firstSeq > toSeq) continue;
    pieces.push({ path: join(dir, seg.name), name: seg.name, firstSeq: seg.firstSeq, from: Math.max(fromSeq, seg.firstSeq), to: Math.min(toSeq, last) });
  }
  if (pieces[0] === undefined || pieces[0].firstSeq > fromSeq) {
    throw new JournalCorruptError({ segment: pieces[0]?.name ?? 'journal', offset: 0, seq: fromSeq, reason: 'seq-gap', detail: `seq ${fromSeq} is in no segment` });
  }
  return pieces;
}

// ---- the worker ----------------------------------------------------------------------

class Corrupt extends Error {
  constructor(readonly details: JournalCorruptDetails) {
    super(details.detail ?? details.reason);
  }
}

/** Reads one piece in chunks and sends its lines from piece.from on, checked, in batches. */
async function readPiece(port: MessagePort, index: number, piece: Piece, credit: () => Promise<void>): Promise<void> {
  const handle = await open(piece.path, 'r');
  try {
    let buf = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    let filled = 0;
    let fileAt = 0;
    let bufAt = 0;
    let seq = piece.firstSeq;
    let eof = false;
    while (seq <= piece.to) {
      if (!eof) {
        if (filled === buf.length) {
          // A whole buffer without a newline: a line longer than any the journal writes, or garbage.
          if (buf.length >= LINE_BYTES_MAX) throw new Corrupt({ segment: piece.name, offset: bufAt, seq, reason: 'malformed', detail: `no newline within ${LINE_BYTES_MAX} bytes` });
          const grown = Buffer.allocUnsafe(Math.min(buf.length * 2, LINE_BYTES_MAX));
          buf.copy(grown, 0, 0, filled);
          buf = grown;
        }
        const { bytesRead } = await handle.read(buf, filled, buf.length - filled, fileAt);
        if (bytesRead === 0) eof = true;
        fileAt += bytesRead;
        filled += bytesRead;
      }
      const texts: string[] = [];
      const offsets: number[] = [];
      let hashes = '';
      const seqFrom = Math.max(seq, piece.from);
      const view = buf.subarray(0, filled);
      let pos = 0;
      const send = () => {
        if (texts.length === 0) return false;
        const offsetsArray = Uint32Array.from(offsets);
        port.postMessage({ type: 'batch', index, seqFrom, texts, hashes, offsets: offsetsArray } satisfies FromWorker, [offsetsArray.buffer]);
        return true;
      };
      try {
        for (let nl = view.indexOf(NEWLINE, pos); nl !== -1 && seq <= piece.to; nl = view.indexOf(NEWLINE, pos)) {
          if (seq >= piece.from) {
            const at = { segment: piece.name, offset: bufAt + pos, seq };
            const evStart = pos + EVENT_AT;
            const evEnd = nl - 1;
            if (evEnd <= evStart || buf[evEnd] !== CLOSE_BRACE || !buf.subarray(pos, pos + HEAD.length).equals(HEAD) || !buf.subarray(pos + MID_AT, pos + MID_AT + MID.length).equals(MID)) {
              throw new Corrupt({ ...at, reason: 'malformed', detail: 'not a journal line' });
            }
            const hash = digest('sha256', buf.subarray(evStart, evEnd), 'hex');
            if (buf.toString('latin1', pos + HASH_AT, pos + HASH_AT + 64) !== hash) {
              throw new Corrupt({ ...at, reason: 'hash-mismatch', detail: 'the event bytes no longer match their stored hash' });
            }
            texts.push(buf.toString('utf8', evStart, evEnd));
            offsets.push(bufAt + pos);
            hashes += hash;
          }
          seq += 1;
          pos = nl + 1;
        }
      } catch (err) {
        // The lines before a bad one are still good: they are applied before the error is.
        send();
        throw err;
      }
      if (send()) await credit();
      // Keep the unread rest (a line cut by the chunk) at the start of the buffer.
      buf.copy(buf, 0, pos, filled);
      filled -= pos;
      bufAt += pos;
      if (eof && seq <= piece.to) {
        const reason = filled > 0 ? 'incomplete-line' : 'seq-gap';
        throw new Corrupt({ segment: piece.name, offset: bufAt, seq, reason, detail: `the segment ends before seq ${piece.to}` });
      }
    }
  } finally {
    await handle.close();
  }
}

function runWorker(port: MessagePort): void {
  let inFlight = 0;
  let waiting: (() => void) | null = null;
  const credit = async () => {
    inFlight += 1;
    while (inFlight >= BATCHES_IN_FLIGHT_MAX) {
      await new Promise<void>((resolve) => {
        waiting = resolve;
      });
    }
  };
  // Pieces come one at a time: the next is sent when this one is done.
  let chain = Promise.resolve();
  port.on('message', (msg: ToWorker) => {
    if (msg.type === 'credit') {
      inFlight -= 1;
      const w = waiting;
      waiting = null;
      w?.();
      return;
    }
    const { index, piece } = msg;
    chain = chain.then(async () => {
      try {
        await readPiece(port, index, piece, credit);
        port.postMessage({ type: 'done', index } satisfies FromWorker);
      } catch (err) {
        if (err instanceof Corrupt) port.postMessage({ type: 'corrupt', index, details: err.details } satisfies FromWorker);
        else port.postMessage({ type: 'failed', index, message: (err as Error).message ?? String(err) } satisfies FromWorker);
      }
    });
  });
}

if (!isMainThread && parentPort !== null && (workerData as { role?: unknown } | null)?.role === WORKER_ROLE) runWorker(parentPort);

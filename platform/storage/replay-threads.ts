import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { once } from 'node:events';
import { parentPort, Worker } from 'node:worker_threads';
import { EVENT_AT, HASH_AT, LineCheck, TEXT_NONE, TEXT_PARSE } from './journal-format.ts';
import { EventPacker, EventUnpacker, type Packed, type PackedInto, type ReplayCodec } from './replay-pack.ts';
import { ChunkReader } from './segment-reader.ts';

/**
 * A long replay read, checked and parsed by several threads at once, and folded by the
 * replaying thread alone, in order.
 *
 * The segments are cut into ranges of RANGE_BYTES, dealt out to the threads in turn; a
 * range that begins inside a line begins at the next line. For every line of its ranges a
 * thread does what a sequential replay does: frames it, checks its seq, its link to the
 * line before and its hash against the bytes. It then packs the event (replay-pack.ts):
 * straight from its bytes when the codec's packText can, else parsed with the codec's
 * parser, and sends the events in chunks. The replaying thread
 * takes the chunks in journal order, checks that each range goes on at the next seq and
 * links to the hash the one before ended on, that each segment yields the lines it must
 * hold, and hands the events to its consumer.
 *
 * The events handed on are the ones whose bytes were hashed: a thread reads each line
 * once. Any problem (a line that fails a check, a thread that dies, a chunk that does not
 * fit) only makes the replay go on sequentially from the first event not yet handed on,
 * which reports it exactly as it always has; an error of the consumer ends the replay.
 *
 * A thread keeps at most AHEAD_CHUNKS chunks that the replaying thread has not taken,
 * waiting on a shared counter, so memory stays bounded whichever side is slower. It writes
 * them into pages of memory the two threads share, which the replaying thread reads in
 * place (Pages).
 */

/**
 * Lines a chunk carries at most. Few enough that a chunk's buffers (some 100 KB) come
 * from memory the allocator reuses: chunks four times larger were each given fresh pages,
 * whose faults more than doubled the cost of packing.
 */
export const CHUNK_LINES = 256;
/** Chunks a thread may have sent and not yet seen taken. */
export const AHEAD_CHUNKS = 24;
/**
 * Bytes of a segment one thread takes at a time. Small enough that the threads take
 * turns often, each only a few chunks ahead of the replaying thread; large enough that
 * finding the first line of a range costs nothing.
 */
export const RANGE_BYTES = 4 * 1024 * 1024;
const BOUND_SLACK_BYTES = 64 * 1024;

/**
 * What a page holds at most: room for a chunk of sales with some dozens of fields each.
 * A chunk that does not fit crosses in buffers of its own.
 */
export const PAGE_NUMS = 16 * 1024;
export const PAGE_BYTES = 128 * 1024;
const PAGE_OFFSETS = CHUNK_LINES + 1;

/**
 * A thread's pages: AHEAD_CHUNKS places in memory both threads share, each for one chunk's
 * numbers, bytes and line offsets. Chunk k goes into page k % AHEAD_CHUNKS, written only
 * once the replaying thread has taken the chunk that was there before, which the credits
 * say: a thread writes its next chunk only when fewer than AHEAD_CHUNKS are untaken.
 * Buffers of their own for every chunk, allocated, transferred and collected, cost a
 * thread about a microsecond a line.
 */
interface Pages {
  nums: SharedArrayBuffer;
  bytes: SharedArrayBuffer;
  offsets: SharedArrayBuffer;
}

function newPages(): Pages {
  return {
    nums: new SharedArrayBuffer(AHEAD_CHUNKS * PAGE_NUMS * 8),
    bytes: new SharedArrayBuffer(AHEAD_CHUNKS * PAGE_BYTES),
    offsets: new SharedArrayBuffer(AHEAD_CHUNKS * PAGE_OFFSETS * 8),
  };
}

/** Views of each page, made once on each side. */
class PageViews {
  readonly nums: Float64Array[] = [];
  readonly bytes: Uint8Array[] = [];
  readonly offsets: Float64Array[] = [];

  constructor(pages: Pages) {
    for (let k = 0; k < AHEAD_CHUNKS; k++) {
      this.nums.push(new Float64Array(pages.nums, k * PAGE_NUMS * 8, PAGE_NUMS));
      this.bytes.push(new Uint8Array(pages.bytes, k * PAGE_BYTES, PAGE_BYTES));
      this.offsets.push(new Float64Array(pages.offsets, k * PAGE_OFFSETS * 8, PAGE_OFFSETS));
    }
  }
}

/**
 * One range a thread replays: the lines of a segment that begin in [start, bound). When
 * `atLine` is false, start may fall inside a line: the range begins after the next
 * newline at or after start - 1. Lines after seq `lastSeq` are not replayed.
 */
export interface ThreadRange {
  /** Index of the range in the whole replay. */
  r: number;
  path: string;
  name: string;
  start: number;
  atLine: boolean;
  bound: number;
  /** The segment's durable length: a range's last line may run past bound, never past this. */
  end: number;
  lastSeq: number;
}

interface ThreadPlan {
  ranges: ThreadRange[];
  lineBytesMax: number;
  chunkBytes: number;
  /** credits[slot]: chunks taken by the replaying thread; credits[threads]: 1 once stopped. */
  credits: Int32Array;
  slot: number;
  stopAt: number;
  pages: Pages;
}

/** Where a chunk stands in its range. */
interface ChunkHead {
  r: number;
  /** The seq of the chunk's first line (0 when it has none). */
  firstSeq: number;
  count: number;
  /** The prev of the range's first line, on the first chunk that has lines ('' on the others). */
  firstPrev: string;
  /** Whether the range ends with this chunk. */
  last: boolean;
}

/** A chunk as the replaying thread reads it. */
export interface Chunk extends ChunkHead, Packed {
  /** The file offset of each line, then the offset after the last. */
  offsets: Float64Array;
}

/**
 * A chunk as a replay thread sends it: its line offsets in its page, and its numbers and
 * bytes there too (n and b of them) unless it carries them in buffers of its own.
 */
interface Sent extends ChunkHead, PackedInto {
  page: number;
  nums?: Float64Array;
  bytes?: Uint8Array;
}

interface Bad {
  bad: string;
}

/** Lets a test watch (and stop) the replay threads as they start. */
export const replayThreadsHooks: { onStart: ((worker: Worker) => void) | null } = { onStart: null };

/** A thread started before its replay was planned, and what became of it meanwhile. */
interface Started {
  worker: Worker;
  /** Why it cannot serve: it failed or ended before it was handed its plan. */
  failure: Error | null;
}

/**
 * Replay threads started before their replay is planned: a thread takes some tens of
 * milliseconds to start, which then pass while the journal is opened (its last segment
 * verified) instead of before the first event. The replay that takes them hands each its
 * plan; threads not taken are stopped with close().
 */
export class ReplayThreadStarts {
  private started: Started[] | null;

  constructor(readonly script: URL, count: number) {
    this.started = [];
    for (let i = 0; i < count; i++) {
      const s: Started = { worker: startThread(script), failure: null };
      s.worker.on('error', (err) => {
        s.failure ??= err;
      });
      s.worker.on('exit', (code) => {
        s.failure ??= new Error(`replay thread exited with code ${code} before its replay began`);
      });
      this.started.push(s);
    }
  }

  /** The threads, for one replay (which stops them): null once taken or closed. */
  take(): Started[] | null {
    const taken = this.started;
    this.started = null;
    return taken;
  }

  /** Stops the threads if no replay took them. */
  async close(): Promise<void> {
    const left = this.take();
    if (left !== null) await Promise.all(left.map((s) => s.worker.terminate()));
  }
}

/**
 * The replay threads of one replay, on the replaying thread's side. `script` is the
 * module a thread runs: it calls serveReplayThread() with the codec.
 */
export class ReplayThreads {
  readonly unpackers: EventUnpacker[] = [];
  private readonly workers: Worker[] = [];
  private readonly queues: Chunk[][] = [];
  private readonly waiting: ({ resolve: (c: Chunk) => void; reject: (err: Error) => void } | null)[] = [];
  private readonly ended: boolean[] = [];
  private readonly credits: Int32Array;
  private readonly views: PageViews[] = [];
  private failure: Error | null = null;
  private stopped = false;

  /** `started`: threads started ahead (ReplayThreadStarts) of the same script, taken before any others are started. */
  constructor(script: URL, ranges: ThreadRange[], threads: number, lineBytesMax: number, chunkBytes: number, started: Started[] | null = null) {
    const count = Math.max(1, Math.min(threads, ranges.length));
    this.credits = new Int32Array(new SharedArrayBuffer(4 * (count + 1)));
    const ahead = started ?? [];
    // Threads started ahead beyond what this replay uses.
    for (const s of ahead.splice(count)) void s.worker.terminate();
    for (let slot = 0; slot < count; slot++) {
      const pages = newPages();
      const plan: ThreadPlan = {
        ranges: ranges.filter((_, i) => i % count === slot),
        lineBytesMax, chunkBytes, credits: this.credits, slot, stopAt: count, pages,
      };
      this.views.push(new PageViews(pages));
      const s = ahead[slot];
      const worker = s?.worker ?? startThread(script);
      worker.postMessage(plan);
      this.workers.push(worker);
      this.queues.push([]);
      this.waiting.push(null);
      this.ended.push(false);
      this.unpackers.push(new EventUnpacker());
      worker.on('message', (m: Sent | Bad) => {
        if ('bad' in m) this.fail(new Error(`replay thread ${slot} found ${m.bad}`));
        else {
          const c = this.chunkOf(slot, m);
          if (c === null) this.fail(new Error(`replay thread ${slot} sent a chunk in page ${m.page}, which it does not have`));
          else this.deliver(slot, c);
        }
      });
      worker.on('error', (err) => this.fail(err));
      worker.on('exit', (code) => {
        this.ended[slot] = true;
        if (code !== 0) this.fail(new Error(`replay thread ${slot} exited with code ${code}`));
        else this.rejectWaiting(slot, new Error(`replay thread ${slot} ended without sending a chunk it was waited for`));
      });
      if (s !== undefined && s.failure !== null) {
        this.ended[slot] = true;
        this.fail(s.failure);
      }
    }
  }

  /** How many threads were started. */
  get count(): number {
    return this.workers.length;
  }

  /** The thread that replays range r. */
  slotOf(r: number): number {
    return r % this.workers.length;
  }

  /** The next chunk of a thread, in the order it sent them. */
  next(slot: number): Promise<Chunk> {
    const c = this.queues[slot]?.shift();
    if (c !== undefined) return Promise.resolve(c);
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.ended[slot] === true) return Promise.reject(new Error(`replay thread ${slot} ended without sending a chunk it was waited for`));
    return new Promise((resolve, reject) => {
      this.waiting[slot] = { resolve, reject };
    });
  }

  /** Tells a thread that one more of its chunks was taken. */
  taken(slot: number): void {
    Atomics.add(this.credits, slot, 1);
    Atomics.notify(this.credits, slot);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    Atomics.store(this.credits, this.workers.length, 1);
    for (let slot = 0; slot < this.workers.length; slot++) Atomics.notify(this.credits, slot);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  /** The chunk a thread sent, read where it lies; null when it names no page of the thread's. */
  private chunkOf(slot: number, m: Sent): Chunk | null {
    const v = this.views[slot] as PageViews;
    const offsets = v.offsets[m.page];
    const nums = m.nums ?? v.nums[m.page]?.subarray(0, m.n);
    const bytes = m.bytes ?? v.bytes[m.page]?.subarray(0, m.b);
    if (offsets === undefined || nums === undefined || bytes === undefined) return null;
    return {
      r: m.r, firstSeq: m.firstSeq, count: m.count, firstPrev: m.firstPrev, last: m.last,
      offsets: offsets.subarray(0, m.count + 1), nums, bytes, symbols: m.symbols, texts: m.texts,
    };
  }

  private deliver(slot: number, c: Chunk): void {
    const w = this.waiting[slot];
    if (w === null || w === undefined) {
      this.queues[slot]?.push(c);
      return;
    }
    this.waiting[slot] = null;
    w.resolve(c);
  }

  private fail(err: Error): void {
    if (this.stopped) return;
    this.failure ??= err;
    for (let slot = 0; slot < this.waiting.length; slot++) this.rejectWaiting(slot, this.failure);
  }

  private rejectWaiting(slot: number, err: Error): void {
    const w = this.waiting[slot];
    if (w === null || w === undefined) return;
    this.waiting[slot] = null;
    w.reject(err);
  }
}

/**
 * Starts a thread on the script; its plan follows as its first message. From the
 * TypeScript sources, the thread first registers the loader the process runs under (a
 * thread does not inherit it); the build runs its bundled script as it is.
 */
function startThread(script: URL): Worker {
  // None of the process's Node options: a thread needs none, and some (--input-type, say) would stop it starting.
  let worker: Worker;
  if (extname(fileURLToPath(script)) !== '.ts') worker = new Worker(script, { execArgv: [] });
  else {
    const loader = tsxEsmApi();
    const boot = `import(${JSON.stringify(loader)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(script.href)}); })`;
    worker = new Worker(boot, { eval: true, execArgv: [] });
  }
  replayThreadsHooks.onStart?.(worker);
  return worker;
}

/** The file URL of tsx's ESM API, found from its package's exports (the thread resolves nothing itself). */
function tsxEsmApi(): string {
  const pkg = createRequire(import.meta.url).resolve('tsx/package.json');
  const exports = (JSON.parse(readFileSync(pkg, 'utf8')) as { exports: Record<string, { import: { default: string } }> }).exports;
  const api = exports['./esm/api']?.import.default;
  if (api === undefined) throw new Error('tsx does not export ./esm/api');
  return pathToFileURL(join(dirname(pkg), api)).href;
}

/**
 * The thread's side: replays its ranges with the codec and sends the chunks. Problems
 * are reported, not thrown: the replaying thread then goes on without the threads.
 */
export async function serveReplayThread<E>(codec: ReplayCodec<E>): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('serveReplayThread runs on a replay thread');
  try {
    const [plan] = (await once(port, 'message')) as [ThreadPlan];
    await replayRanges(codec, plan, (chunk, transfer) => port.postMessage(chunk, transfer));
  } catch (err) {
    port.postMessage({ bad: err instanceof Error ? err.message : String(err) } satisfies Bad);
  }
}

async function replayRanges<E>(codec: ReplayCodec<E>, plan: ThreadPlan, send: (chunk: Sent, transfer: ArrayBuffer[]) => void): Promise<void> {
  const { credits, slot, stopAt } = plan;
  const pages = new PageViews(plan.pages);
  const check = new LineCheck(codec.parse);
  const packer = new EventPacker();
  // The largest read buffer so far, kept from one range to the next.
  let spare: Buffer | null = null;
  let sent = 0;
  for (const range of plan.ranges) {
    let seq = 0;
    let prev: string | null = null;
    let firstSeq = 0;
    let firstPrev = '';
    let first = true;
    const offsets = new Float64Array(CHUNK_LINES + 1);
    let count = 0;
    // The offset after the last line taken: where the next line begins.
    let afterLast = range.atLine ? range.start : -1;
    const flush = async (last: boolean): Promise<boolean> => {
      offsets[count] = afterLast;
      // Waits while the replaying thread has not taken enough of the chunks sent.
      for (let took = Atomics.load(credits, slot); sent - took >= AHEAD_CHUNKS; took = Atomics.load(credits, slot)) {
        if (Atomics.load(credits, stopAt) !== 0) return false;
        Atomics.wait(credits, slot, took, 100);
      }
      // The page of this chunk: the one before there was taken, or the loop above would wait.
      const page = sent % AHEAD_CHUNKS;
      (pages.offsets[page] as Float64Array).set(offsets.subarray(0, count + 1));
      const head = { r: range.r, firstSeq, count, firstPrev: first && count > 0 ? firstPrev : '', last, page };
      const into = packer.takeInto(pages.nums[page] as Float64Array, pages.bytes[page] as Uint8Array);
      if (into !== null) send({ ...head, ...into }, []);
      else {
        const own = packer.take();
        send({ ...head, ...own, n: own.nums.length, b: own.bytes.length }, [own.nums.buffer, own.bytes.buffer] as ArrayBuffer[]);
      }
      sent += 1;
      if (count > 0) first = false;
      count = 0;
      return true;
    };
    const handle = await open(range.path, 'r');
    try {
      const from = range.atLine ? range.start : range.start - 1;
      // A range's bytes and a little more for the line that runs past its bound: read once.
      const chunkBytes = range.bound === Infinity ? plan.chunkBytes : range.bound - from + BOUND_SLACK_BYTES;
      const reader: ChunkReader = new ChunkReader(handle, from, range.end, range.name, plan.lineBytesMax, chunkBytes, spare);
      let skip = !range.atLine;
      let done = false;
      while (!done && (await reader.fill())) {
        for (let nl = reader.nextLine(); nl !== -1; nl = reader.nextLine()) {
          const lineOffset = reader.lineOffset;
          if (skip) {
            // The end of the line that start fell in: the range's lines begin after it.
            skip = false;
            afterLast = lineOffset + nl + 1 - reader.lineStart;
            continue;
          }
          if (lineOffset >= range.bound) {
            done = true;
            break;
          }
          const { buf, lineStart } = reader;
          const wanted = seq === 0 ? 0 : seq + 1;
          // The event is read after the line is checked: from its bytes when the codec can, parsed when not.
          check.check(buf, lineStart, nl, range.name, lineOffset, wanted, prev, TEXT_NONE);
          if (check.seq > range.lastSeq) {
            done = true;
            break;
          }
          if (prev === null) firstPrev = check.prev;
          if (count === 0) firstSeq = check.seq;
          offsets[count] = lineOffset;
          // The stored hash, which check() found to be the bytes' own.
          packer.ascii(buf, lineStart + HASH_AT, lineStart + HASH_AT + 64);
          const mark = packer.mark();
          packer.num(1);
          if (codec.packText === undefined || !codec.packText(buf, lineStart + EVENT_AT, nl - 1, check.seq, check.prev, packer)) {
            packer.rewind(mark);
            check.readEvent(buf, lineStart, nl, range.name, lineOffset, TEXT_PARSE, wanted);
            packer.num(1);
            if (!codec.pack(check.event as E, packer)) {
              packer.rewind(mark);
              packer.num(0);
              packer.json(check.event);
            }
          }
          prev = check.hash;
          seq = check.seq;
          afterLast = lineOffset + nl + 1 - reader.lineStart;
          count += 1;
          if (count === CHUNK_LINES && !(await flush(false))) return;
        }
      }
      // A range that ends in a line cut short is the sequential scan's to report: the
      // replaying thread finds its lines fewer than the segment must hold.
      if (!(await flush(true))) return;
      // The reader read into a part of spare, or into a buffer of its own when spare was too small.
      if (spare === null || reader.buf.length > spare.length) spare = reader.buf;
    } finally {
      await handle.close();
    }
  }
}

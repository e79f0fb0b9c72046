import { hash as digest } from 'node:crypto';
import { mkdir, open, readdir, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { fsyncDir } from './durable-file.ts';
import { JournalBacklogError, JournalCorruptError } from './errors.ts';
import type { JournalCorruptReason } from './errors.ts';

/**
 * The vendor server's write-ahead journal: append-only JSON lines, hash-chained,
 * split into segment files by size, written with group commit.
 *
 * Line format, one event per line:
 *
 *     {"h":"<sha256 hex of the event text>","e":{"seq":N,"prev":"<hash of seq N-1>",...}}\n
 *
 * The hash covers the exact bytes of the event text, so a reader verifies a line by
 * slicing it at fixed offsets, without re-serialising anything. Seqs start at 1 and run
 * without gaps across segments; seq 1 chains to GENESIS_HASH.
 *
 * One process owns a journal directory at a time; nothing here guards against a second
 * writer, so the caller must.
 */

export const GENESIS_HASH = '0'.repeat(64);

export interface JournalOptions {
  dir: string;
  /** A segment is closed and a new one started before it would grow past this. Default 64 MiB. */
  segmentBytesMax?: number;
  /** Largest serialised event accepted by append. Default 1 MiB. */
  eventBytesMax?: number;
  /** Appended bytes allowed to wait for the disk before append refuses with JournalBacklogError. Default 64 MiB. */
  pendingBytesMax?: number;
  /** Closed segments whose offset index is kept in memory for read(); older ones are rebuilt on demand. Default 8. */
  indexSegmentsMax?: number;
  /** Called after every write + fdatasync of journal data with the milliseconds both took and the lines made durable. Must not throw. */
  onFsync?: (ms: number, lines: number) => void;
  /**
   * Called once when a write or fsync fails. The in-memory tail then no longer matches the
   * disk, so the default logs the error and exits the process with status 70; the server
   * restarts and recovers from the journal.
   */
  onFatal?: (err: Error) => void;
}

export interface JournalRecord {
  seq: number;
  hash: string;
  prev: string;
  /** The raw event JSON text, exactly the bytes that were hashed. */
  text: string;
}

export interface TornTail {
  /** Segment file name. */
  segment: string;
  /** Byte offset where the incomplete line began; the segment now ends here. */
  offset: number;
  bytesDropped: number;
}

export interface OpenReport {
  segments: number;
  lastSeq: number;
  lastHash: string;
  /** The incomplete final line that open cut off, if any. It had no newline, so it was never acknowledged. */
  truncated: TornTail | null;
}

export interface AppendResult {
  seq: number;
  hash: string;
  text: string;
  /** Resolves after the fdatasync that covers this line; rejects only when the journal failed fatally. */
  durable: Promise<void>;
}

const MiB = 1024 * 1024;
const SEGMENT_BYTES_MAX_DEFAULT = 64 * MiB;
const EVENT_BYTES_MAX_DEFAULT = 1 * MiB;
const PENDING_BYTES_MAX_DEFAULT = 64 * MiB;
const INDEX_SEGMENTS_MAX_DEFAULT = 8;
// Offsets are kept in Uint32Arrays, so segments must stay below 4 GiB: a segment holds at
// most segmentBytesMax, or a single line when that line alone is larger.
const SEGMENT_BYTES_LIMIT = 2 ** 31;
const READ_CHUNK_BYTES = 4 * MiB;
const STAGING_BYTES_INITIAL = 64 * 1024;
// A staging buffer that grew this large during a burst is dropped rather than kept forever.
const STAGING_BYTES_KEEP_MAX = 8 * MiB;
const EXIT_SOFTWARE = 70;

const SEGMENT_NAME = /^journal-(\d{16})\.jsonl$/;

// Fixed framing: {"h":" (6 bytes) + 64 hex + ","e": (6 bytes), then the event, then }\n.
const HASH_AT = 6;
const MID_AT = 70;
const EVENT_AT = 76;
const LINE_OVERHEAD = EVENT_AT + 2;
const HEAD = Buffer.from('{"h":"', 'latin1');
const MID = Buffer.from('","e":', 'latin1');
// The event text always opens with {"seq":<digits>,"prev":"<64 hex>".
const SEQ_OPEN = Buffer.from('{"seq":', 'latin1');
const PREV_OPEN = Buffer.from(',"prev":"', 'latin1');
const EVENT_BYTES_MIN = SEQ_OPEN.length + 1 + PREV_OPEN.length + 64 + 2;
const SEQ_DIGITS_MAX = 16;
const NEWLINE = 0x0a;
const CLOSE_BRACE = 0x7d;
const QUOTE = 0x22;
const COMMA = 0x2c;

export function segmentName(firstSeq: number): string {
  return `journal-${String(firstSeq).padStart(16, '0')}.jsonl`;
}

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`journal invariant broken: ${message}`);
}

interface Limits {
  segmentBytesMax: number;
  eventBytesMax: number;
  lineBytesMax: number;
  pendingBytesMax: number;
  indexSegmentsMax: number;
}

function resolveLimits(opts: JournalOptions): Limits {
  const eventBytesMax = positiveInt(opts.eventBytesMax, EVENT_BYTES_MAX_DEFAULT, 64 * MiB, 'eventBytesMax');
  return {
    segmentBytesMax: positiveInt(opts.segmentBytesMax, SEGMENT_BYTES_MAX_DEFAULT, SEGMENT_BYTES_LIMIT, 'segmentBytesMax'),
    eventBytesMax,
    lineBytesMax: eventBytesMax + LINE_OVERHEAD,
    pendingBytesMax: positiveInt(opts.pendingBytesMax, PENDING_BYTES_MAX_DEFAULT, 1024 * MiB, 'pendingBytesMax'),
    indexSegmentsMax: positiveInt(opts.indexSegmentsMax, INDEX_SEGMENTS_MAX_DEFAULT, 1_000_000, 'indexSegmentsMax'),
  };
}

function positiveInt(value: number | undefined, fallback: number, max: number, name: string): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 1 || v > max) {
    throw new RangeError(`${name} must be an integer from 1 to ${max}, got ${String(value)}`);
  }
  return v;
}

/** Line start offsets of one segment, in a typed array that grows by doubling. */
class OffsetIndex {
  starts: Uint32Array;
  count = 0;

  constructor(capacity: number) {
    this.starts = new Uint32Array(Math.max(16, capacity));
  }

  push(offset: number): void {
    if (this.count === this.starts.length) {
      const grown = new Uint32Array(this.starts.length * 2);
      grown.set(this.starts);
      this.starts = grown;
    }
    this.starts[this.count] = offset;
    this.count += 1;
  }

  at(i: number): number {
    const v = this.starts[i];
    assert(v !== undefined && i < this.count, `offset index has no line ${i}`);
    return v;
  }
}

interface Segment {
  readonly firstSeq: number;
  readonly name: string;
  readonly path: string;
  /** Bytes assigned to the segment, including lines still waiting to be written. */
  bytes: number;
  /** Bytes written and fdatasynced; readers never look past this. */
  durableBytes: number;
  /** Always present for the tail segment; built on demand and evicted for the others. */
  index: OffsetIndex | null;
  indexLoading: Promise<OffsetIndex> | null;
  /** False until the flusher has created the file. */
  created: boolean;
}

function newSegment(dir: string, firstSeq: number, bytes: number, created: boolean): Segment {
  const name = segmentName(firstSeq);
  return {
    firstSeq, name, path: join(dir, name), bytes, durableBytes: bytes,
    index: null, indexLoading: null, created,
  };
}

/** Where a segment's share of a batch begins in the staging buffer. */
interface Cut {
  segment: Segment;
  start: number;
  firstSeq: number;
}

/** Lines appended since the last flush started; they share one write and one fdatasync. */
interface Batch {
  buf: Buffer;
  len: number;
  cuts: Cut[];
  lastSeq: number;
  durable: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

async function readFully(handle: FileHandle, buf: Buffer, at: number, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, at + done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

async function writeFully(handle: FileHandle, buf: Buffer, at: number, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await handle.write(buf, at + done, length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Reads a byte range of a segment in large chunks and hands out complete lines. The
 * caller walks lines synchronously with nextLine() and calls fill() when it returns -1,
 * which keeps the per-line cost free of promises.
 */
class ChunkReader {
  buf: Buffer;
  /** Index in buf of the line nextLine() last returned. */
  lineStart = 0;
  private view: Buffer;
  private bufAt: number;
  private readAt: number;
  private filled = 0;
  private pos = 0;

  constructor(
    private readonly handle: FileHandle,
    start: number,
    private readonly end: number,
    private readonly segment: string,
    private readonly lineBytesMax: number,
    chunkBytes: number,
  ) {
    this.buf = Buffer.allocUnsafe(Math.max(1, Math.min(chunkBytes, end - start)));
    this.view = this.buf.subarray(0, 0);
    this.bufAt = start;
    this.readAt = start;
  }

  /** File offset of the line nextLine() last returned. */
  get lineOffset(): number {
    return this.bufAt + this.lineStart;
  }

  /** Bytes after the last complete line, meaningful once fill() returned false. */
  get remainder(): number {
    return this.filled - this.pos;
  }

  get remainderOffset(): number {
    return this.bufAt + this.pos;
  }

  /** Returns the index of the next line's newline, or -1 when the chunk holds no complete line. */
  nextLine(): number {
    const nl = this.view.indexOf(NEWLINE, this.pos);
    if (nl === -1) return -1;
    this.lineStart = this.pos;
    this.pos = nl + 1;
    return nl;
  }

  /** Loads more of the range after the unread remainder; false when the range is exhausted. */
  async fill(): Promise<boolean> {
    if (this.readAt >= this.end) return false;
    const keep = this.filled - this.pos;
    if (keep > 0 && this.pos > 0) this.buf.copyWithin(0, this.pos, this.filled);
    this.bufAt += this.pos;
    this.filled = keep;
    this.pos = 0;
    if (this.filled === this.buf.length) {
      // A whole buffer without a newline: either a long line or garbage.
      if (this.buf.length >= this.lineBytesMax) {
        throw new JournalCorruptError({
          segment: this.segment, offset: this.bufAt, reason: 'malformed',
          detail: `no newline within ${this.lineBytesMax} bytes`,
        });
      }
      const grown = Buffer.allocUnsafe(Math.min(this.buf.length * 2, this.lineBytesMax));
      this.buf.copy(grown, 0, 0, this.filled);
      this.buf = grown;
    }
    const want = Math.min(this.buf.length - this.filled, this.end - this.readAt);
    const got = await readFully(this.handle, this.buf, this.filled, want, this.readAt);
    // A file shorter than expected simply ends the range; callers check what they got.
    if (got < want) this.readAt = this.end;
    else this.readAt += got;
    this.filled += got;
    this.view = this.buf.subarray(0, this.filled);
    return got > 0;
  }
}

const TEXT_NONE = 0;
const TEXT_KEEP = 1;
const TEXT_PARSE = 2;
type TextMode = typeof TEXT_NONE | typeof TEXT_KEEP | typeof TEXT_PARSE;

function corrupt(segment: string, offset: number, seq: number | undefined, reason: JournalCorruptReason, detail: string): never {
  throw new JournalCorruptError({ segment, offset, seq, reason, detail });
}

/**
 * Verifies one line and exposes what it found in its fields, so that checking a million
 * lines allocates only the strings the caller asked for.
 */
class LineCheck {
  seq = 0;
  hash = '';
  prev = '';
  text = '';
  event: unknown = undefined;

  /**
   * Checks buf[start, end), a line without its newline, found at `offset` in `segment`.
   * expectedSeq 0 accepts any seq; expectedPrev null accepts any prev. atSeq is the seq
   * an error names when expectedSeq does not say it.
   */
  check(
    buf: Buffer, start: number, end: number, segment: string, offset: number,
    expectedSeq: number, expectedPrev: string | null, mode: TextMode, atSeq = expectedSeq,
  ): void {
    const at = atSeq === 0 ? undefined : atSeq;
    const evStart = start + EVENT_AT;
    const evEnd = end - 1;
    if (evEnd - evStart < EVENT_BYTES_MIN || buf[evEnd] !== CLOSE_BRACE) corrupt(segment, offset, at, 'malformed', 'not a journal line');
    for (let i = 0; i < HEAD.length; i++) if (buf[start + i] !== HEAD[i]) corrupt(segment, offset, at, 'malformed', 'not a journal line');
    for (let i = 0; i < MID.length; i++) if (buf[start + MID_AT + i] !== MID[i]) corrupt(segment, offset, at, 'malformed', 'not a journal line');

    const hash = digest('sha256', buf.subarray(evStart, evEnd), 'hex');
    for (let i = 0; i < 64; i++) {
      if (hash.charCodeAt(i) !== buf[start + HASH_AT + i]) corrupt(segment, offset, at, 'hash-mismatch', 'the event bytes no longer match their stored hash');
    }

    let p = evStart;
    for (let i = 0; i < SEQ_OPEN.length; i++, p++) if (buf[p] !== SEQ_OPEN[i]) corrupt(segment, offset, at, 'malformed', 'event does not begin with seq');
    let seq = 0;
    const digitsStart = p;
    for (let c = buf[p] ?? 0; c >= 0x30 && c <= 0x39 && p - digitsStart < SEQ_DIGITS_MAX; c = buf[++p] ?? 0) {
      seq = seq * 10 + (c - 0x30);
    }
    if (p === digitsStart || seq < 1) corrupt(segment, offset, at, 'malformed', 'event seq is not a positive integer');
    for (let i = 0; i < PREV_OPEN.length; i++, p++) if (buf[p] !== PREV_OPEN[i]) corrupt(segment, offset, at, 'malformed', 'event prev does not follow seq');
    const prevAt = p;
    p += 64;
    if (p + 1 >= evEnd || buf[p] !== QUOTE || (buf[p + 1] !== COMMA && buf[p + 1] !== CLOSE_BRACE)) corrupt(segment, offset, at, 'malformed', 'event prev is not 64 characters');

    if (expectedSeq !== 0 && seq !== expectedSeq) {
      corrupt(segment, offset, at, seq > expectedSeq ? 'seq-gap' : 'seq-disorder', `expected seq ${expectedSeq}, found seq ${seq}`);
    }
    let prev: string;
    if (expectedPrev !== null) {
      for (let i = 0; i < 64; i++) {
        if (expectedPrev.charCodeAt(i) !== buf[prevAt + i]) {
          corrupt(segment, offset, at, 'chain-break', `prev ${buf.toString('latin1', prevAt, prevAt + 64)} is not the hash of the event before it (${expectedPrev})`);
        }
      }
      prev = expectedPrev;
    } else {
      prev = buf.toString('latin1', prevAt, prevAt + 64);
      if (!/^[0-9a-f]{64}$/.test(prev)) corrupt(segment, offset, at, 'malformed', 'event prev is not lowercase hex');
    }

    this.seq = seq;
    this.hash = hash;
    this.prev = prev;
    if (mode === TEXT_NONE) return;
    this.text = buf.toString('utf8', evStart, evEnd);
    if (mode === TEXT_KEEP) return;
    let event: unknown;
    try {
      event = JSON.parse(this.text);
    } catch (err) {
      corrupt(segment, offset, at, 'malformed', `event is not valid JSON (${(err as Error).message})`);
    }
    // A second "seq" or "prev" key later in the text would override the canonical one.
    const e = event as { seq?: unknown; prev?: unknown };
    if (e.seq !== seq || e.prev !== prev) corrupt(segment, offset, at, 'malformed', 'event repeats its seq or prev key');
    this.event = event;
  }
}

/** The last line of a segment file, read backwards from its end. */
interface TailLine {
  buf: Buffer;
  start: number;
  end: number;
  offset: number;
  complete: boolean;
}

async function readTailLine(handle: FileHandle, size: number, segment: string, lineBytesMax: number): Promise<TailLine> {
  const last = Buffer.alloc(1);
  await readFully(handle, last, 0, 1, size - 1);
  const complete = last[0] === NEWLINE;
  const lineEnd = complete ? size - 1 : size;
  let window = Math.min(64 * 1024, lineEnd);
  for (;;) {
    const from = lineEnd - window;
    const buf = Buffer.allocUnsafe(window);
    const got = await readFully(handle, buf, 0, window, from);
    assert(got === window, `${segment} shrank while it was being read`);
    const nl = buf.lastIndexOf(NEWLINE);
    if (nl !== -1) return { buf, start: nl + 1, end: window, offset: from + nl + 1, complete };
    if (from === 0) return { buf, start: 0, end: window, offset: 0, complete };
    if (window >= lineBytesMax) {
      throw new JournalCorruptError({ segment, offset: from, reason: 'malformed', detail: `no newline within ${lineBytesMax} bytes` });
    }
    window = Math.min(window * 2, lineEnd);
  }
}

/**
 * Verifies every line of the last segment and builds its offset index. Bytes after the
 * last newline are reported, not judged: they can only be a torn, unacknowledged write.
 */
async function scanTail(handle: FileHandle, seg: Segment, prevHash: string, lineBytesMax: number, check: LineCheck) {
  const index = new OffsetIndex(Math.ceil(seg.bytes / 256));
  const reader = new ChunkReader(handle, 0, seg.bytes, seg.name, lineBytesMax, READ_CHUNK_BYTES);
  let seq = seg.firstSeq;
  let prev = prevHash;
  while (await reader.fill()) {
    for (let nl = reader.nextLine(); nl !== -1; nl = reader.nextLine()) {
      const offset = reader.lineOffset;
      check.check(reader.buf, reader.lineStart, nl, seg.name, offset, seq, prev, TEXT_NONE);
      index.push(offset);
      prev = check.hash;
      seq += 1;
    }
  }
  return { index, lastSeq: seq - 1, lastHash: prev, tornOffset: reader.remainderOffset, tornBytes: reader.remainder };
}

/**
 * Checks that a segment's first line is the event its file name promises and that it
 * links to the segment before it. An empty last segment, or one holding only a torn
 * line, has no first line to check.
 */
async function checkHead(
  handle: FileHandle, seg: Segment, isLast: boolean, prevSeq: number, prevHash: string,
  lineBytesMax: number, check: LineCheck,
): Promise<void> {
  if (seg.bytes === 0 && !isLast) {
    throw new JournalCorruptError({ segment: seg.name, offset: 0, seq: seg.firstSeq, reason: 'empty-segment', detail: 'only the last segment may be empty' });
  }
  const reader = new ChunkReader(handle, 0, seg.bytes, seg.name, lineBytesMax, 64 * 1024);
  let nl = -1;
  while (nl === -1 && (await reader.fill())) nl = reader.nextLine();
  if (nl !== -1) {
    check.check(reader.buf, reader.lineStart, nl, seg.name, 0, 0, null, TEXT_NONE, seg.firstSeq);
    if (check.seq !== seg.firstSeq) {
      throw new JournalCorruptError({
        segment: seg.name, offset: 0, seq: seg.firstSeq, reason: 'segment-mismatch',
        detail: `the file is named for seq ${seg.firstSeq} but its first event is seq ${check.seq}`,
      });
    }
  } else if (!isLast) {
    throw new JournalCorruptError({ segment: seg.name, offset: 0, seq: seg.firstSeq, reason: 'incomplete-line', detail: 'only the last segment may end without a newline' });
  }
  if (seg.firstSeq !== prevSeq + 1) {
    const missing = seg.firstSeq > prevSeq + 1;
    throw new JournalCorruptError({
      segment: seg.name, offset: 0, seq: prevSeq + 1, reason: missing ? 'seq-gap' : 'seq-disorder',
      detail: missing
        ? `seqs ${prevSeq + 1} to ${seg.firstSeq - 1} are in no segment`
        : `the segment starts at seq ${seg.firstSeq} but the one before it already reaches seq ${prevSeq}`,
    });
  }
  if (nl !== -1 && check.prev !== prevHash) {
    throw new JournalCorruptError({
      segment: seg.name, offset: 0, seq: seg.firstSeq, reason: 'chain-break',
      detail: `prev ${check.prev} is not the hash of the event before it (${prevHash})`,
    });
  }
}

/**
 * Checks the last line of a closed segment and returns its seq and hash. The lines
 * between a closed segment's first and last are left to replay and verifyAll, so that
 * opening stays cheap however long the journal is.
 */
async function checkLast(handle: FileHandle, seg: Segment, expectedSeq: number, lineBytesMax: number, check: LineCheck) {
  const tail = await readTailLine(handle, seg.bytes, seg.name, lineBytesMax);
  if (!tail.complete) {
    throw new JournalCorruptError({ segment: seg.name, offset: tail.offset, seq: expectedSeq, reason: 'incomplete-line', detail: 'only the last segment may end without a newline' });
  }
  check.check(tail.buf, tail.start, tail.end, seg.name, tail.offset, 0, null, TEXT_NONE, expectedSeq);
  if (check.seq < seg.firstSeq) {
    throw new JournalCorruptError({
      segment: seg.name, offset: tail.offset, seq: expectedSeq, reason: 'seq-disorder',
      detail: `the last event is seq ${check.seq}, before the segment's first seq ${seg.firstSeq}`,
    });
  }
  return { seq: check.seq, hash: check.hash };
}

function defaultOnFatal(err: Error): void {
  console.error(`journal: a write or fsync failed, so acknowledged state can no longer be trusted; exiting: ${err.stack ?? err.message}`);
  process.exit(EXIT_SOFTWARE);
}

export class Journal {
  readonly dir: string;
  private readonly limits: Limits;
  private readonly onFsync: ((ms: number, lines: number) => void) | undefined;
  private readonly onFatal: (err: Error) => void;

  private readonly segments: Segment[];
  private tailSeq: number;
  private tailHash: string;
  private syncedSeq: number;
  private totalBytes: number;
  /** Closed segments holding an offset index, least recently used first. */
  private readonly indexed = new Set<Segment>();

  private staging: Batch | null = null;
  private inFlight: Batch | null = null;
  private spare: Buffer | null = null;
  private loop: Promise<void> | null = null;
  private writeSegment: Segment | null = null;
  private writeHandle: FileHandle | null = null;
  private state: 'open' | 'closing' | 'closed' | 'failed' = 'open';
  private fatal: Error | null = null;

  private constructor(dir: string, opts: JournalOptions, limits: Limits, segments: Segment[], lastSeq: number, lastHash: string) {
    this.dir = dir;
    this.limits = limits;
    this.onFsync = opts.onFsync;
    this.onFatal = opts.onFatal ?? defaultOnFatal;
    this.segments = segments;
    this.tailSeq = lastSeq;
    this.tailHash = lastHash;
    this.syncedSeq = lastSeq;
    this.totalBytes = segments.reduce((sum, s) => sum + s.bytes, 0);
  }

  /**
   * Opens (creating if needed) the journal in opts.dir and finds its tail. Checks the
   * segment table (names, first and last line of each segment, the chain across
   * segments) and every line of the last segment. An incomplete final line is removed
   * and reported; anything else wrong throws JournalCorruptError and leaves the files
   * untouched.
   */
  static async open(opts: JournalOptions): Promise<{ journal: Journal; report: OpenReport }> {
    const limits = resolveLimits(opts);
    const dir = resolve(opts.dir);
    const created = await mkdir(dir, { recursive: true });
    if (created !== undefined) {
      // Each newly created directory must be durable in its parent.
      for (let d = dir; ; d = dirname(d)) {
        await fsyncDir(dirname(d));
        if (d === created || dirname(d) === d) break;
      }
    }

    const names = (await readdir(dir)).filter((n) => SEGMENT_NAME.test(n)).sort();
    const segments: Segment[] = [];
    for (const name of names) {
      const firstSeq = Number(SEGMENT_NAME.exec(name)?.[1]);
      if (!Number.isSafeInteger(firstSeq) || firstSeq < 1) {
        throw new JournalCorruptError({ segment: name, offset: 0, reason: 'segment-mismatch', detail: 'the file name does not hold a valid first seq' });
      }
      const seg = newSegment(dir, firstSeq, 0, true);
      const { size } = await stat(seg.path);
      if (size >= 2 ** 32) {
        throw new JournalCorruptError({ segment: name, offset: 0, reason: 'malformed', detail: `segment is ${size} bytes, larger than any the journal writes` });
      }
      seg.bytes = size;
      seg.durableBytes = size;
      segments.push(seg);
    }

    let lastSeq = 0;
    let lastHash = GENESIS_HASH;
    let tornTail: TornTail | null = null;
    let tailIndex: OffsetIndex | null = null;
    const check = new LineCheck();
    for (let k = 0; k < segments.length; k++) {
      const seg = segments[k] as Segment;
      const isLast = k === segments.length - 1;
      const handle = await open(seg.path, 'r');
      try {
        await checkHead(handle, seg, isLast, lastSeq, lastHash, limits.lineBytesMax, check);
        if (isLast) {
          const tail = await scanTail(handle, seg, lastHash, limits.lineBytesMax, check);
          tailIndex = tail.index;
          lastSeq = tail.lastSeq;
          lastHash = tail.lastHash;
          if (tail.tornBytes > 0) tornTail = { segment: seg.name, offset: tail.tornOffset, bytesDropped: tail.tornBytes };
        } else {
          const next = segments[k + 1] as Segment;
          const last = await checkLast(handle, seg, next.firstSeq - 1, limits.lineBytesMax, check);
          lastSeq = last.seq;
          lastHash = last.hash;
        }
      } finally {
        await handle.close();
      }
    }

    // Everything complete has been verified; only now may the torn fragment go.
    if (tornTail !== null) {
      const tail = segments[segments.length - 1] as Segment;
      const handle = await open(tail.path, 'r+');
      try {
        await handle.truncate(tornTail.offset);
        await handle.sync();
      } finally {
        await handle.close();
      }
      tail.bytes = tornTail.offset;
      tail.durableBytes = tornTail.offset;
    }

    const tail = segments[segments.length - 1];
    if (tail !== undefined) tail.index = tailIndex;
    const journal = new Journal(dir, opts, limits, segments, lastSeq, lastHash);
    return { journal, report: { segments: segments.length, lastSeq, lastHash, truncated: tornTail } };
  }

  get lastSeq(): number {
    return this.tailSeq;
  }

  get lastHash(): string {
    return this.tailHash;
  }

  get nextSeq(): number {
    return this.tailSeq + 1;
  }

  /** The highest seq whose line has been fdatasynced. */
  get durableSeq(): number {
    return this.syncedSeq;
  }

  /** Total journal bytes, counting lines still waiting for the disk. */
  get bytes(): number {
    return this.totalBytes;
  }

  /**
   * Adds an event. Synchronous: the line is serialised, hashed and queued, and the tail
   * advances at once, so callers assign seqs without awaiting. The event is durable,
   * and may be acknowledged, only when `durable` resolves.
   */
  append(fields: Record<string, unknown> & { seq: number }): AppendResult {
    if (this.state !== 'open') throw this.fatal ?? new Error('journal is closed');
    const seq = fields.seq;
    if (seq !== this.tailSeq + 1) throw new Error(`journal append: seq ${String(seq)} is not the next seq ${this.tailSeq + 1}`);
    if ('prev' in fields) throw new Error('journal append: prev is set by the journal, not the caller');
    const prev = this.tailHash;
    // Spreading after seq and prev keeps them first while the caller's fields keep their
    // order; the caller's seq lands on the key already there, with the same value.
    const text = JSON.stringify({ seq, prev, ...(fields as Record<string, unknown>) });
    if (text.length > this.limits.eventBytesMax) throw new RangeError(`journal append: event of ${text.length} characters exceeds ${this.limits.eventBytesMax} bytes`);

    const batch = this.staging ?? this.newBatch();
    this.ensureCapacity(batch, LINE_OVERHEAD + text.length * 3);
    const start = batch.len;
    const buf = batch.buf;
    const evStart = start + EVENT_AT;
    const evBytes = buf.write(text, evStart, 'utf8');
    if (evBytes > this.limits.eventBytesMax) throw new RangeError(`journal append: event of ${evBytes} bytes exceeds ${this.limits.eventBytesMax} bytes`);
    const lineBytes = evBytes + LINE_OVERHEAD;
    const pending = batch.len + lineBytes + (this.inFlight?.len ?? 0);
    if (pending > this.limits.pendingBytesMax) throw new JournalBacklogError(pending, this.limits.pendingBytesMax);

    const hash = digest('sha256', buf.subarray(evStart, evStart + evBytes), 'hex');
    HEAD.copy(buf, start);
    buf.write(hash, start + HASH_AT, 'latin1');
    MID.copy(buf, start + MID_AT);
    buf[evStart + evBytes] = CLOSE_BRACE;
    buf[evStart + evBytes + 1] = NEWLINE;

    let seg = this.segments[this.segments.length - 1];
    if (seg === undefined || (seg.bytes > 0 && seg.bytes + lineBytes > this.limits.segmentBytesMax)) seg = this.startSegment(seq);
    const lastCut = batch.cuts[batch.cuts.length - 1];
    if (lastCut === undefined || lastCut.segment !== seg) batch.cuts.push({ segment: seg, start, firstSeq: seq });
    assert(seg.index !== null, 'the tail segment has an offset index');
    seg.index.push(seg.bytes);
    seg.bytes += lineBytes;
    this.totalBytes += lineBytes;
    batch.len += lineBytes;
    batch.lastSeq = seq;
    this.tailSeq = seq;
    this.tailHash = hash;
    if (this.loop === null) this.loop = this.flushLoop();
    return { seq, hash, text, durable: batch.durable };
  }

  /**
   * Calls onEvent for every event from fromSeq to the current last seq, in order, after
   * verifying each line's hash and its link to the one before; the event before fromSeq
   * must hash to expectedPrev (GENESIS_HASH for fromSeq 1). fromSeq may be lastSeq + 1,
   * which replays nothing but still checks expectedPrev against the tail.
   */
  async replay<E = unknown>(
    fromSeq: number, expectedPrev: string,
    onEvent: (rec: JournalRecord, event: E) => void,
  ): Promise<{ count: number; lastSeq: number; lastHash: string }> {
    this.assertReadable();
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 1) throw new RangeError(`journal replay: fromSeq ${fromSeq} is not a positive integer`);
    const toSeq = this.tailSeq;
    await this.waitDurable(toSeq);
    if (fromSeq > toSeq + 1) {
      const tail = this.segments[this.segments.length - 1];
      throw new JournalCorruptError({
        segment: tail?.name ?? segmentName(1), offset: tail?.durableBytes ?? 0, seq: toSeq + 1, reason: 'seq-gap',
        detail: `the journal ends at seq ${toSeq} but replay was asked to start at seq ${fromSeq}`,
      });
    }
    if (fromSeq === toSeq + 1) {
      const lastHash = toSeq === 0 ? GENESIS_HASH : toSeq === this.tailSeq ? this.tailHash : (await this.read(toSeq)).hash;
      if (lastHash !== expectedPrev) {
        const tail = this.segments[this.segments.length - 1];
        throw new JournalCorruptError({
          segment: tail?.name ?? segmentName(1), offset: tail?.durableBytes ?? 0, seq: fromSeq, reason: 'chain-break',
          detail: `replay expected the event before seq ${fromSeq} to hash to ${expectedPrev}, but it hashes to ${lastHash}`,
        });
      }
      return { count: 0, lastSeq: toSeq, lastHash };
    }
    // The event is whatever JSON the caller appended; E only names that shape for the caller.
    return this.scan(fromSeq, toSeq, expectedPrev, TEXT_PARSE, onEvent as (rec: JournalRecord, event: unknown) => void);
  }

  /** Checks the whole chain from seq 1 to the last durable seq, parsing every event. */
  async verifyAll(): Promise<{ count: number; lastSeq: number; lastHash: string }> {
    this.assertReadable();
    const toSeq = this.syncedSeq;
    if (toSeq === 0) return { count: 0, lastSeq: 0, lastHash: GENESIS_HASH };
    return this.scan(1, toSeq, GENESIS_HASH, TEXT_PARSE, null);
  }

  /**
   * Reads one event by seq through the offset index: one positioned read, whatever the
   * journal's size. The line's hash and seq are verified; a seq not yet durable is
   * returned once it is.
   */
  async read(seq: number): Promise<JournalRecord> {
    this.assertReadable();
    if (!Number.isSafeInteger(seq) || seq < 1 || seq > this.tailSeq) {
      throw new RangeError(`journal read: seq ${seq} is not in 1..${this.tailSeq}`);
    }
    await this.waitDurable(seq);
    const k = this.segmentOf(seq);
    const seg = this.segments[k] as Segment;
    const index = await this.indexOf(k);
    const i = seq - seg.firstSeq;
    const start = index.at(i);
    const end = i + 1 < index.count ? index.at(i + 1) : seg.bytes;
    const buf = Buffer.allocUnsafe(end - start);
    const handle = await open(seg.path, 'r');
    try {
      const got = await readFully(handle, buf, 0, buf.length, start);
      if (got !== buf.length || buf[buf.length - 1] !== NEWLINE) {
        throw new JournalCorruptError({ segment: seg.name, offset: start, seq, reason: 'incomplete-line', detail: 'the indexed line is cut short' });
      }
    } finally {
      await handle.close();
    }
    const check = new LineCheck();
    check.check(buf, 0, buf.length - 1, seg.name, start, seq, null, TEXT_KEEP);
    return { seq, hash: check.hash, prev: check.prev, text: check.text };
  }

  /**
   * Yields the events fromSeq..toSeq (default: the last durable seq at the call) with
   * hashes and the chain between them verified. Only durable events are ever yielded,
   * so nothing leaves the vendor that a crash could still take back.
   */
  async *iterate(fromSeq: number, toSeq?: number): AsyncGenerator<JournalRecord, void, undefined> {
    this.assertReadable();
    const last = toSeq ?? this.syncedSeq;
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 1 || !Number.isSafeInteger(last) || last > this.tailSeq || fromSeq > last + 1) {
      throw new RangeError(`journal iterate: ${fromSeq}..${last} is not a range within 1..${this.tailSeq}`);
    }
    if (fromSeq > last) return;
    await this.waitDurable(last);
    const check = new LineCheck();
    let seq = fromSeq;
    let prev: string | null = null;
    let k = this.segmentOf(fromSeq);
    let offset = (await this.indexOf(k)).at(fromSeq - (this.segments[k] as Segment).firstSeq);
    while (seq <= last) {
      const seg = this.segments[k];
      if (seg === undefined) throw this.missing(seq);
      const handle = await open(seg.path, 'r');
      try {
        const reader = new ChunkReader(handle, offset, seg.durableBytes, seg.name, this.limits.lineBytesMax, READ_CHUNK_BYTES);
        while (seq <= last && (await reader.fill())) {
          for (let nl = reader.nextLine(); nl !== -1 && seq <= last; nl = reader.nextLine()) {
            check.check(reader.buf, reader.lineStart, nl, seg.name, reader.lineOffset, seq, prev, TEXT_KEEP);
            const rec: JournalRecord = { seq, hash: check.hash, prev: check.prev, text: check.text };
            prev = rec.hash;
            seq += 1;
            yield rec;
          }
        }
        if (seq <= last && reader.remainder > 0) throw this.incomplete(seg, reader.remainderOffset, seq);
      } finally {
        await handle.close();
      }
      k += 1;
      offset = 0;
    }
  }

  /** Resolves once every event appended so far is durable. */
  async flushed(): Promise<void> {
    if (this.fatal !== null) throw this.fatal;
    await this.waitDurable(this.tailSeq);
  }

  /** Waits for queued lines to be durable, then closes the segment file. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state === 'open') this.state = 'closing';
    while (this.loop !== null) await this.loop;
    const handle = this.writeHandle;
    this.writeHandle = null;
    this.writeSegment = null;
    if (handle !== null) {
      try {
        if (this.fatal === null) await handle.sync();
      } finally {
        await handle.close();
      }
    }
    if (this.fatal !== null) throw this.fatal;
    this.state = 'closed';
  }

  private assertReadable(): void {
    if (this.state === 'closed') throw new Error('journal is closed');
    if (this.fatal !== null) throw this.fatal;
  }

  private newBatch(): Batch {
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const durable = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Callers that never await `durable` must not turn a fatal error into an unhandled rejection.
    durable.catch(() => undefined);
    const buf = this.spare ?? Buffer.allocUnsafe(STAGING_BYTES_INITIAL);
    this.spare = null;
    const batch: Batch = { buf, len: 0, cuts: [], lastSeq: 0, durable, resolve, reject };
    this.staging = batch;
    return batch;
  }

  private ensureCapacity(batch: Batch, lineBytesMax: number): void {
    const need = batch.len + lineBytesMax;
    if (need <= batch.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(need, batch.buf.length * 2));
    batch.buf.copy(grown, 0, 0, batch.len);
    batch.buf = grown;
  }

  private startSegment(firstSeq: number): Segment {
    const previous = this.segments[this.segments.length - 1];
    if (previous !== undefined) this.remember(previous);
    const seg = newSegment(this.dir, firstSeq, 0, false);
    seg.index = new OffsetIndex(1024);
    this.segments.push(seg);
    return seg;
  }

  /** Writes batches one at a time; lines appended meanwhile form the next batch. */
  private async flushLoop(): Promise<void> {
    try {
      // One turn of the event loop lets every request that arrived together join the batch.
      await nextTurn();
      while (this.staging !== null && this.staging.len > 0 && this.fatal === null) {
        const batch = this.staging;
        this.staging = null;
        this.inFlight = batch;
        await this.writeBatch(batch);
        this.inFlight = null;
        this.syncedSeq = batch.lastSeq;
        if (batch.buf.length <= STAGING_BYTES_KEEP_MAX) this.spare = batch.buf;
        batch.resolve();
        // Let the callers just acknowledged queue their next appends before the next flush.
        await nextTurn();
      }
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.loop = null;
    }
  }

  private async writeBatch(batch: Batch): Promise<void> {
    for (let i = 0; i < batch.cuts.length; i++) {
      const cut = batch.cuts[i] as Cut;
      const next = batch.cuts[i + 1];
      const end = next === undefined ? batch.len : next.start;
      const lines = (next === undefined ? batch.lastSeq + 1 : next.firstSeq) - cut.firstSeq;
      const seg = cut.segment;
      const handle = await this.handleFor(seg);
      const t0 = performance.now();
      await writeFully(handle, batch.buf, cut.start, end - cut.start, seg.durableBytes);
      await handle.datasync();
      seg.durableBytes += end - cut.start;
      this.onFsync?.(performance.now() - t0, lines);
    }
  }

  /** The write handle for seg; a previous segment is already synced when the next one starts. */
  private async handleFor(seg: Segment): Promise<FileHandle> {
    if (this.writeSegment === seg && this.writeHandle !== null) return this.writeHandle;
    const old = this.writeHandle;
    this.writeHandle = null;
    this.writeSegment = null;
    if (old !== null) await old.close();
    let handle: FileHandle;
    if (seg.created) {
      handle = await open(seg.path, 'r+');
    } else {
      // 'wx' because a file already there would mean two writers or a stale segment table.
      handle = await open(seg.path, 'wx');
      seg.created = true;
      await fsyncDir(this.dir);
    }
    this.writeHandle = handle;
    this.writeSegment = seg;
    return handle;
  }

  private fail(err: Error): void {
    if (this.fatal !== null) return;
    this.fatal = err;
    this.state = 'failed';
    this.inFlight?.reject(err);
    this.staging?.reject(err);
    this.inFlight = null;
    this.staging = null;
    this.onFatal(err);
  }

  private waitDurable(seq: number): Promise<void> | undefined {
    if (seq <= this.syncedSeq) return undefined;
    if (this.fatal !== null) return Promise.reject(this.fatal);
    if (this.inFlight !== null && seq <= this.inFlight.lastSeq) return this.inFlight.durable;
    assert(this.staging !== null, `seq ${seq} is neither durable nor queued`);
    return this.staging.durable;
  }

  /** Index in this.segments of the segment holding seq. */
  private segmentOf(seq: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.segments[mid] as Segment).firstSeq <= seq) lo = mid;
      else hi = mid - 1;
    }
    assert(lo < this.segments.length && (this.segments[lo] as Segment).firstSeq <= seq, `no segment holds seq ${seq}`);
    return lo;
  }

  private lineCount(k: number): number {
    const seg = this.segments[k] as Segment;
    const next = this.segments[k + 1];
    return (next === undefined ? this.tailSeq + 1 : next.firstSeq) - seg.firstSeq;
  }

  /** Keeps a closed segment's index in memory, evicting the least recently used beyond the limit. */
  private remember(seg: Segment): void {
    this.indexed.delete(seg);
    this.indexed.add(seg);
    while (this.indexed.size > this.limits.indexSegmentsMax) {
      const oldest = this.indexed.values().next().value as Segment;
      this.indexed.delete(oldest);
      oldest.index = null;
    }
  }

  private async indexOf(k: number): Promise<OffsetIndex> {
    const seg = this.segments[k] as Segment;
    const isTail = k === this.segments.length - 1;
    if (seg.index !== null) {
      if (!isTail) this.remember(seg);
      return seg.index;
    }
    // A closed segment is indexed whole, but a group commit that rotated may still be
    // writing its last lines: a reader of an earlier, durable seq waits for them.
    const next = this.segments[k + 1];
    if (next !== undefined) await this.waitDurable(next.firstSeq - 1);
    seg.indexLoading ??= this.buildIndex(k).finally(() => {
      seg.indexLoading = null;
    });
    const index = await seg.indexLoading;
    if (seg.index === null) {
      seg.index = index;
      this.remember(seg);
    }
    return index;
  }

  /** Finds the line starts of a closed segment by scanning it for newlines. */
  private async buildIndex(k: number): Promise<OffsetIndex> {
    const seg = this.segments[k] as Segment;
    const expected = this.lineCount(k);
    const index = new OffsetIndex(expected);
    const handle = await open(seg.path, 'r');
    try {
      const reader = new ChunkReader(handle, 0, seg.durableBytes, seg.name, this.limits.lineBytesMax, READ_CHUNK_BYTES);
      while (await reader.fill()) {
        for (let nl = reader.nextLine(); nl !== -1; nl = reader.nextLine()) {
          if (index.count === expected) {
            throw new JournalCorruptError({
              segment: seg.name, offset: reader.lineOffset, seq: seg.firstSeq + expected, reason: 'seq-disorder',
              detail: `the segment holds more than the ${expected} events its neighbours leave room for`,
            });
          }
          index.push(reader.lineOffset);
        }
      }
      if (reader.remainder > 0) throw this.incomplete(seg, reader.remainderOffset, seg.firstSeq + index.count);
    } finally {
      await handle.close();
    }
    if (index.count < expected) {
      throw new JournalCorruptError({
        segment: seg.name, offset: seg.durableBytes, seq: seg.firstSeq + index.count, reason: 'seq-gap',
        detail: `the segment holds ${index.count} events but the next segment starts at seq ${seg.firstSeq + expected}`,
      });
    }
    return index;
  }

  /** Verifies fromSeq..toSeq line by line; onEvent, when given, gets each record and parsed event. */
  private async scan(
    fromSeq: number, toSeq: number, expectedPrev: string, mode: TextMode,
    onEvent: ((rec: JournalRecord, event: unknown) => void) | null,
  ): Promise<{ count: number; lastSeq: number; lastHash: string }> {
    const check = new LineCheck();
    let seq = fromSeq;
    let prev = expectedPrev;
    let k = this.segmentOf(fromSeq);
    let offset = (await this.indexOf(k)).at(fromSeq - (this.segments[k] as Segment).firstSeq);
    while (seq <= toSeq) {
      const seg = this.segments[k];
      if (seg === undefined) throw this.missing(seq);
      if (offset === 0 && seg.firstSeq !== seq) {
        throw new JournalCorruptError({
          segment: seg.name, offset: 0, seq, reason: 'segment-mismatch',
          detail: `the file is named for seq ${seg.firstSeq} but the segment before it ends at seq ${seq - 1}`,
        });
      }
      // Closed segments read from their start get their index built on the way.
      const building = offset === 0 && seg.index === null && k < this.segments.length - 1 ? new OffsetIndex(this.lineCount(k)) : null;
      const handle = await open(seg.path, 'r');
      try {
        const reader = new ChunkReader(handle, offset, seg.durableBytes, seg.name, this.limits.lineBytesMax, READ_CHUNK_BYTES);
        while (seq <= toSeq && (await reader.fill())) {
          for (let nl = reader.nextLine(); nl !== -1 && seq <= toSeq; nl = reader.nextLine()) {
            const lineOffset = reader.lineOffset;
            check.check(reader.buf, reader.lineStart, nl, seg.name, lineOffset, seq, prev, mode);
            building?.push(lineOffset);
            if (onEvent !== null) onEvent({ seq, hash: check.hash, prev, text: check.text }, check.event);
            prev = check.hash;
            seq += 1;
          }
        }
        if (seq <= toSeq && reader.remainder > 0) throw this.incomplete(seg, reader.remainderOffset, seq);
      } finally {
        await handle.close();
      }
      if (building !== null && building.count === this.lineCount(k) && seg.index === null) {
        seg.index = building;
        this.remember(seg);
      }
      k += 1;
      offset = 0;
    }
    return { count: toSeq - fromSeq + 1, lastSeq: toSeq, lastHash: prev };
  }

  private incomplete(seg: Segment, offset: number, seq: number): JournalCorruptError {
    return new JournalCorruptError({ segment: seg.name, offset, seq, reason: 'incomplete-line', detail: 'the line has no newline but more events should follow' });
  }

  private missing(seq: number): JournalCorruptError {
    const tail = this.segments[this.segments.length - 1] as Segment;
    return new JournalCorruptError({ segment: tail.name, offset: tail.durableBytes, seq, reason: 'seq-gap', detail: `seq ${seq} is in no segment` });
  }
}

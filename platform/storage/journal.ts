import { mkdir, open, readdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { DIR_MODE, fsyncDir } from './durable-file.ts';
import { JournalBacklogError, JournalCorruptError } from './errors.ts';
import { assert, EVENT_AT, frameLine, GENESIS_HASH, LINE_OVERHEAD, LineCheck, NEWLINE, SEGMENT_NAME, segmentName, TEXT_KEEP, TEXT_PARSE, type EventParser, type TextMode } from './journal-format.ts';
import { cutTornTail, recoverSegments, type TornTail } from './journal-recovery.ts';
import { GroupCommitWriter } from './journal-writer.ts';
import type { EventUnpacker, ReplayCodec } from './replay-pack.ts';
import { RANGE_BYTES, ReplayThreads, type ReplayThreadStarts, type ThreadRange } from './replay-threads.ts';
import { ChainVerifier, VERDICT_LINES, type VerifyRange } from './replay-worker.ts';
import { buildIndex, ChunkReader, incompleteLine, newSegment, OffsetIndex, READ_CHUNK_BYTES, readFully, type Segment } from './segment-reader.ts';

/**
 * The vendor server's write-ahead journal: append-only JSON lines, hash-chained
 * (journal-format.ts), split into segment files by size (segment-reader.ts), checked
 * when opened (journal-recovery.ts) and written with group commit (journal-writer.ts).
 *
 * One process owns a journal directory at a time; nothing here guards against a second
 * writer, so the caller must (platform/lock.ts).
 */

export { GENESIS_HASH, segmentName } from './journal-format.ts';
export type { TornTail } from './journal-recovery.ts';

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
  /**
   * Opens without changing anything: no directory is created, a torn last line is
   * reported (OpenReport.torn) but left in place, and append is refused. Safe while
   * another process writes the journal: it sees the lines complete when it looked.
   */
  readOnly?: boolean;
  /**
   * A replay of at least this many events that spans two or more segments uses threads:
   * with a codec, threads that read, check and parse the lines (replay-threads.ts);
   * without one, a thread that checks the hashes while this one parses (replay-worker.ts).
   * Shorter replays do not pay the threads' start. Default 20 000; 0 never uses them.
   */
  replayThreadMin?: number;
}

/**
 * A replay's events read, checked and parsed on several threads (replay-threads.ts):
 * `script` is the module each thread runs (it calls serveReplayThread with the same
 * codec), `threads` how many.
 */
export interface ReplayInParallel<E> {
  script: URL;
  codec: ReplayCodec<E>;
  threads: number;
  /** Bytes of a segment a thread takes at a time; default RANGE_BYTES. */
  rangeBytes?: number;
  /** Threads of the script started ahead, taken first; stopped by the replay if it takes none. */
  started?: ReplayThreadStarts;
  /**
   * Told once a replay is done with its threads: how many it started, and the problem
   * that made it go on without them from there (null when they replayed everything).
   * Not told when the consumer's own error ended the replay.
   */
  onDone?: (threads: number, fallback: Error | null) => void;
}

export interface JournalRecord {
  seq: number;
  hash: string;
  prev: string;
  /** The raw event JSON text, exactly the bytes that were hashed. */
  text: string;
}

export interface OpenReport {
  segments: number;
  lastSeq: number;
  lastHash: string;
  /** The incomplete final line that open cut off, if any. It had no newline, so it was never acknowledged. */
  truncated: TornTail | null;
  /** The incomplete final line found, whether cut off (writable open) or left in place (read-only open). */
  torn: TornTail | null;
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
const REPLAY_THREAD_MIN_DEFAULT = 20_000;
// Offsets are kept in Uint32Arrays, so segments must stay below 4 GiB: a segment holds at
// most segmentBytesMax, or a single line when that line alone is larger.
const SEGMENT_BYTES_LIMIT = 2 ** 31;
const EXIT_SOFTWARE = 70;

interface Limits {
  segmentBytesMax: number;
  eventBytesMax: number;
  lineBytesMax: number;
  pendingBytesMax: number;
  indexSegmentsMax: number;
  replayThreadMin: number;
}

function resolveLimits(opts: JournalOptions): Limits {
  const eventBytesMax = positiveInt(opts.eventBytesMax, EVENT_BYTES_MAX_DEFAULT, 64 * MiB, 'eventBytesMax');
  return {
    segmentBytesMax: positiveInt(opts.segmentBytesMax, SEGMENT_BYTES_MAX_DEFAULT, SEGMENT_BYTES_LIMIT, 'segmentBytesMax'),
    eventBytesMax,
    lineBytesMax: eventBytesMax + LINE_OVERHEAD,
    pendingBytesMax: positiveInt(opts.pendingBytesMax, PENDING_BYTES_MAX_DEFAULT, 1024 * MiB, 'pendingBytesMax'),
    indexSegmentsMax: positiveInt(opts.indexSegmentsMax, INDEX_SEGMENTS_MAX_DEFAULT, 1_000_000, 'indexSegmentsMax'),
    replayThreadMin: opts.replayThreadMin === 0 ? 0 : positiveInt(opts.replayThreadMin, REPLAY_THREAD_MIN_DEFAULT, Number.MAX_SAFE_INTEGER, 'replayThreadMin'),
  };
}

function positiveInt(value: number | undefined, fallback: number, max: number, name: string): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 1 || v > max) {
    throw new RangeError(`${name} must be an integer from 1 to ${max}, got ${String(value)}`);
  }
  return v;
}

/**
 * The event text in two parts, seq and prev first, then the caller's fields in their
 * order (the caller's seq is the key already there, with the same value). The caller's
 * fields normally begin with seq: their own text then follows a head that adds prev, so
 * the event is neither copied into a new object nor its text into a new string. Fields
 * in another order are spread.
 */
function eventText(seq: number, prev: string, fields: Record<string, unknown>): { head: string; rest: string } {
  const seqHead = `{"seq":${seq},`;
  const own = JSON.stringify(fields);
  if (own.startsWith(seqHead)) return { head: `${seqHead}"prev":"${prev}",`, rest: own.slice(seqHead.length) };
  return { head: '', rest: JSON.stringify({ seq, prev, ...fields }) };
}

function defaultOnFatal(err: Error): void {
  console.error(`journal: a write or fsync failed, so acknowledged state can no longer be trusted; exiting: ${err.stack ?? err.message}`);
  process.exit(EXIT_SOFTWARE);
}

/** Carries an error thrown by a replay's consumer past the fallback that other errors take. */
class ConsumerError extends Error {
  constructor(readonly thrown: unknown) {
    super('the replay consumer failed');
  }
}

function onEventGuarded(onEvent: (rec: JournalRecord, event: unknown) => void, rec: JournalRecord, event: unknown): void {
  try {
    onEvent(rec, event);
  } catch (err) {
    throw new ConsumerError(err);
  }
}

export class Journal {
  readonly dir: string;
  private readonly limits: Limits;
  private readonly onFatal: (err: Error) => void;
  private readonly readOnly: boolean;

  private readonly segments: Segment[];
  private tailSeq: number;
  private tailHash: string;
  private totalBytes: number;
  /** Closed segments holding an offset index, least recently used first. */
  private readonly indexed = new Set<Segment>();

  private readonly writer: GroupCommitWriter;
  private state: 'open' | 'closing' | 'closed' | 'failed' = 'open';

  private constructor(dir: string, opts: JournalOptions, limits: Limits, segments: Segment[], lastSeq: number, lastHash: string) {
    this.dir = dir;
    this.limits = limits;
    this.onFatal = opts.onFatal ?? defaultOnFatal;
    this.readOnly = opts.readOnly === true;
    this.segments = segments;
    this.tailSeq = lastSeq;
    this.tailHash = lastHash;
    this.totalBytes = segments.reduce((sum, s) => sum + s.bytes, 0);
    this.writer = new GroupCommitWriter(dir, lastSeq, opts.onFsync, (err) => {
      this.state = 'failed';
      this.onFatal(err);
    });
  }

  /**
   * Whether a replay of the journal in `dir` from fromSeq will be long enough for threads
   * (at least replayThreadMin events, over more than one segment), as far as the names of
   * its segment files tell, before it is opened: for a caller that starts the threads
   * ahead (ReplayThreadStarts). The rule is replay()'s, with the last segment's first seq
   * standing in for the journal's end. False when the directory does not exist.
   */
  static async replayLooksLong(dir: string, fromSeq: number, replayThreadMin = REPLAY_THREAD_MIN_DEFAULT): Promise<boolean> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return false;
    }
    let lastFirst = 0;
    for (const name of names) {
      const first = Number(SEGMENT_NAME.exec(name)?.[1] ?? 0);
      if (first > lastFirst) lastFirst = first;
    }
    return replayThreadMin > 0 && lastFirst - fromSeq >= replayThreadMin;
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
    const readOnly = opts.readOnly === true;
    const created = readOnly ? undefined : await mkdir(dir, { recursive: true, mode: DIR_MODE });
    if (created !== undefined) {
      // Each newly created directory must be durable in its parent.
      for (let d = dir; ; d = dirname(d)) {
        await fsyncDir(dirname(d));
        if (d === created || dirname(d) === d) break;
      }
    }

    const found = await recoverSegments(dir, limits.lineBytesMax, readOnly);
    const { segments } = found;
    const tail = segments[segments.length - 1];
    if (found.torn !== null && tail !== undefined) {
      if (readOnly) {
        // Readers stop before the fragment: it may be a line another process is writing now.
        tail.bytes = found.torn.offset;
        tail.durableBytes = found.torn.offset;
      } else {
        // Everything complete has been verified; only now may the torn fragment go.
        await cutTornTail(tail, found.torn);
      }
    }
    if (tail !== undefined) tail.index = found.tailIndex;
    const journal = new Journal(dir, opts, limits, segments, found.lastSeq, found.lastHash);
    const report = { segments: segments.length, lastSeq: found.lastSeq, lastHash: found.lastHash, truncated: readOnly ? null : found.torn, torn: found.torn };
    return { journal, report };
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
    return this.writer.syncedSeq;
  }

  /** Total journal bytes, counting lines still waiting for the disk. */
  get bytes(): number {
    return this.totalBytes;
  }

  private get fatal(): Error | null {
    return this.writer.fatal;
  }

  /**
   * Adds an event. Synchronous: the line is serialised, hashed and queued, and the tail
   * advances at once, so callers assign seqs without awaiting. The event is durable,
   * and may be acknowledged, only when `durable` resolves.
   */
  append(fields: Record<string, unknown> & { seq: number }): AppendResult {
    if (this.state !== 'open') throw this.fatal ?? new Error('journal is closed');
    if (this.readOnly) throw new Error('journal append: the journal was opened read-only');
    const seq = fields.seq;
    if (seq !== this.tailSeq + 1) throw new Error(`journal append: seq ${String(seq)} is not the next seq ${this.tailSeq + 1}`);
    if ('prev' in fields) throw new Error('journal append: prev is set by the journal, not the caller');
    const prev = this.tailHash;
    const { head, rest } = eventText(seq, prev, fields);
    const length = head.length + rest.length;
    if (length > this.limits.eventBytesMax) throw new RangeError(`journal append: event of ${length} characters exceeds ${this.limits.eventBytesMax} bytes`);

    const batch = this.writer.batchFor(LINE_OVERHEAD + length * 3);
    const start = batch.len;
    const headBytes = batch.buf.write(head, start + EVENT_AT, 'latin1');
    const evBytes = headBytes + batch.buf.write(rest, start + EVENT_AT + headBytes, 'utf8');
    if (evBytes > this.limits.eventBytesMax) throw new RangeError(`journal append: event of ${evBytes} bytes exceeds ${this.limits.eventBytesMax} bytes`);
    const lineBytes = evBytes + LINE_OVERHEAD;
    const pending = this.writer.pendingWith(batch, lineBytes);
    if (pending > this.limits.pendingBytesMax) throw new JournalBacklogError(pending, this.limits.pendingBytesMax);
    const hash = frameLine(batch.buf, start, evBytes);

    let seg = this.segments[this.segments.length - 1];
    if (seg === undefined || (seg.bytes > 0 && seg.bytes + lineBytes > this.limits.segmentBytesMax)) seg = this.startSegment(seq);
    assert(seg.index !== null, 'the tail segment has an offset index');
    seg.index.push(seg.bytes);
    seg.bytes += lineBytes;
    this.totalBytes += lineBytes;
    this.writer.add(batch, seg, seq, lineBytes);
    this.tailSeq = seq;
    this.tailHash = hash;
    // Joined only if read: a rope costs nothing until then.
    return { seq, hash, text: head + rest, durable: batch.durable };
  }

  /**
   * Calls onEvent for every event from fromSeq to toSeq (default: the current last seq),
   * in order, after verifying each line's hash and its link to the one before; the event
   * before fromSeq must hash to expectedPrev (GENESIS_HASH for fromSeq 1). fromSeq may be
   * toSeq + 1, which replays nothing but still checks expectedPrev against that event.
   * With `parse`, each event is what it returns for the event's bytes (its record's text is
   * then ''); the line is verified exactly as without it. With `parallel`, a replay long
   * enough for threads (replayThreadMin) has its lines checked and parsed by the codec on
   * those threads, and `parse` is the codec's parser; the consumer sees the same.
   */
  async replay<E = unknown>(
    fromSeq: number, expectedPrev: string,
    onEvent: (rec: JournalRecord, event: E) => void,
    toSeq = this.tailSeq,
    parse: EventParser | null = null,
    parallel: ReplayInParallel<E> | null = null,
  ): Promise<{ count: number; lastSeq: number; lastHash: string }> {
    try {
      return await this.replayFrom(fromSeq, expectedPrev, onEvent, toSeq, parse, parallel);
    } finally {
      // Threads started ahead that the replay did not take (a short replay, say).
      await parallel?.started?.close();
    }
  }

  private async replayFrom<E>(
    fromSeq: number, expectedPrev: string, onEvent: (rec: JournalRecord, event: E) => void,
    toSeq: number, parse: EventParser | null, parallel: ReplayInParallel<E> | null,
  ): Promise<{ count: number; lastSeq: number; lastHash: string }> {
    this.assertReadable();
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 1) throw new RangeError(`journal replay: fromSeq ${fromSeq} is not a positive integer`);
    if (!Number.isSafeInteger(toSeq) || toSeq < 0 || toSeq > this.tailSeq) throw new RangeError(`journal replay: toSeq ${toSeq} is not within 0..${this.tailSeq}`);
    await this.writer.waitDurable(toSeq);
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
    // A replay reads its events one way, whether or not it takes threads.
    assert(parallel === null || parse === parallel.codec.parse, 'a replay on threads parses with its codec\'s parser');
    // The event is whatever JSON the caller appended; E only names that shape for the caller.
    const consumer = onEvent as (rec: JournalRecord, event: unknown) => void;
    const min = this.limits.replayThreadMin;
    if (min > 0 && toSeq - fromSeq + 1 >= min && this.segmentOf(fromSeq) < this.segmentOf(toSeq)) {
      if (parallel !== null) return this.scanThreads(fromSeq, toSeq, expectedPrev, consumer, parallel as ReplayInParallel<unknown>);
      return this.scanTwoThreads(fromSeq, toSeq, expectedPrev, consumer, parse);
    }
    return this.scan(fromSeq, toSeq, expectedPrev, TEXT_PARSE, consumer, parse);
  }

  /** Checks the whole chain from seq 1 to the last durable seq, parsing every event. */
  async verifyAll(): Promise<{ count: number; lastSeq: number; lastHash: string }> {
    this.assertReadable();
    const toSeq = this.writer.syncedSeq;
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
    await this.writer.waitDurable(seq);
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
    const last = toSeq ?? this.writer.syncedSeq;
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 1 || !Number.isSafeInteger(last) || last > this.tailSeq || fromSeq > last + 1) {
      throw new RangeError(`journal iterate: ${fromSeq}..${last} is not a range within 1..${this.tailSeq}`);
    }
    if (fromSeq > last) return;
    await this.writer.waitDurable(last);
    const check = new LineCheck();
    let seq = fromSeq;
    let prev: string | null = null;
    let k = this.segmentOf(fromSeq);
    let offset = await this.offsetOf(k, fromSeq);
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
        if (seq <= last && reader.remainder > 0) throw incompleteLine(seg, reader.remainderOffset, seq);
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
    await this.writer.waitDurable(this.tailSeq);
  }

  /** Waits for queued lines to be durable, then closes the segment file. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state === 'open') this.state = 'closing';
    await this.writer.drain();
    await this.writer.closeFile();
    if (this.fatal !== null) throw this.fatal;
    this.state = 'closed';
  }

  private assertReadable(): void {
    if (this.state === 'closed') throw new Error('journal is closed');
    if (this.fatal !== null) throw this.fatal;
  }

  private startSegment(firstSeq: number): Segment {
    const previous = this.segments[this.segments.length - 1];
    if (previous !== undefined) this.remember(previous);
    const seg = newSegment(this.dir, firstSeq, 0, false);
    seg.index = new OffsetIndex(1024);
    this.segments.push(seg);
    return seg;
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
    if (next !== undefined) await this.writer.waitDurable(next.firstSeq - 1);
    seg.indexLoading ??= buildIndex(seg, this.lineCount(k), this.limits.lineBytesMax).finally(() => {
      seg.indexLoading = null;
    });
    const index = await seg.indexLoading;
    if (seg.index === null) {
      seg.index = index;
      this.remember(seg);
    }
    return index;
  }

  /**
   * Where the line of seq begins in segment k: 0 for its first line, without the offset
   * index that a replay from the start of a segment would otherwise read the whole segment
   * for (and then build anyway as it goes).
   */
  private async offsetOf(k: number, seq: number): Promise<number> {
    const first = (this.segments[k] as Segment).firstSeq;
    return seq === first ? 0 : (await this.indexOf(k)).at(seq - first);
  }

  /** Verifies fromSeq..toSeq line by line; onEvent, when given, gets each record and parsed event. */
  private async scan(
    fromSeq: number, toSeq: number, expectedPrev: string, mode: TextMode,
    onEvent: ((rec: JournalRecord, event: unknown) => void) | null, parse: EventParser | null = null,
  ): Promise<{ count: number; lastSeq: number; lastHash: string }> {
    const k = this.segmentOf(fromSeq);
    const offset = await this.offsetOf(k, fromSeq);
    const lastHash = await this.scanFrom(k, offset, fromSeq, toSeq, expectedPrev, mode, onEvent, parse);
    return { count: toSeq - fromSeq + 1, lastSeq: toSeq, lastHash };
  }

  /** scan() from line `fromSeq`, found at `offset` in segment k; returns the hash of toSeq. */
  private async scanFrom(
    k: number, offset: number, fromSeq: number, toSeq: number, expectedPrev: string, mode: TextMode,
    onEvent: ((rec: JournalRecord, event: unknown) => void) | null, parse: EventParser | null,
  ): Promise<string> {
    const check = new LineCheck(parse);
    let seq = fromSeq;
    let prev = expectedPrev;
    while (seq <= toSeq) {
      const seg = this.segments[k];
      if (seg === undefined) throw this.missing(seq);
      if (offset === 0 && seg.firstSeq !== seq) {
        throw new JournalCorruptError({
          segment: seg.name, offset: 0, seq, reason: 'segment-mismatch',
          detail: `the file is named for seq ${seg.firstSeq} but the segment before it ends at seq ${seq - 1}`,
        });
      }
      const building = this.indexToBuild(k, offset);
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
        if (seq <= toSeq && reader.remainder > 0) throw incompleteLine(seg, reader.remainderOffset, seq);
      } finally {
        await handle.close();
      }
      this.keepIndex(k, building);
      k += 1;
      offset = 0;
    }
    return prev;
  }

  /**
   * scan() for a long replay, with the hashes checked on a second thread (replay-worker.ts).
   * This thread checks everything else a line must satisfy, without hashing, and holds the
   * parsed events until the thread has confirmed the hashes of the lines up to them; only
   * then does onEvent see them. On any problem, whichever thread finds it, the replay goes
   * on with scanFrom() from the first event not yet handed on: the consumer sees exactly
   * the events, and the caller exactly the error, of a sequential scan.
   */
  private async scanTwoThreads(
    fromSeq: number, toSeq: number, expectedPrev: string,
    onEvent: (rec: JournalRecord, event: unknown) => void, parse: EventParser | null,
  ): Promise<{ count: number; lastSeq: number; lastHash: string }> {
    const planned = await this.rangesOf(fromSeq, toSeq);
    // A segment table out of order is the sequential scan's to report.
    if (planned === null) return this.scan(fromSeq, toSeq, expectedPrev, TEXT_PARSE, onEvent, parse);
    const { k0, offset0, ranges } = planned;
    const verifier = new ChainVerifier(ranges, this.limits.lineBytesMax, READ_CHUNK_BYTES);
    try {
      const check = new LineCheck(parse);
      check.hashing = false;
      const recs: JournalRecord[] = [];
      const events: unknown[] = [];
      // The first event not yet handed on, where a fallback resumes.
      let seq = fromSeq;
      let prev = expectedPrev;
      let k = k0;
      let offset = offset0;
      try {
        for (let r = 0; r < ranges.length; r++, k++) {
          const range = ranges[r] as VerifyRange;
          const seg = this.segments[k] as Segment;
          offset = range.start;
          if (offset === 0 && seg.firstSeq !== seq) throw new Error('the segment does not start at the next seq');
          const building = this.indexToBuild(k, offset);
          let n = 0;
          let lineSeq = seq;
          let linePrev = prev;
          const handle = await open(seg.path, 'r');
          try {
            const reader = new ChunkReader(handle, offset, seg.durableBytes, seg.name, this.limits.lineBytesMax, READ_CHUNK_BYTES);
            while (n < range.lines && (await reader.fill())) {
              for (let nl = reader.nextLine(); nl !== -1 && n < range.lines; nl = reader.nextLine()) {
                const lineOffset = reader.lineOffset;
                check.check(reader.buf, reader.lineStart, nl, seg.name, lineOffset, lineSeq, linePrev, TEXT_PARSE);
                building?.push(lineOffset);
                recs.push({ seq: lineSeq, hash: check.hash, prev: linePrev, text: check.text });
                events.push(check.event);
                linePrev = check.hash;
                lineSeq += 1;
                n += 1;
                if (n % VERDICT_LINES !== 0 && n < range.lines) continue;
                const v = await verifier.verdict();
                if (v.k !== r || v.n !== n || v.last !== linePrev) throw new Error(`the verifying thread read range ${v.k} differently`);
                // Confirmed: these events may reach the consumer. Its own errors end the replay.
                for (let i = 0; i < recs.length; i++) onEventGuarded(onEvent, recs[i] as JournalRecord, events[i]);
                recs.length = 0;
                events.length = 0;
                seq = lineSeq;
                prev = linePrev;
                offset = nl + 1 - reader.lineStart + lineOffset;
              }
            }
            if (n < range.lines) throw new Error('the segment holds fewer lines than planned');
          } finally {
            await handle.close();
          }
          this.keepIndex(k, building);
        }
      } catch (err) {
        if (err instanceof ConsumerError) throw err.thrown;
        await verifier.stop();
        const lastHash = await this.scanFrom(k, offset, seq, toSeq, prev, TEXT_PARSE, onEvent, parse);
        return { count: toSeq - fromSeq + 1, lastSeq: toSeq, lastHash };
      }
      return { count: toSeq - fromSeq + 1, lastSeq: toSeq, lastHash: prev };
    } finally {
      await verifier.stop();
    }
  }

  /** A closed segment read from its start gets its index built on the way: the index to fill, or null. */
  private indexToBuild(k: number, offset: number): OffsetIndex | null {
    const seg = this.segments[k] as Segment;
    return offset === 0 && seg.index === null && k < this.segments.length - 1 ? new OffsetIndex(this.lineCount(k)) : null;
  }

  /** Keeps the index built while segment k was read, once it holds every line and none is kept yet. */
  private keepIndex(k: number, building: OffsetIndex | null): void {
    const seg = this.segments[k] as Segment;
    if (building === null || building.count !== this.lineCount(k) || seg.index !== null) return;
    seg.index = building;
    this.remember(seg);
  }

  /** The ranges of segments fromSeq..toSeq covers, or null when the segment table does not add up. */
  private async rangesOf(fromSeq: number, toSeq: number): Promise<{ k0: number; offset0: number; ranges: VerifyRange[] } | null> {
    const k0 = this.segmentOf(fromSeq);
    const offset0 = await this.offsetOf(k0, fromSeq);
    const ranges: VerifyRange[] = [];
    for (let k = k0, seq = fromSeq; seq <= toSeq; k++) {
      const seg = this.segments[k];
      const next = this.segments[k + 1];
      const lines = Math.min(next === undefined ? toSeq + 1 : next.firstSeq, toSeq + 1) - seq;
      if (seg === undefined || lines < 1) return null;
      ranges.push({ path: seg.path, start: k === k0 ? offset0 : 0, end: seg.durableBytes, lines });
      seq += lines;
    }
    return { k0, offset0, ranges };
  }

  /**
   * scan() for a long replay, with the lines checked, parsed and packed by the codec on
   * threads of their own (replay-threads.ts) and unpacked here, in order. On any problem
   * but the consumer's own errors, the replay goes on with scanFrom() from the first event
   * not yet handed on: the consumer sees exactly the events, and the caller exactly the
   * error, of a sequential scan.
   */
  private async scanThreads(
    fromSeq: number, toSeq: number, expectedPrev: string,
    onEvent: (rec: JournalRecord, event: unknown) => void, parallel: ReplayInParallel<unknown>,
  ): Promise<{ count: number; lastSeq: number; lastHash: string }> {
    const { codec } = parallel;
    const planned = await this.rangesOf(fromSeq, toSeq);
    // A segment table out of order is the sequential scan's to report.
    if (planned === null) return this.scan(fromSeq, toSeq, expectedPrev, TEXT_PARSE, onEvent, codec.parse);
    const { k0, offset0, ranges } = planned;
    // Each segment's range is cut into pieces the threads take in turn.
    const pieces: ThreadRange[][] = [];
    const step = parallel.rangeBytes ?? RANGE_BYTES;
    let r = 0;
    for (let g = 0; g < ranges.length; g++) {
      const range = ranges[g] as VerifyRange;
      const seg = this.segments[k0 + g] as Segment;
      const own: ThreadRange[] = [];
      for (let start = range.start; start < range.end || own.length === 0; start += step) {
        const bound = Math.min(start + step, range.end);
        own.push({ r: r++, path: seg.path, name: seg.name, start, atLine: start === range.start, bound: bound === range.end ? Infinity : bound, end: range.end, lastSeq: toSeq });
      }
      pieces.push(own);
    }
    const threads = new ReplayThreads(parallel.script, pieces.flat(), parallel.threads, this.limits.lineBytesMax, READ_CHUNK_BYTES, parallel.started?.take() ?? null);
    // The first event not yet handed on, where a fallback resumes.
    let seq = fromSeq;
    let prev = expectedPrev;
    let k = k0;
    let offset = offset0;
    try {
      for (let g = 0; g < ranges.length; g++, k++) {
        const range = ranges[g] as VerifyRange;
        const seg = this.segments[k] as Segment;
        offset = range.start;
        if (offset === 0 && seg.firstSeq !== seq) throw new Error('the segment does not start at the next seq');
        const building = this.indexToBuild(k, offset);
        let n = 0;
        for (const piece of pieces[g] as ThreadRange[]) {
          const slot = threads.slotOf(piece.r);
          const u = threads.unpackers[slot] as EventUnpacker;
          let linked = false;
          for (let last = false; !last;) {
            const chunk = await threads.next(slot);
            last = chunk.last;
            if (chunk.r !== piece.r) throw new Error(`replay thread ${slot} sent range ${chunk.r} out of order`);
            if (chunk.count > 0) {
              if (chunk.firstSeq !== seq || n + chunk.count > range.lines) throw new Error(`range ${piece.r} does not continue at seq ${seq}`);
              if (!linked && chunk.firstPrev !== prev) throw new Error(`range ${piece.r} does not link to the event before it`);
              linked = true;
            }
            u.load(chunk);
            for (let i = 0; i < chunk.count; i++) {
              const hash = u.str();
              const event = u.num() === 1 ? codec.unpack(u, seq, prev) : u.json();
              building?.push(chunk.offsets[i] as number);
              onEventGuarded(onEvent, { seq, hash, prev, text: '' }, event);
              prev = hash;
              seq += 1;
              offset = chunk.offsets[i + 1] as number;
            }
            n += chunk.count;
            threads.taken(slot);
          }
        }
        if (n !== range.lines) throw new Error(`the threads found ${n} lines where the segment holds ${range.lines}`);
        this.keepIndex(k, building);
        offset = 0;
      }
    } catch (err) {
      if (err instanceof ConsumerError) throw err.thrown;
      await threads.stop();
      parallel.onDone?.(threads.count, err as Error);
      const lastHash = await this.scanFrom(k, offset, seq, toSeq, prev, TEXT_PARSE, onEvent, codec.parse);
      return { count: toSeq - fromSeq + 1, lastSeq: toSeq, lastHash };
    } finally {
      await threads.stop();
    }
    parallel.onDone?.(threads.count, null);
    return { count: toSeq - fromSeq + 1, lastSeq: toSeq, lastHash: prev };
  }

  private missing(seq: number): JournalCorruptError {
    const tail = this.segments[this.segments.length - 1] as Segment;
    return new JournalCorruptError({ segment: tail.name, offset: tail.durableBytes, seq, reason: 'seq-gap', detail: `seq ${seq} is in no segment` });
  }
}

import { open, readdir, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { JournalCorruptError } from './errors.ts';
import { GENESIS_HASH, LineCheck, SEGMENT_NAME, TEXT_NONE } from './journal-format.ts';
import { ChunkReader, newSegment, OffsetIndex, READ_CHUNK_BYTES, readTailLine, type Segment } from './segment-reader.ts';

/**
 * Finding the journal's tail when it is opened: the segment table is checked (names,
 * first and last line of each segment, the chain across segments) and every line of the
 * last segment is verified. Opening stays cheap however long the journal is; the lines
 * inside closed segments are left to replay and verifyAll.
 */

export interface TornTail {
  /** Segment file name. */
  segment: string;
  /** Byte offset where the incomplete line began; the segment ends here once it is cut. */
  offset: number;
  bytesDropped: number;
}

export interface Recovered {
  segments: Segment[];
  lastSeq: number;
  lastHash: string;
  /** Bytes after the last newline of the last segment, if any. */
  torn: TornTail | null;
  /** The offset index of the last segment's complete lines. */
  tailIndex: OffsetIndex | null;
}

/**
 * Verifies every line of the last segment and builds its offset index. Bytes after the
 * last newline are reported, not judged: they can only be a torn, unacknowledged write.
 */
async function scanTail(handle: FileHandle, seg: Segment, lineBytesMax: number, check: LineCheck) {
  const index = new OffsetIndex(Math.ceil(seg.bytes / 256));
  const reader = new ChunkReader(handle, 0, seg.bytes, seg.name, lineBytesMax, READ_CHUNK_BYTES);
  let seq = seg.firstSeq;
  // The first line's link to the segment before is checked with the others' (linkHead).
  let prev: string | null = null;
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

type TailScan = Awaited<ReturnType<typeof scanTail>>;

/** A segment's first line, as readHead found it: null when it has none (an empty last segment, or one holding only a torn line). */
interface Head {
  seq: number;
  prev: string;
}

/**
 * Checks that a segment's first line is the event its file name promises: what can be
 * checked of it without the segment before (linkHead checks the rest).
 */
async function readHead(handle: FileHandle, seg: Segment, isLast: boolean, lineBytesMax: number, check: LineCheck): Promise<Head | null> {
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
    return { seq: check.seq, prev: check.prev };
  }
  if (!isLast) {
    throw new JournalCorruptError({ segment: seg.name, offset: 0, seq: seg.firstSeq, reason: 'incomplete-line', detail: 'only the last segment may end without a newline' });
  }
  return null;
}

/** Checks that a segment goes on from the one before it: at the next seq, its first line linked to that one's last. */
function linkHead(seg: Segment, head: Head | null, prevSeq: number, prevHash: string): void {
  if (seg.firstSeq !== prevSeq + 1) {
    const missing = seg.firstSeq > prevSeq + 1;
    throw new JournalCorruptError({
      segment: seg.name, offset: 0, seq: prevSeq + 1, reason: missing ? 'seq-gap' : 'seq-disorder',
      detail: missing
        ? `seqs ${prevSeq + 1} to ${seg.firstSeq - 1} are in no segment`
        : `the segment starts at seq ${seg.firstSeq} but the one before it already reaches seq ${prevSeq}`,
    });
  }
  if (head !== null && head.prev !== prevHash) {
    throw new JournalCorruptError({
      segment: seg.name, offset: 0, seq: seg.firstSeq, reason: 'chain-break',
      detail: `prev ${head.prev} is not the hash of the event before it (${prevHash})`,
    });
  }
}

/** Checks the last line of a closed segment and returns its seq and hash. */
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

/** Lists the segment files of `dir` in seq order, with their sizes. */
async function listSegments(dir: string, missingIsEmpty: boolean): Promise<Segment[]> {
  let all: string[];
  try {
    all = await readdir(dir);
  } catch (err) {
    if (missingIsEmpty && (err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const names = all.filter((n) => SEGMENT_NAME.test(n)).sort();
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
  return segments;
}

/** What reading a segment on its own found, or the error each part met. */
interface SegmentRead {
  head: { ok: Head | null } | { err: unknown };
  end: { ok: { seq: number; hash: string } | TailScan } | { err: unknown };
}

/** Segments read at once while the journal is opened. */
const READS_AT_ONCE = 8;

/** Reads a segment on its own; never rejects: what goes wrong is in the result. `nextFirstSeq` is that of the segment after it (0 for the last). */
async function readSegment(seg: Segment, nextFirstSeq: number, lineBytesMax: number): Promise<SegmentRead> {
  const check = new LineCheck();
  let handle: FileHandle;
  try {
    handle = await open(seg.path, 'r');
  } catch (err) {
    return { head: { err }, end: { err } };
  }
  let read: SegmentRead;
  try {
    const head = { ok: await readHead(handle, seg, nextFirstSeq === 0, lineBytesMax, check) };
    try {
      read = { head, end: { ok: nextFirstSeq === 0 ? await scanTail(handle, seg, lineBytesMax, check) : await checkLast(handle, seg, nextFirstSeq - 1, lineBytesMax, check) } };
    } catch (err) {
      read = { head, end: { err } };
    }
  } catch (err) {
    read = { head: { err }, end: { err } };
  }
  try {
    await handle.close();
  } catch (err) {
    if (!('err' in read.end)) read.end = { err };
  }
  return read;
}

/**
 * Finds the tail of the journal in `dir`, verifying what opening promises to verify.
 * Anything wrong with a complete line throws JournalCorruptError; the files are only read.
 *
 * The segments are read several at once, the last (whose every line is verified) first:
 * what one segment holds does not depend on reading another, and read one after another
 * they cost a wait for the disk each. How they link is checked after, in journal order,
 * so the problem reported is the first one, as a reading in order finds it.
 */
export async function recoverSegments(dir: string, lineBytesMax: number, missingIsEmpty = false): Promise<Recovered> {
  const segments = await listSegments(dir, missingIsEmpty);
  const reads: Promise<SegmentRead>[] = new Array<Promise<SegmentRead>>(segments.length);
  const last = segments.length - 1;
  if (last >= 0) reads[last] = readSegment(segments[last] as Segment, 0, lineBytesMax);
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let k = next++; k < last; k = next++) {
      reads[k] = readSegment(segments[k] as Segment, (segments[k + 1] as Segment).firstSeq, lineBytesMax);
      await reads[k];
    }
  };
  await Promise.all(Array.from({ length: Math.min(READS_AT_ONCE, Math.max(last, 0)) }, lane));

  let lastSeq = 0;
  let lastHash = GENESIS_HASH;
  let torn: TornTail | null = null;
  let tailIndex: OffsetIndex | null = null;
  for (let k = 0; k < segments.length; k++) {
    const seg = segments[k] as Segment;
    const read = await (reads[k] as Promise<SegmentRead>);
    if ('err' in read.head) throw read.head.err;
    linkHead(seg, read.head.ok, lastSeq, lastHash);
    if ('err' in read.end) throw read.end.err;
    const end = read.end.ok;
    if ('index' in end) {
      tailIndex = end.index;
      lastSeq = end.lastSeq;
      // A last segment without a complete line ends where the one before it did.
      lastHash = end.lastHash ?? lastHash;
      if (end.tornBytes > 0) torn = { segment: seg.name, offset: end.tornOffset, bytesDropped: end.tornBytes };
    } else {
      lastSeq = end.seq;
      lastHash = end.hash;
    }
  }
  return { segments, lastSeq, lastHash, torn, tailIndex };
}

/** Cuts the torn fragment off the last segment; only called once everything complete was verified. */
export async function cutTornTail(tail: Segment, torn: TornTail): Promise<void> {
  const handle = await open(tail.path, 'r+');
  try {
    await handle.truncate(torn.offset);
    await handle.sync();
  } finally {
    await handle.close();
  }
  tail.bytes = torn.offset;
  tail.durableBytes = torn.offset;
}

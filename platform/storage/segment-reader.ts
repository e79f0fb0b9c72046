import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { JournalCorruptError } from './errors.ts';
import { assert, NEWLINE, segmentName } from './journal-format.ts';

/**
 * Reading journal segment files: the in-memory segment table, the offset index that
 * finds a line by seq with one positioned read, and a chunked line reader that keeps
 * the per-line cost free of promises.
 */

const MiB = 1024 * 1024;
export const READ_CHUNK_BYTES = 4 * MiB;

/** Line start offsets of one segment, in a typed array that grows by doubling. */
export class OffsetIndex {
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

export interface Segment {
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

export function newSegment(dir: string, firstSeq: number, bytes: number, created: boolean): Segment {
  const name = segmentName(firstSeq);
  return {
    firstSeq, name, path: join(dir, name), bytes, durableBytes: bytes,
    index: null, indexLoading: null, created,
  };
}

export async function readFully(handle: FileHandle, buf: Buffer, at: number, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, at + done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

export function incompleteLine(seg: Segment, offset: number, seq: number): JournalCorruptError {
  return new JournalCorruptError({ segment: seg.name, offset, seq, reason: 'incomplete-line', detail: 'the line has no newline but more events should follow' });
}

/**
 * Reads a byte range of a segment in large chunks and hands out complete lines. The
 * caller walks lines synchronously with nextLine() and calls fill() when it returns -1,
 * which keeps the per-line cost free of promises.
 */
export class ChunkReader {
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
    /** A buffer to read into, of at least chunkBytes (a reader that follows another may take over its `buf`). */
    reuse: Buffer | null = null,
  ) {
    const size = Math.max(1, Math.min(chunkBytes, end - start));
    this.buf = reuse !== null && reuse.length >= size ? reuse.subarray(0, size) : Buffer.allocUnsafe(size);
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

/** The last line of a segment file, read backwards from its end. */
export interface TailLine {
  buf: Buffer;
  start: number;
  end: number;
  offset: number;
  complete: boolean;
}

export async function readTailLine(handle: FileHandle, size: number, segment: string, lineBytesMax: number): Promise<TailLine> {
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
 * Finds the line starts of a closed segment by scanning it for newlines; it must hold
 * exactly `expected` lines, the room its neighbours leave.
 */
export async function buildIndex(seg: Segment, expected: number, lineBytesMax: number): Promise<OffsetIndex> {
  const index = new OffsetIndex(expected);
  const handle = await open(seg.path, 'r');
  try {
    const reader = new ChunkReader(handle, 0, seg.durableBytes, seg.name, lineBytesMax, READ_CHUNK_BYTES);
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
    if (reader.remainder > 0) throw incompleteLine(seg, reader.remainderOffset, seg.firstSeq + index.count);
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

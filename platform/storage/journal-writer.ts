import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { FILE_MODE, fsyncDir } from './durable-file.ts';
import { assert } from './journal-format.ts';
import type { Segment } from './segment-reader.ts';

/**
 * The journal's group-commit writer. Appended lines collect in a staging buffer; one
 * flush at a time writes them and fdatasyncs, so every request that arrived while the
 * previous flush ran shares the next fsync. A line is durable, and may be acknowledged,
 * only once the flush that covers it resolved.
 */

const STAGING_BYTES_INITIAL = 64 * 1024;
/**
 * Segment files are written with O_DSYNC where the platform has it: each write returns
 * once its data, and the file size that reaches it, are on the disk, which is what
 * write + fdatasync gave. Without it (0) every write is followed by an fdatasync.
 */
const SYNC_FLAG: number = constants.O_DSYNC ?? 0;
// A staging buffer that grew this large during a burst is dropped rather than kept forever.
const STAGING_BYTES_KEEP_MAX = 8 * 1024 * 1024;

/** Where a segment's share of a batch begins in the staging buffer. */
interface Cut {
  segment: Segment;
  start: number;
  firstSeq: number;
}

/** Lines appended since the last flush started; they share one write and one fdatasync. */
export interface Batch {
  buf: Buffer;
  len: number;
  cuts: Cut[];
  lastSeq: number;
  durable: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

async function writeFully(handle: FileHandle, buf: Buffer, at: number, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await handle.write(buf, at + done, length - done, position + done);
    done += bytesWritten;
  }
}

export class GroupCommitWriter {
  /** The highest seq whose line has been fdatasynced. */
  syncedSeq: number;
  /** The first write or fsync error; after it nothing more is written. */
  fatal: Error | null = null;

  private staging: Batch | null = null;
  private inFlight: Batch | null = null;
  private spare: Buffer | null = null;
  private loop: Promise<void> | null = null;
  private writeSegment: Segment | null = null;
  private writeHandle: FileHandle | null = null;

  constructor(
    private readonly dir: string,
    syncedSeq: number,
    private readonly onFsync: ((ms: number, lines: number) => void) | undefined,
    /** Called once, with the first write or fsync error, after every waiting batch was rejected. */
    private readonly onFail: (err: Error) => void,
  ) {
    this.syncedSeq = syncedSeq;
  }

  /** The batch the next line joins, with room for `lineBytesMax` more bytes. */
  batchFor(lineBytesMax: number): Batch {
    const batch = this.staging ?? this.newBatch();
    const need = batch.len + lineBytesMax;
    if (need > batch.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, batch.buf.length * 2));
      batch.buf.copy(grown, 0, 0, batch.len);
      batch.buf = grown;
    }
    return batch;
  }

  /** Bytes waiting for the disk if a line of `lineBytes` joined `batch`. */
  pendingWith(batch: Batch, lineBytes: number): number {
    return batch.len + lineBytes + (this.inFlight?.len ?? 0);
  }

  /** Takes the line just framed at batch.buf[batch.len...] as `seq` of `seg`, and starts a flush when none runs. */
  add(batch: Batch, seg: Segment, seq: number, lineBytes: number): void {
    const lastCut = batch.cuts[batch.cuts.length - 1];
    if (lastCut === undefined || lastCut.segment !== seg) batch.cuts.push({ segment: seg, start: batch.len, firstSeq: seq });
    batch.len += lineBytes;
    batch.lastSeq = seq;
    if (this.loop === null) this.loop = this.flushLoop();
  }

  waitDurable(seq: number): Promise<void> | undefined {
    if (seq <= this.syncedSeq) return undefined;
    if (this.fatal !== null) return Promise.reject(this.fatal);
    if (this.inFlight !== null && seq <= this.inFlight.lastSeq) return this.inFlight.durable;
    assert(this.staging !== null, `seq ${seq} is neither durable nor queued`);
    return this.staging.durable;
  }

  /** Waits until no flush runs: everything staged so far is written, or the writer failed. */
  async drain(): Promise<void> {
    while (this.loop !== null) await this.loop;
  }

  /** Syncs and closes the open segment file (after drain). */
  async closeFile(): Promise<void> {
    const handle = this.writeHandle;
    this.writeHandle = null;
    this.writeSegment = null;
    if (handle === null) return;
    try {
      if (this.fatal === null) await handle.sync();
    } finally {
      await handle.close();
    }
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

  /**
   * Writes batches one at a time; lines appended meanwhile form the next batch. When a
   * write returns and lines are waiting, their write is issued before the callers of the
   * batch just made durable run: acknowledging a batch (an ack sent per sale) takes a
   * while, and the disk would sit idle through it. Writes stay in order, one at a time.
   */
  private async flushLoop(): Promise<void> {
    let durable: Batch | null = null;
    try {
      // One turn of the event loop lets every request that arrived together join the batch.
      await nextTurn();
      for (;;) {
        let batch = this.takeStaged();
        if (batch === null && durable !== null) {
          durable.resolve();
          durable = null;
          // Let the callers just acknowledged queue their next appends before the next flush.
          await nextTurn();
          batch = this.takeStaged();
        }
        if (batch === null) break;
        const written = this.writeBatch(batch);
        durable?.resolve();
        durable = null;
        await written;
        this.syncedSeq = batch.lastSeq;
        if (batch.buf.length <= STAGING_BYTES_KEEP_MAX) this.spare = batch.buf;
        durable = batch;
      }
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.inFlight = null;
      this.loop = null;
    }
  }

  /** The staged batch, now in flight, or null when nothing is staged or the writer failed. */
  private takeStaged(): Batch | null {
    const batch = this.staging;
    if (batch === null || batch.len === 0 || this.fatal !== null) {
      this.inFlight = null;
      return null;
    }
    this.staging = null;
    this.inFlight = batch;
    return batch;
  }

  private async writeBatch(batch: Batch): Promise<void> {
    for (let i = 0; i < batch.cuts.length; i++) {
      const cut = batch.cuts[i] as Cut;
      const next = batch.cuts[i + 1];
      const end = next === undefined ? batch.len : next.start;
      const lines = (next === undefined ? batch.lastSeq + 1 : next.firstSeq) - cut.firstSeq;
      const seg = cut.segment;
      // The open file is taken without an await, so that the write is issued before this function first yields.
      const handle = this.writeSegment === seg && this.writeHandle !== null ? this.writeHandle : await this.openFor(seg);
      const t0 = performance.now();
      await writeFully(handle, batch.buf, cut.start, end - cut.start, seg.durableBytes);
      // With O_DSYNC the write returned only once its data was on the disk, as
      // fdatasync would make it: one call to the thread pool per batch instead of two.
      if (SYNC_FLAG === 0) await handle.datasync();
      seg.durableBytes += end - cut.start;
      this.onFsync?.(performance.now() - t0, lines);
    }
  }

  /** Opens the write handle for seg, closing the previous segment's: its lines are already synced. */
  private async openFor(seg: Segment): Promise<FileHandle> {
    const old = this.writeHandle;
    this.writeHandle = null;
    this.writeSegment = null;
    if (old !== null) await old.close();
    let handle: FileHandle;
    if (seg.created) {
      handle = await open(seg.path, constants.O_RDWR | SYNC_FLAG);
    } else {
      // Exclusive because a file already there would mean two writers or a stale segment table.
      handle = await open(seg.path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | SYNC_FLAG, FILE_MODE);
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
    this.inFlight?.reject(err);
    this.staging?.reject(err);
    this.inFlight = null;
    this.staging = null;
    this.onFail(err);
  }
}

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Low } from 'lowdb';
import { fail, type JournalEvent } from '../../core/index.ts';
import { DurableJSONFile, GENESIS_HASH, Journal, writeFileDurable, type OpenReport } from '../storage/index.ts';
import { applyEvent, emptyState, fromSnapshot, toSnapshot, type LedgerState, type StateSnapshot } from './state.ts';

export interface OpenLedgerOptions {
  dataDir: string;
  vendorId: string;
  segmentBytesMax?: number;
  keysMax?: number;
  onFsync?: (ms: number, lines: number) => void;
  onFatal?: (err: Error) => void;
}

export interface OpenedLedger {
  journal: Journal;
  state: LedgerState;
  checkpoints: Checkpointer;
  report: OpenReport;
  replayed: number;
  checkpointSeq: number;
  recoveryMs: number;
}

export function ledgerPaths(dataDir: string) {
  return { journalDir: join(dataDir, 'journal'), checkpointFile: join(dataDir, 'state', 'checkpoint.json') };
}

/**
 * Opens the ledger: the last checkpoint (lowdb over a durable adapter) plus a replay of
 * the journal after it, with the hash chain verified from the checkpoint's hash on.
 */
export async function openLedger(opts: OpenLedgerOptions): Promise<OpenedLedger> {
  const started = performance.now();
  const paths = ledgerPaths(opts.dataDir);
  await mkdir(paths.journalDir, { recursive: true });
  await mkdir(join(opts.dataDir, 'state'), { recursive: true });

  const db = new Low<StateSnapshot | null>(new DurableJSONFile<StateSnapshot | null>(paths.checkpointFile), null);
  await db.read();
  const state = db.data === null ? emptyState(opts.vendorId, GENESIS_HASH) : fromSnapshot(db.data);
  if (state.vendorId !== opts.vendorId) {
    fail('VND_ERR_STATE_CORRUPT', `the checkpoint belongs to vendor ${state.vendorId}, not ${opts.vendorId}`);
  }
  const checkpointSeq = state.seq;

  const { journal, report } = await Journal.open({
    dir: paths.journalDir,
    ...(opts.segmentBytesMax === undefined ? {} : { segmentBytesMax: opts.segmentBytesMax }),
    ...(opts.onFsync === undefined ? {} : { onFsync: opts.onFsync }),
    ...(opts.onFatal === undefined ? {} : { onFatal: opts.onFatal }),
  });
  if (journal.lastSeq < state.seq) {
    fail(
      'VND_ERR_JOURNAL_CORRUPT',
      `the journal ends at seq ${journal.lastSeq} but the checkpoint covers seq ${state.seq}: journal segments are missing`,
    );
  }
  const { count } = await journal.replay(state.seq + 1, state.hash, (rec, event: JournalEvent) => {
    applyEvent(state, event, rec.hash, opts.keysMax);
  });
  const checkpoints = new Checkpointer(paths.checkpointFile, db, state, journal, CHECKPOINT_DEFAULTS, checkpointSeq);
  return { journal, state, checkpoints, report, replayed: count, checkpointSeq, recoveryMs: performance.now() - started };
}

export interface CheckpointPolicy {
  everyEvents: number;
  everyMs: number;
}

export const CHECKPOINT_DEFAULTS: CheckpointPolicy = { everyEvents: 100_000, everyMs: 10 * 60_000 };

/**
 * Writes the materialised state in the background. The snapshot is taken synchronously
 * at journal seq S and written only after the journal is durable up to S, so a
 * checkpoint never claims an event the journal could lose.
 */
export class Checkpointer {
  private running: Promise<void> | null = null;
  private lastSeq: number;
  private lastAt = Date.now();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly file: string,
    private readonly db: Low<StateSnapshot | null>,
    private readonly state: LedgerState,
    private readonly journal: Journal,
    private readonly policy: CheckpointPolicy = CHECKPOINT_DEFAULTS,
    /** The seq the checkpoint on disk covers (events replayed after it are not yet in it). */
    checkpointSeq: number = state.seq,
  ) {
    this.lastSeq = checkpointSeq;
  }

  get seq(): number {
    return this.lastSeq;
  }

  /** Whether a checkpoint is being written now (callers do not queue another). */
  get writing(): boolean {
    return this.running !== null;
  }

  startTimer(): void {
    this.timer = setInterval(() => void this.maybe(), Math.min(this.policy.everyMs, 60_000));
    this.timer.unref();
  }

  /** Checkpoints when enough events or time have passed since the last one. */
  maybe(): Promise<void> {
    const due = this.state.seq - this.lastSeq >= this.policy.everyEvents
      || (this.state.seq > this.lastSeq && Date.now() - this.lastAt >= this.policy.everyMs);
    return due ? this.now() : Promise.resolve();
  }

  async now(): Promise<void> {
    // One checkpoint at a time: callers that arrive while one is written wait for it and
    // start at most one more, never a queue of full copies of the state.
    while (this.running !== null) await this.running;
    if (this.state.seq === this.lastSeq) return;
    this.running = this.write().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async write(): Promise<void> {
    const seq = this.state.seq;
    // Serialised once, synchronously, at seq S; written only once the journal is durable
    // up to S. Non-ASCII is escaped so the file reads back as a compact one-byte string.
    const text = asciiJson(toSnapshot(this.state));
    await this.journal.flushed();
    await writeFileDurable(this.file, text);
    this.lastSeq = seq;
    this.lastAt = Date.now();
  }

  /** The lowdb handle of the checkpoint (read at start-up through the durable adapter). */
  get store(): Low<StateSnapshot | null> {
    return this.db;
  }

  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    await this.now();
  }
}

/** JSON with every non-ASCII character escaped as \uXXXX (still plain JSON). */
export function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

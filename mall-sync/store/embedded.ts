import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Low } from 'lowdb';
import { assert, fail } from '../../core/index.ts';
import { asciiJson, Checkpointer, DurableJSONFile, Journal, JournalBacklogError, type CheckpointPolicy, type OpenReport } from '../../platform/storage/index.ts';
import { MALL_EVENT_VERSION, type MallEvent, type NewMallEvent } from '../events.ts';
import { applyMallEvent, emptyMallState, reviveMallState, type MallState } from './state.ts';
import type { MallStore, StoreHealth } from './store.ts';

export interface EmbeddedStoreOptions {
  /** Directory of the store: `journal/` and `state/checkpoint.json` go in it. */
  dir: string;
  segmentBytesMax?: number;
  /** A checkpoint is written after this many events or this much time with new events. */
  checkpointEveryEvents?: number;
  checkpointEveryMs?: number;
  onFsync?: (ms: number, lines: number) => void;
  /** Called when the journal cannot write: the default exits the process (status 70). */
  onFatal?: (err: Error) => void;
}

export function storePaths(dir: string) {
  return { journalDir: join(dir, 'journal'), stateDir: join(dir, 'state'), checkpointFile: join(dir, 'state', 'checkpoint.json') };
}

// A batch.ingested event carries the clearing of up to BATCH_EVENTS_MAX vendor events.
const EVENT_BYTES_MAX = 32 * 1024 * 1024;

/**
 * The mall's default store: the vendor server's append-only, hash-chained,
 * group-committed Journal (imported, not copied) holding mall events, the materialised
 * state in memory, and a lowdb checkpoint written durably in the background. On open:
 * state = last checkpoint + replay of the journal after it, chain verified.
 */
export class EmbeddedMallStore implements MallStore {
  readonly kind = 'embedded' as const;
  private closed = false;
  private readonly checkpoints: Checkpointer;

  private constructor(
    readonly state: MallState,
    readonly journal: Journal,
    checkpointFile: string,
    readonly report: OpenReport & { replayed: number; checkpointSeq: number; recoveryMs: number },
    policy: CheckpointPolicy,
  ) {
    this.checkpoints = new Checkpointer(checkpointFile, { seq: () => state.seq, serialize: () => asciiJson(state) }, journal, policy, report.checkpointSeq);
  }

  static async open(opts: EmbeddedStoreOptions): Promise<EmbeddedMallStore> {
    const started = performance.now();
    const paths = storePaths(opts.dir);
    await mkdir(paths.journalDir, { recursive: true });
    await mkdir(paths.stateDir, { recursive: true });

    const db = new Low<MallState | null>(new DurableJSONFile<MallState | null>(paths.checkpointFile), null);
    try {
      await db.read();
    } catch (err) {
      fail('MALL_ERR_STORE', (err as Error).message);
    }
    const state = db.data === null ? emptyMallState() : reviveMallState(db.data);
    if (state.format !== 1) fail('MALL_ERR_STORE', `${paths.checkpointFile} has format ${String(state.format)}, this mall reads format 1`);
    const checkpointSeq = state.seq;

    let journal: Journal;
    let report: OpenReport;
    try {
      ({ journal, report } = await Journal.open({
        dir: paths.journalDir,
        eventBytesMax: EVENT_BYTES_MAX,
        ...(opts.segmentBytesMax === undefined ? {} : { segmentBytesMax: opts.segmentBytesMax }),
        ...(opts.onFsync === undefined ? {} : { onFsync: opts.onFsync }),
        ...(opts.onFatal === undefined ? {} : { onFatal: opts.onFatal }),
      }));
    } catch (err) {
      fail('MALL_ERR_STORE', `the mall journal cannot be opened: ${(err as Error).message}`);
    }
    if (journal.lastSeq < state.seq) {
      await journal.close();
      fail('MALL_ERR_STORE', `the mall journal ends at seq ${journal.lastSeq} but the checkpoint covers seq ${state.seq}: journal segments are missing`);
    }
    let replayed = 0;
    try {
      ({ count: replayed } = await journal.replay(state.seq + 1, state.hash, (rec, event: MallEvent) => {
        applyMallEvent(state, event, rec.hash);
      }));
    } catch (err) {
      await journal.close().catch(() => undefined);
      fail('MALL_ERR_STORE', `the mall journal cannot be replayed: ${(err as Error).message}`);
    }
    assert(state.seq === journal.lastSeq, `state seq ${state.seq} equals the journal tail ${journal.lastSeq}`);
    const store = new EmbeddedMallStore(
      state,
      journal,
      paths.checkpointFile,
      { ...report, replayed, checkpointSeq, recoveryMs: performance.now() - started },
      { everyEvents: opts.checkpointEveryEvents ?? 10_000, everyMs: opts.checkpointEveryMs ?? 10 * 60_000 },
    );
    store.checkpoints.startTimer();
    return store;
  }

  /** One process: the caller's synchronous check-then-commit is already exclusive. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  /** One process: batches are judged inside the change itself. */
  judgingVersion(): null {
    return null;
  }

  health(): Promise<StoreHealth> {
    return Promise.resolve(this.closed ? { ok: false, detail: 'the mall store is closed' } : { ok: true, detail: null });
  }

  commit(event: NewMallEvent): Promise<MallEvent> {
    if (this.closed) fail('MALL_ERR_STORE', 'the mall store is closed');
    const seq = this.journal.nextSeq;
    const fields = { seq, v: MALL_EVENT_VERSION, ...event };
    let rec;
    try {
      rec = this.journal.append(fields as Record<string, unknown> & { seq: number });
    } catch (err) {
      if (err instanceof JournalBacklogError) fail('MALL_ERR_STORE', err.message);
      throw err;
    }
    const full = { ...fields, prev: this.state.hash } as MallEvent;
    applyMallEvent(this.state, full, rec.hash);
    void this.checkpoints.maybe().catch(() => undefined);
    return rec.durable.then(() => full);
  }

  async read(seq: number): Promise<MallEvent> {
    const rec = await this.journal.read(seq);
    return JSON.parse(rec.text) as MallEvent;
  }

  flushed(): Promise<void> {
    return this.journal.flushed();
  }

  /** Writes the state as of now (see Checkpointer: never ahead of the durable journal). */
  checkpoint(): Promise<void> {
    return this.checkpoints.now();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.journal.flushed();
    await this.checkpoints.close();
    await this.journal.close();
  }
}

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Low } from 'lowdb';
import { fail, type JournalEvent } from '../../core/index.ts';
import { asciiJson, Checkpointer, DurableJSONFile, GENESIS_HASH, Journal, type CheckpointPolicy, type OpenReport } from '../../platform/storage/index.ts';
import { applyEvent, emptyState, fromSnapshot, toSnapshot, type LedgerState, type StateSnapshot } from './state.ts';

export interface OpenLedgerOptions {
  dataDir: string;
  vendorId: string;
  segmentBytesMax?: number;
  keysMax?: number;
  onFsync?: (ms: number, lines: number) => void;
  onFatal?: (err: Error) => void;
  checkpoint?: CheckpointPolicy;
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
  const checkpoints = new Checkpointer(
    paths.checkpointFile,
    { seq: () => state.seq, serialize: () => asciiJson(toSnapshot(state)) },
    journal,
    opts.checkpoint ?? CHECKPOINT_DEFAULTS,
    checkpointSeq,
  );
  return { journal, state, checkpoints, report, replayed: count, checkpointSeq, recoveryMs: performance.now() - started };
}

export const CHECKPOINT_DEFAULTS: CheckpointPolicy = { everyEvents: 100_000, everyMs: 10 * 60_000 };

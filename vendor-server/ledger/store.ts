import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { fail, type JournalEvent } from '../../core/index.ts';
import {
  asciiJson,
  Checkpointer,
  DIR_MODE,
  GENESIS_HASH,
  Journal,
  JournalCorruptError,
  readCheckpoint,
  sealCheckpoint,
  StateFileError,
  type CheckpointHeader,
  type CheckpointPolicy,
  type OpenReport,
  type TornTail,
} from '../../platform/storage/index.ts';
import type { PeriodScope } from '../cashier-day/state.ts';
import { applyEvent, emptyState, fromSnapshot, toSnapshot, type LedgerState, type StateSnapshot } from './state.ts';

export interface OpenLedgerOptions {
  dataDir: string;
  vendorId: string;
  segmentBytesMax?: number;
  keysMax?: number;
  onFsync?: (ms: number, lines: number) => void;
  onFatal?: (err: Error) => void;
  checkpoint?: CheckpointPolicy;
  /** Open without changing a byte (verify, backup): nothing is created, a torn tail is reported and left. */
  readOnly?: boolean;
}

export interface OpenedLedger {
  journal: Journal;
  state: LedgerState;
  checkpoints: Checkpointer;
  report: OpenReport;
  replayed: number;
  checkpointSeq: number;
  /** The checkpoint's header as read at open (null when there was none). */
  checkpoint: CheckpointHeader | null;
  /**
   * The checkpoint's state text as read at open, for the audit to compare with (null when
   * there was none). Kept as text: the state parsed from it is changed by the replay.
   */
  checkpointState: string | null;
  recoveryMs: number;
}

export function ledgerPaths(dataDir: string) {
  return { journalDir: join(dataDir, 'journal'), stateDir: join(dataDir, 'state'), checkpointFile: join(dataDir, 'state', 'checkpoint.json') };
}

/** The checkpoint text for a state: sealed with its seq, chain hash and content hash. */
export function checkpointText(state: LedgerState): string {
  return sealCheckpoint(state.seq, state.hash, asciiJson(toSnapshot(state)));
}

/** Reads and checks the sealed checkpoint: content hash, and a header that agrees with the state inside. */
export async function loadCheckpoint(file: string): Promise<{ header: CheckpointHeader; snapshot: StateSnapshot; stateText: string } | null> {
  const sealed = await readCheckpoint(file);
  if (sealed === null) return null;
  let snapshot: StateSnapshot;
  try {
    snapshot = JSON.parse(sealed.stateText) as StateSnapshot;
  } catch (err) {
    throw new StateFileError(file, `its state is not valid JSON (${(err as Error).message})`);
  }
  const { header } = sealed;
  if (snapshot.seq !== header.seq || snapshot.hash !== header.hash) {
    throw new StateFileError(file, `its header covers seq ${header.seq} (chain hash ${header.hash}) but its state is at seq ${String(snapshot.seq)} (chain hash ${String(snapshot.hash)})`);
  }
  return { header, snapshot, stateText: sealed.stateText };
}

/**
 * Opens the ledger: the last checkpoint (its content hash checked) plus a replay of the
 * journal after it, with the hash chain verified from the checkpoint's chain hash on.
 * The journal before the checkpoint is checked by `auditLedger`, in the background
 * after start and in full by `verify`.
 */
export async function openLedger(opts: OpenLedgerOptions): Promise<OpenedLedger> {
  const started = performance.now();
  const paths = ledgerPaths(opts.dataDir);
  const readOnly = opts.readOnly === true;
  if (!readOnly) {
    await mkdir(paths.journalDir, { recursive: true, mode: DIR_MODE });
    await mkdir(paths.stateDir, { recursive: true, mode: DIR_MODE });
  }

  // The checkpoint is read before the journal: it is written only once the journal is
  // durable past it, so a journal listed afterwards always reaches it, even while live.
  const loaded = await loadCheckpoint(paths.checkpointFile);
  const state = loaded === null ? emptyState(opts.vendorId, GENESIS_HASH) : fromSnapshot(loaded.snapshot);
  if (state.vendorId !== opts.vendorId) {
    fail('VND_ERR_STATE_CORRUPT', `the checkpoint belongs to vendor ${state.vendorId}, not ${opts.vendorId}`);
  }
  const checkpointSeq = state.seq;

  const { journal, report } = await Journal.open({
    dir: paths.journalDir,
    ...(opts.segmentBytesMax === undefined ? {} : { segmentBytesMax: opts.segmentBytesMax }),
    ...(opts.onFsync === undefined ? {} : { onFsync: opts.onFsync }),
    ...(opts.onFatal === undefined ? {} : { onFatal: opts.onFatal }),
    readOnly,
  });
  try {
    if (journal.lastSeq < state.seq) {
      fail(
        'VND_ERR_JOURNAL_CORRUPT',
        `the journal ends at seq ${journal.lastSeq} but the checkpoint covers seq ${state.seq}: journal segments are missing`,
      );
    }
    if (state.seq > 0) {
      const atCheckpoint = await journal.read(state.seq);
      if (atCheckpoint.hash !== state.hash) {
        throw new StateFileError(
          paths.checkpointFile,
          `it claims the journal's chain hash at seq ${state.seq} is ${state.hash}, but the journal's event at seq ${state.seq} hashes to ${atCheckpoint.hash}`,
        );
      }
    }
  } catch (err) {
    await journal.close().catch(() => undefined);
    throw err;
  }
  const { count } = await journal.replay(state.seq + 1, state.hash, (rec, event: JournalEvent) => {
    applyEvent(state, event, rec.hash, opts.keysMax);
  });
  const checkpoints = new Checkpointer(paths.checkpointFile, { seq: () => state.seq, serialize: () => checkpointText(state) }, journal, opts.checkpoint ?? CHECKPOINT_DEFAULTS, checkpointSeq);
  return {
    journal, state, checkpoints, report, replayed: count, checkpointSeq,
    checkpoint: loaded?.header ?? null, checkpointState: loaded?.stateText ?? null,
    recoveryMs: performance.now() - started,
  };
}

export const CHECKPOINT_DEFAULTS: CheckpointPolicy = { everyEvents: 100_000, everyMs: 10 * 60_000 };

export interface AuditResult {
  events: number;
  lastSeq: number;
  lastHash: string;
  checkpointSeq: number;
}

/** The integrity alarm: why the ledger on disk cannot be trusted. */
export class LedgerDamageError extends Error {
  readonly code = 'VND_ERR_STATE_CORRUPT';
  constructor(message: string) {
    super(message);
    this.name = 'LedgerDamageError';
  }
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Where a checkpoint differs from the state the journal replays to at the same seq, as
 * one sentence, or null. Day totals are reports recomputed by the rules of the running
 * version and the evicted-key filter is derived from the window; both are covered by the
 * content hash and not compared here. The key window is compared entry by entry against
 * the keys the journal's events carry, so a changed window size is not damage.
 */
export function checkpointDifference(checkpoint: StateSnapshot, replayed: LedgerState, keyOfSeq: ReadonlyMap<number, string>): string | null {
  if (checkpoint.seq !== replayed.seq || checkpoint.hash !== replayed.hash) {
    return `the checkpoint is at seq ${checkpoint.seq} (${checkpoint.hash}), the journal at seq ${replayed.seq} (${replayed.hash})`;
  }
  const accounts = new Set([...Object.keys(checkpoint.balances), ...Object.keys(replayed.balances)]);
  for (const account of accounts) {
    const a = checkpoint.balances[account] ?? {};
    const b = replayed.balances[account] ?? {};
    for (const token of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (a[token] !== b[token]) {
        return `the checkpoint says ${account} holds ${String(a[token] ?? 0)} ${token}, the journal gives ${String(b[token] ?? 0)}`;
      }
    }
  }
  const fields = ['vendorId', 'tokenTypes', 'products', 'customers', 'cards', 'customerSerial', 'refunds'] as const;
  for (const field of fields) {
    if (!sameJson(checkpoint[field], replayed[field])) return `the checkpoint's ${field} differ from what the journal gives`;
  }
  // Each till's last offline sale (absent in checkpoints written before offline selling).
  // The catalog version is not compared: a checkpoint loaded from one written before it
  // existed carries its seq instead, which a replay from seq 1 does not give.
  if (checkpoint.offlineTills !== undefined && !sameJson(checkpoint.offlineTills, replayed.offlineTills)) return 'the checkpoint\'s offline sale counters differ from what the journal gives';
  // The cashier's day, but for the open day's running totals: a checkpoint written before
  // the cashier's day existed started them at its own seq, which a replay from seq 1 does
  // not (a Z's totals are checked against the journal by verify instead).
  const cd = checkpoint.cashierDay;
  if (cd !== undefined) {
    for (const field of ['shifts', 'shiftOrder', 'openByTerminal', 'openByStaff', 'closures', 'reprints'] as const) {
      if (!sameJson(cd[field], replayed.cashierDay[field])) return `the checkpoint's cashier's day (${field}) differs from what the journal gives`;
    }
    const chains = new Set([...Object.keys(cd.terminals), ...Object.keys(replayed.cashierDay.terminals)]);
    const scopes: [string, PeriodScope | undefined, PeriodScope | undefined][] = [['store', cd.store, replayed.cashierDay.store]];
    for (const t of chains) scopes.push([`till ${t}`, cd.terminals[t], replayed.cashierDay.terminals[t]]);
    for (const [name, a, b] of scopes) {
      for (const field of ['month', 'year', 'z', 'monthHead', 'yearHead', 'grandTotalMinor'] as const) {
        if (!sameJson(a?.[field] ?? null, b?.[field] ?? null)) return `the checkpoint's cashier's day (${name}: ${field}) differs from what the journal gives`;
      }
    }
  }
  for (const [key, seq] of checkpoint.keys) {
    if (keyOfSeq.get(seq) !== key) return `the checkpoint maps request key ${key} to seq ${seq}, but that event carries another key`;
  }
  return null;
}

/**
 * Replays the whole journal from seq 1 into a fresh state: every line's hash and link
 * is checked, and at the checkpoint's seq the state must equal the checkpoint's. Throws
 * JournalCorruptError or LedgerDamageError naming the first problem. With `background`
 * it lets other work run between small slices, so a live server stays responsive.
 */
export async function auditLedger(
  journal: Journal,
  opts: { vendorId: string; keysMax?: number; checkpoint: string | null; toSeq?: number; background?: boolean; stopped?: () => boolean },
): Promise<AuditResult> {
  const toSeq = opts.toSeq ?? journal.durableSeq;
  const checkpoint = opts.checkpoint === null ? null : (JSON.parse(opts.checkpoint) as StateSnapshot);
  const checkpointSeq = checkpoint?.seq ?? 0;
  if (checkpointSeq > toSeq) throw new LedgerDamageError(`the checkpoint covers seq ${checkpointSeq} but the journal ends at seq ${toSeq}`);
  const state = emptyState(opts.vendorId, GENESIS_HASH);
  // Seqs named by the checkpoint's key window, and the key each event carries.
  const windowSeqs = new Set(checkpoint?.keys.map(([, seq]) => seq) ?? []);
  const keyOfSeq = new Map<number, string>();
  const compare = () => {
    if (checkpoint === null) return;
    const diff = checkpointDifference(checkpoint, state, keyOfSeq);
    if (diff !== null) throw new LedgerDamageError(`checkpoint at seq ${checkpointSeq} does not match the journal: ${diff}`);
  };
  if (checkpointSeq === 0) compare();
  let lastHash = GENESIS_HASH;
  if (toSeq > 0) {
    let n = 0;
    for await (const rec of journal.iterate(1, toSeq)) {
      if (rec.seq === 1 && rec.prev !== GENESIS_HASH) {
        throw new JournalCorruptError({ segment: 'journal-0000000000000001.jsonl', offset: 0, seq: 1, reason: 'chain-break', detail: 'the first event does not link to the genesis hash' });
      }
      let event: JournalEvent;
      try {
        event = JSON.parse(rec.text) as JournalEvent;
      } catch (err) {
        throw new LedgerDamageError(`event ${rec.seq} is not valid JSON: ${(err as Error).message}`);
      }
      try {
        applyEvent(state, event, rec.hash, opts.keysMax);
      } catch (err) {
        throw new LedgerDamageError(`event ${rec.seq} cannot be applied: ${(err as Error).message}`);
      }
      if (windowSeqs.has(rec.seq) && typeof event.key === 'string') keyOfSeq.set(rec.seq, event.key);
      lastHash = rec.hash;
      if (rec.seq === checkpointSeq) compare();
      if (opts.background === true && ++n % 128 === 0) {
        await nextTurn();
        if (opts.stopped?.() === true) throw new Error('the audit was stopped');
      }
    }
  }
  return { events: toSeq, lastSeq: toSeq, lastHash, checkpointSeq };
}

/**
 * Whether a request key, absent from the in-memory window, was used by an event that
 * was evicted from it: the filter rules out almost every new key at once; a key it
 * cannot rule out is looked up in the journal, only in the seq ranges the filter names
 * (each at most a million events, newest first).
 */
export async function evictedKeySeq(state: LedgerState, journal: Journal, key: string): Promise<number | null> {
  const needle = `"key":${JSON.stringify(key)},`;
  for (const range of state.evicted.ranges(key)) {
    for await (const rec of journal.iterate(range.fromSeq, range.toSeq)) {
      if (!rec.text.includes(needle)) continue;
      const event = JSON.parse(rec.text) as { key?: unknown };
      if (event.key === key) return rec.seq;
    }
  }
  return null;
}

export interface IntegrityStatus {
  /** checking: the background audit runs; ok: the whole chain and the checkpoint were confirmed; damaged: they were not. */
  state: 'checking' | 'ok' | 'damaged';
  /** What is wrong, when damaged. */
  detail: string | null;
  /** The seq the audit covered (or is covering). */
  throughSeq: number;
}

/**
 * Checks, after start and without delaying it, everything start did not: the journal
 * from seq 1 (every hash and link) and the checkpoint against a replay of it. Damage is
 * reported once through onDamage; a result that arrives after stop() is ignored, so a
 * shutdown never looks like damage.
 */
export class IntegrityAudit {
  readonly status: IntegrityStatus;
  private stopped = false;
  private running: Promise<void> | null = null;

  constructor(
    private readonly opened: OpenedLedger,
    private readonly opts: { vendorId: string; keysMax?: number; onOk: (r: AuditResult, ms: number) => void; onDamage: (detail: string) => void },
  ) {
    this.status = { state: 'checking', detail: null, throughSeq: opened.journal.durableSeq };
  }

  start(): void {
    const started = performance.now();
    const audit = auditLedger(this.opened.journal, {
      vendorId: this.opts.vendorId,
      checkpoint: this.opened.checkpointState,
      toSeq: this.status.throughSeq,
      background: true,
      stopped: () => this.stopped,
      ...(this.opts.keysMax === undefined ? {} : { keysMax: this.opts.keysMax }),
    });
    // The audit parsed the checkpoint text before its first await: the text need not stay in memory.
    this.opened.checkpointState = null;
    this.running = audit.then(
      (r) => {
        if (this.stopped) return;
        this.status.state = 'ok';
        this.opts.onOk(r, performance.now() - started);
      },
      (err: unknown) => {
        if (this.stopped) return;
        this.status.state = 'damaged';
        this.status.detail = err instanceof Error ? err.message : String(err);
        this.opts.onDamage(this.status.detail);
      },
    );
  }

  /** Resolves when the audit finished (tests). */
  async done(): Promise<void> {
    await this.running;
  }

  stop(): void {
    this.stopped = true;
  }
}

export interface VerifyReport {
  ok: true;
  events: number;
  lastSeq: number;
  lastHash: string;
  checkpointSeq: number;
  /** An incomplete last line: on a live store a line being written, on a stopped one an unacknowledged torn write. Left as it is. */
  tornTail: TornTail | null;
}

/**
 * Checks a ledger directory without changing a byte, so it is safe on a live store and
 * on a backup: the checkpoint's seal, the whole journal chain, and the checkpoint
 * against a replay. Throws the first problem found.
 */
export async function verifyLedger(opts: { dataDir: string; vendorId: string; keysMax?: number }): Promise<VerifyReport> {
  const opened = await openLedger({ dataDir: opts.dataDir, vendorId: opts.vendorId, readOnly: true, ...(opts.keysMax === undefined ? {} : { keysMax: opts.keysMax }) });
  try {
    const r = await auditLedger(opened.journal, {
      vendorId: opts.vendorId,
      checkpoint: opened.checkpointState,
      toSeq: opened.journal.lastSeq,
      ...(opts.keysMax === undefined ? {} : { keysMax: opts.keysMax }),
    });
    return { ok: true, events: r.events, lastSeq: r.lastSeq, lastHash: r.lastHash, checkpointSeq: r.checkpointSeq, tornTail: opened.report.torn };
  } finally {
    await opened.journal.close();
  }
}

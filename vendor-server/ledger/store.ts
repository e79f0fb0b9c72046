import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { availableParallelism, setPriority } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fail, type JournalEvent, type StateEvent } from '../../core/index.ts';
import {
  asciiJson,
  Checkpointer,
  DIR_MODE,
  GENESIS_HASH,
  keyPrint,
  keyPrintHex,
  Journal,
  readCheckpoint,
  sealCheckpoint,
  StateFileError,
  type CheckpointHeader,
  type CheckpointPolicy,
  type OpenReport,
  type TornTail,
} from '../../platform/storage/index.ts';
import { ReplayThreadStarts } from '../../platform/storage/replay-threads.ts';
import { scriptBeside } from '../../platform/scripts.ts';
import type { CashierDayState, PeriodScope } from '../cashier-day/state.ts';
import { applyEvent, emptyState, fromSnapshot, own, toSnapshot, type LedgerState, type StateSnapshot } from './state.ts';
import { parseStateEvent } from './replay-parse.ts';
import { stateEventCodec } from './replay-codec.ts';

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
  /** Take the checkpoint's digests for an audit in this process (verify); a server's audit takes its own. */
  printCheckpoint?: boolean;
  /**
   * Threads that read and parse a long replay (replay-thread.ts); default: one per core,
   * at most 4, and none on a single core, where they would only add the cost of handing
   * events over; 0 replays on this thread.
   */
  replayThreads?: number;
  /** The fewest events a replay takes threads for (Journal's replayThreadMin). */
  replayThreadMin?: number;
}

/**
 * The replay thread's script, next to this module: its source under tsx; from dist/, the
 * build's bundle of it (bin/build.js).
 */
const REPLAY_SCRIPT = scriptBeside(import.meta.url, 'replay-thread');
const REPLAY_THREADS_MAX = 4;

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
   * Digests of the checkpoint's state as loaded, for the audit to compare a replay with
   * (null when there was none or when not asked for). Digests, not a copy: the state
   * loaded from the checkpoint is changed by the replay, and a second copy would double
   * the memory.
   */
  checkpointPrint: CheckpointPrint | null;
  recoveryMs: number;
  /** Threads the replay at open read and parsed on (0: none), and why it went on without them, if it did. */
  replayThreads: { started: number; fallback: string | null };
}

export function ledgerPaths(dataDir: string) {
  return { journalDir: join(dataDir, 'journal'), stateDir: join(dataDir, 'state'), checkpointFile: join(dataDir, 'state', 'checkpoint.json') };
}

/** The checkpoint text for a state: sealed with its seq, chain hash and content hash. */
export function checkpointText(state: LedgerState): string {
  return sealCheckpoint(state.seq, state.hash, asciiJson(toSnapshot(state)));
}

/** Reads and checks the sealed checkpoint: content hash, and a header that agrees with the state inside. */
export async function loadCheckpoint(file: string): Promise<{ header: CheckpointHeader; snapshot: StateSnapshot } | null> {
  let sealed = await readCheckpoint(file);
  if (sealed === null) return null;
  const { header } = sealed;
  let snapshot: StateSnapshot;
  try {
    snapshot = JSON.parse(sealed.stateText) as StateSnapshot;
  } catch (err) {
    throw new StateFileError(file, `its state is not valid JSON (${(err as Error).message})`);
  }
  // The text is not needed once parsed; on a large store it is tens of megabytes.
  sealed = null;
  if (snapshot.seq !== header.seq || snapshot.hash !== header.hash) {
    throw new StateFileError(file, `its header covers seq ${header.seq} (chain hash ${header.hash}) but its state is at seq ${String(snapshot.seq)} (chain hash ${String(snapshot.hash)})`);
  }
  return { header, snapshot };
}

/**
 * Opens the ledger: the last checkpoint (its content hash checked) plus a replay of the
 * journal after it, with the hash chain verified from the checkpoint's chain hash on.
 * The journal before the checkpoint is checked by `auditLedger`, after start by the
 * server's IntegrityAudit in a process of its own and in full by `verify`.
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
  let loaded = await loadCheckpoint(paths.checkpointFile);
  const header = loaded?.header ?? null;
  const state = loaded === null ? emptyState(opts.vendorId, GENESIS_HASH) : fromSnapshot(loaded.snapshot);
  // fromSnapshot took the parsed objects over; nothing else may hold on to them.
  loaded = null;
  const checkpointPrint = header === null || opts.printCheckpoint !== true ? null : printState(state, header.sha256);
  if (state.vendorId !== opts.vendorId) {
    fail('VND_ERR_STATE_CORRUPT', `the checkpoint belongs to vendor ${state.vendorId}, not ${opts.vendorId}`);
  }
  const checkpointSeq = state.seq;

  // A long replay's threads start now, while the journal is opened, rather than after.
  const cores = availableParallelism();
  const threads = opts.replayThreads ?? (cores < 2 ? 0 : Math.min(REPLAY_THREADS_MAX, cores));
  const ahead = threads > 0 && (await Journal.replayLooksLong(paths.journalDir, state.seq + 1, opts.replayThreadMin))
    ? new ReplayThreadStarts(REPLAY_SCRIPT, threads)
    : null;
  const { journal, report } = await Journal.open({
    dir: paths.journalDir,
    ...(opts.segmentBytesMax === undefined ? {} : { segmentBytesMax: opts.segmentBytesMax }),
    ...(opts.onFsync === undefined ? {} : { onFsync: opts.onFsync }),
    ...(opts.onFatal === undefined ? {} : { onFatal: opts.onFatal }),
    ...(opts.replayThreadMin === undefined ? {} : { replayThreadMin: opts.replayThreadMin }),
    readOnly,
  }).catch(async (err: unknown) => {
    await ahead?.close();
    throw err;
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
    await ahead?.close();
    await journal.close().catch(() => undefined);
    throw err;
  }
  // Replayed as the state sees events (replay-parse.ts), a long replay read and parsed on
  // threads of its own (replay-codec.ts); the audit parses every byte.
  const replayThreads: OpenedLedger['replayThreads'] = { started: 0, fallback: null };
  const onDone = (started: number, fallback: Error | null): void => {
    replayThreads.started = started;
    replayThreads.fallback = fallback?.message ?? null;
  };
  // The key window's index is built once, after the replay, not key by key.
  state.keys.deferIndex();
  const { count } = await journal.replay(state.seq + 1, state.hash, (rec, event: StateEvent) => {
    applyEvent(state, event, rec.hash, opts.keysMax);
  }, undefined, parseStateEvent, threads > 0 ? { script: REPLAY_SCRIPT, codec: stateEventCodec, threads, onDone, ...(ahead === null ? {} : { started: ahead }) } : null);
  state.keys.ensureIndex();
  const checkpoints = new Checkpointer(paths.checkpointFile, { seq: () => state.seq, serialize: () => checkpointText(state) }, journal, opts.checkpoint ?? CHECKPOINT_DEFAULTS, checkpointSeq);
  return {
    journal, state, checkpoints, report, replayed: count, checkpointSeq,
    checkpoint: header, checkpointPrint,
    recoveryMs: performance.now() - started,
    replayThreads,
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

/** The fields compared as JSON, in the order the checkpoint holds them; balances are compared apart. */
const PRINTED_FIELDS = ['vendorId', 'tokenTypes', 'products', 'customers', 'cards', 'customerSerial', 'refunds'] as const;
type PrintedField = (typeof PRINTED_FIELDS)[number];

/**
 * What the audit compares a replay with: sha256 digests of a state's parts, a few bytes
 * whatever the store's size. Balances are digested in sorted order, so that only their
 * values count, as in `checkpointDifference`; the other fields as the JSON a checkpoint
 * holds. The key window is kept as its seqs and one digest of its keys in seq order.
 */
export interface CheckpointPrint {
  seq: number;
  hash: string;
  /** The content hash of the checkpoint file it was taken from: whether that file is still on disk. */
  sha256: string;
  balances: string;
  fields: Record<PrintedField, string>;
  cashierDay: string | null;
  offlineTills: string;
  /** The auction lots and their serial. */
  lots: string;
  windowSeqs: Float64Array;
  windowKeys: string;
}

/** A sha256 fed in pieces of about 64 KiB: one call per entry would cost more than the hashing. */
class PieceDigest {
  private readonly h = createHash('sha256');
  private piece = '';

  add(text: string): void {
    this.piece += text;
    if (this.piece.length >= 65_536) {
      this.h.update(this.piece);
      this.piece = '';
    }
  }

  hex(): string {
    this.h.update(this.piece);
    this.piece = '';
    return this.h.digest('hex');
  }
}

function balancesPrint(balances: LedgerState['balances']): string {
  const d = new PieceDigest();
  for (const account of Object.keys(balances).sort()) {
    const row = balances[account] as Record<string, number>;
    const tokens = Object.keys(row).sort();
    // An empty row holds nothing: it is the same as no row.
    if (tokens.length === 0) continue;
    d.add(JSON.stringify(account));
    for (const token of tokens) d.add(`,${JSON.stringify(token)}:${String(row[token])}`);
    d.add('\n');
  }
  return d.hex();
}

/**
 * The digest of a field's JSON text. The text is made whole, for speed: it is no larger
 * than the checkpoint text the field came from, which is no longer held by then.
 */
function fieldPrint(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value) ?? 'undefined').digest('hex');
}

/**
 * The same digest as `fieldPrint`, made entry by entry: the audit takes it with its
 * replayed state in memory, where a whole field's text would be one more large string.
 */
function fieldPrintPieces(value: unknown): string {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return fieldPrint(value);
  const d = new PieceDigest();
  let sep = '{';
  // for...in visits keys in the order JSON.stringify writes them.
  for (const key in value) {
    d.add(`${sep}${JSON.stringify(key)}:${JSON.stringify((value as Record<string, unknown>)[key])}`);
    sep = ',';
  }
  d.add(sep === '{' ? '{}' : '}');
  return d.hex();
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

const CASHIER_DAY_FIELDS = ['shifts', 'shiftOrder', 'openByTerminal', 'openByStaff', 'closures', 'reprints'] as const;
const SCOPE_FIELDS = ['month', 'year', 'z', 'monthHead', 'yearHead', 'grandTotalMinor'] as const;

function cashierDayScopes(a: CashierDayState, b: CashierDayState | null): [string, PeriodScope | undefined, PeriodScope | undefined][] {
  const chains = new Set([...Object.keys(a.terminals), ...Object.keys(b?.terminals ?? {})]);
  const scopes: [string, PeriodScope | undefined, PeriodScope | undefined][] = [['store', a.store, b?.store]];
  for (const t of [...chains].sort()) scopes.push([`till ${t}`, own(a.terminals, t), b === null ? undefined : own(b.terminals, t)]);
  return scopes;
}

/** The digest of the cashier's day as `checkpointDifference` compares it (null: a checkpoint from before it existed). */
function cashierDayPrint(cd: CashierDayState | undefined): string | null {
  if (cd === undefined) return null;
  const d = new PieceDigest();
  for (const field of CASHIER_DAY_FIELDS) d.add(`${JSON.stringify(cd[field]) ?? 'null'}\n`);
  for (const [name, scope] of cashierDayScopes(cd, null)) {
    d.add(name);
    for (const field of SCOPE_FIELDS) d.add(`,${JSON.stringify(scope?.[field] ?? null)}`);
    d.add('\n');
  }
  return d.hex();
}

/** The digest of each till's last offline sale, in till order. */
function offlineTillsPrint(tills: LedgerState['offlineTills']): string {
  const d = new PieceDigest();
  for (const t of Object.keys(tills).sort()) d.add(`${JSON.stringify(t)}:${JSON.stringify(own(tills, t))}\n`);
  return d.hex();
}

/** The digest of the auction lots, in the order they were listed, with the lot serial. */
function lotsPrint(state: Pick<LedgerState, 'lots' | 'lotSerial'>): string {
  return fieldPrint([state.lotSerial, state.lots]);
}

/** The digests of a state; `sha256` names the checkpoint file the state was loaded from. */
export function printState(state: LedgerState, sha256: string): CheckpointPrint {
  const fields = Object.create(null) as Record<PrintedField, string>;
  for (const field of PRINTED_FIELDS) fields[field] = fieldPrint(state[field]);
  // The window is in seq order (a ledger fills it in that order, and a window loaded
  // from a checkpoint is sorted), which the audit's single pass along the journal needs.
  const windowSeqs = new Float64Array(state.keys.size);
  const keys = new PieceDigest();
  let i = 0;
  for (const [print, seq] of state.keys.entries()) {
    windowSeqs[i++] = seq;
    keys.add(`${keyPrintHex(print)},`);
  }
  return {
    seq: state.seq,
    hash: state.hash,
    sha256,
    balances: balancesPrint(state.balances),
    fields,
    cashierDay: cashierDayPrint(state.cashierDay),
    offlineTills: offlineTillsPrint(state.offlineTills),
    lots: lotsPrint(state),
    windowSeqs,
    windowKeys: keys.hex(),
  };
}

/**
 * Where a checkpoint differs from the state the journal replays to at the same seq, as
 * one sentence, or null. Day totals are reports recomputed by the rules of the running
 * version and the evicted-key filter is derived from the window; both are covered by the
 * content hash and not compared here. The key window is checked against the journal's
 * events by the audit as it replays them, so a changed window size is not damage.
 */
export function checkpointDifference(checkpoint: StateSnapshot, replayed: LedgerState): string | null {
  if (checkpoint.seq !== replayed.seq || checkpoint.hash !== replayed.hash) {
    return `the checkpoint is at seq ${checkpoint.seq} (${checkpoint.hash}), the journal at seq ${replayed.seq} (${replayed.hash})`;
  }
  const accounts = new Set([...Object.keys(checkpoint.balances), ...Object.keys(replayed.balances)]);
  for (const account of accounts) {
    const a = own(checkpoint.balances, account) ?? {};
    const b = own(replayed.balances, account) ?? {};
    for (const token of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (own(a, token) !== own(b, token)) {
        return `the checkpoint says ${account} holds ${String(own(a, token) ?? 0)} ${token}, the journal gives ${String(own(b, token) ?? 0)}`;
      }
    }
  }
  for (const field of PRINTED_FIELDS) {
    if (fieldPrint(checkpoint[field]) !== fieldPrint(replayed[field])) return `the checkpoint's ${field} differ from what the journal gives`;
  }
  // Each till's last offline sale (absent in checkpoints written before offline selling).
  // The catalog version is not compared: a checkpoint loaded from one written before it
  // existed carries its seq instead, which a replay from seq 1 does not give.
  if (checkpoint.offlineTills !== undefined && !sameJson(checkpoint.offlineTills, replayed.offlineTills)) return 'the checkpoint\'s offline sale counters differ from what the journal gives';
  // Auction lots (absent in checkpoints written before auctions, which had none).
  if (!sameJson([checkpoint.lotSerial ?? 0, checkpoint.lots ?? {}], [replayed.lotSerial, replayed.lots])) return 'the checkpoint\'s auction lots differ from what the journal gives';
  // The cashier's day, but for the open day's running totals: a checkpoint written before
  // the cashier's day existed started them at its own seq, which a replay from seq 1 does
  // not (a Z's totals are checked against the journal by verify instead).
  const cd = checkpoint.cashierDay;
  if (cd !== undefined) {
    for (const field of CASHIER_DAY_FIELDS) {
      if (!sameJson(cd[field], replayed.cashierDay[field])) return `the checkpoint's cashier's day (${field}) differs from what the journal gives`;
    }
    for (const [name, a, b] of cashierDayScopes(cd, replayed.cashierDay)) {
      for (const field of SCOPE_FIELDS) {
        if (!sameJson(a?.[field] ?? null, b?.[field] ?? null)) return `the checkpoint's cashier's day (${name}: ${field}) differs from what the journal gives`;
      }
    }
  }
  return null;
}

/**
 * Where a checkpoint, known by its digests, differs from a replayed state, or null. The
 * digests say whether and in which part; for the account and the units the checkpoint
 * file is read again, when it is still the one the digests were taken from (a newer
 * checkpoint may have replaced it since).
 */
async function printDifference(print: CheckpointPrint, replayed: LedgerState, file: string | null): Promise<string | null> {
  if (print.seq !== replayed.seq || print.hash !== replayed.hash) {
    return `the checkpoint is at seq ${print.seq} (${print.hash}), the journal at seq ${replayed.seq} (${replayed.hash})`;
  }
  const balancesDiffer = balancesPrint(replayed.balances) !== print.balances;
  let field: PrintedField | undefined;
  for (const f of PRINTED_FIELDS) {
    if (fieldPrintPieces(replayed[f]) === print.fields[f]) continue;
    field = f;
    break;
  }
  const cashierDayDiffers = print.cashierDay !== null && cashierDayPrint(replayed.cashierDay) !== print.cashierDay;
  const offlineDiffers = offlineTillsPrint(replayed.offlineTills) !== print.offlineTills;
  const lotsDiffer = lotsPrint(replayed) !== print.lots;
  if (!balancesDiffer && field === undefined && !cashierDayDiffers && !offlineDiffers && !lotsDiffer) return null;
  if (file !== null) {
    const loaded = await loadCheckpoint(file).catch(() => null);
    if (loaded !== null && loaded.header.sha256 === print.sha256) {
      const detail = checkpointDifference(loaded.snapshot, replayed);
      if (detail !== null) return detail;
    }
  }
  const part = balancesDiffer ? 'balances' : field !== undefined ? field : cashierDayDiffers ? "cashier's day" : offlineDiffers ? 'offline sale counters' : 'auction lots';
  return `the checkpoint's ${part} differ from what the journal gives`;
}

/**
 * Points a registration's strings at the equal ones the live state holds for the same
 * customer. The audit's replayed customers then share those strings instead of holding
 * copies of every id, card, name and time: on a store of many customers that is most
 * of what its second state would take. Equal strings are interchangeable, so nothing
 * the audit checks changes.
 */
function shareStrings(event: JournalEvent, live: LedgerState): void {
  if (event.type !== 'customer.registered') return;
  const d = event.data;
  const c = own(live.customers, d.id);
  if (c === undefined) return;
  if (c.id === d.id) d.id = c.id;
  if (c.card === d.card) d.card = c.card;
  if (c.name === d.name) d.name = c.name;
  if (c.registeredAt === event.at) event.at = c.registeredAt;
}

/**
 * Replays the journal from seq 1 into a fresh state: every line's hash and link is
 * checked, and at the checkpoint's seq the state must match the checkpoint's digests.
 * The state is dropped there: the events after the checkpoint were applied when the
 * ledger was opened, so only their chain is checked again. Throws JournalCorruptError or
 * LedgerDamageError naming the first problem.
 */
export async function auditLedger(
  journal: Journal,
  opts: {
    vendorId: string; checkpoint: CheckpointPrint | null; checkpointFile?: string; toSeq?: number;
    /** The live state, whose strings the replay may share (never changed by the audit). */
    live?: LedgerState;
  },
): Promise<AuditResult> {
  const toSeq = opts.toSeq ?? journal.durableSeq;
  const print = opts.checkpoint;
  const checkpointSeq = print?.seq ?? 0;
  if (checkpointSeq > toSeq) throw new LedgerDamageError(`the checkpoint covers seq ${checkpointSeq} but the journal ends at seq ${toSeq}`);
  let lastHash = GENESIS_HASH;
  if (print !== null) {
    // The events the checkpoint covers are applied to a fresh state through the journal's
    // replay: every hash and link checked, the hashes on a second thread when there are
    // many, and each event parsed once.
    const state = emptyState(opts.vendorId, GENESIS_HASH);
    // The key window is in seq order: one cursor walks it along the replay, digesting the
    // keys the events carry as the checkpoint's were.
    let w = 0;
    const windowKeys = new PieceDigest();
    if (checkpointSeq > 0) {
      const replayed = await journal.replay(1, GENESIS_HASH, (rec, event: JournalEvent) => {
        if (opts.live !== undefined) shareStrings(event, opts.live);
        try {
          // The replay's own key window is not compared, only the checkpoint's: every key
          // goes straight to the (small) filter instead of a window of full keys.
          applyEvent(state, event, rec.hash, 0);
        } catch (err) {
          throw new LedgerDamageError(`event ${rec.seq} cannot be applied: ${(err as Error).message}`);
        }
        for (; w < print.windowSeqs.length && (print.windowSeqs[w] as number) <= rec.seq; w++) {
          const seq = print.windowSeqs[w] as number;
          if (seq !== rec.seq || typeof event.key !== 'string') {
            throw new LedgerDamageError(`checkpoint at seq ${checkpointSeq} does not match the journal: the checkpoint maps a request key to seq ${seq}, an event that carries no key`);
          }
          windowKeys.add(`${keyPrintHex(keyPrint(event.key))},`);
        }
      }, checkpointSeq);
      lastHash = replayed.lastHash;
      if (windowKeys.hex() !== print.windowKeys) {
        throw new LedgerDamageError(`checkpoint at seq ${checkpointSeq} does not match the journal: the checkpoint maps a request key to a seq whose event carries another key`);
      }
    }
    const diff = await printDifference(print, state, opts.checkpointFile ?? null);
    if (diff !== null) throw new LedgerDamageError(`checkpoint at seq ${checkpointSeq} does not match the journal: ${diff}`);
    if (w < print.windowSeqs.length) {
      throw new LedgerDamageError(`checkpoint at seq ${checkpointSeq} does not match the journal: the checkpoint maps a request key to seq ${String(print.windowSeqs[w])}, an event it does not cover`);
    }
  }
  // The events after the checkpoint were applied when the ledger was opened, but from
  // sales read without their lines (replay-parse.ts): here every one is parsed whole, its
  // hash and link checked, the first against the checkpoint's own event.
  if (toSeq > checkpointSeq) {
    lastHash = (await journal.replay(checkpointSeq + 1, lastHash, () => undefined, toSeq)).lastHash;
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

/** What the audit process is asked to check (vendor-server/ledger/audit-process.ts). */
export interface AuditJob {
  /** The ledger directory (holding journal/ and state/). */
  dataDir: string;
  vendorId: string;
  /** The journal is checked at least to this seq: the server's durable seq when it started the audit. */
  toSeq: number;
  /** The process's nice value when not the lowest priority (LOWEST_PRIORITY). */
  nice?: number;
}

/** The one line the audit process writes: the result, or why the ledger cannot be trusted. */
export type AuditReport = { ok: true; result: AuditResult } | { ok: false; detail: string };

/** The nice value of the audit process: the lowest priority there is. */
export const LOWEST_PRIORITY = 19;

/**
 * Journals of at most this many events are audited in the server's process: a replay of
 * them takes some tens of milliseconds, in pieces between reads, where starting a process
 * costs a few hundred milliseconds of CPU.
 */
export const AUDIT_IN_PROCESS_MAX = 2_000;

/**
 * The audit of a ledger directory from its files alone, for a process other than the one
 * serving it: the checkpoint on disk (its seal checked and its digests taken, then the
 * state dropped) against a replay of the journal from seq 1, through `job.toSeq` or the
 * checkpoint's seq, whichever is later. A checkpoint written since the server loaded its
 * own was made from the server's state, so checking it covers the one loaded as well.
 * Opens everything read-only, so it is safe while the server writes.
 */
export async function auditStoredLedger(job: AuditJob): Promise<AuditResult> {
  const paths = ledgerPaths(job.dataDir);
  let print: CheckpointPrint | null = null;
  {
    const loaded = await loadCheckpoint(paths.checkpointFile);
    if (loaded !== null) print = printState(fromSnapshot(loaded.snapshot), loaded.header.sha256);
  }
  const { journal } = await Journal.open({ dir: paths.journalDir, readOnly: true });
  try {
    if (journal.lastSeq < job.toSeq) {
      throw new LedgerDamageError(`the journal on disk ends at seq ${journal.lastSeq}, but the server had made it durable to seq ${job.toSeq}`);
    }
    const toSeq = Math.min(journal.lastSeq, Math.max(job.toSeq, print?.seq ?? 0));
    return await auditLedger(journal, { vendorId: job.vendorId, checkpoint: print, checkpointFile: paths.checkpointFile, toSeq });
  } finally {
    await journal.close();
  }
}

/** auditStoredLedger's result or failure as the report the audit gives, in its process or the server's. */
export async function auditReport(job: AuditJob): Promise<AuditReport> {
  try {
    return { ok: true, result: await auditStoredLedger(job) };
  } catch (err) {
    return { ok: false, detail: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * Node options the audit process must not repeat: a profile or a debugger belongs to the
 * server (a second profile in the same directory would be taken for the server's). Those
 * given as two arguments take the next one along.
 */
const SERVER_ONLY_OPTION = /^--(cpu-prof|heap-prof|prof$|inspect|debug)/;
const OPTION_WITH_VALUE = /^--(cpu-prof-(dir|name|interval)|heap-prof-(dir|name|interval)|inspect-port|debug-port)$/;

function auditExecArgv(): string[] {
  const out: string[] = [];
  const args = process.execArgv;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (!SERVER_ONLY_OPTION.test(arg)) out.push(arg);
    else if (OPTION_WITH_VALUE.test(arg)) i += 1;
  }
  return out;
}

/**
 * The audit process's script, next to this module: its source under tsx; from dist/, the
 * build's bundle of it (bin/build.js), which starts in less CPU time than its modules.
 */
const AUDIT_SCRIPT = fileURLToPath(scriptBeside(import.meta.url, 'audit-process'));

/** The command line of an audit process for a job. */
export function auditCommand(job: AuditJob): { file: string; args: string[] } {
  return { file: process.execPath, args: [...auditExecArgv(), AUDIT_SCRIPT, JSON.stringify(job)] };
}

/** The end of the audit process's stderr kept for the detail of a failure. */
const STDERR_KEPT = 2048;

/**
 * Checks, after start and without delaying it, everything start did not: the journal
 * from seq 1 (every hash and link) and the checkpoint against a replay of it. Damage is
 * reported once through onDamage; a result that arrives after stop() is ignored, so a
 * shutdown never looks like damage.
 *
 * The audit runs in a process of its own (audit-process.ts) at the lowest CPU priority,
 * not on the server's event loop or a thread of it. Priority is what it needs: a store
 * that sells gets the CPU first, and an idle one finishes the audit at full speed; a
 * slice-and-yield loop in the server instead took the same CPU from every sale for as
 * long as it ran. A process, not a worker thread: Linux sets priorities per thread, but
 * a worker shares the server's heap limit, its garbage collector's pauses and its
 * address space, so the audit's replayed state (a second copy of the store) would still
 * count against the server's memory; a process keeps its heap, its pauses and its RSS to
 * itself, and its exit gives everything back at once. It is not detached: a new session
 * would get a scheduling group of its own (Linux autogroups), where nice 19 counts for
 * nothing against the server. It ends when its stdin closes, so it never outlives the
 * server, and is killed by stop().
 *
 * A journal of at most `inProcessMax` events (AUDIT_IN_PROCESS_MAX) is audited in the
 * server's own process instead: its replay takes milliseconds, less than starting a
 * process would, and neither priority nor memory is at stake. A new store, or one just
 * restored from a small backup, starts without a second process.
 */
export class IntegrityAudit {
  readonly status: IntegrityStatus;
  private stopped = false;
  private child: ChildProcess | null = null;
  private running: Promise<void> | null = null;

  constructor(
    opened: OpenedLedger,
    private readonly opts: {
      vendorId: string;
      ledgerDir: string;
      onOk: (r: AuditResult, ms: number) => void;
      onDamage: (detail: string) => void;
      /** The audit process's nice value: LOWEST_PRIORITY unless a test needs the verdict while the machine is saturated. */
      nice?: number;
      /** Journals of at most this many events are audited in this process (default AUDIT_IN_PROCESS_MAX; 0: always a process of its own). */
      inProcessMax?: number;
    },
  ) {
    this.status = { state: 'checking', detail: null, throughSeq: opened.journal.durableSeq };
  }

  start(): void {
    const started = performance.now();
    const audited: AuditJob = { dataDir: this.opts.ledgerDir, vendorId: this.opts.vendorId, toSeq: this.status.throughSeq };
    if (audited.toSeq <= (this.opts.inProcessMax ?? AUDIT_IN_PROCESS_MAX)) {
      // The same audit as the process runs (audit-process.ts), awaited here.
      this.running = auditReport(audited).then((report) => this.report(report, started));
      return;
    }
    const nice = this.opts.nice ?? LOWEST_PRIORITY;
    const job: AuditJob = nice === LOWEST_PRIORITY ? audited : { ...audited, nice };
    const command = auditCommand(job);
    const child = spawn(command.file, command.args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    try {
      if (child.pid !== undefined) setPriority(child.pid, nice);
    } catch {
      // It already ended: its exit says how.
    }
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-STDERR_KEPT)));
    // The pipe breaks when the process ends first; its exit is what counts.
    child.stdin.on('error', () => undefined);
    this.running = new Promise<void>((resolve) => {
      let ended = false;
      const end = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error) => {
        if (ended) return;
        ended = true;
        this.child = null;
        resolve();
        this.report(
          parseReport(out) ?? {
            ok: false,
            detail: `the integrity audit could not finish: ${spawnError?.message ?? `its process ended (${signal ?? `exit code ${String(code)}`}) without a result`}${err.trim() === '' ? '' : `: ${err.trim()}`}`,
          },
          started,
        );
      };
      child.on('error', (e) => end(null, null, e));
      child.on('close', (code, signal) => end(code, signal));
    });
  }

  /** Takes the audit's verdict, unless the server stopped meanwhile (a shutdown is not damage). */
  private report(report: AuditReport, started: number): void {
    if (this.stopped) return;
    if (report.ok) {
      this.status.state = 'ok';
      this.opts.onOk(report.result, performance.now() - started);
      return;
    }
    this.status.state = 'damaged';
    this.status.detail = report.detail;
    this.opts.onDamage(this.status.detail);
  }

  /** Resolves when the audit finished (tests). */
  async done(): Promise<void> {
    await this.running;
  }

  /** The audit process's pid while it runs (tests). */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  stop(): void {
    this.stopped = true;
    this.child?.kill('SIGKILL');
  }
}

function parseReport(out: string): AuditReport | null {
  const line = out.trim();
  if (line === '') return null;
  try {
    const r = JSON.parse(line) as AuditReport;
    return typeof r === 'object' && r !== null && typeof r.ok === 'boolean' ? r : null;
  } catch {
    return null;
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
  const opened = await openLedger({ dataDir: opts.dataDir, vendorId: opts.vendorId, readOnly: true, printCheckpoint: true, ...(opts.keysMax === undefined ? {} : { keysMax: opts.keysMax }) });
  try {
    const r = await auditLedger(opened.journal, {
      vendorId: opts.vendorId,
      checkpoint: opened.checkpointPrint,
      checkpointFile: ledgerPaths(opts.dataDir).checkpointFile,
      live: opened.state,
      toSeq: opened.journal.lastSeq,
    });
    return { ok: true, events: r.events, lastSeq: r.lastSeq, lastHash: r.lastHash, checkpointSeq: r.checkpointSeq, tornTail: opened.report.torn };
  } finally {
    await opened.journal.close();
  }
}

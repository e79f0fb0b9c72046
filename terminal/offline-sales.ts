import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { MallposError, type OfflineLimits, type OfflineSaleAck, type OfflineSaleRecord } from '../core/index.ts';
import { DurableJSONFile } from '../platform/storage/index.ts';

/** One offline sale as the till keeps it until it is forwarded and its receipt handed to the printer. */
export interface OfflineSaleEntry {
  record: OfflineSaleRecord;
  /** The receipt is in the (durable) print queue. */
  printed: boolean;
  /** The store's acknowledgement, once it journalled the sale. */
  forwarded: OfflineSaleAck | null;
}

interface OfflineState {
  version: 1;
  terminalId: string;
  /** The counter of the next offline sale: only ever rises, so a number is never reused. */
  nextCounter: number;
  /** When the till last reached the store server: the outage clock starts here and survives restarts. */
  lastContactAt: string | null;
  lastForwardedAt: string | null;
  /** Sales not yet both forwarded and printed, in counter order. */
  sales: OfflineSaleEntry[];
}

export type OfflineSaleDraft = Omit<OfflineSaleRecord, 'key' | 'offlineId' | 'counter' | 'at'>;

export interface OfflineSummary {
  waiting: number;
  waitingTotalMinor: number;
  oldestAt: string | null;
  lastForwardedAt: string | null;
  lastContactAt: string | null;
}

/**
 * The till's offline sales: one durable file (temp file, fsync, rename, fsync of the
 * directory) that holds the counter and every sale not yet forwarded, so a sale and the
 * counter increment that numbers it are written in one atomic step, before its receipt
 * prints. A crash at any instant leaves either the sale recorded with its number taken,
 * or neither. Forwarded sales whose receipts are in the print queue leave the file; the
 * counter never goes back.
 */
export class OfflineSales {
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly file: DurableJSONFile<OfflineState>,
    private state: OfflineState,
  ) {}

  static async open(dataDir: string, terminalId: string): Promise<OfflineSales> {
    const file = new DurableJSONFile<OfflineState>(join(dataDir, 'offline-sales.json'));
    let state: OfflineState | null;
    try {
      state = await file.read();
    } catch (err) {
      throw new MallposError('POS_ERR_CONFIG', `the till's offline sales cannot be read: ${(err as Error).message}`);
    }
    if (state === null) return new OfflineSales(file, { version: 1, terminalId, nextCounter: 1, lastContactAt: null, lastForwardedAt: null, sales: [] });
    checkState(state, terminalId, file.path);
    return new OfflineSales(file, state);
  }

  /** Changes are applied one at a time, each durable before the next starts. */
  private mutate<T>(fn: (s: OfflineState) => { next: OfflineState; result: T }): Promise<T> {
    const run = this.chain.then(async () => {
      const { next, result } = fn(this.state);
      await this.file.write(next);
      this.state = next;
      return result;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Resolves once every change asked for so far is on disk (or has failed). */
  async settled(): Promise<void> {
    await this.chain;
  }

  entries(): readonly OfflineSaleEntry[] {
    return this.state.sales;
  }

  /** Sales still to forward, in counter order. */
  waiting(): OfflineSaleEntry[] {
    return this.state.sales.filter((e) => e.forwarded === null);
  }

  summary(): OfflineSummary {
    const waiting = this.waiting();
    return {
      waiting: waiting.length,
      waitingTotalMinor: waiting.reduce((sum, e) => sum + e.record.totalMinor, 0),
      oldestAt: waiting[0]?.record.at ?? null,
      lastForwardedAt: this.state.lastForwardedAt,
      lastContactAt: this.state.lastContactAt,
    };
  }

  get nextCounter(): number {
    return this.state.nextCounter;
  }

  /**
   * Why one more sale of `totalMinor` may not be recorded offline now, or null when it
   * may: too many sales waiting, too much value waiting, or an outage longer than allowed
   * (counted from the last contact with the store, which survives restarts).
   */
  refusal(limits: OfflineLimits, totalMinor: number, nowMs = Date.now()): string | null {
    const s = this.summary();
    if (s.lastContactAt === null) return 'the till has never reached the store server, so it has no outage allowance: the till stops';
    const outageS = Math.floor((nowMs - Date.parse(s.lastContactAt)) / 1000);
    if (outageS > limits.maxOutageS) return `the store server has been unreachable for ${outageS} s, longer than the ${limits.maxOutageS} s this till may sell offline: the till stops until it is back`;
    if (s.waiting + 1 > limits.maxSales) return `${s.waiting} offline sales are waiting, the most this till may hold is ${limits.maxSales}: the till stops until the store server is back`;
    if (s.waitingTotalMinor + totalMinor > limits.maxTotalMinor) return `this sale would take the offline sales waiting over the most this till may hold (${limits.maxTotalMinor} minor units): the till stops until the store server is back`;
    return null;
  }

  /**
   * Records one sale: checks the limits, takes the next counter and writes both in one
   * durable step. Resolves once the sale is on disk; only then may its receipt print.
   */
  record(draft: OfflineSaleDraft, limits: OfflineLimits, nowMs = Date.now()): Promise<OfflineSaleEntry> {
    return this.mutate((s) => {
      const why = this.refusal(limits, draft.totalMinor, nowMs);
      if (why !== null) throw new MallposError('POS_ERR_OFFLINE', why);
      const counter = s.nextCounter;
      const record: OfflineSaleRecord = {
        ...draft,
        key: `${s.terminalId}:${randomUUID()}`,
        offlineId: `${s.terminalId}-${counter}`,
        counter,
        at: new Date(nowMs).toISOString(),
      };
      const entry: OfflineSaleEntry = { record, printed: false, forwarded: null };
      return { next: { ...s, nextCounter: counter + 1, sales: [...s.sales, entry] }, result: entry };
    });
  }

  /** The receipt of `offlineId` is in the print queue. */
  markPrinted(offlineId: string): Promise<void> {
    return this.mutate((s) => ({ next: prune({ ...s, sales: s.sales.map((e) => (e.record.offlineId === offlineId ? { ...e, printed: true } : e)) }), result: undefined }));
  }

  /** The store journalled `offlineId`; its acknowledgement is kept until the entry leaves. */
  markForwarded(ack: OfflineSaleAck, nowMs = Date.now()): Promise<void> {
    return this.mutate((s) => {
      if (!s.sales.some((e) => e.record.offlineId === ack.offlineId)) throw new MallposError('POS_ERR_COMMAND', `the store acknowledged ${ack.offlineId}, which this till is not forwarding`);
      const sales = s.sales.map((e) => (e.record.offlineId === ack.offlineId ? { ...e, forwarded: ack } : e));
      return { next: prune({ ...s, sales, lastForwardedAt: new Date(nowMs).toISOString() }), result: undefined };
    });
  }

  /** The till reached the store server now: the outage clock starts again from here. */
  contact(nowMs = Date.now()): Promise<void> {
    return this.mutate((s) => ({ next: { ...s, lastContactAt: new Date(nowMs).toISOString() }, result: undefined }));
  }
}

/** Sales both forwarded and handed to the printer need not be kept. */
function prune(s: OfflineState): OfflineState {
  return { ...s, sales: s.sales.filter((e) => !(e.printed && e.forwarded !== null)) };
}

/** A state file read back must be the one this till wrote: its own id, counters below the next one, in order. */
function checkState(s: OfflineState, terminalId: string, path: string): void {
  const bad = (why: string): never => {
    throw new MallposError('POS_ERR_CONFIG', `the till's offline sales file ${path} is not valid (${why}): keep it for the store and ask for help`);
  };
  if (s.version !== 1 || !Array.isArray(s.sales) || !Number.isSafeInteger(s.nextCounter) || s.nextCounter < 1) bad('unknown layout');
  if (s.terminalId !== terminalId) bad(`it belongs to terminal ${s.terminalId}`);
  let previous = 0;
  for (const e of s.sales) {
    if (!(e.record.counter > previous && e.record.counter < s.nextCounter)) bad(`sale ${e.record.offlineId} is out of order`);
    if (e.record.offlineId !== `${terminalId}-${e.record.counter}`) bad(`sale ${e.record.offlineId} has a wrong number`);
    previous = e.record.counter;
  }
}

import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { PrintResult, PrinterState, ReceiptPrinter } from './printer.ts';
import { type Receipt, checkReceipt, receiptSchema } from './receipt.ts';

export interface PrintQueueOptions {
  printer: ReceiptPrinter;
  /** JSON file holding the waiting receipts and the last receipt; written durably. */
  file: string;
  /** Receipts that may wait at once; 200 by default. */
  receiptsMax?: number;
  /** First wait before polling a printer that failed; doubles up to `retryMaxMs`. 500 ms by default. */
  retryMinMs?: number;
  /** Longest wait between polls of a printer that is not ready; 15000 ms by default. */
  retryMaxMs?: number;
  /** How often an idle queue refreshes the printer state for the cashier's screen; 0 turns it off. 5000 ms by default. */
  idlePollMs?: number;
}

export interface PrintQueueStatus {
  printer: PrinterState;
  waiting: number;
  lastError?: string;
}

/** A queue file that cannot be read back as written; start-up should stop and say so. */
export class PrintQueueFileError extends Error {
  readonly code = 'PRINT_QUEUE_FILE_INVALID';
  constructor(
    readonly file: string,
    detail: string,
  ) {
    super(`print queue file ${file} is not valid: ${detail}`);
    this.name = 'PrintQueueFileError';
  }
}

interface Entry {
  id: string;
  queuedAt: string;
  receipt: Receipt;
}

const fileSchema = z
  .object({
    version: z.literal(1),
    waiting: z.array(z.object({ id: z.string().min(1).max(64), queuedAt: z.string().max(40), receipt: receiptSchema }).strict()).max(10_000),
    last: receiptSchema.optional(),
  })
  .strict();

type QueueFile = z.infer<typeof fileSchema>;

const savedNote = 'The receipt is saved and will print by itself when the printer is ready.';

/**
 * Receipts on their way to one printer. The rule it keeps is invariant 7: the
 * printer never undoes a sale, and a receipt that did not print is never lost.
 *
 * - `enqueue` saves the receipt durably (temp file, fsync, rename, fsync of the
 *   directory) before the first attempt, then resolves with that attempt's
 *   result. Receipts print in the order they were enqueued: a new receipt
 *   waits behind older ones, and its first attempt is the pass that reaches it
 *   or the failure that stopped that pass.
 * - A receipt that failed with `canRetry` waits; the queue polls the printer's
 *   status with exponential backoff and prints the waiting receipts, in order, as
 *   soon as the printer says it is ready. A receipt the printer can never print
 *   (`canRetry: false`) is dropped so it cannot block the ones behind it.
 * - At most `receiptsMax` receipts wait; beyond that `enqueue` refuses the new
 *   receipt with `canRetry: false` rather than grow without bound.
 * - `reprintLast` prints the last receipt again, marked as a reprint, through the
 *   same queue, so it works (waits) when the printer is down.
 * - A queue opened on the file of a stopped queue picks up its waiting receipts.
 * - `close` stops polling, waits for the attempt in progress and the last write.
 *   It does not close the printer, which the queue does not own.
 */
export class PrintQueue {
  private readonly receiptsMax: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  private readonly idlePollMs: number;
  private readonly waiters = new Map<string, (r: PrintResult) => void>();
  private readonly listeners = new Set<(s: PrintQueueStatus) => void>();
  private printerState: PrinterState;
  private lastError: string | undefined;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private passAgain = false;
  private poll: Promise<void> | undefined;
  private writes: Promise<void> = Promise.resolve();
  private staged: Entry[] = [];
  private tmpSeq = 0;
  private closed = false;
  private lastEmitted = '';

  private constructor(
    private readonly options: PrintQueueOptions,
    private waiting: Entry[],
    private last: Receipt | undefined,
    initialState: PrinterState,
  ) {
    this.receiptsMax = options.receiptsMax ?? 200;
    this.retryMinMs = options.retryMinMs ?? 500;
    this.retryMaxMs = options.retryMaxMs ?? 15_000;
    this.idlePollMs = options.idlePollMs ?? 5000;
    this.printerState = initialState;
  }

  /**
   * Reads the queue file (a missing file is an empty queue), asks the printer for
   * its state once (bounded by the printer's own timeout) and starts printing
   * whatever was left waiting. Throws PrintQueueFileError when the file exists but
   * cannot be trusted: receipts in it must not be dropped silently.
   */
  static async open(options: PrintQueueOptions): Promise<PrintQueue> {
    for (const [name, v] of Object.entries({ receiptsMax: options.receiptsMax, retryMinMs: options.retryMinMs, retryMaxMs: options.retryMaxMs, idlePollMs: options.idlePollMs })) {
      if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) throw new RangeError(`${name} must be a non-negative integer`);
    }
    await fsp.mkdir(path.dirname(options.file), { recursive: true });
    const saved = await readQueueFile(options.file);
    const state = await options.printer.status();
    const q = new PrintQueue(options, saved.waiting, saved.last, state);
    q.schedule();
    return q;
  }

  status(): PrintQueueStatus {
    const s: PrintQueueStatus = { printer: this.printerState, waiting: this.waiting.length + this.staged.length };
    if (this.lastError !== undefined) s.lastError = this.lastError;
    return s;
  }

  /** Calls `cb` with the new status whenever the printer state, the count waiting or the last error changes. */
  onChange(cb: (s: PrintQueueStatus) => void): () => void {
    this.listeners.add(cb);
    return () => {
      this.listeners.delete(cb);
    };
  }

  enqueue(r: Receipt): Promise<PrintResult> {
    return this.add(r, true);
  }

  /**
   * Whether a receipt with this id is waiting or was the last one enqueued: a caller that
   * stopped between enqueuing and noting it did so asks before enqueuing again.
   */
  holds(saleId: string): boolean {
    return this.last?.saleId === saleId || this.waiting.some((e) => e.receipt.saleId === saleId) || this.staged.some((e) => e.receipt.saleId === saleId);
  }

  /** Prints the last enqueued receipt again with kind `reprint`. */
  reprintLast(): Promise<PrintResult> {
    if (!this.last) {
      return Promise.resolve({ ok: false, canRetry: false, state: this.printerState, message: 'There is no receipt to reprint yet.' });
    }
    return this.add({ ...structuredClone(this.last), kind: 'reprint' }, false);
  }

  /** Tries the waiting receipts now instead of at the next poll (a cashier pressed "retry"). */
  retryNow(): void {
    if (this.closed) return;
    this.clearTimer();
    if (this.waiting.length > 0) this.startPass();
    else this.startPoll();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.clearTimer();
    await this.pass;
    await this.poll;
    await this.writes;
    const stopped = this.savedForRestart();
    for (const resolve of this.waiters.values()) resolve(stopped);
    this.waiters.clear();
    this.listeners.clear();
  }

  private async add(r: Receipt, remember: boolean): Promise<PrintResult> {
    if (this.closed) return this.stoppedResult();
    const check = checkReceipt(r);
    if (!check.ok) {
      return { ok: false, canRetry: false, state: this.printerState, message: `This receipt cannot be printed (${check.problem}). The sale is kept.` };
    }
    const receipt = structuredClone(check.receipt);
    if (remember) this.last = receipt;
    if (this.waiting.length + this.staged.length >= this.receiptsMax) {
      await this.save();
      return {
        ok: false,
        canRetry: false,
        state: this.printerState,
        message: `${this.receiptsMax} receipts are already waiting for the printer, so this one was not queued. Fix the printer, then reprint it.`,
      };
    }
    // Staged entries are in every snapshot written from now on but cannot print until their own write is durable.
    const entry: Entry = { id: randomUUID(), queuedAt: new Date().toISOString(), receipt };
    this.staged.push(entry);
    await this.save();
    this.staged = this.staged.filter((e) => e !== entry);
    this.waiting.push(entry);
    if (this.closed) return this.savedForRestart();
    const result = new Promise<PrintResult>((resolve) => this.waiters.set(entry.id, resolve));
    this.emit();
    this.clearTimer();
    this.startPass();
    return result;
  }

  private savedForRestart(): PrintResult {
    return {
      ok: false,
      canRetry: true,
      state: this.printerState,
      message: 'Printing has stopped. The receipt is saved and will print when the terminal starts again.',
    };
  }

  private stoppedResult(): PrintResult {
    return { ok: false, canRetry: false, state: this.printerState, message: 'Printing has stopped on this terminal. Restart it to print.' };
  }

  private startPass(): void {
    if (this.closed) return;
    if (this.pass) {
      this.passAgain = true;
      return;
    }
    this.pass = (async () => {
      let drained = true;
      do {
        this.passAgain = false;
        drained = await this.printWaiting();
      } while (drained && this.passAgain && this.waiting.length > 0 && !this.closed);
    })().finally(() => {
      this.pass = undefined;
      this.schedule();
    });
  }

  /** Prints waiting receipts in order; false when the printer stopped the pass. */
  private async printWaiting(): Promise<boolean> {
    while (this.waiting.length > 0 && !this.closed) {
      const head = this.waiting[0] as Entry;
      const result = await this.options.printer.print(head.receipt);
      if (result.ok) {
        this.failures = 0;
        this.printerState = 'ready';
        this.lastError = undefined;
        await this.remove(head, result);
        continue;
      }
      this.printerState = result.state;
      this.lastError = result.message;
      if (!result.canRetry) {
        await this.remove(head, result);
        continue;
      }
      this.failures++;
      const queued: PrintResult = { ...result, message: `${result.message} ${savedNote}` };
      for (const resolve of this.waiters.values()) resolve(queued);
      this.waiters.clear();
      this.emit();
      return false;
    }
    return true;
  }

  private async remove(entry: Entry, result: PrintResult): Promise<void> {
    this.waiting = this.waiting.filter((e) => e.id !== entry.id);
    this.emit();
    await this.save();
    this.waiters.get(entry.id)?.(result);
    this.waiters.delete(entry.id);
  }

  /** Arms the next timer: backoff polling while receipts wait, the idle refresh otherwise. */
  private schedule(): void {
    if (this.closed || this.pass || this.poll) return;
    this.clearTimer();
    if (this.waiting.length > 0) {
      if (this.failures === 0) {
        this.startPass();
        return;
      }
      const delay = Math.min(this.retryMaxMs, this.retryMinMs * 2 ** Math.min(this.failures - 1, 20));
      this.timer = setTimeout(() => this.startPoll(), delay);
    } else if (this.idlePollMs > 0) {
      this.timer = setTimeout(() => this.startPoll(), this.idlePollMs);
    }
  }

  private startPoll(): void {
    this.timer = undefined;
    if (this.closed || this.pass || this.poll) return;
    this.poll = (async () => {
      const state = await this.options.printer.status();
      this.printerState = state;
      this.emit();
      if (this.waiting.length > 0) {
        if (state === 'ready') this.failures = 0;
        else this.failures++;
      }
    })()
      .catch(() => undefined)
      .finally(() => {
        this.poll = undefined;
        this.schedule();
      });
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private emit(): void {
    const s = this.status();
    const key = JSON.stringify(s);
    if (key === this.lastEmitted) return;
    this.lastEmitted = key;
    for (const cb of [...this.listeners]) {
      try {
        cb(s);
      } catch {
        // A screen's failing listener must not stop receipts from printing.
      }
    }
  }

  /**
   * Writes the queue as it is when the write starts (not when it was asked for),
   * chained after earlier writes, so the file always ends with the newest state.
   */
  private save(): Promise<void> {
    this.writes = this.writes.then(() => {
      const data: QueueFile = { version: 1, waiting: [...this.waiting, ...this.staged] };
      if (this.last) data.last = this.last;
      const tmp = `${this.options.file}.${process.pid}.${this.tmpSeq++}.tmp`;
      return writeDurably(this.options.file, tmp, `${JSON.stringify(data)}\n`).catch((err: unknown) => {
        this.lastError = `The print queue could not be saved (${err instanceof Error ? err.message : String(err)}).`;
        this.emit();
      });
    });
    return this.writes;
  }
}

async function readQueueFile(file: string): Promise<{ waiting: Entry[]; last: Receipt | undefined }> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { waiting: [], last: undefined };
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new PrintQueueFileError(file, err instanceof Error ? err.message : String(err));
  }
  const parsed = fileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new PrintQueueFileError(file, `${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim());
  }
  return { waiting: parsed.data.waiting, last: parsed.data.last };
}

/** Replaces `file` with `text` so that a crash leaves either the old or the new content, never a mix. */
async function writeDurably(file: string, tmp: string, text: string): Promise<void> {
  const fh = await fsp.open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
  const dir = await fsp.open(path.dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

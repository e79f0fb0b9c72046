import type { Receipt } from './receipt.ts';

/**
 * What the printer can do right now.
 * - `ready`: it answers and can print.
 * - `paper-out`: the roll has run out; loading paper makes it ready again.
 * - `cover-open`: the cover is open; closing it makes it ready again.
 * - `offline`: it answers but will not print for another reason (an error such
 *   as a cutter jam, the feed button held); it may need a person to look at it.
 * - `unreachable`: nothing answers: the connection was refused, timed out, or the
 *   device path is missing.
 */
export type PrinterState = 'ready' | 'paper-out' | 'cover-open' | 'offline' | 'unreachable';

/**
 * The outcome of one print attempt. A failure is a value, never an exception,
 * because a committed sale stays committed whatever the printer does: the caller
 * keeps the receipt and tries again (`canRetry`) or tells the cashier (`message`,
 * a plain sentence that names what to do).
 */
export type PrintResult =
  | { ok: true }
  | { ok: false; canRetry: boolean; state: PrinterState; message: string };

/**
 * A receipt printer behind the narrowest interface the terminal needs.
 *
 * Rules every implementation keeps:
 * - `print` resolves `{ ok: true }` only when the printer reported itself ready
 *   after the job was handed over, where the hardware can report it at all; a job
 *   the printer refuses or loses resolves `{ ok: false }` with the state it saw.
 * - `print` and `status` never reject and never hang: every wait is bounded by a
 *   timeout, after which the printer counts as `unreachable`.
 * - Calls are serialised: a second `print` waits for the first to finish, so two
 *   receipts never interleave on paper.
 * - `close` waits for the job in progress; afterwards `print` fails with
 *   `canRetry: false` and `status` reports `unreachable`.
 */
export interface ReceiptPrinter {
  print(r: Receipt): Promise<PrintResult>;
  status(): Promise<PrinterState>;
  close(): Promise<void>;
}

const cashierMessages: Record<Exclude<PrinterState, 'ready'>, string> = {
  'paper-out': 'The printer is out of paper. Load a new roll.',
  'cover-open': 'The printer cover is open. Close it.',
  offline: 'The printer is offline. Check its lights and clear any paper jam.',
  unreachable: 'The printer cannot be reached. Check that it is switched on and its cable is plugged in.',
};

/** The plain sentence a cashier sees for a printer that is not ready. */
export function printerMessage(state: Exclude<PrinterState, 'ready'>): string {
  return cashierMessages[state];
}

/** A failed, retryable print in the state the printer reported. */
export function printFailure(state: Exclude<PrinterState, 'ready'>, message = printerMessage(state)): PrintResult {
  return { ok: false, canRetry: true, state, message };
}

/**
 * The cash drawer as the printer reports it: the level of pin 3 of its drawer kick-out
 * connector, which the drawer's switch drives. `unknown` where the link cannot say
 * (Star line mode, a device path) or the printer does not answer.
 */
export type DrawerState = 'open' | 'closed' | 'unknown';

/** Which connector pin the drawer's solenoid is on, and the pulse that opens it. */
export interface DrawerPulse {
  pin: 2 | 5;
  onMs: number;
  offMs: number;
}

/** The pulse most drawers open with: pin 2, 100 ms on, 200 ms off. */
export const DRAWER_PULSE_DEFAULT: DrawerPulse = { pin: 2, onMs: 100, offMs: 200 };

/** Checks a pulse against what ESC p can say (2 to 510 ms in steps of 2) and Star's ESC BEL (10 ms steps). */
export function checkDrawerPulse(p: DrawerPulse): DrawerPulse {
  if (p.pin !== 2 && p.pin !== 5) throw new RangeError(`the drawer pin is 2 or 5, got ${String(p.pin)}`);
  for (const [name, ms] of [['onMs', p.onMs], ['offMs', p.offMs]] as const) {
    if (!Number.isInteger(ms) || ms < 2 || ms > 510) throw new RangeError(`drawer pulse ${name} must be an integer from 2 to 510 ms, got ${String(ms)}`);
  }
  return { pin: p.pin, onMs: p.onMs, offMs: p.offMs };
}

/**
 * The outcome of one drawer kick. Like a print, a failure is a value: the cashier opens
 * the drawer with its key and the sale stays committed.
 */
export type KickResult = { ok: true } | { ok: false; message: string };

/**
 * A cash drawer on a receipt printer's kick-out connector.
 *
 * - `kickDrawer` sends the pulse at once; it is never queued or retried, because a
 *   drawer that springs open minutes later, when nobody is at the till, is worse than
 *   one the cashier opens with the key. It never rejects and never hangs.
 * - `drawerState` asks the printer where it can report it, bounded by a timeout.
 */
export interface CashDrawer {
  kickDrawer(): Promise<KickResult>;
  drawerState(): Promise<DrawerState>;
}

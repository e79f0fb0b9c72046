import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import { z } from 'zod';
import { assert } from './errors.ts';
import type { StateEvent } from './events.ts';
import { add, checkAmount, mul } from './money.ts';
import type { CashCount, PeriodTotals, ZReport } from './protocol.ts';
import { amount, entityId, idempotencyKey, scanCode, staffCredential, text } from './schemas.ts';

/**
 * The cashier's day, as pure rules: cash counts, the expected cash of a shift, period
 * totals summed from journal events, business days, and the canonical body of a closure
 * (Z, month, year) that is hashed, chained and signed. Cash is fiat in the drawer, not
 * ledger tokens: these events carry no postings.
 */

/** Limits of a count: how many denominations, how many of one. */
export const DENOMINATIONS_MAX = 32;
export const DENOMINATION_COUNT_MAX = 1_000_000;
export const REASON_CHARS_MAX = 200;

const countByTotal = z.strictObject({ totalMinor: amount('counted total') });
const countByDenominations = z.strictObject({
  denominations: z
    .array(
      z.strictObject({
        valueMinor: amount('denomination').refine((n) => n >= 1, 'a denomination is worth at least 1'),
        count: amount('count').refine((n) => n <= DENOMINATION_COUNT_MAX, `at most ${DENOMINATION_COUNT_MAX} of one denomination`),
      }),
    )
    .min(1)
    .max(DENOMINATIONS_MAX),
});

/**
 * A count: a total, or a list of denominations. The form is chosen by its field, so a
 * bad amount keeps its own error code (a plain union would report only that no form fit).
 */
export const cashCount = z.unknown().transform((v, ctx): CashCount => {
  const schema = typeof v === 'object' && v !== null && Object.hasOwn(v, 'denominations') ? countByDenominations : countByTotal;
  const r = schema.safeParse(v);
  if (r.success) return r.data;
  for (const issue of r.error.issues) {
    ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path, params: (issue as { params?: Record<string, unknown> }).params ?? {} });
  }
  return z.NEVER;
});

const reason = text(1, REASON_CHARS_MAX);

export const shiftCurrentRequest = z.strictObject({});
export const shiftOpenRequest = z.strictObject({ key: idempotencyKey, count: cashCount });
export const shiftCashMoveRequest = z.strictObject({
  key: idempotencyKey,
  kind: z.enum(['paid-in', 'paid-out']),
  amountMinor: amount('amount').refine((n) => n >= 1, 'an amount of cash moved is at least 1'),
  reason,
});
export const shiftCloseRequest = z.strictObject({ key: idempotencyKey, count: cashCount });
export const noSaleRequest = z.strictObject({ key: idempotencyKey, reason, supervisor: staffCredential });
export const xReportRequest = z.strictObject({ scope: z.enum(['shift', 'day']) });
export const zReportRequest = z.strictObject({ key: idempotencyKey, supervisor: staffCredential });
export const reprintRequest = z.strictObject({ saleId: scanCode });
/** The operator's Z: a till's id where the store closes its days per till. */
export const zCloseRequest = z.strictObject({ terminalId: entityId.optional() });
/** The operator's force-close of a shift left open: a supervisor approves it. */
export const shiftForceCloseRequest = z.strictObject({ supervisor: staffCredential, reason, count: cashCount.optional() });

/** What a count adds up to; a list of denominations is summed here, never by the client (CORE_ERR_OVERFLOW past the safe range). */
export function countTotal(count: CashCount): number {
  if ('totalMinor' in count) return checkAmount(count.totalMinor, 'counted total');
  let total = 0;
  for (const d of count.denominations) total = add(total, mul(d.valueMinor, d.count));
  return total;
}

/** The cash a drawer should hold: float + cash taken - change - cash refunds + paid in - paid out. */
export function expectedCash(s: {
  openingFloatMinor: number;
  cashSalesMinor: number;
  changeGivenMinor: number;
  cashRefundsMinor: number;
  paidInMinor: number;
  paidOutMinor: number;
}): number {
  return s.openingFloatMinor + s.cashSalesMinor - s.changeGivenMinor - s.cashRefundsMinor + s.paidInMinor - s.paidOutMinor;
}

// ---- journal event data ------------------------------------------------------------

export interface ShiftOpenedData {
  shiftId: string;
  cashierName: string;
  count: CashCount;
  openingFloatMinor: number;
}

export interface CashMovedData {
  shiftId: string;
  kind: 'paid-in' | 'paid-out';
  amountMinor: number;
  reason: string;
}

export interface ShiftClosedData {
  shiftId: string;
  /** Null when a supervisor force-closed the shift without a count. */
  count: CashCount | null;
  countedMinor: number | null;
  expectedMinor: number;
  overShortMinor: number | null;
  /** The supervisor who force-closed a shift left open; null for the cashier's own close. */
  forcedBy: string | null;
  reason: string | null;
}

export interface NoSaleData {
  shiftId: string | null;
  reason: string;
  supervisor: string;
}

export interface ReprintData {
  saleId: string;
  saleSeq: number;
  reprintCount: number;
}

/** A month or year closure: the Z reports of that month or year, chained and signed like a Z. */
export interface PeriodClosureReport {
  kind: 'month' | 'year';
  /** Sequential per kind, from 1. */
  number: number;
  storeName: string;
  vendorId: string;
  /** Null for the store's closures; a till's id where Z reports are made per till. */
  terminalId: string | null;
  /** YYYY-MM for a month, YYYY for a year. */
  period: string;
  closedAt: string;
  /** The Z numbers it covers, and the journal seqs they cover. */
  fromZ: number;
  toZ: number;
  fromSeq: number;
  toSeq: number;
  totals: PeriodTotals;
  grandTotalMinor: number;
  prevHash: string;
  signature: string;
}

export type ClosureReport = ZReport | PeriodClosureReport;
export type ClosureKind = ClosureReport['kind'];

// ---- period totals -----------------------------------------------------------------

/** A null-prototype record: token codes and staff ids are outside data. */
function dict<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

export function emptyTotals(): PeriodTotals {
  return {
    salesCount: 0,
    refundsCount: 0,
    voidsCount: 0,
    noSalesCount: 0,
    grossMinor: 0,
    refundsMinor: 0,
    netMinor: 0,
    byTender: dict(),
    byTokenType: dict(),
    byCashier: dict(),
    paidInMinor: 0,
    paidOutMinor: 0,
    overShortMinor: 0,
  };
}

function bump(r: Record<string, number>, k: string, n: number): void {
  r[k] = add(Object.hasOwn(r, k) ? (r[k] as number) : 0, n);
}

function bumpSigned(r: Record<string, number>, k: string, n: number): void {
  r[k] = (Object.hasOwn(r, k) ? (r[k] as number) : 0) + n;
}

function cashierRow(t: PeriodTotals, cashier: string | null): { salesCount: number; netMinor: number } | null {
  if (cashier === null) return null;
  let row = Object.hasOwn(t.byCashier, cashier) ? t.byCashier[cashier] : undefined;
  if (row === undefined) {
    row = { salesCount: 0, netMinor: 0 };
    t.byCashier[cashier] = row;
  }
  return row;
}

/**
 * Adds one journal event to a period's totals. `periodFromSeq` is the first seq of the
 * period: a refund of a sale made in the same period also counts as a void (the sale
 * was taken back before its day was closed).
 *  - sale: a sale, its total gross and net, the cash it kept (due) and the tokens it
 *    took by tender and by token type, and the cashier's count and net;
 *  - reversal: a refund of the sale's total (net less), tokens returned (by token type),
 *    the cashier who made the refund (net less);
 *  - issuance paid in cash (tokens sold at the till): the cash it kept counts in
 *    `byTender.cash` (it is in the drawer), not in the sales totals (tokens are not goods);
 *  - cash.moved, drawer.no-sale, shift.closed: paid in/out, no-sales, over/short.
 * `byTender` counts what sales and cash token sales took (refunds are in `refundsMinor`);
 * `byTokenType` is net of refunds.
 */
export function addToTotals(t: PeriodTotals, e: StateEvent, periodFromSeq: number): void {
  switch (e.type) {
    case 'sale': {
      const d = e.data;
      t.salesCount += 1;
      t.grossMinor = add(t.grossMinor, d.totalMinor);
      t.netMinor += d.totalMinor;
      if (d.cash.dueMinor > 0) bump(t.byTender, 'cash', d.cash.dueMinor);
      // A loop over the keys rather than Object.entries: every sale passes here once per
      // scope it counts in (the store, its till, its shift).
      const debits = d.debits;
      for (const token in debits) {
        const units = debits[token] as number;
        bump(t.byTender, token, units);
        bumpSigned(t.byTokenType, token, units);
      }
      const row = cashierRow(t, e.cashier);
      if (row !== null) {
        row.salesCount += 1;
        row.netMinor += d.totalMinor;
      }
      break;
    }
    case 'reversal': {
      const d = e.data;
      // A refund gives back the sale's total; journals written before the total was
      // recorded on the reversal give back its cash part.
      const refunded = d.saleTotalMinor ?? d.cashRefundMinor;
      t.refundsCount += 1;
      if (d.saleSeq >= periodFromSeq) t.voidsCount += 1;
      t.refundsMinor = add(t.refundsMinor, refunded);
      t.netMinor -= refunded;
      for (const p of e.postings) if (p.account.startsWith('customer:') && p.units > 0) bumpSigned(t.byTokenType, p.token, -p.units);
      const row = cashierRow(t, e.cashier);
      if (row !== null) row.netMinor -= refunded;
      break;
    }
    case 'issuance':
      if (e.data.payment?.method === 'cash' && e.data.cashMinor > 0) bump(t.byTender, 'cash', e.data.cashMinor);
      break;
    case 'cash.moved':
      if (e.data.kind === 'paid-in') t.paidInMinor = add(t.paidInMinor, e.data.amountMinor);
      else t.paidOutMinor = add(t.paidOutMinor, e.data.amountMinor);
      break;
    case 'drawer.no-sale':
      t.noSalesCount += 1;
      break;
    case 'shift.closed':
      if (e.data.overShortMinor !== null) t.overShortMinor += e.data.overShortMinor;
      break;
    default:
      break;
  }
}

/** Adds the totals of a closed period (a Z) into a longer one (its month or year). */
export function mergeTotals(into: PeriodTotals, t: PeriodTotals): void {
  into.salesCount += t.salesCount;
  into.refundsCount += t.refundsCount;
  into.voidsCount += t.voidsCount;
  into.noSalesCount += t.noSalesCount;
  into.grossMinor = add(into.grossMinor, t.grossMinor);
  into.refundsMinor = add(into.refundsMinor, t.refundsMinor);
  into.netMinor += t.netMinor;
  for (const [k, n] of Object.entries(t.byTender)) bump(into.byTender, k, n);
  for (const [k, n] of Object.entries(t.byTokenType)) bumpSigned(into.byTokenType, k, n);
  for (const [k, row] of Object.entries(t.byCashier)) {
    const r = cashierRow(into, k) as { salesCount: number; netMinor: number };
    r.salesCount += row.salesCount;
    r.netMinor += row.netMinor;
  }
  into.paidInMinor = add(into.paidInMinor, t.paidInMinor);
  into.paidOutMinor = add(into.paidOutMinor, t.paidOutMinor);
  into.overShortMinor += t.overShortMinor;
}

/** A copy with maps of its own (null-prototype), so a report handed out never shares the live totals. */
export function copyTotals(t: PeriodTotals): PeriodTotals {
  const out = emptyTotals();
  mergeTotals(out, t);
  return out;
}

/** Rebuilds totals read from JSON with null-prototype maps. */
export function totalsFrom(t: PeriodTotals | undefined): PeriodTotals {
  return t === undefined ? emptyTotals() : copyTotals(t);
}

/** Zero entries carry no information: a token netted to zero reads as absent. */
function normalise(t: PeriodTotals): PeriodTotals {
  const c = copyTotals(t);
  for (const [k, n] of Object.entries(c.byTokenType)) if (n === 0) delete c.byTokenType[k];
  return { ...c, byTender: { ...c.byTender }, byTokenType: { ...c.byTokenType }, byCashier: { ...c.byCashier } };
}

/** The first field where two totals disagree, as a sentence, or null. */
export function totalsDifference(stored: PeriodTotals, computed: PeriodTotals): string | null {
  const a = normalise(stored);
  const b = normalise(computed);
  for (const k of Object.keys(b) as (keyof PeriodTotals)[]) {
    const x = canonicalize(a[k]);
    const y = canonicalize(b[k]);
    if (x !== y) return `${k} says ${String(x)}, the journal gives ${String(y)}`;
  }
  return null;
}

// ---- business days -----------------------------------------------------------------

/** The largest offset a time zone has from UTC, in minutes (UTC+14). */
export const UTC_OFFSET_MINUTES_MAX = 14 * 60;

/** The calendar day of a time at a fixed offset from UTC (minutes east), as YYYY-MM-DD. */
export function calendarDay(at: string, utcOffsetMinutes: number): string {
  const ms = Date.parse(at);
  assert(Number.isFinite(ms), `${at} is a time`);
  return new Date(ms + utcOffsetMinutes * 60_000).toISOString().slice(0, 10);
}

export function nextDay(day: string): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
}

/**
 * The business day an event at `at` belongs to: its calendar day at the store's offset,
 * unless that day was already closed by a Z, in which case the day after the last
 * closed one. So a Z closes its day for good, and what follows it belongs to the next.
 */
export function businessDay(at: string, utcOffsetMinutes: number, lastClosedDay: string | null): string {
  const day = calendarDay(at, utcOffsetMinutes);
  if (lastClosedDay === null || day > lastClosedDay) return day;
  return nextDay(lastClosedDay);
}

// ---- closures: canonical body, hash, signature -----------------------------------

export const CLOSURE_GENESIS_HASH = '0'.repeat(64);
export const CLOSURE_JWS_TYP = 'mallpos-closure+json';

/** The signed body of a closure: everything but its signature, as canonical JSON. */
export function closureBodyText(report: ClosureReport): string {
  const { signature: _signature, ...body } = report;
  const textOut = canonicalize(body);
  assert(textOut !== undefined, 'a closure canonicalizes');
  return textOut;
}

/** The hash that the next closure of the same kind names as its prevHash. */
export function closureHash(report: ClosureReport): string {
  return createHash('sha256').update(closureBodyText(report)).digest('hex');
}

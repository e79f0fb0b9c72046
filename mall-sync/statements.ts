import { add, fail } from '../core/index.ts';
import { vendorAccount, type FlaggedRecord } from './events.ts';
import { openGap, type VendorObservation } from './observations.ts';
import { dict, own } from './store/dict.ts';
import { emptyDay, type AlarmRecord, type DayTotals, type GapDecisionRecord, type MallState } from './store/state.ts';

/**
 * Per-vendor settlement statements for a range of UTC days (by event time): what the
 * vendor's transactions cleared to, and how complete the mall's picture is. The same
 * statement is written by `mall-sync reconcile` (CSV, JSON, signed JSON) and served
 * signed at GET /v1/vendors/:vendor/statements.
 */
export const STATEMENT_DAYS_MAX = 3_660;

export interface StatementCompleteness {
  lastBatchSeq: number;
  lastBatchAt: string | null;
  lastEventSeq: number;
  secondsSinceLastBatch: number | null;
  /** No batch for longer than the mall's `staleAfterHours`. */
  stale: boolean;
  /** Batches were seen ahead of the next expected one: some are missing. */
  gap: { expectedSeq: number; seenSeq: number; seenAt: string | null } | null;
  /** The admin's signed decision on that gap (wait, or resend from a seq), when one covers it. */
  gapDecision: GapDecisionRecord | null;
  rejections: Record<string, number>;
  /** Tamper alarms (forks) for this vendor recorded during the range. */
  alarms: AlarmRecord[];
  /** Events in the range the mall did not clear; `flagged` lists those still kept in memory. */
  flaggedEvents: number;
  flagged: FlaggedRecord[];
}

export interface StatementPayload {
  v: 1;
  vendor: string;
  name: string;
  currency: string;
  from: string;
  to: string;
  issuedAt: string;
  totals: DayTotals;
  days: (DayTotals & { date: string })[];
  /** The vendor's clearing position over all time when issued: positive means the mall owes the vendor. */
  positionMinor: number;
  /**
   * What the figures cover: the registry entries applied and each vendor's last batch
   * ingested when the statement was issued. `mall-sync audit` recomputes the statement
   * from the archive up to exactly this point.
   */
  asOf: { registrySeq: number; batches: Record<string, number> };
  completeness: StatementCompleteness;
}

/** The decision that covers an open gap: made on this gap or one no further ahead. */
export function decidedGap(gap: { expectedSeq: number; seenSeq: number } | null, decision: GapDecisionRecord | null): GapDecisionRecord | null {
  if (gap === null || decision === null) return null;
  return gap.seenSeq <= decision.seenSeq ? decision : null;
}

const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Checks a YYYY-MM-DD day (a real calendar date). */
export function checkDay(value: unknown, name: string): string {
  if (typeof value !== 'string' || !DAY.test(value) || Number.isNaN(Date.parse(`${value}T00:00:00Z`)) || new Date(`${value}T00:00:00Z`).toISOString().slice(0, 10) !== value) {
    fail('MALL_ERR_VALIDATION', `${name} must be a date as YYYY-MM-DD`, { [name]: typeof value === 'string' ? value.slice(0, 20) : null });
  }
  return value;
}

export function checkRange(from: unknown, to: unknown): { from: string; to: string } {
  const f = checkDay(from, 'from');
  const t = checkDay(to, 'to');
  if (f > t) fail('MALL_ERR_VALIDATION', `from (${f}) is after to (${t})`);
  const days = (Date.parse(`${t}T00:00:00Z`) - Date.parse(`${f}T00:00:00Z`)) / 86_400_000 + 1;
  if (days > STATEMENT_DAYS_MAX) fail('MALL_ERR_VALIDATION', `a statement covers at most ${STATEMENT_DAYS_MAX} days`);
  return { from: f, to: t };
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, n] of Object.entries(from)) into[k] = add(own(into, k) ?? 0, n);
}

export function sumDays(a: DayTotals, b: DayTotals): DayTotals {
  const out = structuredClone(a);
  out.tokensRedeemed = dict(out.tokensRedeemed);
  out.tokensReturned = dict(out.tokensReturned);
  out.tokensExchanged = dict(out.tokensExchanged);
  out.tokensIssued = dict(out.tokensIssued);
  out.transactions += b.transactions;
  out.refunds += b.refunds;
  addCounts(out.tokensRedeemed, b.tokensRedeemed);
  addCounts(out.tokensReturned, b.tokensReturned);
  out.grossMinor = add(out.grossMinor, b.grossMinor);
  out.refundedMinor = add(out.refundedMinor, b.refundedMinor);
  out.royaltyMinor = add(out.royaltyMinor, b.royaltyMinor);
  out.tollMinor = add(out.tollMinor, b.tollMinor);
  out.reimbursementReceivableMinor = add(out.reimbursementReceivableMinor, b.reimbursementReceivableMinor);
  out.reimbursementPayableMinor = add(out.reimbursementPayableMinor, b.reimbursementPayableMinor);
  out.allotmentPurchasesMinor = add(out.allotmentPurchasesMinor, b.allotmentPurchasesMinor);
  out.netMinor = add(out.netMinor, b.netMinor);
  out.flaggedEvents += b.flaggedEvents;
  out.exchanges += b.exchanges;
  addCounts(out.tokensExchanged, b.tokensExchanged);
  out.compensationPayableMinor = add(out.compensationPayableMinor, b.compensationPayableMinor);
  out.compensationReceivableMinor = add(out.compensationReceivableMinor, b.compensationReceivableMinor);
  out.serviceChargeMinor = add(out.serviceChargeMinor, b.serviceChargeMinor);
  out.dataTollMinor = add(out.dataTollMinor, b.dataTollMinor);
  addCounts(out.tokensIssued, b.tokensIssued);
  out.issuedCashMinor = add(out.issuedCashMinor, b.issuedCashMinor);
  // Double spends of bearer instruments: present once a vendor has any.
  for (const k of ['instrumentsDoubleSpent', 'doubleSpendChargedMinor', 'doubleSpendRecoveredMinor', 'doubleSpendIssuerLossMinor'] as const) {
    if (a[k] !== undefined || b[k] !== undefined) out[k] = add(a[k] ?? 0, b[k] ?? 0);
  }
  return out;
}

export interface StatementContext {
  state: Readonly<MallState>;
  observation: VendorObservation | null;
  currency: string;
  staleAfterHours: number;
  now: Date;
}

export function buildStatement(ctx: StatementContext, vendorId: string, from: string, to: string): StatementPayload {
  const v = own(ctx.state.vendors, vendorId);
  if (v === undefined) fail('MALL_ERR_VENDOR_UNKNOWN', `no vendor ${vendorId.slice(0, 40)} at this mall`);
  const byDay = own(ctx.state.days, vendorId) ?? {};
  const days = Object.keys(byDay)
    .filter((d) => d >= from && d <= to)
    .sort()
    .map((date) => ({ date, ...structuredClone(byDay[date] as DayTotals) }));
  let totals = emptyDay();
  for (const { date: _date, ...d } of days) totals = sumDays(totals, d);
  const inRange = (at: string) => at.slice(0, 10) >= from && at.slice(0, 10) <= to;
  const seconds = v.lastBatchAt === null ? null : Math.max(0, Math.round((ctx.now.getTime() - Date.parse(v.lastBatchAt)) / 1000));
  const stale = seconds === null ? true : seconds > ctx.staleAfterHours * 3600;
  return {
    v: 1,
    vendor: v.id,
    name: v.name,
    currency: ctx.currency,
    from,
    to,
    issuedAt: ctx.now.toISOString(),
    totals,
    days,
    positionMinor: own(ctx.state.positions, vendorAccount(v.id)) ?? 0,
    asOf: { registrySeq: ctx.state.registrySeq, batches: Object.fromEntries(Object.keys(ctx.state.vendors).sort().map((id) => [id, ctx.state.vendors[id]?.lastSeq ?? 0])) },
    completeness: {
      lastBatchSeq: v.lastSeq,
      lastBatchAt: v.lastBatchAt,
      lastEventSeq: v.lastEventSeq,
      secondsSinceLastBatch: seconds,
      stale,
      gap: openGap(ctx.observation, v.lastSeq + 1),
      gapDecision: decidedGap(openGap(ctx.observation, v.lastSeq + 1), v.gapDecision),
      rejections: { ...(ctx.observation?.rejections ?? {}) },
      alarms: ctx.state.alarms.filter((a) => a.vendor === v.id && inRange(a.at)),
      flaggedEvents: totals.flaggedEvents,
      flagged: v.flagged.filter((f) => inRange(f.at)),
    },
  };
}

function csvField(v: string | number): string {
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function tokenList(r: Record<string, number>): string {
  return Object.entries(r)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([t, n]) => `${t}:${n}`)
    .join(' ');
}

export const STATEMENT_CSV_HEADER = [
  'vendor', 'date', 'currency', 'transactions', 'refunds', 'tokens_redeemed', 'tokens_returned', 'gross_minor', 'refunded_minor',
  'royalty_minor', 'toll_minor', 'reimbursement_receivable_minor', 'reimbursement_payable_minor', 'allotment_purchases_minor',
  'net_minor', 'flagged_events', 'exchanges', 'tokens_exchanged', 'compensation_receivable_minor', 'compensation_payable_minor',
  'service_charge_minor', 'data_toll_minor', 'tokens_issued', 'issued_cash_minor',
  'instruments_double_spent', 'double_spend_charged_minor', 'double_spend_recovered_minor', 'double_spend_issuer_loss_minor',
].join(',');

/** One row per day with activity, then a `total` row. Amounts are minor units; tokens as `CODE:units`. */
export function statementCsv(s: StatementPayload): string {
  const row = (date: string, d: DayTotals) =>
    [
      s.vendor, date, s.currency, d.transactions, d.refunds, tokenList(d.tokensRedeemed), tokenList(d.tokensReturned), d.grossMinor, d.refundedMinor,
      d.royaltyMinor, d.tollMinor, d.reimbursementReceivableMinor, d.reimbursementPayableMinor, d.allotmentPurchasesMinor, d.netMinor, d.flaggedEvents,
      d.exchanges, tokenList(d.tokensExchanged), d.compensationReceivableMinor, d.compensationPayableMinor, d.serviceChargeMinor, d.dataTollMinor,
      tokenList(d.tokensIssued), d.issuedCashMinor,
      d.instrumentsDoubleSpent ?? 0, d.doubleSpendChargedMinor ?? 0, d.doubleSpendRecoveredMinor ?? 0, d.doubleSpendIssuerLossMinor ?? 0,
    ].map(csvField).join(',');
  const lines = [STATEMENT_CSV_HEADER, ...s.days.map((d) => row(d.date, d)), row('total', s.totals)];
  return `${lines.join('\n')}\n`;
}

/**
 * Problems that make a reconciliation incomplete, each with its remedy: open gaps nobody
 * decided on, and tamper alarms. Gaps an admin decided on are `decided`, reported apart.
 */
export function statementProblems(s: StatementPayload): { problems: string[]; decided: string[] } {
  const problems: string[] = [];
  const decided: string[] = [];
  const gap = s.completeness.gap;
  if (gap !== null) {
    const what = `GAP ${s.vendor}: the mall has batches up to ${gap.expectedSeq - 1} but saw batch ${gap.seenSeq}${gap.seenAt === null ? '' : ` at ${gap.seenAt}`}; batch ${gap.expectedSeq} onwards is missing`;
    const d = s.completeness.gapDecision;
    if (d === null) {
      problems.push(
        `${what}. Remedy: have the vendor push (its pusher resends from the mall's cursor); if the missing batches cannot come, record a decision: ` +
          `mall-sync gap-decide --vendor ${s.vendor} --decision wait|resend [--from SEQ]`,
      );
    } else {
      decided.push(`${what}; decided at ${d.at}: ${d.decision === 'wait' ? 'wait for the missing batches' : `the vendor resends from batch ${d.resendFromSeq ?? gap.expectedSeq}`}${d.note === '' ? '' : ` (${d.note})`}`);
    }
  }
  for (const a of s.completeness.alarms) {
    if (a.kind === 'wallet-pin') {
      problems.push(`WALLET PIN ALARM ${s.vendor}: ${a.message} (${a.at}). Remedy: ask the stores named why they sent wrong PINs; once the customer is known to hold the card, unlock it: mall-sync wallet unlock --card ${a.card ?? 'C...'}`);
      continue;
    }
    if (a.kind === 'double-spend') {
      problems.push(
        `DOUBLE SPEND ${s.vendor}: ${a.message} (${a.at}). Remedy: the loss is already assigned by the published policy (the statements show it); ` +
          `ask the stores named how the instrument was presented twice, and withdraw its key if it was copied at large`,
      );
      continue;
    }
    if (a.kind === 'wallet') {
      problems.push(`WALLET ALARM ${s.vendor}: ${a.message} (${a.at}). Remedy: the store took wallet tokens the wallet no longer held; it bears the loss, settle it with the customer`);
      continue;
    }
    problems.push(`FORK ALARM ${s.vendor}: ${a.message} (batch ${a.batchSeq}, ${a.at}). Remedy: find which of the two batches the vendor's journal holds; revoke the key if it was not the vendor's`);
  }
  return { problems, decided };
}

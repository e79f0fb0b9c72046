import { KeyObject, sign } from 'node:crypto';
import {
  businessDay,
  CLOSURE_GENESIS_HASH,
  CLOSURE_JWS_TYP,
  closureBodyText,
  copyTotals,
  countTotal,
  expectedCash,
  fail,
  parseSaleId,
  type CashCount,
  type EventBase,
  type ClosureReport,
  type JournalEvent,
  type NewEvent,
  type PeriodClosureReport,
  type ReceiptData,
  type ShiftView,
  type XReport,
  type ZReport,
} from '../../core/index.ts';
import type { VendorKeys } from '../config.ts';
import type { Actor, LedgerService } from '../ledger/service.ts';
import { emptyScope, openShiftOf, reprintsOf, shiftById, shiftView, terminalScope, type CashierDayState, type PeriodScope, type ShiftRecord, type ZAccumulator } from './state.ts';

export interface CashierDaySettings {
  /** Whether a sale, refund or no-sale needs an open shift on its till. */
  shiftsRequired: boolean;
  /** The store's offset from UTC in minutes: business days are calendar days at this offset. */
  utcOffsetMinutes: number;
  /** Whether each till closes its own day (its own Z chain) instead of the store as a whole. */
  zPerTerminal: boolean;
}

export interface ShiftListEntry extends ShiftView {
  openingCount: CashCount;
  closingCount: CashCount | null;
}

/** The compact JWS (RFC 7515) of a closure's canonical body, signed with the store's Ed25519 key. */
export function signClosure(body: string, key: KeyObject, kid: string): string {
  const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64url');
  const input = `${b64(JSON.stringify({ alg: 'EdDSA', kid, typ: CLOSURE_JWS_TYP }))}.${b64(body)}`;
  // Synchronous: the closure is built, signed and appended with no other event in between.
  return `${input}.${b64(sign(null, Buffer.from(input), key))}`;
}

/**
 * The cashier's day on top of the ledger: shifts, cash moves, no-sales, reprints, X and
 * Z reports and month/year closures. Every event goes through the ledger's journal and
 * idempotency rules (`LedgerService.commitRequest`); the state is `state.cashierDay`.
 */
export class CashierDayService {
  private readonly signingKey: KeyObject;

  constructor(
    readonly ledger: LedgerService,
    private readonly keys: VendorKeys,
    readonly settings: CashierDaySettings,
    private readonly clock: () => Date = () => new Date(),
  ) {
    // The store's batch-signing key, as a key node:crypto signs with synchronously.
    this.signingKey = KeyObject.from(keys.privateKey);
  }

  get cd(): CashierDayState {
    return this.ledger.state.cashierDay;
  }

  // ---- shifts ------------------------------------------------------------------------

  currentShift(terminalId: string): ShiftView | null {
    const s = openShiftOf(this.cd, terminalId);
    return s === undefined ? null : shiftView(s);
  }

  /**
   * Refuses a sale, refund or no-sale outside an open shift of the signed-in cashier when
   * the store requires shifts. Synchronous, so the ledger runs it right before the append.
   */
  requireShift(terminalId: string, staffId: string | null): void {
    if (!this.settings.shiftsRequired) return;
    const s = openShiftOf(this.cd, terminalId);
    if (s === undefined) fail('VND_ERR_SHIFT_REQUIRED');
    if (s.staffId !== staffId) fail('VND_ERR_SHIFT_OTHER_CASHIER', `the open shift on this till belongs to ${s.cashierName}: they close it, or a supervisor force-closes it`, { shiftId: s.shiftId });
  }

  private async shiftOfEvent(seq: number): Promise<ShiftView> {
    const e = await this.ledger.readEvent(seq);
    if (e.type !== 'shift.opened' && e.type !== 'cash.moved' && e.type !== 'shift.closed') {
      return fail('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request');
    }
    const s = shiftById(this.cd, e.data.shiftId);
    if (s === undefined) fail('VND_ERR_SHIFT_UNKNOWN', `shift ${e.data.shiftId} is no longer kept in memory`);
    return shiftView(s);
  }

  async openShift(actor: Actor & { cashier: string }, cashierName: string, key: string, count: CashCount): Promise<ShiftView> {
    return this.ledger.commitRequest(actor, key, { op: 'shift.open', count }, (base) => {
      const terminal = actor.terminal;
      if (terminal === null) return fail('VND_ERR_FORBIDDEN', 'a shift is opened on a till');
      const onTill = openShiftOf(this.cd, terminal);
      if (onTill !== undefined) fail('VND_ERR_SHIFT_OPEN', `shift ${onTill.shiftId} of ${onTill.cashierName} is still open on this till: close it first`, { shiftId: onTill.shiftId });
      const mine = Object.hasOwn(this.cd.openByStaff, actor.cashier) ? this.cd.openByStaff[actor.cashier] : undefined;
      if (mine !== undefined) fail('VND_ERR_SHIFT_OPEN', `${cashierName} already has shift ${mine} open on another till: close it first`, { shiftId: mine });
      return {
        ...base,
        type: 'shift.opened',
        postings: [],
        data: { shiftId: `sh-${base.seq}`, cashierName, count, openingFloatMinor: countTotal(count) },
      };
    }, (seq) => this.shiftOfEvent(seq));
  }

  /** The open shift of this till, which must be the signed-in cashier's (or a supervisor's to close). */
  private ownShift(actor: Actor, supervisor: boolean): ShiftRecord {
    const s = actor.terminal === null ? undefined : openShiftOf(this.cd, actor.terminal);
    if (s === undefined) fail('VND_ERR_SHIFT_NOT_OPEN');
    if (s.staffId !== actor.cashier && !supervisor) fail('VND_ERR_SHIFT_OTHER_CASHIER', `the open shift on this till belongs to ${s.cashierName}`, { shiftId: s.shiftId });
    return s;
  }

  async moveCash(actor: Actor, key: string, input: { kind: 'paid-in' | 'paid-out'; amountMinor: number; reason: string }): Promise<ShiftView> {
    return this.ledger.commitRequest(actor, key, { op: 'shift.cash-move', ...input }, (base) => {
      const s = this.ownShift(actor, false);
      return { ...base, type: 'cash.moved', postings: [], data: { shiftId: s.shiftId, kind: input.kind, amountMinor: input.amountMinor, reason: input.reason } };
    }, (seq) => this.shiftOfEvent(seq));
  }

  /** Closes the till's shift with a blind count; the answer holds expected cash and over/short. */
  async closeShift(actor: Actor, key: string, count: CashCount, supervisor: boolean): Promise<ShiftView> {
    return this.ledger.commitRequest(actor, key, { op: 'shift.close', count }, (base) => {
      const s = this.ownShift(actor, supervisor);
      return this.closeEvent(base, s, count, null, null);
    }, (seq) => this.shiftOfEvent(seq));
  }

  /** A supervisor closes a shift left open (a crashed till), with or without a count. */
  async forceClose(key: string, shiftId: string, supervisorId: string, reason: string, count: CashCount | null): Promise<ShiftView> {
    return this.ledger.commitRequest({ terminal: null, cashier: supervisorId }, key, { op: 'shift.force-close', shiftId, reason, count, supervisorId }, (base) => {
      const s = shiftById(this.cd, shiftId);
      if (s === undefined) return fail('VND_ERR_SHIFT_UNKNOWN', `no shift ${shiftId}`);
      if (s.status !== 'open') fail('VND_ERR_SHIFT_NOT_OPEN', `shift ${shiftId} is already closed`);
      // Recorded at the shift's till, so it counts in the till's day where Z reports are per till.
      return this.closeEvent({ ...base, terminal: s.terminalId }, s, count, supervisorId, reason);
    }, (seq) => this.shiftOfEvent(seq));
  }

  private closeEvent(base: Omit<EventBase, 'prev'>, s: ShiftRecord, count: CashCount | null, forcedBy: string | null, reason: string | null): NewEvent {
    const countedMinor = count === null ? null : countTotal(count);
    const expectedMinor = expectedCash(s);
    return {
      ...base,
      type: 'shift.closed',
      postings: [],
      data: { shiftId: s.shiftId, count, countedMinor, expectedMinor, overShortMinor: countedMinor === null ? null : countedMinor - expectedMinor, forcedBy, reason },
    } as NewEvent;
  }

  listShifts(filter: { status?: 'open' | 'closed' | undefined; terminalId?: string | undefined } = {}): ShiftListEntry[] {
    const out: ShiftListEntry[] = [];
    for (const id of this.cd.shiftOrder) {
      const s = shiftById(this.cd, id);
      if (s === undefined) continue;
      if (filter.status !== undefined && s.status !== filter.status) continue;
      if (filter.terminalId !== undefined && s.terminalId !== filter.terminalId) continue;
      out.push({ ...shiftView(s), openingCount: s.openingCount, closingCount: s.closingCount });
    }
    return out;
  }

  shift(shiftId: string): ShiftListEntry {
    const s = shiftById(this.cd, shiftId);
    if (s === undefined) fail('VND_ERR_SHIFT_UNKNOWN', `no shift ${shiftId.slice(0, 40)}`);
    return { ...shiftView(s), openingCount: s.openingCount, closingCount: s.closingCount };
  }

  // ---- drawer and receipts -----------------------------------------------------------

  async noSale(actor: Actor, key: string, reason: string, supervisorId: string): Promise<null> {
    return this.ledger.commitRequest(actor, key, { op: 'drawer.no-sale', reason, supervisorId }, (base) => {
      if (actor.terminal !== null) this.requireShift(actor.terminal, actor.cashier);
      const s = actor.terminal === null ? undefined : openShiftOf(this.cd, actor.terminal);
      return { ...base, type: 'drawer.no-sale', postings: [], data: { shiftId: s?.shiftId ?? null, reason, supervisor: supervisorId } };
    }, () => null);
  }

  /** Journals a reprint and answers the receipt with its reprint count. */
  async reprint(actor: Actor, receipt: ReceiptData): Promise<ReceiptData & { reprintCount: number }> {
    const { seq: saleSeq } = parseSaleId(receipt.sale.saleId);
    return this.ledger.commitRequest(actor, null, null, (base) => ({
      ...base,
      type: 'receipt.reprinted',
      postings: [],
      data: { saleId: receipt.sale.saleId, saleSeq, reprintCount: reprintsOf(this.cd, saleSeq) + 1 },
    }), async (seq) => {
      const e = await this.ledger.readEvent(seq);
      if (e.type !== 'receipt.reprinted') return fail('VND_ERR_INTERNAL');
      return { ...receipt, reprintCount: e.data.reprintCount };
    });
  }

  // ---- reports -----------------------------------------------------------------------

  /**
   * The chain a Z of this request belongs to: the store's, or the till's where the store
   * closes its days per till (a till's Z needs its id).
   */
  zScope(terminalId: string | null): string | null {
    if (!this.settings.zPerTerminal) {
      if (terminalId !== null) fail('CORE_ERR_VALIDATION', 'this store closes its days store-wide, not per till');
      return null;
    }
    if (terminalId === null) fail('CORE_ERR_VALIDATION', 'this store closes its days per till: name the till');
    return terminalId;
  }

  private scope(terminalId: string | null): PeriodScope {
    return terminalId === null ? this.cd.store : (terminalScope(this.cd, terminalId) ?? emptyScope(this.ledger.state.seq + 1));
  }

  /** The business day the next event of this chain belongs to. */
  openDay(terminalId: string | null = null): string {
    return businessDay(this.clock().toISOString(), this.settings.utcOffsetMinutes, this.scope(terminalId).z?.period ?? null);
  }

  /** The totals so far of a till's open shift, or of the open day (the till's, where Z reports are per till). */
  xReport(kind: 'shift' | 'day', terminalId: string | null): XReport {
    const at = this.clock().toISOString();
    if (kind === 'shift') {
      const s = terminalId === null ? undefined : openShiftOf(this.cd, terminalId);
      if (s === undefined) fail('VND_ERR_SHIFT_NOT_OPEN');
      const day = this.openDay(this.settings.zPerTerminal ? s.terminalId : null);
      return { kind: 'X', scope: kind, storeName: this.ledger.store.name, day, at, terminalId: s.terminalId, shiftId: s.shiftId, from: s.openedAt, totals: copyTotals(s.totals) };
    }
    const chain = this.settings.zPerTerminal ? terminalId : null;
    if (this.settings.zPerTerminal && chain === null) fail('CORE_ERR_VALIDATION', 'this store closes its days per till: name the till');
    const p = this.scope(chain);
    return { kind: 'X', scope: kind, storeName: this.ledger.store.name, day: this.openDay(chain), at, terminalId: chain, shiftId: null, from: p.day.fromAt ?? at, totals: copyTotals(p.day.totals) };
  }

  /** The open shifts a Z must wait for: every one, or the till's. */
  private openShiftsFor(terminalId: string | null): string[] {
    const open = Object.entries(this.cd.openByTerminal).filter(([t]) => terminalId === null || t === terminalId).map(([, id]) => id);
    if (open.length > 0) fail('VND_ERR_SHIFTS_STILL_OPEN', undefined, { shifts: open });
    return open;
  }

  /**
   * Closes the day: a Z report of everything since the previous Z of its chain (the
   * store's, or one till's events where the store closes per till), numbered, chained
   * to it and signed. When the day closed starts a new month (or year), the month (year)
   * of the chain's earlier Z reports is closed first. A key already used answers its Z.
   */
  async closeDay(actor: Actor, key: string, terminalId: string | null = null): Promise<ZReport> {
    if (!this.ledger.knowsKey(key)) {
      this.openShiftsFor(terminalId);
      const day = this.openDay(terminalId);
      await this.closeLonger('month', day.slice(0, 7), terminalId);
      await this.closeLonger('year', day.slice(0, 4), terminalId);
    }
    return this.ledger.commitRequest(actor, key, { op: 'report.z', terminalId }, (base) => {
      this.openShiftsFor(terminalId);
      const p = this.scope(terminalId);
      const totals = copyTotals(p.day.totals);
      const report: ZReport = {
        kind: 'Z',
        zNumber: (p.z?.number ?? 0) + 1,
        storeName: this.ledger.store.name,
        vendorId: this.ledger.store.vendorId,
        terminalId,
        day: businessDay(base.at, this.settings.utcOffsetMinutes, p.z?.period ?? null),
        closedAt: base.at,
        fromSeq: p.day.fromSeq,
        toSeq: base.seq - 1,
        totals,
        grandTotalMinor: p.grandTotalMinor + totals.netMinor,
        prevHash: p.z?.hash ?? CLOSURE_GENESIS_HASH,
        signature: '',
      };
      report.signature = signClosure(closureBodyText(report), this.signingKey, this.keys.kid);
      return { ...base, type: 'period.closed', postings: [], data: report };
    }, (seq) => this.closureAt(seq) as Promise<ZReport>);
  }

  /** Closes the month or year of a chain's Z reports so far when the day about to close lies beyond it. */
  private async closeLonger(kind: 'month' | 'year', next: string, terminalId: string | null): Promise<void> {
    const acc: ZAccumulator = this.scope(terminalId)[kind];
    if (acc.period === null || acc.period >= next) return;
    await this.ledger.commitRequest({ terminal: terminalId, cashier: null }, null, null, (base) => {
      const p = this.scope(terminalId);
      const a = p[kind];
      const head = kind === 'month' ? p.monthHead : p.yearHead;
      const report: PeriodClosureReport = {
        kind,
        number: (head?.number ?? 0) + 1,
        storeName: this.ledger.store.name,
        vendorId: this.ledger.store.vendorId,
        terminalId,
        period: a.period ?? '',
        closedAt: base.at,
        fromZ: a.fromZ,
        toZ: a.toZ,
        fromSeq: a.fromSeq,
        toSeq: a.toSeq,
        totals: copyTotals(a.totals),
        grandTotalMinor: p.grandTotalMinor,
        prevHash: head?.hash ?? CLOSURE_GENESIS_HASH,
        signature: '',
      };
      report.signature = signClosure(closureBodyText(report), this.signingKey, this.keys.kid);
      return { ...base, type: 'period.closed', postings: [], data: report };
    }, () => null);
  }

  async closureAt(seq: number): Promise<ClosureReport> {
    const e: JournalEvent = await this.ledger.readEvent(seq);
    if (e.type !== 'period.closed') return fail('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request');
    return e.data;
  }

  async listClosures(kind?: ClosureReport['kind']): Promise<ClosureReport[]> {
    const out: ClosureReport[] = [];
    for (const seq of this.cd.closures) {
      const r = await this.closureAt(seq);
      if (kind === undefined || r.kind === kind) out.push(r);
    }
    return out;
  }
}

import {
  addToTotals,
  assert,
  closureHash,
  emptyTotals,
  expectedCash,
  mergeTotals,
  totalsFrom,
  type CashCount,
  type ClosureReport,
  type PeriodTotals,
  type ShiftView,
  type StateEvent,
} from '../../core/index.ts';

/**
 * The cashier's day as the journal's events add it up: shifts and their drawers, the
 * open day's totals (since the last Z), the Z reports of the open month and year, the
 * heads of the closure chains, and receipt reprint counts. Changed only by
 * `applyCashierDay`, for live requests and replay alike.
 */
export interface ShiftRecord extends ShiftView {
  openSeq: number;
  openingCount: CashCount;
  closingCount: CashCount | null;
  /** The shift's own totals (for its X report). */
  totals: PeriodTotals;
}

export interface ClosureHead {
  number: number;
  hash: string;
  seq: number;
  period: string;
  at: string;
}

/** The Z reports summed since the last closure of a longer period (month or year). */
export interface ZAccumulator {
  /** YYYY-MM or YYYY of the Z reports in it; null when empty. */
  period: string | null;
  fromZ: number;
  toZ: number;
  fromSeq: number;
  toSeq: number;
  totals: PeriodTotals;
}

/**
 * One chain of closures: the store's, or one till's where Z reports are made per till.
 * Its open day's totals, the Z reports of its open month and year, and its chain heads.
 */
export interface PeriodScope {
  /** The open day: everything since the last Z (of this till, for a till's scope). */
  day: { fromSeq: number; fromAt: string | null; totals: PeriodTotals };
  month: ZAccumulator;
  year: ZAccumulator;
  z: ClosureHead | null;
  monthHead: ClosureHead | null;
  yearHead: ClosureHead | null;
  /** Net sales since the first Z: never reset. */
  grandTotalMinor: number;
}

export interface CashierDayState {
  shifts: Record<string, ShiftRecord>;
  /** Shift ids, oldest first: closed shifts beyond `SHIFTS_KEPT_MAX` leave memory (they stay in the journal). */
  shiftOrder: string[];
  openByTerminal: Record<string, string>;
  openByStaff: Record<string, string>;
  /** The store-wide chain: every event counts in it. */
  store: PeriodScope;
  /**
   * One chain per till, of its own events: kept whichever way the store makes its Z
   * reports, so a replay never depends on the config.
   */
  terminals: Record<string, PeriodScope>;
  /** Seqs of every closure event, in order. */
  closures: number[];
  /** Sale seq -> how many times its receipt was reprinted. */
  reprints: Record<string, number>;
}

export const SHIFTS_KEPT_MAX = 1000;

function dict<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

function dictOf<T>(r: Record<string, T> | undefined): Record<string, T> {
  return Object.assign(dict<T>(), r ?? {});
}

function own<T>(d: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(d, key) ? d[key] : undefined;
}

function emptyAccumulator(): ZAccumulator {
  return { period: null, fromZ: 0, toZ: 0, fromSeq: 0, toSeq: 0, totals: emptyTotals() };
}

export function emptyScope(fromSeq: number): PeriodScope {
  return {
    day: { fromSeq, fromAt: null, totals: emptyTotals() },
    month: emptyAccumulator(),
    year: emptyAccumulator(),
    z: null,
    monthHead: null,
    yearHead: null,
    grandTotalMinor: 0,
  };
}

export function emptyCashierDay(fromSeq = 1): CashierDayState {
  return {
    shifts: dict(),
    shiftOrder: [],
    openByTerminal: dict(),
    openByStaff: dict(),
    store: emptyScope(fromSeq),
    terminals: dict(),
    closures: [],
    reprints: dict(),
  };
}

/**
 * Rebuilds the cashier's day from a checkpoint (maps without prototypes). A checkpoint
 * written before the cashier's day existed starts an empty one after its seq.
 */
export function cashierDayFrom(s: CashierDayState | undefined, checkpointSeq: number): CashierDayState {
  if (s === undefined) return emptyCashierDay(checkpointSeq + 1);
  const shifts = dict<ShiftRecord>();
  for (const [id, r] of Object.entries(s.shifts)) shifts[id] = { ...r, totals: totalsFrom(r.totals) };
  const acc = (a: ZAccumulator): ZAccumulator => ({ ...a, totals: totalsFrom(a.totals) });
  const scope = (p: PeriodScope): PeriodScope => ({ ...p, day: { ...p.day, totals: totalsFrom(p.day.totals) }, month: acc(p.month), year: acc(p.year) });
  const terminals = dict<PeriodScope>();
  for (const [id, p] of Object.entries(s.terminals)) terminals[id] = scope(p);
  return {
    ...s,
    shifts,
    shiftOrder: [...s.shiftOrder],
    openByTerminal: dictOf(s.openByTerminal),
    openByStaff: dictOf(s.openByStaff),
    store: scope(s.store),
    terminals,
    closures: [...s.closures],
    reprints: dictOf(s.reprints),
  };
}

export function openShiftOf(cd: CashierDayState, terminalId: string): ShiftRecord | undefined {
  const id = own(cd.openByTerminal, terminalId);
  return id === undefined ? undefined : own(cd.shifts, id);
}

export function shiftById(cd: CashierDayState, shiftId: string): ShiftRecord | undefined {
  return own(cd.shifts, shiftId);
}

/** The chain of Z reports of a till (created on its first event), or the store's for null. */
export function scopeOf(cd: CashierDayState, terminalId: string | null, fromSeq = 1): PeriodScope {
  if (terminalId === null) return cd.store;
  let p = own(cd.terminals, terminalId);
  if (p === undefined) {
    p = emptyScope(fromSeq);
    cd.terminals[terminalId] = p;
  }
  return p;
}

/** A till's chain if it has one, without creating it. */
export function terminalScope(cd: CashierDayState, terminalId: string): PeriodScope | undefined {
  return own(cd.terminals, terminalId);
}

export function reprintsOf(cd: CashierDayState, saleSeq: number): number {
  return own(cd.reprints, String(saleSeq)) ?? 0;
}

/**
 * Checks that a cashier's-day event can be applied, changing nothing: the journal only
 * ever holds events that passed it, so a failure is an assertion.
 */
export function planCashierDay(cd: CashierDayState, e: StateEvent): void {
  switch (e.type) {
    case 'shift.opened':
      assert(e.terminal !== null && e.cashier !== null, `shift ${e.data.shiftId} names its till and cashier`);
      assert(own(cd.shifts, e.data.shiftId) === undefined, `shift id ${e.data.shiftId} unused`);
      assert(own(cd.openByTerminal, e.terminal) === undefined, `no shift open on ${e.terminal}`);
      assert(own(cd.openByStaff, e.cashier) === undefined, `no shift open for ${e.cashier}`);
      break;
    case 'cash.moved':
    case 'shift.closed': {
      const s = own(cd.shifts, e.data.shiftId);
      assert(s !== undefined && s.status === 'open', `shift ${e.data.shiftId} is open`);
      break;
    }
    default:
      break;
  }
}

function closeAccumulator(acc: ZAccumulator): void {
  Object.assign(acc, emptyAccumulator());
}

function addZ(acc: ZAccumulator, z: Extract<ClosureReport, { kind: 'Z' }>, period: string): void {
  if (acc.period === null) {
    acc.period = period;
    acc.fromZ = z.zNumber;
    acc.fromSeq = z.fromSeq;
  }
  acc.toZ = z.zNumber;
  acc.toSeq = z.toSeq;
  mergeTotals(acc.totals, z.totals);
}

function dropOldShifts(cd: CashierDayState): void {
  while (cd.shiftOrder.length > SHIFTS_KEPT_MAX) {
    const i = cd.shiftOrder.findIndex((id) => own(cd.shifts, id)?.status !== 'open');
    if (i < 0) return;
    const [id] = cd.shiftOrder.splice(i, 1);
    if (id !== undefined) delete cd.shifts[id];
  }
}

/** Counts one event into a scope's day, which begins with its first event. */
function addToDay(p: PeriodScope, e: StateEvent): void {
  if (p.day.fromAt === null) p.day.fromAt = e.at;
  addToTotals(p.day.totals, e, p.day.fromSeq);
}

/** Applies one journalled event to the cashier's day (every event: sales count too). */
export function applyCashierDay(cd: CashierDayState, e: StateEvent): void {
  if (e.type === 'period.closed') {
    applyClosure(cd, e.seq, e.at, e.data);
    return;
  }
  // The store's day, and the till's (no array of the two: every event passes here).
  addToDay(cd.store, e);
  if (e.terminal !== null) addToDay(scopeOf(cd, e.terminal, e.seq), e);
  const shift = e.terminal === null ? undefined : openShiftOf(cd, e.terminal);
  switch (e.type) {
    case 'sale':
      if (shift !== undefined) {
        shift.cashSalesMinor += e.data.cash.tenderedMinor;
        shift.changeGivenMinor += e.data.cash.changeMinor;
        addToTotals(shift.totals, e, shift.openSeq);
      }
      break;
    case 'issuance':
      // Tokens sold for cash at this till: the cash went into its drawer, the change came out.
      if (shift !== undefined && e.data.payment?.method === 'cash') {
        shift.cashSalesMinor += e.data.payment.tenderedMinor;
        shift.changeGivenMinor += e.data.payment.changeMinor;
        addToTotals(shift.totals, e, shift.openSeq);
      }
      break;
    case 'instrument.sold':
      // A gift certificate sold for cash at this till: the cash went into its drawer, the change came out.
      if (shift !== undefined && e.data.payment.method === 'cash') {
        shift.cashSalesMinor += e.data.payment.tenderedMinor;
        shift.changeGivenMinor += e.data.payment.changeMinor;
      }
      break;
    case 'instrument.voided':
      // A sold certificate taken back: its price came out of this till's drawer.
      if (shift !== undefined) shift.cashRefundsMinor += e.data.cashRefundMinor;
      break;
    case 'reversal':
      if (shift !== undefined) {
        shift.cashRefundsMinor += e.data.cashRefundMinor;
        addToTotals(shift.totals, e, shift.openSeq);
      }
      break;
    case 'shift.opened': {
      const terminal = e.terminal as string;
      const staff = e.cashier as string;
      cd.shifts[e.data.shiftId] = {
        shiftId: e.data.shiftId,
        terminalId: terminal,
        staffId: staff,
        cashierName: e.data.cashierName,
        status: 'open',
        openedAt: e.at,
        closedAt: null,
        openingFloatMinor: e.data.openingFloatMinor,
        cashSalesMinor: 0,
        changeGivenMinor: 0,
        cashRefundsMinor: 0,
        paidInMinor: 0,
        paidOutMinor: 0,
        countedMinor: null,
        expectedMinor: null,
        overShortMinor: null,
        forcedBy: null,
        openSeq: e.seq,
        openingCount: e.data.count,
        closingCount: null,
        totals: emptyTotals(),
      };
      cd.shiftOrder.push(e.data.shiftId);
      cd.openByTerminal[terminal] = e.data.shiftId;
      cd.openByStaff[staff] = e.data.shiftId;
      dropOldShifts(cd);
      break;
    }
    case 'cash.moved': {
      const s = own(cd.shifts, e.data.shiftId) as ShiftRecord;
      if (e.data.kind === 'paid-in') s.paidInMinor += e.data.amountMinor;
      else s.paidOutMinor += e.data.amountMinor;
      addToTotals(s.totals, e, s.openSeq);
      break;
    }
    case 'drawer.no-sale': {
      const s = e.data.shiftId === null ? undefined : own(cd.shifts, e.data.shiftId);
      if (s !== undefined) addToTotals(s.totals, e, s.openSeq);
      break;
    }
    case 'shift.closed': {
      const s = own(cd.shifts, e.data.shiftId) as ShiftRecord;
      s.status = 'closed';
      s.closedAt = e.at;
      s.expectedMinor = expectedCash(s);
      s.countedMinor = e.data.countedMinor;
      s.overShortMinor = e.data.countedMinor === null ? null : e.data.countedMinor - s.expectedMinor;
      s.closingCount = e.data.count;
      s.forcedBy = e.data.forcedBy;
      addToTotals(s.totals, e, s.openSeq);
      if (own(cd.openByTerminal, s.terminalId) === s.shiftId) delete cd.openByTerminal[s.terminalId];
      if (own(cd.openByStaff, s.staffId) === s.shiftId) delete cd.openByStaff[s.staffId];
      break;
    }
    case 'receipt.reprinted':
      cd.reprints[String(e.data.saleSeq)] = e.data.reprintCount;
      break;
    default:
      break;
  }
}

/**
 * A closure as journalled: its own numbers become the chain's head. Whether they agree
 * with the journal is what `vendor-server verify` checks.
 */
function applyClosure(cd: CashierDayState, seq: number, at: string, r: ClosureReport): void {
  cd.closures.push(seq);
  const p = scopeOf(cd, r.terminalId, seq);
  if (r.kind === 'Z') {
    p.z = { number: r.zNumber, hash: closureHash(r), seq, period: r.day, at };
    p.grandTotalMinor = r.grandTotalMinor;
    addZ(p.month, r, r.day.slice(0, 7));
    addZ(p.year, r, r.day.slice(0, 4));
    p.day = { fromSeq: seq + 1, fromAt: at, totals: emptyTotals() };
    return;
  }
  const head = { number: r.number, hash: closureHash(r), seq, period: r.period, at };
  if (r.kind === 'month') {
    p.monthHead = head;
    closeAccumulator(p.month);
  } else {
    p.yearHead = head;
    closeAccumulator(p.year);
  }
}

/** A shift as terminals and operators see it: the count's result only once it is closed. */
export function shiftView(s: ShiftRecord): ShiftView {
  return {
    shiftId: s.shiftId,
    terminalId: s.terminalId,
    staffId: s.staffId,
    cashierName: s.cashierName,
    status: s.status,
    openedAt: s.openedAt,
    closedAt: s.closedAt,
    openingFloatMinor: s.openingFloatMinor,
    cashSalesMinor: s.cashSalesMinor,
    changeGivenMinor: s.changeGivenMinor,
    cashRefundsMinor: s.cashRefundsMinor,
    paidInMinor: s.paidInMinor,
    paidOutMinor: s.paidOutMinor,
    countedMinor: s.countedMinor,
    expectedMinor: s.expectedMinor,
    overShortMinor: s.overShortMinor,
    forcedBy: s.forcedBy,
  };
}

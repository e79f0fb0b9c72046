import {
  assert,
  assertionFailed,
  customerAccount,
  planBalances,
  policyDay,
  RecordBook,
  type PlannedBalance,
  type InstrumentKind,
  type JournalEvent,
  type StateEvent,
  type Product,
  type TokenType,
} from '../../core/index.ts';
import { KeyFilter, KeyWindow, type KeyFilterSnapshot, type KeyWindowSnapshot } from '../../platform/storage/index.ts';
import type { LotState } from '../../core/auctions.ts';
import { applyCashierDay, cashierDayFrom, emptyCashierDay, planCashierDay, type CashierDayState } from '../cashier-day/state.ts';

/**
 * The vendor's materialised state: what the journal's events add up to. It is rebuilt
 * on start from the last checkpoint plus a replay of the journal after it, and changed
 * only by `applyEvent`, the same function for live requests and for replay.
 */
export interface CustomerRecord {
  id: string;
  card: string;
  name: string;
  registeredAt: string;
  /** Whether the customer agreed to share contact data with member stores; absent when registration did not ask. */
  consent?: boolean;
  /** Seqs of this customer's last money events, newest last (bounded). */
  recent: number[];
}

/**
 * One day's totals (UTC). The drawer's cash is what sales kept (`cashSalesMinor`, the
 * cash due: change was handed back), plus cash taken for tokens customers bought
 * (`cashTokenPurchasesMinor`), less cash handed back by refunds (`cashRefundedMinor`);
 * `cashMinor` is that net. `tokens` are the tokens sales took in, `tokensReturned` those
 * refunds gave back. Tokens bought by card or online bring no cash into the drawer:
 * they count in `cardTokenPurchasesMinor` and `onlineTokenPurchasesMinor`.
 */
export interface DayTotals {
  sales: number;
  refunds: number;
  tokenPurchases: number;
  grossMinor: number;
  cashSalesMinor: number;
  cashTokenPurchasesMinor: number;
  cardTokenPurchasesMinor: number;
  onlineTokenPurchasesMinor: number;
  cashRefundedMinor: number;
  cashMinor: number;
  tokens: Record<string, number>;
  tokensReturned: Record<string, number>;
}

/** A null-prototype record: keys from outside can never meet a built-in property. */
export function dict<T>(entries?: Iterable<[string, T]>): Record<string, T> {
  const d = Object.create(null) as Record<string, T>;
  if (entries !== undefined) for (const [k, v] of entries) d[k] = v;
  return d;
}

/** The own value of a key, or undefined: never a property inherited from a prototype. */
export function own<T>(d: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(d, key) ? d[key] : undefined;
}

export function emptyDay(): DayTotals {
  return {
    sales: 0,
    refunds: 0,
    tokenPurchases: 0,
    grossMinor: 0,
    cashSalesMinor: 0,
    cashTokenPurchasesMinor: 0,
    cardTokenPurchasesMinor: 0,
    onlineTokenPurchasesMinor: 0,
    cashRefundedMinor: 0,
    cashMinor: 0,
    tokens: dict(),
    tokensReturned: dict(),
  };
}

export interface LedgerState {
  format: 1;
  vendorId: string;
  seq: number;
  hash: string;
  balances: Record<string, Record<string, number>>;
  tokenTypes: Record<string, TokenType>;
  products: Record<string, Product>;
  customers: Record<string, CustomerRecord>;
  cards: Record<string, string>;
  customerSerial: number;
  /** Refunded sale seq -> seq of the reversal. */
  refunds: Record<string, number>;
  days: Record<string, DayTotals>;
  /**
   * Idempotency keys -> the seq of the event they produced, in insertion order, bounded
   * by `keysMax` (oldest dropped first), held off the heap by fingerprint
   * (platform/storage/key-window.ts). The request's hash lives in that event.
   */
  keys: KeyWindow;
  /** Every key dropped from `keys`: a retry of one is answered from the journal, never charged again. */
  evicted: KeyFilter;
  /** Shifts, the open day's totals and the closure chains (vendor-server/cashier-day). */
  cashierDay: CashierDayState;
  /** The seq of the last product change: the catalog version the tills' copies compare with. */
  catalogVersion: number;
  /** Per till, the counter and seq of its last offline sale journalled (vendor-server/offline.ts). */
  offlineTills: Record<string, { counter: number; seq: number }>;
  /** Card approval references of tokens sold at the till -> the seq of their issuance: one approval pays once. */
  cardPayments: Record<string, number>;
  /** Auction lots by id (core/auctions.ts), and how many were ever listed. */
  lots: Record<string, LotState>;
  lotSerial: number;
  /** Bearer instruments seen here, by short code (vendor-server/instruments). */
  instruments: Record<string, InstrumentRecord>;
  /** Sale seq -> what each instrument paid in it: a refund gives those units back to them. */
  instrumentSales: Record<string, { code: string; units: number; remainingBefore: number }[]>;
  /** UTC day -> value taken from instruments offline that day (minor units at face value): the policy's daily limit. */
  instrumentsOfflineDay: Record<string, number>;
}

/**
 * What this store knows of a bearer instrument it has seen (sold or redeemed here): the
 * durable spent set. `remainingUnits` is what remained after the last event here that
 * touched it: the mall's own figure when the sale was reserved online, this store's when
 * it was taken offline. A second spend this store has seen is refused from it, across
 * terminals and restarts, since it is rebuilt from the journal like every balance.
 */
export interface InstrumentRecord {
  kind: InstrumentKind;
  token: string;
  /** Units this store took from it in sales, net of refunds. */
  redeemedUnits: number;
  remainingUnits: number;
  /** The compact form as seen, so a till with only the short code can still have it verified. */
  compact: string;
  /** The seq of the `instrument.sold` event when this store sold it. */
  soldSeq: number | null;
  voided: boolean;
  lastSeq: number;
}

export const CUSTOMER_RECENT_MAX = 50;
/** Lists shorter than this grow by an exact-size copy (touchCustomer). */
const RECENT_EXACT_MAX = 8;
export const KEYS_MAX_DEFAULT = 1_000_000;

export function emptyState(vendorId: string, genesisHash: string): LedgerState {
  return {
    format: 1,
    vendorId,
    seq: 0,
    hash: genesisHash,
    balances: dict(),
    tokenTypes: dict(),
    products: dict(),
    customers: dict(),
    cards: dict(),
    customerSerial: 0,
    refunds: dict(),
    days: dict(),
    keys: new KeyWindow(),
    evicted: new KeyFilter(),
    cashierDay: emptyCashierDay(),
    catalogVersion: 0,
    offlineTills: dict(),
    cardPayments: dict(),
    lots: dict(),
    lotSerial: 0,
    instruments: dict(),
    instrumentSales: dict(),
    instrumentsOfflineDay: dict(),
  };
}

export function bookOf(state: LedgerState): RecordBook {
  return new RecordBook(state.balances);
}

export function customerBalances(state: LedgerState, customerId: string): Record<string, number> {
  const copy = dict<number>();
  const row = own(state.balances, customerAccount(customerId));
  if (row !== undefined) for (const token of Object.keys(row)) copy[token] = row[token] as number;
  return copy;
}

function day(state: LedgerState, at: string): DayTotals {
  const d = at.slice(0, 10);
  const found = own(state.days, d);
  if (found !== undefined) return found;
  const fresh = emptyDay();
  state.days[d] = fresh;
  return fresh;
}

function addTo(totals: Record<string, number>, token: string, units: number): void {
  totals[token] = (own(totals, token) ?? 0) + units;
}

function touchCustomer(state: LedgerState, customerId: string | null, seq: number): void {
  if (customerId === null) return;
  const c = own(state.customers, customerId);
  if (c === undefined) assertionFailed(`customer ${customerId} exists`);
  const recent = c.recent;
  if (recent.length < RECENT_EXACT_MAX) {
    // A new array of the exact size: one grown by push keeps a dozen spare slots, which
    // for a store of many customers with a few events each is most of what they take.
    c.recent = recent.concat(seq);
  } else if (recent.length < CUSTOMER_RECENT_MAX) {
    // A longer list grows in place: copying it whole for every event cost a replay more
    // than anything else it does per customer. Once full, it is cut to its exact size.
    recent.push(seq);
    if (recent.length === CUSTOMER_RECENT_MAX) c.recent = recent.slice();
  } else {
    // A full list moves along in place, by a plain loop: Array.prototype.copyWithin takes
    // the generic path, property by property, and cost 20 times as much.
    const from = recent.length - CUSTOMER_RECENT_MAX + 1;
    for (let i = 0; i < CUSTOMER_RECENT_MAX - 1; i++) recent[i] = recent[i + from] as number;
    // Cut only when it held more than the most kept: setting an array's length, even to
    // what it is, is a call into the runtime.
    if (recent.length !== CUSTOMER_RECENT_MAX) recent.length = CUSTOMER_RECENT_MAX;
    recent[CUSTOMER_RECENT_MAX - 1] = seq;
  }
}

/**
 * A sale's instruments: the spent set moves on (what remains after this sale, what this
 * store took), and a use without a reservation counts towards the day's offline value.
 */
function applyInstrumentUses(state: LedgerState, seq: number, at: string, uses: NonNullable<Extract<JournalEvent, { type: 'sale' }>['data']['instruments']>): void {
  const paid: { code: string; units: number; remainingBefore: number }[] = [];
  for (const u of uses) {
    const r = own(state.instruments, u.code);
    const remainingBefore = r === undefined ? u.remainingAfter + u.units : r.remainingUnits;
    if (r === undefined) {
      state.instruments[u.code] = { kind: u.kind, token: u.token, redeemedUnits: u.units, remainingUnits: u.remainingAfter, compact: u.instrument, soldSeq: null, voided: false, lastSeq: seq };
    } else {
      r.redeemedUnits += u.units;
      r.remainingUnits = u.remainingAfter;
      r.lastSeq = seq;
    }
    paid.push({ code: u.code, units: u.units, remainingBefore });
    if (u.reservation === null) {
      const tt = own(state.tokenTypes, u.token);
      assert(tt !== undefined, `token type ${u.token} of instrument ${u.code} is known`);
      const day = policyDay(at);
      state.instrumentsOfflineDay[day] = (own(state.instrumentsOfflineDay, day) ?? 0) + u.units * tt.faceValueMinor;
    }
  }
  state.instrumentSales[String(seq)] = paid;
}

/**
 * A refunded sale's instruments get back what it took from them: a coupon is unused
 * again, a certificate holds what it held before the sale.
 */
function restoreInstruments(state: LedgerState, saleSeq: number, seq: number): void {
  const paid = own(state.instrumentSales, String(saleSeq));
  if (paid === undefined) return;
  for (const p of paid) {
    const r = own(state.instruments, p.code);
    assert(r !== undefined, `instrument ${p.code} of sale ${saleSeq} is known`);
    r.redeemedUnits -= p.units;
    r.remainingUnits += p.units;
    r.lastSeq = seq;
  }
}

/** The balances an event's postings lead to. */
export type PostingPlan = readonly PlannedBalance[];

const NO_POSTINGS: PostingPlan = Object.freeze([]);

/** Whether a lot's high bid is the bid an event gives back (both none, or the same customer and units). */
function sameHeld(high: LotState['high'], held: { customer: string; units: number } | null): boolean {
  return high === null ? held === null : held !== null && high.customer === held.customer && high.units === held.units;
}

function openLot(state: LedgerState, id: string): LotState {
  const lot = own(state.lots, id);
  assert(lot !== undefined && lot.status === 'open', `lot ${id} is open`);
  return lot;
}

function customerExists(state: LedgerState, id: string | null): void {
  if (id !== null && own(state.customers, id) === undefined) assertionFailed(`customer ${id} exists`);
}

/**
 * Checks that an event can be applied to this state and plans its postings, changing
 * nothing. The ledger calls it before the event is journalled, so that what reaches the
 * journal is known to apply; replay calls it again through `applyEvent`. A customer or
 * sale the event names must exist, a card must be free, a sale refunded once, and no
 * balance that must stay non-negative may go below zero.
 */
export function planEvent(state: LedgerState, event: StateEvent): PostingPlan {
  // Every event passes here: messages are made only when a check fails.
  if (event.seq !== state.seq + 1) assertionFailed(`event seq ${event.seq} follows ${state.seq}`);
  if (event.vendor !== state.vendorId) assertionFailed(`event vendor ${event.vendor} is ${state.vendorId}`);
  switch (event.type) {
    case 'sale': {
      customerExists(state, event.data.customer);
      const sold = event.data.lot;
      if (sold !== undefined) {
        const lot = openLot(state, sold.lotId);
        assert(lot.high !== null && lot.high.seq === sold.bidSeq && lot.high.customer === event.data.customer, `lot ${sold.lotId} is sold to its high bid`);
      }
      const off = event.data.offline;
      if (off !== undefined) {
        // Offline sales of a till arrive in counter order, each number once.
        assert(event.terminal !== null && off.offlineId === `${event.terminal}-${off.counter}`, `offline sale ${off.offlineId} names its till`);
        assert(off.counter === (own(state.offlineTills, event.terminal)?.counter ?? 0) + 1, `offline sale ${off.offlineId} follows the till's last`);
      }
      break;
    }
    case 'reversal':
      assert(own(state.refunds, String(event.data.saleSeq)) === undefined, `sale ${event.data.saleId} refunded once`);
      assert(event.data.saleSeq >= 1 && event.data.saleSeq < event.seq, `sale ${event.data.saleId} precedes its reversal`);
      customerExists(state, event.data.customer);
      break;
    case 'issuance':
    case 'exchange':
    case 'wallet.moved':
      customerExists(state, event.data.customer);
      break;
    case 'customer.registered':
      assert(own(state.cards, event.data.card) === undefined, `card ${event.data.card} unused`);
      assert(own(state.customers, event.data.id) === undefined, `customer id ${event.data.id} unused`);
      break;
    case 'instrument.sold':
      assert((own(state.instruments, event.data.code)?.soldSeq ?? null) === null, `instrument ${event.data.code} is sold here once`);
      break;
    case 'instrument.voided': {
      const r = own(state.instruments, event.data.code);
      assert(r !== undefined && r.soldSeq === event.data.soldSeq && !r.voided, `instrument ${event.data.code} was sold here and not voided`);
      break;
    }
    case 'allotment':
    case 'product.upserted':
    case 'token-type.upserted':
      break;
    case 'shift.opened':
    case 'cash.moved':
    case 'shift.closed':
    case 'drawer.no-sale':
    case 'receipt.reprinted':
    case 'period.closed':
      assert(event.postings.length === 0, `a ${event.type} event has no postings`);
      planCashierDay(state.cashierDay, event);
      break;
    case 'lot.opened':
      assert(own(state.lots, event.data.lotId) === undefined, `lot id ${event.data.lotId} unused`);
      break;
    case 'lot.bid': {
      const lot = openLot(state, event.data.lotId);
      customerExists(state, event.data.customer);
      assert(sameHeld(lot.high, event.data.previous), `bid on ${event.data.lotId} releases the high bid`);
      break;
    }
    case 'lot.cancelled':
      assert(openLot(state, event.data.lotId).high === null, `lot ${event.data.lotId} has no bid`);
      break;
    case 'lot.closed': {
      const lot = openLot(state, event.data.lotId);
      assert(sameHeld(lot.high, event.data.released), `lot ${event.data.lotId} closed unsold releases the high bid`);
      break;
    }
    default: {
      const never: never = event;
      assert(false, `unknown event type ${(never as { type: string }).type}`);
    }
  }
  return event.postings.length > 0 ? planBalances(bookOf(state), event.postings) : NO_POSTINGS;
}

/**
 * Applies one journalled event. Events were validated before they were journalled, so
 * any failure here means the journal and the rules disagree: an assertion, not a
 * typed error.
 */
export function applyEvent(state: LedgerState, event: StateEvent, hash: string, keysMax = KEYS_MAX_DEFAULT, plan?: PostingPlan): void {
  // The ledger planned exactly this event against this state a moment ago (no yield in
  // between), so the planned balances are the result; replay plans here.
  const planned = plan ?? planEvent(state, event);
  if (event.seq !== state.seq + 1) assertionFailed(`event seq ${event.seq} follows ${state.seq}`);
  const book = bookOf(state);
  // Index loops, not for...of or Object.keys: every event of a replay passes here.
  for (let i = 0; i < planned.length; i++) {
    const b = planned[i] as PlannedBalance;
    book.set(b.account, b.token, b.units);
  }

  switch (event.type) {
    case 'sale': {
      const t = day(state, event.at);
      t.sales += 1;
      t.grossMinor += event.data.totalMinor;
      t.cashSalesMinor += event.data.cash.dueMinor;
      t.cashMinor += event.data.cash.dueMinor;
      const debits = event.data.debits;
      for (const token in debits) addTo(t.tokens, token, debits[token] as number);
      touchCustomer(state, event.data.customer, event.seq);
      if (event.data.offline !== undefined && event.terminal !== null) state.offlineTills[event.terminal] = { counter: event.data.offline.counter, seq: event.seq };
      if (event.data.lot !== undefined) {
        const lot = own(state.lots, event.data.lot.lotId) as LotState;
        lot.status = 'closed';
        lot.closedSeq = event.seq;
        lot.saleId = event.data.saleId;
      }
      if (event.data.instruments !== undefined) applyInstrumentUses(state, event.seq, event.at, event.data.instruments);
      break;
    }
    case 'reversal': {
      state.refunds[String(event.data.saleSeq)] = event.seq;
      restoreInstruments(state, event.data.saleSeq, event.seq);
      const t = day(state, event.at);
      t.refunds += 1;
      t.cashRefundedMinor += event.data.cashRefundMinor;
      t.cashMinor -= event.data.cashRefundMinor;
      for (const p of event.postings) if (p.account.startsWith('customer:') && p.units > 0) addTo(t.tokensReturned, p.token, p.units);
      touchCustomer(state, event.data.customer, event.seq);
      break;
    }
    case 'issuance': {
      if (event.data.cashMinor > 0) {
        const t = day(state, event.at);
        t.tokenPurchases += 1;
        // Only cash reaches the drawer; an issuance without a payment was recorded as cash.
        const method = event.data.payment?.method ?? 'cash';
        if (method === 'cash') {
          t.cashTokenPurchasesMinor += event.data.cashMinor;
          t.cashMinor += event.data.cashMinor;
        } else if (method === 'card') {
          t.cardTokenPurchasesMinor += event.data.cashMinor;
        } else {
          t.onlineTokenPurchasesMinor += event.data.cashMinor;
        }
      }
      if (event.data.payment?.method === 'card') state.cardPayments[event.data.payment.approvalRef] = event.seq;
      touchCustomer(state, event.data.customer, event.seq);
      break;
    }
    case 'exchange':
    case 'wallet.moved':
      touchCustomer(state, event.data.customer, event.seq);
      break;
    case 'allotment':
      break;
    case 'instrument.sold': {
      const d = event.data;
      // A certificate sold for cash or card counts like tokens sold: the cash reaches the drawer.
      const t = day(state, event.at);
      t.tokenPurchases += 1;
      if (d.payment.method === 'cash') {
        t.cashTokenPurchasesMinor += d.priceMinor;
        t.cashMinor += d.priceMinor;
      } else {
        t.cardTokenPurchasesMinor += d.priceMinor;
      }
      // One card approval pays once, for tokens or for a certificate.
      if (d.payment.method === 'card') state.cardPayments[d.payment.approvalRef] = event.seq;
      state.instruments[d.code] = { kind: 'gift', token: d.token, redeemedUnits: 0, remainingUnits: d.units, compact: d.instrument, soldSeq: event.seq, voided: false, lastSeq: event.seq };
      break;
    }
    case 'instrument.voided': {
      const r = own(state.instruments, event.data.code);
      assert(r !== undefined, `instrument ${event.data.code} was sold here before it is voided`);
      // The price handed back in cash leaves the drawer like a refund's.
      if (event.data.cashRefundMinor > 0) {
        const t = day(state, event.at);
        t.cashRefundedMinor += event.data.cashRefundMinor;
        t.cashMinor -= event.data.cashRefundMinor;
      }
      r.remainingUnits = 0;
      r.voided = true;
      r.lastSeq = event.seq;
      break;
    }
    case 'customer.registered': {
      const c = event.data;
      const record: CustomerRecord = { id: c.id, card: c.card, name: c.name, registeredAt: event.at, recent: [] };
      if (c.consent !== undefined) record.consent = c.consent;
      state.customers[c.id] = record;
      state.cards[c.card] = c.id;
      state.customerSerial += 1;
      break;
    }
    case 'product.upserted':
      state.products[event.data.gtin] = event.data;
      state.catalogVersion = event.seq;
      break;
    case 'token-type.upserted':
      state.tokenTypes[event.data.code] = event.data;
      break;
    case 'shift.opened':
    case 'cash.moved':
    case 'shift.closed':
    case 'drawer.no-sale':
    case 'receipt.reprinted':
    case 'period.closed':
      break;
    case 'lot.opened':
      state.lots[event.data.lotId] = { spec: event.data, status: 'open', closesAt: event.data.closesAt, high: null, bids: 0, closedSeq: null, saleId: null };
      state.lotSerial += 1;
      break;
    case 'lot.bid': {
      const lot = own(state.lots, event.data.lotId) as LotState;
      lot.high = { customer: event.data.customer, units: event.data.units, seq: event.seq, terminal: event.terminal };
      lot.bids += 1;
      lot.closesAt = event.data.closesAt;
      touchCustomer(state, event.data.customer, event.seq);
      break;
    }
    case 'lot.cancelled':
    case 'lot.closed': {
      const lot = own(state.lots, event.data.lotId) as LotState;
      lot.status = event.type === 'lot.cancelled' ? 'cancelled' : 'closed';
      lot.closedSeq = event.seq;
      break;
    }
    default: {
      const never: never = event;
      assert(false, `unknown event type ${(never as { type: string }).type}`);
    }
  }

  applyCashierDay(state.cashierDay, event);

  if (event.key !== null && event.bodyHash !== null) {
    state.keys.set(event.key, event.seq);
    if (state.keys.size > keysMax) {
      const oldest = state.keys.evictOldest();
      if (oldest !== null) state.evicted.addPrint(oldest.print, oldest.seq);
    }
  }
  state.seq = event.seq;
  state.hash = hash;
}

/** The checkpoint form of the state (plain JSON). */
export interface StateSnapshot extends Omit<LedgerState, 'keys' | 'evicted' | 'cashierDay' | 'catalogVersion' | 'offlineTills' | 'cardPayments' | 'lots' | 'lotSerial' | 'instruments' | 'instrumentSales' | 'instrumentsOfflineDay'> {
  /** The key window by fingerprint. */
  window?: KeyWindowSnapshot;
  /** The key window as the keys themselves, in checkpoints written before `window`. */
  keys?: [string, number][];
  evicted: KeyFilterSnapshot;
  /** Absent in checkpoints written before the cashier's day existed. */
  cashierDay?: CashierDayState;
  /** Absent in checkpoints written before tills kept a catalog copy. */
  catalogVersion?: number;
  offlineTills?: Record<string, { counter: number; seq: number }>;
  /** Absent in checkpoints written before tokens were sold by card. */
  cardPayments?: Record<string, number>;
  /** Absent in checkpoints written before auctions existed. */
  lots?: Record<string, LotState>;
  lotSerial?: number;
  /** Absent in checkpoints written before stores took bearer instruments. */
  instruments?: Record<string, InstrumentRecord>;
  instrumentSales?: Record<string, { code: string; units: number; remainingBefore: number }[]>;
  instrumentsOfflineDay?: Record<string, number>;
}

export function toSnapshot(state: LedgerState): StateSnapshot {
  const { keys, ...rest } = state;
  return { ...rest, window: keys.toSnapshot(), evicted: state.evicted.toSnapshot() };
}

/** A day of a checkpoint written before a total existed gets that total as zero. */
function dayFrom(d: Partial<DayTotals>): DayTotals {
  return {
    ...emptyDay(),
    ...d,
    tokens: dict(Object.entries(d.tokens ?? {})),
    tokensReturned: dict(Object.entries(d.tokensReturned ?? {})),
  };
}

/**
 * Makes an object parsed from JSON a null-prototype record in place. JSON.parse defines
 * every key as an own data property (a "__proto__" key included), so once the prototype
 * is gone the object is as safe as one made by `dict`, and a small one stays in V8's
 * compact layout, where `Object.create(null)` would make it a hash table several times
 * its size.
 */
function nullProto<T>(parsed: Record<string, T>): Record<string, T> {
  return Object.setPrototypeOf(parsed, null) as Record<string, T>;
}

/**
 * The state a checkpoint holds. It takes over the parsed objects instead of copying
 * them, so that loading a large store holds the state once, not twice: `s` must not be
 * used afterwards.
 */
export function fromSnapshot(s: StateSnapshot): LedgerState {
  assert(s.format === 1, `state format ${String(s.format)} is 1`);
  // JSON.parse makes ordinary objects; every map keyed by outside data loses its
  // prototype before it is used.
  const balances = nullProto(s.balances);
  for (const account in balances) nullProto(balances[account] as Record<string, number>);
  const days = nullProto(s.days);
  for (const date in days) days[date] = dayFrom(days[date] as Partial<DayTotals>);
  const customers = nullProto(s.customers);
  const cards = nullProto(s.cards);
  // JSON.parse makes a new string for every value: a customer's id and card each exist
  // as a key and again as values. Equal strings are interchangeable, so the values are
  // pointed at the keys' strings, a few tens of bytes less per customer.
  for (const id in customers) {
    const c = customers[id] as CustomerRecord;
    if (c.id === id) c.id = id;
  }
  for (const card in cards) {
    const c = own(customers, cards[card] as string);
    if (c === undefined || c.id !== cards[card]) continue;
    cards[card] = c.id;
    if (c.card === card) c.card = card;
  }
  const { keys, window, ...fields } = s;
  return {
    ...fields,
    balances,
    tokenTypes: nullProto(s.tokenTypes),
    products: nullProto(s.products),
    customers,
    cards,
    refunds: nullProto(s.refunds),
    days,
    keys: window !== undefined ? KeyWindow.fromSnapshot(window) : KeyWindow.fromEntries(keys ?? []),
    evicted: new KeyFilter(s.evicted),
    cashierDay: cashierDayFrom(s.cashierDay, s.seq),
    // An older checkpoint does not say when the catalog last changed: its seq is a version
    // no older than that change, so a till's copy is refetched rather than trusted.
    catalogVersion: s.catalogVersion ?? s.seq,
    offlineTills: dict(Object.entries(s.offlineTills ?? {})),
    cardPayments: dict(Object.entries(s.cardPayments ?? {})),
    lots: dict(Object.entries(s.lots ?? {})),
    lotSerial: s.lotSerial ?? 0,
    instruments: dict(Object.entries(s.instruments ?? {})),
    instrumentSales: dict(Object.entries(s.instrumentSales ?? {})),
    instrumentsOfflineDay: dict(Object.entries(s.instrumentsOfflineDay ?? {})),
  };
}

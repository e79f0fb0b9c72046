import {
  applyPostings,
  assert,
  customerAccount,
  RecordBook,
  type JournalEvent,
  type Product,
  type TokenType,
} from '../../core/index.ts';
import { KeyFilter, type KeyFilterSnapshot } from '../../platform/storage/index.ts';

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
  /** Seqs of this customer's last money events, newest last (bounded). */
  recent: number[];
}

export interface DayTotals {
  sales: number;
  refunds: number;
  cashMinor: number;
  grossMinor: number;
  tokens: Record<string, number>;
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
   * by `keysMax` (oldest dropped first). The request's hash lives in that event.
   */
  keys: Map<string, number>;
  /** Every key dropped from `keys`: a retry of one is answered from the journal, never charged again. */
  evicted: KeyFilter;
}

export const CUSTOMER_RECENT_MAX = 50;
export const KEYS_MAX_DEFAULT = 1_000_000;

/**
 * One long-lived iterator per key map: a fresh `keys()` iterator would walk past every
 * entry deleted so far, making each eviction slower than the last. A Map iterator stays
 * valid across deletions and sees insertions at the end, which is exactly FIFO order.
 */
const keyIterators = new WeakMap<Map<string, number>, Iterator<string>>();

function oldestKeys(keys: Map<string, number>): Iterator<string> {
  let it = keyIterators.get(keys);
  if (it === undefined) {
    it = keys.keys();
    keyIterators.set(keys, it);
  }
  return it;
}

export function emptyState(vendorId: string, genesisHash: string): LedgerState {
  return {
    format: 1,
    vendorId,
    seq: 0,
    hash: genesisHash,
    balances: {},
    tokenTypes: {},
    products: {},
    customers: {},
    cards: {},
    customerSerial: 0,
    refunds: {},
    days: {},
    keys: new Map(),
    evicted: new KeyFilter(),
  };
}

export function bookOf(state: LedgerState): RecordBook {
  return new RecordBook(state.balances);
}

export function customerBalances(state: LedgerState, customerId: string): Record<string, number> {
  return { ...(state.balances[customerAccount(customerId)] ?? {}) };
}

function day(state: LedgerState, at: string): DayTotals {
  const d = at.slice(0, 10);
  return (state.days[d] ??= { sales: 0, refunds: 0, cashMinor: 0, grossMinor: 0, tokens: {} });
}

function touchCustomer(state: LedgerState, customerId: string | null, seq: number): void {
  if (customerId === null) return;
  const c = state.customers[customerId];
  assert(c !== undefined, `customer ${customerId} exists`);
  c.recent.push(seq);
  if (c.recent.length > CUSTOMER_RECENT_MAX) c.recent.splice(0, c.recent.length - CUSTOMER_RECENT_MAX);
}

/**
 * Applies one journalled event. Events were validated before they were journalled, so
 * any failure here means the journal and the rules disagree: an assertion, not a
 * typed error.
 */
export function applyEvent(state: LedgerState, event: JournalEvent, hash: string, keysMax = KEYS_MAX_DEFAULT, plan?: Map<string, number>): void {
  assert(event.seq === state.seq + 1, `event seq ${event.seq} follows ${state.seq}`);
  assert(event.vendor === state.vendorId, `event vendor ${event.vendor} is ${state.vendorId}`);
  if (plan !== undefined) {
    // The caller planned exactly these postings against this state a moment ago (no
    // yield in between), so the planned balances are the result.
    const book = bookOf(state);
    for (const [k, units] of plan) {
      const i = k.indexOf('\u0000');
      book.set(k.slice(0, i), k.slice(i + 1), units);
    }
  } else if (event.postings.length > 0) applyPostings(bookOf(state), event.postings);

  switch (event.type) {
    case 'sale': {
      const t = day(state, event.at);
      t.sales += 1;
      t.grossMinor += event.data.totalMinor;
      t.cashMinor += event.data.cash.dueMinor;
      for (const [token, units] of Object.entries(event.data.debits)) t.tokens[token] = (t.tokens[token] ?? 0) + units;
      touchCustomer(state, event.data.customer, event.seq);
      break;
    }
    case 'reversal': {
      assert(state.refunds[event.data.saleSeq] === undefined, `sale ${event.data.saleId} refunded once`);
      state.refunds[event.data.saleSeq] = event.seq;
      const t = day(state, event.at);
      t.refunds += 1;
      touchCustomer(state, event.data.customer, event.seq);
      break;
    }
    case 'issuance':
      touchCustomer(state, event.data.customer, event.seq);
      break;
    case 'allotment':
      break;
    case 'customer.registered': {
      const c = event.data;
      assert(state.cards[c.card] === undefined, `card ${c.card} unused`);
      state.customers[c.id] = { id: c.id, card: c.card, name: c.name, registeredAt: event.at, recent: [] };
      state.cards[c.card] = c.id;
      state.customerSerial += 1;
      break;
    }
    case 'product.upserted':
      state.products[event.data.gtin] = event.data;
      break;
    case 'token-type.upserted':
      state.tokenTypes[event.data.code] = event.data;
      break;
    default: {
      const never: never = event;
      assert(false, `unknown event type ${(never as { type: string }).type}`);
    }
  }

  if (event.key !== null && event.bodyHash !== null) {
    state.keys.set(event.key, event.seq);
    if (state.keys.size > keysMax) {
      const oldest = oldestKeys(state.keys).next();
      if (oldest.done !== true) {
        const seq = state.keys.get(oldest.value) as number;
        state.keys.delete(oldest.value);
        state.evicted.add(oldest.value, seq);
      }
    }
  }
  state.seq = event.seq;
  state.hash = hash;
}

/** The checkpoint form of the state (plain JSON). */
export interface StateSnapshot extends Omit<LedgerState, 'keys' | 'evicted'> {
  keys: [string, number][];
  evicted: KeyFilterSnapshot;
}

export function toSnapshot(state: LedgerState): StateSnapshot {
  return { ...state, keys: [...state.keys], evicted: state.evicted.toSnapshot() };
}

export function fromSnapshot(s: StateSnapshot): LedgerState {
  assert(s.format === 1, `state format ${String(s.format)} is 1`);
  return { ...s, keys: new Map(s.keys), evicted: new KeyFilter(s.evicted) };
}

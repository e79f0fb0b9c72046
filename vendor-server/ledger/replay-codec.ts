import type { Posting, StateEvent } from '../../core/index.ts';
import { keyPrint, knownKeyPrint } from '../../platform/storage/key-window.ts';
import type { EventPacker, EventUnpacker, ReplayCodec } from '../../platform/storage/replay-pack.ts';
import { parseStateEvent } from './replay-parse.ts';
import { packSaleText } from './replay-scan.ts';

/**
 * How the ledger's events cross from the replay threads to the thread that folds them
 * (platform/storage/replay-pack.ts). Sales, almost every event of a busy store, are packed
 * field by field; every other event crosses as JSON.
 *
 * A sale is packed only when it holds exactly the fields of a plain sale as the state
 * reads it (replay-parse.ts leaves out its lines and allocations), in the order the ledger
 * writes them, each of its type: then unpacking rebuilds an event equal to the parsed one,
 * with its keys in the same order. A key crosses with its fingerprint (key-window.ts),
 * computed here on the thread. A sale with anything more (offline, loyalty, wallet,
 * instruments, a lot) or anything unexpected crosses as JSON, which loses nothing either.
 */

type SaleEvent = Extract<StateEvent, { type: 'sale' }>;

const SALE_KEYS = ['seq', 'prev', 'v', 'vendor', 'at', 'terminal', 'cashier', 'key', 'bodyHash', 'type', 'postings', 'data'] as const;
const DATA_KEYS = ['saleId', 'customer', 'currency', 'debits', 'totalMinor', 'cash', 'balancesAfter'] as const;
const CASH_KEYS = ['dueMinor', 'tenderedMinor', 'changeMinor'] as const;
const POSTING_KEYS = ['account', 'token', 'units'] as const;

/** Whether the object's own keys are exactly `keys`, in that order. */
function keysAre(o: object, keys: readonly string[]): boolean {
  let i = 0;
  for (const k in o) if (k !== keys[i++]) return false;
  return i === keys.length;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringOrNull(v: unknown): v is string | null {
  return v === null || typeof v === 'string';
}

/** A record of numbers that rebuilds as it was: no `__proto__` key, which an assignment would not make. */
function numberRecord(v: unknown): v is Record<string, number> {
  if (!isObject(v)) return false;
  for (const k in v) if (k === '__proto__' || typeof v[k] !== 'number') return false;
  return true;
}

function plainSale(e: unknown): e is SaleEvent {
  if (!isObject(e) || e.type !== 'sale' || !keysAre(e, SALE_KEYS)) return false;
  if (typeof e.seq !== 'number' || typeof e.prev !== 'string' || typeof e.v !== 'number' || typeof e.vendor !== 'string' || typeof e.at !== 'string') return false;
  if (!stringOrNull(e.terminal) || !stringOrNull(e.cashier) || !stringOrNull(e.key) || !stringOrNull(e.bodyHash)) return false;
  if (!Array.isArray(e.postings)) return false;
  for (const p of e.postings as unknown[]) {
    if (!isObject(p) || !keysAre(p, POSTING_KEYS) || typeof p.account !== 'string' || typeof p.token !== 'string' || typeof p.units !== 'number') return false;
  }
  const d = e.data;
  if (!isObject(d) || !keysAre(d, DATA_KEYS)) return false;
  if (typeof d.saleId !== 'string' || !stringOrNull(d.customer) || typeof d.currency !== 'string' || typeof d.totalMinor !== 'number') return false;
  if (!numberRecord(d.debits) || !(d.balancesAfter === null || numberRecord(d.balancesAfter))) return false;
  return isObject(d.cash) && keysAre(d.cash, CASH_KEYS) && typeof d.cash.dueMinor === 'number' && typeof d.cash.tenderedMinor === 'number' && typeof d.cash.changeMinor === 'number';
}

function packRecord(r: Record<string, number>, p: EventPacker): void {
  const keys = Object.keys(r);
  p.num(keys.length);
  for (const k of keys) {
    p.sym(k);
    p.num(r[k] as number);
  }
}

function unpackRecord(u: EventUnpacker, count: number): Record<string, number> {
  const r: Record<string, number> = {};
  for (let n = count; n > 0; n--) r[u.name()] = u.num();
  return r;
}

export const stateEventCodec: ReplayCodec<StateEvent> = {
  parse: parseStateEvent,
  packText: packSaleText,

  pack(e: StateEvent, p: EventPacker): boolean {
    if (!plainSale(e)) return false;
    // seq and prev are the line's own (ReplayCodec.unpack).
    p.num(e.v);
    p.sym(e.vendor);
    p.str(e.at);
    p.sym(e.terminal);
    p.sym(e.cashier);
    if (e.key === null) p.num(0);
    else {
      p.num(1);
      p.str(e.key);
      const print = keyPrint(e.key);
      p.num(print.lo);
      p.num(print.hi);
    }
    if (e.bodyHash === null) p.num(0);
    else {
      p.num(1);
      p.str(e.bodyHash);
    }
    p.num(e.postings.length);
    for (const posting of e.postings) {
      p.sym(posting.account);
      p.sym(posting.token);
      p.num(posting.units);
    }
    const d = e.data;
    p.str(d.saleId);
    p.sym(d.customer);
    p.sym(d.currency);
    packRecord(d.debits, p);
    p.num(d.totalMinor);
    p.num(d.cash.dueMinor);
    p.num(d.cash.tenderedMinor);
    p.num(d.cash.changeMinor);
    if (d.balancesAfter === null) p.num(-1);
    else packRecord(d.balancesAfter, p);
    return true;
  },

  unpack(u: EventUnpacker, seq: number, prev: string): SaleEvent {
    const v = u.num() as SaleEvent['v'];
    const vendor = u.name();
    const at = u.str();
    const terminal = u.sym();
    const cashier = u.sym();
    let key: string | null = null;
    if (u.num() === 1) {
      key = u.str();
      // The key window, which adds the key next, finds its print made.
      knownKeyPrint(key, { lo: u.num(), hi: u.num() });
    }
    const bodyHash = u.num() === 1 ? u.str() : null;
    const postings: Posting[] = new Array<Posting>(u.num());
    for (let i = 0; i < postings.length; i++) postings[i] = { account: u.name(), token: u.name(), units: u.num() };
    const saleId = u.str();
    const customer = u.sym();
    const currency = u.name();
    const debits = unpackRecord(u, u.num());
    const totalMinor = u.num();
    const cash = { dueMinor: u.num(), tenderedMinor: u.num(), changeMinor: u.num() };
    const entries = u.num();
    const balancesAfter = entries === -1 ? null : unpackRecord(u, entries);
    return {
      seq, prev, v, vendor, at, terminal, cashier, key, bodyHash, type: 'sale', postings,
      data: { saleId, customer, currency, debits, totalMinor, cash, balancesAfter },
    };
  },
};

import { add, assert, sub, ZERO_HASH, type FeeSchedule, type TokenType } from '../../core/index.ts';
import { dict, own, type Dict } from './dict.ts';
import {
  type AlarmData,
  type ClearingRecord,
  type FlaggedRecord,
  type GapDecisionData,
  type MallEvent,
  type PartyKind,
  type PublicJwk,
  type Transfer,
} from '../events.ts';

/**
 * The mall's materialised state: what its journal's events add up to. Rebuilt on start
 * from the last checkpoint plus a replay of the journal after it, and changed only by
 * `applyMallEvent`. Plain JSON throughout, so a checkpoint is the state itself.
 *
 * Memory holds aggregates, never one entry per ingested vendor event: positions by
 * account, per-vendor per-day totals, and per batch one hash and two numbers (for replay
 * detection and for finding an earlier sale when a reversal arrives). Flagged events and
 * alarms are kept up to a bound; the journal holds all of them.
 */
export const FLAGGED_KEPT_PER_VENDOR = 1_000;
export const ALARMS_KEPT_MAX = 10_000;

export interface KeyRecord {
  kid: string;
  vendor: string;
  jwk: PublicJwk;
  status: 'active' | 'retired' | 'revoked';
  addedAt: string;
  retiredAt: string | null;
  revokedAt: string | null;
  revokedReason: string | null;
  /** Once retired, the key signs only batches up to this seq (null: the key is not retired). */
  retiredAtSeq: number | null;
}

export interface TokenTally {
  /** Tokens the mall allotted to this vendor (claims 27, 28). */
  allottedUnits: number;
  /** Tokens redeemed at this vendor, net of reversals (claim 29). */
  redeemedUnits: number;
}

export interface VendorRecord {
  id: string;
  name: string;
  registeredAt: string;
  lastSeq: number;
  lastBatchHash: string;
  lastEventSeq: number;
  lastEventHash: string;
  lastBatchAt: string | null;
  /** The latest event time the mall accepted from this vendor (events may not go back before it, less a skew). */
  lastEventAt: string | null;
  /** The admin's latest decision on a gap in this vendor's batches (signed, in the registry history). */
  gapDecision: GapDecisionRecord | null;
  /** Batch seq k is at index k - 1: its payload hash, the mall journal seq of its batch.ingested, its first event seq. */
  batchHashes: string[];
  batchMallSeqs: number[];
  batchFromSeqs: number[];
  events: number;
  flaggedEvents: number;
  /** The most recent flagged events (bounded). */
  flagged: FlaggedRecord[];
  /** Reversed sale event seq -> seq of the reversal. */
  reversedSales: Record<string, number>;
  tokens: Record<string, TokenTally>;
}

export interface PartyRecord {
  id: string;
  name: string;
  kind: PartyKind;
  addedAt: string;
}

export interface AllotmentRecord {
  id: string;
  vendor: string;
  token: string;
  units: number;
  reference: string;
  issuedAt: string;
  faceValueMinor: number;
  purchaseMinor: number;
  key: string;
  bodyHash: string;
  /** Where the vendor took the allotment into its float, once a batch showed it. */
  used: { batchSeq: number; eventSeq: number } | null;
}

export interface GapDecisionRecord extends GapDecisionData {
  at: string;
  registrySeq: number;
}

export interface AlarmRecord extends AlarmData {
  at: string;
}

/** One vendor's figures for one UTC day (event time). Money in minor units of the mall's currency. */
export interface DayTotals {
  transactions: number;
  refunds: number;
  tokensRedeemed: Record<string, number>;
  tokensReturned: Record<string, number>;
  grossMinor: number;
  refundedMinor: number;
  /** Royalty owed by the vendor, net of reversals. */
  royaltyMinor: number;
  /** Tolls charged to the vendor as a reimbursing issuer. */
  tollMinor: number;
  /** Face value other issuers owe the vendor for tokens it took in. */
  reimbursementReceivableMinor: number;
  /** Face value the vendor, as issuer, owes others for its tokens they took in. */
  reimbursementPayableMinor: number;
  allotmentPurchasesMinor: number;
  /** Everything above as one figure: positive means the mall owes the vendor. */
  netMinor: number;
  flaggedEvents: number;
}

export interface MallState {
  format: 1;
  seq: number;
  hash: string;
  /** How many registry events (everything but batches and alarms) were applied: what a batch was judged against. */
  registrySeq: number;
  vendors: Record<string, VendorRecord>;
  keys: Record<string, KeyRecord>;
  tokenTypes: Record<string, TokenType>;
  fees: FeeSchedule;
  parties: Record<string, PartyRecord>;
  allotments: Record<string, AllotmentRecord>;
  allotmentSerial: number;
  /** Idempotency key of an allotment request -> allotment id. */
  allotmentKeys: Record<string, string>;
  /** Clearing positions by account; they always sum to zero. */
  positions: Record<string, number>;
  alarms: AlarmRecord[];
  alarmSerial: number;
  days: Record<string, Record<string, DayTotals>>;
  totals: { batches: number; events: number; flaggedEvents: number; alarms: number };
}

export const ZERO_FEES: FeeSchedule = {
  royaltyBps: 0,
  royaltyBpsByVendor: {},
  royaltyBpsByToken: {},
  reimbursementTollMinor: 0,
  customerDataTollMinor: 0,
  exchangeServiceBps: 0,
};

export function emptyMallState(): MallState {
  return {
    format: 1,
    seq: 0,
    hash: ZERO_HASH,
    registrySeq: 0,
    vendors: dict(),
    keys: dict(),
    tokenTypes: dict(),
    fees: feesDict(ZERO_FEES),
    parties: dict(),
    allotments: dict(),
    allotmentSerial: 0,
    allotmentKeys: dict(),
    positions: dict(),
    alarms: [],
    alarmSerial: 0,
    days: dict(),
    totals: { batches: 0, events: 0, flaggedEvents: 0, alarms: 0 },
  };
}

export function emptyDay(): DayTotals {
  return {
    transactions: 0,
    refunds: 0,
    tokensRedeemed: dict(),
    tokensReturned: dict(),
    grossMinor: 0,
    refundedMinor: 0,
    royaltyMinor: 0,
    tollMinor: 0,
    reimbursementReceivableMinor: 0,
    reimbursementPayableMinor: 0,
    allotmentPurchasesMinor: 0,
    netMinor: 0,
    flaggedEvents: 0,
  };
}

/**
 * A time already in `Date.prototype.toISOString` form on a date that exists (years 0000-9999,
 * day 29 and 30 in every month but February, 31 only in the long months; a 29 February
 * falls back to Date.parse): its day is its first ten characters, exactly what the
 * Date.parse path gives. Every time the mall writes is in this form.
 */
const CANONICAL_ISO_TIME =
  /^\d{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$/;

/** The UTC day of an ISO time. */
export function utcDay(at: string): string {
  if (CANONICAL_ISO_TIME.test(at)) return at.slice(0, 10);
  return new Date(Date.parse(at)).toISOString().slice(0, 10);
}

function dayOf(state: MallState, vendor: string, at: string): DayTotals {
  return dayTotals(state, vendor, utcDay(at));
}

function dayTotals(state: MallState, vendor: string, day: string): DayTotals {
  const byDay = own(state.days, vendor) ?? (state.days[vendor] = dict());
  return own(byDay, day) ?? (byDay[day] = emptyDay());
}

/** A fee schedule whose per-vendor and per-token rates are null-prototype maps. */
export function feesDict(fees: FeeSchedule): FeeSchedule {
  return { ...fees, royaltyBpsByVendor: dict(fees.royaltyBpsByVendor), royaltyBpsByToken: dict(fees.royaltyBpsByToken) };
}

/**
 * Makes a state read from JSON (a checkpoint) what `emptyMallState` and `applyMallEvent`
 * make: every map a null-prototype object, fields added since the checkpoint was written
 * at their defaults.
 */
export function reviveMallState(raw: MallState): MallState {
  const days: Dict<Dict<DayTotals>> = dict();
  for (const [vendor, byDay] of Object.entries(raw.days ?? {})) {
    const d: Dict<DayTotals> = dict();
    for (const [day, t] of Object.entries(byDay)) d[day] = { ...t, tokensRedeemed: dict(t.tokensRedeemed), tokensReturned: dict(t.tokensReturned) };
    days[vendor] = d;
  }
  const vendors: Dict<VendorRecord> = dict();
  for (const [id, v] of Object.entries(raw.vendors ?? {})) {
    vendors[id] = { ...v, lastEventAt: v.lastEventAt ?? null, gapDecision: v.gapDecision ?? null, reversedSales: dict(v.reversedSales), tokens: dict(v.tokens) };
  }
  const keys: Dict<KeyRecord> = dict();
  for (const [kid, k] of Object.entries(raw.keys ?? {})) keys[kid] = { ...k, retiredAtSeq: k.retiredAtSeq ?? null };
  const tokenTypes: Dict<TokenType> = dict(raw.tokenTypes);
  return {
    ...raw,
    registrySeq: raw.registrySeq ?? 0,
    vendors,
    keys,
    tokenTypes,
    fees: feesDict(raw.fees),
    parties: dict(raw.parties),
    allotments: dict(raw.allotments),
    allotmentKeys: dict(raw.allotmentKeys),
    positions: dict(raw.positions),
    days,
  };
}

function addTo(record: Record<string, number>, key: string, n: number): void {
  const v = add(own(record, key) ?? 0, n);
  if (v === 0) delete record[key];
  else record[key] = v;
}

/** The vendor id behind a clearing account, or null for the mall and non-vendor issuers. */
function vendorOf(state: MallState, account: string): string | null {
  if (!account.startsWith('vendor:')) return null;
  const id = account.slice('vendor:'.length);
  return own(state.vendors, id) === undefined ? null : id;
}

/** Posts one transfer to the positions and to the day totals of the vendors it touches. */
export function applyTransfer(state: MallState, t: Transfer, at: string): void {
  transferOnDay(state, t, at, null);
}

/** `applyTransfer` with the UTC day of `at` already worked out, when the caller has it. */
function transferOnDay(state: MallState, t: Transfer, at: string, day: string | null): void {
  assert(Number.isSafeInteger(t.amountMinor), 'transfer amount is a safe integer');
  assert(t.from !== t.to, `transfer ${t.kind} between different accounts`);
  state.positions[t.from] = sub(own(state.positions, t.from) ?? 0, t.amountMinor);
  state.positions[t.to] = add(own(state.positions, t.to) ?? 0, t.amountMinor);
  const payer = vendorOf(state, t.from);
  if (payer !== null) {
    const d = dayTotals(state, payer, (day ??= utcDay(at)));
    if (t.kind === 'royalty') d.royaltyMinor = add(d.royaltyMinor, t.amountMinor);
    else if (t.kind === 'toll') d.tollMinor = add(d.tollMinor, t.amountMinor);
    else if (t.kind === 'reimbursement') d.reimbursementPayableMinor = add(d.reimbursementPayableMinor, t.amountMinor);
    else d.allotmentPurchasesMinor = add(d.allotmentPurchasesMinor, t.amountMinor);
    d.netMinor = sub(d.netMinor, t.amountMinor);
  }
  const payee = vendorOf(state, t.to);
  if (payee !== null) {
    const d = dayTotals(state, payee, (day ??= utcDay(at)));
    if (t.kind === 'reimbursement') d.reimbursementReceivableMinor = add(d.reimbursementReceivableMinor, t.amountMinor);
    d.netMinor = add(d.netMinor, t.amountMinor);
  }
}

function tally(v: VendorRecord, token: string): TokenTally {
  return own(v.tokens, token) ?? (v.tokens[token] = { allottedUnits: 0, redeemedUnits: 0 });
}

/** The event types that change the registry; a batch is judged against the registry as of a count of them. */
export const REGISTRY_EVENT_TYPES: ReadonlySet<MallEvent['type']> = new Set<MallEvent['type']>([
  'vendor.registered', 'key.added', 'key.retired', 'key.revoked', 'token-type.upserted', 'fees.set', 'party.added', 'allotment.issued', 'gap.decided',
]);

/** Applies what the mall cleared for one vendor event. */
export function applyClearing(state: MallState, vendor: VendorRecord, c: ClearingRecord): void {
  const day = utcDay(c.at);
  const d = dayTotals(state, vendor.id, day);
  if (c.type === 'sale') {
    d.transactions += 1;
    d.grossMinor = add(d.grossMinor, c.grossMinor);
    for (const [token, units] of Object.entries(c.tokens)) addTo(d.tokensRedeemed, token, units);
  } else {
    assert(c.saleSeq !== null, 'a reversal names its sale');
    assert(vendor.reversedSales[c.saleSeq] === undefined, `sale ${c.saleSeq} of ${vendor.id} reversed once`);
    vendor.reversedSales[c.saleSeq] = c.eventSeq;
    d.refunds += 1;
    d.refundedMinor = sub(d.refundedMinor, c.grossMinor);
    for (const [token, units] of Object.entries(c.tokens)) addTo(d.tokensReturned, token, -units);
  }
  for (const [token, units] of Object.entries(c.tokens)) {
    const t = tally(vendor, token);
    t.redeemedUnits = add(t.redeemedUnits, units);
  }
  for (const t of c.transfers) transferOnDay(state, t, c.at, day);
}

/**
 * Applies one journalled mall event. Events were validated before they were journalled,
 * so any failure here means the journal and the rules disagree: an assertion.
 */
export function applyMallEvent(state: MallState, event: MallEvent, hash: string): void {
  assert(event.seq === state.seq + 1, `mall event seq ${event.seq} follows ${state.seq}`);
  switch (event.type) {
    case 'vendor.registered': {
      const { id, name } = event.data;
      assert(state.vendors[id] === undefined, `vendor ${id} registered once`);
      state.vendors[id] = {
        id,
        name,
        registeredAt: event.at,
        lastSeq: 0,
        lastBatchHash: ZERO_HASH,
        lastEventSeq: 0,
        lastEventHash: ZERO_HASH,
        lastBatchAt: null,
        lastEventAt: null,
        gapDecision: null,
        batchHashes: [],
        batchMallSeqs: [],
        batchFromSeqs: [],
        events: 0,
        flaggedEvents: 0,
        flagged: [],
        reversedSales: dict(),
        tokens: dict(),
      };
      break;
    }
    case 'key.added': {
      const { vendor, kid, jwk, retired, retiredAtSeq } = event.data;
      assert(state.vendors[vendor] !== undefined, `key ${kid} belongs to a registered vendor`);
      assert(state.keys[kid] === undefined, `key ${kid} added once`);
      if (retired !== null) {
        const old = state.keys[retired];
        assert(old !== undefined && old.vendor === vendor && old.status === 'active', `key ${retired} was ${vendor}'s active key`);
        old.status = 'retired';
        old.retiredAt = event.at;
        old.retiredAtSeq = retiredAtSeq ?? null;
      }
      state.keys[kid] = { kid, vendor, jwk, status: 'active', addedAt: event.at, retiredAt: null, revokedAt: null, revokedReason: null, retiredAtSeq: null };
      break;
    }
    case 'key.retired': {
      const k = state.keys[event.data.kid];
      assert(k !== undefined && k.vendor === event.data.vendor && k.status === 'active', `key ${event.data.kid} active before retiring`);
      k.status = 'retired';
      k.retiredAt = event.at;
      k.retiredAtSeq = event.data.retiredAtSeq ?? null;
      break;
    }
    case 'key.revoked': {
      const k = state.keys[event.data.kid];
      assert(k !== undefined && k.vendor === event.data.vendor && k.status !== 'revoked', `key ${event.data.kid} not yet revoked`);
      k.status = 'revoked';
      k.revokedAt = event.at;
      k.revokedReason = event.data.reason;
      break;
    }
    case 'token-type.upserted':
      state.tokenTypes[event.data.code] = event.data;
      break;
    case 'fees.set':
      state.fees = feesDict(event.data);
      break;
    case 'gap.decided': {
      const v = own(state.vendors, event.data.vendor);
      assert(v !== undefined, `gap decision for a registered vendor ${event.data.vendor}`);
      v.gapDecision = { ...event.data, at: event.at, registrySeq: state.registrySeq + 1 };
      break;
    }
    case 'party.added':
      assert(state.parties[event.data.id] === undefined, `party ${event.data.id} added once`);
      state.parties[event.data.id] = { ...event.data, addedAt: event.at };
      break;
    case 'allotment.issued': {
      const a = event.data;
      const v = state.vendors[a.vendor];
      assert(v !== undefined, `allotment ${a.id} to a registered vendor`);
      assert(state.allotments[a.id] === undefined && state.allotmentKeys[a.key] === undefined, `allotment ${a.id} issued once`);
      state.allotmentSerial += 1;
      state.allotments[a.id] = {
        id: a.id,
        vendor: a.vendor,
        token: a.token,
        units: a.units,
        reference: a.reference,
        issuedAt: event.at,
        faceValueMinor: a.faceValueMinor,
        purchaseMinor: a.purchaseMinor,
        key: a.key,
        bodyHash: a.bodyHash,
        used: null,
      };
      state.allotmentKeys[a.key] = a.id;
      const t = tally(v, a.token);
      t.allottedUnits = add(t.allottedUnits, a.units);
      for (const tr of a.transfers) applyTransfer(state, tr, event.at);
      break;
    }
    case 'batch.ingested': {
      const b = event.data;
      const v = state.vendors[b.vendor];
      assert(v !== undefined, `batch of a registered vendor ${b.vendor}`);
      assert(b.seq === v.lastSeq + 1, `batch ${b.seq} of ${b.vendor} follows ${v.lastSeq}`);
      assert(b.fromSeq === v.lastEventSeq + 1, `batch ${b.seq} of ${b.vendor} continues at event ${v.lastEventSeq + 1}`);
      v.lastSeq = b.seq;
      v.lastBatchHash = b.hash;
      v.lastEventSeq = b.lastEventSeq;
      v.lastEventHash = b.lastEventHash;
      v.lastBatchAt = event.at;
      if (b.lastEventAt !== undefined && b.lastEventAt !== null) v.lastEventAt = b.lastEventAt;
      v.batchHashes.push(b.hash);
      v.batchMallSeqs.push(event.seq);
      v.batchFromSeqs.push(b.fromSeq);
      const count = b.toSeq - b.fromSeq + 1;
      v.events += count;
      for (const c of b.clearing) applyClearing(state, v, c);
      for (const f of b.flagged) {
        v.flaggedEvents += 1;
        v.flagged.push(f);
        dayOf(state, v.id, f.at).flaggedEvents += 1;
      }
      if (v.flagged.length > FLAGGED_KEPT_PER_VENDOR) v.flagged.splice(0, v.flagged.length - FLAGGED_KEPT_PER_VENDOR);
      for (const u of b.allotmentsUsed) {
        const a = state.allotments[u.id];
        assert(a !== undefined && a.vendor === b.vendor && a.used === null, `allotment ${u.id} taken once by ${b.vendor}`);
        a.used = { batchSeq: b.seq, eventSeq: u.eventSeq };
      }
      state.totals.batches += 1;
      state.totals.events += count;
      state.totals.flaggedEvents += b.flagged.length;
      break;
    }
    case 'alarm.recorded':
      state.alarmSerial += 1;
      state.alarms.push({ ...event.data, at: event.at });
      if (state.alarms.length > ALARMS_KEPT_MAX) state.alarms.splice(0, state.alarms.length - ALARMS_KEPT_MAX);
      state.totals.alarms += 1;
      break;
    default: {
      const never: never = event;
      assert(false, `unknown mall event type ${(never as { type: string }).type}`);
    }
  }
  if (REGISTRY_EVENT_TYPES.has(event.type)) state.registrySeq += 1;
  state.seq = event.seq;
  state.hash = hash;
}

/** The sum of all positions: zero whenever the state is consistent. */
export function positionsSum(state: MallState): number {
  let total = 0n;
  for (const v of Object.values(state.positions)) total += BigInt(v);
  return Number(total);
}


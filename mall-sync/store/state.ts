import { add, assert, sub, ZERO_HASH, type FeeSchedule, type TokenType } from '../../core/index.ts';
import { dict, own, type Dict } from './dict.ts';
import {
  type AlarmData,
  type BatchEconomy,
  type BatchIngestedData,
  type ClearingRecord,
  type CustomerDataRequestedData,
  type WalletAuthorisedData,
  type WalletClosedData,
  type WalletPinFailedData,
  type WalletPinSetData,
  type FlaggedRecord,
  type LotRecord,
  type GapDecisionData,
  type MallEvent,
  type PartyKind,
  type PublicJwk,
  type Transfer,
} from '../events.ts';
import { applyMallLotEvent, emptyMallLotsState, reviveMallLotsState, type MallLotsState } from '../lots-state.ts';
import { applyInstrumentBatch, applyInstrumentEvent, emptyInstrumentsState, reviveInstrumentsState, type InstrumentRecord, type InstrumentsState } from '../instruments-state.ts';

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
  /** Of those, tokens paid from the mall wallet (never in the vendor's circulation). */
  walletRedeemedUnits?: number;
  /** Tokens customers gave up from their cards here in exchanges. */
  exchangedUnits?: number;
  /** Tokens moved from cards here into the wallet, and from the wallet onto cards here. */
  walletOutUnits?: number;
  walletInUnits?: number;
  /** Tokens paid here by bearer instruments (never in the vendor's circulation). */
  instrumentRedeemedUnits?: number;
  /** Tokens the vendor's float put into gift certificates it sold, less those voided. */
  instrumentSoldUnits?: number;
}

/** A card in the mall's customer directory (claims 2, 41): its home store and where else it is registered. */
export interface DirectoryEntry {
  card: string;
  home: string;
  customer: string;
  consent: boolean;
  registeredAt: string;
  /** Only with the customer's consent. */
  name: string | null;
  contact: { email?: string; phone?: string } | null;
  alsoAt: { vendor: string; customer: string; at: string }[];
}

/** What a customer bought at one store, net of refunds (the purchase summary of a data request). */
export interface PurchaseSummary {
  sales: number;
  spentMinor: number;
  firstAt: string | null;
  lastAt: string | null;
}

export interface AuthorisationRecord {
  id: string;
  vendor: string;
  card: string;
  token: string;
  units: number;
  purpose: WalletAuthorisedData['purpose'];
  createdAt: string;
  expiresAt: string;
  status: 'open' | 'captured' | 'released' | 'expired';
  /** The vendor event that used it, once captured. */
  eventSeq: number | null;
  closedAt: string | null;
}

/** A card's wallet PIN at the mall: its salted hash and the wrong PINs since the last right one. */
export interface WalletPinRecord {
  hash: string;
  setAt: string;
  setBy: string;
  /** Wrong PINs since the last right one (or the operator's unlock), from all stores. */
  failures: number;
  /** Of those, how many each store sent. */
  failedBy: Record<string, number>;
  /** When the wrong PINs locked the wallet for holds; null while it is not locked. */
  lockedAt: string | null;
}

/** Wrong PINs that lock a card's wallet (at every store) until the mall operator unlocks it. */
export const WALLET_PIN_FAILURES_MAX = 10;

export interface CustomerDataRequestRecord {
  requestId: string;
  requester: string;
  card: string;
  home: string;
  at: string;
  tollMinor: number;
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
  /** The net of the vendor's `mall-wallet` postings per token, as its batches showed them (flagged events included). */
  walletPostings: Record<string, number>;
  /** The vendor's auction lots as its batches showed them (absent until its first lot). */
  lots?: Record<string, LotRecord>;
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
  /** Exchanges made at the vendor and the tokens customers gave up in them. */
  exchanges: number;
  tokensExchanged: Record<string, number>;
  /** What the vendor, as issuer, owes others for value given out in exchanges of its tokens, and what it is owed for its tokens given out. */
  compensationPayableMinor: number;
  compensationReceivableMinor: number;
  /** Exchange service charges the vendor pays as issuer of the tokens given up (claim 37). */
  serviceChargeMinor: number;
  /** Tolls for customer data the vendor asked for (claim 41). */
  dataTollMinor: number;
  /** Tokens the vendor issued to customers (claim 35), and the fiat they paid for them. */
  tokensIssued: Record<string, number>;
  issuedCashMinor: number;
  /** Redemptions at the vendor that took an instrument beyond what remained on it (double spends). */
  instrumentsDoubleSpent?: number;
  /** Charged back to the vendor for double spends it took beyond the offline policy. */
  doubleSpendChargedMinor?: number;
  /** Recovered by the vendor, as issuer, from stores that took its instruments beyond the policy. */
  doubleSpendRecoveredMinor?: number;
  /** Borne by the vendor, as issuer, for double spends of its instruments within the policy. */
  doubleSpendIssuerLossMinor?: number;
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
  /** Every fee schedule with the time it came into force, oldest first (an exchange is checked against the one in force at its time). */
  feeHistory: { at: string; fees: FeeSchedule }[];
  /** The customer directory by card. */
  customers: Record<string, DirectoryEntry>;
  /** Purchase summaries: vendor -> customer id -> summary. */
  customerSales: Record<string, Record<string, PurchaseSummary>>;
  /** Wallet balances and open holds: card -> token -> units. */
  wallets: Record<string, Record<string, number>>;
  walletHeld: Record<string, Record<string, number>>;
  authorisations: Record<string, AuthorisationRecord>;
  /** Open authorisations: id -> when they expire (what the expiry timer looks at). */
  openAuthorisations: Record<string, string>;
  authorisationSerial: number;
  /** Wallet PINs by card. */
  walletPins: Record<string, WalletPinRecord>;
  /** Answers to wallet and customer-data requests by `<vendor> <key>` (idempotency). */
  requestKeys: Record<string, { bodyHash: string; answer: unknown }>;
  /** The audit trail of customer data requests (the most recent, bounded; the journal holds all). */
  dataRequests: CustomerDataRequestRecord[];
  dataRequestSerial: number;
  /** Bearer instruments: keys, policy, instruments and reservations (instruments-state.ts). */
  instruments: InstrumentsState;
  /** Mall-wide lots (lots-state.ts). */
  mallLots: MallLotsState;
}

/** How far back the state keeps data requests; the journal keeps every one. */
export const DATA_REQUESTS_KEPT_MAX = 10_000;
/** Time before any recorded fee schedule. */
export const BEFORE_RECORDS = '1970-01-01T00:00:00.000Z';

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
    feeHistory: [{ at: BEFORE_RECORDS, fees: feesDict(ZERO_FEES) }],
    customers: dict(),
    customerSales: dict(),
    wallets: dict(),
    walletHeld: dict(),
    authorisations: dict(),
    openAuthorisations: dict(),
    authorisationSerial: 0,
    walletPins: dict(),
    requestKeys: dict(),
    dataRequests: [],
    dataRequestSerial: 0,
    instruments: emptyInstrumentsState(),
    mallLots: emptyMallLotsState(),
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
    exchanges: 0,
    tokensExchanged: dict(),
    compensationPayableMinor: 0,
    compensationReceivableMinor: 0,
    serviceChargeMinor: 0,
    dataTollMinor: 0,
    tokensIssued: dict(),
    issuedCashMinor: 0,
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
    for (const [day, t] of Object.entries(byDay)) {
      d[day] = { ...emptyDay(), ...t, tokensRedeemed: dict(t.tokensRedeemed), tokensReturned: dict(t.tokensReturned), tokensExchanged: dict(t.tokensExchanged), tokensIssued: dict(t.tokensIssued) };
    }
    days[vendor] = d;
  }
  const vendors: Dict<VendorRecord> = dict();
  for (const [id, v] of Object.entries(raw.vendors ?? {})) {
    const tokens: Dict<TokenTally> = dict();
    for (const [code, t] of Object.entries(v.tokens ?? {})) tokens[code] = { ...emptyTally(), ...t };
    vendors[id] = { ...v, lastEventAt: v.lastEventAt ?? null, gapDecision: v.gapDecision ?? null, reversedSales: dict(v.reversedSales), tokens, walletPostings: dict(v.walletPostings), ...(v.lots === undefined ? {} : { lots: dict(v.lots) }) };
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
    feeHistory: (raw.feeHistory ?? [{ at: BEFORE_RECORDS, fees: raw.fees }]).map((h) => ({ at: h.at, fees: feesDict(h.fees) })),
    customers: dict(raw.customers),
    customerSales: nested(raw.customerSales),
    wallets: nested(raw.wallets),
    walletHeld: nested(raw.walletHeld),
    authorisations: dict(raw.authorisations),
    openAuthorisations: dict(raw.openAuthorisations),
    authorisationSerial: raw.authorisationSerial ?? 0,
    walletPins: revivePins(raw.walletPins),
    requestKeys: dict(raw.requestKeys),
    dataRequests: raw.dataRequests ?? [],
    dataRequestSerial: raw.dataRequestSerial ?? 0,
    instruments: reviveInstrumentsState(raw.instruments),
    mallLots: reviveMallLotsState(raw.mallLots as MallLotsState | undefined),
  };
}

function revivePins(raw: Record<string, WalletPinRecord> | undefined): Dict<WalletPinRecord> {
  const out: Dict<WalletPinRecord> = dict();
  for (const [card, p] of Object.entries(raw ?? {})) out[card] = { ...p, failedBy: dict(p.failedBy) };
  return out;
}

function nested<T>(raw: Record<string, Record<string, T>> | undefined): Dict<Dict<T>> {
  const out: Dict<Dict<T>> = dict();
  for (const [k, inner] of Object.entries(raw ?? {})) out[k] = dict(inner);
  return out;
}

export function emptyTally(): TokenTally {
  // The wallet and exchange counts appear once a vendor has any, so older views keep their shape.
  return { allottedUnits: 0, redeemedUnits: 0 };
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
    else if (t.kind === 'compensation') d.compensationPayableMinor = add(d.compensationPayableMinor, t.amountMinor);
    else if (t.kind === 'service-charge') d.serviceChargeMinor = add(d.serviceChargeMinor, t.amountMinor);
    else if (t.kind === 'data-toll') d.dataTollMinor = add(d.dataTollMinor, t.amountMinor);
    else if (t.kind === 'double-spend') d.doubleSpendChargedMinor = add(d.doubleSpendChargedMinor ?? 0, t.amountMinor);
    else d.allotmentPurchasesMinor = add(d.allotmentPurchasesMinor, t.amountMinor);
    d.netMinor = sub(d.netMinor, t.amountMinor);
  }
  const payee = vendorOf(state, t.to);
  if (payee !== null) {
    const d = dayTotals(state, payee, (day ??= utcDay(at)));
    if (t.kind === 'reimbursement') d.reimbursementReceivableMinor = add(d.reimbursementReceivableMinor, t.amountMinor);
    else if (t.kind === 'compensation') d.compensationReceivableMinor = add(d.compensationReceivableMinor, t.amountMinor);
    else if (t.kind === 'double-spend') d.doubleSpendRecoveredMinor = add(d.doubleSpendRecoveredMinor ?? 0, t.amountMinor);
    d.netMinor = add(d.netMinor, t.amountMinor);
  }
}

export function tally(v: VendorRecord, token: string): TokenTally {
  return own(v.tokens, token) ?? (v.tokens[token] = emptyTally());
}

/**
 * Whether a committed event may change how a batch of another vendor is judged
 * (judge.ts). Every event does but a batch whose effects stay in its own vendor's record
 * (its tallies, days, lots and customers' purchase summaries) and in the clearing ledger,
 * none of which judging reads for another vendor: a batch that registers no card, moves
 * nothing in or out of a wallet, raises no alarm, touches no instrument and takes no
 * allotment. Registry changes and every other event count. A batch judged outside the
 * write lock of a shared store is used under it only if no such event came in between
 * (ingest.ts).
 */
export function changesJudging(event: MallEvent): boolean {
  if (event.type !== 'batch.ingested') return true;
  const b = event.data;
  const e = b.economy;
  return (e !== undefined && (e.customers.length > 0 || e.wallet.length > 0 || e.alarms.length > 0)) || b.instruments !== undefined || b.allotmentsUsed.length > 0;
}

/** The event types that change the registry; a batch is judged against the registry as of a count of them. */
export const REGISTRY_EVENT_TYPES: ReadonlySet<MallEvent['type']> = new Set<MallEvent['type']>([
  'vendor.registered', 'key.added', 'key.retired', 'key.revoked', 'token-type.upserted', 'fees.set', 'party.added', 'allotment.issued', 'gap.decided',
  // Wallet holds and customer data requests change what later batches are judged against (and what the mall charged):
  // they are signed into the registry history, so an audit replays them in order.
  'wallet.authorised', 'wallet.closed', 'customer-data.requested',
  // Wallet PINs and their wrong-PIN counts decide which holds the mall grants; kept in the same history.
  'wallet.pin-set', 'wallet.pin-failed', 'wallet.pin-reset', 'wallet.unlocked',
  // Instrument keys, the policy, issues, reservations and voids decide how later batches are judged.
  'instruments.key-added', 'instruments.key-withdrawn', 'instruments.policy-set', 'instruments.issued', 'instruments.reserved', 'instruments.released', 'instruments.voided',
  // Mall lots hold wallet units and take them at close: later holds and batches are judged against that.
  'mall-lot.opened', 'mall-lot.bid', 'mall-lot.cancelled', 'mall-lot.closed',
]);

/** Applies what the mall cleared for one vendor event. */
export function applyClearing(state: MallState, vendor: VendorRecord, c: ClearingRecord): void {
  const day = utcDay(c.at);
  const d = dayTotals(state, vendor.id, day);
  if (c.type === 'exchange') {
    d.exchanges += 1;
    for (const [token, units] of Object.entries(c.tokens)) {
      addTo(d.tokensExchanged, token, units);
      const fromCard = units - (own(c.fromWallet ?? {}, token) ?? 0);
      const t = tally(vendor, token);
      t.exchangedUnits = add(t.exchangedUnits ?? 0, fromCard);
    }
    for (const t of c.transfers) transferOnDay(state, t, c.at, day);
    return;
  }
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
  for (const [token, units] of Object.entries(c.fromWallet ?? {})) {
    const t = tally(vendor, token);
    t.walletRedeemedUnits = add(t.walletRedeemedUnits ?? 0, units);
  }
  for (const [token, units] of Object.entries(c.fromInstruments ?? {})) {
    const t = tally(vendor, token);
    t.instrumentRedeemedUnits = add(t.instrumentRedeemedUnits ?? 0, units);
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
        walletPostings: dict(),
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
      state.feeHistory.push({ at: event.at, fees: feesDict(event.data) });
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
      if (b.economy !== undefined) applyEconomy(state, v, b.seq, b.hash, b.kid, event.at, b.economy);
      if (b.instruments !== undefined) applyInstruments(state, v, b.seq, b.hash, b.kid, event.at, b.instruments);
      if (b.lots !== undefined) {
        const lots = (v.lots ??= dict());
        for (const id of Object.keys(b.lots)) lots[id] = b.lots[id] as LotRecord;
      }
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
      recordAlarm(state, event.data, event.at);
      break;
    case 'wallet.authorised':
      applyAuthorised(state, event.data, event.at);
      break;
    case 'wallet.closed':
      applyClosed(state, event.data, event.at);
      break;
    case 'customer-data.requested':
      applyDataRequest(state, event.data, event.at);
      break;
    case 'wallet.pin-set':
      applyPinSet(state, event.data, event.at);
      break;
    case 'wallet.pin-failed':
      applyPinFailed(state, event.data, event.at);
      break;
    case 'wallet.pin-reset': {
      const p = own(state.walletPins, event.data.card);
      assert(p !== undefined && p.lockedAt === null, `the wallet PIN of ${event.data.card} is set and not locked before a reset`);
      p.failures = 0;
      p.failedBy = dict();
      break;
    }
    case 'instruments.key-added':
    case 'instruments.key-withdrawn':
    case 'instruments.policy-set':
    case 'instruments.issued':
    case 'instruments.reserved':
    case 'instruments.released':
    case 'instruments.voided':
      applyInstrumentEvent(state.instruments, state.requestKeys, event);
      break;
    case 'mall-lot.opened':
    case 'mall-lot.bid':
    case 'mall-lot.cancelled':
    case 'mall-lot.closed':
      applyMallLotEvent(state.mallLots, state, event);
      break;
    case 'wallet.unlocked': {
      const p = own(state.walletPins, event.data.card);
      assert(p !== undefined, `the wallet of ${event.data.card} has a PIN to unlock`);
      p.failures = 0;
      p.failedBy = dict();
      p.lockedAt = null;
      break;
    }
    default: {
      const never: never = event;
      assert(false, `unknown mall event type ${(never as { type: string }).type}`);
    }
  }
  if (REGISTRY_EVENT_TYPES.has(event.type)) state.registrySeq += 1;
  state.seq = event.seq;
  state.hash = hash;
}

function recordAlarm(state: MallState, data: AlarmData, at: string): void {
  state.alarmSerial += 1;
  state.alarms.push({ ...data, at });
  if (state.alarms.length > ALARMS_KEPT_MAX) state.alarms.splice(0, state.alarms.length - ALARMS_KEPT_MAX);
  state.totals.alarms += 1;
}

function cell(map: Dict<Dict<number>>, outer: string, inner: string, n: number): void {
  const m = own(map, outer) ?? (map[outer] = dict());
  addTo(m, inner, n);
  if (Object.keys(m).length === 0) delete map[outer];
}

/** The wallet units of a card in a token (0 when none). */
export function walletUnits(state: Readonly<MallState>, card: string, token: string): number {
  const w = own(state.wallets, card);
  return w === undefined ? 0 : (own(w, token) ?? 0);
}

/** Units held by open authorisations of a card in a token. */
export function heldUnits(state: Readonly<MallState>, card: string, token: string): number {
  const w = own(state.walletHeld, card);
  return w === undefined ? 0 : (own(w, token) ?? 0);
}

/** `<vendor> <key>`: the idempotency slot of a vendor's request (neither pattern holds a space). */
export function requestSlot(vendor: string, key: string): string {
  return `${vendor} ${key}`;
}

function applyAuthorised(state: MallState, a: WalletAuthorisedData, at: string): void {
  assert(own(state.authorisations, a.id) === undefined, `authorisation ${a.id} made once`);
  assert(walletUnits(state, a.card, a.token) - heldUnits(state, a.card, a.token) >= a.units, `authorisation ${a.id} is covered by the wallet`);
  state.authorisationSerial += 1;
  state.authorisations[a.id] = { id: a.id, vendor: a.vendor, card: a.card, token: a.token, units: a.units, purpose: a.purpose, createdAt: at, expiresAt: a.expiresAt, status: 'open', eventSeq: null, closedAt: null };
  cell(state.walletHeld, a.card, a.token, a.units);
  state.openAuthorisations[a.id] = a.expiresAt;
  state.requestKeys[requestSlot(a.vendor, a.key)] = { bodyHash: a.bodyHash, answer: a.answer };
}

/** Ends an open hold; a capture also takes the units out of the wallet. */
function closeHold(state: MallState, auth: AuthorisationRecord, how: AuthorisationRecord['status'], eventSeq: number | null, at: string): void {
  assert(auth.status === 'open', `authorisation ${auth.id} is open before it is ${how}`);
  cell(state.walletHeld, auth.card, auth.token, 0 - auth.units);
  delete state.openAuthorisations[auth.id];
  if (how === 'captured') cell(state.wallets, auth.card, auth.token, 0 - auth.units);
  auth.status = how;
  auth.eventSeq = eventSeq;
  auth.closedAt = at;
}

function applyClosed(state: MallState, c: WalletClosedData, at: string): void {
  const auth = own(state.authorisations, c.id);
  assert(auth !== undefined && auth.vendor === c.vendor, `authorisation ${c.id} of ${c.vendor} exists`);
  if (auth.status === 'captured') {
    // A batch judged before this entry and committed after it can capture the hold first:
    // the audit replays batches in the order they were judged. Either way the wallet is
    // debited once; a hold already captured is neither captured again nor released.
    assert(c.how !== 'captured' || auth.eventSeq === c.eventSeq, `authorisation ${auth.id} captured by event ${c.eventSeq}`);
  } else {
    closeHold(state, auth, c.how, c.eventSeq, at);
  }
  if (c.key !== null && c.bodyHash !== null) state.requestKeys[requestSlot(c.vendor, c.key)] = { bodyHash: c.bodyHash, answer: c.how === 'released' ? { released: true } : { captured: true } };
}

function applyDataRequest(state: MallState, r: CustomerDataRequestedData, at: string): void {
  state.dataRequestSerial += 1;
  state.dataRequests.push({ requestId: r.requestId, requester: r.requester, card: r.card, home: r.home, at, tollMinor: r.tollMinor });
  if (state.dataRequests.length > DATA_REQUESTS_KEPT_MAX) state.dataRequests.splice(0, state.dataRequests.length - DATA_REQUESTS_KEPT_MAX);
  state.requestKeys[requestSlot(r.requester, r.key)] = { bodyHash: r.bodyHash, answer: r.answer };
  for (const t of r.transfers) applyTransfer(state, t, at);
}

function applyPinSet(state: MallState, d: WalletPinSetData, at: string): void {
  const prior = own(state.walletPins, d.card);
  assert(prior === undefined || prior.lockedAt === null, `the wallet of ${d.card} is not locked when its PIN is set`);
  // A new PIN (set with the old one, which was right) starts with no wrong PINs.
  state.walletPins[d.card] = { hash: d.hash, setAt: at, setBy: d.vendor, failures: 0, failedBy: dict(), lockedAt: null };
  state.requestKeys[requestSlot(d.vendor, d.key)] = { bodyHash: d.bodyHash, answer: d.answer };
}

function applyPinFailed(state: MallState, d: WalletPinFailedData, at: string): void {
  const p = own(state.walletPins, d.card);
  assert(p !== undefined && p.lockedAt === null, `the wallet of ${d.card} has a PIN and is not locked when a wrong one counts`);
  assert(d.failures === p.failures + 1, `wrong PIN ${d.failures} of ${d.card} follows ${p.failures}`);
  assert(d.locked === d.failures >= WALLET_PIN_FAILURES_MAX, `the wallet of ${d.card} locks at ${WALLET_PIN_FAILURES_MAX} wrong PINs`);
  p.failures = d.failures;
  p.failedBy[d.vendor] = (own(p.failedBy, d.vendor) ?? 0) + 1;
  if (!d.locked) return;
  p.lockedAt = at;
  const stores = Object.entries(p.failedBy)
    .map(([v, n]) => `${v}: ${n}`)
    .join(', ');
  recordAlarm(
    state,
    {
      id: `alarm-${String(state.alarmSerial + 1).padStart(6, '0')}`,
      kind: 'wallet-pin',
      vendor: d.vendor,
      batchSeq: 0,
      storedHash: ZERO_HASH,
      receivedHash: ZERO_HASH,
      kid: '',
      card: d.card,
      message: `the wallet of card ${d.card} is locked after ${d.failures} wrong PINs (${stores})`,
    },
    at,
  );
}

/** Applies what a batch changed beyond clearing: the directory, wallets, tallies, issuance and purchase summaries. */
function applyEconomy(state: MallState, v: VendorRecord, batchSeq: number, batchHash: string, kid: string, at: string, e: BatchEconomy): void {
  for (const r of e.customers) {
    const entry = own(state.customers, r.card);
    if (entry === undefined) {
      state.customers[r.card] = { card: r.card, home: v.id, customer: r.customer, consent: r.consent, registeredAt: r.at, name: r.name ?? null, contact: r.contact ?? null, alsoAt: [] };
    } else if (entry.home === v.id && entry.customer === r.customer) {
      // The home store registering the card again (a change of consent or contact) replaces what it said before.
      entry.consent = r.consent;
      entry.name = r.name ?? null;
      entry.contact = r.contact ?? null;
    } else if (!entry.alsoAt.some((x) => x.vendor === v.id && x.customer === r.customer)) {
      entry.alsoAt.push({ vendor: v.id, customer: r.customer, at: r.at });
    }
  }
  for (const w of e.wallet) {
    if (w.kind === 'capture') {
      const auth = own(state.authorisations, w.authorisation);
      assert(auth !== undefined && auth.vendor === v.id, `authorisation ${w.authorisation} of ${v.id} exists`);
      if (auth.status === 'open') closeHold(state, auth, 'captured', w.eventSeq, at);
      else if (auth.status === 'captured') assert(auth.eventSeq === w.eventSeq, `authorisation ${auth.id} captured by event ${w.eventSeq}`);
      else {
        // Released or expired before the event arrived, and the wallet still covers it: honoured late.
        auth.status = 'captured';
        auth.eventSeq = w.eventSeq;
        auth.closedAt = at;
        cell(state.wallets, auth.card, auth.token, 0 - auth.units);
      }
    } else {
      cell(state.wallets, w.card, w.token, w.units);
    }
  }
  for (const [token, n] of Object.entries(e.walletPostings)) addTo(v.walletPostings, token, n);
  for (const [token, n] of Object.entries(e.walletOut)) {
    const t = tally(v, token);
    t.walletOutUnits = add(t.walletOutUnits ?? 0, n);
  }
  for (const [token, n] of Object.entries(e.walletIn)) {
    const t = tally(v, token);
    t.walletInUnits = add(t.walletInUnits ?? 0, n);
  }
  for (const i of e.issued) {
    const d = dayOf(state, v.id, i.at);
    addTo(d.tokensIssued, i.token, i.units);
    d.issuedCashMinor = add(d.issuedCashMinor, i.cashMinor);
  }
  const byCustomer = own(state.customerSales, v.id) ?? (state.customerSales[v.id] = dict());
  for (const s of e.customerSales) {
    const p = own(byCustomer, s.customer) ?? (byCustomer[s.customer] = { sales: 0, spentMinor: 0, firstAt: null, lastAt: null });
    p.sales += s.sales;
    p.spentMinor = add(p.spentMinor, s.spentMinor);
    if (p.firstAt === null || s.firstAt < p.firstAt) p.firstAt = s.firstAt;
    if (p.lastAt === null || s.lastAt > p.lastAt) p.lastAt = s.lastAt;
  }
  for (const a of e.alarms) {
    recordAlarm(state, { ...a, id: `alarm-${String(state.alarmSerial + 1).padStart(6, '0')}`, batchSeq, storedHash: batchHash, receivedHash: batchHash, kid }, at);
  }
}

/** Applies what a batch did to instruments, with its tallies, statement figures and double-spend alarms. */
function applyInstruments(state: MallState, v: VendorRecord, batchSeq: number, batchHash: string, kid: string, at: string, e: NonNullable<BatchIngestedData['instruments']>): void {
  applyInstrumentBatch(state.instruments, v.id, e, (a) => {
    recordAlarm(
      state,
      { id: `alarm-${String(state.alarmSerial + 1).padStart(6, '0')}`, kind: 'double-spend', vendor: v.id, batchSeq, storedHash: batchHash, receivedHash: batchHash, kid, eventSeq: a.eventSeq, instrument: a.code, stores: [...a.stores], message: a.message },
      at,
    );
  });
  const rec = (code: string): InstrumentRecord => {
    const r = own(state.instruments.records, code);
    assert(r !== undefined, `instrument ${code} is recorded`);
    return r;
  };
  for (const s of e.sold) {
    const t = tally(v, rec(s.code).token);
    t.instrumentSoldUnits = add(t.instrumentSoldUnits ?? 0, rec(s.code).faceUnits);
  }
  for (const x of e.voids) {
    const t = tally(v, rec(x.code).token);
    t.instrumentSoldUnits = sub(t.instrumentSoldUnits ?? 0, rec(x.code).faceUnits);
  }
  for (const u of e.uses) {
    if (u.excessUnits === 0) continue;
    const d = dayOf(state, v.id, u.at);
    d.instrumentsDoubleSpent = (d.instrumentsDoubleSpent ?? 0) + 1;
    const issuer = rec(u.code).issuer;
    if (u.lossBorneBy === 'issuer' && own(state.vendors, issuer) !== undefined) {
      const di = dayOf(state, issuer, u.at);
      di.doubleSpendIssuerLossMinor = add(di.doubleSpendIssuerLossMinor ?? 0, u.lossMinor);
    }
  }
}

/** The fee schedule in force at a time: the last one set at or before it. */
export function feesAt(state: Readonly<MallState>, at: string): FeeSchedule {
  const ms = Date.parse(at);
  let found = state.feeHistory[0]?.fees ?? state.fees;
  for (const h of state.feeHistory) {
    if (Date.parse(h.at) <= ms) found = h.fees;
    else break;
  }
  return found;
}

/** The sum of all positions: zero whenever the state is consistent. */
export function positionsSum(state: MallState): number {
  let total = 0n;
  for (const v of Object.values(state.positions)) total += BigInt(v);
  return Number(total);
}


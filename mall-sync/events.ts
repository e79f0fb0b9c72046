import type { MallLotBidData, MallLotCancelledData, MallLotClosedData, MallLotOpenedData } from './lots-state.ts';
import type { FeeSchedule, FlattenedJws, InstrumentPolicy, TokenType } from '../core/index.ts';
import type { InstrumentBatchEffects, InstrumentKeyAddedData, InstrumentReleasedData, InstrumentReservedData, InstrumentsIssuedData, InstrumentVoidedAtMallData } from './instruments-state.ts';
import type { PublicSigningJwk } from '../platform/key-files.ts';

/**
 * Events of the mall's journal. Every change of the mall's state is one of these,
 * appended to a hash-chained journal (the same Journal the vendor server uses) and then
 * applied to the materialised state by `applyMallEvent`, live and on replay alike.
 * An event carries everything its application needs (the clearing transfers of a batch
 * are computed once, at ingestion, and stored), so a replay never re-reads a registry
 * that may have changed since.
 */
export const MALL_EVENT_VERSION = 1;

/** Clearing accounts: `mall`, `vendor:<id>`, `issuer:<party>` (a party that is not a vendor). */
export const MALL_ACCOUNT = 'mall';

export function vendorAccount(vendorId: string): string {
  return `vendor:${vendorId}`;
}

export function issuerPartyAccount(party: string): string {
  return `issuer:${party}`;
}

/** `double-spend`: a store that took an instrument beyond the offline policy pays back the excess it was reimbursed. */
export type TransferKind = 'royalty' | 'reimbursement' | 'toll' | 'allotment' | 'compensation' | 'service-charge' | 'data-toll' | 'double-spend';

/**
 * One double-entry movement of fiat minor units: `from` owes `to` `amountMinor`.
 * A reversal stores the original transfers with negated amounts and units, so
 * aggregates net out and positions return exactly to where they were.
 */
export interface Transfer {
  kind: TransferKind;
  from: string;
  to: string;
  amountMinor: number;
  /** The token type the transfer is about (null for a toll covering a whole reimbursement). */
  token: string | null;
  /** Tokens exchanged in the transaction (claim 29); 0 for a toll. */
  units: number;
  /** The royalty rate applied, for royalties. */
  bps?: number;
}

/** What the mall cleared for one vendor event (a redemption, its reversal, or an exchange). */
export interface ClearingRecord {
  eventSeq: number;
  at: string;
  type: 'sale' | 'reversal' | 'exchange';
  /** The reversed sale's event seq (reversals only). */
  saleSeq: number | null;
  /** Tokens redeemed by type; negative for a reversal. */
  tokens: Record<string, number>;
  /** Face value of the tokens redeemed; negative for a reversal. */
  grossMinor: number;
  transfers: Transfer[];
  /**
   * The part of `tokens` taken from the mall wallet rather than a card at the vendor
   * (absent: none). Those tokens never were in the vendor's own circulation.
   */
  fromWallet?: Record<string, number>;
  /** The wallet authorisations a sale captured, with their cards (a reversal gives them back). */
  walletUses?: WalletUseRecord[];
  /** The part of `tokens` paid by bearer instruments (absent: none): never in the vendor's circulation. */
  fromInstruments?: Record<string, number>;
  /** The instruments a sale used, as the mall honoured them (a reversal gives them back). */
  instrumentUses?: InstrumentUseRecord[];
}

/** One instrument a sale used: what the mall honoured, and the excess beyond what remained on it. */
export interface InstrumentUseRecord {
  code: string;
  token: string;
  units: number;
  honouredUnits: number;
  excessUnits: number;
  /** What the use took off the instrument's value (a coupon: all of it); a reversal gives it back. */
  consumedUnits: number;
  reservation: string | null;
  /** Who bears the excess (null when there is none). */
  lossBorneBy: 'issuer' | 'store' | null;
}

/** Wallet tokens a vendor event took under one authorisation. */
export interface WalletUseRecord {
  authorisation: string;
  card: string;
  token: string;
  units: number;
}

/** A vendor event the mall did not clear, and why. */
export interface FlaggedRecord {
  vendor: string;
  batchSeq: number;
  eventSeq: number;
  /** The event's own time, or the ingestion time when the event's time is unreadable. */
  at: string;
  type: string;
  reason: string;
}

export type PublicJwk = PublicSigningJwk;

export type PartyKind = 'manufacturer' | 'issuer';

/**
 * A tamper or loss alarm. `fork`: a different batch under an ingested seq (the two
 * hashes). `wallet`: a vendor event used a wallet authorisation the wallet no longer
 * covers (names the card and authorisation; both hashes are the carrying batch's).
 * `wallet-pin`: a card's wallet was locked after wrong PINs (names the card; `vendor` is
 * the store that sent the last one, the message every store that sent any; no batch:
 * `batchSeq` 0 and zero hashes).
 */
export interface AlarmData {
  id: string;
  /** `double-spend`: an instrument redeemed beyond its value by stores that could not see each other (names the code and the stores). */
  kind: 'fork' | 'wallet' | 'wallet-pin' | 'double-spend';
  vendor: string;
  batchSeq: number;
  storedHash: string;
  receivedHash: string;
  kid: string;
  message: string;
  card?: string;
  authorisation?: string;
  eventSeq?: number;
  /** The instrument's short code and every store that redeemed it (double spends). */
  instrument?: string;
  stores?: string[];
}

/**
 * An admin's decision on a gap in a vendor's batches (a batch seen ahead of the next one
 * the mall expects): `wait` for the missing batches, or `resend`: the vendor must send
 * its batches again from `resendFromSeq`. Reconcile then reports the gap as decided.
 */
export interface GapDecisionData {
  vendor: string;
  decision: 'wait' | 'resend';
  expectedSeq: number;
  seenSeq: number;
  resendFromSeq: number | null;
  note: string;
}

export interface BatchIngestedData {
  vendor: string;
  seq: number;
  hash: string;
  kid: string;
  fromSeq: number;
  toSeq: number;
  createdAt: string;
  lastEventSeq: number;
  lastEventHash: string;
  /** The signed ack exactly as sent, so a replay returns the same bytes. */
  ack: FlattenedJws;
  clearing: ClearingRecord[];
  flagged: FlaggedRecord[];
  /** Mall allotments this batch took into the vendor's float: id -> event seq. */
  allotmentsUsed: { id: string; eventSeq: number }[];
  /** The latest event time accepted from the vendor after this batch. */
  lastEventAt?: string | null;
  /** The registry the batch was judged against (how many registry events had been applied). */
  registrySeq?: number;
  /** What the batch changed in the customer directory, the wallets and the issuance tally (economy.ts); absent when nothing. */
  economy?: BatchEconomy;
  /** What the batch changed of bearer instruments (instruments-state.ts); absent when nothing. */
  instruments?: InstrumentBatchEffects;
  /** The auction lots the batch listed, bid on or closed, as they stand after it (lot id -> record); absent when none. */
  lots?: Record<string, LotRecord>;
}

/**
 * An auction lot of a vendor as the mall follows it from the batches: the escrow holds
 * exactly the high bid while the lot is open, and a lot closes once, by its one sale or
 * unsold (core/auctions.ts).
 */
export interface LotRecord {
  token: string;
  status: 'open' | 'closed' | 'cancelled';
  high: { customer: string; units: number } | null;
  /** The event that closed or cancelled the lot. */
  closedBy: number | null;
  /** The event seq of the sale a sold lot became. */
  saleSeq: number | null;
}

/** A customer registration as the directory records it: name and contact only with the customer's consent. */
export interface CustomerRegistration {
  card: string;
  customer: string;
  consent: boolean;
  at: string;
  eventSeq: number;
  name?: string;
  contact?: { email?: string; phone?: string };
}

/** One change of a wallet made by a vendor event. */
export type WalletEffect =
  /** to-wallet: the card's wallet gains the units. */
  | { kind: 'credit'; card: string; token: string; units: number; eventSeq: number }
  /** A sale, exchange or from-wallet move used an authorisation: captured now (late: after it was released or expired). */
  | { kind: 'capture'; authorisation: string; card: string; token: string; units: number; eventSeq: number; late: boolean }
  /** A reversed wallet-paid sale gives the units back to the card's wallet. */
  | { kind: 'refund'; card: string; token: string; units: number; eventSeq: number; authorisation: string };

/** Sales of one customer at the vendor in a batch, net of its reversals (the purchase summary). */
export interface CustomerSalesDelta {
  customer: string;
  sales: number;
  spentMinor: number;
  firstAt: string;
  lastAt: string;
}

export interface BatchEconomy {
  customers: CustomerRegistration[];
  wallet: WalletEffect[];
  /** Tokens the vendor issued to customers (bought or rewarded), by event. */
  issued: { eventSeq: number; at: string; token: string; units: number; cashMinor: number; reason: 'purchase' | 'reward' }[];
  /** The net of the batch's postings on the vendor's `mall-wallet` account per token, flagged events included. */
  walletPostings: Record<string, number>;
  /** Units of tokens moved to (out) and from (in) the wallet at the vendor's cards, per token. */
  walletOut: Record<string, number>;
  walletIn: Record<string, number>;
  customerSales: CustomerSalesDelta[];
  /** Wallet alarms raised by the batch (the state gives them ids and the batch's seq, hash and key). */
  alarms: { kind: 'wallet'; vendor: string; card: string; authorisation: string; eventSeq: number; message: string }[];
}

/** A hold on wallet tokens for one vendor (claim 36). */
export interface WalletAuthorisedData {
  id: string;
  vendor: string;
  card: string;
  token: string;
  units: number;
  purpose: 'sale' | 'exchange' | 'withdraw';
  expiresAt: string;
  key: string;
  bodyHash: string;
  /** The answer as sent, so a retry with the same key gets the same bytes. */
  answer: unknown;
}

/** The end of an open hold: released by the vendor, expired by the mall's timer, or captured through the API. */
export interface WalletClosedData {
  id: string;
  vendor: string;
  how: 'released' | 'expired' | 'captured';
  /** The vendor event that used it (captures). */
  eventSeq: number | null;
  /** The vendor's idempotency key and body hash (null for an expiry). */
  key: string | null;
  bodyHash: string | null;
}

/**
 * A wallet PIN chosen or changed at a store. Only the mall's salted scrypt hash is kept
 * (`scrypt$N$r$p$<salt hex>$<hash hex>`), never the PIN; the idempotency body hash leaves
 * the PIN out.
 */
export interface WalletPinSetData {
  card: string;
  vendor: string;
  hash: string;
  key: string;
  bodyHash: string;
  answer: unknown;
}

/** A wrong wallet PIN sent by a store: the card's count after it, and whether it locked the wallet. */
export interface WalletPinFailedData {
  card: string;
  vendor: string;
  failures: number;
  locked: boolean;
}

/** A vendor's request for another store's customer data (claim 41), with its toll and the answer given. */
export interface CustomerDataRequestedData {
  requestId: string;
  requester: string;
  card: string;
  home: string;
  homeCustomer: string;
  key: string;
  bodyHash: string;
  tollMinor: number;
  transfers: Transfer[];
  answer: unknown;
}

export interface AllotmentIssuedData {
  id: string;
  vendor: string;
  token: string;
  units: number;
  reference: string;
  faceValueMinor: number;
  /** What the vendor owes for the tokens (mall tokens are bought at face value); 0 otherwise. */
  purchaseMinor: number;
  transfers: Transfer[];
  key: string;
  bodyHash: string;
}

export interface MallEventBase {
  seq: number;
  prev: string;
  v: typeof MALL_EVENT_VERSION;
  at: string;
}

export type MallEvent = MallEventBase &
  (
    | { type: 'vendor.registered'; data: { id: string; name: string } }
    | { type: 'key.added'; data: { vendor: string; kid: string; jwk: PublicJwk; retired: string | null; retiredAtSeq?: number | null } }
    | { type: 'key.retired'; data: { vendor: string; kid: string; retiredAtSeq?: number | null } }
    | { type: 'key.revoked'; data: { vendor: string; kid: string; reason: string } }
    | { type: 'token-type.upserted'; data: TokenType }
    | { type: 'fees.set'; data: FeeSchedule }
    | { type: 'party.added'; data: { id: string; name: string; kind: PartyKind } }
    | { type: 'allotment.issued'; data: AllotmentIssuedData }
    | { type: 'batch.ingested'; data: BatchIngestedData }
    | { type: 'alarm.recorded'; data: AlarmData }
    | { type: 'gap.decided'; data: GapDecisionData }
    | { type: 'wallet.authorised'; data: WalletAuthorisedData }
    | { type: 'wallet.closed'; data: WalletClosedData }
    | { type: 'customer-data.requested'; data: CustomerDataRequestedData }
    | { type: 'wallet.pin-set'; data: WalletPinSetData }
    | { type: 'wallet.pin-failed'; data: WalletPinFailedData }
    /** A right PIN after wrong ones: the count starts again. */
    | { type: 'wallet.pin-reset'; data: { card: string; vendor: string } }
    /** The mall operator lifted a lock (or cleared the count). */
    | { type: 'wallet.unlocked'; data: { card: string } }
    // Bearer instruments (instruments-state.ts).
    | { type: 'instruments.key-added'; data: InstrumentKeyAddedData }
    | { type: 'instruments.key-withdrawn'; data: { kid: string; reason: string } }
    | { type: 'instruments.policy-set'; data: InstrumentPolicy }
    | { type: 'instruments.issued'; data: InstrumentsIssuedData }
    | { type: 'instruments.reserved'; data: InstrumentReservedData }
    | { type: 'instruments.released'; data: InstrumentReleasedData }
    | { type: 'instruments.voided'; data: InstrumentVoidedAtMallData }
    // Mall-wide lots (lots-state.ts).
    | { type: 'mall-lot.opened'; data: MallLotOpenedData }
    | { type: 'mall-lot.bid'; data: MallLotBidData }
    | { type: 'mall-lot.cancelled'; data: MallLotCancelledData }
    | { type: 'mall-lot.closed'; data: MallLotClosedData }
  );

export type MallEventType = MallEvent['type'];

/** Distributes Omit over the union so each event type keeps its own data shape. */
export type NewMallEvent = MallEvent extends infer E ? (E extends MallEvent ? Omit<E, 'prev' | 'seq' | 'v'> : never) : never;

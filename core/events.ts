import type { CashMovedData, ClosureReport, NoSaleData, ReprintData, ShiftClosedData, ShiftOpenedData } from './cashier-day.ts';
import type { ExchangeQuote, TokenPayment, TokenSource } from './economy.ts';
import type { InstrumentSoldData, InstrumentUse, InstrumentVoidedData } from './instruments.ts';
import type { Posting } from './ledger.ts';
import type { Allocation, PricedLine, Product } from './pricing.ts';
import type { LotBidData, LotCancelledData, LotClosedData, LotSpec, SaleLot } from './auctions.ts';
import type { TokenType } from './token-types.ts';

/**
 * Events of a vendor's journal. Each carries what the mall needs later, so a batch can
 * ship events exactly as they were journalled: the vendor, the event seq and the hash
 * of the previous event (set by the journal), time, terminal and cashier, the type,
 * postings where money moved, and the idempotency key with the hash of the request.
 */
export const EVENT_VERSION = 1;

export interface EventBase {
  seq: number;
  prev: string;
  v: typeof EVENT_VERSION;
  vendor: string;
  at: string;
  terminal: string | null;
  cashier: string | null;
  key: string | null;
  bodyHash: string | null;
}

export interface SaleData {
  saleId: string;
  customer: string | null;
  currency: string;
  lines: PricedLine[];
  allocations: Allocation[];
  debits: Record<string, number>;
  totalMinor: number;
  cash: { dueMinor: number; tenderedMinor: number; changeMinor: number };
  balancesAfter: Record<string, number> | null;
  /** Present on a sale the till recorded while the store server was unreachable and forwarded later. */
  offline?: OfflineSaleInfo;
  /** Loyalty tokens earned by this sale (token -> units), posted from the float in the same event. */
  earned?: Record<string, number>;
  /** Tokens paid from the customer's mall wallet, each under the mall's authorisation (captured by the batch). */
  wallet?: WalletUse[];
  /**
   * Gift certificates and coupons that paid part of the sale (core/instruments.ts
   * InstrumentUse): counted in allocations and debits like tokens, posted from
   * `instruments` to `redeemed`.
   */
  instruments?: InstrumentUse[];
  /** The lot a sold auction lot's close made this sale of, paid from the lot's escrow (core/auctions.ts). */
  lot?: SaleLot;
}

/** Tokens taken from the mall wallet under one authorisation of the mall. */
export interface WalletUse {
  authorisation: string;
  token: string;
  units: number;
}

/**
 * Where an offline sale came from: the till's own number and clock, the catalog version
 * it priced from, when the server received it (the event's `at`), and each line whose
 * till price differed from the server's catalog at arrival (reported, never changed).
 */
export interface OfflineSaleInfo {
  offlineId: string;
  counter: number;
  tillAt: string;
  receivedAt: string;
  catalogVersion: number;
  priceDifferences: { code: string; tillUnitMinor: number; serverUnitMinor: number | null }[];
  /** The till's time falls in a day already closed by a Z: the sale counts in the open day instead. */
  afterZ: boolean;
}

export interface ReversalData {
  refundId: string;
  saleId: string;
  saleSeq: number;
  customer: string | null;
  reason: string;
  supervisor: string;
  cashRefundMinor: number;
  /** The refunded sale's total (minor units); absent on reversals journalled before it was recorded. */
  saleTotalMinor?: number;
  /**
   * The face value of loyalty tokens the sale earned that the customer had already spent,
   * kept back from the cash refund with the supervisor's agreement; those tokens stay with
   * the customer. Absent when nothing was kept back.
   */
  loyaltyDeductedMinor?: number;
  balancesAfter: Record<string, number> | null;
}

export interface AllotmentData {
  token: string;
  units: number;
  issuer: string;
  reference: string;
}

export interface IssuanceData {
  customer: string;
  token: string;
  units: number;
  reason: 'purchase' | 'reward';
  /** What the customer paid, in fiat minor units (face value x units for a purchase, 0 for a reward). */
  cashMinor: number;
  /** How a purchase was paid; absent on issuances made before payments were recorded. */
  payment?: TokenPayment;
  balancesAfter: Record<string, number>;
}

/**
 * An exchange of one issuer's tokens for another's at this store (claims 30, 34, 37).
 * Postings: the surrendered tokens leave the customer's card (or the store's
 * `mall-wallet` account, under the mall's authorisation) into `redeemed`, a receivable
 * from their issuer; the tokens given leave the float for the customer's card.
 */
export interface ExchangeData {
  exchangeId: string;
  customer: string;
  source: TokenSource;
  /** The mall's wallet authorisation, for source 'wallet'. */
  authorisation: string | null;
  quote: ExchangeQuote;
  /** The snapshot whose face values and fee schedule priced the exchange. */
  snapshotIssuedAt: string;
  /** Made while the mall was unreachable (card source only, within the offline limits). */
  offline: boolean;
  balancesAfter: Record<string, number>;
}

/**
 * Tokens moved between a customer's card at this store and their mall wallet (claim 36).
 * to-wallet: customer -> `mall-wallet`; the mall credits the wallet when the batch arrives.
 * from-wallet: `mall-wallet` -> customer, under the mall's authorisation.
 */
export interface WalletMoveData {
  moveId: string;
  customer: string;
  card: string;
  direction: 'to-wallet' | 'from-wallet';
  token: string;
  units: number;
  authorisation: string | null;
  balancesAfter: Record<string, number>;
}

export interface CustomerData {
  id: string;
  card: string;
  name: string;
  /** The customer agreed that member stores may ask the mall for their contact data (absent: no). */
  consent?: boolean;
  contact?: { email?: string; phone?: string };
}

export type JournalEvent = EventBase &
  (
    | { type: 'sale'; postings: Posting[]; data: SaleData }
    | { type: 'reversal'; postings: Posting[]; data: ReversalData }
    | { type: 'allotment'; postings: Posting[]; data: AllotmentData }
    | { type: 'issuance'; postings: Posting[]; data: IssuanceData }
    | { type: 'exchange'; postings: Posting[]; data: ExchangeData }
    | { type: 'wallet.moved'; postings: Posting[]; data: WalletMoveData }
    | { type: 'instrument.sold'; postings: Posting[]; data: InstrumentSoldData }
    | { type: 'instrument.voided'; postings: Posting[]; data: InstrumentVoidedData }
    | { type: 'customer.registered'; postings: []; data: CustomerData }
    | { type: 'product.upserted'; postings: []; data: Product }
    | { type: 'token-type.upserted'; postings: []; data: TokenType }
    // The cashier's day: cash in the drawer is fiat, not ledger tokens, so no postings.
    | { type: 'shift.opened'; postings: []; data: ShiftOpenedData }
    | { type: 'cash.moved'; postings: []; data: CashMovedData }
    | { type: 'shift.closed'; postings: []; data: ShiftClosedData }
    | { type: 'drawer.no-sale'; postings: []; data: NoSaleData }
    | { type: 'receipt.reprinted'; postings: []; data: ReprintData }
    | { type: 'period.closed'; postings: []; data: ClosureReport }
    // Auctions (core/auctions.ts): a bid moves units into the lot's escrow; a sold lot's close is a `sale`.
    | { type: 'lot.opened'; postings: []; data: LotSpec }
    | { type: 'lot.bid'; postings: Posting[]; data: LotBidData }
    | { type: 'lot.cancelled'; postings: []; data: LotCancelledData }
    | { type: 'lot.closed'; postings: Posting[]; data: LotClosedData }
  );

/**
 * An event as the vendor's state is folded from it: a sale without its priced lines and
 * their allocations, which only receipts, the mall and reports read. The functions that
 * fold events into state take this type, so they cannot come to depend on those parts,
 * and a replay may leave them unparsed (vendor-server/ledger/replay-parse.ts).
 */
export type StateEvent = JournalEvent extends infer E
  ? E extends { type: 'sale'; data: SaleData } ? Omit<E, 'data'> & { data: Omit<SaleData, 'lines' | 'allocations'> } : E
  : never;

export type EventType = JournalEvent['type'];
export const MONEY_EVENT_TYPES: readonly EventType[] = ['sale', 'reversal', 'allotment', 'issuance', 'exchange', 'wallet.moved', 'instrument.sold', 'instrument.voided'];
/** The cashier's day: events without postings that the mall accepts and records as they are. */
export const CASHIER_DAY_EVENT_TYPES: readonly EventType[] = ['shift.opened', 'cash.moved', 'shift.closed', 'drawer.no-sale', 'receipt.reprinted', 'period.closed'];

/** Auction events other than the sale a sold lot becomes. */
export const LOT_EVENT_TYPES: readonly EventType[] = ['lot.opened', 'lot.bid', 'lot.cancelled', 'lot.closed'];

/** Distributes Omit over the union so each event type keeps its own data shape. */
export type NewEvent = JournalEvent extends infer E ? (E extends JournalEvent ? Omit<E, 'prev'> : never) : never;

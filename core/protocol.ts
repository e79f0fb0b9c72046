import type { BidAck, LotView, MallLotBidAnswer, MallLotReceipt, MallLotView } from './auctions.ts';
import type { FlattenedJws } from './batch.ts';
import type { ExchangeQuote, TokenPayment, TokenSource } from './economy.ts';
import type { WireError } from './errors.ts';
import type { SaleData } from './events.ts';
import type { PricedCart } from './pricing.ts';

/**
 * The terminal <-> vendor-server socket.io protocol. Every request is acknowledged with
 * an Ack; money-changing requests (sale:commit, sale:refund) carry an idempotency key
 * made by the terminal before its first send (terminal id + ':' + UUID). Documented in
 * docs/PROTOCOL.md.
 */
export type Ack<T> = { ok: true; data: T } | { ok: false; error: WireError };

export interface ProductView {
  gtin: string;
  name: string;
  priceMinor: number;
  currency: string;
  tokenPrices: Record<string, number>;
}

export interface TokenBalance {
  token: string;
  name: string;
  kind: string;
  units: number;
  /** Whether these tokens can be spent in this store now. */
  spendable: boolean;
}

export interface CustomerView {
  id: string;
  card: string;
  name: string;
  balances: TokenBalance[];
  /** Whether the customer agreed to share contact data with other member stores (absent: no). */
  consent?: boolean;
}

// ---- tokens between stores ------------------------------------------------------------

/** What `tokens:sell` acknowledges: the tokens bought, how they were paid, the balances after. */
export interface TokenSaleAck {
  seq: number;
  at: string;
  token: string;
  units: number;
  priceMinor: number;
  currency: string;
  payment: TokenPayment;
  customer: CustomerView;
}

/** An exchange as priced now (`exchange:quote`) from the store's cached mall snapshot. */
export interface ExchangeView {
  quote: ExchangeQuote;
  source: TokenSource;
  /** The store cannot reach the mall: the exchange would be made offline (card source only, within limits). */
  offline: boolean;
  snapshotIssuedAt: string;
}

export interface ExchangeAck extends ExchangeView {
  exchangeId: string;
  seq: number;
  at: string;
  customer: CustomerView;
  /** The wallet after an exchange from it; null for the card source. */
  wallet: WalletView | null;
}

/** A customer's mall wallet as the mall answered it just now. */
export interface WalletView {
  card: string;
  balances: TokenBalance[];
  asOf: string;
  /** Whether the customer chose a wallet PIN (holds need it; the first deposit chooses one); absent when the mall did not say. */
  pinSet?: boolean;
  /** Locked after too many wrong PINs, until the mall operator unlocks it. */
  locked?: boolean;
}

export interface WalletMoveAck {
  moveId: string;
  seq: number;
  at: string;
  direction: 'to-wallet' | 'from-wallet';
  token: string;
  units: number;
  customer: CustomerView;
  wallet: WalletView;
}

/** What the mall released about a customer of another store (claim 41), and the toll charged for it. */
export interface CustomerDataView {
  requestId: string;
  card: string;
  home: { vendorId: string; name: string };
  name: string;
  contact: { email?: string; phone?: string };
  summary: { sales: number; spentMinor: number; currency: string; firstAt: string | null; lastAt: string | null };
  tollMinor: number;
}

/** A committed sale as the terminal sees it: the journalled sale data, with the customer named. */
export interface SaleResult extends Omit<SaleData, 'customer' | 'instruments'> {
  seq: number;
  at: string;
  terminal: string | null;
  cashier: string | null;
  customer: { id: string; name: string; card: string } | null;
  refunded: boolean;
  /** Gift certificates and coupons that paid part of the sale, without their signed form (it is the bearer's). */
  instruments?: InstrumentPaid[];
}

/**
 * What `sale:commit` acknowledges: what the till needs to close the sale (its id, what
 * was taken and handed back, the balances left), a fraction of the whole sale's size.
 * The receipt, with lines and customer, comes once from `receipt:get`.
 */
export interface SaleAck {
  saleId: string;
  seq: number;
  at: string;
  cashier: string | null;
  currency: string;
  totalMinor: number;
  debits: Record<string, number>;
  cash: SaleResult['cash'];
  balancesAfter: Record<string, number> | null;
  /** Loyalty tokens the sale earned (token -> units), already in `balancesAfter`; absent when none. */
  earned?: Record<string, number>;
  /** Gift certificates and coupons that paid part of the sale, and what remains on each. */
  instruments?: InstrumentPaid[];
}

// ---- bearer instruments at the till (vendor-server/instruments) -----------------------------

/** What one gift certificate or coupon paid in a sale, and what remains on it. */
export interface InstrumentPaid {
  code: string;
  kind: 'gift' | 'coupon';
  token: string;
  units: number;
  remainingAfter: number;
  /** Taken while the store could not reach the mall, within the mall's offline policy. */
  offline: boolean;
}

/** An instrument as `instrument:inquire` shows it: checked, with what remains on it. */
export interface InstrumentView {
  code: string;
  kind: 'gift' | 'coupon';
  issuer: string;
  token: string;
  tokenName: string;
  faceUnits: number;
  remainingUnits: number;
  /** What remains, at the token's face value (minor units of `currency`). */
  remainingMinor: number;
  currency: string;
  expiresAt: string;
  /** Where `remainingUnits` comes from: the mall now, this store's own record, or the face value (never seen, mall unreachable). */
  source: 'mall' | 'store' | 'face';
  state: 'unsold' | 'live' | 'spent' | 'voided' | 'unknown';
  /** The checked compact form, which the till tenders (a bearer credential: never printed or logged). */
  instrument: string;
  /** The mall is unreachable: the most this store may take from it in one sale now, in units. */
  offlineMaxUnits: number | null;
}

/** A gift certificate sold at the till (`instrument:sell`), with its compact form to print. */
export interface InstrumentSaleAck {
  seq: number;
  at: string;
  code: string;
  instrument: string;
  token: string;
  units: number;
  priceMinor: number;
  currency: string;
  expiresAt: string;
  payment: TokenPayment;
}

/** A certificate this store sold taken back (`instrument:void`). */
export interface InstrumentVoidAck {
  seq: number;
  at: string;
  code: string;
  token: string;
  units: number;
  /** The price handed back in cash (0 when it was paid by card: the card terminal refunds it). */
  cashRefundMinor: number;
  currency: string;
}

export interface RefundResult {
  refundId: string;
  seq: number;
  at: string;
  saleId: string;
  credited: Record<string, number>;
  cashRefundMinor: number;
  /** Kept back from the cash refund for loyalty tokens the customer had spent (see ReversalData). */
  loyaltyDeductedMinor?: number;
  balancesAfter: Record<string, number> | null;
}

export interface ReceiptData {
  store: { vendorId: string; name: string; address: string[] };
  sale: SaleResult;
  refund: RefundResult | null;
  /**
   * The sale's verifiable proof, printed as the receipt's QR code: a compact JWS the
   * store signed when it served this receipt (docs/PROTOCOL.md, "Verifiable receipts").
   */
  proof?: string;
}

export type KeyStatus =
  | { state: 'unknown' }
  | { state: 'committed'; kind: 'sale'; result: SaleResult }
  | { state: 'committed'; kind: 'refund'; result: RefundResult };

export interface ServerStatus {
  vendorId: string;
  storeName: string;
  storeAddress: string[];
  currency: string;
  /** Names of the token types, for screens and receipts. */
  tokenNames: Record<string, string>;
  at: string;
  journalSeq: number;
  /** The store's sync with the mall, for the terminal's status bar. */
  sync: {
    configured: boolean;
    eventsWaiting: number;
    oldestWaitingAgeS: number | null;
    lastAckAt: string | null;
    lastError: string | null;
    snapshotStale: boolean;
  };
}

export interface CashierView {
  staffId: string;
  name: string;
  role: 'cashier' | 'supervisor';
}


/**
 * The cashier's day (shifts, cash movements, drawer, X and Z reports). Amounts are integer
 * minor units of the store's currency. A count is either a total or a list of
 * denominations (value in minor units x how many); the server sums a list itself.
 */
export type CashCount =
  | { totalMinor: number }
  | { denominations: { valueMinor: number; count: number }[] };

export interface ShiftView {
  shiftId: string;
  terminalId: string;
  staffId: string;
  cashierName: string;
  status: 'open' | 'closed';
  openedAt: string;
  closedAt: string | null;
  openingFloatMinor: number;
  cashSalesMinor: number;
  changeGivenMinor: number;
  cashRefundsMinor: number;
  paidInMinor: number;
  paidOutMinor: number;
  /** Known only once closed: the cashier counts blind, then sees the result. */
  countedMinor: number | null;
  expectedMinor: number | null;
  overShortMinor: number | null;
  /** Set when a supervisor closed a shift left open (e.g. a crashed till). */
  forcedBy: string | null;
}

/** Totals over a period: a shift, a day, a month or a year. */
export interface PeriodTotals {
  salesCount: number;
  refundsCount: number;
  voidsCount: number;
  noSalesCount: number;
  /** Fiat sales total, refunds not deducted. */
  grossMinor: number;
  refundsMinor: number;
  netMinor: number;
  /** By tender: `cash` in minor units; each token code in units of that token. */
  byTender: Record<string, number>;
  /** Token units taken (net of refunds) by token type code. */
  byTokenType: Record<string, number>;
  byCashier: Record<string, { salesCount: number; netMinor: number }>;
  paidInMinor: number;
  paidOutMinor: number;
  overShortMinor: number;
}

export interface XReport {
  kind: 'X';
  scope: 'shift' | 'day';
  storeName: string;
  terminalId: string | null;
  shiftId: string | null;
  /** Business day, YYYY-MM-DD in the store's time zone. */
  day: string;
  from: string;
  at: string;
  totals: PeriodTotals;
}

export interface ZReport {
  kind: 'Z';
  zNumber: number;
  storeName: string;
  vendorId: string;
  /** Null for a store-wide Z; a terminal id where Z is configured per terminal. */
  terminalId: string | null;
  day: string;
  closedAt: string;
  /** Journal seq range the report covers. */
  fromSeq: number;
  toSeq: number;
  totals: PeriodTotals;
  /** The perpetual grand total of net sales, never reset. */
  grandTotalMinor: number;
  /** The hash of the previous Z (zero hash for the first) and the compact JWS over this one. */
  prevHash: string;
  signature: string;
}


/**
 * Selling through an outage of the store server. The till keeps a durable copy of the
 * catalog (kept current by `catalog:changed` pushes and `catalog:get`), sells for cash
 * only while the server is unreachable, and forwards each offline sale once it is back.
 */
export interface OfflineLimits {
  /** Most offline sales a till may hold unforwarded. */
  maxSales: number;
  /** Most total value (minor units) of unforwarded offline sales. */
  maxTotalMinor: number;
  /** Longest outage (seconds since the till last reached the server) it keeps selling through. */
  maxOutageS: number;
  /** The screen warns when the catalog copy is older than this (seconds). */
  catalogMaxAgeS: number;
}

export interface CatalogView {
  /** Rises with every product change; the till refetches when a push names a newer one. */
  version: number;
  at: string;
  currency: string;
  products: ProductView[];
  offlineLimits: OfflineLimits;
}

/** One sale the till recorded while the server was unreachable, as it forwards it. */
export interface OfflineSaleRecord {
  /** Idempotency key, made before the sale was recorded: terminal id + ':' + UUID. */
  key: string;
  /** Terminal-local number: `${terminalId}-${counter}`, never reused. */
  offlineId: string;
  counter: number;
  /** The till's clock when it recorded the sale. */
  at: string;
  catalogVersion: number;
  cashier: string | null;
  currency: string;
  lines: { code: string; name: string; qty: number; unitPriceMinor: number; totalMinor: number }[];
  totalMinor: number;
  cashTenderedMinor: number;
  changeMinor: number;
}

export interface OfflineSaleAck {
  offlineId: string;
  saleId: string;
  seq: number;
  /** When the server journalled it (its own clock). */
  receivedAt: string;
  /** True when this key was journalled before (a repeat forward). */
  repeated: boolean;
  /** Lines whose price on the till differs from the server's catalog now (reported, never changed). */
  priceDifferences: { code: string; tillUnitMinor: number; serverUnitMinor: number | null }[];
  /** True when the till's time falls in a day a Z already closed: the sale counts in the open day. */
  afterZ?: boolean;
}

type Handler<Req, Res> = (req: Req, ack: (res: Ack<Res>) => void) => void;

export interface ClientToServerEvents {
  'product:lookup': Handler<{ code: string }, ProductView>;
  'customer:lookup': Handler<{ card: string }, CustomerView>;
  'balance:inquiry': Handler<{ card: string }, CustomerView>;
  'cart:price': Handler<
    { lines: { code: string; qty: number }[]; card?: string | null; tenders?: { token: string; units?: number }[]; instruments?: { instrument: string; units?: number }[] },
    PricedCart
  >;
  'sale:commit': Handler<
    {
      key: string;
      lines: { code: string; qty: number }[];
      card: string | null;
      /** `source: 'wallet'` pays from the mall wallet (online only; `units` required). */
      tenders: { token: string; units?: number; source?: TokenSource }[];
      cashTenderedMinor: number;
      /** The customer's PIN, for token payments above the store's limit; not part of the request's hash. */
      customerPin?: string;
      /** The customer's wallet PIN, for wallet tenders (checked by the mall); not part of the request's hash, never journalled. */
      walletPin?: string;
      /** Gift certificates and coupons (compact form as scanned); `units` omitted: as much as the cart can take. */
      instruments?: { instrument: string; units?: number }[];
    },
    SaleAck
  >;
  'sale:refund': Handler<
    { key: string; saleId: string; reason: string; supervisor: { staffId: string; pin: string } },
    RefundResult
  >;
  'sale:status': Handler<{ key: string }, KeyStatus>;
  'receipt:get': Handler<{ saleId: string }, ReceiptData>;
  'cashier:login': Handler<{ staffId: string; pin: string }, CashierView>;
  'cashier:logout': Handler<Record<string, never>, null>;
  /** Presents a newer access credential of the same pairing before the current one expires. */
  /** The cashier's day: each money-moving request carries an idempotency key like sale:commit. */
  'shift:current': Handler<Record<string, never>, ShiftView | null>;
  'shift:open': Handler<{ key: string; count: CashCount }, ShiftView>;
  'shift:cash-move': Handler<
    { key: string; kind: 'paid-in' | 'paid-out'; amountMinor: number; reason: string },
    ShiftView
  >;
  /** Blind count: the result (expected, over/short) comes back only in the answer. */
  'shift:close': Handler<{ key: string; count: CashCount }, ShiftView>;
  'drawer:no-sale': Handler<{ key: string; reason: string; supervisor: { staffId: string; pin: string } }, null>;
  'report:x': Handler<{ scope: 'shift' | 'day' }, XReport>;
  /** Closes the day (supervisor); answers the Z already made when the key repeats. */
  'report:z': Handler<{ key: string; supervisor: { staffId: string; pin: string } }, ZReport>;
  /** A receipt reprint: counted on the server, printed marked as a duplicate. */
  'receipt:reprint': Handler<{ saleId: string }, ReceiptData & { reprintCount: number }>;
  /** The catalog for the till's offline copy (null sinceVersion or older: the whole catalog). */
  'catalog:get': Handler<{ sinceVersion: number | null }, CatalogView>;
  /** Forwards one offline sale; idempotent by `key`. Forwarded in counter order. */
  'offline-sale:forward': Handler<OfflineSaleRecord, OfflineSaleAck>;
  /** What the till still holds unforwarded, sent on every (re)connection and after each forward. */
  'offline:report': Handler<{ waiting: number; oldestAt: string | null; lastForwardedAt: string | null }, null>;
  'credential:renew': Handler<{ credential: string }, { expiresAt: string }>;
  /** Tokens between stores. Every money-moving request carries an idempotency key like sale:commit. */
  /** Opens an account at the till: a pre-printed card scanned, or null for a new number (printed by the till). */
  'customer:register': Handler<
    { key: string; name: string; card: string | null; consent: boolean; contact?: { email?: string; phone?: string } },
    CustomerView
  >;
  /** Sells tokens at face value for cash (change given) or by card (the card terminal's approval reference). */
  'tokens:sell': Handler<
    {
      key: string;
      card: string;
      token: string;
      units: number;
      payment: { method: 'cash'; tenderedMinor: number } | { method: 'card'; approvalRef: string };
    },
    TokenSaleAck
  >;
  'exchange:quote': Handler<{ card: string; from: { token: string; units: number; source: TokenSource }; to: string }, ExchangeView>;
  /** Commits only if the rule still gives `expectUnits` (else VND_ERR_EXCHANGE_QUOTE_CHANGED). */
  'exchange:commit': Handler<
    { key: string; card: string; from: { token: string; units: number; source: TokenSource }; to: string; expectUnits: number; walletPin?: string },
    ExchangeAck
  >;
  'wallet:balance': Handler<{ card: string }, WalletView>;
  /**
   * `walletPin` for from-wallet (the mall checks it); `newWalletPin` the PIN the customer
   * chooses on a first deposit (to-wallet while the wallet has none). Neither is part of
   * the request's hash nor journalled.
   */
  'wallet:move': Handler<{ key: string; card: string; direction: 'to-wallet' | 'from-wallet'; token: string; units: number; walletPin?: string; newWalletPin?: string }, WalletMoveAck>;
  /** Sets the customer's wallet PIN at the mall: the first one, or a new one with `oldPin`. */
  'wallet:pin': Handler<{ key: string; card: string; pin: string; oldPin?: string }, { card: string; pinSet: true }>;
  /** Asks the mall for a customer of another store (consent required; the mall charges this store a toll). */
  'customer:data-request': Handler<{ key: string; card: string }, CustomerDataView>;
  /** Auctions (core/auctions.ts): the open lots and those closed in the last day. */
  'lots:list': Handler<Record<string, never>, LotView[]>;
  /** A bid for the customer whose card was scanned; idempotent by `key`; `customerPin` as for sale:commit. */
  'lot:bid': Handler<{ key: string; lotId: string; card: string; units: number; customerPin?: string }, BidAck>;
  /** Checks a gift certificate or coupon (its compact form, or its short code) and says what remains on it. */
  'instrument:inquire': Handler<{ instrument: string } | { code: string }, InstrumentView>;
  /** Takes back a gift certificate this store sold by mistake, never used (a supervisor's PIN; the mall agrees first). */
  'instrument:void': Handler<{ key: string; code: string; reason: string; supervisor: { staffId: string; pin: string } }, InstrumentVoidAck>;
  /** Sells a gift certificate, for cash or card at face value: one this store signs for its own tokens, or one from the mall's stock. */
  'instrument:sell': Handler<
    | { key: string; token: string; units: number; payment: { method: 'cash'; tenderedMinor: number } | { method: 'card'; approvalRef: string } }
    | { key: string; instrument: string; payment: { method: 'cash'; tenderedMinor: number } | { method: 'card'; approvalRef: string } },
    InstrumentSaleAck
  >;
  /** The mall's lots (online only: VND_ERR_MALL_LOT_OFFLINE when the mall cannot be reached). */
  'mall-lots:list': Handler<Record<string, never>, MallLotView[]>;
  /** One mall lot; `receipt` once this store's customer won it (what the store prints at pickup). */
  'mall-lot:get': Handler<{ lotId: string }, MallLotView & { receipt: MallLotReceipt | null; receiptJws: FlattenedJws | null }>;
  /** A bid forwarded to the mall, held in the customer's mall wallet; needs the wallet PIN; idempotent by `key`. */
  'mall-lot:bid': Handler<{ key: string; lotId: string; card: string; units: number; walletPin?: string }, MallLotBidAnswer>;
}

export interface ServerToClientEvents {
  'server:status': (status: ServerStatus) => void;
  /** The catalog changed: the till fetches it with `catalog:get` when `version` is newer than its copy. */
  'catalog:changed': (info: { version: number }) => void;
  /** `code` says why: VND_ERR_TERMINAL_REVOKED, or VND_ERR_CREDENTIAL_REPLACED after a new pairing. */
  'terminal:revoked': (info: { terminalId: string; message: string; code: string }) => void;
  /** Lots changed (listed, bid on, cancelled, closed), pushed together once the changes are durable. */
  'lots:update': (lots: LotView[]) => void;
  /** The mall's lots, pushed when they changed (the store asks the mall every few seconds while tills are connected). */
  'mall-lots:update': (lots: MallLotView[]) => void;
}

/**
 * The bid board's socket.io namespace (`/board` on the vendor server): anyone may watch;
 * a bid needs the customer's card and PIN.
 */
export interface BoardClientEvents {
  'lots:list': Handler<Record<string, never>, LotView[]>;
  'board:bid': Handler<{ key: string; lotId: string; card: string; pin: string; units: number }, BidAck>;
}

export interface BoardServerEvents {
  'lots:update': (lots: LotView[]) => void;
}

/** Limits both sides agree on. */
export const SOCKET_PAYLOAD_BYTES_MAX = 64 * 1024;
export const ACK_TIMEOUT_MS = 5_000;

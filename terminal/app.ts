import { randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  fail,
  formatMinor,
  formatUnits,
  maskCard,
  maskCardsInText,
  MallposError,
  parseScan,
  type CustomerView,
  type InstrumentVoidAck,
  type PricedCart,
  type ProductView,
  type ReceiptData,
  type RefundResult,
  type SaleAck,
  type SaleResult,
  type CashCount,
  type ClientToServerEvents,
  type OfflineLimits,
  type OfflineSaleAck,
  type OfflineSaleRecord,
  type ShiftView,
  type WalletView,
  type WireError,
  type XReport,
  type ZReport,
} from '../core/index.ts';
import type { PrintQueue, PrintQueueStatus, PrintResult } from '../hardware/printer/index.ts';
import type { Scanner, ScannerStatus } from '../hardware/scanner/index.ts';
import { writeFileDurable } from '../platform/storage/index.ts';
import * as carts from './cart.ts';
import { CatalogCopy, type CatalogCopyStatus } from './catalog-copy.ts';
import { OfflineSales } from './offline-sales.ts';
import type { Cart, TenderChoice } from './cart.ts';
import type { TerminalCredential } from './credential.ts';
import type { DrawerStatus, DrawerWatch } from './drawer-watch.ts';
import { ECONOMY_COMMANDS, OFFLINE_WALLET, TillEconomy, WALLET_UNREACHABLE, type EconomyCommand, type EconomyView } from './economy.ts';
import { mallLotReceipt, type EconomyReceiptContext } from './economy-receipts.ts';
import { AUCTION_COMMANDS, TillAuctions, type AuctionCommand, type AuctionsView } from './auctions.ts';
import { toOfflineReceipt, toReceipt } from './receipts.ts';
import { shiftCloseReceipt, xReportReceipt, zReportReceipt, type ReportContext } from './reports.ts';
import { classifySaleRefusal } from './refusals.ts';
import { certificateSlip, instrumentScan, remainingText, TillInstruments, type InstrumentScan, type InstrumentsView } from './instruments.ts';
import { LinkDownError, RemoteError, StoreLink, wireOf, type LinkStatus } from './store-link.ts';

export interface ScreenMessage {
  kind: 'error' | 'info' | 'success';
  text: string;
  code?: string;
  at: string;
}

/** Everything the cashier screen shows; pushed to the page on every change. */
export interface ScreenState {
  terminal: { id: string; name: string };
  store: { vendorId: string; name: string; currency: string };
  status: {
    server: LinkStatus;
    scanner: ScannerStatus | { state: 'none' };
    printer: PrintQueueStatus;
    drawer: DrawerStatus;
  };
  cashier: { staffId: string; name: string } | null;
  cart: Cart;
  priced: PricedCart | null;
  pricingError: WireError | null;
  tokenNames: Record<string, string>;
  completing: { key: string; since: string; waiting: SaleWaiting | null } | null;
  lastSale: SaleResult | null;
  refund: { sale: SaleResult; refunded: RefundResult | null } | null;
  /**
   * The cashier's day: this till's open shift (`known` false until the store server has
   * said), and the result of the shift just closed, shown until the cashier dismisses it.
   */
  shift: { known: boolean; current: ShiftView | null; closed: ShiftView | null };
  /** Selling through an outage of the store server (cash only), and the sales still to forward. */
  offline: OfflineView;
  /** Tokens between stores: an exchange quoted and waiting for confirmation, the last action's result. */
  economy: EconomyView;
  /** Auctions: the store's lots and this till's last bid. */
  auctions: AuctionsView;
  /** The gift certificate or coupon last scanned, and what remains on it. */
  instruments: InstrumentsView;
  message: ScreenMessage | null;
  version: number;
}

export interface OfflineView {
  /** The store server is unreachable and the till sells from its catalog copy, cash only. */
  selling: boolean;
  waiting: number;
  waitingTotalMinor: number;
  oldestAt: string | null;
  lastForwardedAt: string | null;
  catalog: CatalogCopyStatus | null;
  limits: OfflineLimits | null;
  /** Why the till cannot sell offline now (a limit reached, no catalog copy): the till stops. */
  stopped: string | null;
  forwarding: boolean;
  /** The store refused a forwarded sale: shown until a forward succeeds; the sale stays waiting. */
  problem: WireError | null;
  /** Prices the store's catalog disagrees with, reported on forwarded sales (the newest last). */
  priceDifferences: { offlineId: string; code: string; tillUnitMinor: number; serverUnitMinor: number | null }[];
}

/**
 * Why a sale being completed stopped for a person: the customer's PIN, a cashier's
 * sign-in, or pairing the till again. Its key and body stay on disk meanwhile.
 */
export interface SaleWaiting {
  for: 'customer-pin' | 'wallet-pin' | 'cashier' | 'pairing';
  code: string;
  text: string;
}

/** The customer's PINs for one sale, sent with it and never written to disk. */
interface SalePins {
  customerPin?: string;
  walletPin?: string;
}

export interface PendingSale {
  key: string;
  body: { lines: { code: string; qty: number }[]; card: string | null; tenders: TenderChoice[]; cashTenderedMinor: number; instruments?: { instrument: string }[] };
  startedAt: string;
}

/**
 * A refund being sent: its key is made before the first send and kept on disk until a
 * definite answer, so a retry after a timeout, a disconnect or a restart reuses it. The
 * supervisor's PIN is never written.
 */
export interface PendingRefund {
  key: string;
  saleId: string;
  reason: string;
  supervisorId: string;
  startedAt: string;
}

/**
 * A cash operation of the cashier's day being sent (shift open or close, paid-in or out,
 * no-sale, Z report): its key is made before the first send and kept on disk until the
 * store answers, so the same operation tried again after a lost answer or a restart is
 * sent under the same key and counts once. Secrets (a supervisor's PIN) are never written.
 */
interface PendingCashOp {
  key: string;
  fingerprint: string;
  startedAt: string;
}

/** Refund refusals that say the refund's key certainly committed nothing. */
const DEFINITE_REFUND_REFUSALS: ReadonlySet<string> = new Set(['VND_ERR_SALE_UNKNOWN', 'VND_ERR_ALREADY_REFUNDED']);

export type Command =
  | { type: 'scan'; code: string }
  | { type: 'setQty'; lineNo: number; qty: number }
  | { type: 'voidLine'; lineNo: number }
  | { type: 'cancelSale' }
  | { type: 'removeCustomer' }
  | { type: 'setTenders'; tenders: TenderChoice[] }
  | { type: 'setCash'; cashTenderedMinor: number }
  | { type: 'complete' }
  | { type: 'customerPin'; pin: string }
  | { type: 'walletPin'; pin: string }
  | { type: 'stopCompletion' }
  | { type: 'refund'; staffId: string; pin: string; reason: string }
  | { type: 'closeRefund' }
  | { type: 'reprint' }
  | { type: 'openShift'; count: CashCount }
  | { type: 'cashMove'; kind: 'paid-in' | 'paid-out'; amountMinor: number; reason: string }
  | { type: 'noSale'; staffId: string; pin: string; reason: string }
  | { type: 'closeShift'; count: CashCount }
  | { type: 'closeShiftResult' }
  | { type: 'xReport'; scope: 'shift' | 'day' }
  | { type: 'zReport'; staffId: string; pin: string }
  | { type: 'login'; staffId: string; pin: string }
  | { type: 'logout' }
  | { type: 'dismiss' }
  /** The gift certificate or coupon shown pays part of the sale; or comes off it; or its panel closes. */
  | { type: 'instrumentPay'; code: string }
  | { type: 'instrumentRemove'; code: string }
  | { type: 'instrumentClose' }
  | { type: 'instrumentVoid'; code: string; reason: string; staffId: string; pin: string }
  /** A new certificate of the store's own tokens (`token`, `units`), or the one shown from the mall's stock (`code`). */
  | { type: 'sellCertificate'; token?: string; units?: number; code?: string; payment: { method: 'cash'; tenderedMinor: number } | { method: 'card'; approvalRef: string } }
  | EconomyCommand
  | AuctionCommand;

export interface TerminalAppOptions {
  dataDir: string;
  credential: TerminalCredential;
  scanner: Scanner | null;
  printQueue: PrintQueue;
  /** The cash drawer on the receipt printer; null when the till has none. */
  drawer?: DrawerWatch | null;
  ackTimeoutMs?: number;
  /** How long a completion waits for the store server before it tries again. */
  reconnectWaitMs?: number;
}

function maskedCustomer<C extends { card: string }>(c: C): C {
  return { ...c, card: maskCard(c.card) };
}

function maskedSale(sale: SaleResult): SaleResult {
  return sale.customer === null ? sale : { ...sale, customer: maskedCustomer(sale.customer) };
}

/** A refusal as the screen shows it: card numbers masked in its message and details. */
function maskedWire(w: WireError): WireError {
  const message = maskCardsInText(w.message);
  if (w.details === undefined) return { ...w, message };
  const details = Object.fromEntries(Object.entries(w.details).map(([k, v]) => [k, typeof v === 'string' ? maskCardsInText(v) : v]));
  return { ...w, message, details };
}

/** Answers to `receipt:get` that asking again will not change. */
const RECEIPT_REFUSALS: ReadonlySet<string> = new Set(['VND_ERR_RECEIPT_FORBIDDEN', 'VND_ERR_SALE_UNKNOWN']);
const PAIR_AGAIN = 'this till must be paired with the store again before it can sell: the cart is kept';

const NO_DRAWER: DrawerStatus = { state: 'none', openSince: null, openTooLong: false, lastKickError: null };

const SCAN_QUEUE_MAX = 64;
const PRICE_DIFFERENCES_SHOWN_MAX = 20;
/** While connected, the outage clock's start is written this often (and at once when the link drops). */
const CONTACT_WRITE_MS = 30_000;
/** How often the screen is refreshed for ages that grow by themselves (the catalog copy, the outage). */
const OFFLINE_TICK_MS = 15_000;
/**
 * A test of crash safety sets this to stop the process hard right after an offline sale is
 * on disk and before its receipt is handed to the printer.
 */
const STOP_BEFORE_OFFLINE_PRINT_ENV = 'MALLPOS_TERMINAL_STOP_BEFORE_OFFLINE_PRINT';

const OFFLINE_CUSTOMER = 'the store server is unreachable: customer cards cannot be used now, because balances are kept on the store server; nothing was charged, the cart is kept: sell for cash';
const OFFLINE_TOKENS = 'the store server is unreachable: tokens cannot be taken now, because balances are kept on the store server; nothing was charged, the cart is kept: take cash';
const OFFLINE_INSTRUMENT = 'the store server is unreachable: gift certificates and coupons are checked by the store server; nothing was charged, the cart is kept: take cash';
const OFFLINE_REFUND = 'the store server is unreachable: refunds need the store server, which keeps the sales and balances; refund when it is back';
const PRODUCT_CACHE_MAX = 500;
const PRODUCT_CACHE_MS = 60_000;
const RETRY_DELAY_MIN_MS = 250;
const RETRY_DELAY_MAX_MS = 5_000;

/**
 * The terminal: cart, scans, completion and receipts. It never decides a balance; the
 * store server prices and commits. A sale's idempotency key and body are written to
 * disk before the first send, so a restart in the middle of completing learns the
 * outcome by sending the same key again and never charges twice.
 */
export class TerminalApp {
  private cart: Cart = carts.emptyCart();
  private priced: PricedCart | null = null;
  private pricingError: WireError | null = null;
  private priceVersion = 0;
  private completing: PendingSale | null = null;
  private waiting: SaleWaiting | null = null;
  private lastSale: SaleResult | null = null;
  private refund: ScreenState['refund'] = null;
  private message: ScreenMessage | null = null;
  private cashier: { staffId: string; name: string; pin: string } | null = null;
  private shift: ScreenState['shift'] = { known: false, current: null, closed: null };
  /** The last receipt this till printed for a sale or a refund, for a counted reprint. */
  private lastReceiptSaleId: string | null = null;
  private version = 0;
  private closed = false;
  private readonly listeners = new Set<(s: ScreenState) => void>();
  private scanChain: Promise<void> = Promise.resolve();
  private scansQueued = 0;
  private readonly unsubscribe: (() => void)[] = [];
  readonly link: StoreLink;
  private completion: Promise<void> | null = null;
  /** Products seen lately: a repeat scan shows at once; the server still prices the cart. */
  private readonly products = new Map<string, { product: ProductView; at: number }>();
  private offlineBusy = false;
  private syncing: Promise<void> | null = null;
  private forwarding = false;
  private forwardProblem: WireError | null = null;
  private priceDifferences: OfflineView['priceDifferences'] = [];
  private wasConnected = false;
  private lastContactWriteMs = 0;
  private offlineTimer: NodeJS.Timeout | null = null;
  private offlinePrints: Promise<void> = Promise.resolve();
  /** The cashier's sign-in sent again on a new connection; forwarding waits for it. */
  private relogin: Promise<void> = Promise.resolve();
  private readonly economy: TillEconomy;
  private readonly auctions: TillAuctions;
  private readonly instruments: TillInstruments;

  private constructor(
    private readonly opts: TerminalAppOptions,
    private readonly catalog: CatalogCopy,
    private readonly offline: OfflineSales,
  ) {
    this.link = new StoreLink(opts.credential.server, opts.credential, opts.ackTimeoutMs);
    this.instruments = new TillInstruments({ link: this.link, currency: () => this.link.status().server?.currency ?? 'EUR', inCart: (code) => this.cart.instruments.some((i) => i.code === code) });
    this.economy = new TillEconomy({
      link: this.link,
      printQueue: opts.printQueue,
      sendKeyed: <T>(event: keyof ClientToServerEvents, body: Record<string, unknown>, secret: Record<string, unknown> = {}) =>
        this.sendKeyed<T>(this.pendingEconomyOpFile, event, body, secret, {}, 'the store server did not confirm it: do the same again; it is sent as the same request and counts once'),
      customer: () => this.cart.customer,
      setCustomer: (c) => this.takeCustomer(c),
      needOnline: (offlineText) => this.needOnline(offlineText),
      receiptContext: () => this.economyReceiptContext(),
      currency: () => this.link.status().server?.currency ?? 'EUR',
      openDrawer: () => this.openDrawer(),
      slipPrinted: () => {
        // The store keeps no receipt of these to count a reprint: the print queue's copy is reprinted.
        this.lastReceiptSaleId = null;
      },
      say: (kind, text, code) => this.say(kind, text, code),
      changed: () => this.changed(),
    });
    this.auctions = new TillAuctions({
      link: this.link,
      sendKeyed: <T>(event: keyof ClientToServerEvents, body: Record<string, unknown>, secret: Record<string, unknown> = {}) =>
        this.sendKeyed<T>(this.pendingBidFile, event, body, secret, {}, 'the store server did not confirm the bid: bid again with the same amount; it is sent as the same request and counts once'),
      customer: () => this.cart.customer,
      setCustomer: (c) => this.takeCustomer(c),
      needOnline: (offlineText) => this.needOnline(offlineText),
      say: (kind, text) => this.say(kind, text),
      changed: () => this.changed(),
      printSale: async (receipt) => {
        const server = this.link.status().server;
        await this.opts.printQueue.enqueue(
          toReceipt(receipt, { kind: 'sale', terminalName: this.opts.credential.name, cashierName: this.cashier?.name ?? receipt.sale.cashier ?? '-', tokenNames: server?.tokenNames ?? {} }),
        );
        this.lastReceiptSaleId = receipt.sale.saleId;
      },
      printMallLot: async (receipt, jws) => {
        await this.opts.printQueue.enqueue(mallLotReceipt(receipt, jws, this.economyReceiptContext()));
      },
    });
  }

  /** A customer the store answered for (economy, auctions): on the cart, the cart priced for them. */
  private async takeCustomer(c: CustomerView): Promise<void> {
    this.setCartCustomer(c);
    await this.reprice();
  }

  /** Refuses, with `offlineText`, a request that needs the store server while it cannot be reached. */
  private needOnline(offlineText: string): void {
    this.guardIdle();
    if (this.unpaired()) fail('POS_ERR_NOT_PAIRED', PAIR_AGAIN);
    if (!this.link.connected) fail('POS_ERR_OFFLINE', offlineText);
  }

  static async open(opts: TerminalAppOptions): Promise<TerminalApp> {
    const catalog = await CatalogCopy.open(opts.dataDir);
    const offline = await OfflineSales.open(opts.dataDir, opts.credential.terminalId);
    const app = new TerminalApp(opts, catalog, offline);
    app.unsubscribe.push(
      app.link.onStatus((s) => {
        if (s.state === 'connected') app.onConnected();
        if (s.state === 'connected' && !app.wasConnected) {
          // Once per connection: the outage is over; forward what was sold meanwhile.
          app.wasConnected = true;
          void app.syncOffline();
        } else if (s.state !== 'connected' && app.wasConnected) {
          // The outage clock starts when the link drops; it is kept on disk for a restart.
          app.wasConnected = false;
          app.offline.contact().catch(() => undefined);
        }
        app.changed();
      }),
      app.link.onCatalogChanged((info) => {
        if (app.catalog.version === null || info.version > app.catalog.version) void app.refreshCatalog();
      }),
      opts.printQueue.onChange(() => app.changed()),
    );
    if (opts.drawer) app.unsubscribe.push(opts.drawer.onChange(() => app.changed()));
    if (opts.scanner !== null) {
      app.unsubscribe.push(
        opts.scanner.onScan((scan) => app.scan(scan.code)),
        opts.scanner.onStatus(() => app.changed()),
        opts.scanner.onWarning((w) => app.say('info', `scanner: ${w.message}`)),
      );
    }
    app.offlineTimer = setInterval(() => app.offlineTick(), OFFLINE_TICK_MS);
    app.offlineTimer.unref();
    // An offline sale recorded but not handed to the printer when the till stopped prints now, once.
    app.offlinePrints = app.printUnprinted();
    const pending = await app.readPending();
    if (pending !== null) {
      app.completing = pending;
      app.say('info', 'finishing the sale that was being completed when the terminal stopped');
      app.completion = app.runCompletion(pending);
    }
    return app;
  }

  private get pendingFile(): string {
    return join(this.opts.dataDir, 'pending-sale.json');
  }

  private get pendingRefundFile(): string {
    return join(this.opts.dataDir, 'pending-refund.json');
  }

  private get pendingCashOpFile(): string {
    return join(this.opts.dataDir, 'pending-cash-op.json');
  }

  private get pendingBidFile(): string {
    return join(this.opts.dataDir, 'pending-bid.json');
  }

  private get pendingEconomyOpFile(): string {
    return join(this.opts.dataDir, 'pending-economy-op.json');
  }

  private readPending(): Promise<PendingSale | null> {
    return this.readJson<PendingSale>(this.pendingFile);
  }

  private async readJson<T>(file: string): Promise<T | null> {
    try {
      return JSON.parse(await readFile(file, 'utf8')) as T;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new MallposError('POS_ERR_CONFIG', `${file} cannot be read: ${(err as Error).message}`);
    }
  }

  // ---- state for the screen ----------------------------------------------------------

  state(): ScreenState {
    const server = this.link.status();
    return {
      terminal: { id: this.opts.credential.terminalId, name: this.opts.credential.name },
      store: { vendorId: this.opts.credential.vendorId, name: server.server?.storeName ?? this.opts.credential.storeName, currency: server.server?.currency ?? 'EUR' },
      status: {
        server,
        scanner: this.opts.scanner?.status() ?? { state: 'none' },
        printer: this.opts.printQueue.status(),
        drawer: this.opts.drawer?.status() ?? NO_DRAWER,
      },
      cashier: this.cashier === null ? null : { staffId: this.cashier.staffId, name: this.cashier.name },
      // Card numbers are bearer credentials: the screen shows them masked.
      cart: this.cart.customer === null ? this.cart : { ...this.cart, customer: maskedCustomer(this.cart.customer) },
      priced: this.priced,
      pricingError: this.pricingError === null ? null : maskedWire(this.pricingError),
      tokenNames: server.server?.tokenNames ?? {},
      completing: this.completing === null ? null : { key: this.completing.key, since: this.completing.startedAt, waiting: this.waiting },
      lastSale: this.lastSale === null ? null : maskedSale(this.lastSale),
      refund: this.refund === null ? null : { sale: maskedSale(this.refund.sale), refunded: this.refund.refunded },
      shift: this.shift,
      offline: this.offlineView(),
      economy: this.economy.view(),
      auctions: this.auctions.view(),
      instruments: this.instruments.view(),
      message: this.message,
      version: this.version,
    };
  }

  onState(cb: (s: ScreenState) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  private changed(): void {
    this.version += 1;
    if (this.listeners.size === 0) return;
    const s = this.state();
    for (const cb of this.listeners) cb(s);
  }

  private say(kind: ScreenMessage['kind'], text: string, code?: string): void {
    this.message = { kind, text: maskCardsInText(text), ...(code === undefined ? {} : { code }), at: new Date().toISOString() };
    this.changed();
  }

  private sayError(err: unknown): void {
    const w = wireOf(err);
    this.say('error', w.message, w.code);
  }

  /**
   * Whether the till sells from its catalog copy now: the store server found unreachable
   * (not merely still connecting at start), the till still paired.
   */
  private get sellingOffline(): boolean {
    return !this.link.connected && this.link.status().state === 'offline';
  }

  private offlineView(): OfflineView {
    const summary = this.offline.summary();
    const limits = this.catalog.limits;
    const selling = this.sellingOffline;
    return {
      selling,
      waiting: summary.waiting,
      waitingTotalMinor: summary.waitingTotalMinor,
      oldestAt: summary.oldestAt,
      lastForwardedAt: summary.lastForwardedAt,
      catalog: this.catalog.status(),
      limits,
      stopped: !selling ? null : limits === null ? 'this till has no copy of the store catalog yet, so it cannot sell while the store server is unreachable: the till stops' : this.offline.refusal(limits, 0),
      forwarding: this.forwarding,
      problem: this.forwardProblem,
      priceDifferences: this.priceDifferences,
    };
  }

  /** Keeps the outage clock's start current while connected, and refreshes ages on the screen. */
  private offlineTick(): void {
    if (this.link.connected && Date.now() - this.lastContactWriteMs >= CONTACT_WRITE_MS) {
      this.lastContactWriteMs = Date.now();
      this.offline.contact().catch(() => undefined);
    }
    this.changed();
  }

  private onConnected(): void {
    // The server forgets the cashier of a dropped connection: sign in again.
    if (this.cashier !== null) {
      const { staffId, pin } = this.cashier;
      this.relogin = this.link.request('cashier:login', { staffId, pin }).then(
        () => undefined,
        () => undefined,
      );
    }
    void this.reprice();
    void this.refreshShift();
    this.auctions.refresh().catch(() => undefined);
  }

  // ---- the catalog copy and offline sales ------------------------------------------------

  /** Fetches the catalog when the store's is newer than the copy; the copy is confirmed current either way. */
  private async refreshCatalog(): Promise<void> {
    if (!this.link.connected) return;
    try {
      const answer = await this.link.request<unknown>('catalog:get', { sinceVersion: this.catalog.version });
      await this.catalog.accept(answer);
      this.changed();
    } catch (err) {
      // The old copy is kept; the next connection or push asks again. The screen shows its age.
      if (err instanceof MallposError) this.say('error', err.message, err.code);
    }
  }

  /** On every connection: the outage clock restarts, the catalog is refreshed, waiting sales go out, the store hears what is left. */
  private syncOffline(): Promise<void> {
    this.syncing ??= (async () => {
      this.lastContactWriteMs = Date.now();
      await this.offline.contact().catch(() => undefined);
      await this.relogin;
      await this.refreshCatalog();
      await this.forwardOffline();
      await this.reportOffline();
    })()
      // A write that failed (a full disk) leaves the sale waiting: the screen says so, the next connection tries again.
      .catch((err: unknown) => this.sayError(err))
      .finally(() => {
        this.syncing = null;
      });
    return this.syncing;
  }

  /** Resolves when the forwarding started by the last connection is over (for tests and a clean close). */
  whenSynced(): Promise<void> {
    return this.syncing ?? Promise.resolve();
  }

  /**
   * Forwards the waiting offline sales in counter order, one at a time, each under the key
   * it got when it was recorded, so a forward repeated after a lost answer counts once.
   * Each is marked forwarded on disk when its acknowledgement arrives. A refusal stops the
   * forwarding (a later sale never overtakes an earlier one) and is shown; the sale stays.
   */
  private async forwardOffline(): Promise<void> {
    const waiting = this.offline.waiting();
    if (waiting.length === 0) return;
    this.forwarding = true;
    this.changed();
    try {
      for (const entry of waiting) {
        if (this.closed || !this.link.connected) return;
        const id = entry.record.offlineId;
        let ack: OfflineSaleAck;
        try {
          ack = await this.link.request<OfflineSaleAck>('offline-sale:forward', entry.record);
        } catch (err) {
          // No answer: the next connection sends the same key again.
          if (!(err instanceof RemoteError)) return;
          this.forwardProblem = { code: err.wire.code, message: `offline sale ${id} was refused by the store server: ${err.wire.message}; it stays waiting and no later sale is sent before it` };
          this.say('error', this.forwardProblem.message, err.wire.code);
          return;
        }
        if (ack.offlineId !== id) {
          this.forwardProblem = { code: 'POS_ERR_OFFLINE', message: `the store server answered the forward of ${id} for ${String(ack.offlineId)}: it stays waiting` };
          this.say('error', this.forwardProblem.message, 'POS_ERR_OFFLINE');
          return;
        }
        await this.offline.markForwarded(ack);
        this.forwardProblem = null;
        if (ack.priceDifferences.length > 0) {
          const found = ack.priceDifferences.map((d) => ({ offlineId: id, code: d.code, tillUnitMinor: d.tillUnitMinor, serverUnitMinor: d.serverUnitMinor }));
          this.priceDifferences = [...this.priceDifferences, ...found].slice(-PRICE_DIFFERENCES_SHOWN_MAX);
          const words = found.map((d) => `${d.code}: till ${this.money(d.tillUnitMinor)}, store ${d.serverUnitMinor === null ? 'not in the catalog' : this.money(d.serverUnitMinor)}`);
          this.say('info', `offline sale ${id} was journalled as ${ack.saleId} at the till's prices; the store's catalog differs (${words.join('; ')}): reported to the store`);
        }
        this.changed();
      }
    } finally {
      this.forwarding = false;
      this.changed();
    }
  }

  private async reportOffline(): Promise<void> {
    if (!this.link.connected) return;
    const s = this.offline.summary();
    await this.link.request<null>('offline:report', { waiting: s.waiting, oldestAt: s.oldestAt, lastForwardedAt: s.lastForwardedAt }).catch(() => undefined);
  }

  /**
   * Hands the receipt of an offline sale to the print queue (which keeps it on disk until
   * it prints), then notes that on the sale. A till stopped between the two finds the
   * receipt in the queue and only notes it, so the receipt prints once.
   */
  private async printOffline(record: OfflineSaleRecord): Promise<PrintResult | null> {
    if (this.opts.printQueue.holds(record.offlineId)) {
      await this.offline.markPrinted(record.offlineId);
      return null;
    }
    const server = this.link.status().server;
    const receipt = toOfflineReceipt(record, {
      store: { name: server?.storeName ?? this.opts.credential.storeName, address: server?.storeAddress ?? [] },
      terminalName: this.opts.credential.name,
      cashierName: this.cashier?.name ?? record.cashier ?? '-',
    });
    const printing = this.opts.printQueue.enqueue(receipt);
    // enqueue saves the receipt before its first attempt; the mark waits for that attempt.
    const printed = await printing;
    await this.offline.markPrinted(record.offlineId);
    return printed;
  }

  private async printUnprinted(): Promise<void> {
    for (const entry of this.offline.entries()) {
      if (entry.printed || this.closed) continue;
      try {
        const printed = await this.printOffline(entry.record);
        this.say(printed === null || printed.ok ? 'info' : 'error', `the receipt of offline sale ${entry.record.offlineId}, recorded before the till stopped, ${printed === null || printed.ok ? 'is printed' : `was not printed: ${printed.message}`}`);
      } catch (err) {
        this.sayError(err);
      }
    }
  }

  /** Resolves when receipts of offline sales left unprinted by a stop have been handed to the printer. */
  whenOfflinePrinted(): Promise<void> {
    return this.offlinePrints;
  }

  /**
   * Completes a cash sale while the store server is unreachable: priced from the catalog
   * copy, checked against the offline limits, recorded on disk (with its number) before the
   * drawer opens or the receipt prints, and forwarded once the server is back.
   */
  private async completeOffline(): Promise<void> {
    this.guardIdle();
    if (this.cart.lines.length === 0) fail('POS_ERR_CART_EMPTY');
    if (this.cart.customer !== null) fail('POS_ERR_OFFLINE', OFFLINE_CUSTOMER);
    if (this.cart.tenders.length > 0) fail('POS_ERR_OFFLINE', OFFLINE_TOKENS);
    if (this.cart.instruments.length > 0) fail('POS_ERR_OFFLINE', OFFLINE_INSTRUMENT);
    const limits = this.catalog.limits;
    const currency = this.catalog.currency;
    if (limits === null || currency === null) fail('POS_ERR_OFFLINE', 'the store server is unreachable and this till has no copy of the store catalog yet, so it cannot sell: the till stops; the cart is kept, nothing was charged');
    const lines = this.cart.lines.map((l) => ({ code: l.gtin, name: l.name, qty: l.qty, unitPriceMinor: l.unitPriceMinor, totalMinor: l.unitPriceMinor * l.qty }));
    const totalMinor = lines.reduce((sum, l) => sum + l.totalMinor, 0);
    if (!Number.isSafeInteger(totalMinor)) fail('CORE_ERR_AMOUNT', 'the total is too large');
    const tendered = this.cart.cashTenderedMinor;
    if (tendered < totalMinor) {
      fail('POS_ERR_OFFLINE', `the store server is unreachable, so this sale is cash only: ${formatMinor(totalMinor, currency)} is due and ${formatMinor(tendered, currency)} was tendered; the cart is kept`);
    }
    this.offlineBusy = true;
    try {
      const entry = await this.offline.record(
        { catalogVersion: this.catalog.version ?? 0, cashier: this.cashier?.staffId ?? null, currency, lines, totalMinor, cashTenderedMinor: tendered, changeMinor: tendered - totalMinor },
        limits,
      );
      if (process.env[STOP_BEFORE_OFFLINE_PRINT_ENV] === '1') process.kill(process.pid, 'SIGKILL');
      const record = entry.record;
      const kicking = this.openDrawer();
      const printing = this.printOffline(record);
      this.cart = carts.emptyCart();
      this.priced = null;
      this.pricingError = null;
      this.lastSale = null;
      // A reprint of an offline receipt is the print queue's copy: the store does not know the sale yet.
      this.lastReceiptSaleId = null;
      const change = record.changeMinor > 0 ? `, change ${formatMinor(record.changeMinor, currency)}` : '';
      this.say('success', `sale recorded offline as ${record.offlineId}${change}: it is sent to the store server when it is back`);
      await kicking;
      const printed = await printing;
      if (printed !== null && !printed.ok) this.say('error', `sale ${record.offlineId} recorded offline; receipt not printed: ${printed.message}`);
    } finally {
      this.offlineBusy = false;
      this.changed();
    }
  }

  // ---- scans -------------------------------------------------------------------------

  /** Scans are handled one at a time, in order, whether from the serial scanner or the page. */
  scan(code: string): Promise<void> {
    if (this.scansQueued >= SCAN_QUEUE_MAX) {
      this.say('error', 'too many scans waiting: slow down');
      return Promise.resolve();
    }
    this.scansQueued += 1;
    const run = this.scanChain.then(() => this.handleScan(code)).finally(() => (this.scansQueued -= 1));
    this.scanChain = run.catch(() => undefined);
    return run;
  }

  private async handleScan(raw: string): Promise<void> {
    try {
      if (this.completing !== null || this.offlineBusy) fail('POS_ERR_BUSY');
      const instrument = instrumentScan(raw);
      if (instrument !== null) {
        await this.scanInstrument(instrument);
        return;
      }
      const scan = parseScan(raw);
      if (scan.kind === 'product') {
        const cached = this.products.get(scan.gtin);
        const fresh = cached !== undefined && Date.now() - cached.at < PRODUCT_CACHE_MS && this.link.connected;
        const product = fresh
          ? cached.product
          : await this.link.request<ProductView>('product:lookup', { code: scan.gtin }).catch((err: unknown) => {
              if (!(err instanceof LinkDownError)) throw err;
              if (!this.sellingOffline) throw new MallposError('POS_ERR_OFFLINE', `the store server is unreachable: cannot look up ${scan.gtin}; the cart is kept`);
              // Only while the store cannot be reached does the catalog copy answer.
              const copy = this.catalog.lookup(scan.gtin);
              if (copy !== null) return copy;
              throw new MallposError(
                'POS_ERR_OFFLINE',
                this.catalog.version === null
                  ? `the store server is unreachable and this till has no copy of the catalog: cannot look up ${scan.gtin}; the cart is kept`
                  : `the store server is unreachable and ${scan.gtin} is not in this till's copy of the catalog; the cart is kept`,
              );
            });
        if (!fresh) {
          this.products.delete(scan.gtin);
          this.products.set(scan.gtin, { product, at: Date.now() });
          if (this.products.size > PRODUCT_CACHE_MAX) this.products.delete(this.products.keys().next().value as string);
        }
        this.cart = carts.addProduct(this.cart, product, raw);
        this.refund = null;
        this.lastSale = null;
        this.say('info', `${product.name}: ${this.priceText(product)}`);
        await this.reprice();
      } else if (scan.kind === 'customer') {
        if (this.sellingOffline) fail('POS_ERR_OFFLINE', OFFLINE_CUSTOMER);
        const customer = await this.link.request<CustomerView>('customer:lookup', { card: scan.card });
        this.setCartCustomer(customer);
        this.say('info', `customer ${customer.name}: ${customer.balances.map((b) => `${b.units} ${b.token}`).join(', ') || 'no tokens'}`);
        await this.reprice();
      } else {
        if (this.sellingOffline) fail('POS_ERR_OFFLINE', OFFLINE_REFUND);
        const receipt = await this.link.request<ReceiptData>('receipt:get', { saleId: scan.saleId });
        this.refund = { sale: receipt.sale, refunded: receipt.refund };
        this.say('info', receipt.refund === null ? `sale ${receipt.sale.saleId}: refund it with a supervisor` : `sale ${receipt.sale.saleId} was already refunded`);
      }
    } catch (err) {
      this.sayError(err);
    }
  }

  /**
   * A gift certificate or coupon scanned: the store checks it and says what remains. With
   * a sale under way it pays part of it at once (the cashier can take it off again).
   */
  private async scanInstrument(scan: InstrumentScan): Promise<void> {
    if (this.unpaired()) fail('POS_ERR_NOT_PAIRED', PAIR_AGAIN);
    if (!this.link.connected) fail('POS_ERR_OFFLINE', OFFLINE_INSTRUMENT);
    const view = await this.instruments.inquire(scan);
    const what = view.kind === 'gift' ? 'gift certificate' : 'coupon';
    const left = `${formatUnits(view.remainingUnits, view.token)} (${formatMinor(view.remainingMinor, view.currency)})`;
    const usable = view.remainingUnits > 0 && view.state !== 'voided' && view.state !== 'spent';
    // A certificate the mall still holds as unsold stock is shown to be sold, not spent at once.
    if (this.cart.lines.length > 0 && usable && view.state !== 'unsold' && this.completing === null) {
      this.cart = carts.addInstrument(this.cart, this.instruments.cartEntry(view.code));
      this.say('info', `${what} ${view.code}: ${left} remain; it pays this sale`);
      await this.reprice();
      return;
    }
    if (view.state === 'unsold') {
      this.say('info', `${what} ${view.code} is unsold stock of the mall, worth ${left}: sell it from its panel`);
      return;
    }
    this.say(usable ? 'info' : 'error', usable ? `${what} ${view.code}: ${left} remain` : view.kind === 'coupon' ? `coupon ${view.code} was already used` : `nothing remains on ${what} ${view.code}`);
  }

  private priceText(p: ProductView): string {
    const tokens = Object.entries(p.tokenPrices).map(([t, u]) => `${u} ${t}`);
    return [...tokens, formatMinor(p.priceMinor, p.currency)].join(' or ');
  }

  /** Asks the server to price the cart; a newer change supersedes an older answer. */
  private async reprice(): Promise<void> {
    const version = ++this.priceVersion;
    if (this.cart.lines.length === 0) {
      this.priced = null;
      this.pricingError = null;
      this.changed();
      return;
    }
    try {
      const priced = await this.link.request<PricedCart>('cart:price', {
        lines: carts.requestLines(this.cart),
        card: this.cart.customer?.card ?? null,
        // The store prices wallet tokens as tendered; the mall is asked only at commit.
        tenders: this.cart.tenders,
        ...(this.cart.instruments.length > 0 ? { instruments: this.instruments.tenders(this.cart.instruments) } : {}),
      });
      if (version !== this.priceVersion) return;
      this.priced = priced;
      this.pricingError = null;
    } catch (err) {
      if (version !== this.priceVersion) return;
      if (err instanceof LinkDownError && this.sellingOffline && this.catalog.limits !== null) {
        // Selling offline: the total is the catalog copy's, shown without a pricing error.
        this.priced = null;
        this.pricingError = null;
        this.changed();
        return;
      }
      this.pricingError = wireOf(err);
      if (!(err instanceof LinkDownError)) this.priced = null;
    }
    this.changed();
  }

  // ---- commands from the screen ------------------------------------------------------

  async command(cmd: Command): Promise<void> {
    try {
      switch (cmd.type) {
        case 'scan':
          return await this.scan(cmd.code);
        case 'setQty':
          this.guardIdle();
          this.cart = carts.setQty(this.cart, cmd.lineNo, cmd.qty);
          return await this.reprice();
        case 'voidLine':
          this.guardIdle();
          this.cart = carts.voidLine(this.cart, cmd.lineNo);
          this.say('info', 'line voided');
          return await this.reprice();
        case 'cancelSale':
          this.guardIdle();
          this.cart = carts.emptyCart();
          this.instruments.forget([]);
          this.economy.customerChanged(null);
          this.say('info', 'sale cancelled: nothing was charged');
          return await this.reprice();
        case 'removeCustomer':
          this.guardIdle();
          this.setCartCustomer(null);
          return await this.reprice();
        case 'setTenders':
          return await this.setTenders(cmd.tenders);
        case 'setCash':
          this.guardIdle();
          this.cart = carts.setCash(this.cart, cmd.cashTenderedMinor);
          this.changed();
          return;
        case 'complete':
          return await this.complete();
        case 'customerPin':
          return await this.sendWithPin('customer-pin', cmd.pin);
        case 'walletPin':
          return await this.sendWithPin('wallet-pin', cmd.pin);
        case 'stopCompletion':
          return await this.stopCompletion();
        case 'refund':
          if (this.sellingOffline) fail('POS_ERR_OFFLINE', OFFLINE_REFUND);
          return await this.refundSale(cmd.staffId, cmd.pin, cmd.reason);
        case 'closeRefund':
          this.refund = null;
          this.changed();
          return;
        case 'reprint':
          return await this.reprint();
        case 'openShift':
          return await this.openShift(cmd.count);
        case 'cashMove':
          return await this.cashMove(cmd.kind, cmd.amountMinor, cmd.reason);
        case 'noSale':
          return await this.noSale(cmd.staffId, cmd.pin, cmd.reason);
        case 'closeShift':
          return await this.closeShift(cmd.count);
        case 'closeShiftResult':
          this.shift = { ...this.shift, closed: null };
          this.changed();
          return;
        case 'xReport':
          return await this.xReport(cmd.scope);
        case 'zReport':
          return await this.zReport(cmd.staffId, cmd.pin);
        case 'login': {
          const who = await this.link.request<{ staffId: string; name: string }>('cashier:login', { staffId: cmd.staffId, pin: cmd.pin });
          this.cashier = { staffId: who.staffId, name: who.name, pin: cmd.pin };
          void this.refreshShift();
          this.say('success', this.waiting?.for === 'cashier' ? `signed in: ${who.name}; complete the sale again` : `signed in: ${who.name}`);
          return;
        }
        case 'logout':
          if (this.link.connected) await this.link.request('cashier:logout', {});
          this.cashier = null;
          this.say('info', 'signed out');
          return;
        case 'dismiss':
          this.message = null;
          this.changed();
          return;
        case 'instrumentPay':
          this.guardIdle();
          this.cart = carts.addInstrument(this.cart, this.instruments.cartEntry(cmd.code));
          this.say('info', `${cmd.code} pays this sale`);
          return await this.reprice();
        case 'instrumentRemove':
          this.guardIdle();
          this.cart = carts.removeInstrument(this.cart, cmd.code);
          this.instruments.forget(this.cart.instruments);
          this.say('info', `${cmd.code} taken off the sale`);
          return await this.reprice();
        case 'instrumentClose':
          this.instruments.close();
          this.instruments.forget(this.cart.instruments);
          this.changed();
          return;
        case 'sellCertificate':
          return await this.sellCertificate(cmd);
        case 'instrumentVoid':
          return await this.voidCertificate(cmd);
        default:
          if (ECONOMY_COMMANDS.has(cmd.type)) return await this.economy.command(cmd as EconomyCommand);
          if (AUCTION_COMMANDS.has(cmd.type)) return await this.auctions.command(cmd as AuctionCommand);
          fail('POS_ERR_COMMAND');
      }
    } catch (err) {
      this.sayError(err);
    }
  }

  private guardIdle(): void {
    if (this.completing !== null || this.offlineBusy) fail('POS_ERR_BUSY');
  }

  private setCartCustomer(customer: CustomerView | null): void {
    this.cart = carts.setCustomer(this.cart, customer);
    this.economy.customerChanged(customer?.card ?? null);
  }

  /**
   * Sets how the sale is paid. Tokens from the mall wallet need the mall: the till asks for
   * the wallet first, so a wallet out of reach (or short) is said at once and the sale
   * keeps its other tenders.
   */
  private async setTenders(tenders: TenderChoice[]): Promise<void> {
    this.guardIdle();
    if (tenders.length > 0 && this.sellingOffline) fail('POS_ERR_OFFLINE', tenders.some((t) => t.source === 'wallet') ? OFFLINE_WALLET : OFFLINE_TOKENS);
    const fromWallet = tenders.filter((t) => t.source === 'wallet');
    const customer = this.cart.customer;
    if (fromWallet.length > 0 && customer !== null) {
      if (!this.link.connected) fail('POS_ERR_OFFLINE', OFFLINE_WALLET);
      const known = new Set(this.cart.tenders.filter((t) => t.source === 'wallet').map((t) => `${t.token}:${t.units ?? ''}`));
      if (fromWallet.some((t) => !known.has(`${t.token}:${t.units ?? ''}`))) {
        let wallet: WalletView;
        try {
          wallet = await this.link.request<WalletView>('wallet:balance', { card: customer.card });
        } catch (err) {
          if (err instanceof RemoteError && err.wire.code === 'VND_ERR_WALLET_OFFLINE') fail('VND_ERR_WALLET_OFFLINE', WALLET_UNREACHABLE);
          throw err;
        }
        for (const t of fromWallet) {
          const held = wallet.balances.find((b) => b.token === t.token)?.units ?? 0;
          if ((t.units ?? 0) > held) fail('MALL_ERR_WALLET_INSUFFICIENT', `the mall wallet holds ${held} ${t.token}: ${(t.units ?? 0) - held} short; take another tender`, { token: t.token });
        }
      }
    }
    this.cart = carts.setTenders(this.cart, tenders);
    await this.reprice();
  }
  /** Completes the sale: key and body on disk first, then sent until the outcome is known. */
  private async complete(): Promise<void> {
    // A sale stopped for a cashier's sign-in (or pairing) is sent again under its own key.
    if (this.completing !== null && this.completion === null && (this.waiting?.for === 'cashier' || this.waiting?.for === 'pairing')) {
      this.needLink();
      return this.resume(this.completing);
    }
    if (this.sellingOffline) return this.completeOffline();
    this.guardIdle();
    if (this.cart.lines.length === 0) fail('POS_ERR_CART_EMPTY');
    this.needLink();
    const pending: PendingSale = {
      key: `${this.opts.credential.terminalId}:${randomUUID()}`,
      body: {
        lines: carts.requestLines(this.cart),
        card: this.cart.customer?.card ?? null,
        tenders: this.cart.tenders,
        cashTenderedMinor: this.cart.cashTenderedMinor,
        ...(this.cart.instruments.length > 0 ? { instruments: this.instruments.tenders(this.cart.instruments) } : {}),
      },
      startedAt: new Date().toISOString(),
    };
    await writeFileDurable(this.pendingFile, JSON.stringify(pending));
    this.salePins = {};
    this.completing = pending;
    this.changed();
    this.completion = this.runCompletion(pending);
    await this.completion;
  }

  /** A till that must be paired again says so, rather than that the server is unreachable. */
  private unpaired(): boolean {
    const state = this.link.status().state;
    return state === 'revoked' || state === 'unauthorised';
  }

  private needLink(): void {
    if (this.unpaired()) fail('POS_ERR_NOT_PAIRED', PAIR_AGAIN);
    if (!this.link.connected) fail('POS_ERR_OFFLINE');
  }

  /**
   * Sends a waiting sale again, with the same key and body, and (in memory only) the
   * customer's PINs: the one for token payments above the store's limit and the mall
   * wallet's. A PIN typed earlier for this sale is sent again with the other one.
   */
  private async resume(pending: PendingSale, pins: SalePins = {}): Promise<void> {
    this.waiting = null;
    this.say('info', 'sending the sale again');
    this.completion = this.runCompletion(pending, pins);
    await this.completion;
  }

  /** The PINs typed for the sale being completed; in memory only, forgotten with the sale. */
  private salePins: SalePins = {};

  private async sendWithPin(kind: 'customer-pin' | 'wallet-pin', pin: string): Promise<void> {
    const pending = this.completing;
    if (pending === null || this.completion !== null || this.waiting?.for !== kind) fail('POS_ERR_COMMAND', `no sale is waiting for a ${kind === 'wallet-pin' ? 'wallet' : 'customer'} PIN`);
    if (!/^\d{4,12}$/.test(pin)) fail('POS_ERR_COMMAND', 'a PIN is 4 to 12 digits');
    this.needLink();
    this.salePins = kind === 'wallet-pin' ? { ...this.salePins, walletPin: pin } : { ...this.salePins, customerPin: pin };
    await this.resume(pending, this.salePins);
  }

  /**
   * Gives up a sale waiting for the customer's PIN or a cashier: the server refused its
   * key before judging it, so nothing was charged. The cart stays to be changed or paid
   * another way. A sale waiting for pairing is not given up: its outcome is unknown.
   */
  private async stopCompletion(): Promise<void> {
    if (this.completing === null || this.completion !== null || (this.waiting?.for !== 'customer-pin' && this.waiting?.for !== 'wallet-pin' && this.waiting?.for !== 'cashier')) fail('POS_ERR_BUSY');
    await rm(this.pendingFile, { force: true });
    this.salePins = {};
    this.completing = null;
    this.waiting = null;
    this.say('info', 'the sale was not completed: nothing was charged; the cart is kept');
    await this.reprice();
  }

  /** Resolves when the sale is committed or refused; completions after a restart go through here too. */
  whenIdle(): Promise<void> {
    return this.completion ?? Promise.resolve();
  }

  /**
   * Sends the sale until its outcome is known, then fetches its receipt once: the
   * commit's acknowledgement carries only what closes the sale. The pending sale stays
   * on disk until the receipt is queued, so a restart in between sends the same key
   * again, learns the same sale, and prints it.
   */
  private async runCompletion(pending: PendingSale, pins: SalePins = {}): Promise<void> {
    let ack: SaleAck | null = null;
    let receipt: ReceiptData | null = null;
    let retryDelayMs = RETRY_DELAY_MIN_MS;
    while (!this.closed && receipt === null) {
      try {
        // The PIN is not part of the request's hash: a retry after a lost answer is the
        // same request, and the server answers a key it knows without checking the PIN.
        const body = { ...pending.body, ...pins };
        ack ??= await this.link.request<SaleAck>('sale:commit', { key: pending.key, ...body });
        receipt = await this.link.request<ReceiptData>('receipt:get', { saleId: ack.saleId });
      } catch (err) {
        if (ack === null) {
          // A link ended by the store (revoked, paired again) will not come back by itself.
          const kind = err instanceof RemoteError ? classifySaleRefusal(err.wire.code) : this.unpaired() ? 'pairing' : 'unknown';
          if (kind === 'definite' || kind === 'wallet') {
            // The server judged the sale and refused it: nothing is committed under its
            // key. The cart stays for the cashier to fix.
            await rm(this.pendingFile, { force: true });
            this.completing = null;
            this.salePins = {};
            this.completion = null;
            this.waiting = null;
            if (kind === 'wallet' && err instanceof RemoteError) {
              // The wallet is out of reach: its tokens come off the payment, the other tenders stay.
              this.cart = carts.withoutWalletTenders(this.cart);
              this.say('error', `${WALLET_UNREACHABLE}: the wallet tokens were taken off the payment; the sale is kept, pay it another way`, err.wire.code);
              void this.reprice();
              return;
            }
            this.sayError(err);
            return;
          }
          if (kind !== 'unknown') {
            // A person must act first: the customer types their PIN, a cashier signs in, or
            // the till is paired again. The key and body stay on disk, the PIN nowhere.
            this.stopFor(kind, err instanceof RemoteError ? err.wire : { code: 'POS_ERR_NOT_PAIRED', message: PAIR_AGAIN });
            return;
          }
        } else if (err instanceof RemoteError && RECEIPT_REFUSALS.has(err.wire.code)) {
          // The sale is committed; only its receipt was refused. The sale is closed
          // without one rather than held open for something the cashier cannot fix.
          await this.finishSale(ack, null, err.wire.message);
          return;
        }
        // Anything else leaves the outcome unknown (the server may have journalled the
        // sale before it failed): the same key is sent again until the server says.
        const why = err instanceof RemoteError ? ` (${err.wire.message})` : '';
        this.say(
          'info',
          ack === null
            ? `waiting for the store server to confirm the sale${why}: it is sent again as the same sale and will not be charged twice`
            : `sale ${ack.saleId} is committed; waiting for the store server to send its receipt`,
        );
        if (err instanceof LinkDownError) {
          await this.link.waitConnected(this.opts.reconnectWaitMs ?? 2_000);
        } else {
          // The server answered, at once: wait before asking again, longer each time.
          await this.pause(retryDelayMs);
          retryDelayMs = Math.min(retryDelayMs * 2, RETRY_DELAY_MAX_MS);
        }
      }
    }
    if (ack === null || receipt === null) return;
    await this.finishSale(ack, receipt.sale, null, receipt.proof);
  }

  private stopFor(kind: SaleWaiting['for'], wire: WireError): void {
    this.completion = null;
    const text =
      kind === 'pairing'
        ? PAIR_AGAIN
        : kind === 'cashier'
          ? 'a cashier must sign in, then complete the sale again'
          : maskCardsInText(wire.message);
    if (kind === 'cashier') this.cashier = null;
    this.waiting = { for: kind, code: wire.code, text };
    const asked = (kind === 'customer-pin' && wire.code === 'VND_ERR_CUSTOMER_PIN_REQUIRED') || (kind === 'wallet-pin' && wire.code === 'MALL_ERR_WALLET_PIN_REQUIRED');
    this.say(asked ? 'info' : 'error', text, wire.code);
  }

  /** Sleeps between retries; the timer does not keep a closing process alive. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms).unref());
  }

  /** Closes a committed sale: its receipt (when the server sent it) queued, the cart cleared. */
  private async finishSale(ack: SaleAck, sale: SaleResult | null, receiptProblem: string | null, proof?: string): Promise<void> {
    // Cash changed hands: the drawer opens as the sale completes, before the receipt prints.
    // A sale paid only with tokens leaves it shut.
    const kicking = ack.cash.tenderedMinor > 0 ? this.openDrawer() : null;
    const server = this.link.status().server;
    // The receipt is on disk in the print queue before the pending sale is forgotten.
    const printing =
      sale === null
        ? null
        : this.opts.printQueue.enqueue(
            toReceipt(
              {
                store: { vendorId: this.opts.credential.vendorId, name: server?.storeName ?? this.opts.credential.storeName, address: server?.storeAddress ?? [] },
                sale,
                refund: null,
                // The store's signed proof, printed as the QR code (docs/PROTOCOL.md, "Verifiable receipts").
                ...(proof === undefined ? {} : { proof }),
              },
              { kind: 'sale', terminalName: this.opts.credential.name, cashierName: this.cashier?.name ?? sale.cashier ?? '-', tokenNames: server?.tokenNames ?? {} },
            ),
          );
    await rm(this.pendingFile, { force: true });
    this.completing = null;
    this.salePins = {};
    this.completion = null;
    this.waiting = null;
    this.lastSale = sale;
    if (sale !== null) this.lastReceiptSaleId = sale.saleId;
    void this.refreshShift();
    this.cart = carts.emptyCart();
    this.instruments.close();
    this.instruments.forget([]);
    this.priced = null;
    this.pricingError = null;
    const change = ack.cash.changeMinor > 0 ? `, change ${formatMinor(ack.cash.changeMinor, ack.currency)}` : '';
    if (printing === null) {
      this.say('error', `sale ${ack.saleId} complete${change}; receipt not printed: ${receiptProblem ?? 'the store server did not send it'}`);
      await kicking;
      return;
    }
    const earned = Object.entries(ack.earned ?? {}).filter(([, units]) => units > 0);
    const earnedText = earned.length > 0 ? `; earned ${earned.map(([token, units]) => formatUnits(units, token)).join(' and ')}` : '';
    const instrumentText = ack.instruments === undefined || ack.instruments.length === 0 ? '' : `; ${remainingText(ack.instruments)}`;
    this.say('success', `sale ${ack.saleId} complete${change}${earnedText}${instrumentText}`);
    await kicking;
    const printed = await printing;
    if (!printed.ok) this.say('error', `sale ${ack.saleId} complete; receipt not printed: ${printed.message}`);
  }

  private async refundSale(staffId: string, pin: string, reason: string): Promise<void> {
    this.guardIdle();
    if (this.refund === null) fail('POS_ERR_NO_SALE');
    const sale = this.refund.sale;
    // A refund of the same sale, reason and supervisor whose answer never came is sent
    // again under its key; anything else gets a new key (the server refunds a sale once).
    const earlier = await this.readJson<PendingRefund>(this.pendingRefundFile);
    const same = earlier !== null && earlier.saleId === sale.saleId && earlier.reason === reason && earlier.supervisorId === staffId;
    const pending: PendingRefund = same ? earlier : { key: `${this.opts.credential.terminalId}:${randomUUID()}`, saleId: sale.saleId, reason, supervisorId: staffId, startedAt: new Date().toISOString() };
    if (!same) await writeFileDurable(this.pendingRefundFile, JSON.stringify(pending));
    let refunded: RefundResult | null = null;
    for (let attempt = 0; attempt < 5 && refunded === null; attempt++) {
      try {
        refunded = await this.link.request<RefundResult>('sale:refund', { key: pending.key, saleId: sale.saleId, reason, supervisor: { staffId, pin } });
      } catch (err) {
        if (err instanceof RemoteError && DEFINITE_REFUND_REFUSALS.has(err.wire.code)) await rm(this.pendingRefundFile, { force: true });
        if (!(err instanceof LinkDownError)) throw err;
        if (attempt === 4) {
          throw new MallposError('POS_ERR_OFFLINE', `the store server did not confirm the refund of ${sale.saleId}: try it again with the same reason and supervisor; it is sent as the same refund and cannot be made twice`);
        }
        await this.link.waitConnected(this.opts.reconnectWaitMs ?? 2_000);
      }
    }
    if (refunded === null) return;
    await rm(this.pendingRefundFile, { force: true });
    this.refund = { sale: { ...sale, refunded: true }, refunded };
    const server = this.link.status().server;
    const receipt = toReceipt(
      { store: { vendorId: this.opts.credential.vendorId, name: server?.storeName ?? this.opts.credential.storeName, address: server?.storeAddress ?? [] }, sale, refund: refunded },
      { kind: 'refund', terminalName: this.opts.credential.name, cashierName: this.cashier?.name ?? '-', tokenNames: server?.tokenNames ?? {} },
    );
    const cash = refunded.cashRefundMinor > 0 ? `; give back ${formatMinor(refunded.cashRefundMinor, sale.currency)} in cash` : '';
    this.say('success', `sale ${sale.saleId} refunded as ${refunded.refundId}${cash}`);
    this.lastReceiptSaleId = sale.saleId;
    void this.refreshShift();
    if (refunded.cashRefundMinor > 0) await this.openDrawer();
    const printed = await this.opts.printQueue.enqueue(receipt);
    if (!printed.ok) this.say('error', `refund done; receipt not printed: ${printed.message}`);
  }

  /**
   * Opens the cash drawer, if the till has one. A drawer that does not open never
   * undoes what was done: the status bar says why, and the cashier uses the key.
   */
  private async openDrawer(): Promise<void> {
    if (!this.opts.drawer) return;
    await this.opts.drawer.kick();
  }

  /**
   * Reprints the last receipt. The store counts every reprint and the copy says so
   * ("DUPLICATE — reprint N"). Only when the store cannot be reached (or does not know
   * the event) is the copy kept by the print queue printed instead, marked as a reprint.
   */
  private async reprint(): Promise<void> {
    const saleId = this.lastReceiptSaleId;
    if (saleId !== null) {
      let data: (ReceiptData & { reprintCount: number }) | null = null;
      try {
        data = await this.link.request<ReceiptData & { reprintCount: number }>('receipt:reprint', { saleId });
      } catch (err) {
        // A store server that cannot be reached, or one too old to count reprints, leaves
        // the copy the print queue kept.
        const uncounted = err instanceof LinkDownError || (err instanceof RemoteError && err.wire.code === 'VND_ERR_UNKNOWN_EVENT');
        if (!uncounted) throw err;
      }
      if (data !== null) {
        const server = this.link.status().server;
        const receipt = {
          ...toReceipt(data, { kind: 'reprint', terminalName: this.opts.credential.name, cashierName: this.cashier?.name ?? data.sale.cashier ?? '-', tokenNames: server?.tokenNames ?? {} }),
          reprintCount: data.reprintCount,
        };
        const printed = await this.opts.printQueue.enqueue(receipt);
        if (printed.ok) this.say('success', `receipt reprinted (duplicate, reprint ${data.reprintCount})`);
        else this.say('error', `reprint ${data.reprintCount} not printed: ${printed.message}`);
        return;
      }
    }
    const result = await this.opts.printQueue.reprintLast();
    if (result.ok) this.say('success', 'receipt reprinted');
    else this.say('error', result.message);
  }

  // ---- the cashier's day --------------------------------------------------------------

  /** Asks the store for this till's open shift; a store that does not answer leaves it unknown. */
  private async refreshShift(): Promise<void> {
    if (!this.link.connected) return;
    try {
      const current = await this.link.request<ShiftView | null>('shift:current', {});
      this.shift = { ...this.shift, known: true, current };
      this.changed();
    } catch {
      // Shown as unknown; the next connection or sale asks again.
    }
  }

  private reportContext(): ReportContext {
    const server = this.link.status().server;
    return {
      store: { name: server?.storeName ?? this.opts.credential.storeName, address: server?.storeAddress ?? [] },
      terminalName: this.opts.credential.name,
      cashierName: this.cashier?.name ?? '-',
      currency: server?.currency ?? 'EUR',
    };
  }

  /**
   * Sells a gift certificate the store signs for its own tokens, for cash (the drawer
   * opens) or card, under a key kept on disk until answered; its slip carries the QR code.
   */
  private async sellCertificate(cmd: Extract<Command, { type: 'sellCertificate' }>): Promise<void> {
    let what: Record<string, unknown>;
    if (cmd.code !== undefined) {
      what = { instrument: this.instruments.formOf(cmd.code) };
    } else {
      if (cmd.token === undefined || cmd.units === undefined || !Number.isSafeInteger(cmd.units) || cmd.units < 1) fail('CORE_ERR_AMOUNT', 'a gift certificate is worth at least one token');
      what = { token: cmd.token, units: cmd.units };
    }
    const ack = await this.instruments.sell(
      (event, body) => this.sendKeyed(this.pendingEconomyOpFile, event, body, {}, {}, 'the store server did not confirm it: sell it again; it is sent as the same request and counts once'),
      { ...what, payment: cmd.payment },
    );
    if (cmd.code !== undefined) this.instruments.close();
    const money = formatMinor(ack.priceMinor, ack.currency);
    const p = ack.payment;
    this.say('success', `gift certificate ${ack.code} sold: ${formatUnits(ack.units, ack.token)} for ${money}${p.method === 'cash' && p.changeMinor > 0 ? `, change ${formatMinor(p.changeMinor, ack.currency)}` : ''}`);
    if (p.method === 'cash') await this.openDrawer();
    const ctx = this.economyReceiptContext();
    const printed = await certificateSlip(ack, { store: ctx.store, terminal: ctx.terminalName, cashier: ctx.cashierName }, this.opts.printQueue);
    this.lastReceiptSaleId = null;
    if (!printed.ok) this.say('error', `gift certificate ${ack.code} sold; its slip was not printed: ${printed.message ?? 'the printer failed'}`);
  }

  /** Voids a certificate this store sold by mistake: a supervisor's PIN, sent once and never written; the drawer opens for a cash price. */
  private async voidCertificate(cmd: Extract<Command, { type: 'instrumentVoid' }>): Promise<void> {
    const ack = await this.sendKeyed<InstrumentVoidAck>(
      this.pendingEconomyOpFile,
      'instrument:void',
      { code: cmd.code.toUpperCase(), reason: cmd.reason },
      { supervisor: { staffId: cmd.staffId, pin: cmd.pin } },
      { supervisor: cmd.staffId },
      'the store server did not confirm the void: void it again; it is sent as the same request and counts once',
    );
    const refund = ack.cashRefundMinor > 0 ? `: hand back ${formatMinor(ack.cashRefundMinor, ack.currency)} in cash` : ': refund the card payment on the card terminal';
    this.say('success', `gift certificate ${ack.code} voided${refund}`);
    if (ack.cashRefundMinor > 0) await this.openDrawer();
  }

  private economyReceiptContext(): EconomyReceiptContext {
    const server = this.link.status().server;
    return {
      store: { name: server?.storeName ?? this.opts.credential.storeName, address: server?.storeAddress ?? [] },
      terminalName: this.opts.credential.name,
      cashierName: this.cashier?.name ?? '-',
      tokenNames: server?.tokenNames ?? {},
    };
  }

  private money(minor: number): string {
    return formatMinor(minor, this.link.status().server?.currency ?? 'EUR');
  }

  /**
   * Sends a cash operation under a key made before its first send and kept on disk
   * (see PendingCashOp). The same operation (same event and body, secrets aside, and the
   * same `identity`, such as who approved it) tried again reuses the key until the store
   * has answered it.
   */
  private sendCashOp<T>(
    event: keyof ClientToServerEvents,
    body: Record<string, unknown>,
    secret: Record<string, unknown> = {},
    identity: Record<string, unknown> = {},
  ): Promise<T> {
    return this.sendKeyed<T>(this.pendingCashOpFile, event, body, secret, identity);
  }

  /**
   * The sender behind cash operations and tokens between stores: the key of one request is
   * made before its first send and kept in `file` until the store answers, so the same
   * request sent again (a lost answer, a restart, the cashier trying again) counts once.
   */
  private async sendKeyed<T>(
    file: string,
    event: keyof ClientToServerEvents,
    body: Record<string, unknown>,
    secret: Record<string, unknown> = {},
    identity: Record<string, unknown> = {},
    unconfirmed = 'the store server did not confirm it: try again with the same amount and reason; it is sent as the same request and counts once',
  ): Promise<T> {
    this.guardIdle();
    this.needLink();
    const fingerprint = JSON.stringify({ event, body, identity });
    const earlier = await this.readJson<PendingCashOp>(file);
    const pending: PendingCashOp =
      earlier !== null && earlier.fingerprint === fingerprint ? earlier : { key: `${this.opts.credential.terminalId}:${randomUUID()}`, fingerprint, startedAt: new Date().toISOString() };
    if (pending !== earlier) await writeFileDurable(file, JSON.stringify(pending));
    for (let attempt = 0; ; attempt++) {
      try {
        const answer = await this.link.request<T>(event, { key: pending.key, ...body, ...secret });
        await rm(file, { force: true });
        return answer;
      } catch (err) {
        if (!(err instanceof LinkDownError)) throw err;
        if (attempt === 4) {
          throw new MallposError('POS_ERR_OFFLINE', unconfirmed);
        }
        await this.link.waitConnected(this.opts.reconnectWaitMs ?? 2_000);
      }
    }
  }

  private async openShift(count: CashCount): Promise<void> {
    if (this.shift.current !== null) fail('POS_ERR_COMMAND', `a shift is already open on this till since ${this.shift.current.openedAt.slice(11, 16)}: close it first`);
    const view = await this.sendCashOp<ShiftView>('shift:open', { count });
    this.shift = { known: true, current: view, closed: null };
    this.say('success', `shift open: float ${this.money(view.openingFloatMinor)}; put it in the drawer`);
    // The float goes into the drawer.
    await this.openDrawer();
  }

  private async cashMove(kind: 'paid-in' | 'paid-out', amountMinor: number, reason: string): Promise<void> {
    const view = await this.sendCashOp<ShiftView>('shift:cash-move', { kind, amountMinor, reason });
    this.shift = { ...this.shift, known: true, current: view };
    this.say('success', `${kind === 'paid-in' ? 'paid in' : 'paid out'}: ${this.money(amountMinor)} (${reason})`);
    await this.openDrawer();
  }

  private async noSale(staffId: string, pin: string, reason: string): Promise<void> {
    await this.sendCashOp<null>('drawer:no-sale', { reason }, { supervisor: { staffId, pin } }, { supervisorId: staffId });
    this.say('success', `no-sale recorded (${reason}): the drawer opens`);
    await this.openDrawer();
  }

  /** Closes the shift on a blind count: the expected amount is seen only in the answer. */
  private async closeShift(count: CashCount): Promise<void> {
    const view = await this.sendCashOp<ShiftView>('shift:close', { count });
    this.shift = { known: true, current: null, closed: view };
    const overShort = view.overShortMinor ?? 0;
    const result = overShort === 0 ? 'the count matches' : overShort > 0 ? `over by ${this.money(overShort)}` : `short by ${this.money(-overShort)}`;
    this.say(overShort === 0 ? 'success' : 'info', `shift closed: ${result}`);
    // The counted cash leaves the drawer.
    await this.openDrawer();
    const printed = await this.opts.printQueue.enqueue(shiftCloseReceipt(view, this.reportContext()));
    if (!printed.ok) this.say('error', `shift closed (${result}); the slip was not printed: ${printed.message}`);
  }

  private async xReport(scope: 'shift' | 'day'): Promise<void> {
    this.needLink();
    const x = await this.link.request<XReport>('report:x', { scope });
    const printed = await this.opts.printQueue.enqueue(xReportReceipt(x, this.reportContext()));
    if (printed.ok) this.say('success', `X report (${scope}) printed: net ${this.money(x.totals.netMinor)}`);
    else this.say('error', `X report not printed: ${printed.message}`);
  }

  private async zReport(staffId: string, pin: string): Promise<void> {
    // The key is not bound to the supervisor: a Z asked again after a lost answer is the same Z.
    const z = await this.sendCashOp<ZReport>('report:z', {}, { supervisor: { staffId, pin } });
    const printed = await this.opts.printQueue.enqueue(zReportReceipt(z, this.reportContext()));
    if (printed.ok) this.say('success', `Z report ${z.zNumber} printed: day ${z.day} closed, net ${this.money(z.totals.netMinor)}`);
    else this.say('error', `Z report ${z.zNumber} made (day ${z.day} closed) but not printed: ${printed.message}`);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.offlineTimer !== null) clearInterval(this.offlineTimer);
    for (const u of this.unsubscribe) u();
    this.auctions.close();
    this.listeners.clear();
    this.link.close();
    await this.scanChain;
    await this.offlinePrints;
    await this.syncing?.catch(() => undefined);
    // A write of the outage clock (or of a sale's mark) under way lands before the till is closed.
    await this.offline.settled();
  }
}

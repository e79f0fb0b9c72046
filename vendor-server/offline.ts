import {
  add,
  assert,
  catalogGetRequest,
  checkBuiltSale,
  fail,
  formatMinor,
  makeSaleId,
  MallposError,
  mul,
  offlineReportRequest,
  offlineSaleForwardRequest,
  parse,
  parseScan,
  type CatalogView,
  type ClientToServerEvents,
  type NewEvent,
  type OfflineSaleAck,
  type OfflineSaleForwardRequest,
  type OfflineSaleInfo,
  type PricedLine,
  type ProductView,
} from '../core/index.ts';
import type { Logger } from '../platform/logger.ts';
import { terminalScope } from './cashier-day/state.ts';
import type { OfflineConfig } from './config.ts';
import type { LedgerService } from './ledger/service.ts';
import { dict, own } from './ledger/state.ts';
import type { VendorMetrics } from './metrics.ts';

/**
 * Selling through an outage of the store server, the server's side: the catalog the
 * tills copy, the forwarding of their offline cash sales (journalled once each, in
 * each till's counter order, priced as the till recorded them), and what each till
 * reports it still holds, with an alarm when a till holds sales and has not forwarded
 * for too long. The reports live in memory only: the tills send them again on every
 * connection.
 */

/** The offline events a terminal may send. */
export const OFFLINE_EVENTS: readonly (keyof ClientToServerEvents)[] = ['catalog:get', 'offline-sale:forward', 'offline:report'];

/** How far ahead of the server's clock a till's time may be (clock drift between machines). */
export const TILL_CLOCK_AHEAD_MS_MAX = 10 * 60_000;
/** How often the alarm is looked at, for the log and the metrics. */
export const ALARM_CHECK_MS = 5_000;

export interface OfflineTillView {
  terminalId: string;
  /** What the till last reported it holds unforwarded. */
  waiting: number;
  oldestAt: string | null;
  /** The till's own record of its last forward. */
  lastForwardedAt: string | null;
  reportedAt: string;
  /** When this server last journalled a forwarded sale of the till (since it started). */
  lastReceivedAt: string | null;
  /** The till's last offline number journalled, from the ledger. */
  lastCounter: number;
  alarm: boolean;
}

interface TillReport {
  waiting: number;
  oldestAt: string | null;
  lastForwardedAt: string | null;
  reportedAtMs: number;
  /** Since when the till has reported sales waiting (reset when it reports none). */
  waitingSinceMs: number | null;
  lastReceivedMs: number | null;
  alarmLogged: boolean;
}

export class OfflineService {
  private readonly tills = new Map<string, TillReport>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly ledger: LedgerService,
    readonly limits: OfflineConfig,
    private readonly logger: Logger,
    private readonly metrics: VendorMetrics,
    private readonly opts: {
      clock?: () => Date;
      /** Whether a staff id is one of the store's staff: a forwarded sale names who sold. */
      staffKnown?: (staffId: string) => boolean;
    } = {},
  ) {}

  private clock(): Date {
    return this.opts.clock?.() ?? new Date();
  }

  // ---- catalog -------------------------------------------------------------------------

  catalog(raw: unknown): CatalogView {
    parse(catalogGetRequest, raw);
    const { state, store } = this.ledger;
    const products: ProductView[] = Object.values(state.products)
      .map((p) => ({ gtin: p.gtin, name: p.name, priceMinor: p.priceMinor, currency: store.currency, tokenPrices: { ...p.tokenPrices } }))
      .sort((a, b) => (a.gtin < b.gtin ? -1 : a.gtin > b.gtin ? 1 : 0));
    const { maxSales, maxTotalMinor, maxOutageS, catalogMaxAgeS } = this.limits;
    return { version: state.catalogVersion, at: this.clock().toISOString(), currency: store.currency, products, offlineLimits: { maxSales, maxTotalMinor, maxOutageS, catalogMaxAgeS } };
  }

  // ---- forwarding ----------------------------------------------------------------------

  /**
   * Journals one offline sale of `terminalId`, once: a repeat of its key gets the same
   * answer with `repeated: true`; the same number with another key is refused, and so is
   * a number that is not the next after the till's last (nothing is lost in a gap).
   */
  async forward(terminalId: string, raw: unknown): Promise<OfflineSaleAck> {
    const req = parse(offlineSaleForwardRequest, raw);
    if (!req.key.startsWith(`${terminalId}:`) || req.offlineId !== `${terminalId}-${req.counter}`) {
      fail('VND_ERR_OFFLINE_NOT_OWN', `this till forwards keys starting "${terminalId}:" and offline ids "${terminalId}-<counter>"`);
    }
    const gtins = this.checkRecord(req);
    let fresh = false;
    const ack = await this.ledger.commitRequest(
      { terminal: terminalId, cashier: req.cashier },
      req.key,
      req,
      (base) => {
        fresh = true;
        return this.buildEvent(terminalId, req, gtins, base);
      },
      (seq) => this.ackOf(seq, req.offlineId),
    );
    if (fresh) {
      this.till(terminalId).lastReceivedMs = this.clock().getTime();
      this.metrics.offlineForwarded.inc();
      if (ack.priceDifferences.length > 0) {
        this.metrics.offlinePriceDifferences.inc(ack.priceDifferences.length);
        this.logger.warn({ terminal: terminalId, offlineId: ack.offlineId, saleId: ack.saleId, priceDifferences: ack.priceDifferences }, 'offline sale priced differently on the till: journalled at the till\'s prices');
      }
      this.logger.info({ terminal: terminalId, offlineId: ack.offlineId, saleId: ack.saleId, seq: ack.seq, afterZ: ack.afterZ }, 'offline sale journalled');
    }
    return { ...ack, repeated: !fresh };
  }

  /** The agreement of the till's record with itself; the products' GTINs, in line order. */
  private checkRecord(req: OfflineSaleForwardRequest): string[] {
    const money = (m: number) => formatMinor(m, this.ledger.store.currency);
    const invalid = (why: string): never => fail('VND_ERR_OFFLINE_INVALID', `offline sale ${req.offlineId}: ${why}`, { offlineId: req.offlineId });
    if (req.currency !== this.ledger.store.currency) invalid(`its currency ${req.currency} is not the store's ${this.ledger.store.currency}`);
    if (Date.parse(req.at) > this.clock().getTime() + TILL_CLOCK_AHEAD_MS_MAX) invalid(`its time ${req.at} is in the future`);
    if (req.cashier !== null && this.opts.staffKnown?.(req.cashier) === false) invalid(`it names cashier ${req.cashier}, who is not on the store's staff`);
    const gtins: string[] = [];
    let total = 0;
    try {
      for (const [i, line] of req.lines.entries()) {
        const scan = parseScan(line.code);
        if (scan.kind !== 'product') invalid(`line ${i + 1} is not a product code`);
        else gtins.push(scan.gtin);
        if (mul(line.unitPriceMinor, line.qty) !== line.totalMinor) invalid(`line ${i + 1}'s total ${money(line.totalMinor)} is not its unit price times its quantity`);
        total = add(total, line.totalMinor);
      }
    } catch (err) {
      if (err instanceof MallposError && err.code !== 'VND_ERR_OFFLINE_INVALID') invalid(err.message);
      throw err;
    }
    if (total !== req.totalMinor) invalid(`its total ${money(req.totalMinor)} is not the sum of its lines, ${money(total)}`);
    if (req.cashTenderedMinor < req.totalMinor) invalid('less cash was tendered than its total');
    if (req.changeMinor !== req.cashTenderedMinor - req.totalMinor) invalid('its change is not the cash tendered less its total');
    return gtins;
  }

  /** Built with nothing awaited before the append, so the counter rule sees the last forward. */
  private buildEvent(terminalId: string, req: OfflineSaleForwardRequest, gtins: string[], base: Parameters<Parameters<LedgerService['commitRequest']>[3]>[0]): NewEvent {
    const { state } = this.ledger;
    const last = own(state.offlineTills, terminalId)?.counter ?? 0;
    if (req.counter <= last) fail('VND_ERR_OFFLINE_ID_REUSED', `offline sale number ${req.offlineId} was already journalled for another sale`, { offlineId: req.offlineId, lastCounter: last });
    if (req.counter !== last + 1) fail('VND_ERR_OFFLINE_GAP', `offline sale ${req.offlineId} arrived before ${terminalId}-${last + 1}: forward the till's sales in order`, { offlineId: req.offlineId, expectedCounter: last + 1 });

    const lines: PricedLine[] = req.lines.map((l, i) => ({
      lineNo: i + 1,
      gtin: gtins[i] as string,
      name: l.name,
      qty: l.qty,
      unitPriceMinor: l.unitPriceMinor,
      totalMinor: l.totalMinor,
      unitTokenPrices: dict<number>(),
    }));
    const priceDifferences: OfflineSaleInfo['priceDifferences'] = [];
    const seen = new Set<string>();
    for (const l of lines) {
      if (seen.has(l.gtin)) continue;
      seen.add(l.gtin);
      const serverUnitMinor = own(state.products, l.gtin)?.priceMinor ?? null;
      if (serverUnitMinor !== l.unitPriceMinor) priceDifferences.push({ code: l.gtin, tillUnitMinor: l.unitPriceMinor, serverUnitMinor });
    }
    // A Z closed the day of the till's time: the sale counts in the open day, and says so.
    const cd = state.cashierDay;
    const zAt = [cd.store.z?.at, terminalScope(cd, terminalId)?.z?.at].filter((at): at is string => at !== undefined);
    const afterZ = zAt.some((at) => Date.parse(req.at) < Date.parse(at));
    const event: NewEvent = {
      ...base,
      type: 'sale',
      postings: [],
      data: {
        saleId: makeSaleId(base.seq),
        customer: null,
        currency: req.currency,
        lines,
        allocations: [],
        debits: dict<number>(),
        totalMinor: req.totalMinor,
        cash: { dueMinor: req.totalMinor, tenderedMinor: req.cashTenderedMinor, changeMinor: req.changeMinor },
        balancesAfter: null,
        offline: { offlineId: req.offlineId, counter: req.counter, tillAt: req.at, receivedAt: base.at, catalogVersion: req.catalogVersion, priceDifferences, afterZ },
      },
    };
    checkBuiltSale(event.postings, event.data);
    return event;
  }

  private async ackOf(seq: number, offlineId: string): Promise<Omit<OfflineSaleAck, 'repeated'>> {
    const event = await this.ledger.readEvent(seq);
    // A key first used for another request reaches here only with another body, which the
    // ledger refused as a conflict; so the event is this offline sale.
    if (event.type !== 'sale' || event.data.offline === undefined || event.data.offline.offlineId !== offlineId) {
      fail('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request');
    }
    const off = event.data.offline;
    return { offlineId: off.offlineId, saleId: event.data.saleId, seq: event.seq, receivedAt: off.receivedAt, priceDifferences: off.priceDifferences, afterZ: off.afterZ };
  }

  // ---- what the tills hold -------------------------------------------------------------

  private till(terminalId: string): TillReport {
    let t = this.tills.get(terminalId);
    if (t === undefined) {
      t = { waiting: 0, oldestAt: null, lastForwardedAt: null, reportedAtMs: this.clock().getTime(), waitingSinceMs: null, lastReceivedMs: null, alarmLogged: false };
      this.tills.set(terminalId, t);
    }
    return t;
  }

  report(terminalId: string, raw: unknown): null {
    const req = parse(offlineReportRequest, raw);
    const now = this.clock().getTime();
    const t = this.till(terminalId);
    if (req.waiting > 0 && t.waitingSinceMs === null) t.waitingSinceMs = now;
    if (req.waiting === 0) t.waitingSinceMs = null;
    t.waiting = req.waiting;
    t.oldestAt = req.oldestAt;
    t.lastForwardedAt = req.lastForwardedAt;
    t.reportedAtMs = now;
    this.checkAlarms();
    return null;
  }

  private alarmed(t: TillReport, nowMs: number): boolean {
    if (t.waiting === 0 || t.waitingSinceMs === null) return false;
    const since = Math.max(t.waitingSinceMs, t.lastReceivedMs ?? 0);
    return nowMs - since > this.limits.forwardAlarmAfterS * 1000;
  }

  /** Every till that reported since start, by terminal id. */
  list(): OfflineTillView[] {
    const now = this.clock().getTime();
    return [...this.tills.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([terminalId, t]) => ({
        terminalId,
        waiting: t.waiting,
        oldestAt: t.oldestAt,
        lastForwardedAt: t.lastForwardedAt,
        reportedAt: new Date(t.reportedAtMs).toISOString(),
        lastReceivedAt: t.lastReceivedMs === null ? null : new Date(t.lastReceivedMs).toISOString(),
        lastCounter: own(this.ledger.state.offlineTills, terminalId)?.counter ?? 0,
        alarm: this.alarmed(t, now),
      }));
  }

  /** Sets the gauges and logs each alarm once when it is raised. */
  checkAlarms(): void {
    const now = this.clock().getTime();
    for (const [terminalId, t] of this.tills) {
      const alarm = this.alarmed(t, now);
      this.metrics.offlineWaiting.set({ terminal: terminalId }, t.waiting);
      this.metrics.offlineAlarm.set({ terminal: terminalId }, alarm ? 1 : 0);
      if (alarm && !t.alarmLogged) {
        this.logger.error({ terminal: terminalId, waiting: t.waiting, oldestAt: t.oldestAt, forwardAlarmAfterS: this.limits.forwardAlarmAfterS }, 'offline alarm: a till holds offline sales and has not forwarded them');
      }
      t.alarmLogged = alarm;
    }
  }

  start(everyMs = ALARM_CHECK_MS): void {
    assert(this.timer === null, 'the offline alarm check starts once');
    this.timer = setInterval(() => this.checkAlarms(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}

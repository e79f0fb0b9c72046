import { fail, formatUnits, type ClientToServerEvents, type CustomerView, type FlattenedJws, type ReceiptData } from '../core/index.ts';
import { MALL_LOT_ID_PATTERN, type BidAck, type LotView, type MallLotBidAnswer, type MallLotReceipt, type MallLotView } from '../core/auctions.ts';
import { RemoteError, type StoreLink } from './store-link.ts';

/**
 * Auctions at the till: the store's open lots with their high bids, kept current by the
 * store's pushes, and a bid for the customer whose card is scanned. The store decides
 * whether a bid stands; the till sends it under an idempotency key kept on disk until
 * answered, and shows the customer's balances after it (the units bid are held, not spent).
 */
export type AuctionCommand =
  /** `pin`: the customer's PIN, when the store asks for it above its limit. */
  | { type: 'bid'; lotId: string; units: number; pin?: string }
  | { type: 'refreshLots' }
  | { type: 'closeBid' };

const COMMAND_TYPES: Record<AuctionCommand['type'], true> = { bid: true, refreshLots: true, closeBid: true };
export const AUCTION_COMMANDS: ReadonlySet<string> = new Set(Object.keys(COMMAND_TYPES));

/** Lots the till keeps: the store lists at most this many. */
const LOTS_KEPT_MAX = 100;

/** A lot on the till's panel: the store's, or the mall's (`mall: true`, fetched from the store, which asks the mall). */
export type TillLot = LotView & { mall?: true };

/** The mall's view of its lot in the shape of the panel's lots, marked as the mall's. */
export function mallLotAsTillLot(l: MallLotView): TillLot {
  return {
    lotId: l.lotId,
    mall: true,
    title: l.title,
    gtin: '',
    token: l.token,
    incrementUnits: l.incrementUnits,
    buyNowUnits: null,
    opensAt: l.opensAt,
    closesAt: l.closesAt,
    status: l.status,
    high: l.high === null ? null : { units: l.high.units, card: l.high.card },
    bids: l.bids,
    minBidUnits: l.minBidUnits,
    reserveMet: l.reserveMet,
    result: l.result === null ? null : { sold: l.result.sold, saleId: l.result.saleId, units: l.result.units, card: l.result.card },
  };
}

export interface AuctionsView {
  /** Open lots first (soonest to close first), then those closed lately. */
  lots: TillLot[];
  /** The bid this till placed last, until the cashier closes it. */
  lastBid: { lotId: string; title: string; units: number; token: string; closesAt: string; customer: string; text: string } | null;
}

export interface TillAuctionsDeps {
  link: StoreLink;
  /** Sends a money-moving request under a key kept on disk until answered; `secret` is sent but never written. */
  sendKeyed: <T>(event: keyof ClientToServerEvents, body: Record<string, unknown>, secret?: Record<string, unknown>) => Promise<T>;
  /** The customer on the cart, card unmasked. */
  customer: () => CustomerView | null;
  setCustomer: (c: CustomerView) => Promise<void>;
  needOnline: (offlineText: string) => void;
  say: (kind: 'info' | 'success' | 'error', text: string) => void;
  changed: () => void;
  /** Prints the receipt of a sale this till's bid won (the store names the winning bid's till on the sale). */
  printSale: (receipt: ReceiptData) => Promise<void>;  /** Prints the receipt of a mall lot this till's bid won, signed by the mall. */
  printMallLot: (receipt: MallLotReceipt, jws: FlattenedJws | null) => Promise<void>;
}

const OFFLINE_BID = 'the store server is unreachable: bids are held on the store server, so none can be placed now';

export class TillAuctions {
  private readonly lots = new Map<string, TillLot>();
  private lastBid: AuctionsView['lastBid'] = null;
  private readonly unsubscribe: (() => void)[] = [];
  /** Lots this till bid on since it started: their close is said here, and a won lot's receipt printed. */
  private readonly bidOn = new Set<string>();

  constructor(private readonly deps: TillAuctionsDeps) {
    this.unsubscribe.push(
      deps.link.onLotUpdate((lot) => {
        this.keep(lot);
        deps.changed();
        if (lot.status === 'closed' && this.bidOn.delete(lot.lotId)) void this.closed(lot);
      }),
      deps.link.onMallLotsUpdate((lots) => {
        void this.takeMall(lots).then(() => deps.changed());
      }),
    );
  }

  /** A newer view of a lot replaces an older one: more bids, or closed, is newer. */
  private keep(lot: TillLot): void {
    const old = this.lots.get(lot.lotId);
    const rank = (l: TillLot) => l.bids * 4 + (l.status === 'closed' || l.status === 'cancelled' ? 2 : 0);
    if (old !== undefined && rank(old) > rank(lot)) return;
    this.lots.set(lot.lotId, lot);
    if (this.lots.size > LOTS_KEPT_MAX) {
      for (const [id, l] of this.lots) {
        if (l.status === 'open' || l.status === 'scheduled') continue;
        this.lots.delete(id);
        if (this.lots.size <= LOTS_KEPT_MAX) break;
      }
    }
  }

  /** Asks the store for its lots (on every connection): the pushes keep them current after that. */
  async refresh(): Promise<void> {
    if (!this.deps.link.connected) return;
    const lots = await this.deps.link.request<LotView[]>('lots:list', {});
    for (const lot of lots) this.keep(lot);
    // The store's lots are shown at once; the mall's follow when the mall has answered.
    this.deps.changed();
    await this.refreshMall();
    this.deps.changed();
  }

  /**
   * The mall's lots, through the store (online only: when the mall cannot be reached the
   * panel keeps what it had). A mall lot this till bid on that has closed is said here.
   */
  private async refreshMall(): Promise<void> {
    const mallLots = await this.deps.link.request<MallLotView[]>('mall-lots:list', {}).catch(() => null);
    if (mallLots === null || !Array.isArray(mallLots)) return;
    await this.takeMall(mallLots);
  }

  /** The mall's lots as fetched or pushed: kept for the panel; the close of one this till bid on is said. */
  private async takeMall(mallLots: MallLotView[]): Promise<void> {
    for (const l of mallLots) {
      const lot = mallLotAsTillLot(l);
      this.keep(lot);
      if ((lot.status === 'closed' || lot.status === 'cancelled') && this.bidOn.delete(lot.lotId)) await this.mallClosed(l);
    }
  }

  /**
   * A mall lot this till bid on has closed. Sold through this store (the mall hands its
   * signed receipt only to the winner's store), the receipt is printed here.
   */
  private async mallClosed(l: MallLotView): Promise<void> {
    const r = l.result;
    if (r === null || !r.sold) {
      this.deps.say('info', `the mall's lot ${l.title} closed without a sale to this store's bid: the tokens held in the wallet went back`);
      return;
    }
    const where = r.vendor === null ? '' : ` through store ${r.vendor}`;
    const sold = `the mall's lot ${l.title} sold to card ${r.card ?? ''} for ${formatUnits(r.units ?? 0, l.token)}${where}: mall sale ${r.saleId ?? ''}`;
    let got: { receipt: MallLotReceipt | null; receiptJws: FlattenedJws | null };
    try {
      got = await this.deps.link.request<{ receipt: MallLotReceipt | null; receiptJws: FlattenedJws | null }>('mall-lot:get', { lotId: l.lotId });
    } catch {
      this.deps.say('info', `${sold}; its receipt could not be fetched now: ask for it again when the mall can be reached`);
      return;
    }
    if (got.receipt === null) {
      this.deps.say('success', `${sold}, won through another store`);
      return;
    }
    await this.deps.printMallLot(got.receipt, got.receiptJws);
    this.deps.say('success', `${sold}, receipt printed`);
  }

  view(): AuctionsView {
    const order = (l: LotView) => (l.status === 'open' ? 0 : l.status === 'scheduled' ? 1 : 2);
    const lots = [...this.lots.values()].sort((a, b) => order(a) - order(b) || Date.parse(a.closesAt) - Date.parse(b.closesAt));
    return { lots, lastBid: this.lastBid };
  }

  async command(cmd: AuctionCommand): Promise<void> {
    switch (cmd.type) {
      case 'refreshLots':
        return this.refresh();
      case 'closeBid':
        this.lastBid = null;
        this.deps.changed();
        return;
      case 'bid':
        return this.bid(cmd.lotId, cmd.units, cmd.pin);
    }
  }

  private async bid(lotId: string, units: number, pin: string | undefined): Promise<void> {
    this.deps.needOnline(OFFLINE_BID);
    const customer = this.deps.customer();
    if (customer === null) fail('POS_ERR_COMMAND', 'scan the customer card first: a bid is the customer\'s');
    const lot = this.lots.get(lotId);
    if (MALL_LOT_ID_PATTERN.test(lotId)) return this.mallBid(lotId, lot, customer, units, pin);
    const ack = await this.deps.sendKeyed<BidAck>('lot:bid', { lotId, card: customer.card, units }, pin === undefined ? {} : { customerPin: pin });
    this.bidOn.add(lotId);
    const token = lot?.token ?? Object.keys(ack.balancesAfter)[0] ?? '';
    const text = `${customer.name} is the high bidder on ${lot?.title ?? lotId} at ${formatUnits(ack.units, token)}${ack.buyNow ? ': the buy-now price, the lot is theirs' : ''}; ${formatUnits(ack.units, token)} are held until the lot closes or they are outbid`;
    this.lastBid = { lotId, title: lot?.title ?? lotId, units: ack.units, token, closesAt: ack.closesAt, customer: customer.name, text };
    // The balances after the hold: asked again rather than worked out here.
    const fresh = await this.deps.link.request<CustomerView>('customer:lookup', { card: customer.card }).catch(() => null);
    if (fresh !== null) await this.deps.setCustomer(fresh);
    this.deps.say('success', text);
  }

  /** A bid on a mall lot: the store forwards it; the mall holds it in the customer's mall wallet, with the wallet PIN. */
  private async mallBid(lotId: string, lot: TillLot | undefined, customer: CustomerView, units: number, pin: string | undefined): Promise<void> {
    const ack = await this.deps.sendKeyed<MallLotBidAnswer>('mall-lot:bid', { lotId, card: customer.card, units }, pin === undefined ? {} : { walletPin: pin });
    this.bidOn.add(lotId);
    const token = lot?.token ?? '';
    const text = `${customer.name} is the high bidder on the mall's ${lot?.title ?? lotId} at ${formatUnits(ack.units, token)}; ${formatUnits(ack.units, token)} are held in their mall wallet until the lot closes or they are outbid`;
    this.lastBid = { lotId, title: lot?.title ?? lotId, units: ack.units, token, closesAt: ack.closesAt, customer: customer.name, text };
    await this.refreshMall();
    this.deps.changed();
    this.deps.say('success', text);
  }

  /**
   * A lot this till bid on closed. Sold at this till's bid, the store made the sale as this
   * till's: its receipt is fetched and printed. Won at another till's or the board's, it
   * is only said.
   */
  private async closed(lot: LotView): Promise<void> {
    const r = lot.result;
    if (r === null || !r.sold || r.saleId === null) {
      this.deps.say('info', `${lot.title} closed unsold: the tokens held for it went back`);
      return;
    }
    const sold = `${lot.title} sold to card ${r.card ?? ''} for ${formatUnits(r.units ?? 0, lot.token)}`;
    try {
      const receipt = await this.deps.link.request<ReceiptData>('receipt:get', { saleId: r.saleId });
      await this.deps.printSale(receipt);
      this.deps.say('success', `${sold}: sale ${r.saleId}, receipt printed`);
    } catch (err) {
      // Another till's sale (or the board's) is not this till's to print.
      if (err instanceof RemoteError && err.wire.code === 'VND_ERR_RECEIPT_FORBIDDEN') this.deps.say('info', `${sold}, at another till`);
      else this.deps.say('info', `${sold}: sale ${r.saleId}; its receipt could not be fetched now: scan the sale's receipt number or reprint it at the store`);
    }
  }

  close(): void {
    for (const u of this.unsubscribe) u();
  }
}

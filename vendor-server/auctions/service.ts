import {
  assert,
  checkBuiltSale,
  checkSpendable,
  customerAccount,
  fail,
  isMallposError,
  lookupTokenType,
  makeSaleId,
  parseCardNumber,
  type JournalEvent,
  type NewEvent,
} from '../../core/index.ts';
import {
  bidPostings,
  checkBid,
  describedItemGtin,
  escrowAccount,
  LOT_DURATION_MS_MAX,
  lotDue,
  lotSale,
  lotView,
  makeLotId,
  OPEN_LOTS_MAX,
  releasePostings,
  SNIPE_EXTEND_S_DEFAULT,
  SNIPE_WINDOW_S_DEFAULT,
  type BidAck,
  type LotCreateRequest,
  type LotSpec,
  type LotState,
  type LotView,
} from '../../core/auctions.ts';
import type { Logger } from '../../platform/logger.ts';
import type { Actor, LedgerService } from '../ledger/service.ts';
import { customerBalances, own } from '../ledger/state.ts';

/** The longest the close timer sleeps before looking again (a far close needs no 24-day timer). */
export const CLOSE_CHECK_MS_MAX = 60_000;
/** Pushes of lot changes are at least this far apart; changes within it go out together at its end. */
export const PUSH_COALESCE_MS = 50;
/** How long after a failed close it is tried again. */
export const CLOSE_RETRY_MS = 1_000;
/** Lots listed by `list()`: the open ones and those closed within this long. */
export const RECENT_LOT_MS = 24 * 3_600_000;
export const LIST_LOTS_MAX = 100;

/** The bid request's fields that make its hash: the PIN is not part of it. */
export interface BidInput {
  key: string;
  lotId: string;
  card: string;
  units: number;
}

/** The idempotency key of a lot's close: derived from the lot, so every retry of it is the same request. */
export function closeKey(lotId: string): string {
  return `auction:close:${lotId}`;
}

/**
 * Auctions at the store: listing, cancelling, bidding and closing lots. Every change is
 * one journalled event built and appended with nothing in between (the ledger's
 * `commitRequest`), so two bids can never both beat the same high bid, and a close is
 * one event: a crash leaves a lot either open or closed, never half of it. The close
 * timer is durable because the lots are: on start every lot whose time passed closes at
 * once, and a retried close is the same request (its key is the lot's).
 */
export class AuctionService {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private closing: Promise<void> | null = null;
  private readonly listeners = new Set<(views: LotView[]) => void>();
  /** Lots changed since the last push, the push waiting (if any) and when the last one went. */
  private readonly dirty = new Set<string>();
  private pushTimer: NodeJS.Timeout | null = null;
  private lastPushMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly ledger: LedgerService,
    private readonly logger: Logger,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  private get state() {
    return this.ledger.state;
  }

  private readonly cardOf = (customer: string): string | null => own(this.state.customers, customer)?.card ?? null;

  view(lotId: string): LotView {
    const lot = own(this.state.lots, lotId);
    if (lot === undefined) fail('VND_ERR_LOT_UNKNOWN', `there is no lot ${lotId.slice(0, 20)} in this store`);
    return lotView(lot, this.clock().getTime(), this.cardOf);
  }

  /** The open lots and those closed in the last day, newest first, bounded. */
  list(): LotView[] {
    const now = this.clock().getTime();
    const ids = Object.keys(this.state.lots);
    const out: LotView[] = [];
    for (let i = ids.length - 1; i >= 0 && out.length < LIST_LOTS_MAX; i--) {
      const lot = this.state.lots[ids[i] as string] as LotState;
      if (lot.status !== 'open' && now - Date.parse(lot.closesAt) > RECENT_LOT_MS) continue;
      out.push(lotView(lot, now, this.cardOf));
    }
    return out;
  }

  /** Calls `listener` with the views of lots changed (each change durable by then); returns the unsubscribe. */
  subscribe(listener: (views: LotView[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- operator ----------------------------------------------------------------------

  create(actor: Actor, key: string, input: LotCreateRequest): Promise<LotView> {
    return this.ledger.commitRequest(
      actor,
      key,
      input,
      (base) => ({ ...base, type: 'lot.opened', postings: [], data: this.newLot(input, Date.parse(base.at)) }),
      async (seq) => this.view((await this.eventOf(seq, 'lot.opened')).data.lotId),
    );
  }

  /** The lot a listing makes, or VND_ERR_LOT_INVALID saying what is wrong with it. */
  private newLot(input: LotCreateRequest, nowMs: number): LotSpec {
    const tt = lookupTokenType(this.ledger.tokenTypes, input.token);
    checkSpendable(tt, this.ledger.store.vendorId, new Date(nowMs));
    this.ledger.tokenGate?.(tt.code);
    let open = 0;
    for (const id in this.state.lots) if ((this.state.lots[id] as LotState).status === 'open') open += 1;
    if (open >= OPEN_LOTS_MAX) fail('VND_ERR_LOT_INVALID', `the store has ${open} open lots, the most it runs at once`);
    const opensMs = input.opensAt === undefined ? nowMs : Date.parse(input.opensAt);
    const closesMs = Date.parse(input.closesAt);
    if (!(closesMs > nowMs)) fail('VND_ERR_LOT_INVALID', 'the lot must close in the future');
    if (!(closesMs > opensMs)) fail('VND_ERR_LOT_INVALID', 'the lot must close after it opens');
    if (closesMs - nowMs > LOT_DURATION_MS_MAX) fail('VND_ERR_LOT_INVALID', 'the lot may close at most 90 days from now');
    const buyNow = input.buyNowUnits ?? null;
    if (buyNow !== null && (buyNow < input.reserveUnits || buyNow < input.incrementUnits)) {
      fail('VND_ERR_LOT_INVALID', 'the buy-now price must be at least the reserve and the increment');
    }
    const serial = this.state.lotSerial + 1;
    const gtin = input.code === undefined ? describedItemGtin(serial) : this.ledger.product(input.code).gtin;
    return {
      lotId: makeLotId(serial),
      title: input.title,
      gtin,
      product: input.code !== undefined,
      token: tt.code,
      reserveUnits: input.reserveUnits,
      incrementUnits: input.incrementUnits,
      opensAt: new Date(opensMs).toISOString(),
      closesAt: new Date(closesMs).toISOString(),
      buyNowUnits: buyNow,
      snipeWindowSeconds: input.snipeWindowSeconds ?? SNIPE_WINDOW_S_DEFAULT,
      extendSeconds: input.extendSeconds ?? SNIPE_EXTEND_S_DEFAULT,
    };
  }

  cancel(actor: Actor, key: string, lotId: string, reason: string): Promise<LotView> {
    return this.ledger.commitRequest(
      actor,
      key,
      { lotId, reason },
      (base) => {
        const lot = own(this.state.lots, lotId);
        if (lot === undefined) fail('VND_ERR_LOT_UNKNOWN');
        if (lot.status !== 'open') fail('VND_ERR_LOT_CLOSED', `lot ${lotId} has already ${lot.status === 'cancelled' ? 'been cancelled' : 'closed'}`);
        if (lot.high !== null) fail('VND_ERR_LOT_HAS_BIDS', `lot ${lotId} has ${lot.bids} bids: it runs to its close`);
        return { ...base, type: 'lot.cancelled', postings: [], data: { lotId, reason } };
      },
      async (seq) => this.view((await this.eventOf(seq, 'lot.cancelled')).data.lotId),
    );
  }

  // ---- bids --------------------------------------------------------------------------

  /**
   * Places a bid: the bidder's units go into the lot's escrow and the bid it beats goes
   * back, in one event. With `tokenValueLimitMinor`, new units worth more than it need the
   * customer's PIN (VND_ERR_CUSTOMER_PIN_REQUIRED), as a payment at the till does.
   */
  bid(actor: Actor, input: BidInput, opts: { tokenValueLimitMinor?: number | null } = {}): Promise<BidAck> {
    let card: string;
    try {
      card = parseCardNumber(input.card);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    let built: JournalEvent | null = null;
    return this.ledger.commitRequest(
      actor,
      input.key,
      { lotId: input.lotId, card, units: input.units },
      (base) => {
        const customer = this.ledger.customerIdByCard(card);
        const lot = own(this.state.lots, input.lotId);
        const checked = checkBid(lot, input.units, Date.parse(base.at));
        const spec = (lot as LotState).spec;
        const tt = lookupTokenType(this.ledger.tokenTypes, spec.token);
        this.ledger.tokenGate?.(tt.code);
        checkSpendable(tt, this.ledger.store.vendorId, new Date(base.at));
        const high = (lot as LotState).high;
        const previous = high === null ? null : { customer: high.customer, units: high.units };
        // What this bid takes from the customer now: a raise of their own bid takes only the difference.
        const fresh = checked.units - (previous !== null && previous.customer === customer ? previous.units : 0);
        this.ledger.checkTokenValueLimit({ [tt.code]: fresh }, opts.tokenValueLimitMinor ?? null);
        const postings = bidPostings(spec.lotId, tt.code, customer, checked.units, previous);
        const balancesAfter = customerBalances(this.state, customer);
        const account = customerAccount(customer);
        for (const p of postings) if (p.account === account) balancesAfter[p.token] = (balancesAfter[p.token] ?? 0) + p.units;
        const event: NewEvent = {
          ...base,
          type: 'lot.bid',
          postings,
          data: { lotId: spec.lotId, customer, units: checked.units, previous, closesAt: checked.closesAt, buyNow: checked.buyNow, balancesAfter },
        };
        built = event as JournalEvent;
        return event;
      },
      async (seq) => bidAckOf(built !== null && built.seq === seq ? built : await this.eventOf(seq, 'lot.bid')),
    );
  }

  // ---- close -------------------------------------------------------------------------

  /** Closes every lot that is due, one after another; a close already under way is joined. */
  closeDue(): Promise<void> {
    if (this.closing !== null) return this.closing;
    // The callbacks run after `closing` is set (a promise's callbacks never run at once),
    // so they always clear the run they belong to.
    const run = this.closeAllDue().then(
      () => {
        this.closing = null;
        this.schedule();
      },
      (err: unknown) => {
        // Tried again a moment later rather than at once, so a failing close cannot spin.
        this.closing = null;
        this.schedule(CLOSE_RETRY_MS);
        throw err;
      },
    );
    this.closing = run;
    return run;
  }

  private async closeAllDue(): Promise<void> {
    for (;;) {
      const now = this.clock().getTime();
      const due = Object.values(this.state.lots).filter((lot) => lotDue(lot, now));
      if (due.length === 0 || this.stopped) return;
      for (const lot of due) await this.close(lot.spec.lotId);
      // A close that did not happen (the ledger is stopping) is not tried again in a loop.
      if (due.every((lot) => lot.status === 'open')) return;
    }
  }

  /**
   * Closes one lot in one event: sold, its escrow becomes a sale to the high bidder
   * (named as made at the till of the winning bid, so that till can print its receipt);
   * unsold, the high bid if any goes back. The key is the lot's, so a retry after a
   * crash is answered as the same request and the lot closes exactly once.
   */
  async close(lotId: string): Promise<void> {
    const lot = own(this.state.lots, lotId);
    if (lot === undefined || lot.status !== 'open') return;
    const actor = { terminal: lot.high?.terminal ?? null, cashier: null };
    try {
      await this.ledger.commitRequest(actor, closeKey(lotId), { lotId }, (base) => this.closeEvent(lotId, base), () => undefined);
    } catch (err) {
      if (isMallposError(err) && err.code === 'VND_ERR_SHUTTING_DOWN') return;
      this.logger.error({ err, lotId }, 'closing a lot failed: it is tried again');
      throw err;
    }
  }

  private closeEvent(lotId: string, base: Omit<JournalEvent, 'prev' | 'type' | 'postings' | 'data'>): NewEvent {
    const lot = own(this.state.lots, lotId);
    assert(lot !== undefined && lot.status === 'open', `lot ${lotId} is open at its close`);
    const high = lot.high;
    if (high === null || high.units < lot.spec.reserveUnits) {
      const released = high === null ? null : { customer: high.customer, units: high.units };
      return { ...base, type: 'lot.closed', postings: released === null ? [] : releasePostings(lotId, lot.spec.token, released), data: { lotId, outcome: 'unsold', released } };
    }
    const tt = lookupTokenType(this.ledger.tokenTypes, lot.spec.token);
    const { postings, data } = lotSale({ lot, saleId: makeSaleId(base.seq), currency: this.ledger.store.currency, faceValueMinor: tt.faceValueMinor, balancesAfter: customerBalances(this.state, high.customer) });
    // The same agreement the mall checks: the escrow stands in for the customer who paid into it.
    const escrow = escrowAccount(lotId);
    checkBuiltSale(postings.map((p) => (p.account === escrow ? { ...p, account: customerAccount(high.customer) } : p)), data);
    return { ...base, type: 'sale', postings, data };
  }

  // ---- timer and pushes ----------------------------------------------------------------

  start(): void {
    this.stopped = false;
    void this.closeDue().catch(() => undefined);
  }

  stop(): void {
    this.stopped = true;
    if (this.pushTimer !== null) clearTimeout(this.pushTimer);
    this.pushTimer = null;
    this.dirty.clear();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Sleeps until the earliest close, or at most CLOSE_CHECK_MS_MAX. */
  private schedule(minDelayMs = 0): void {
    if (this.stopped) return;
    if (this.timer !== null) clearTimeout(this.timer);
    let next = Number.POSITIVE_INFINITY;
    const now = this.clock().getTime();
    for (const id in this.state.lots) {
      const lot = this.state.lots[id] as LotState;
      if (lot.status !== 'open') continue;
      next = Math.min(next, lotDue(lot, now) ? now : Date.parse(lot.closesAt));
    }
    const delay = Math.max(minDelayMs, Math.min(next - now, CLOSE_CHECK_MS_MAX));
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.closeDue().catch(() => undefined);
    }, delay);
    this.timer.unref();
  }

  /** The ledger's hook once an event is durable: lot changes are pushed, and the timer follows the closes. */
  committed(event: JournalEvent): void {
    const lotId = event.type === 'lot.opened' || event.type === 'lot.bid' || event.type === 'lot.cancelled' || event.type === 'lot.closed'
      ? event.data.lotId
      : event.type === 'sale' && event.data.lot !== undefined ? event.data.lot.lotId : null;
    if (lotId === null) return;
    this.push(lotId);
    if (event.type === 'lot.bid' && event.data.buyNow) void this.closeDue().catch(() => undefined);
    // Only a new lot can close before the timer wakes: a bid can only move a close later
    // (anti-sniping), and a timer waking before any close is due just sleeps again.
    else if (this.closing === null && event.type === 'lot.opened') this.schedule();
  }

  /**
   * Pushes the views of changed lots, all in one message: at once when nothing was pushed
   * in the last PUSH_COALESCE_MS, else at the end of that time, each view as the lot is
   * then. However many bids land, every till and board gets a bounded number of messages
   * a second, each change shown no later than PUSH_COALESCE_MS after it.
   */
  private push(lotId: string): void {
    this.dirty.add(lotId);
    if (this.pushTimer !== null) return;
    const wait = PUSH_COALESCE_MS - (performance.now() - this.lastPushMs);
    if (wait <= 0) {
      this.flush();
      return;
    }
    this.pushTimer = setTimeout(() => {
      this.pushTimer = null;
      this.flush();
    }, wait);
    this.pushTimer.unref();
  }

  private flush(): void {
    this.lastPushMs = performance.now();
    const views: LotView[] = [];
    for (const id of this.dirty) views.push(this.view(id));
    this.dirty.clear();
    if (views.length === 0) return;
    for (const l of this.listeners) {
      try {
        l(views);
      } catch (err) {
        this.logger.error({ err }, 'a lot listener failed');
      }
    }
  }

  private async eventOf<T extends JournalEvent['type']>(seq: number, type: T): Promise<Extract<JournalEvent, { type: T }>> {
    const event = await this.ledger.readEvent(seq);
    if (event.type !== type) fail('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request');
    return event as Extract<JournalEvent, { type: T }>;
  }
}

export function bidAckOf(event: JournalEvent): BidAck {
  assert(event.type === 'lot.bid', `event ${event.seq} is a bid`);
  return { lotId: event.data.lotId, seq: event.seq, at: event.at, units: event.data.units, closesAt: event.data.closesAt, buyNow: event.data.buyNow, balancesAfter: event.data.balancesAfter };
}

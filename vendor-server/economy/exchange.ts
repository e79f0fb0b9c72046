import {
  calendarDay,
  customerAccount,
  fail,
  FLOAT_ACCOUNT,
  formatMinor,
  isExpired,
  planPostings,
  quoteExchange,
  REDEEMED_ACCOUNT,
  WALLET_ACCOUNT,
  type ExchangeAck,
  type ExchangeQuote,
  type ExchangeView,
  type NewEvent,
  type Posting,
  type SnapshotPayload,
  type TokenSource,
  type TokenType,
} from '../../core/index.ts';
import type { ExchangeConfig } from '../config.ts';
import type { Actor, LedgerService } from '../ledger/service.ts';
import { bookOf, CUSTOMER_RECENT_MAX, customerBalances, own } from '../ledger/state.ts';
import type { MallSync } from '../sync/mall-sync-client.ts';
import type { WalletService } from './wallet.ts';

/**
 * Exchange between issuers at this store (claims 30, 34, 37): a customer gives up n
 * tokens F (from their card here, or from the mall wallet) for m tokens O from this
 * store's float, priced by `quoteExchange` with the face values and the exchange service
 * charge of the store's cached mall snapshot, so the mall can recompute it from the event.
 *
 * Card source while the mall is unreachable: allowed only while the snapshot is younger
 * than its maximum age, and within a per-customer daily limit of value given up
 * (`exchange.offlineCustomerDayMinor`). The wallet source always needs the mall.
 */
export interface ExchangeRequest {
  card: string;
  from: { token: string; units: number; source: TokenSource };
  to: string;
}

export function exchangeId(seq: number): string {
  return `X${String(seq).padStart(10, '0')}`;
}

/** Refuses a commit whose units are not what the rule gives now: the cashier quotes again. */
function sameAsQuoted(quote: ExchangeQuote, req: ExchangeRequest & { expectUnits: number }): void {
  if (quote.to.units !== req.expectUnits) {
    fail('VND_ERR_EXCHANGE_QUOTE_CHANGED', `${req.from.units} ${req.from.token} now buy ${quote.to.units} ${req.to}, not ${req.expectUnits}: quote again`, { units: quote.to.units, expectUnits: req.expectUnits });
  }
}

export class ExchangeService {
  /** Offline exchanges of one customer run one at a time, so two cannot both fit the day's limit. */
  private readonly offlineQueue = new Map<string, Promise<unknown>>();

  constructor(
    private readonly ledger: LedgerService,
    private readonly sync: () => MallSync | null,
    private readonly wallet: WalletService,
    private readonly config: ExchangeConfig,
    private readonly utcOffsetMinutes: number,
  ) {}

  private snapshot(): SnapshotPayload {
    const snap = this.sync()?.cachedSnapshot() ?? null;
    if (snap === null) fail('VND_ERR_SNAPSHOT_STALE', 'the store has no copy of the mall\'s registry yet: exchanges wait for it');
    return snap;
  }

  private freshSnapshot(): SnapshotPayload {
    const snap = this.snapshot();
    if (this.sync()?.snapshotStale() !== false) {
      fail('VND_ERR_SNAPSHOT_STALE', `the store's copy of the mall's registry (from ${snap.issuedAt}) is too old to price an exchange`);
    }
    return snap;
  }

  /** The quote as the rule gives it now, with the postings it makes; refuses what cannot be exchanged. */
  private price(req: ExchangeRequest, customerId: string): { quote: ExchangeQuote; snapshot: SnapshotPayload; postings: Posting[] } {
    const snapshot = this.freshSnapshot();
    const types = new Map(snapshot.tokenTypes.map((t) => [t.code, t]));
    const known = (code: string): TokenType => types.get(code) ?? fail('CORE_ERR_TOKEN_UNKNOWN', `the mall lists no token type ${code.slice(0, 20)}`, { token: code.slice(0, 20) });
    const from = known(req.from.token);
    const to = known(req.to);
    const now = new Date();
    for (const tt of [from, to]) if (isExpired(tt, now)) fail('CORE_ERR_TOKEN_EXPIRED', `${tt.code} tokens expired on ${tt.expiresAt?.slice(0, 10)}`, { token: tt.code });
    const quote = quoteExchange(from, req.from.units, to, snapshot.fees.exchangeServiceBps);
    const n = quote.from.units;
    const m = quote.to.units;
    const source = req.from.source === 'card' ? customerAccount(customerId) : WALLET_ACCOUNT;
    const postings: Posting[] = [
      { account: source, token: from.code, units: -n },
      { account: REDEEMED_ACCOUNT, token: from.code, units: n },
      { account: FLOAT_ACCOUNT, token: to.code, units: -m },
      { account: customerAccount(customerId), token: to.code, units: m },
    ];
    const floatHas = own(own(this.ledger.state.balances, FLOAT_ACCOUNT) ?? {}, to.code) ?? 0;
    if (floatHas === 0) fail('CORE_ERR_INSUFFICIENT_TOKENS', `this store holds no ${to.code} tokens to give`, { account: FLOAT_ACCOUNT, token: to.code, shortUnits: m });
    // Checked now so that a refusal asks nothing of the mall; checked again at the append.
    planPostings(bookOf(this.ledger.state), postings);
    return { quote, snapshot, postings };
  }

  async quote(req: ExchangeRequest): Promise<ExchangeView> {
    const { id: customerId } = this.wallet.customerOf(req.card);
    const offline = await this.offline(req.from.source);
    const { quote, snapshot } = this.price(req, customerId);
    return { quote, source: req.from.source, offline, snapshotIssuedAt: snapshot.issuedAt };
  }

  /** Whether the mall is unreachable; for the wallet source that refuses at once. */
  private async offline(source: TokenSource): Promise<boolean> {
    let reachable: boolean;
    try {
      reachable = await this.wallet.requests().reachable();
    } catch {
      // Not linked to a mall: nothing to reach.
      reachable = false;
    }
    if (!reachable && source === 'wallet') fail('VND_ERR_WALLET_OFFLINE', 'the mall wallet cannot be reached now: exchange tokens from the card, or later');
    return !reachable;
  }

  async commit(actor: Actor, req: ExchangeRequest & { key: string; expectUnits: number; walletPin?: string | undefined }, precondition: () => void): Promise<ExchangeAck> {
    const { id: customerId, card } = this.wallet.customerOf(req.card);
    const body = { card, from: { token: req.from.token, units: req.from.units, source: req.from.source }, to: req.to, expectUnits: req.expectUnits };
    const journal = (offline: boolean, authorisation: string | null) =>
      this.ledger.commitRequest(
        actor,
        req.key,
        body,
        (base) => {
          const { quote, snapshot, postings } = this.price(req, customerId);
          sameAsQuoted(quote, req);
          precondition();
          const balancesAfter = customerBalances(this.ledger.state, customerId);
          for (const p of postings) if (p.account === customerAccount(customerId)) balancesAfter[p.token] = (balancesAfter[p.token] ?? 0) + p.units;
          return {
            ...base,
            type: 'exchange',
            postings,
            data: { exchangeId: exchangeId(base.seq), customer: customerId, source: req.from.source, authorisation, quote, snapshotIssuedAt: snapshot.issuedAt, offline, balancesAfter },
          } as NewEvent;
        },
        (seq) => seq,
      );

    if (this.ledger.knowsKey(req.key)) return this.ack(await journal(false, null));
    const offline = await this.offline(req.from.source);
    if (req.from.source === 'card') {
      if (!offline) return this.ack(await journal(false, null));
      return this.ack(await this.oneAtATime(customerId, async () => {
        await this.checkOfflineLimit(customerId, req);
        return journal(true, null);
      }));
    }
    // Everything that can be refused without the mall is refused before anything is held.
    const { quote } = this.price(req, customerId);
    sameAsQuoted(quote, req);
    precondition();
    const seq = await this.wallet.withHolds(req.key, [{ card, token: req.from.token, units: req.from.units, purpose: 'exchange' }], req.walletPin, async ([auth]) => {
      const s = await journal(false, auth?.id ?? fail('VND_ERR_INTERNAL', 'no authorisation'));
      return { seq: s, result: s };
    });
    return this.ack(seq);
  }

  private async oneAtATime<T>(customerId: string, run: () => Promise<T>): Promise<T> {
    const before = this.offlineQueue.get(customerId) ?? Promise.resolve();
    const mine = before.catch(() => undefined).then(run);
    this.offlineQueue.set(customerId, mine);
    try {
      return await mine;
    } finally {
      if (this.offlineQueue.get(customerId) === mine) this.offlineQueue.delete(customerId);
    }
  }

  /**
   * What the customer exchanged offline today, from their recent events. When the recent
   * list is full of today's events the older ones cannot be seen: the limit is then taken
   * as reached rather than guessed.
   */
  private async checkOfflineLimit(customerId: string, req: ExchangeRequest): Promise<void> {
    const c = own(this.ledger.state.customers, customerId);
    if (c === undefined) fail('VND_ERR_CUSTOMER_UNKNOWN');
    const today = calendarDay(new Date().toISOString(), this.utcOffsetMinutes);
    const limit = this.config.offlineCustomerDayMinor;
    let used = 0;
    let allToday = c.recent.length >= CUSTOMER_RECENT_MAX;
    for (const seq of c.recent) {
      const e = await this.ledger.readEvent(seq);
      const sameDay = calendarDay(e.at, this.utcOffsetMinutes) === today;
      if (!sameDay) allToday = false;
      if (sameDay && e.type === 'exchange' && e.data.offline) used += e.data.quote.grossMinor;
    }
    const snapshot = this.snapshot();
    const from = snapshot.tokenTypes.find((t) => t.code === req.from.token);
    const value = from === undefined ? 0 : from.faceValueMinor * req.from.units;
    const text = (m: number) => formatMinor(m, this.ledger.store.currency);
    if (allToday || used + value > limit) {
      fail('VND_ERR_OFFLINE_LIMIT', `the mall is unreachable: a customer may exchange ${text(limit)} a day offline, ${text(Math.max(0, limit - used))} left today`, { limitMinor: limit, usedMinor: used, customer: customerId });
    }
  }

  private async ack(seq: number): Promise<ExchangeAck> {
    const event = await this.ledger.readEvent(seq);
    if (event.type !== 'exchange') fail('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request');
    const d = event.data;
    const customer = this.ledger.customerView(d.customer);
    const wallet = d.source === 'wallet' ? await this.wallet.balanceAfter(customer.card) : null;
    return { quote: d.quote, source: d.source, offline: d.offline, snapshotIssuedAt: d.snapshotIssuedAt, exchangeId: d.exchangeId, seq: event.seq, at: event.at, customer, wallet };
  }
}

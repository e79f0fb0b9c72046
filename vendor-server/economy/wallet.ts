import { hash as digest } from 'node:crypto';
import {
  checkAmount,
  customerAccount,
  fail,
  isMallposError,
  formatMinor,
  isAcceptedAt,
  isExpired,
  makeSaleId,
  parseCardNumber,
  priceCart,
  REDEEMED_ACCOUNT,
  redemptionPostings,
  settleCash,
  WALLET_ACCOUNT,
  type NewEvent,
  type Posting,
  type PricedCart,
  type SaleAck,
  type TokenBalance,
  type WalletMoveAck,
  type WalletUse,
  type WalletView,
} from '../../core/index.ts';
import { checkBuiltSale } from '../../core/sale-check.ts';
import type { Logger } from '../../platform/logger.ts';
import type { ExchangeConfig } from '../config.ts';
import type { Actor, LedgerService } from '../ledger/service.ts';
import { customerBalances, dict, own } from '../ledger/state.ts';
import type { MallAuthorisation, MallRequests, MallWallet, WalletPurpose } from '../sync/mall-requests.ts';
import type { MallSync } from '../sync/mall-sync-client.ts';

/**
 * The mall wallet at the till: its balance, moves between a customer's card here and the
 * wallet, and tokens paid from it in a sale (claim 36). Tokens leave the wallet only under
 * an authorisation of the mall, held before the store journals anything:
 *
 *   authorise (the mall holds the units) -> journal the event naming the authorisation
 *   -> capture (best effort; the batch carrying the event captures it too).
 *
 * A failure before the journal releases the hold. The authorisation's idempotency key is
 * derived from the till's request key, so a till that retries after the store crashed
 * between authorise and journal gets the same authorisation back, never a second hold; if
 * the till never retries, the mall's expiry releases it. A crash after the journal loses
 * nothing: the batch captures it.
 *
 * Every hold carries the customer's wallet PIN, which only the mall checks (a store can
 * name any card; the PIN is what shows the customer is there). The PIN passes through:
 * it is no part of any request hash here or at the mall, and is never journalled or logged.
 * A first deposit into a wallet without a PIN sets the PIN the customer chose at the mall
 * before the move is journalled.
 */

/**
 * A test hook in the style of the till's: the process kills itself at a named point so a
 * crash test can show what a restart makes of that moment. Unset in production.
 */
export const STOP_AT_ENV = 'MALLPOS_VENDOR_STOP_AT';
export type StopPoint = 'wallet-authorised' | 'wallet-journalled';

export function stopHere(point: StopPoint): void {
  if (process.env[STOP_AT_ENV] === point) process.kill(process.pid, 'SIGKILL');
}

/** The mall idempotency key of the `index`th hold a till request makes: the same request, the same hold. */
export function holdKey(tillKey: string, purpose: WalletPurpose, index: number): string {
  return `wa.${purpose}.${index}.${digest('sha256', tillKey, 'hex')}`;
}

/** The mall idempotency key of the wallet PIN a till request sets. */
export function pinKey(tillKey: string): string {
  return `wp.${digest('sha256', tillKey, 'hex')}`;
}

/** How many released authorisations a process remembers, to refuse journalling one of them. */
export const RELEASED_REMEMBERED_MAX = 10_000;

export interface HoldRequest {
  card: string;
  token: string;
  units: number;
  purpose: WalletPurpose;
}

export interface SaleWithWalletInput {
  key: string;
  lines: { code: string; qty: number }[];
  card: string | null;
  tenders: { token: string; units?: number | undefined; source?: 'card' | 'wallet' | undefined }[];
  cashTenderedMinor: number;
  /** The customer's wallet PIN, passed to the mall's authorisation. */
  walletPin?: string | undefined;
}

/** Whether a sale request pays anything from the mall wallet. */
export function paysFromWallet(input: { tenders: { source?: 'card' | 'wallet' | undefined }[] }): boolean {
  return input.tenders.some((t) => t.source === 'wallet');
}

export class WalletService {
  /**
   * Authorisations this process released after a refusal. A till that lost the refusal's
   * answer retries with the same key, and the mall answers that key with the released
   * authorisation: it must not be journalled as if it held anything.
   */
  private readonly released = new Set<string>();

  constructor(
    private readonly ledger: LedgerService,
    private readonly mall: () => MallRequests | null,
    private readonly sync: () => MallSync | null,
    private readonly config: ExchangeConfig,
    private readonly logger: Logger,
  ) {}

  /** The mall client, or VND_ERR_WALLET_OFFLINE when this store is linked to no mall. */
  requests(): MallRequests {
    return this.mall() ?? fail('VND_ERR_WALLET_OFFLINE', 'this store is not linked to a mall: the wallet cannot be reached');
  }

  customerOf(card: string): { id: string; card: string } {
    const normalised = parseCardNumber(card);
    return { id: this.ledger.customerIdByCard(normalised), card: normalised };
  }

  /** A wallet as the till shows it: what the customer may use now (the balance less open holds). */
  view(w: MallWallet): WalletView {
    const balances: TokenBalance[] = Object.keys(w.balances)
      .sort()
      .map((token) => {
        const tt = own(this.ledger.state.tokenTypes, token);
        const units = Math.max(0, (w.balances[token] ?? 0) - (own(w.held, token) ?? 0));
        return { token, name: tt?.name ?? token, kind: tt?.kind ?? 'unknown', units, spendable: tt !== undefined && isAcceptedAt(tt, this.ledger.store.vendorId) && !isExpired(tt, new Date()) };
      });
    return { card: w.card, balances, asOf: w.asOf, ...(w.pinSet === undefined ? {} : { pinSet: w.pinSet }), ...(w.locked === undefined ? {} : { locked: w.locked }) };
  }

  /** Sets the customer's wallet PIN at the mall (the first, or a new one with `oldPin`); the mall's key derives from the till's. */
  async setPin(req: { key: string; card: string; pin: string; oldPin?: string | undefined }): Promise<{ card: string; pinSet: true }> {
    const { card } = this.customerOf(req.card);
    const mall = this.requests();
    const body = { key: pinKey(req.key), card, pin: req.pin, oldPin: req.oldPin };
    try {
      return await mall.setPin(body);
    } catch (err) {
      if (!isMallposError(err) || err.code !== 'MALL_ERR_CUSTOMER_UNKNOWN') throw err;
      // The card's registration may still be on its way to the mall: send it, then ask again.
      const sync = this.sync();
      if (sync === null) throw err;
      const last = this.ledger.journal.nextSeq - 1;
      sync.pushSoon();
      await waitFor(() => sync.ackedEventSeq >= last, this.config.walletPushWaitMs);
      return mall.setPin(body);
    }
  }

  /** Whether the card's wallet at the mall has a PIN (a card the mall does not know yet has none). */
  private async hasPin(card: string): Promise<boolean> {
    try {
      return (await this.requests().balance(card)).pinSet !== false;
    } catch (err) {
      if (isMallposError(err) && err.code === 'MALL_ERR_CUSTOMER_UNKNOWN') return false;
      throw err;
    }
  }

  async balance(cardIn: string): Promise<WalletView> {
    const { card } = this.customerOf(cardIn);
    return this.view(await this.requests().balance(card));
  }

  /** The wallet after a change, or null when the mall does not answer now (the change stands). */
  async balanceAfter(card: string): Promise<WalletView | null> {
    try {
      return this.view(await this.requests().balance(card));
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'the wallet balance after a change could not be read from the mall');
      return null;
    }
  }

  /**
   * Holds the units at the mall, journals through `commit`, then captures. `commit` must
   * refuse before journalling or journal exactly once; its seq is what is captured.
   */
  async withHolds<T>(tillKey: string, holds: HoldRequest[], walletPin: string | undefined, commit: (auths: MallAuthorisation[]) => Promise<{ seq: number; result: T }>): Promise<T> {
    const mall = this.requests();
    const keys = holds.map((h, i) => holdKey(tillKey, h.purpose, i));
    const auths: MallAuthorisation[] = [];
    try {
      for (const [i, h] of holds.entries()) {
        const { authorisation } = await mall.authorise({ key: keys[i] as string, card: h.card, token: h.token, units: h.units, purpose: h.purpose, pin: walletPin });
        if (this.released.has(authorisation.id)) fail('MALL_ERR_AUTHORISATION_SPENT', 'this request was refused and its wallet hold released: start it again');
        auths.push(authorisation);
      }
    } catch (err) {
      await this.releaseAll(keys, auths);
      throw err;
    }
    stopHere('wallet-authorised');
    let done: { seq: number; result: T };
    try {
      done = await commit(auths);
    } catch (err) {
      // Journalled means the key is known: then the hold is the event's, and the batch captures it.
      if (!this.ledger.state.keys.has(tillKey)) await this.releaseAll(keys, auths);
      throw err;
    }
    stopHere('wallet-journalled');
    this.sync()?.pushSoon();
    await Promise.all(
      auths.map((a, i) =>
        mall.capture(a.id, `${keys[i] as string}.capture`, done.seq).catch((err: unknown) => {
          this.logger.warn({ authorisation: a.id, seq: done.seq, err: (err as Error).message }, 'wallet capture not confirmed: the batch carrying the event captures it');
        }),
      ),
    );
    return done.result;
  }

  /** Releases the holds made so far; `keys` are the authorisations' keys, in order. */
  private async releaseAll(keys: string[], auths: MallAuthorisation[]): Promise<void> {
    const mall = this.requests();
    await Promise.all(
      auths.map(async (a, i) => {
        this.released.add(a.id);
        // Bounded: a till retries a lost answer within minutes, not after thousands of refusals.
        if (this.released.size > RELEASED_REMEMBERED_MAX) this.released.delete(this.released.values().next().value as string);
        await mall.release(a.id, `${keys[i] as string}.release`).catch((err: unknown) => {
          this.logger.warn({ authorisation: a.id, err: (err as Error).message }, 'wallet hold not released: the mall releases it when it expires');
        });
      }),
    );
  }

  // ---- moves between the card and the wallet ---------------------------------------------

  async move(
    actor: Actor,
    req: { key: string; card: string; direction: 'to-wallet' | 'from-wallet'; token: string; units: number; walletPin?: string | undefined; newWalletPin?: string | undefined },
    precondition: () => void,
  ): Promise<WalletMoveAck> {
    const { id: customerId, card } = this.customerOf(req.card);
    checkAmount(req.units, 'units to move');
    if (req.units === 0) fail('CORE_ERR_AMOUNT', 'move at least one token');
    const body = { card, direction: req.direction, token: req.token, units: req.units };
    // A store linked to no mall refuses before anything else.
    this.requests();
    // A key known for certain is answered without asking the mall; one that may be among
    // the evicted goes the whole way, which the mall's idempotency makes harmless.
    const known = this.ledger.knowsKey(req.key);
    const build = (authorisation: string | null) => () => {
      precondition();
      const tt = this.ledger.tokenTypes.get(req.token) ?? fail('CORE_ERR_TOKEN_UNKNOWN', `unknown token type ${req.token.slice(0, 20)}`);
      const n = req.units;
      const postings: Posting[] =
        req.direction === 'to-wallet'
          ? [
              { account: customerAccount(customerId), token: tt.code, units: -n },
              { account: WALLET_ACCOUNT, token: tt.code, units: n },
            ]
          : [
              { account: WALLET_ACCOUNT, token: tt.code, units: -n },
              { account: customerAccount(customerId), token: tt.code, units: n },
            ];
      const balancesAfter = customerBalances(this.ledger.state, customerId);
      balancesAfter[tt.code] = (balancesAfter[tt.code] ?? 0) + (req.direction === 'to-wallet' ? -n : n);
      return { type: 'wallet.moved', postings, data: { moveId: '', customer: customerId, card, direction: req.direction, token: tt.code, units: n, authorisation, balancesAfter } } as const;
    };
    const journal = (authorisation: string | null) => {
      const make = build(authorisation);
      return this.ledger.commitRequest(
        actor,
        req.key,
        body,
        (base) => {
          const e = make();
          return { ...base, ...e, data: { ...e.data, moveId: moveId(base.seq) } } as NewEvent;
        },
        (seq) => seq,
      );
    };

    if (req.direction === 'to-wallet') {
      // The wallet is credited only when the batch arrives: the move needs the mall now,
      // so that the customer is told at once when the wallet cannot be reached.
      if (!known) {
        // A wallet without a PIN gets the one the customer chose before anything moves into it.
        if (req.newWalletPin !== undefined) {
          build(null)();
          await this.setPin({ key: req.key, card, pin: req.newWalletPin });
        } else if (!(await this.hasPin(card))) {
          fail('MALL_ERR_WALLET_PIN_NOT_SET', `the wallet of card ${card} has no PIN yet: the customer chooses one (4-12 digits) with this first deposit`, { card });
        }
      }
      const seq = await journal(null);
      const sync = this.sync();
      if (sync !== null) {
        sync.pushSoon();
        await waitFor(() => sync.ackedEventSeq >= seq, this.config.walletPushWaitMs);
      }
      return this.moveAck(seq, card);
    }
    if (known) return this.moveAck(await journal(null), card);
    // Checked before the hold, so that a refusal asks nothing of the mall.
    build('pending')();
    const seq = await this.withHolds(req.key, [{ card, token: req.token, units: req.units, purpose: 'withdraw' }], req.walletPin, async ([auth]) => {
      const s = await journal(auth?.id ?? fail('VND_ERR_INTERNAL', 'no authorisation'));
      return { seq: s, result: s };
    });
    return this.moveAck(seq, card);
  }

  private async moveAck(seq: number, card: string): Promise<WalletMoveAck> {
    const event = await this.ledger.readEvent(seq);
    if (event.type !== 'wallet.moved') fail('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request');
    const d = event.data;
    const wallet = (await this.balanceAfter(card)) ?? { card, balances: [], asOf: event.at };
    return { moveId: d.moveId, seq: event.seq, at: event.at, direction: d.direction, token: d.token, units: d.units, customer: this.ledger.customerView(d.customer), wallet };
  }

  // ---- sales paid from the wallet -------------------------------------------------------

  /**
   * A sale with wallet tenders: each is authorised at the mall for exactly its units before
   * the sale is journalled, and its tokens are posted from `mall-wallet` rather than the
   * customer's card. The sale is otherwise priced and checked as every sale is.
   */
  async commitSale(actor: Actor, input: SaleWithWalletInput, opts: { tokenValueLimitMinor?: number | null; precondition?: () => void } = {}): Promise<SaleAck> {
    if (input.card === null) fail('CORE_ERR_TENDER_WITHOUT_CUSTOMER', 'scan the customer card before paying from the wallet');
    const wallet: { token: string; units: number }[] = [];
    for (const t of input.tenders) {
      if (t.source !== 'wallet') continue;
      if (t.units === undefined) fail('CORE_ERR_VALIDATION', `a wallet tender names its units: how many ${t.token} to take from the wallet`);
      if (t.units === 0) fail('CORE_ERR_AMOUNT', 'a wallet tender takes at least one token');
      wallet.push({ token: t.token, units: t.units });
    }
    const { id: customerId, card } = this.customerOf(input.card);
    const body = {
      lines: input.lines.map((l) => ({ code: l.code, qty: l.qty })),
      card,
      tenders: input.tenders.map((t) => ({ token: t.token, ...(t.units === undefined ? {} : { units: t.units }), ...(t.source === 'wallet' ? { source: 'wallet' } : {}) })),
      cash: input.cashTenderedMinor,
    };
    const build = (auths: string[]) => (base: { seq: number }) => {
      const balances = customerBalances(this.ledger.state, customerId);
      const priced = this.priceWith(input, balances, wallet);
      const { changeMinor } = settleCash(priced.cashDueMinor, input.cashTenderedMinor, (m) => formatMinor(m, this.ledger.store.currency));
      this.ledger.checkTokenValueLimit(priced.debits, opts.tokenValueLimitMinor ?? null);
      opts.precondition?.();
      const fromWallet = new Map(wallet.map((w) => [w.token, w.units]));
      const cardDebits = dict<number>();
      for (const token of Object.keys(priced.debits)) if (!fromWallet.has(token)) cardDebits[token] = priced.debits[token] as number;
      const postings: Posting[] = redemptionPostings(customerId, cardDebits);
      const uses: WalletUse[] = [];
      for (const [i, w] of wallet.entries()) {
        // A wallet tender's units were given, so the cart takes exactly them: that is what the mall holds.
        if (priced.debits[w.token] !== w.units) fail('CORE_ERR_TENDER_EXCESS', `${w.token} from the wallet can pay at most ${priced.debits[w.token] ?? 0} here`, { token: w.token });
        postings.push({ account: WALLET_ACCOUNT, token: w.token, units: -w.units }, { account: REDEEMED_ACCOUNT, token: w.token, units: w.units });
        uses.push({ authorisation: auths[i] ?? 'pending', token: w.token, units: w.units });
      }
      for (const token of Object.keys(cardDebits)) balances[token] = (balances[token] ?? 0) - (cardDebits[token] as number);
      const data = {
        saleId: makeSaleId(base.seq),
        customer: customerId,
        currency: priced.currency,
        lines: priced.lines,
        allocations: priced.allocations,
        debits: priced.debits,
        totalMinor: priced.totalMinor,
        cash: { dueMinor: priced.cashDueMinor, tenderedMinor: input.cashTenderedMinor, changeMinor },
        balancesAfter: balances,
        wallet: uses,
      };
      // The sale's one validator checks it with the wallet's postings read as the customer's:
      // the tokens reach `redeemed` either way, and the validator knows only card payments.
      checkBuiltSale(
        postings.map((p) => (p.account === WALLET_ACCOUNT ? { ...p, account: customerAccount(customerId) } : p)),
        data,
      );
      return { type: 'sale' as const, postings, data };
    };
    if (this.ledger.knowsKey(input.key)) {
      const seq = await this.ledger.commitRequest(actor, input.key, body, (base) => ({ ...base, ...build([])(base) }) as NewEvent, (s) => s);
      return this.ledger.saleAck(seq);
    }
    // Everything that can be refused without the mall is refused before anything is held.
    build([])({ seq: this.ledger.journal.nextSeq });
    return this.withHolds(
      input.key,
      wallet.map((w) => ({ card, token: w.token, units: w.units, purpose: 'sale' as const })),
      input.walletPin,
      async (auths) => {
        const seq = await this.ledger.commitRequest(actor, input.key, body, (base) => ({ ...base, ...build(auths.map((a) => a.id))(base) }) as NewEvent, (s) => s);
        return { seq, result: await this.ledger.saleAck(seq) };
      },
    );
  }

  /** `cart:price` with wallet tenders: priced as the sale would be, the wallet's tokens taken as tendered. */
  price(input: { lines: { code: string; qty: number }[]; card: string | null; tenders: SaleWithWalletInput['tenders'] }): PricedCart {
    if (input.card === null) fail('CORE_ERR_TENDER_WITHOUT_CUSTOMER', 'scan the customer card before paying from the wallet');
    const wallet: { token: string; units: number }[] = [];
    for (const t of input.tenders) {
      if (t.source !== 'wallet') continue;
      if (t.units === undefined) fail('CORE_ERR_VALIDATION', `a wallet tender names its units: how many ${t.token} to take from the wallet`);
      wallet.push({ token: t.token, units: t.units });
    }
    const { id } = this.customerOf(input.card);
    return this.priceWith({ key: '', lines: input.lines, card: input.card, tenders: input.tenders, cashTenderedMinor: 0 }, customerBalances(this.ledger.state, id), wallet);
  }

  /** Prices the cart with the wallet tenders' tokens standing in for the card's. */
  private priceWith(input: SaleWithWalletInput, balances: Record<string, number>, wallet: { token: string; units: number }[]) {
    const lines = input.lines.map((l) => ({ product: this.ledger.product(l.code), qty: l.qty }));
    if (this.ledger.tokenGate !== null) for (const t of input.tenders) this.ledger.tokenGate(t.token);
    const seen = new Set<string>();
    for (const t of input.tenders) {
      if (seen.has(t.token)) fail('CORE_ERR_VALIDATION', `${t.token} is tendered twice: from the card and from the wallet are two tenders of one token`);
      seen.add(t.token);
    }
    const usable = dict<number>();
    for (const token of Object.keys(balances)) usable[token] = balances[token] as number;
    for (const w of wallet) usable[w.token] = w.units;
    return priceCart({
      vendorId: this.ledger.store.vendorId,
      currency: this.ledger.store.currency,
      now: new Date(),
      lines,
      tokenTypes: this.ledger.tokenTypes,
      tenders: input.tenders.map((t) => (t.units === undefined ? { token: t.token } : { token: t.token, units: t.units })),
      balances: usable,
    });
  }
}

export function moveId(seq: number): string {
  return `W${String(seq).padStart(10, '0')}`;
}

/** Waits until `done` holds or the bound passes; either way the caller goes on. */
async function waitFor(done: () => boolean, boundMs: number): Promise<void> {
  const end = Date.now() + boundMs;
  while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
}

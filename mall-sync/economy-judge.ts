import { z } from 'zod';
import { add, customerAccount, entityId, FLOAT_ACCOUNT, sub, tokenCode, WALLET_ACCOUNT } from '../core/index.ts';
import type { BatchEconomy, CustomerRegistration, CustomerSalesDelta, WalletEffect, WalletUseRecord } from './events.ts';
import { dict, own } from './store/dict.ts';
import { heldUnits, walletUnits, type MallState } from './store/state.ts';

/**
 * What the judge checks and collects for tokens that travel between stores, beyond the
 * clearing: the shapes of the new event data, the customer directory, the wallet (credits
 * from to-wallet moves, captures of the mall's authorisations), issuance and the purchase
 * summaries. A batch is judged event by event; what an event would change is applied to
 * the batch's overlay only once the whole event passed, so a flagged event changes nothing.
 */

/** Whole counts of at least one: units, sequence numbers. */
export const posInt = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const nonNeg = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const TOKENS_MAX = 64;

/** A customer card as a key: what a till scans, without anything that could be read as a path or a prototype. */
export const CARD_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const cardSchema = z.string().regex(CARD_PATTERN, 'a card is 1-64 letters, digits or . _ -');
/** Ids of wallet authorisations as the mall makes them. */
export const AUTHORISATION_PATTERN = /^wa-[0-9]{6,12}$/;
export const authorisationId = z.string().regex(AUTHORISATION_PATTERN, 'an authorisation id is wa- and digits');

const tokenUnits = z.record(z.string(), posInt).refine((r) => Object.keys(r).length <= TOKENS_MAX && Object.keys(r).every((k) => tokenCode.safeParse(k).success), 'token codes and whole units');

export const customerRegisteredData = z.object({
  id: entityId,
  card: cardSchema,
  name: z.string().max(200),
  consent: z.boolean().optional(),
  contact: z.strictObject({ email: z.string().max(200).optional(), phone: z.string().max(40).optional() }).optional(),
});

export const walletUseSchema = z.strictObject({ authorisation: authorisationId, token: tokenCode, units: posInt });
export const saleEconomyData = z.object({
  earned: tokenUnits.optional(),
  wallet: z.array(walletUseSchema).min(1).max(TOKENS_MAX).optional(),
});

export const paymentSchema = z.discriminatedUnion('method', [
  z.strictObject({ method: z.literal('cash'), tenderedMinor: nonNeg, changeMinor: nonNeg }),
  z.strictObject({ method: z.literal('card'), approvalRef: z.string().min(1).max(100) }),
  z.strictObject({ method: z.literal('online'), paymentId: z.string().min(1).max(200), provider: z.string().min(1).max(100) }),
]);

export const issuanceData = z.object({
  customer: entityId,
  token: tokenCode,
  units: posInt,
  reason: z.enum(['purchase', 'reward']).optional(),
  cashMinor: nonNeg.optional(),
  payment: paymentSchema.optional(),
});

const side = z.strictObject({ token: tokenCode, issuer: z.string().min(1).max(40), units: posInt, faceValueMinor: posInt });
export const exchangeData = z.object({
  exchangeId: z.string().min(1).max(80),
  customer: entityId,
  source: z.enum(['card', 'wallet']),
  authorisation: authorisationId.nullable(),
  quote: z.strictObject({
    from: side,
    to: side,
    currency: z.string().regex(/^[A-Z]{3}$/),
    grossMinor: posInt,
    serviceBps: z.number().int().min(0).max(10_000),
    serviceChargeMinor: nonNeg,
    valueOutMinor: posInt,
    remainderMinor: nonNeg,
  }),
  snapshotIssuedAt: z.string().max(40),
  offline: z.boolean(),
});

export const walletMoveData = z.object({
  moveId: z.string().min(1).max(80),
  customer: entityId,
  card: cardSchema,
  direction: z.enum(['to-wallet', 'from-wallet']),
  token: tokenCode,
  units: posInt,
  authorisation: authorisationId.nullable(),
});

/** Postings netted per account and token, zeros dropped. */
export function netPostings(postings: readonly { account: string; token: string; units: number }[]): Map<string, number> {
  const net = new Map<string, number>();
  for (const p of postings) {
    const k = `${p.account}\u0000${p.token}`;
    const n = add(net.get(k) ?? 0, p.units);
    if (n === 0) net.delete(k);
    else net.set(k, n);
  }
  return net;
}

/** Whether netted postings are exactly `expected` (account, token, units), nothing else. */
export function postsExactly(net: ReadonlyMap<string, number>, expected: readonly [string, string, number][]): boolean {
  const want = new Map<string, number>();
  for (const [account, token, units] of expected) {
    const k = `${account}\u0000${token}`;
    want.set(k, add(want.get(k) ?? 0, units));
  }
  for (const [k, n] of want) if (n === 0) want.delete(k);
  if (want.size !== net.size) return false;
  for (const [k, n] of want) if (net.get(k) !== n) return false;
  return true;
}

/**
 * Splits a sale's loyalty earning and wallet payment off its postings, leaving what core's
 * sale check knows: the customer's debits moved to `redeemed`. Earned tokens are the float
 * moved to the customer; wallet tokens are `mall-wallet` moved to `redeemed`, counted for
 * the check as if they had come from the customer. Returns the problem as a sentence.
 */
export function splitSale(
  postings: readonly { account: string; token: string; units: number }[],
  customer: string | null,
  earned: Readonly<Record<string, number>>,
  wallet: Readonly<Record<string, number>>,
  stand: string,
): { postings: { account: string; token: string; units: number }[] } | { problem: string } {
  const net = netPostings(postings);
  const payer = customer ?? stand;
  if (customer === null) {
    for (const k of net.keys()) if (k.startsWith('customer:')) return { problem: 'a sale without a customer posts to a customer account' };
    if (Object.keys(earned).length > 0) return { problem: 'a sale without a customer earns loyalty tokens' };
  }
  const bump = (account: string, token: string, n: number) => {
    const k = `${account}\u0000${token}`;
    const v = add(net.get(k) ?? 0, n);
    if (v === 0) net.delete(k);
    else net.set(k, v);
  };
  for (const [token, e] of Object.entries(earned)) {
    bump(FLOAT_ACCOUNT, token, e);
    bump(customerAccount(payer), token, 0 - e);
  }
  for (const k of net.keys()) if (k.startsWith(`${FLOAT_ACCOUNT}\u0000`)) return { problem: 'the float postings are not the loyalty tokens the sale says it earned' };
  for (const [token, w] of Object.entries(wallet)) {
    if (net.get(`${WALLET_ACCOUNT}\u0000${token}`) !== 0 - w) return { problem: `the sale's ${WALLET_ACCOUNT} postings in ${token} are not the ${w} its wallet authorisations name` };
    bump(WALLET_ACCOUNT, token, w);
    bump(customerAccount(payer), token, 0 - w);
  }
  for (const k of net.keys()) if (k.startsWith(`${WALLET_ACCOUNT}\u0000`)) return { problem: `the sale posts to ${WALLET_ACCOUNT} without a wallet authorisation` };
  const out: { account: string; token: string; units: number }[] = [];
  for (const [k, units] of net) {
    const [account, token] = k.split('\u0000') as [string, string];
    out.push({ account, token, units });
  }
  return { postings: out };
}

export type CaptureResult = { ok: true; effect: WalletEffect & { kind: 'capture' } } | { ok: false; reason: string; alarm: boolean; card: string | null };

/** A batch's overlay of directory and wallet changes, on top of the state it is judged against. */
export class EconomyCollector {
  private readonly customers: CustomerRegistration[] = [];
  private readonly registeredHere = new Set<string>();
  private readonly wallet: WalletEffect[] = [];
  /** Change of each card's available wallet units (`card token`) over the batch. */
  private readonly availableDelta = new Map<string, number>();
  private readonly usedHere = new Map<string, number>();
  private readonly issued: BatchEconomy['issued'] = [];
  private readonly walletPostings = dict<number>();
  private readonly walletOut = dict<number>();
  private readonly walletIn = dict<number>();
  private readonly sales = new Map<string, CustomerSalesDelta>();
  private readonly alarms: BatchEconomy['alarms'] = [];

  constructor(
    private readonly state: Readonly<MallState>,
    private readonly vendor: string,
  ) {}

  /** Whether `card` is registered at this vendor as `customer` (before or earlier in this batch). */
  isRegisteredHere(card: string, customer: string): boolean {
    if (this.registeredHere.has(`${card} ${customer}`)) return true;
    const entry = own(this.state.customers, card);
    if (entry === undefined) return false;
    if (entry.home === this.vendor && entry.customer === customer) return true;
    return entry.alsoAt.some((a) => a.vendor === this.vendor && a.customer === customer);
  }

  isKnownCard(card: string): boolean {
    return own(this.state.customers, card) !== undefined || [...this.registeredHere].some((k) => k.startsWith(`${card} `));
  }

  register(r: CustomerRegistration): void {
    this.customers.push(r);
    this.registeredHere.add(`${r.card} ${r.customer}`);
  }

  private available(card: string, token: string): number {
    return walletUnits(this.state, card, token) - heldUnits(this.state, card, token) + (this.availableDelta.get(`${card} ${token}`) ?? 0);
  }

  /**
   * Checks that an event may use an authorisation: this vendor's, for these tokens (and
   * card, when the event names one), not used by another event. An open one is captured;
   * one captured through the API for this very event is already done; one released or
   * expired is captured late when the wallet still covers it, else the event is flagged
   * and an alarm raised (the vendor took tokens the wallet no longer holds).
   */
  checkCapture(use: { authorisation: string; token: string; units: number }, card: string | null, eventSeq: number, pending: readonly WalletEffect[]): CaptureResult {
    const auth = own(this.state.authorisations, use.authorisation);
    if (auth === undefined || auth.vendor !== this.vendor) return { ok: false, reason: `wallet authorisation ${use.authorisation} is not one of ${this.vendor}'s`, alarm: false, card: null };
    if (auth.token !== use.token || auth.units !== use.units) return { ok: false, reason: `wallet authorisation ${auth.id} holds ${auth.units} ${auth.token}, not ${use.units} ${use.token}`, alarm: false, card: null };
    if (card !== null && auth.card !== card) return { ok: false, reason: `wallet authorisation ${auth.id} is for another card`, alarm: false, card: null };
    const earlier = this.usedHere.get(auth.id) ?? (pending.some((p) => p.kind === 'capture' && p.authorisation === auth.id) ? eventSeq : undefined);
    if (earlier !== undefined) return { ok: false, reason: `wallet authorisation ${auth.id} was already used by event ${earlier}`, alarm: false, card: null };
    const effect = { kind: 'capture' as const, authorisation: auth.id, card: auth.card, token: auth.token, units: auth.units, eventSeq, late: false };
    if (auth.status === 'open') return { ok: true, effect };
    if (auth.status === 'captured') {
      if (auth.eventSeq === eventSeq) return { ok: true, effect };
      return { ok: false, reason: `wallet authorisation ${auth.id} was already captured by event ${auth.eventSeq ?? '?'}`, alarm: false, card: null };
    }
    const pendingDelta = pending.reduce((n, p) => (p.kind === 'capture' && p.late && p.card === auth.card && p.token === auth.token ? n - p.units : n), 0);
    if (this.available(auth.card, auth.token) + pendingDelta >= auth.units) return { ok: true, effect: { ...effect, late: true } };
    return {
      ok: false,
      reason: `wallet authorisation ${auth.id} was ${auth.status} before this event arrived, and card ${auth.card}'s wallet no longer covers ${auth.units} ${auth.token}`,
      alarm: true,
      card: auth.card,
    };
  }

  alarm(eventSeq: number, card: string, authorisation: string, reason: string): void {
    this.alarms.push({ kind: 'wallet', vendor: this.vendor, card, authorisation, eventSeq, message: `vendor ${this.vendor} used wallet authorisation ${authorisation} of card ${card} in event ${eventSeq}: ${reason}` });
  }

  /** Records the effects of an event that passed every check. */
  apply(effects: readonly WalletEffect[]): void {
    for (const w of effects) {
      this.wallet.push(w);
      const k = `${w.card} ${w.token}`;
      if (w.kind === 'capture') {
        this.usedHere.set(w.authorisation, w.eventSeq);
        if (w.late) this.availableDelta.set(k, sub(this.availableDelta.get(k) ?? 0, w.units));
      } else {
        this.availableDelta.set(k, add(this.availableDelta.get(k) ?? 0, w.units));
      }
    }
  }

  /** The net of an event's `mall-wallet` postings, flagged or not: what the vendor's own ledger says. */
  notePostings(postings: readonly { account: string; token: string; units: number }[]): void {
    for (const p of postings) {
      if (p.account !== WALLET_ACCOUNT || typeof p.token !== 'string' || !Number.isSafeInteger(p.units)) continue;
      const n = add(own(this.walletPostings, p.token) ?? 0, p.units);
      if (n === 0) delete this.walletPostings[p.token];
      else this.walletPostings[p.token] = n;
    }
  }

  moved(direction: 'to-wallet' | 'from-wallet', token: string, units: number): void {
    const into = direction === 'to-wallet' ? this.walletOut : this.walletIn;
    into[token] = add(own(into, token) ?? 0, units);
  }

  issue(i: BatchEconomy['issued'][number]): void {
    this.issued.push(i);
  }

  sale(customer: string, sales: number, spentMinor: number, at: string): void {
    const s = this.sales.get(customer);
    if (s === undefined) this.sales.set(customer, { customer, sales, spentMinor, firstAt: at, lastAt: at });
    else {
      s.sales += sales;
      s.spentMinor = add(s.spentMinor, spentMinor);
      if (at < s.firstAt) s.firstAt = at;
      if (at > s.lastAt) s.lastAt = at;
    }
  }

  /** The batch's economy, or undefined when it changed nothing (a batch of plain sales stays as it was). */
  result(): BatchEconomy | undefined {
    const empty =
      this.customers.length === 0 && this.wallet.length === 0 && this.issued.length === 0 && Object.keys(this.walletPostings).length === 0 && this.sales.size === 0 && this.alarms.length === 0;
    if (empty) return undefined;
    return {
      customers: this.customers,
      wallet: this.wallet,
      issued: this.issued,
      walletPostings: this.walletPostings,
      walletOut: this.walletOut,
      walletIn: this.walletIn,
      customerSales: [...this.sales.values()],
      alarms: this.alarms,
    };
  }
}

/** The wallet uses of a sale with the cards of their authorisations. */
export function useRecords(state: Readonly<MallState>, uses: readonly { authorisation: string; token: string; units: number }[]): WalletUseRecord[] {
  return uses.map((u) => ({ authorisation: u.authorisation, card: own(state.authorisations, u.authorisation)?.card ?? '', token: u.token, units: u.units }));
}

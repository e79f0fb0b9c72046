import { hash as digest, randomInt } from 'node:crypto';
import {
  allotmentPostings,
  assert,
  bodyHash,
  checkSpendable,
  customerAccount,
  EVENT_VERSION,
  fail,
  formatMinor,
  issuancePostings,
  lookupTokenType,
  makeCardNumber,
  makeSaleId,
  add,
  maskCard,
  mul,
  parseCardNumber,
  parseSaleId,
  parseScan,
  plainProductGtin,
  planPostings,
  priceCart,
  redemptionPostings,
  reversePostings,
  settleCash,
  isAcceptedAt,
  isExpired,
  type CustomerData,
  type CustomerView,
  type EventBase,
  type InstrumentPaid,
  type InstrumentUse,
  type JournalEvent,
  type KeyStatus,
  type NewEvent,
  type PricedCart,
  type PricedLine,
  type Posting,
  FLOAT_ACCOUNT,
  type Product,
  type ProductView,
  type RefundResult,
  type SaleAck,
  type SaleResult,
  type TokenType,
} from '../../core/index.ts';
import { checkBuiltSale } from '../../core/sale-check.ts';
import { JournalBacklogError, type AppendResult, type Journal } from '../../platform/storage/index.ts';
import { applyEvent, bookOf, customerBalances, dict, own, planEvent, type LedgerState } from './state.ts';
import { evictedKeySeq } from './store.ts';
import { checkOpenPeriod } from '../cashier-day/period.ts';

export interface Actor {
  terminal: string | null;
  cashier: string | null;
}

export interface StoreInfo {
  vendorId: string;
  name: string;
  address: string[];
  currency: string;
}

export interface SaleInput {
  key: string;
  lines: { code: string; qty: number }[];
  card: string | null;
  tenders: { token: string; units?: number | undefined }[];
  cashTenderedMinor: number;
}

export interface CustomerRegistration {
  card?: string | null | undefined;
  name: string;
  consent?: boolean | undefined;
  contact?: { email?: string | undefined; phone?: string | undefined } | undefined;
}

export interface SaleOptions {
  /** Token debits worth more than this (fiat minor units) are refused with VND_ERR_CUSTOMER_PIN_REQUIRED. */
  tokenValueLimitMinor?: number | null;
  /** Checked right before the append, with nothing in between (the cashier's shift). */
  precondition?: () => void;
}

export interface RefundInput {
  key: string;
  saleId: string;
  reason: string;
  supervisorId: string;
  /** The supervisor accepts keeping back the face value of earned loyalty tokens the customer spent. */
  deductSpentLoyalty?: boolean;
}

export interface LedgerHooks {
  /** Called after an event is durable (metrics, live status). */
  onCommitted?: (event: JournalEvent, latencyMs: number) => void;
  /**
   * Called when something fails after an event was appended to the journal: memory no
   * longer matches the journal, so the process must stop and let a restart replay it.
   * The default prints the error and exits with status 70.
   */
  onFatal?: (err: Error) => void;
}

/** How many random card numbers are tried before the store gives up finding a free one. */
export const CARD_ATTEMPTS_MAX = 32;
/** Card numbers hold 9 random digits (then a check digit). */
export const CARD_SERIAL_SPACE = 1_000_000_000;

function exitOnFatal(err: Error): void {
  process.stderr.write(`${JSON.stringify({ level: 60, time: Date.now(), msg: 'the ledger failed after a journal append: stopping so that a restart replays the journal', err: { message: err.message, stack: err.stack } })}\n`);
  process.exit(70);
}

/**
 * The vendor's ledger: every change is validated against the current state, journalled
 * (group-committed), applied, and answered only once the journal's fsync covers it.
 * Everything between validation and append is synchronous, so two concurrent requests
 * can never both spend the same balance.
 */
export class LedgerService {
  private readonly inflight = new Map<string, Promise<unknown>>();
  /** Refuses tokens whose rules come from the mall when the cached registry is too old. */
  tokenGate: ((token: string) => void) | null = null;
  private closing = false;
  /** Set once a failure after an append left memory behind the journal: nothing more is served. */
  private broken: Error | null = null;
  /**
   * Token payments worth more than this (fiat minor units, at face value) need the PIN of
   * a customer who chose one; null when the store sets no limit (config
   * `customerPinAboveMinor`).
   */
  customerPinAboveMinor: number | null = null;
  /**
   * Loyalty earning of a sale with a customer card (vendor-server/economy/loyalty.ts):
   * the token and units the float gives the customer inside the sale's event; null when
   * the store runs no programme.
   */
  loyalty: ((sale: { lines: readonly PricedLine[]; cashDueMinor: number }) => { token: string; units: number } | null) | null = null;
  /** The source of card numbers; random so that a card cannot be guessed from another. */
  cardSerial: () => number = () => randomInt(CARD_SERIAL_SPACE);

  constructor(
    readonly store: StoreInfo,
    readonly state: LedgerState,
    readonly journal: Journal,
    private readonly hooks: LedgerHooks = {},
    private readonly clock: () => Date = () => new Date(),
    private readonly keysMax?: number,
  ) {
    assert(journal.lastSeq === state.seq, `journal tail ${journal.lastSeq} equals state seq ${state.seq}`);
  }

  private tokenTypeMap: Map<string, TokenType> | null = null;
  /** Minor units as the store's currency, for messages (one function, not one per sale). */
  private readonly moneyText = (minor: number): string => formatMinor(minor, this.store.currency);

  get tokenTypes(): ReadonlyMap<string, TokenType> {
    this.tokenTypeMap ??= new Map(Object.entries(this.state.tokenTypes));
    return this.tokenTypeMap;
  }

  stopAccepting(): void {
    this.closing = true;
  }

  /**
   * Journals an event, applies it, and resolves once it is durable. The event is checked
   * and planned against the state before it is appended, so a refusal leaves the journal
   * untouched; after the append nothing may fail, and if anything does the process stops
   * (the journal is the truth, and a restart replays it).
   */
  private commit(event: NewEvent): Promise<{ event: JournalEvent; hash: string }> {
    // Written with promise callbacks rather than as an async function: a sale waits here
    // for its fsync, and a suspended async function holds its whole frame meanwhile.
    const started = performance.now();
    const full = event as JournalEvent;
    let planned;
    let rec: AppendResult;
    try {
      if (this.broken !== null) fail('VND_ERR_INTERNAL', 'the store server is stopping after an internal failure');
      // The journal sets prev, the hash of the event before; the event gets it once
      // appended rather than being copied (planning does not read it).
      const prev = this.state.hash;
      planned = planEvent(this.state, full);
      try {
        rec = this.journal.append(event as unknown as Record<string, unknown> & { seq: number });
      } catch (err) {
        // A full backlog refuses the event before anything changed: the client may retry.
        if (err instanceof JournalBacklogError) fail('VND_ERR_JOURNAL_BACKLOG', err.message);
        throw err;
      }
      full.prev = prev;
    } catch (err) {
      return Promise.reject(err as Error);
    }
    // Only the hash and the promise are kept while the event waits for its fsync: the
    // record also holds the event's text, which the journal's buffer has already taken,
    // and each sale in flight would keep it alive through the young generation's collections.
    const { hash, durable } = rec;
    try {
      applyEvent(this.state, full, hash, this.keysMax, planned);
      if (full.type === 'token-type.upserted') this.tokenTypeMap = null;
    } catch (err) {
      return this.failAfterAppend(err, durable);
    }
    return durable.then(
      () => {
        try {
          this.hooks.onCommitted?.(full, performance.now() - started);
        } catch (err) {
          return this.failAfterAppend(err, durable);
        }
        return { event: full, hash };
      },
      (err: unknown) => this.failAfterAppend(err, durable),
    );
  }

  /**
   * Something failed after an append: memory no longer matches the journal, so nothing
   * more is served and the process stops.
   */
  private async failAfterAppend(err: unknown, durable: Promise<void>): Promise<never> {
    const e = err instanceof Error ? err : new Error(String(err));
    this.broken = e;
    this.closing = true;
    // Let the event reach the disk first, so that the restart replays it rather than
    // the client's retry committing it afresh; either is exactly once.
    await durable.catch(() => undefined);
    (this.hooks.onFatal ?? exitOnFatal)(e);
    throw e;
  }

  /** The last time stamped, as milliseconds and as text: many events share a millisecond. */
  private stampMs = Number.NaN;
  private stampText = '';

  /**
   * The time of a new event, once the store takes events and that time is in an open
   * period. `now` is the clock's reading when the caller already took one (a sale is
   * priced and stamped at the same instant).
   */
  private stamp(actor: Actor, now: Date = this.clock()): string {
    if (this.closing) fail('VND_ERR_SHUTTING_DOWN');
    const ms = now.getTime();
    // An invalid date is never equal to the last one, and toISOString throws for it as before.
    if (ms !== this.stampMs) {
      this.stampText = now.toISOString();
      this.stampMs = ms;
    }
    const at = this.stampText;
    checkOpenPeriod(this.state.cashierDay, at, actor.terminal);
    return at;
  }

  private base(actor: Actor, key: string | null, hash: string | null) {
    const at = this.stamp(actor);
    return {
      seq: this.journal.nextSeq,
      v: EVENT_VERSION,
      vendor: this.store.vendorId,
      at,
      terminal: actor.terminal,
      cashier: actor.cashier,
      key,
      bodyHash: hash,
    } as const;
  }

  /**
   * Idempotency: the seq of the event a key produced, or null for a new key. This check
   * is synchronous so that nothing can slip in between it and the append. A key seen
   * before then goes through `replay`.
   */
  private seen(key: string): number | null {
    return this.state.keys.get(key) ?? null;
  }

  /**
   * A key no longer in the in-memory window may still have been used: its event is
   * looked up in the journal, so a late retry is answered, never charged again. Checked
   * again after the lookup, since another request may have used the key meanwhile.
   */
  private async seenBefore(key: string): Promise<number | null> {
    return (await evictedKeySeq(this.state, this.journal, key)) ?? this.seen(key);
  }

  /**
   * A key seen before: the same body gets the original outcome (after it is durable);
   * another body is a conflict. The body's hash is kept in the journalled event, so
   * memory holds only key -> seq.
   */
  private async replay(key: string, hash: string, seq: number): Promise<void> {
    await this.settled(key);
    const event = await this.readEvent(seq);
    // The window knows keys by fingerprint: the event itself says whether it was this key
    // (another key with the same 64-bit fingerprint is refused as used, never answered
    // with that event).
    if (event.bodyHash !== hash || event.key !== key) {
      fail('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request', { key });
    }
  }

  /** Whether a key was used already (committed, or in flight): its retry changes no money. */
  knowsKey(key: string): boolean {
    return this.state.keys.has(key) || this.inflight.has(key);
  }

  private async settled(key: string): Promise<void> {
    const pending = this.inflight.get(key);
    if (pending !== undefined) await pending.catch(() => undefined);
  }

  private once<T>(key: string, run: () => Promise<T>): Promise<T> {
    const p = run();
    this.inflight.set(key, p);
    // Registered before the caller's own callbacks, so the key is forgotten before anyone
    // awaiting the outcome resumes.
    const forget = () => {
      this.inflight.delete(key);
    };
    p.then(forget, forget);
    return p;
  }

  async readEvent(seq: number): Promise<JournalEvent> {
    const rec = await this.journal.read(seq);
    return JSON.parse(rec.text) as JournalEvent;
  }

  // ---- lookups ---------------------------------------------------------------------

  product(code: string): Product {
    // Every line of every sale passes here: a plain code is read without parseScan's objects.
    let gtin = plainProductGtin(code);
    if (gtin === null) {
      const scan = parseScan(code);
      if (scan.kind !== 'product') fail('VND_ERR_PRODUCT_UNKNOWN', `${code.slice(0, 20)} is not a product code`);
      gtin = scan.gtin;
    }
    // A GTIN is digits only, never the name of a property an object inherits: a plain
    // lookup sees only the catalog's own entries (a record without a prototype besides),
    // without the generic own()'s two lookups on every line of every sale.
    const p = this.state.products[gtin];
    if (p === undefined) fail('VND_ERR_PRODUCT_UNKNOWN', `no product with code ${gtin} in this store`, { gtin });
    return p;
  }

  productView(code: string): ProductView {
    const p = this.product(code);
    return { gtin: p.gtin, name: p.name, priceMinor: p.priceMinor, currency: this.store.currency, tokenPrices: { ...p.tokenPrices } };
  }

  customerIdByCard(card: string): string {
    const normalised = parseCardNumber(card);
    // A card number is C and ten digits, never the name of an inherited property.
    const id = this.state.cards[normalised];
    if (id === undefined) fail('VND_ERR_CUSTOMER_UNKNOWN', `no customer with card ${maskCard(normalised)}`, { card: maskCard(normalised) });
    return id;
  }

  customerView(customerId: string): CustomerView {
    const c = own(this.state.customers, customerId);
    if (c === undefined) fail('VND_ERR_CUSTOMER_UNKNOWN', `no customer ${customerId.slice(0, 40)}`);
    const now = this.clock();
    const balances = Object.entries(customerBalances(this.state, c.id))
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([token, units]) => {
        const tt = own(this.state.tokenTypes, token);
        return {
          token,
          name: tt?.name ?? token,
          kind: tt?.kind ?? 'unknown',
          units,
          spendable: tt !== undefined && isAcceptedAt(tt, this.store.vendorId) && !isExpired(tt, now),
        };
      });
    const view: CustomerView = { id: c.id, card: c.card, name: c.name, balances };
    if (c.consent !== undefined) view.consent = c.consent;
    return view;
  }

  // ---- pricing and sales -----------------------------------------------------------

  price(input: { lines: { code: string; qty: number }[]; card: string | null; tenders: SaleInput['tenders'] }): PricedCart {
    const lines = this.cartLines(input);
    const customerId = input.card === null ? null : this.customerIdByCard(input.card);
    return this.priceFor(lines, customerId === null ? null : customerBalances(this.state, customerId), input.tenders);
  }

  /** The cart's products, and the tenders checked against the mall's registry when it is too old. */
  private cartLines(input: { lines: { code: string; qty: number }[]; tenders: SaleInput['tenders'] }): { product: Product; qty: number }[] {
    const lines: { product: Product; qty: number }[] = new Array<{ product: Product; qty: number }>(input.lines.length);
    for (let i = 0; i < lines.length; i++) {
      const l = input.lines[i] as { code: string; qty: number };
      lines[i] = { product: this.product(l.code), qty: l.qty };
    }
    if (this.tokenGate !== null) for (const t of input.tenders) this.tokenGate(t.token);
    return lines;
  }

  private priceFor(lines: { product: Product; qty: number }[], balances: Record<string, number> | null, tenders: SaleInput['tenders'], now: Date = this.clock()): PricedCart {
    return priceCart({
      vendorId: this.store.vendorId,
      currency: this.store.currency,
      now,
      lines,
      tokenTypes: this.tokenTypes,
      tenders,
      balances,
    });
  }

  /**
   * Commits a sale. With `tokenValueLimitMinor`, a sale whose token debits are worth more
   * than it (at face value) is refused with VND_ERR_CUSTOMER_PIN_REQUIRED: the caller sets
   * it when the customer has a PIN that was not given.
   */
  commitSale(actor: Actor, input: SaleInput, opts: SaleOptions = {}): Promise<SaleResult> {
    return this.commitSaleAs(actor, input, opts, this.toSaleResultOf, (seq) => this.saleResult(seq));
  }

  /**
   * Commits a sale as `commitSale` does and answers with the till's acknowledgement
   * (`SaleAck`), built from the committed event itself: the whole sale result is not
   * built only to be cut down again. A retry of a key seen before gets the same fields.
   */
  commitSaleAck(actor: Actor, input: SaleInput, opts: SaleOptions = {}): Promise<SaleAck> {
    return this.commitSaleAs(actor, input, opts, saleAckOf, (seq) => this.saleAck(seq));
  }

  /** The till's acknowledgement of the sale journalled at `seq`. */
  async saleAck(seq: number): Promise<SaleAck> {
    return saleAckOf(await this.saleEvent(seq));
  }

  /**
   * Refuses token debits worth more than `limitMinor` at face value (null: no limit) with
   * VND_ERR_CUSTOMER_PIN_REQUIRED: the caller sets it when the customer has a PIN that was not given.
   */
  checkTokenValueLimit(debits: Readonly<Record<string, number>>, limitMinor: number | null): void {
    if (limitMinor === null) return;
    const valueMinor = this.tokenValueMinor(debits);
    if (valueMinor > limitMinor) {
      fail('VND_ERR_CUSTOMER_PIN_REQUIRED', `tokens worth ${formatMinor(valueMinor, this.store.currency)} need the customer's PIN (above ${formatMinor(limitMinor, this.store.currency)})`, { valueMinor, limitMinor });
    }
  }

  private readonly toSaleResultOf = (event: JournalEvent): SaleResult => this.toSaleResult(event);

  private commitSaleAs<T>(actor: Actor, input: SaleInput, opts: SaleOptions, answer: (event: JournalEvent) => T, answerSeen: (seq: number) => Promise<T>): Promise<T> {
    // A new key, the usual case, is checked, priced and journalled without an await (and
    // without an async function's frame held until the fsync); a key seen before, or
    // perhaps seen before, takes the async path.
    try {
      const hash = saleBodyHash(input);
      if (this.seen(input.key) === null && !this.state.evicted.mayHave(input.key)) return this.journalSale(actor, input, hash, opts, answer);
      return this.commitSaleSeen(actor, input, hash, opts, answer, answerSeen);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  private async commitSaleSeen<T>(actor: Actor, input: SaleInput, hash: string, opts: SaleOptions, answer: (event: JournalEvent) => T, answerSeen: (seq: number) => Promise<T>): Promise<T> {
    const earlier = this.seen(input.key) ?? (this.state.evicted.mayHave(input.key) ? await this.seenBefore(input.key) : null);
    if (earlier !== null) {
      await this.replay(input.key, hash, earlier);
      return answerSeen(earlier);
    }
    return this.journalSale(actor, input, hash, opts, answer);
  }

  /**
   * Prices, checks and journals the sale of a new key; resolves once it is durable. A
   * refusal throws before anything is journalled.
   */
  private journalSale<T>(actor: Actor, input: SaleInput, hash: string, opts: SaleOptions, answer: (event: JournalEvent) => T): Promise<T> {
    const customerId = input.card === null ? null : this.customerIdByCard(input.card);
    const balances = customerId === null ? null : customerBalances(this.state, customerId);
    const now = this.clock();
    const priced = this.priceFor(this.cartLines(input), balances, input.tenders, now);
    const { changeMinor } = settleCash(priced.cashDueMinor, input.cashTenderedMinor, this.moneyText);
    this.checkTokenValueLimit(priced.debits, opts.tokenValueLimitMinor ?? null);
    opts.precondition?.();
    // The postings are planned against the balances in commit, before the append.
    const salePostings = customerId === null ? [] : redemptionPostings(customerId, priced.debits);
    const earn = customerId === null || this.loyalty === null ? null : this.loyalty({ lines: priced.lines, cashDueMinor: priced.cashDueMinor });
    const postings = earn === null ? salePostings : salePostings.concat(issuancePostings(customerId as string, earn.token, earn.units));

    const at = this.stamp(actor, now);
    const seq = this.journal.nextSeq;
    // The same balances the cart was priced against: nothing ran in between.
    const balancesAfter = balances;
    if (balancesAfter !== null) {
      for (const token in priced.debits) balancesAfter[token] = (balancesAfter[token] ?? 0) - (priced.debits[token] as number);
      if (earn !== null) balancesAfter[earn.token] = (balancesAfter[earn.token] ?? 0) + earn.units;
    }
    // The fields of `base` written out in its order, in one object: a spread and three
    // more fields would build it twice.
    const event: NewEvent = {
      seq,
      v: EVENT_VERSION,
      vendor: this.store.vendorId,
      at,
      terminal: actor.terminal,
      cashier: actor.cashier,
      key: input.key,
      bodyHash: hash,
      type: 'sale',
      postings,
      data: {
        saleId: makeSaleId(seq),
        customer: customerId,
        currency: priced.currency,
        lines: priced.lines,
        allocations: priced.allocations,
        debits: priced.debits,
        totalMinor: priced.totalMinor,
        cash: { dueMinor: priced.cashDueMinor, tenderedMinor: input.cashTenderedMinor, changeMinor },
        balancesAfter,
      },
    };
    // Set apart rather than spread into the literal: most sales earn nothing, and their data keeps one shape.
    if (earn !== null) event.data.earned = dict([[earn.token, earn.units]]);
    // The agreement the mall checks at ingest: a sale whose parts disagree is never
    // journalled. Its shape comes from the catalog and this code, so no schema is needed.
    // Loyalty earning is the float's posting to the customer, apart from what the sale took.
    checkBuiltSale(salePostings, event.data);
    return this.once(input.key, () => this.commit(event).then((done) => answer(done.event)));
  }

  private toSaleResult(event: JournalEvent): SaleResult {
    if (event.type !== 'sale') fail('VND_ERR_SALE_UNKNOWN', `seq ${event.seq} is not a sale`);
    const d = event.data;
    const c = d.customer === null ? undefined : own(this.state.customers, d.customer);
    const result: SaleResult = {
      saleId: d.saleId,
      seq: event.seq,
      at: event.at,
      terminal: event.terminal,
      cashier: event.cashier,
      customer: c === undefined ? null : { id: c.id, name: c.name, card: c.card },
      currency: d.currency,
      lines: d.lines,
      allocations: d.allocations,
      debits: d.debits,
      totalMinor: d.totalMinor,
      cash: d.cash,
      balancesAfter: d.balancesAfter,
      refunded: this.refundOf(event.seq) !== undefined,
    };
    if (d.earned !== undefined) result.earned = d.earned;
    if (d.wallet !== undefined) result.wallet = d.wallet;
    if (d.instruments !== undefined) result.instruments = instrumentsPaid(d.instruments);
    return result;
  }

  async saleResult(seq: number): Promise<SaleResult> {
    return this.toSaleResult(await this.saleEvent(seq));
  }

  /** The journalled sale at seq (VND_ERR_SALE_UNKNOWN for any other event). */
  private async saleEvent(seq: number): Promise<Extract<JournalEvent, { type: 'sale' }>> {
    if (seq < 1 || seq > this.state.seq) fail('VND_ERR_SALE_UNKNOWN');
    const event = await this.readEvent(seq);
    if (event.type !== 'sale') fail('VND_ERR_SALE_UNKNOWN', `seq ${event.seq} is not a sale`);
    return event;
  }

  async saleBySaleId(saleId: string): Promise<SaleResult> {
    const { seq } = parseSaleId(saleId);
    if (seq > this.state.seq) fail('VND_ERR_SALE_UNKNOWN', `no sale ${saleId} in this store`);
    const event = await this.readEvent(seq);
    if (event.type !== 'sale') fail('VND_ERR_SALE_UNKNOWN', `no sale ${saleId} in this store`);
    return this.toSaleResult(event);
  }

  async refundResult(seq: number): Promise<RefundResult> {
    const event = await this.readEvent(seq);
    assert(event.type === 'reversal', `seq ${seq} is a reversal`);
    const credited = dict<number>();
    // What the refund gave back; earned loyalty tokens going back to the float are not a credit.
    for (const p of event.postings) if (p.account.startsWith('customer:') && p.units > 0) credited[p.token] = p.units;
    return {
      refundId: event.data.refundId,
      seq: event.seq,
      at: event.at,
      saleId: event.data.saleId,
      credited,
      cashRefundMinor: event.data.cashRefundMinor,
      ...(event.data.loyaltyDeductedMinor === undefined ? {} : { loyaltyDeductedMinor: event.data.loyaltyDeductedMinor }),
      balancesAfter: event.data.balancesAfter,
    };
  }

  /**
   * The reversal of a sale that earned loyalty tokens: what the sale took goes back to
   * the customer, and the earned tokens go back to the float. Earned tokens the customer
   * no longer holds (spent since) refuse the refund with VND_ERR_LOYALTY_SPENT, unless
   * the supervisor accepts keeping their face value back from the cash refund: then they
   * stay with the customer, paid for. A deduction larger than the cash refund is refused.
   */
  private reverseEarning(salePostings: readonly Posting[], customerId: string, earned: Record<string, number>, deduct: boolean, cashDueMinor: number): { postings: Posting[]; deductedMinor: number } {
    const account = customerAccount(customerId);
    // The sale's own part: the customer's debits into `redeemed`; the earning is rebuilt below.
    const postings = reversePostings(salePostings.filter((p) => p.account !== FLOAT_ACCOUNT && !(p.account === account && p.units > 0)));
    const balances = customerBalances(this.state, customerId);
    let deductedMinor = 0;
    const spent: { token: string; units: number }[] = [];
    for (const token of Object.keys(earned)) {
      const units = earned[token] as number;
      let back = 0;
      for (const p of postings) if (p.account === account && p.token === token) back += p.units;
      const after = (balances[token] ?? 0) + back - units;
      const short = after < 0 ? Math.min(-after, units) : 0;
      if (short > 0) {
        spent.push({ token, units: short });
        deductedMinor = add(deductedMinor, mul(lookupTokenType(this.tokenTypes, token).faceValueMinor, short));
      }
      const keep = units - short;
      if (keep > 0) postings.push({ account, token, units: -keep }, { account: FLOAT_ACCOUNT, token, units: keep });
    }
    if (spent.length > 0) {
      const what = spent.map((s) => `${s.units} ${s.token}`).join(', ');
      const details = { spent, valueMinor: deductedMinor, cashRefundMinor: cashDueMinor };
      if (!deduct) fail('VND_ERR_LOYALTY_SPENT', `the customer has already spent ${what} this sale earned: a supervisor may refund ${this.moneyText(cashDueMinor - deductedMinor)} instead, keeping back their face value ${this.moneyText(deductedMinor)}`, details);
      if (deductedMinor > cashDueMinor) fail('VND_ERR_LOYALTY_SPENT', `the spent ${what} are worth ${this.moneyText(deductedMinor)}, more than the cash refund of ${this.moneyText(cashDueMinor)}: the sale cannot be refunded here`, details);
    }
    return { postings, deductedMinor };
  }

  async refundSale(actor: Actor, input: RefundInput, opts: { precondition?: () => void } = {}): Promise<RefundResult> {
    const hash = bodyHash(input.deductSpentLoyalty === true
      ? { saleId: input.saleId, reason: input.reason, supervisor: input.supervisorId, deductSpentLoyalty: true }
      : { saleId: input.saleId, reason: input.reason, supervisor: input.supervisorId });
    const earlier = this.seen(input.key) ?? (this.state.evicted.mayHave(input.key) ? await this.seenBefore(input.key) : null);
    if (earlier !== null) {
      await this.replay(input.key, hash, earlier);
      return this.refundResult(earlier);
    }

    const { seq: saleSeq, saleId } = parseSaleId(input.saleId);
    if (saleSeq > this.state.seq) fail('VND_ERR_SALE_UNKNOWN', `no sale ${saleId} in this store`);
    const sale = await this.readEvent(saleSeq);
    if (sale.type !== 'sale') fail('VND_ERR_SALE_UNKNOWN', `no sale ${saleId} in this store`);
    // Its tokens were paid from the lot's escrow, which a reversal cannot refill.
    if (sale.data.lot !== undefined) fail('VND_ERR_LOT_SALE_FINAL', `sale ${saleId} is lot ${sale.data.lot.lotId} sold at auction: it is not refunded at the till`);
    // Reading the sale awaited I/O: everything from here to the append is synchronous.
    const again = this.seen(input.key);
    if (again !== null) {
      await this.replay(input.key, hash, again);
      return this.refundResult(again);
    }
    if (this.refundOf(saleSeq) !== undefined) fail('VND_ERR_ALREADY_REFUNDED', `sale ${saleId} was already refunded`);
    opts.precondition?.();

    const customerId = sale.data.customer;
    const { postings, deductedMinor } = sale.data.earned === undefined || customerId === null
      ? { postings: reversePostings(sale.postings), deductedMinor: 0 }
      : this.reverseEarning(sale.postings, customerId, sale.data.earned, input.deductSpentLoyalty === true, sale.data.cash.dueMinor);
    if (postings.length > 0) planPostings(bookOf(this.state), postings);
    const base = this.base(actor, input.key, hash);
    const balancesAfter = customerId === null ? null : customerBalances(this.state, customerId);
    if (balancesAfter !== null) {
      for (const p of postings) if (p.account === customerAccount(customerId ?? '')) balancesAfter[p.token] = (balancesAfter[p.token] ?? 0) + p.units;
    }
    const event: NewEvent = {
      ...base,
      type: 'reversal',
      postings,
      data: {
        refundId: makeSaleId(base.seq),
        saleId,
        saleSeq,
        customer: customerId,
        reason: input.reason,
        supervisor: input.supervisorId,
        cashRefundMinor: sale.data.cash.dueMinor - deductedMinor,
        saleTotalMinor: sale.data.totalMinor,
        ...(deductedMinor === 0 ? {} : { loyaltyDeductedMinor: deductedMinor }),
        balancesAfter,
      },
    };
    return this.once(input.key, async () => {
      const { event: done } = await this.commit(event);
      return this.refundResult(done.seq);
    });
  }

  /**
   * Journals an event another module builds (the cashier's day) under the rules of a sale:
   * a key seen before gets its original answer, or a conflict for another body; a new one
   * is built from the current state and appended with nothing in between, and answered
   * once durable. `answer` turns the event's seq into the result, for both.
   */
  async commitRequest<T>(
    actor: Actor,
    key: string | null,
    body: unknown,
    build: (base: Omit<EventBase, 'prev'>) => NewEvent,
    answer: (seq: number) => T | Promise<T>,
  ): Promise<T> {
    const hash = key === null ? null : bodyHash(body);
    if (key !== null && hash !== null) {
      const earlier = this.seen(key) ?? (this.state.evicted.mayHave(key) ? await this.seenBefore(key) : null);
      if (earlier !== null) {
        await this.replay(key, hash, earlier);
        return answer(earlier);
      }
    }
    const event = build(this.base(actor, key, hash));
    const run = async () => answer((await this.commit(event)).event.seq);
    return key === null ? run() : this.once(key, run);
  }

  async keyStatus(key: string): Promise<KeyStatus> {
    const pending = this.inflight.get(key);
    if (pending !== undefined) await pending.catch(() => undefined);
    const seq = this.seen(key) ?? (this.state.evicted.mayHave(key) ? await this.seenBefore(key) : null);
    if (seq === null) return { state: 'unknown' };
    const event = await this.readEvent(seq);
    if (event.key !== key) return { state: 'unknown' };
    if (event.type === 'sale') return { state: 'committed', kind: 'sale', result: this.toSaleResult(event) };
    if (event.type === 'reversal') return { state: 'committed', kind: 'refund', result: await this.refundResult(event.seq) };
    return { state: 'unknown' };
  }

  // ---- back office ------------------------------------------------------------------

  async upsertProduct(actor: Actor, input: { code: string; name: string; priceMinor: number; tokenPrices: Record<string, number>; category?: string | undefined }): Promise<Product> {
    const scan = parseScan(input.code);
    if (scan.kind !== 'product') fail('CORE_ERR_CODE_MALFORMED', 'a product needs an EAN-13, EAN-8 or UPC-A code');
    const tokenPrices = dict<number>();
    for (const [token, units] of Object.entries(input.tokenPrices)) tokenPrices[lookupTokenType(this.tokenTypes, token).code] = units;
    const product: Product = { gtin: scan.gtin, name: input.name, priceMinor: input.priceMinor, tokenPrices };
    if (input.category !== undefined) product.category = input.category;
    await this.commit({ ...this.base(actor, null, null), type: 'product.upserted', postings: [], data: product });
    return product;
  }

  async upsertTokenType(actor: Actor, tt: TokenType): Promise<TokenType> {
    await this.commit({ ...this.base(actor, null, null), type: 'token-type.upserted', postings: [], data: tt });
    return tt;
  }

  async registerCustomer(actor: Actor, input: CustomerRegistration): Promise<CustomerView> {
    const data = this.newCustomer(input);
    await this.commit({ ...this.base(actor, null, null), type: 'customer.registered', postings: [], data });
    return this.customerView(data.id);
  }

  /**
   * The data of a new customer's registration: the card scanned (refused when another
   * customer holds it) or a new random number, the next customer id, and consent and
   * contact when given. Synchronous, so the caller appends it with nothing in between.
   */
  newCustomer(input: CustomerRegistration): CustomerData {
    const card = input.card === undefined || input.card === null ? this.newCardNumber() : parseCardNumber(input.card);
    if (own(this.state.cards, card) !== undefined) fail('VND_ERR_CARD_IN_USE', `card ${maskCard(card)} belongs to another customer`);
    const id = `cust-${String(this.state.customerSerial + 1).padStart(6, '0')}`;
    assert(own(this.state.customers, id) === undefined, `customer id ${id} is new`);
    const data: CustomerData = { id, card, name: input.name };
    if (input.consent !== undefined) data.consent = input.consent;
    if (input.contact !== undefined) {
      const contact: { email?: string; phone?: string } = {};
      if (input.contact.email !== undefined) contact.email = input.contact.email;
      if (input.contact.phone !== undefined) contact.phone = input.contact.phone;
      data.contact = contact;
    }
    return data;
  }

  /**
   * A card number nobody holds: 9 random digits and a check digit. Cards are bearer
   * credentials at the till, so they must not follow one another; a number in use is
   * drawn again.
   */
  private newCardNumber(): string {
    for (let i = 0; i < CARD_ATTEMPTS_MAX; i++) {
      const card = makeCardNumber(this.cardSerial());
      if (own(this.state.cards, card) === undefined) return card;
    }
    return fail('VND_ERR_CARD_IN_USE', 'no free card number was found: try again');
  }

  /**
   * An allotment the store makes of its own tokens (the operator API). Tokens of another
   * issuer, the mall's above all, enter the float only from the mall's signed snapshot.
   */
  async allotOwnTokens(actor: Actor, key: string, input: { token: string; units: number; reference: string }): Promise<{ seq: number; float: Record<string, number> }> {
    const earlier = this.seen(key);
    if (earlier === null) {
      const tt = lookupTokenType(this.tokenTypes, input.token);
      if (tt.issuer !== this.store.vendorId) {
        fail('VND_ERR_NOT_OWN_TOKEN', `${tt.code} tokens are issued by ${tt.issuer}: they reach the float only through the mall's allotments`, { token: tt.code, issuer: tt.issuer });
      }
    }
    return this.recordAllotment(actor, key, input);
  }

  async recordAllotment(actor: Actor, key: string, input: { token: string; units: number; reference: string }): Promise<{ seq: number; float: Record<string, number> }> {
    const hash = bodyHash(input);
    const earlier = this.seen(key) ?? (this.state.evicted.mayHave(key) ? await this.seenBefore(key) : null);
    if (earlier !== null) {
      await this.replay(key, hash, earlier);
      return { seq: earlier, float: this.float() };
    }
    const tt = lookupTokenType(this.tokenTypes, input.token);
    const postings = allotmentPostings(tt.issuer, tt.code, input.units);
    planPostings(bookOf(this.state), postings);
    const event: NewEvent = {
      ...this.base(actor, key, hash),
      type: 'allotment',
      postings,
      data: { token: tt.code, units: input.units, issuer: tt.issuer, reference: input.reference },
    };
    return this.once(key, async () => {
      const { event: done } = await this.commit(event);
      return { seq: done.seq, float: this.float() };
    });
  }

  async issueTokens(
    actor: Actor,
    key: string,
    input: { customerId: string; token: string; units: number; reason: 'purchase' | 'reward'; cashMinor?: number | undefined },
  ): Promise<{ seq: number; customer: CustomerView }> {
    const hash = bodyHash(input);
    const earlier = this.seen(key) ?? (this.state.evicted.mayHave(key) ? await this.seenBefore(key) : null);
    if (earlier !== null) {
      await this.replay(key, hash, earlier);
      return { seq: earlier, customer: this.customerView(input.customerId) };
    }
    const c = own(this.state.customers, input.customerId);
    if (c === undefined) fail('VND_ERR_CUSTOMER_UNKNOWN', `no customer ${input.customerId.slice(0, 40)}`);
    const tt = lookupTokenType(this.tokenTypes, input.token);
    checkSpendable(tt, this.store.vendorId, this.clock());
    // Tokens bought for cash cost their face value: the predetermined rate of exchange.
    const cashMinor = input.reason === 'purchase' ? mul(tt.faceValueMinor, input.units) : 0;
    if (input.cashMinor !== undefined && input.cashMinor !== cashMinor) {
      fail('CORE_ERR_VALIDATION', `${input.units} ${tt.code} tokens cost ${formatMinor(cashMinor, tt.currency)}, not ${formatMinor(input.cashMinor, tt.currency)}`);
    }
    const postings = issuancePostings(c.id, tt.code, input.units);
    planPostings(bookOf(this.state), postings);
    const balancesAfter = customerBalances(this.state, c.id);
    balancesAfter[tt.code] = (balancesAfter[tt.code] ?? 0) + input.units;
    const event: NewEvent = {
      ...this.base(actor, key, hash),
      type: 'issuance',
      postings,
      data: { customer: c.id, token: tt.code, units: input.units, reason: input.reason, cashMinor, balancesAfter },
    };
    return this.once(key, async () => {
      const { event: done } = await this.commit(event);
      return { seq: done.seq, customer: this.customerView(c.id) };
    });
  }

  float(): Record<string, number> {
    return { ...(own(this.state.balances, 'float') ?? {}) };
  }

  /** What token debits are worth at their face values, in fiat minor units. */
  tokenValueMinor(debits: Readonly<Record<string, number>>): number {
    let total = 0;
    for (const [token, units] of Object.entries(debits)) total = add(total, mul(lookupTokenType(this.tokenTypes, token).faceValueMinor, units));
    return total;
  }

  /** The seq of the reversal of a sale, if it was refunded. */
  refundOf(saleSeq: number): number | undefined {
    return own(this.state.refunds, String(saleSeq));
  }

  async customerHistory(customerId: string): Promise<JournalEvent[]> {
    const c = own(this.state.customers, customerId);
    if (c === undefined) fail('VND_ERR_CUSTOMER_UNKNOWN', `no customer ${customerId.slice(0, 40)}`);
    return Promise.all(c.recent.map((seq) => this.readEvent(seq)));
  }
}

/**
 * The acknowledgement of a committed sale, from its journal event: the fields the till
 * closes the sale with. The whole sale (lines, allocations, customer) is several times
 * larger and is sent once, by `receipt:get`, rather than with every commit.
 */
export function saleAckOf(event: JournalEvent): SaleAck {
  if (event.type !== 'sale') fail('VND_ERR_SALE_UNKNOWN', `seq ${event.seq} is not a sale`);
  const d = event.data;
  const ack: SaleAck = {
    saleId: d.saleId,
    seq: event.seq,
    at: event.at,
    cashier: event.cashier,
    currency: d.currency,
    totalMinor: d.totalMinor,
    debits: d.debits,
    cash: d.cash,
    balancesAfter: d.balancesAfter,
  };
  if (d.earned !== undefined) ack.earned = d.earned;
  if (d.instruments !== undefined) ack.instruments = instrumentsPaid(d.instruments);
  return ack;
}

/** What gift certificates and coupons paid in a sale, without their signed form: that is the bearer's. */
export function instrumentsPaid(uses: readonly InstrumentUse[]): InstrumentPaid[] {
  return uses.map((u) => ({ code: u.code, kind: u.kind, token: u.token, units: u.units, remainingAfter: u.remainingAfter, offline: u.reservation === null }));
}

/**
 * The hash of a sale request, over its fields in a fixed order. The request was already
 * validated, so its shape is known and no general canonicalisation is needed.
 */
export function saleBodyHash(input: SaleInput): string {
  // The text JSON.stringify gives for { lines, card, tenders, cash } (each line { code, qty },
  // each tender { token } or { token, units }), written out: every sale is hashed, and the
  // objects and closures of building that value first would be made only to be read once.
  // Strings still go through JSON.stringify, which escapes them; the numbers are integers.
  let text = '{"lines":[';
  for (let i = 0; i < input.lines.length; i++) {
    const l = input.lines[i] as SaleInput['lines'][number];
    text += `${i === 0 ? '' : ','}{"code":${JSON.stringify(l.code)},"qty":${JSON.stringify(l.qty)}}`;
  }
  text += `],"card":${JSON.stringify(input.card)},"tenders":[`;
  for (let i = 0; i < input.tenders.length; i++) {
    const t = input.tenders[i] as SaleInput['tenders'][number];
    text += `${i === 0 ? '' : ','}{"token":${JSON.stringify(t.token)}${t.units === undefined ? '' : `,"units":${JSON.stringify(t.units)}`}}`;
  }
  text += `],"cash":${JSON.stringify(input.cashTenderedMinor)}}`;
  return digest('sha256', text, 'hex');
}

import type { AddressInfo } from 'node:net';
import {
  makeCardNumber,
  makeSaleId,
  MallposError,
  priceCart,
  quoteExchange,
  type Ack,
  type CashierView,
  type CustomerDataView,
  type CustomerView,
  type ExchangeAck,
  type ExchangeView,
  type PricedCart,
  type ReceiptData,
  type SaleAck,
  type SaleResult,
  type ServerStatus,
  type TokenSaleAck,
  type TokenSource,
  type TokenType,
  type WalletMoveAck,
  type WalletView,
} from '../../core/index.ts';
import { doubleStatus, LostAnswers, startDoubleServer, writeDoubleCredential } from './store-double.ts';

/**
 * A stand-in for the store server's side of tokens between stores, for the terminal's own
 * tests: a TLS socket.io server answering the requests of core/protocol.ts
 * (`customer:register`, `tokens:sell`, `exchange:quote`, `exchange:commit`,
 * `wallet:balance`, `wallet:move`, `customer:data-request`, and sales with wallet tenders
 * and loyalty earning) faithfully to the contract, refusals included, and recording every
 * request. It keeps the rules a terminal relies on: a repeated key with the same body
 * answers the first result and changes nothing; the same key with another body is a
 * conflict; the exchange uses core's rounding rule; the wallet answers
 * VND_ERR_WALLET_OFFLINE while the mall is "away".
 */
export const ECONOMY_DOUBLE_CREDENTIAL = 'economy-double-credential';
export const PEN = '4006381333931';
/** The mall wallet PIN of ANNA_CARD's wallet. */
export const ANNA_WALLET_PIN = '246813579024';

/** A customer of this store with 50 ACME on the card and 20 MALL in the mall wallet. */
export const ANNA_CARD = makeCardNumber(1);
/** A customer of another store who agreed to share their data, and one who did not. */
export const OTHER_STORE_CARD = makeCardNumber(900_001);
export const NO_CONSENT_CARD = makeCardNumber(900_002);
export const SERVICE_BPS = 200;
export const TOLL_MINOR = 25;
/** One ACME earned for every whole euro paid in cash by a customer with a card. */
const EARN_EVERY_MINOR = 100;

export const TOKEN_TYPES: TokenType[] = [
  { code: 'ACME', name: 'ACME token', kind: 'vendor', issuer: 'V-DOUBLE', faceValueMinor: 100, currency: 'EUR', acceptedBy: '*' },
  { code: 'MALL', name: 'Mall token', kind: 'mall', issuer: 'mall', faceValueMinor: 150, currency: 'EUR', acceptedBy: '*' },
  { code: 'BETA', name: 'Beta token', kind: 'vendor', issuer: 'V-BETA', faceValueMinor: 300, currency: 'EUR', acceptedBy: '*' },
];
const TYPES = new Map(TOKEN_TYPES.map((t) => [t.code, t]));

interface Customer {
  id: string;
  card: string;
  name: string;
  consent: boolean;
  contact: { email?: string; phone?: string };
  balances: Map<string, number>;
}

export interface EconomyDouble {
  url: string;
  requests: { event: string; payload: Record<string, unknown> }[];
  /** Requests of one event, in order. */
  sent(event: string): Record<string, unknown>[];
  customer(card: string): CustomerView | null;
  wallet(card: string): Record<string, number>;
  /** The wallet PIN the mall holds for a card (set by a first deposit), if any. */
  walletPin(card: string): string | undefined;
  /** How many times each money-moving request changed the double's state. */
  applied(event: string): number;
  tollsCharged(): number;
  /** While false the mall is away: wallet requests answer VND_ERR_WALLET_OFFLINE. */
  setMallReachable(reachable: boolean): void;
  /** The next `times` answers to `event` are dropped (the request is still applied), as if lost on the network. */
  dropNextAnswer(event: string, times?: number): void;
  /** Changes the service charge, as a new fee schedule of the mall would. */
  setServiceBps(bps: number): void;
  pair(dataDir: string): Promise<void>;
  close(): Promise<void>;
}

function status(journalSeq: number): ServerStatus {
  return { ...doubleStatus(journalSeq), tokenNames: Object.fromEntries(TOKEN_TYPES.map((t) => [t.code, t.name])) };
}

export async function startEconomyDouble(): Promise<EconomyDouble> {
  const { ca, https, io } = await startDoubleServer('economy double');
  const requests: EconomyDouble['requests'] = [];
  const answered = new Map<string, { body: string; answer: Ack<unknown> }>();
  const drops = new LostAnswers();
  const applied = new Map<string, number>();
  const customers = new Map<string, Customer>();
  const wallets = new Map<string, Map<string, number>>();
  const sales = new Map<string, SaleResult>();
  let mallReachable = true;
  let serviceBps = SERVICE_BPS;
  let seq = 100;
  let cardSerial = 500;
  let tolls = 0;
  let cashier: CashierView | null = null;

  customers.set(ANNA_CARD, { id: 'cust-1', card: ANNA_CARD, name: 'Anna', consent: false, contact: {}, balances: new Map([['ACME', 50]]) });
  wallets.set(ANNA_CARD, new Map([['MALL', 20]]));
  /** Wallet PINs by card, as the mall keeps them (here in clear: a stand-in). */
  const walletPins = new Map<string, string>([[ANNA_CARD, ANNA_WALLET_PIN]]);
  /** The mall's answer to a hold with `pin` on `card`'s wallet: null when it is the right one. */
  const pinRefusal = (card: string, pin: unknown): Ack<never> | null => {
    const set = walletPins.get(card);
    if (set === undefined) return refuse('MALL_ERR_WALLET_PIN_NOT_SET', 'this wallet has no PIN yet: the customer chooses one first');
    if (pin === undefined) return refuse('MALL_ERR_WALLET_PIN_REQUIRED', 'the wallet PIN is needed');
    if (pin !== set) return refuse('MALL_ERR_WALLET_PIN', `wrong wallet PIN for card ${card}`);
    return null;
  };
  const directory = new Map([
    [OTHER_STORE_CARD, { name: 'Bea Other', consent: true, contact: { email: 'bea@example.org' }, home: { vendorId: 'V-BETA', name: 'Beta Store' } }],
    [NO_CONSENT_CARD, { name: 'Carl Private', consent: false, contact: {}, home: { vendorId: 'V-BETA', name: 'Beta Store' } }],
  ]);

  const refuse = (code: string, message: string, details?: Record<string, unknown>): Ack<never> => ({ ok: false, error: { code, message, ...(details === undefined ? {} : { details }) } });
  const ok = <T>(data: T): Ack<T> => ({ ok: true, data });
  const count = (event: string) => applied.set(event, (applied.get(event) ?? 0) + 1);
  const balancesOf = (m: Map<string, number>) =>
    [...m.entries()].filter(([, u]) => u !== 0).map(([token, units]) => ({ token, name: TYPES.get(token)?.name ?? token, kind: TYPES.get(token)?.kind ?? 'vendor', units, spendable: true }));
  const view = (c: Customer): CustomerView => ({ id: c.id, card: c.card, name: c.name, balances: balancesOf(c.balances), consent: c.consent });
  const walletView = (card: string): WalletView => ({ card, balances: balancesOf(wallets.get(card) ?? new Map()), asOf: new Date().toISOString() });
  const adjust = (m: Map<string, number>, token: string, delta: number) => m.set(token, (m.get(token) ?? 0) + delta);
  const units = (v: unknown): number | null => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 ? v : null);
  const product = { gtin: PEN, name: 'Ballpoint pen', priceMinor: 300, tokenPrices: { ACME: 3, MALL: 2 } };
  /** A refusal thrown by core (the exchange rule, pricing) as the store would answer it. */
  const judged = <T>(work: () => Ack<T>): Ack<T> => {
    try {
      return work();
    } catch (err) {
      if (err instanceof MallposError) return refuse(err.code, err.message, err.details);
      throw err;
    }
  };

  io.use((socket, next) => {
    const token = (socket.handshake.auth as { token?: unknown }).token;
    if (token === ECONOMY_DOUBLE_CREDENTIAL) next();
    else next(Object.assign(new Error('unauthenticated'), { data: { code: 'VND_ERR_UNAUTHENTICATED', message: 'unknown terminal' } }));
  });

  io.on('connection', (socket) => {
    (socket as unknown as { emit: (e: string, s: ServerStatus) => void }).emit('server:status', status(seq));
    const handle = (event: string, work: (p: Record<string, unknown>) => Ack<unknown>) => {
      socket.on(event as never, ((payload: Record<string, unknown>, ack: (a: Ack<unknown>) => void) => {
        requests.push({ event, payload });
        const key = typeof payload['key'] === 'string' ? `${event}|${payload['key']}` : null;
        const { key: _k, customerPin: _p, walletPin: _w, newWalletPin: _n, ...rest } = payload;
        const body = JSON.stringify(rest);
        let answer: Ack<unknown>;
        const earlier = key === null ? undefined : answered.get(key);
        if (earlier !== undefined) {
          answer = earlier.body === body ? earlier.answer : refuse('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request');
        } else {
          answer = judged(() => work(payload));
          if (key !== null && answer.ok) answered.set(key, { body, answer });
        }
        if (!drops.take(event)) ack(answer);
      }) as never);
    };
    const customerOf = (card: unknown): Customer | null => (typeof card === 'string' ? (customers.get(card) ?? null) : null);
    const noCustomer = () => refuse('VND_ERR_CUSTOMER_UNKNOWN', 'unknown customer card');
    const walletAway = () => refuse('VND_ERR_WALLET_OFFLINE', 'the mall wallet cannot be reached now: take another tender');

    handle('cashier:login', (p) => {
      if (p['staffId'] !== 'ana' || p['pin'] !== '1234') return refuse('VND_ERR_PIN', 'wrong staff id or PIN');
      cashier = { staffId: 'ana', name: 'Ana (cashier)', role: 'cashier' };
      return ok(cashier);
    });
    handle('shift:current', () => ok(null));
    handle('catalog:get', () => refuse('VND_ERR_UNKNOWN_EVENT', 'unknown event'));
    handle('offline:report', () => ok(null));
    handle('product:lookup', (p) => (p['code'] === PEN ? ok({ ...product, currency: 'EUR' }) : refuse('VND_ERR_PRODUCT_UNKNOWN', 'unknown product')));
    handle('customer:lookup', (p) => {
      const c = customerOf(p['card']);
      return c === null ? noCustomer() : ok(view(c));
    });

    const price = (p: Record<string, unknown>, c: Customer | null): PricedCart => {
      const lines = (p['lines'] as { code: string; qty: number }[]).map((l) => ({ product, qty: l.qty }));
      const tenders = ((p['tenders'] as { token: string; units?: number; source?: TokenSource }[] | undefined) ?? []);
      // Card tenders are priced against the card; wallet tenders as tendered (the mall is
      // asked at commit), which commit checks against the wallet itself.
      const balances: Record<string, number> = Object.create(null) as Record<string, number>;
      for (const t of tenders) balances[t.token] = t.source === 'wallet' ? (t.units ?? 0) : (c?.balances.get(t.token) ?? 0);
      return priceCart({
        vendorId: 'V-DOUBLE',
        currency: 'EUR',
        now: new Date(),
        lines,
        tokenTypes: TYPES,
        tenders: tenders.map((t) => ({ token: t.token, units: t.units })),
        balances: c === null ? null : balances,
      });
    };
    handle('cart:price', (p) => {
      const c = p['card'] === null || p['card'] === undefined ? null : customerOf(p['card']);
      if (p['card'] !== null && p['card'] !== undefined && c === null) return noCustomer();
      return ok(price(p, c));
    });
    handle('sale:commit', (p) => {
      if (cashier === null) return refuse('VND_ERR_CASHIER_REQUIRED', 'a cashier must sign in first');
      const c = p['card'] === null ? null : customerOf(p['card']);
      if (p['card'] !== null && c === null) return noCustomer();
      const tenders = p['tenders'] as { token: string; units?: number; source?: TokenSource }[];
      const fromWallet = tenders.filter((t) => t.source === 'wallet');
      if (fromWallet.length > 0 && !mallReachable) return walletAway();
      if (fromWallet.length > 0 && c !== null) {
        const pinned = pinRefusal(c.card, p['walletPin']);
        if (pinned !== null) return pinned;
      }
      for (const t of fromWallet) {
        const held = c === null ? 0 : (wallets.get(c.card)?.get(t.token) ?? 0);
        if ((t.units ?? 0) > held) return refuse('MALL_ERR_WALLET_INSUFFICIENT', `the mall wallet holds ${held} ${t.token}`);
      }
      const priced = price(p, c);
      const tendered = Number(p['cashTenderedMinor']);
      if (tendered < priced.cashDueMinor) return refuse('CORE_ERR_CASH_SHORT', `not enough cash tendered: ${priced.cashDueMinor - tendered} short`);
      seq += 1;
      const saleId = makeSaleId(seq);
      const wallet = c === null ? [] : fromWallet.map((t, i) => ({ authorisation: `A${seq}-${i}`, token: t.token, units: priced.debits[t.token] ?? 0 }));
      for (const [token, u] of Object.entries(priced.debits)) {
        if (c === null) break;
        if (fromWallet.some((t) => t.token === token)) adjust(wallets.get(c.card) ?? new Map(), token, -u);
        else adjust(c.balances, token, -u);
      }
      const earnedUnits = c === null ? 0 : Math.floor(priced.cashDueMinor / EARN_EVERY_MINOR);
      const earned = earnedUnits > 0 ? { ACME: earnedUnits } : undefined;
      if (c !== null && earnedUnits > 0) adjust(c.balances, 'ACME', earnedUnits);
      const balancesAfter = c === null ? null : Object.fromEntries([...c.balances.entries()]);
      const at = new Date().toISOString();
      const cash = { dueMinor: priced.cashDueMinor, tenderedMinor: tendered, changeMinor: tendered - priced.cashDueMinor };
      sales.set(saleId, {
        saleId, seq, at, terminal: 'T-DOUBLE', cashier: cashier.staffId, customer: c === null ? null : { id: c.id, name: c.name, card: c.card }, refunded: false,
        currency: 'EUR', lines: priced.lines, allocations: priced.allocations, debits: priced.debits, totalMinor: priced.totalMinor, cash, balancesAfter,
        ...(earned === undefined ? {} : { earned }), ...(wallet.length > 0 ? { wallet } : {}),
      });
      count('sale:commit');
      const ackData: SaleAck = { saleId, seq, at, cashier: cashier.staffId, currency: 'EUR', totalMinor: priced.totalMinor, debits: priced.debits, cash, balancesAfter, ...(earned === undefined ? {} : { earned }) };
      return ok(ackData);
    });
    handle('receipt:get', (p) => {
      const sale = sales.get(String(p['saleId']));
      if (sale === undefined) return refuse('VND_ERR_SALE_UNKNOWN', 'unknown sale');
      const data: ReceiptData = { store: { vendorId: 'V-DOUBLE', name: 'Double Store', address: ['1 Test Street'] }, sale, refund: null };
      return ok(data);
    });

    handle('customer:register', (p) => {
      const name = typeof p['name'] === 'string' ? p['name'].trim() : '';
      if (name === '' || typeof p['consent'] !== 'boolean') return refuse('CORE_ERR_VALIDATION', 'a customer needs a name and a consent answer');
      let card = p['card'];
      if (card !== null && (typeof card !== 'string' || !/^C\d{10}$/.test(card))) return refuse('CORE_ERR_CODE_MALFORMED', 'this card cannot be read');
      if (typeof card === 'string' && customers.has(card)) return refuse('VND_ERR_CARD_IN_USE', 'this card number belongs to another customer');
      card ??= makeCardNumber((cardSerial += 1));
      const contact = (p['contact'] as Customer['contact'] | undefined) ?? {};
      const c: Customer = { id: `cust-${customers.size + 1}`, card: card as string, name, consent: p['consent'], contact, balances: new Map() };
      customers.set(c.card, c);
      count('customer:register');
      seq += 1;
      return ok(view(c));
    });

    handle('tokens:sell', (p) => {
      const c = customerOf(p['card']);
      if (c === null) return noCustomer();
      const type = TYPES.get(String(p['token']));
      if (type === undefined) return refuse('CORE_ERR_TOKEN_UNKNOWN', `unknown token type ${String(p['token'])}`);
      const n = units(p['units']);
      if (n === null) return refuse('CORE_ERR_AMOUNT', 'sell at least one token');
      const priceMinor = n * type.faceValueMinor;
      const pay = p['payment'] as { method: 'cash'; tenderedMinor: number } | { method: 'card'; approvalRef: string };
      let payment: TokenSaleAck['payment'];
      if (pay.method === 'cash') {
        if (pay.tenderedMinor < priceMinor) return refuse('CORE_ERR_CASH_SHORT', `not enough cash tendered: ${n} ${type.code} cost ${priceMinor} cents`);
        payment = { method: 'cash', tenderedMinor: pay.tenderedMinor, changeMinor: pay.tenderedMinor - priceMinor };
      } else if (pay.method === 'card' && typeof pay.approvalRef === 'string' && pay.approvalRef.trim() !== '') {
        payment = { method: 'card', approvalRef: pay.approvalRef };
      } else {
        return refuse('CORE_ERR_VALIDATION', 'a card payment needs the approval reference');
      }
      adjust(c.balances, type.code, n);
      count('tokens:sell');
      seq += 1;
      const data: TokenSaleAck = { seq, at: new Date().toISOString(), token: type.code, units: n, priceMinor, currency: 'EUR', payment, customer: view(c) };
      return ok(data);
    });

    const quote = (p: Record<string, unknown>, c: Customer): ExchangeView | Ack<never> => {
      const from = p['from'] as { token: string; units: number; source: TokenSource };
      const fromType = TYPES.get(from.token);
      const toType = TYPES.get(String(p['to']));
      if (fromType === undefined || toType === undefined) return refuse('CORE_ERR_TOKEN_UNKNOWN', 'unknown token type');
      if (from.source === 'wallet' && !mallReachable) return walletAway();
      const q = quoteExchange(fromType, from.units, toType, serviceBps);
      const held = from.source === 'wallet' ? (wallets.get(c.card)?.get(from.token) ?? 0) : (c.balances.get(from.token) ?? 0);
      if (held < from.units) {
        return from.source === 'wallet'
          ? refuse('MALL_ERR_WALLET_INSUFFICIENT', `the mall wallet holds ${held} ${from.token}`)
          : refuse('CORE_ERR_INSUFFICIENT_TOKENS', `not enough ${from.token} tokens: ${from.units - held} short`, { token: from.token });
      }
      return { quote: q, source: from.source, offline: false, snapshotIssuedAt: new Date().toISOString() };
    };
    handle('exchange:quote', (p) => {
      const c = customerOf(p['card']);
      if (c === null) return noCustomer();
      const v = quote(p, c);
      return 'ok' in v ? v : ok(v);
    });
    handle('exchange:commit', (p) => {
      const c = customerOf(p['card']);
      if (c === null) return noCustomer();
      const v = quote(p, c);
      if ('ok' in v) return v;
      if (v.quote.to.units !== p['expectUnits']) return refuse('VND_ERR_EXCHANGE_QUOTE_CHANGED', 'the exchange rate or service charge changed since the quote: quote again');
      if (v.source === 'wallet') {
        const pinned = pinRefusal(c.card, p['walletPin']);
        if (pinned !== null) return pinned;
      }
      const q = v.quote;
      if (v.source === 'wallet') adjust(wallets.get(c.card) ?? new Map(), q.from.token, -q.from.units);
      else adjust(c.balances, q.from.token, -q.from.units);
      adjust(c.balances, q.to.token, q.to.units);
      count('exchange:commit');
      seq += 1;
      const data: ExchangeAck = { ...v, exchangeId: `X${seq}`, seq, at: new Date().toISOString(), customer: view(c), wallet: v.source === 'wallet' ? walletView(c.card) : null };
      return ok(data);
    });
    handle('wallet:balance', (p) => {
      const c = customerOf(p['card']);
      if (c === null) return noCustomer();
      if (!mallReachable) return walletAway();
      return ok(walletView(c.card));
    });
    handle('wallet:move', (p) => {
      const c = customerOf(p['card']);
      if (c === null) return noCustomer();
      const n = units(p['units']);
      const token = String(p['token']);
      if (n === null) return refuse('CORE_ERR_AMOUNT', 'move at least one token');
      if (!TYPES.has(token)) return refuse('CORE_ERR_TOKEN_UNKNOWN', `unknown token type ${token}`);
      if (!mallReachable) return walletAway();
      if (!wallets.has(c.card)) wallets.set(c.card, new Map());
      const wallet = wallets.get(c.card) as Map<string, number>;
      if (p['direction'] === 'to-wallet') {
        if ((c.balances.get(token) ?? 0) < n) return refuse('CORE_ERR_INSUFFICIENT_TOKENS', `not enough ${token} tokens on the card`, { token });
        // A first deposit sets the PIN the customer chose; without one it is refused.
        if (!walletPins.has(c.card)) {
          const chosen = p['newWalletPin'];
          if (typeof chosen !== 'string') return refuse('MALL_ERR_WALLET_PIN_NOT_SET', 'this wallet has no PIN yet: the customer chooses one (4-12 digits) with this first deposit');
          walletPins.set(c.card, chosen);
        }
        adjust(c.balances, token, -n);
        adjust(wallet, token, n);
      } else {
        const pinned = pinRefusal(c.card, p['walletPin']);
        if (pinned !== null) return pinned;
        if ((wallet.get(token) ?? 0) < n) return refuse('MALL_ERR_WALLET_INSUFFICIENT', `the mall wallet holds ${wallet.get(token) ?? 0} ${token}`);
        adjust(wallet, token, -n);
        adjust(c.balances, token, n);
      }
      count('wallet:move');
      seq += 1;
      const data: WalletMoveAck = { moveId: `W${seq}`, seq, at: new Date().toISOString(), direction: p['direction'] as WalletMoveAck['direction'], token, units: n, customer: view(c), wallet: walletView(c.card) };
      return ok(data);
    });
    handle('customer:data-request', (p) => {
      const card = String(p['card']);
      if (customers.has(card)) return refuse('MALL_ERR_VALIDATION', 'this is your own customer: look them up in the back office');
      const entry = directory.get(card);
      if (entry === undefined) return refuse('MALL_ERR_CUSTOMER_UNKNOWN', 'no member store has registered this card');
      if (!entry.consent) return refuse('MALL_ERR_NO_CONSENT', 'the customer has not agreed to share their data with other stores');
      tolls += 1;
      count('customer:data-request');
      const data: CustomerDataView = {
        requestId: `R${tolls}`,
        card,
        home: entry.home,
        name: entry.name,
        contact: entry.contact,
        summary: { sales: 4, spentMinor: 12_300, currency: 'EUR', firstAt: '2026-01-05T10:00:00.000Z', lastAt: '2026-11-20T16:30:00.000Z' },
        tollMinor: TOLL_MINOR,
      };
      return ok(data);
    });
  });

  await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(https.address() as AddressInfo).port}`;
  return {
    url,
    requests,
    sent: (event) => requests.filter((r) => r.event === event).map((r) => r.payload),
    customer: (card) => {
      const c = customers.get(card);
      return c === undefined ? null : view(c);
    },
    wallet: (card) => Object.fromEntries(wallets.get(card) ?? new Map()),
    walletPin: (card) => walletPins.get(card),
    applied: (event) => applied.get(event) ?? 0,
    tollsCharged: () => tolls,
    setMallReachable: (reachable) => void (mallReachable = reachable),
    dropNextAnswer: (event, times = 1) => drops.lose(event, times),
    setServiceBps: (bps) => void (serviceBps = bps),
    pair: (dataDir) => writeDoubleCredential(dataDir, { url, caPem: ca.certPem, terminalId: 'T-DOUBLE', name: 'Till 9', device: 'double-device-credential', credential: ECONOMY_DOUBLE_CREDENTIAL }),
    async close() {
      io.disconnectSockets(true);
      await new Promise<void>((resolve) => io.close(() => resolve()));
    },
  };
}

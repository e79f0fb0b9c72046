import {
  fail,
  formatMinor,
  formatUnits,
  maskCard,
  parseCardNumber,
  type ClientToServerEvents,
  type CustomerDataView,
  type CustomerView,
  type ExchangeAck,
  type ExchangeView,
  type TokenBalance,
  type TokenSaleAck,
  type TokenSource,
  type WalletMoveAck,
  type WalletView,
} from '../core/index.ts';
import type { PrintQueue, Receipt } from '../hardware/printer/index.ts';
import { exchangeReceipt, formatBps, registrationSlip, tokenSaleReceipt, walletMoveReceipt, type EconomyReceiptContext } from './economy-receipts.ts';
import { RemoteError, type StoreLink } from './store-link.ts';

/**
 * Tokens that travel between stores, at the till: a new customer, tokens sold for cash or
 * card, an exchange of one issuer's tokens for another's, the customer's mall wallet (its
 * balance, moves to and from it) and another store's customer data. The store server
 * decides every amount; the till sends the request (money-moving ones under an
 * idempotency key kept on disk until answered), shows the balances before and after, and
 * prints the slip.
 */
export type EconomyCommand =
  | { type: 'registerCustomer'; name: string; consent: boolean; card: string | null; email?: string; phone?: string }
  | {
      type: 'sellTokens';
      token: string;
      units: number;
      payment: { method: 'cash'; tenderedMinor: number } | { method: 'card'; approvalRef: string };
    }
  | { type: 'exchangeQuote'; fromToken: string; units: number; source: TokenSource; toToken: string }
  /** `pin`: the customer's wallet PIN, for an exchange from the wallet. */
  | { type: 'exchangeConfirm'; pin?: string }
  | { type: 'exchangeCancel' }
  | { type: 'walletBalance' }
  /** `pin`: the wallet PIN (from the wallet); `newPin`: the PIN the customer chooses with a first deposit. */
  | { type: 'walletMove'; direction: 'to-wallet' | 'from-wallet'; token: string; units: number; pin?: string; newPin?: string }
  | { type: 'customerData'; card: string }
  | { type: 'closeEconomy' };

/** Every command type once: the record makes the compiler name one that is missing or unknown. */
const COMMAND_TYPES: Record<EconomyCommand['type'], true> = {
  registerCustomer: true,
  sellTokens: true,
  exchangeQuote: true,
  exchangeConfirm: true,
  exchangeCancel: true,
  walletBalance: true,
  walletMove: true,
  customerData: true,
  closeEconomy: true,
};

export const ECONOMY_COMMANDS: ReadonlySet<string> = new Set(Object.keys(COMMAND_TYPES));
/** One token's units before and after an action (null before: not known to the till). */
export interface BalanceChange {
  token: string;
  name: string;
  before: number | null;
  after: number;
}

/** What the screen shows after an action: every amount already in words. */
export interface EconomyResult {
  kind: 'registered' | 'tokens-sold' | 'exchanged' | 'wallet' | 'wallet-moved' | 'customer-data';
  title: string;
  customer: { name: string; card: string } | null;
  details: { label: string; value: string }[];
  /** The customer's balances at this store (their card), before and after. */
  card: BalanceChange[] | null;
  /** The customer's mall wallet, before and after. */
  wallet: BalanceChange[] | null;
}

/** An exchange quoted and waiting for the cashier to confirm it. */
export interface QuoteShown {
  fromToken: string;
  units: number;
  source: TokenSource;
  toToken: string;
  /** Units the customer receives, as the rule gives them now. */
  unitsOut: number;
  given: string;
  charge: string;
  receives: string;
  remainder: string;
  offline: boolean;
}

export interface EconomyView {
  quote: QuoteShown | null;
  result: EconomyResult | null;
}

/** What the economy needs from the terminal it lives in. */
export interface EconomyHost {
  readonly link: StoreLink;
  readonly printQueue: PrintQueue;
  /**
   * Sends a money-moving request under an idempotency key made before its first send and
   * reused on retry; `secret` (a PIN) is sent with it but is no part of what identifies
   * the request and is never written to disk.
   */
  sendKeyed<T>(event: keyof ClientToServerEvents, body: Record<string, unknown>, secret?: Record<string, unknown>): Promise<T>;
  /** The customer the till works with (the cart's), with the whole card number. */
  customer(): CustomerView | null;
  /** Makes `c` the cart's customer (their balances as the store answered just now). */
  setCustomer(c: CustomerView): Promise<void>;
  /** Throws unless the till is idle, paired and connected; `offlineText` says why when not connected. */
  needOnline(offlineText: string): void;
  receiptContext(): EconomyReceiptContext;
  currency(): string;
  openDrawer(): Promise<void>;
  /** A slip of this kind was handed to the printer: a reprint prints it, not an older sale. */
  slipPrinted(): void;
  say(kind: 'error' | 'info' | 'success', text: string, code?: string): void;
  changed(): void;
}

export const OFFLINE_ONLINE_ONLY =
  'the store server is unreachable: tokens are sold, customers registered and tokens exchanged only while it can be reached (offline, the till makes ordinary cash sales only); nothing was charged';
export const OFFLINE_WALLET = 'the store server is unreachable, so the mall wallet cannot be reached: take another tender; nothing was moved';
export const OFFLINE_CUSTOMER_DATA = 'the store server is unreachable, so the mall cannot be asked for customer data; nothing was charged';
/** What the till says when the store answers that it cannot reach the mall wallet. */
export const WALLET_UNREACHABLE = 'the mall wallet cannot be reached now (the store cannot reach the mall): take another tender; nothing was moved or charged';

const NAME_CHARS_MAX = 80;

/** The customer as the screen names them: the card is a bearer credential, so only its last digits. */
function shownCustomer(c: Pick<CustomerView, 'name' | 'card'>): { name: string; card: string } {
  return { name: c.name, card: maskCard(c.card) };
}

/** Units the cashier typed, refused unless a whole number of at least one. */
function needUnits(units: number, what: string): void {
  if (!Number.isSafeInteger(units) || units < 1) fail('CORE_ERR_AMOUNT', `${what} at least one token`);
}

/** The PINs a wallet move carries: the wallet's to take from it, a new one with a first deposit. */
function movePins(cmd: { direction: 'to-wallet' | 'from-wallet'; pin?: string; newPin?: string }): Record<string, string> {
  if (cmd.direction === 'from-wallet') return cmd.pin === undefined ? {} : { walletPin: cmd.pin };
  return cmd.newPin === undefined ? {} : { newWalletPin: cmd.newPin };
}

function changes(before: TokenBalance[] | null, after: TokenBalance[]): BalanceChange[] {
  const prior = new Map((before ?? []).map((b) => [b.token, b]));
  const out: BalanceChange[] = after.map((b) => ({ token: b.token, name: b.name, before: before === null ? null : (prior.get(b.token)?.units ?? 0), after: b.units }));
  // A token that no longer shows after the action went to zero.
  for (const b of before ?? []) if (!after.some((a) => a.token === b.token)) out.push({ token: b.token, name: b.name, before: b.units, after: 0 });
  return out;
}

export class TillEconomy {
  private quote: { shown: QuoteShown; card: string } | null = null;
  private result: EconomyResult | null = null;
  /** The wallet last seen, per card, for "before" of the next move (the mall keeps the truth). */
  private lastWallet: WalletView | null = null;

  constructor(private readonly host: EconomyHost) {}

  view(): EconomyView {
    return { quote: this.quote?.shown ?? null, result: this.result };
  }

  /** Forgets what belongs to a customer who is no longer at the till. */
  customerChanged(card: string | null): void {
    if (this.quote !== null && this.quote.card !== card) this.quote = null;
    if (this.lastWallet !== null && this.lastWallet.card !== card) this.lastWallet = null;
  }

  async command(cmd: EconomyCommand): Promise<void> {
    switch (cmd.type) {
      case 'registerCustomer':
        return this.register(cmd);
      case 'sellTokens':
        return this.sell(cmd);
      case 'exchangeQuote':
        return this.quoteExchange(cmd);
      case 'exchangeConfirm':
        return this.confirmExchange(cmd.pin);
      case 'exchangeCancel':
        this.quote = null;
        this.host.changed();
        return;
      case 'walletBalance':
        return this.walletBalance();
      case 'walletMove':
        return this.walletMove(cmd);
      case 'customerData':
        return this.customerData(cmd.card);
      case 'closeEconomy':
        this.result = null;
        this.host.changed();
        return;
    }
  }

  private money(minor: number, currency = this.host.currency()): string {
    return formatMinor(minor, currency);
  }

  private needCustomer(what: string): CustomerView {
    const c = this.host.customer();
    if (c === null) fail('POS_ERR_NO_CUSTOMER', `scan the customer card first: ${what} needs the customer`);
    return c;
  }

  private show(result: EconomyResult): void {
    this.result = result;
    this.host.changed();
  }

  private async print(receipt: Receipt, what: string): Promise<void> {
    const printing = this.host.printQueue.enqueue(receipt);
    this.host.slipPrinted();
    const printed = await printing;
    if (!printed.ok) this.host.say('error', `${what} done; the slip was not printed: ${printed.message}`);
  }

  /** Refusals that mean the mall wallet is out of reach are said the same way everywhere. */
  private async walletCall<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (err instanceof RemoteError && err.wire.code === 'VND_ERR_WALLET_OFFLINE') fail('VND_ERR_WALLET_OFFLINE', WALLET_UNREACHABLE);
      throw err;
    }
  }

  private async register(cmd: Extract<EconomyCommand, { type: 'registerCustomer' }>): Promise<void> {
    this.host.needOnline(OFFLINE_ONLINE_ONLY);
    const name = cmd.name.trim();
    if (name === '' || Array.from(name).length > NAME_CHARS_MAX) fail('CORE_ERR_VALIDATION', `a customer's name is 1 to ${NAME_CHARS_MAX} characters`);
    // A pre-printed card is checked here (its check digit) before the store is asked.
    const card = cmd.card === null || cmd.card.trim() === '' ? null : parseCardNumber(cmd.card.trim());
    const contact: { email?: string; phone?: string } = {};
    if (cmd.email !== undefined && cmd.email.trim() !== '') contact.email = cmd.email.trim();
    if (cmd.phone !== undefined && cmd.phone.trim() !== '') contact.phone = cmd.phone.trim();
    const body = { name, card, consent: cmd.consent, ...(Object.keys(contact).length > 0 ? { contact } : {}) };
    const customer = await this.host.sendKeyed<CustomerView>('customer:register', body);
    await this.host.setCustomer(customer);
    this.show({
      kind: 'registered',
      title: 'New customer',
      customer: shownCustomer(customer),
      details: [
        { label: 'Card', value: card === null ? `${maskCard(customer.card)} (new number, printed)` : `${maskCard(customer.card)} (pre-printed card)` },
        { label: 'Shares data with other stores', value: customer.consent === true ? 'yes' : 'no' },
        ...(contact.email !== undefined ? [{ label: 'Email', value: contact.email }] : []),
        ...(contact.phone !== undefined ? [{ label: 'Phone', value: contact.phone }] : []),
      ],
      card: changes(null, customer.balances),
      wallet: null,
    });
    this.host.say('success', `customer ${customer.name} registered with card ${maskCard(customer.card)}`);
    await this.print(registrationSlip(customer, this.host.receiptContext(), new Date().toISOString()), 'registration');
  }

  private async sell(cmd: Extract<EconomyCommand, { type: 'sellTokens' }>): Promise<void> {
    this.host.needOnline(OFFLINE_ONLINE_ONLY);
    const customer = this.needCustomer('selling tokens');
    needUnits(cmd.units, 'sell');
    const ack = await this.host.sendKeyed<TokenSaleAck>('tokens:sell', { card: customer.card, token: cmd.token, units: cmd.units, payment: cmd.payment });
    await this.host.setCustomer(ack.customer);
    const money = (m: number) => this.money(m, ack.currency);
    const p = ack.payment;
    const paid = p.method === 'cash' ? `cash ${money(p.tenderedMinor)}, change ${money(p.changeMinor)}` : p.method === 'card' ? `card, approval ref ${p.approvalRef}` : `online (${p.provider})`;
    this.show({
      kind: 'tokens-sold',
      title: 'Tokens sold',
      customer: shownCustomer(ack.customer),
      details: [
        { label: 'Tokens', value: formatUnits(ack.units, ack.token) },
        { label: 'Price', value: money(ack.priceMinor) },
        { label: 'Paid by', value: paid },
        ...(p.method === 'cash' ? [{ label: 'Change', value: money(p.changeMinor) }] : []),
      ],
      card: changes(customer.balances, ack.customer.balances),
      wallet: null,
    });
    this.host.say('success', `sold ${formatUnits(ack.units, ack.token)} for ${money(ack.priceMinor)}; ${paid}`);
    // Cash for tokens goes into the drawer like the cash of a sale.
    if (p.method === 'cash') await this.host.openDrawer();
    await this.print(tokenSaleReceipt(ack, this.host.receiptContext()), 'token sale');
  }

  private async quoteExchange(cmd: Extract<EconomyCommand, { type: 'exchangeQuote' }>): Promise<void> {
    this.host.needOnline(cmd.source === 'wallet' ? OFFLINE_WALLET : OFFLINE_ONLINE_ONLY);
    const customer = this.needCustomer('an exchange');
    needUnits(cmd.units, 'exchange');
    this.quote = null;
    const view = await this.walletCall(() =>
      this.host.link.request<ExchangeView>('exchange:quote', { card: customer.card, from: { token: cmd.fromToken, units: cmd.units, source: cmd.source }, to: cmd.toToken }),
    );
    this.quote = { shown: this.shownQuote(view), card: customer.card };
    const q = view.quote;
    this.host.say('info', `${formatUnits(q.from.units, q.from.token)} buy ${formatUnits(q.to.units, q.to.token)} after a service charge of ${this.money(q.serviceChargeMinor, q.currency)}: confirm to exchange`);
  }

  private shownQuote(view: ExchangeView): QuoteShown {
    const q = view.quote;
    const money = (m: number) => this.money(m, q.currency);
    return {
      fromToken: q.from.token,
      units: q.from.units,
      source: view.source,
      toToken: q.to.token,
      unitsOut: q.to.units,
      given: `${formatUnits(q.from.units, q.from.token)} (${money(q.grossMinor)})${view.source === 'wallet' ? ' from the wallet' : ''}`,
      charge: `${money(q.serviceChargeMinor)} (${formatBps(q.serviceBps)})`,
      receives: `${formatUnits(q.to.units, q.to.token)} (${money(q.valueOutMinor)})`,
      remainder: money(q.remainderMinor),
      offline: view.offline,
    };
  }

  private async confirmExchange(pin: string | undefined): Promise<void> {
    const quoted = this.quote;
    if (quoted === null) fail('POS_ERR_COMMAND', 'there is no exchange quote to confirm: quote it first');
    this.host.needOnline(quoted.shown.source === 'wallet' ? OFFLINE_WALLET : OFFLINE_ONLINE_ONLY);
    const customer = this.needCustomer('an exchange');
    if (customer.card !== quoted.card) fail('POS_ERR_COMMAND', 'the quote was made for another customer: quote it again');
    const s = quoted.shown;
    const walletBefore = this.lastWallet;
    let ack: ExchangeAck;
    try {
      ack = await this.walletCall(() =>
        this.host.sendKeyed<ExchangeAck>(
          'exchange:commit',
          { card: customer.card, from: { token: s.fromToken, units: s.units, source: s.source }, to: s.toToken, expectUnits: s.unitsOut },
          s.source === 'wallet' && pin !== undefined ? { walletPin: pin } : {},
        ),
      );
    } catch (err) {
      if (err instanceof RemoteError && err.wire.code === 'VND_ERR_EXCHANGE_QUOTE_CHANGED') {
        // The rate or the charge changed: the cashier sees the new quote and confirms again.
        await this.quoteExchange({ type: 'exchangeQuote', fromToken: s.fromToken, units: s.units, source: s.source, toToken: s.toToken });
        fail('VND_ERR_EXCHANGE_QUOTE_CHANGED', `the exchange rate or service charge changed since the quote: the new quote is shown (${this.quote?.shown.receives ?? '-'}); confirm again; nothing was exchanged`);
      }
      throw err;
    }
    this.quote = null;
    await this.host.setCustomer(ack.customer);
    if (ack.wallet !== null) this.lastWallet = ack.wallet;
    const q = ack.quote;
    const money = (m: number) => this.money(m, q.currency);
    const shown = this.shownQuote(ack);
    this.show({
      kind: 'exchanged',
      title: 'Tokens exchanged',
      customer: shownCustomer(ack.customer),
      details: [
        { label: 'Given', value: shown.given },
        { label: 'Service charge', value: money(q.serviceChargeMinor) },
        { label: 'Received', value: shown.receives },
        { label: 'Remainder', value: shown.remainder },
      ],
      card: changes(customer.balances, ack.customer.balances),
      wallet: ack.wallet === null ? null : changes(walletBefore?.card === ack.wallet.card ? walletBefore.balances : null, ack.wallet.balances),
    });
    this.host.say('success', `exchanged ${formatUnits(q.from.units, q.from.token)} for ${formatUnits(q.to.units, q.to.token)}; service charge ${money(q.serviceChargeMinor)}, remainder ${money(q.remainderMinor)}`);
    await this.print(exchangeReceipt(ack, this.host.receiptContext()), 'exchange');
  }

  private async walletBalance(): Promise<void> {
    this.host.needOnline(OFFLINE_WALLET);
    const customer = this.needCustomer('the wallet balance');
    const wallet = await this.walletCall(() => this.host.link.request<WalletView>('wallet:balance', { card: customer.card }));
    this.lastWallet = wallet;
    this.show({
      kind: 'wallet',
      title: 'Mall wallet',
      customer: shownCustomer(customer),
      details: [{ label: 'As of', value: wallet.asOf.slice(0, 16).replace('T', ' ') }],
      card: changes(customer.balances, customer.balances),
      wallet: changes(wallet.balances, wallet.balances),
    });
    const held = wallet.balances.filter((b) => b.units !== 0);
    this.host.say('info', `mall wallet: ${held.length === 0 ? 'empty' : held.map((b) => formatUnits(b.units, b.token)).join(', ')}`);
  }

  private async walletMove(cmd: Extract<EconomyCommand, { type: 'walletMove' }>): Promise<void> {
    this.host.needOnline(OFFLINE_WALLET);
    const customer = this.needCustomer('a wallet move');
    needUnits(cmd.units, 'move');
    const walletBefore = this.lastWallet?.card === customer.card ? this.lastWallet : null;
    const ack = await this.walletCall(() =>
      this.host.sendKeyed<WalletMoveAck>('wallet:move', { card: customer.card, direction: cmd.direction, token: cmd.token, units: cmd.units }, movePins(cmd)),
    );
    await this.host.setCustomer(ack.customer);
    this.lastWallet = ack.wallet;
    const toWallet = ack.direction === 'to-wallet';
    this.show({
      kind: 'wallet-moved',
      title: toWallet ? 'Moved to the mall wallet' : 'Moved from the mall wallet',
      customer: shownCustomer(ack.customer),
      details: [{ label: toWallet ? 'Card to wallet' : 'Wallet to card', value: formatUnits(ack.units, ack.token) }],
      card: changes(customer.balances, ack.customer.balances),
      wallet: changes(walletBefore?.balances ?? null, ack.wallet.balances),
    });
    this.host.say('success', `moved ${formatUnits(ack.units, ack.token)} ${toWallet ? 'to' : 'from'} the mall wallet`);
    await this.print(walletMoveReceipt(ack, this.host.receiptContext()), 'wallet move');
  }

  private async customerData(raw: string): Promise<void> {
    this.host.needOnline(OFFLINE_CUSTOMER_DATA);
    const card = parseCardNumber(raw.trim());
    const data = await this.host.sendKeyed<CustomerDataView>('customer:data-request', { card });
    const money = (m: number) => this.money(m, data.summary.currency);
    const contact = [data.contact.email, data.contact.phone].filter((x): x is string => x !== undefined && x !== '');
    this.show({
      kind: 'customer-data',
      title: 'Customer of another store',
      customer: shownCustomer(data),
      details: [
        { label: 'Home store', value: data.home.name },
        { label: 'Contact', value: contact.length === 0 ? 'none given' : contact.join(', ') },
        { label: 'Purchases there', value: `${data.summary.sales} for ${money(data.summary.spentMinor)}` },
        { label: 'First and last', value: `${data.summary.firstAt?.slice(0, 10) ?? '-'} to ${data.summary.lastAt?.slice(0, 10) ?? '-'}` },
        { label: 'Toll charged to this store', value: money(data.tollMinor) },
      ],
      card: null,
      wallet: null,
    });
    this.host.say('success', `customer data from ${data.home.name}: toll ${money(data.tollMinor)} charged to this store`);
  }
}

import {
  formatMinor,
  formatUnits,
  maskCard,
  type CustomerView,
  type ExchangeAck,
  type FlattenedJws,
  type TokenBalance,
  type TokenSaleAck,
  type WalletMoveAck,
  type WalletView,
} from '../core/index.ts';
import type { MallLotReceipt } from '../core/auctions.ts';
import { receiptLimits, type Receipt, type ReceiptSection } from '../hardware/printer/index.ts';

/**
 * The slips of tokens that travel between stores: a token sale, an exchange, a move to or
 * from the mall wallet, and the card slip of a new customer. Like every receipt, each
 * amount becomes text here through the one money formatter; the printer only lays it out.
 */
export interface EconomyReceiptContext {
  store: { name: string; address: string[] };
  terminalName: string;
  cashierName: string;
  tokenNames: Record<string, string>;
}

type Row = ReceiptSection['rows'][number];

/** "2%", "2.5%", "0.25%" from basis points, in integer arithmetic like every amount. */
export function formatBps(bps: number): string {
  const whole = Math.floor(bps / 100);
  const part = bps % 100;
  return part === 0 ? `${whole}%` : `${whole}.${String(part).padStart(2, '0').replace(/0$/, '')}%`;
}

/** Text from the store or the customer cut to what one receipt field holds. */
function fit(text: string, max: number = receiptLimits.textCharsMax): string {
  return Array.from(text).slice(0, max).join('');
}

function tokenLabel(ctx: EconomyReceiptContext, token: string): string {
  return fit(`${ctx.tokenNames[token] ?? token}s`);
}

/** Balances one per row, as many as a receipt holds. */
function balanceRows(ctx: EconomyReceiptContext, balances: TokenBalance[]): Row[] {
  return balances.slice(0, receiptLimits.balancesMax).map((b) => ({ label: tokenLabel(ctx, b.token), amount: formatUnits(b.units, b.token) }));
}

function walletSection(ctx: EconomyReceiptContext, wallet: WalletView | null): ReceiptSection[] {
  if (wallet === null) return [];
  const rows = wallet.balances.filter((b) => b.units !== 0);
  return [{ title: 'Mall wallet after', rows: rows.length === 0 ? [{ label: 'Empty', amount: '0' }] : balanceRows(ctx, rows).slice(0, receiptLimits.sectionRowsMax) }];
}

function customerLine(c: Pick<CustomerView, 'name' | 'card'>): string {
  // The card number is a bearer credential: the slip shows only its last digits.
  return fit(`Customer: ${c.name} (${maskCard(c.card)})`);
}

function base(ctx: EconomyReceiptContext, r: Pick<Receipt, 'saleId' | 'at' | 'kind' | 'idLabel'> & Partial<Receipt>): Receipt {
  return {
    store: ctx.store,
    terminal: ctx.terminalName,
    cashier: ctx.cashierName,
    lines: [],
    tenders: [],
    balances: [],
    ...r,
  };
}

/** Tokens bought at the till: what, at what price, how paid (change or approval ref), the balances after. */
export function tokenSaleReceipt(ack: TokenSaleAck, ctx: EconomyReceiptContext): Receipt {
  const money = (m: number) => formatMinor(m, ack.currency);
  // The price is face value x units, so the unit price is exact; printed per unit only when it is.
  const unit = ack.units > 0 && ack.priceMinor % ack.units === 0 ? money(ack.priceMinor / ack.units) : money(ack.priceMinor);
  const p = ack.payment;
  const footer = [customerLine(ack.customer)];
  if (p.method === 'card') footer.push(fit(`Card approval ref ${p.approvalRef}`));
  if (p.method === 'online') footer.push(fit(`Paid online: ${p.provider} ${p.paymentId}`));
  footer.push('Tokens are valued at their face value');
  return base(ctx, {
    saleId: String(ack.seq),
    idLabel: 'Token sale',
    at: ack.at,
    kind: 'sale',
    title: 'TOKENS BOUGHT',
    lines: [{ name: `${ctx.tokenNames[ack.token] ?? ack.token} (${ack.token})`, qty: ack.units, price: unit, total: money(ack.priceMinor) }],
    tenders: [{ label: p.method === 'cash' ? 'Cash' : p.method === 'card' ? 'Card' : 'Online', amount: money(ack.priceMinor) }],
    ...(p.method === 'cash' ? { cash: { due: money(ack.priceMinor), tendered: money(p.tenderedMinor), change: money(p.changeMinor) } } : {}),
    balances: balanceRows(ctx, ack.customer.balances),
    footer,
  });
}

/** An exchange: tokens given, the service charge, tokens received, the remainder, balances after. */
export function exchangeReceipt(ack: ExchangeAck, ctx: EconomyReceiptContext): Receipt {
  const q = ack.quote;
  const money = (m: number) => formatMinor(m, q.currency);
  const footer = [customerLine(ack.customer)];
  if (q.remainderMinor > 0) footer.push(fit(`The remainder of ${money(q.remainderMinor)} buys no whole token`));
  if (ack.offline) footer.push('Made while the mall was unreachable');
  return base(ctx, {
    saleId: ack.exchangeId,
    idLabel: 'Exchange',
    at: ack.at,
    kind: 'report',
    title: 'TOKEN EXCHANGE',
    sections: [
      {
        title: 'Exchange',
        rows: [
          { label: `Given${ack.source === 'wallet' ? ' (wallet)' : ''}`, amount: formatUnits(q.from.units, q.from.token) },
          { label: 'Value given', amount: money(q.grossMinor) },
          { label: `Service charge (${formatBps(q.serviceBps)})`, amount: money(q.serviceChargeMinor) },
          { label: 'Received', amount: formatUnits(q.to.units, q.to.token) },
          { label: 'Value received', amount: money(q.valueOutMinor) },
          { label: 'Remainder', amount: money(q.remainderMinor) },
        ],
      },
      ...walletSection(ctx, ack.wallet),
    ],
    balances: balanceRows(ctx, ack.customer.balances),
    footer,
  });
}

/** Tokens moved between the customer's card at this store and their mall wallet. */
export function walletMoveReceipt(ack: WalletMoveAck, ctx: EconomyReceiptContext): Receipt {
  const toWallet = ack.direction === 'to-wallet';
  return base(ctx, {
    saleId: ack.moveId,
    idLabel: 'Wallet move',
    at: ack.at,
    kind: 'report',
    title: toWallet ? 'MOVED TO THE MALL WALLET' : 'MOVED FROM THE MALL WALLET',
    sections: [
      { title: 'Moved', rows: [{ label: toWallet ? 'Card to wallet' : 'Wallet to card', amount: formatUnits(ack.units, ack.token) }] },
      ...walletSection(ctx, ack.wallet),
    ],
    balances: balanceRows(ctx, ack.customer.balances),
    footer: [customerLine(ack.customer)],
  });
}

/**
 * The slip of a new customer: their card number as a CODE128 barcode (the format the
 * scanner reads as a customer card), so the slip itself works as the card until a
 * printed card replaces it.
 */
export function registrationSlip(customer: CustomerView, ctx: EconomyReceiptContext, at: string): Receipt {
  return base(ctx, {
    saleId: maskCard(customer.card),
    idLabel: 'Card',
    at,
    kind: 'report',
    title: 'WELCOME: YOUR CUSTOMER CARD',
    sections: [
      {
        title: 'Customer',
        rows: [{ label: 'Shares data with stores', amount: customer.consent === true ? 'yes' : 'no' }],
      },
    ],
    footer: [fit(`Welcome, ${customer.name}`), 'Show this barcode to pay with tokens', 'Keep it safe: it works like cash'],
    barcode: customer.card,
  });
}

/**
 * The receipt of a mall lot won through this store, printed at the till whose bid won:
 * what was won, the mall tokens taken from the winner's mall wallet, and in the QR code
 * the mall's signature over the sale (a compact JWS anyone can check with the mall's
 * public key).
 */
export function mallLotReceipt(r: MallLotReceipt, jws: FlattenedJws | null, ctx: EconomyReceiptContext): Receipt {
  const qr = jws === null ? null : `${jws.protected}.${jws.payload}.${jws.signature}`;
  return base(ctx, {
    saleId: r.saleId,
    idLabel: 'Mall sale',
    at: r.closedAt,
    kind: 'report',
    title: 'WON AT THE MALL AUCTION',
    sections: [{ title: fit(r.title), rows: [{ label: 'From the mall wallet', amount: formatUnits(r.units, r.token) }] }],
    footer: [fit(`Card ${maskCard(r.card)}`), fit(`Mall lot ${r.lotId}, sold by the mall`)],
    ...(qr === null || qr.length > receiptLimits.qrCharsMax ? {} : { qr }),
  });
}

import { fail } from './errors.ts';
import { checkAmount, mul, mulDivRound, sub, sum } from './money.ts';
import { checkSpendable, lookupTokenType, mayBuy, type TokenType } from './token-types.ts';

/**
 * A product of the store's catalog. Prices are listed in units of each token type the
 * store takes for it (claim 30) and in fiat minor units for cash.
 */
export interface Product {
  gtin: string;
  name: string;
  priceMinor: number;
  tokenPrices: Record<string, number>;
  /** The product's category, for loyalty rules by category (absent: none). */
  category?: string;
}

export interface PricedLine {
  lineNo: number;
  gtin: string;
  name: string;
  qty: number;
  unitPriceMinor: number;
  totalMinor: number;
  unitTokenPrices: Record<string, number>;
}

/** A tender of tokens: `units` exactly, or when omitted as many as the customer holds, up to what the cart can take. */
export interface TokenTender {
  token: string;
  units?: number | undefined;
  /** Where the tokens come from: the card here (the default) or the mall wallet, authorised by the mall before the sale. */
  source?: 'card' | 'wallet' | undefined;
}

/** Which tokens pay which line, and the fiat value they cover. */
export interface Allocation {
  lineNo: number;
  token: string;
  units: number;
  coversMinor: number;
}

export interface PricedCart {
  currency: string;
  lines: PricedLine[];
  totalMinor: number;
  /** What the whole cart costs in a token type, where every line is priced in it. */
  totalsByToken: Record<string, number>;
  allocations: Allocation[];
  debits: Record<string, number>;
  cashDueMinor: number;
}

export interface PricingInput {
  vendorId: string;
  currency: string;
  now: Date;
  lines: { product: Product; qty: number }[];
  tokenTypes: ReadonlyMap<string, TokenType>;
  tenders: TokenTender[];
  /** The customer's balances by token type; required when tenders are given. */
  balances: Readonly<Record<string, number>> | null;
}

export const CART_LINES_MAX = 200;
export const LINE_QTY_MAX = 9_999;

/**
 * Prices a cart on the server from the catalog alone and allocates token tenders to
 * lines. The rules:
 *  - tenders are taken in the order given, lines in cart order;
 *  - a line is paid by at most one token type; the part of a line its tokens do not
 *    cover is paid in cash;
 *  - a token type pays only for lines priced in it, where it is accepted, not expired,
 *    and (manufacturer tokens) only for its listed products;
 *  - a tender without a count takes what the customer holds, up to what the lines it may
 *    pay can take; with none held it is refused with the shortfall;
 *  - part of a line paid with k of its n token units covers round(total * k / n) minor
 *    units by the rounding rule in money.ts.
 */
export function priceCart(input: PricingInput): PricedCart {
  if (input.lines.length === 0) fail('CORE_ERR_EMPTY_CART');
  if (input.lines.length > CART_LINES_MAX) fail('CORE_ERR_VALIDATION', `a cart holds at most ${CART_LINES_MAX} lines`);

  // Plain loops rather than map/filter/every over closures: this runs on every sale.
  const lines: PricedLine[] = new Array<PricedLine>(input.lines.length);
  const lineTotals: number[] = new Array<number>(input.lines.length);
  for (let i = 0; i < input.lines.length; i++) {
    const { product, qty } = input.lines[i] as { product: Product; qty: number };
    checkAmount(qty, 'quantity');
    if (qty < 1 || qty > LINE_QTY_MAX) fail('CORE_ERR_VALIDATION', `quantity must be between 1 and ${LINE_QTY_MAX}`);
    const line: PricedLine = {
      lineNo: i + 1,
      gtin: product.gtin,
      name: product.name,
      qty,
      unitPriceMinor: product.priceMinor,
      totalMinor: mul(product.priceMinor, qty),
      unitTokenPrices: { ...product.tokenPrices },
    };
    lines[i] = line;
    lineTotals[i] = line.totalMinor;
  }
  const totalMinor = sum(lineTotals);

  // Keyed by token codes: null-prototype records, like every map keyed by outside data.
  const totalsByToken = Object.create(null) as Record<string, number>;
  const firstPrices = lines[0]?.unitTokenPrices ?? {};
  for (const token of Object.keys(firstPrices)) {
    let everyLine = true;
    for (const l of lines) if (l.unitTokenPrices[token] === undefined) everyLine = false;
    if (!everyLine) continue;
    const units: number[] = new Array<number>(lines.length);
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i] as PricedLine;
      units[i] = mul(l.unitTokenPrices[token] ?? 0, l.qty);
    }
    totalsByToken[token] = sum(units);
  }

  const allocations: Allocation[] = [];
  const debits = Object.create(null) as Record<string, number>;
  const paidLines = new Set<number>();
  const seen = new Set<string>();

  if (input.tenders.length > 0 && input.balances === null) fail('CORE_ERR_TENDER_WITHOUT_CUSTOMER');

  for (const tender of input.tenders) {
    if (seen.has(tender.token)) fail('CORE_ERR_VALIDATION', `${tender.token} is tendered twice`);
    seen.add(tender.token);
    const tt = lookupTokenType(input.tokenTypes, tender.token);
    checkSpendable(tt, input.vendorId, input.now);
    const balance = input.balances?.[tt.code] ?? 0;
    const requested = tender.units === undefined ? undefined : checkAmount(tender.units, `${tt.code} tokens`);

    // What the eligible unpaid lines could take of this token type.
    const eligible: PricedLine[] = [];
    const eligibleUnits: number[] = [];
    for (const l of lines) {
      const price = l.unitTokenPrices[tt.code];
      if (paidLines.has(l.lineNo) || price === undefined || !mayBuy(tt, l.gtin)) continue;
      eligible.push(l);
      eligibleUnits.push(mul(price, l.qty));
    }
    const capacity = sum(eligibleUnits);
    if (capacity === 0) {
      if (tt.kind === 'manufacturer') fail('CORE_ERR_PRODUCT_NOT_ELIGIBLE', `this ${tt.code} token only buys listed products`, { token: tt.code });
      fail('CORE_ERR_PRODUCT_NOT_ELIGIBLE', `no item left in this cart can be paid with ${tt.code} tokens`, { token: tt.code });
    }
    if (requested !== undefined && requested > capacity) {
      fail('CORE_ERR_TENDER_EXCESS', `${tt.code} tokens can pay at most ${capacity} here`, { token: tt.code, maxUnits: capacity });
    }
    // Without a count, the tender takes what the customer holds, up to what the cart can take.
    const wanted = requested ?? (balance > 0 ? Math.min(capacity, balance) : capacity);
    if (wanted > balance) {
      fail('CORE_ERR_INSUFFICIENT_TOKENS', `not enough ${tt.code} tokens: ${sub(wanted, balance)} short`, {
        token: tt.code,
        shortUnits: sub(wanted, balance),
      });
    }

    let remaining = wanted;
    for (let i = 0; i < eligible.length; i++) {
      if (remaining === 0) break;
      const line = eligible[i] as PricedLine;
      const lineUnits = eligibleUnits[i] as number;
      if (lineUnits === 0) continue;
      const units = Math.min(lineUnits, remaining);
      const coversMinor = units === lineUnits ? line.totalMinor : mulDivRound(line.totalMinor, units, lineUnits);
      allocations.push({ lineNo: line.lineNo, token: tt.code, units, coversMinor });
      paidLines.add(line.lineNo);
      remaining = sub(remaining, units);
    }
    if (wanted > 0) debits[tt.code] = wanted;
  }

  const covered = sum(allocations.map((a) => a.coversMinor));
  return {
    currency: input.currency,
    lines,
    totalMinor,
    totalsByToken,
    allocations,
    debits,
    cashDueMinor: sub(totalMinor, covered),
  };
}

/** Cash tendered against what is due; the change to hand back. */
export function settleCash(cashDueMinor: number, tenderedMinor: number, currencyText: (m: number) => string): { changeMinor: number } {
  checkAmount(tenderedMinor, 'cash tendered');
  if (tenderedMinor < cashDueMinor) {
    const short = sub(cashDueMinor, tenderedMinor);
    fail('CORE_ERR_CASH_SHORT', `not enough cash: ${currencyText(short)} more needed`, { shortMinor: short });
  }
  return { changeMinor: sub(tenderedMinor, cashDueMinor) };
}


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

/**
 * a + b for the non-negative totals of a cart, failing as `sum` does: the running totals
 * here are never negative, so one grows past the safe range exactly when the sum of all
 * its parts does.
 */
function addTotal(a: number, b: number): number {
  const r = a + b;
  return Number.isSafeInteger(r) && Number.isSafeInteger(a) && Number.isSafeInteger(b) ? r : sum([a, b]);
}
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

  // Plain loops rather than map/filter/every over closures, and no Set or Map: this runs
  // on every sale, and a cart holds a handful of lines and tenders.
  const n = input.lines.length;
  const lines: PricedLine[] = new Array<PricedLine>(n);
  let totalMinor = 0;
  for (let i = 0; i < n; i++) {
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
    totalMinor = addTotal(totalMinor, line.totalMinor);
  }

  // Keyed by token codes: null-prototype records, like every map keyed by outside data.
  const totalsByToken = Object.create(null) as Record<string, number>;
  const firstPrices = lines[0]?.unitTokenPrices ?? {};
  for (const token in firstPrices) {
    let everyLine = true;
    for (let i = 0; i < n && everyLine; i++) if ((lines[i] as PricedLine).unitTokenPrices[token] === undefined) everyLine = false;
    if (!everyLine) continue;
    let units = 0;
    for (let i = 0; i < n; i++) {
      const l = lines[i] as PricedLine;
      units = addTotal(units, mul(l.unitTokenPrices[token] ?? 0, l.qty));
    }
    totalsByToken[token] = units;
  }

  const allocations: Allocation[] = [];
  const debits = Object.create(null) as Record<string, number>;
  // Whether each line (by index) is paid by a tender already.
  const paidLines: boolean[] = new Array<boolean>(n).fill(false);
  let covered = 0;

  if (input.tenders.length > 0 && input.balances === null) fail('CORE_ERR_TENDER_WITHOUT_CUSTOMER');

  for (let t = 0; t < input.tenders.length; t++) {
    const tender = input.tenders[t] as TokenTender;
    for (let u = 0; u < t; u++) if ((input.tenders[u] as TokenTender).token === tender.token) fail('CORE_ERR_VALIDATION', `${tender.token} is tendered twice`);
    const tt = lookupTokenType(input.tokenTypes, tender.token);
    checkSpendable(tt, input.vendorId, input.now);
    const balance = input.balances?.[tt.code] ?? 0;
    const requested = tender.units === undefined ? undefined : checkAmount(tender.units, `${tt.code} tokens`);

    // What the eligible unpaid lines could take of this token type: a line's units, or -1
    // where this tender may not pay it.
    const lineUnits: number[] = new Array<number>(n);
    let capacity = 0;
    for (let i = 0; i < n; i++) {
      const l = lines[i] as PricedLine;
      const price = l.unitTokenPrices[tt.code];
      if (paidLines[i] === true || price === undefined || !mayBuy(tt, l.gtin)) {
        lineUnits[i] = -1;
        continue;
      }
      const units = mul(price, l.qty);
      lineUnits[i] = units;
      capacity = addTotal(capacity, units);
    }
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
    for (let i = 0; i < n; i++) {
      if (remaining === 0) break;
      const all = lineUnits[i] as number;
      if (all <= 0) continue;
      const line = lines[i] as PricedLine;
      const units = Math.min(all, remaining);
      const coversMinor = units === all ? line.totalMinor : mulDivRound(line.totalMinor, units, all);
      allocations.push({ lineNo: line.lineNo, token: tt.code, units, coversMinor });
      paidLines[i] = true;
      covered = addTotal(covered, coversMinor);
      remaining = sub(remaining, units);
    }
    if (wanted > 0) debits[tt.code] = wanted;
  }

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


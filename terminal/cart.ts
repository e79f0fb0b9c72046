import { fail, LINE_QTY_MAX, CART_LINES_MAX, type CustomerView, type ProductView } from '../core/index.ts';

/**
 * The cashier's cart: pure functions over plain data. The prices here are only for the
 * screen between two server pricings; the vendor server prices every commit itself.
 */
export interface CartLine {
  lineNo: number;
  code: string;
  gtin: string;
  name: string;
  qty: number;
  unitPriceMinor: number;
  tokenPrices: Record<string, number>;
}

export interface TenderChoice {
  token: string;
  /** Exactly this many units, or as many as the cart can take when left out (required from the wallet). */
  units?: number;
  /** 'wallet': paid from the customer's mall wallet, not their card at this store. */
  source?: 'wallet';
}

/**
 * A gift certificate or coupon paying part of the sale, as the screen shows it: its short
 * code and what remained when it was scanned. Its signed form (a bearer credential) stays
 * in the terminal (terminal/instruments.ts), never on the screen.
 */
export interface CartInstrument {
  code: string;
  kind: 'gift' | 'coupon';
  token: string;
  remainingUnits: number;
}

export interface Cart {
  lines: CartLine[];
  nextLineNo: number;
  customer: CustomerView | null;
  tenders: TenderChoice[];
  cashTenderedMinor: number;
  /** Gift certificates and coupons, in the order scanned: they pay before the card's tokens. */
  instruments: CartInstrument[];
}

/** A sale takes at most this many gift certificates and coupons (the store's INSTRUMENT_USES_MAX). */
export const CART_INSTRUMENTS_MAX = 8;

export function emptyCart(): Cart {
  return { lines: [], nextLineNo: 1, customer: null, tenders: [], cashTenderedMinor: 0, instruments: [] };
}

export function addInstrument(cart: Cart, instrument: CartInstrument): Cart {
  if (cart.instruments.some((i) => i.code === instrument.code)) return cart;
  if (cart.instruments.length >= CART_INSTRUMENTS_MAX) fail('CORE_ERR_VALIDATION', `a sale takes at most ${CART_INSTRUMENTS_MAX} gift certificates and coupons`);
  return { ...cart, instruments: [...cart.instruments, instrument] };
}

export function removeInstrument(cart: Cart, code: string): Cart {
  return { ...cart, instruments: cart.instruments.filter((i) => i.code !== code) };
}

/** A scanned product: a new line, or one more of the last line when it is the same product. */
export function addProduct(cart: Cart, product: ProductView, code: string): Cart {
  const last = cart.lines.at(-1);
  if (last !== undefined && last.gtin === product.gtin && last.qty < LINE_QTY_MAX) {
    return { ...cart, lines: cart.lines.map((l) => (l === last ? { ...l, qty: l.qty + 1 } : l)) };
  }
  if (cart.lines.length >= CART_LINES_MAX) fail('CORE_ERR_VALIDATION', `a cart holds at most ${CART_LINES_MAX} lines`);
  const line: CartLine = {
    lineNo: cart.nextLineNo,
    code,
    gtin: product.gtin,
    name: product.name,
    qty: 1,
    unitPriceMinor: product.priceMinor,
    tokenPrices: { ...product.tokenPrices },
  };
  return { ...cart, lines: [...cart.lines, line], nextLineNo: cart.nextLineNo + 1 };
}

export function setQty(cart: Cart, lineNo: number, qty: number): Cart {
  if (!Number.isSafeInteger(qty) || qty < 1 || qty > LINE_QTY_MAX) fail('CORE_ERR_VALIDATION', `quantity must be between 1 and ${LINE_QTY_MAX}`);
  if (!cart.lines.some((l) => l.lineNo === lineNo)) fail('POS_ERR_LINE_UNKNOWN');
  return { ...cart, lines: cart.lines.map((l) => (l.lineNo === lineNo ? { ...l, qty } : l)) };
}

export function voidLine(cart: Cart, lineNo: number): Cart {
  if (!cart.lines.some((l) => l.lineNo === lineNo)) fail('POS_ERR_LINE_UNKNOWN');
  return { ...cart, lines: cart.lines.filter((l) => l.lineNo !== lineNo) };
}

export function setCustomer(cart: Cart, customer: CustomerView | null): Cart {
  // Tenders belong to a customer's balances: a different customer starts over.
  const same = customer !== null && cart.customer?.id === customer.id;
  return { ...cart, customer, tenders: same ? cart.tenders : [] };
}

export function setTenders(cart: Cart, tenders: TenderChoice[]): Cart {
  if (tenders.length > 0 && cart.customer === null) fail('POS_ERR_NO_CUSTOMER', 'scan the customer card before paying with tokens');
  for (const t of tenders) {
    if (t.source === 'wallet' && (t.units === undefined || t.units < 1)) fail('CORE_ERR_AMOUNT', `say how many ${t.token} to take from the mall wallet`);
  }
  return {
    ...cart,
    tenders: tenders.map((t) => ({ token: t.token, ...(t.units === undefined ? {} : { units: t.units }), ...(t.source === 'wallet' ? { source: 'wallet' as const } : {}) })),
  };
}

export function setCash(cart: Cart, cashTenderedMinor: number): Cart {
  if (!Number.isSafeInteger(cashTenderedMinor) || cashTenderedMinor < 0) fail('CORE_ERR_AMOUNT', 'cash tendered must be a whole number of cents');
  return { ...cart, cashTenderedMinor };
}

/** The cart without its wallet tenders: the other tenders stay as they were. */
export function withoutWalletTenders(cart: Cart): Cart {
  return { ...cart, tenders: cart.tenders.filter((t) => t.source !== 'wallet') };
}

/** The request lines for the server: codes and quantities only, never prices. */
export function requestLines(cart: Cart): { code: string; qty: number }[] {
  return cart.lines.map((l) => ({ code: l.gtin, qty: l.qty }));
}

/** The cart's total at the prices last seen, for the screen only. */
export function localTotalMinor(cart: Cart): number {
  return cart.lines.reduce((sum, l) => sum + l.unitPriceMinor * l.qty, 0);
}

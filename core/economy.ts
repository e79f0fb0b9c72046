import { fail } from './errors.ts';
import { bpsOf, checkAmount, mul, sub } from './money.ts';
import type { TokenType } from './token-types.ts';

/**
 * Tokens that travel between stores (claims 30-42): exchange between issuers, the mall
 * wallet, loyalty earning and token sales. The rules both the store and the mall apply
 * live here, so the mall can recompute what a store did from the event alone.
 */

/**
 * A store's ledger account mirroring what moved between its customers and the mall
 * wallet: credited when a customer moves tokens into the wallet, debited when wallet
 * tokens are spent, exchanged or moved back to a card at this store. It may go negative
 * (the store took in more wallet tokens than it sent); the wallet balances themselves
 * are kept by the mall.
 */
export const WALLET_ACCOUNT = 'mall-wallet';

/** Where the tokens a customer gives up come from: their card at this store, or their mall wallet. */
export type TokenSource = 'card' | 'wallet';

/**
 * An exchange of `from` tokens for `to` tokens at the two face values, less the mall's
 * exchange service charge. The rounding rule, the one place it is decided:
 *   gross      = fromUnits x from.faceValueMinor
 *   charge     = bpsOf(gross, serviceBps)           (round half up, like every fee)
 *   toUnits    = floor((gross - charge) / to.faceValueMinor)
 *   valueOut   = toUnits x to.faceValueMinor        (what the issuer of `to` is compensated)
 *   remainder  = gross - charge - valueOut          (0 <= remainder < to.faceValueMinor)
 * The customer never receives more value than they gave up less the charge; the
 * remainder stays with the issuer of the surrendered tokens, whose liability for them
 * ends. The till shows it, and can propose fromUnits that leave none.
 */
export interface ExchangeQuote {
  from: { token: string; issuer: string; units: number; faceValueMinor: number };
  to: { token: string; issuer: string; units: number; faceValueMinor: number };
  currency: string;
  grossMinor: number;
  serviceBps: number;
  serviceChargeMinor: number;
  valueOutMinor: number;
  remainderMinor: number;
}

export function quoteExchange(from: TokenType, fromUnits: number, to: TokenType, serviceBps: number): ExchangeQuote {
  checkAmount(fromUnits, 'units to exchange');
  if (fromUnits === 0) fail('CORE_ERR_AMOUNT', 'exchange at least one token');
  if (!Number.isSafeInteger(serviceBps) || serviceBps < 0 || serviceBps > 10_000) fail('CORE_ERR_VALIDATION', 'the exchange service charge must be 0-10000 basis points');
  if (from.issuer === to.issuer) {
    fail('CORE_ERR_EXCHANGE_SAME_ISSUER', `${from.code} and ${to.code} are both issued by ${from.issuer}: there is nothing to exchange`, { from: from.code, to: to.code });
  }
  if (from.currency !== to.currency) {
    fail('CORE_ERR_EXCHANGE_CURRENCY', `${from.code} is valued in ${from.currency} and ${to.code} in ${to.currency}`, { from: from.code, to: to.code });
  }
  const grossMinor = mul(fromUnits, from.faceValueMinor);
  const serviceChargeMinor = bpsOf(grossMinor, serviceBps);
  const netMinor = sub(grossMinor, serviceChargeMinor);
  const toUnits = Math.floor(netMinor / to.faceValueMinor);
  if (toUnits < 1) {
    fail('CORE_ERR_EXCHANGE_TOO_SMALL', `${fromUnits} ${from.code} buy less than one ${to.code} after the service charge`, { from: from.code, to: to.code });
  }
  const valueOutMinor = mul(toUnits, to.faceValueMinor);
  return {
    from: { token: from.code, issuer: from.issuer, units: fromUnits, faceValueMinor: from.faceValueMinor },
    to: { token: to.code, issuer: to.issuer, units: toUnits, faceValueMinor: to.faceValueMinor },
    currency: from.currency,
    grossMinor,
    serviceBps,
    serviceChargeMinor,
    valueOutMinor,
    remainderMinor: sub(netMinor, valueOutMinor),
  };
}

/** Whether a quote is exactly what the rule gives for its inputs (the mall's check of a store's exchange). */
export function quoteMatches(quote: ExchangeQuote, from: TokenType, to: TokenType, serviceBps: number): boolean {
  let expected: ExchangeQuote;
  try {
    expected = quoteExchange(from, quote.from.units, to, serviceBps);
  } catch {
    return false;
  }
  return JSON.stringify(expected) === JSON.stringify(quote);
}

/**
 * A store's loyalty programme (claims 5, 19): tokens earned inside the sale's own event,
 * from the store's float, reversed with a refund.
 *  - per-amount: `units` for every whole `everyMinor` of the sale paid in cash;
 *  - per-product: `units` per item of the listed GTINs;
 *  - per-category: `units` per item of products in the category.
 * The sum is capped at `capPerSale`.
 */
export type LoyaltyRule =
  | { kind: 'per-amount'; everyMinor: number; units: number }
  | { kind: 'per-product'; gtins: string[]; units: number }
  | { kind: 'per-category'; category: string; units: number };

export interface LoyaltyProgram {
  /** The token type earned: one the store holds in its float (usually its own). */
  token: string;
  rules: LoyaltyRule[];
  capPerSale: number;
}

/** How a customer paid for tokens bought at the till or online (claims 31-33). */
export type TokenPayment =
  | { method: 'cash'; tenderedMinor: number; changeMinor: number }
  | { method: 'card'; approvalRef: string }
  | { method: 'online'; paymentId: string; provider: string };

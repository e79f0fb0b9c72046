import type { ErrorCode } from '../core/index.ts';

/**
 * The store server's answers that certainly mean "this sale was judged and refused;
 * nothing is committed under its key": the cart, tenders or instruments are wrong in a
 * way the cashier can fix. The server looks a key up before it judges the body, so one
 * of these also holds for a retry of a key it already knows.
 *
 * Everything else leaves the outcome unknown and keeps the pending sale: no answer, a
 * disconnect, an internal error (the sale may have been journalled before it failed),
 * a busy or stopping server, a refusal of the connection rather than of the sale
 * (revoked, paired again: see classifySaleRefusal), a key the server cannot place, and any code
 * this terminal does not know.
 */
const DEFINITE_SALE_REFUSALS: ReadonlySet<string> = new Set<ErrorCode>([
  'CORE_ERR_VALIDATION',
  'CORE_ERR_AMOUNT',
  'CORE_ERR_OVERFLOW',
  'CORE_ERR_CODE_MALFORMED',
  'CORE_ERR_CHECK_DIGIT',
  'CORE_ERR_CODE_UNKNOWN_KIND',
  'CORE_ERR_INSUFFICIENT_TOKENS',
  'CORE_ERR_TOKEN_UNKNOWN',
  'CORE_ERR_TOKEN_NOT_ACCEPTED',
  'CORE_ERR_TOKEN_EXPIRED',
  'CORE_ERR_PRODUCT_NOT_ELIGIBLE',
  'CORE_ERR_TENDER_EXCESS',
  'CORE_ERR_CASH_SHORT',
  'CORE_ERR_EMPTY_CART',
  'CORE_ERR_TENDER_WITHOUT_CUSTOMER',
  'VND_ERR_PRODUCT_UNKNOWN',
  'VND_ERR_CUSTOMER_UNKNOWN',
  'VND_ERR_PAYLOAD_TOO_LARGE',
  'VND_ERR_SNAPSHOT_STALE',
  // The server checks a customer PIN only for a key it does not know, so a lock answered
  // to a sale means nothing is committed under its key; retrying the PIN cannot help.
  'VND_ERR_CUSTOMER_LOCKED',
  'VND_ERR_TERMINAL_LOCKED',
  // Tokens from the mall wallet: the store asks the mall to hold them before it journals the
  // sale, so a wallet short of them means nothing is committed under the key.
  'MALL_ERR_WALLET_INSUFFICIENT',
  // A locked wallet, or one without a PIN, refuses every hold: typing a PIN cannot help.
  'MALL_ERR_WALLET_LOCKED',
  'MALL_ERR_WALLET_PIN_NOT_SET',
  // Gift certificates and coupons: checked, reserved at the mall or judged by the offline
  // policy before the sale is journalled, and a key the store knows is answered before any
  // of that; so each of these means nothing is committed under the key.
  'CORE_ERR_INSTRUMENT_MALFORMED',
  'CORE_ERR_INSTRUMENT_KEY_UNKNOWN',
  'CORE_ERR_INSTRUMENT_SIGNATURE',
  'CORE_ERR_INSTRUMENT_ISSUER',
  'CORE_ERR_INSTRUMENT_EXPIRED',
  'CORE_ERR_INSTRUMENT_OFFLINE_LIMIT',
  'VND_ERR_INSTRUMENT_DIRECTORY',
  'VND_ERR_INSTRUMENT_SPENT',
  'VND_ERR_INSTRUMENT_INSUFFICIENT',
  'MALL_ERR_INSTRUMENT_UNKNOWN',
  'MALL_ERR_INSTRUMENT_VOIDED',
  'MALL_ERR_INSTRUMENT_SPENT',
  'MALL_ERR_INSTRUMENT_INSUFFICIENT',
  'MALL_ERR_RESERVATION_SPENT',
]);

/**
 * Answers to a sale that the customer can mend by typing their PIN. The server asks
 * for a PIN only for a key it does not know, so nothing is committed under the key; the
 * terminal keeps the key and body anyway and sends the same sale again with the PIN.
 * A rate limit answered to a sale comes only from the customer-PIN check.
 */
const CUSTOMER_PIN_REFUSALS: ReadonlySet<string> = new Set<ErrorCode>(['VND_ERR_CUSTOMER_PIN_REQUIRED', 'VND_ERR_CUSTOMER_PIN', 'VND_ERR_RATE_LIMITED']);

/**
 * Answers to a sale with wallet tenders that the customer can mend by typing their wallet
 * PIN: the mall held nothing and the store journalled nothing under the key, which is sent
 * again with the PIN.
 */
const WALLET_PIN_REFUSALS: ReadonlySet<string> = new Set<ErrorCode>(['MALL_ERR_WALLET_PIN_REQUIRED', 'MALL_ERR_WALLET_PIN']);

/**
 * Refusals of the till rather than of the sale. They are checked before the key is
 * looked up, so an earlier send of the same key may have been committed: the key is kept
 * and sent again once the till is paired again.
 */
const PAIRING_REFUSALS: ReadonlySet<string> = new Set<ErrorCode>(['VND_ERR_TERMINAL_REVOKED', 'VND_ERR_CREDENTIAL_REPLACED', 'VND_ERR_UNAUTHENTICATED']);

/**
 * What the terminal does with a refused sale:
 * - `definite`: nothing is committed under its key; the key is dropped, the cart stays;
 * - `customer-pin`: the customer types their PIN and the same key and body are sent again;
 * - `wallet-pin`: the same for the customer's mall wallet PIN (wallet tenders);
 * - `cashier`: no cashier is signed in (the server answers a key it knows without one, so
 *   nothing is committed); after sign-in the cashier completes again with the same key;
 * - `pairing`: the till must be paired again; the key is kept, its outcome unknown;
 * - `wallet`: the store could not reach the mall to hold the wallet tokens (a 503, yet a
 *   judgement: the store answers a key it knows before it asks the mall, so nothing is
 *   committed under this one); the wallet tenders come off and the cart stays, to be
 *   completed another way under a new key;
 * - `unknown`: the outcome is unknown; the same key is sent again after a pause.
 */
export type SaleRefusalKind = 'definite' | 'customer-pin' | 'wallet-pin' | 'cashier' | 'pairing' | 'wallet' | 'unknown';

export function classifySaleRefusal(code: string): SaleRefusalKind {
  if (DEFINITE_SALE_REFUSALS.has(code)) return 'definite';
  if (CUSTOMER_PIN_REFUSALS.has(code)) return 'customer-pin';
  if (WALLET_PIN_REFUSALS.has(code)) return 'wallet-pin';
  if (code === 'VND_ERR_CASHIER_REQUIRED') return 'cashier';
  if (PAIRING_REFUSALS.has(code)) return 'pairing';
  if (code === 'VND_ERR_WALLET_OFFLINE') return 'wallet';
  return 'unknown';
}

/** Whether a sale refused with `code` is certainly not committed, so its key may be dropped. */
export function isDefiniteSaleRefusal(code: string): boolean {
  return DEFINITE_SALE_REFUSALS.has(code);
}

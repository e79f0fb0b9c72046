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
 * (not signed in, revoked, rate limited), a key the server cannot place, and any code
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
]);

/** Whether a sale refused with `code` is certainly not committed, so its key may be dropped. */
export function isDefiniteSaleRefusal(code: string): boolean {
  return DEFINITE_SALE_REFUSALS.has(code);
}

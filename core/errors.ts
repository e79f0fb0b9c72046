/**
 * The error catalogue. Each process owns one prefix (CORE_ERR_* for the shared domain,
 * VND_ERR_* for the vendor server); codes are stable and documented in docs/ERRORS.md.
 * The message here is the default plain sentence; a thrown error may carry a more
 * specific one ("not enough ACME tokens: 120 short").
 */
export interface ErrorSpec {
  readonly status: number;
  readonly message: string;
}

export const CORE_ERRORS = {
  CORE_ERR_VALIDATION: { status: 400, message: 'the request is not valid' },
  CORE_ERR_AMOUNT: { status: 400, message: 'an amount must be a whole number of units, not negative' },
  CORE_ERR_OVERFLOW: { status: 400, message: 'an amount is too large' },
  CORE_ERR_CODE_MALFORMED: { status: 400, message: 'this code cannot be read' },
  CORE_ERR_CHECK_DIGIT: { status: 400, message: 'this code has a wrong check digit: scan it again' },
  CORE_ERR_CODE_UNKNOWN_KIND: { status: 400, message: 'this code is neither a product, a customer card nor a receipt' },
  CORE_ERR_UNBALANCED: { status: 500, message: 'postings do not balance' },
  CORE_ERR_INSUFFICIENT_TOKENS: { status: 409, message: 'not enough tokens' },
  CORE_ERR_TOKEN_UNKNOWN: { status: 404, message: 'unknown token type' },
  CORE_ERR_TOKEN_NOT_ACCEPTED: { status: 409, message: 'this token type is not accepted here' },
  CORE_ERR_TOKEN_EXPIRED: { status: 409, message: 'these tokens have expired' },
  CORE_ERR_PRODUCT_NOT_ELIGIBLE: { status: 409, message: 'these tokens only buy listed products' },
  CORE_ERR_TENDER_EXCESS: { status: 409, message: 'more tokens offered than the cart can take' },
  CORE_ERR_CASH_SHORT: { status: 409, message: 'not enough cash tendered' },
  CORE_ERR_EMPTY_CART: { status: 400, message: 'the cart is empty' },
  CORE_ERR_TENDER_WITHOUT_CUSTOMER: { status: 409, message: 'scan the customer card before paying with tokens' },
  CORE_ERR_SALE_INCONSISTENT: { status: 500, message: 'the sale\'s lines, allocations, debits and postings do not agree' },
  CORE_ERR_EXCHANGE_SAME_ISSUER: { status: 409, message: 'both token types have the same issuer: there is nothing to exchange' },
  CORE_ERR_EXCHANGE_CURRENCY: { status: 409, message: 'the two token types are valued in different currencies' },
  CORE_ERR_EXCHANGE_TOO_SMALL: { status: 409, message: 'too few tokens to buy one token of the other type after the service charge' },
  // Bearer instruments (gift certificates and coupons): core/instruments.ts.
  CORE_ERR_INSTRUMENT_MALFORMED: { status: 400, message: 'this gift certificate or coupon cannot be read' },
  CORE_ERR_INSTRUMENT_KEY_UNKNOWN: { status: 409, message: 'this gift certificate or coupon is signed with a key the mall does not list' },
  CORE_ERR_INSTRUMENT_SIGNATURE: { status: 409, message: 'this gift certificate or coupon does not carry a valid signature: it was altered or forged' },
  CORE_ERR_INSTRUMENT_ISSUER: { status: 409, message: 'the key that signed this gift certificate or coupon may not issue it' },
  CORE_ERR_INSTRUMENT_EXPIRED: { status: 409, message: 'this gift certificate or coupon has expired' },
  CORE_ERR_INSTRUMENT_CODE: { status: 400, message: 'this is not a valid gift certificate or coupon code' },
  CORE_ERR_INSTRUMENT_OFFLINE_LIMIT: { status: 409, message: 'the mall is unreachable, and this is more than a store may take from gift certificates and coupons offline' },
} as const satisfies Record<string, ErrorSpec>;

export const VND_ERRORS = {
  VND_ERR_UNAUTHENTICATED: { status: 401, message: 'not signed in' },
  VND_ERR_FORBIDDEN: { status: 403, message: 'not allowed' },
  VND_ERR_TERMINAL_REVOKED: { status: 403, message: 'this terminal has been revoked' },
  VND_ERR_CREDENTIAL_EXPIRED: { status: 401, message: 'the terminal\'s access credential has expired' },
  VND_ERR_PAIRING_CODE: { status: 403, message: 'the pairing code is wrong, used or expired' },
  VND_ERR_PRODUCT_UNKNOWN: { status: 404, message: 'unknown product' },
  VND_ERR_CUSTOMER_UNKNOWN: { status: 404, message: 'unknown customer card' },
  VND_ERR_SALE_UNKNOWN: { status: 404, message: 'unknown sale' },
  VND_ERR_TERMINAL_UNKNOWN: { status: 404, message: 'unknown terminal' },
  VND_ERR_STAFF_UNKNOWN: { status: 404, message: 'unknown staff member' },
  VND_ERR_NOT_FOUND: { status: 404, message: 'not found' },
  VND_ERR_CARD_IN_USE: { status: 409, message: 'this card number belongs to another customer' },
  VND_ERR_ALREADY_REFUNDED: { status: 409, message: 'this sale was already refunded' },
  VND_ERR_IDEMPOTENCY_CONFLICT: { status: 409, message: 'this request key was already used for a different request' },
  VND_ERR_IDEMPOTENCY_KEY: { status: 400, message: 'a money-changing request needs an idempotency key' },
  VND_ERR_SUPERVISOR_REQUIRED: { status: 403, message: 'a supervisor must approve this' },
  VND_ERR_PIN: { status: 403, message: 'wrong staff id or PIN' },
  VND_ERR_PAYLOAD_TOO_LARGE: { status: 413, message: 'the request is too large' },
  VND_ERR_RATE_LIMITED: { status: 429, message: 'too many attempts: wait a moment' },
  VND_ERR_STAFF_LOCKED: { status: 423, message: 'this staff member is locked out after too many wrong PINs: the store operator must unlock them' },
  VND_ERR_TERMINAL_LOCKED: { status: 423, message: 'this till is locked for sign-ins after too many wrong PINs: the store operator must unlock it' },
  VND_ERR_CASHIER_REQUIRED: { status: 401, message: 'a cashier must sign in on this till first' },
  VND_ERR_NOT_OWN_TOKEN: { status: 403, message: 'the store can allot only its own tokens: other tokens come from the mall' },
  VND_ERR_CREDENTIAL_REPLACED: { status: 401, message: 'this terminal was paired again: this credential is no longer valid' },
  VND_ERR_UNKNOWN_EVENT: { status: 400, message: 'unknown event' },
  VND_ERR_CUSTOMER_PIN_REQUIRED: { status: 403, message: 'this purchase needs the customer\'s PIN' },
  VND_ERR_CUSTOMER_PIN: { status: 403, message: 'the customer PIN is wrong' },
  VND_ERR_CUSTOMER_LOCKED: { status: 423, message: 'this card is locked for token payments after too many wrong PINs: the store operator must unlock it' },
  VND_ERR_RECEIPT_FORBIDDEN: { status: 403, message: 'only recent receipts of this till can be shown: a supervisor must sign in for others' },
  VND_ERR_JOURNAL_CORRUPT: { status: 500, message: 'the journal is corrupt' },
  VND_ERR_JOURNAL_BACKLOG: { status: 503, message: 'the store server is waiting for its disk: try again in a moment' },
  VND_ERR_STATE_CORRUPT: { status: 500, message: 'the state file is corrupt' },
  VND_ERR_CONFIG: { status: 500, message: 'the vendor server is not set up' },
  VND_ERR_PORT_IN_USE: { status: 500, message: 'the port is already in use' },
  VND_ERR_DATA_DIR_IN_USE: { status: 500, message: 'another vendor server is using this data directory' },
  VND_ERR_MALL_SIGNATURE: { status: 502, message: 'a document from the mall does not carry a valid mall signature' },
  VND_ERR_MALL_UNREACHABLE: { status: 502, message: 'the mall is unreachable' },
  VND_ERR_MALL_IDENTITY: { status: 502, message: 'the mall does not present the key or certificate it was linked with' },
  VND_ERR_SNAPSHOT_STALE: { status: 409, message: 'the store has not heard from the mall for too long to take these tokens' },
  VND_ERR_SHUTTING_DOWN: { status: 503, message: 'the store server is shutting down' },
  VND_ERR_SHIFT_REQUIRED: { status: 409, message: 'open a shift on this till first: count the opening float' },
  VND_ERR_SHIFT_OPEN: { status: 409, message: 'a shift is already open: close it first' },
  VND_ERR_SHIFT_NOT_OPEN: { status: 409, message: 'there is no open shift on this till' },
  VND_ERR_SHIFT_OTHER_CASHIER: { status: 409, message: 'the open shift on this till belongs to another cashier: they close it, or a supervisor force-closes it' },
  VND_ERR_SHIFT_UNKNOWN: { status: 404, message: 'unknown shift' },
  VND_ERR_SHIFTS_STILL_OPEN: { status: 409, message: 'shifts are still open: close them (or force-close a shift left open) before the day is closed' },
  VND_ERR_PERIOD_CLOSED: { status: 409, message: 'this event would fall in a day already closed by a Z report: check the store server\'s clock' },
  VND_ERR_CLOSURE_MISMATCH: { status: 500, message: 'a Z report or period closure does not agree with the journal' },
  VND_ERR_OFFLINE_NOT_OWN: { status: 403, message: 'a till forwards only its own offline sales: the key and offline id must name this till' },
  VND_ERR_OFFLINE_INVALID: { status: 400, message: 'the offline sale does not add up: its lines, total, cash and change must agree' },
  VND_ERR_OFFLINE_ID_REUSED: { status: 409, message: 'this offline sale number was already used for another sale: a till never reuses a number' },
  VND_ERR_OFFLINE_GAP: { status: 409, message: 'offline sales are forwarded in order: an earlier one has not arrived yet' },
  VND_ERR_WEBHOOK_SIGNATURE: { status: 401, message: 'the payment notification is not signed with the shop\'s webhook secret, or is too old' },
  VND_ERR_PAYMENT_MISMATCH: { status: 409, message: 'the amount paid does not equal the tokens\' face value' },
  VND_ERR_PAYMENT_REUSED: { status: 409, message: 'this payment id was already credited with different details' },
  VND_ERR_EXCHANGE_QUOTE_CHANGED: { status: 409, message: 'the exchange rate or service charge changed since the quote: quote again' },
  VND_ERR_OFFLINE_LIMIT: { status: 409, message: 'the mall is unreachable and this exceeds what the store may do offline' },
  VND_ERR_LOYALTY_SPENT: { status: 409, message: 'the customer has already spent tokens this sale earned: a supervisor may refund it less their face value' },
  VND_ERR_WALLET_OFFLINE: { status: 503, message: 'the mall wallet cannot be reached now: take another tender' },
  // Auctions (core/auctions.ts, vendor-server/auctions).
  VND_ERR_LOT_UNKNOWN: { status: 404, message: 'there is no such lot in this store' },
  VND_ERR_LOT_CLOSED: { status: 409, message: 'this lot takes no bids: it has closed, was cancelled or has not opened yet' },
  VND_ERR_BID_TOO_LOW: { status: 409, message: 'the bid is below the least bid the lot takes (the high bid plus the increment)' },
  VND_ERR_LOT_HAS_BIDS: { status: 409, message: 'a lot can be cancelled only before its first bid' },
  VND_ERR_LOT_INVALID: { status: 400, message: 'the lot cannot be listed: check its token, times and prices' },
  VND_ERR_LOT_SALE_FINAL: { status: 409, message: 'a lot sold at auction is not refunded at the till' },
  // Bearer instruments at the store: vendor-server/instruments.
  VND_ERR_INSTRUMENT_DIRECTORY: { status: 409, message: 'the store has no key directory from the mall yet: gift certificates and coupons cannot be checked' },
  VND_ERR_INSTRUMENT_SPENT: { status: 409, message: 'this store has seen this coupon used, or nothing left on this gift certificate' },
  VND_ERR_INSTRUMENT_INSUFFICIENT: { status: 409, message: 'less remains on this gift certificate than asked' },
  VND_ERR_INSTRUMENT_NOT_FOR_SALE: { status: 409, message: 'this gift certificate cannot be sold here' },
  VND_ERR_INSTRUMENT_NOT_VOIDABLE: { status: 409, message: 'only a gift certificate this store sold, and nobody used, can be voided here' },
  VND_ERR_MALL_LOT_OFFLINE: { status: 503, message: 'mall lots are online only: the mall cannot be reached now, so this store cannot bid on them' },
  VND_ERR_INTERNAL: { status: 500, message: 'internal error' },
} as const satisfies Record<string, ErrorSpec>;

export const POS_ERRORS = {
  POS_ERR_NOT_PAIRED: { status: 401, message: 'this terminal is not paired with a store server' },
  POS_ERR_STORE_IDENTITY: { status: 502, message: 'the server could not prove it is the store that issued this pairing code' },
  POS_ERR_OFFLINE: { status: 503, message: 'the store server is unreachable: the cart is kept, nothing was charged' },
  POS_ERR_BUSY: { status: 409, message: 'a sale is being completed: wait for it to finish' },
  POS_ERR_CART_EMPTY: { status: 400, message: 'the cart is empty' },
  POS_ERR_NO_CUSTOMER: { status: 409, message: 'scan the customer card first' },
  POS_ERR_LINE_UNKNOWN: { status: 404, message: 'there is no such line in the cart' },
  POS_ERR_NO_SALE: { status: 409, message: 'no sale to show: scan a receipt first' },
  POS_ERR_NOTHING_TO_REPRINT: { status: 409, message: 'there is no receipt to reprint yet' },
  POS_ERR_CONFIG: { status: 500, message: 'the terminal is not set up' },
  POS_ERR_DATA_DIR_IN_USE: { status: 500, message: 'another terminal process is using this data directory' },
  POS_ERR_COMMAND: { status: 400, message: 'unknown command' },
  POS_ERR_SCREEN_FORBIDDEN: { status: 403, message: 'only the cashier screen this terminal served may use it' },
} as const satisfies Record<string, ErrorSpec>;

export const MALL_ERRORS = {
  MALL_ERR_UNAUTHENTICATED: { status: 401, message: 'send the mall admin credential' },
  MALL_ERR_MALFORMED: { status: 400, message: 'the batch is not a well-formed JWS with a valid payload' },
  MALL_ERR_TOO_LARGE: { status: 413, message: 'the batch is too large' },
  MALL_ERR_VENDOR_UNKNOWN: { status: 404, message: 'unknown vendor' },
  MALL_ERR_KEY_UNKNOWN: { status: 401, message: 'the batch is signed with a key the mall does not know for this vendor' },
  MALL_ERR_KEY_REVOKED: { status: 401, message: 'the batch is signed with a revoked key' },
  MALL_ERR_KEY_RETIRED: { status: 401, message: 'the batch is signed with a key retired before this batch' },
  MALL_ERR_SIGNATURE: { status: 401, message: 'the batch signature does not verify' },
  MALL_ERR_BATCH_GAP: { status: 409, message: 'a batch is missing before this one' },
  MALL_ERR_BATCH_FORK: { status: 409, message: 'a different batch with this seq was already ingested' },
  MALL_ERR_BATCH_CHAIN: { status: 409, message: 'the batch does not link to the previous batch' },
  MALL_ERR_EVENT_CHAIN: { status: 409, message: 'the events do not continue the vendor\'s journal chain' },
  MALL_ERR_TOTALS: { status: 409, message: 'the batch totals do not match its events' },
  MALL_ERR_EXISTS: { status: 409, message: 'already exists' },
  MALL_ERR_NOT_FOUND: { status: 404, message: 'not found' },
  MALL_ERR_VALIDATION: { status: 400, message: 'the request is not valid' },
  MALL_ERR_STORE: { status: 500, message: 'the mall store cannot be used' },
  MALL_ERR_UNAVAILABLE: { status: 503, message: 'the mall database cannot be reached: try again' },
  MALL_ERR_CONFIG: { status: 500, message: 'the mall is not set up' },
  MALL_ERR_PORT_IN_USE: { status: 500, message: 'the port is already in use' },
  MALL_ERR_CUSTOMER_UNKNOWN: { status: 404, message: 'no member store has registered this card' },
  MALL_ERR_NO_CONSENT: { status: 403, message: 'the customer has not agreed to share their data with other stores' },
  MALL_ERR_WALLET_INSUFFICIENT: { status: 409, message: 'not enough tokens in the mall wallet' },
  MALL_ERR_AUTHORISATION_UNKNOWN: { status: 404, message: 'no such wallet authorisation for this store' },
  MALL_ERR_AUTHORISATION_SPENT: { status: 409, message: 'the wallet authorisation was already captured or released' },
  MALL_ERR_WALLET_PIN_NOT_SET: { status: 409, message: 'this wallet has no PIN yet: the customer chooses one first' },
  MALL_ERR_WALLET_PIN_REQUIRED: { status: 403, message: 'the wallet PIN is needed' },
  MALL_ERR_WALLET_PIN: { status: 403, message: 'wrong wallet PIN' },
  MALL_ERR_WALLET_LOCKED: { status: 423, message: 'this wallet is locked after too many wrong PINs: the mall operator must unlock it' },
  // Bearer instruments at the mall: mall-sync/instruments*.ts.
  MALL_ERR_INSTRUMENT_UNKNOWN: { status: 404, message: 'the mall has no record of this gift certificate or coupon' },
  MALL_ERR_INSTRUMENT_VOIDED: { status: 409, message: 'this gift certificate was voided' },
  MALL_ERR_INSTRUMENT_SPENT: { status: 409, message: 'this coupon was already used, or nothing remains on this gift certificate' },
  MALL_ERR_INSTRUMENT_INSUFFICIENT: { status: 409, message: 'less remains on this gift certificate than asked' },
  MALL_ERR_INSTRUMENT_NOT_VOIDABLE: { status: 409, message: 'only an unsold certificate, or one this store sold and nobody redeemed, can be voided' },
  MALL_ERR_RESERVATION_UNKNOWN: { status: 404, message: 'no such reservation for this store' },
  MALL_ERR_RESERVATION_SPENT: { status: 409, message: 'the reservation was already captured, released or lapsed' },
  // Mall-wide lots (mall-sync/lots.ts).
  MALL_ERR_LOT_UNKNOWN: { status: 404, message: 'the mall has no such lot' },
  MALL_ERR_LOT_CLOSED: { status: 409, message: 'this mall lot takes no bids: it has closed, was cancelled or has not opened yet' },
  MALL_ERR_BID_TOO_LOW: { status: 409, message: 'the bid is below the least the mall lot takes now' },
  MALL_ERR_LOT_INVALID: { status: 400, message: 'the mall lot cannot be listed: check its token (a mall token), times and prices' },
  MALL_ERR_INTERNAL: { status: 500, message: 'internal error' },
} as const satisfies Record<string, ErrorSpec>;

export const ERRORS = { ...CORE_ERRORS, ...VND_ERRORS, ...POS_ERRORS, ...MALL_ERRORS } as const;

export type ErrorCode = keyof typeof ERRORS;

/** The shape of an error on the wire (socket acks and HTTP bodies). */
export interface WireError {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/** An expected failure with a stable code: handled where it means something, never a crash. */
export class MallposError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message?: string, details?: Record<string, unknown>) {
    super(message ?? ERRORS[code].message);
    this.name = 'MallposError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = details;
  }

  toWire(): WireError {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export function fail(code: ErrorCode, message?: string, details?: Record<string, unknown>): never {
  throw new MallposError(code, message, details);
}

export function isMallposError(err: unknown): err is MallposError {
  return err instanceof MallposError;
}

/** A broken invariant is a programmer error: crash rather than carry on with bad state. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) assertionFailed(message);
}

/**
 * The failure of an assertion whose message is made only when it fails: for checks every
 * event passes (`if (!ok) assertionFailed(...)`), where assert() would build its message,
 * numbers turned to text included, a million times in a replay.
 */
export function assertionFailed(message: string): never {
  throw new Error(`assertion failed: ${message}`);
}

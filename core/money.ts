import { fail } from './errors.ts';

/**
 * Amounts are integers: token amounts in whole units, fiat in minor units (cents),
 * rates in basis points. Every amount crossing a boundary is checked here.
 *
 * The rounding rule, used wherever a division happens (fees, the cash value of a part
 * token payment): round half up, i.e. to the nearest integer with exact halves going
 * away from zero. It is computed with BigInt so no intermediate product can lose
 * precision, and applied once, where the value is computed.
 */
export const AMOUNT_MAX = Number.MAX_SAFE_INTEGER;
export const BPS_ONE = 10_000;

/** A non-negative integer amount (units or minor units). */
export function checkAmount(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    fail('CORE_ERR_AMOUNT', `${field} must be a whole number`, { field, value: describe(value) });
  }
  if (value < 0) fail('CORE_ERR_AMOUNT', `${field} must not be negative`, { field, value });
  if (!Number.isSafeInteger(value)) fail('CORE_ERR_OVERFLOW', `${field} is too large`, { field });
  return value;
}

/** A signed integer amount (a posting). */
export function checkSignedAmount(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    fail('CORE_ERR_AMOUNT', `${field} must be a whole number`, { field, value: describe(value) });
  }
  if (!Number.isSafeInteger(value)) fail('CORE_ERR_OVERFLOW', `${field} is too large`, { field });
  return value;
}

function describe(value: unknown): string {
  return typeof value === 'string' ? `"${value.slice(0, 40)}"` : String(value);
}

function checkResult(result: bigint | number, what: string): number {
  const n = Number(result);
  if (!Number.isSafeInteger(n) || BigInt(n) !== BigInt(result)) fail('CORE_ERR_OVERFLOW', `${what} is too large`);
  return n;
}

// The fast paths below do float arithmetic on safe integers. Where the exact result is a
// safe integer it is representable, so the correctly rounded float operation returns it
// exactly; where it is not, the rounded result is not a safe integer either (rounding is
// monotonic and 2^53 is representable), so the check falls through to the BigInt path,
// which fails with the same error as always. `+ 0` turns a -0 (0 * -5) into the 0 the
// BigInt path returns. Non-integer inputs take the BigInt path unchanged.

export function add(a: number, b: number): number {
  if (Number.isSafeInteger(a) && Number.isSafeInteger(b)) {
    const r = a + b;
    if (Number.isSafeInteger(r)) return r + 0;
  }
  return checkResult(BigInt(a) + BigInt(b), 'the sum');
}

export function sub(a: number, b: number): number {
  if (Number.isSafeInteger(a) && Number.isSafeInteger(b)) {
    const r = a - b;
    if (Number.isSafeInteger(r)) return r + 0;
  }
  return checkResult(BigInt(a) - BigInt(b), 'the difference');
}

export function mul(a: number, b: number): number {
  if (Number.isSafeInteger(a) && Number.isSafeInteger(b)) {
    const r = a * b;
    if (Number.isSafeInteger(r)) return r + 0;
  }
  return checkResult(BigInt(a) * BigInt(b), 'the product');
}

export function sum(values: readonly number[]): number {
  // Every partial sum a safe integer means every addition was exact.
  let fast = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (!Number.isSafeInteger(v)) return sumExact(values);
    fast += v;
    if (!Number.isSafeInteger(fast)) return sumExact(values);
  }
  return fast + 0;
}

function sumExact(values: readonly number[]): number {
  let total = 0n;
  for (const v of values) total += BigInt(v);
  return checkResult(total, 'the total');
}

/** a * b / c rounded half up (away from zero on exact halves). c must be positive. */
export function mulDivRound(a: number, b: number, c: number): number {
  if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || !Number.isSafeInteger(c) || c <= 0) {
    throw new Error(`assertion failed: mulDivRound(${a}, ${b}, ${c}) needs integers and c > 0`);
  }
  const num = BigInt(a) * BigInt(b);
  const den = BigInt(c);
  const negative = num < 0n;
  const abs = negative ? -num : num;
  const q = (abs * 2n + den) / (den * 2n);
  return checkResult(negative ? -q : q, 'the result');
}

/** A fee of `bps` basis points on `amount`, by the rounding rule above. */
export function bpsOf(amount: number, bps: number): number {
  return mulDivRound(amount, bps, BPS_ONE);
}

const CURRENCY_SYMBOLS: Record<string, string> = { EUR: '€', USD: '$', GBP: '£', JPY: '¥', CHF: 'CHF ' };
// ISO 4217 currencies whose minor unit is the whole unit (no decimals): 350 JPY is "¥350".
const ZERO_DECIMAL_CURRENCIES = new Set(['JPY']);

/** Formats minor units for a person ("€3.50"); no floating point is involved. */
export function formatMinor(minor: number, currency: string): string {
  const negative = minor < 0;
  const abs = Math.abs(minor);
  const symbol = CURRENCY_SYMBOLS[currency] ?? `${currency} `;
  if (ZERO_DECIMAL_CURRENCIES.has(currency)) return `${negative ? '-' : ''}${symbol}${abs}`;
  const whole = Math.floor(abs / 100);
  const cents = String(abs % 100).padStart(2, '0');
  return `${negative ? '-' : ''}${symbol}${whole}.${cents}`;
}

/** Formats a token amount for a person ("120 ACME"). */
export function formatUnits(units: number, token: string): string {
  return `${units} ${token}`;
}

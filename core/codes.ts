import { fail } from './errors.ts';

/**
 * Codes a cashier scans. Products carry GTINs (EAN-13, EAN-8, UPC-A) with the GS1
 * mod-10 check digit; UPC-A is normalised to EAN-13 by a leading zero. Customer cards
 * are `C` + 9 digits + a Luhn check digit. Receipts carry a sale id (`S` + 10 digits)
 * so a sale can be refunded by scanning its receipt.
 */
export type ScanCode =
  | { kind: 'product'; gtin: string; format: 'EAN-13' | 'EAN-8' | 'UPC-A' }
  | { kind: 'customer'; card: string }
  | { kind: 'sale'; saleId: string };

export const CODE_LENGTH_MAX = 64;

/** The GS1 check digit for the digits that precede it. */
export function gs1CheckDigit(body: string): number {
  let total = 0;
  // Weights alternate 3, 1, ... starting from the digit next to the check digit.
  for (let i = body.length - 1, w = 3; i >= 0; i--, w = 4 - w) total += (body.charCodeAt(i) - 48) * w;
  return (10 - (total % 10)) % 10;
}

export function luhnCheckDigit(body: string): number {
  let total = 0;
  for (let i = body.length - 1, double = true; i >= 0; i--, double = !double) {
    let d = body.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    total += d;
  }
  return (10 - (total % 10)) % 10;
}

const DIGITS = /^[0-9]+$/;

/** Validates a product code and returns its normalised GTIN (EAN-13, or EAN-8 as is). */
export function parseProductCode(raw: string): { gtin: string; format: 'EAN-13' | 'EAN-8' | 'UPC-A' } {
  const code = raw.trim();
  if (!DIGITS.test(code)) fail('CORE_ERR_CODE_MALFORMED', `"${code.slice(0, 20)}" is not a product code`);
  const format = code.length === 13 ? 'EAN-13' : code.length === 12 ? 'UPC-A' : code.length === 8 ? 'EAN-8' : null;
  if (format === null) fail('CORE_ERR_CODE_MALFORMED', `a product code has 8, 12 or 13 digits, not ${code.length}`);
  const expected = gs1CheckDigit(code.slice(0, -1));
  if (expected !== code.charCodeAt(code.length - 1) - 48) {
    fail('CORE_ERR_CHECK_DIGIT', `${code} has a wrong check digit: scan it again`, { code });
  }
  return { gtin: format === 'UPC-A' ? `0${code}` : code, format };
}

/**
 * The GTIN of a product code as a till sends it (8, 12 or 13 digits, nothing around them,
 * a right check digit): what `parseScan` gives for it, without the objects and trimmed
 * copies made on the way. Null for anything else, which `parseScan` then reads or refuses
 * with its usual error.
 */
export function plainProductGtin(code: string): string | null {
  const n = code.length;
  if (n !== 13 && n !== 12 && n !== 8) return null;
  let total = 0;
  // Weights alternate 3, 1, ... from the digit next to the check digit, as in gs1CheckDigit.
  for (let i = n - 2, w = 3; i >= 0; i--, w = 4 - w) {
    const d = code.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return null;
    total += d * w;
  }
  const check = code.charCodeAt(n - 1) - 48;
  if (check !== (10 - (total % 10)) % 10) return null;
  return n === 12 ? `0${code}` : code;
}

/** Makes a GTIN from its body by appending the check digit (for seeding and tests). */
export function withGs1CheckDigit(body: string): string {
  return `${body}${gs1CheckDigit(body)}`;
}

export function makeCardNumber(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0 || n > 999_999_999) throw new Error(`assertion failed: card serial ${n}`);
  const body = String(n).padStart(9, '0');
  return `C${body}${luhnCheckDigit(body)}`;
}

export function parseCardNumber(raw: string): string {
  const code = raw.trim().toUpperCase();
  if (!/^C[0-9]{10}$/.test(code)) fail('CORE_ERR_CODE_MALFORMED', `"${code.slice(0, 20)}" is not a customer card`);
  if (luhnCheckDigit(code.slice(1, 10)) !== code.charCodeAt(10) - 48) {
    fail('CORE_ERR_CHECK_DIGIT', `card ${code} has a wrong check digit: scan it again`, { code });
  }
  return code;
}

export function makeSaleId(seq: number): string {
  if (!Number.isSafeInteger(seq) || seq <= 0 || seq > 9_999_999_999) throw new Error(`assertion failed: sale seq ${seq}`);
  return `S${String(seq).padStart(10, '0')}`;
}

export function parseSaleId(raw: string): { saleId: string; seq: number } {
  const code = raw.trim().toUpperCase();
  if (!/^S[0-9]{10}$/.test(code)) fail('CORE_ERR_CODE_MALFORMED', `"${code.slice(0, 20)}" is not a sale id`);
  const seq = Number(code.slice(1));
  if (seq <= 0) fail('CORE_ERR_CODE_MALFORMED', `"${code}" is not a sale id`);
  return { saleId: code, seq };
}

/** Classifies a scanned code: the first character decides its kind. */
export function parseScan(raw: string): ScanCode {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > CODE_LENGTH_MAX) {
    fail('CORE_ERR_CODE_MALFORMED', 'this code cannot be read');
  }
  const code = raw.trim();
  if (code.length === 0) fail('CORE_ERR_CODE_MALFORMED', 'this code cannot be read');
  const first = code.charAt(0).toUpperCase();
  if (first >= '0' && first <= '9') return { kind: 'product', ...parseProductCode(code) };
  if (first === 'C') return { kind: 'customer', card: parseCardNumber(code) };
  if (first === 'S') return { kind: 'sale', saleId: parseSaleId(code).saleId };
  return fail('CORE_ERR_CODE_UNKNOWN_KIND', `"${code.slice(0, 20)}" is neither a product, a customer card nor a receipt`);
}

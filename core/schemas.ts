import { hash as digest } from 'node:crypto';
import canonicalize from 'canonicalize';
import { z } from 'zod';
import { MallposError, type ErrorCode } from './errors.ts';
import { checkAmount } from './money.ts';
import { CART_LINES_MAX, LINE_QTY_MAX } from './pricing.ts';
import { TOKEN_KINDS } from './token-types.ts';

/**
 * zod schemas for every payload that crosses a boundary. Objects are strict: an unknown
 * field is an error rather than silently ignored. Amounts go through checkAmount so a
 * negative, fractional, huge or string amount gets CORE_ERR_AMOUNT / CORE_ERR_OVERFLOW.
 */
export const amount = (field: string) =>
  z.unknown().transform((v, ctx) => {
    try {
      return checkAmount(v, field);
    } catch (err) {
      const e = err as MallposError;
      ctx.addIssue({ code: 'custom', message: e.message, params: { errorCode: e.code } });
      return z.NEVER;
    }
  });

export const TENDERS_MAX = 8;

/**
 * Names that JavaScript objects answer to without holding them ("constructor",
 * "__proto__", "toString", ...). Maps keyed by outside data are Maps or null-prototype
 * objects, and on top of that no identifier may be one of these names, so a lookup can
 * never reach a built-in property whatever map it meets.
 */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([
  ...Object.getOwnPropertyNames(Object.prototype),
  ...Object.getOwnPropertyNames(Function.prototype),
  'prototype',
  '__proto__',
]);

/** A string whose UTF-16 is well formed: no lone surrogate, which no encoder can carry. */
export function isWellFormedText(s: string): boolean {
  return (s as string & { isWellFormed(): boolean }).isWellFormed();
}

// C0 and C1 control characters: a name, reason or code is one line of printable text.
const CONTROL_CHARS = /\p{Cc}/u;

/** One line of text: well-formed Unicode without control characters. */
export function text(min: number, max: number) {
  return z
    .string()
    .trim()
    .min(min)
    .max(max)
    .refine(isWellFormedText, 'the text holds a broken character (a lone surrogate)')
    .refine((s) => !CONTROL_CHARS.test(s), 'the text holds a control character');
}

/** An identifier matching `pattern` that is not a built-in property name. */
export function identifier(pattern: RegExp, message: string) {
  return z
    .string()
    .regex(pattern, message)
    .refine((s) => !RESERVED_NAMES.has(s), 'this is a reserved name, not an id');
}

/**
 * A record keyed by identifiers. zod's own record drops a `__proto__` key without a
 * word, so every key of the raw object is checked first; the result is a null-prototype
 * object.
 */
export function keyedRecord<K extends z.ZodType<string>, V extends z.ZodType>(key: K, value: V, max: number) {
  return z
    .unknown()
    .superRefine((raw, ctx) => {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return;
      const keys = Object.keys(raw);
      if (keys.length > max) ctx.addIssue({ code: 'custom', message: `at most ${max} entries` });
      for (const k of keys.slice(0, max + 1)) {
        const checked = key.safeParse(k);
        if (!checked.success) ctx.addIssue({ code: 'custom', path: [k.slice(0, 40)], message: checked.error.issues[0]?.message ?? 'not a valid key' });
      }
    })
    .pipe(z.record(key, value))
    .transform((r) => Object.assign(Object.create(null) as Record<z.output<K>, z.output<V>>, r));
}

export const ENTITY_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,39}$/;
export const TOKEN_CODE_PATTERN = /^[A-Z][A-Z0-9]{1,11}$/;
export const IDEMPOTENCY_KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$/;

export const SCAN_CODE_LENGTH_MAX = 64;
export const PIN_PATTERN = /^[0-9]{4,12}$/;

export const idempotencyKey = identifier(IDEMPOTENCY_KEY_PATTERN, 'an idempotency key is 8-128 letters, digits or . _ : -');
export const scanCode = z
  .string()
  .min(1)
  .max(SCAN_CODE_LENGTH_MAX)
  .refine(isWellFormedText, 'the code holds a broken character (a lone surrogate)')
  .refine((s) => !CONTROL_CHARS.test(s), 'the code holds a control character');
export const tokenCode = identifier(TOKEN_CODE_PATTERN, 'a token code is 2-12 capital letters or digits');
export const entityId = identifier(ENTITY_ID_PATTERN, 'an id is 1-40 lower-case letters, digits or -');
export const personName = text(1, 80);
/** A product category: a short lower-case word or phrase (catalog data and loyalty rules alike). */
export const productCategory = identifier(/^[a-z0-9][a-z0-9 _-]{0,39}$/, 'a category is 1-40 lower-case letters, digits, spaces, _ or -');
/** A staff PIN or a customer PIN: digits only, so it never needs escaping or normalising. */
export const pinCode = z.string().regex(PIN_PATTERN, 'a PIN is 4-12 digits');
/** A calendar day (UTC) that exists: 2026-02-30 and 2026-13-45 are refused. */
export const dayDate = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'a date is YYYY-MM-DD').refine((d) => {
  const t = Date.parse(`${d}T00:00:00Z`);
  return Number.isFinite(t) && new Date(t).toISOString().slice(0, 10) === d;
}, 'no such date');
export const isoDate = z.iso.datetime({ offset: true });

export const cartLine = z.strictObject({
  code: scanCode,
  qty: amount('quantity').refine((n) => n >= 1 && n <= LINE_QTY_MAX, `quantity must be between 1 and ${LINE_QTY_MAX}`),
});

export const tokenTender = z.strictObject({
  token: tokenCode,
  units: amount('token units').optional(),
  /** 'wallet' pays from the customer's mall wallet (sale:commit only, units required). */
  source: z.enum(['card', 'wallet']).optional(),
});

export const productLookupRequest = z.strictObject({ code: scanCode });
export const customerLookupRequest = z.strictObject({ card: scanCode });

/**
 * A gift certificate or coupon offered as a tender: its compact form as scanned (at most
 * 1024 characters, core/instruments.ts), and the units to take, or as many as the cart can.
 * A sale takes at most 8 (INSTRUMENT_USES_MAX).
 */
export const instrumentTender = z.strictObject({
  instrument: z.string().min(1).max(1024),
  units: amount('instrument units').optional(),
});
export const instrumentTenders = z.array(instrumentTender).max(8);

export const cartPriceRequest = z.strictObject({
  lines: z.array(cartLine).min(1).max(CART_LINES_MAX),
  card: scanCode.nullable().optional(),
  tenders: z.array(tokenTender).max(TENDERS_MAX).optional(),
  instruments: instrumentTenders.optional(),
});

export const saleCommitRequest = z.strictObject({
  key: idempotencyKey,
  lines: z.array(cartLine).min(1).max(CART_LINES_MAX),
  card: scanCode.nullable(),
  tenders: z.array(tokenTender).max(TENDERS_MAX),
  cashTenderedMinor: amount('cash tendered'),
  /** The customer's PIN, for token payments above the store's limit; not part of the request's hash. */
  customerPin: pinCode.optional(),
  /** The customer's wallet PIN, for wallet tenders (the mall checks it); not part of the request's hash. */
  walletPin: pinCode.optional(),
  /** Gift certificates and coupons paying part of the sale (vendor-server/instruments). */
  instruments: instrumentTenders.optional(),
});

/** The till's catalog copy: the whole catalog, whatever version the till holds. */
export const catalogGetRequest = z.strictObject({ sinceVersion: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable() });

/** Bounds the till's claims about its offline backlog (core/protocol.ts `offline:report`). */
export const OFFLINE_WAITING_MAX = 1_000_000;

export const offlineSaleLine = z.strictObject({
  code: scanCode,
  name: z.string().min(1).max(200),
  qty: amount('quantity').refine((n) => n >= 1 && n <= LINE_QTY_MAX, `quantity must be between 1 and ${LINE_QTY_MAX}`),
  unitPriceMinor: amount('unit price'),
  totalMinor: amount('line total'),
});

/**
 * One offline sale as the till forwards it (core/protocol.ts OfflineSaleRecord). Strict:
 * a field the type does not name (a card, a token tender) is refused, not ignored.
 */
export const offlineSaleForwardRequest = z.strictObject({
  key: idempotencyKey,
  offlineId: z.string().min(3).max(60),
  counter: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  at: isoDate,
  catalogVersion: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  cashier: entityId.nullable(),
  currency: z.string().regex(/^[A-Z]{3}$/, 'a currency is 3 capital letters'),
  lines: z.array(offlineSaleLine).min(1).max(CART_LINES_MAX),
  totalMinor: amount('total'),
  cashTenderedMinor: amount('cash tendered'),
  changeMinor: amount('change'),
});

export const offlineReportRequest = z.strictObject({
  waiting: z.number().int().min(0).max(OFFLINE_WAITING_MAX),
  oldestAt: isoDate.nullable(),
  lastForwardedAt: isoDate.nullable(),
});

export const staffCredential = z.strictObject({
  staffId: entityId,
  pin: pinCode,
});

export const saleRefundRequest = z.strictObject({
  key: idempotencyKey,
  saleId: scanCode,
  reason: text(1, 200),
  supervisor: staffCredential,
  /** The supervisor accepts refunding less the face value of loyalty tokens the customer already spent. */
  deductSpentLoyalty: z.boolean().optional(),
});

export const saleStatusRequest = z.strictObject({ key: idempotencyKey });
export const receiptRequest = z.strictObject({ saleId: scanCode });
export const cashierLoginRequest = staffCredential;
export const cashierLogoutRequest = z.strictObject({});

// Operator API payloads.
export const productUpsert = z.strictObject({
  code: scanCode,
  name: personName,
  priceMinor: amount('price'),
  tokenPrices: keyedRecord(tokenCode, amount('token price'), 16),
  category: productCategory.optional(),
});

export const customerRegister = z.strictObject({
  card: scanCode.optional(),
  name: personName,
});

export const allotmentRequest = z.strictObject({
  token: tokenCode,
  units: amount('units').refine((n) => n > 0, 'units must be at least 1'),
  reference: text(1, 80),
});

export const issuanceRequest = z.strictObject({
  customerId: entityId,
  token: tokenCode,
  units: amount('units').refine((n) => n > 0, 'units must be at least 1'),
  reason: z.enum(['purchase', 'reward']),
  cashMinor: amount('cash received').optional(),
});

export const tokenTypeSchema = z.strictObject({
  code: tokenCode,
  name: personName,
  kind: z.enum(TOKEN_KINDS),
  issuer: entityId,
  faceValueMinor: amount('face value').refine((n) => n > 0, 'face value must be at least 1'),
  currency: z.string().regex(/^[A-Z]{3}$/),
  acceptedBy: z.union([z.literal('*'), z.array(entityId).max(1000)]),
  products: z.array(z.string().regex(/^[0-9]{8,14}$/)).max(10_000).optional(),
  expiresAt: isoDate.optional(),
});

export const customerPinSet = z.strictObject({ pin: pinCode });
export const terminalCreate = z.strictObject({ name: personName });
export const pairRequest = z.strictObject({ code: z.string().regex(/^[A-Za-z0-9 -]{4,32}$/, 'a pairing code is 4-32 letters or digits') });
export const staffUpsert = z.strictObject({
  id: entityId,
  name: personName,
  role: z.enum(['cashier', 'supervisor']),
  pin: pinCode,
});

/**
 * The sale request, parsed as `saleCommitRequest` parses it. A request of the usual shape
 * is checked by the plain code below, with the same rules and the same result, since
 * every sale passes here; anything it does not accept whole goes through zod, which
 * accepts or refuses it with its usual error.
 */
export function parseSaleCommitRequest(input: unknown): SaleCommitRequest {
  return saleCommitFast(input) ?? parse(saleCommitRequest, input);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function isIdentifier(v: unknown, pattern: RegExp): v is string {
  return typeof v === 'string' && pattern.test(v) && !RESERVED_NAMES.has(v);
}

function isScanCode(v: unknown): v is string {
  return typeof v === 'string' && v.length >= 1 && v.length <= SCAN_CODE_LENGTH_MAX && isWellFormedText(v) && !CONTROL_CHARS.test(v);
}

/** What checkAmount accepts: a non-negative safe integer. */
function isAmount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * `saleCommitRequest`'s rules written out for a request every field of which is present
 * and valid: the parsed request (new objects, keys in the schema's order, as zod makes
 * them), or null for anything else, including what zod might accept (an optional field
 * given as undefined).
 */
export function saleCommitFast(v: unknown): SaleCommitRequest | null {
  if (!isPlainObject(v)) return null;
  let fields = 0;
  for (const k of Object.keys(v)) {
    if (k === 'key' || k === 'lines' || k === 'card' || k === 'tenders' || k === 'cashTenderedMinor' || k === 'customerPin') fields += 1;
    else return null;
  }
  const { key, lines, card, tenders, cashTenderedMinor, customerPin } = v;
  if (!isIdentifier(key, IDEMPOTENCY_KEY_PATTERN)) return null;
  if (!Array.isArray(lines) || lines.length < 1 || lines.length > CART_LINES_MAX) return null;
  const outLines: { code: string; qty: number }[] = new Array<{ code: string; qty: number }>(lines.length);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as unknown;
    if (!isPlainObject(line) || Object.keys(line).length !== 2) return null;
    const { code, qty } = line;
    if (!isScanCode(code) || !isAmount(qty) || qty < 1 || qty > LINE_QTY_MAX) return null;
    outLines[i] = { code, qty };
  }
  if (card !== null && !isScanCode(card)) return null;
  if (!Array.isArray(tenders) || tenders.length > TENDERS_MAX) return null;
  const outTenders: { token: string; units?: number }[] = new Array<{ token: string; units?: number }>(tenders.length);
  for (let i = 0; i < tenders.length; i++) {
    const tender = tenders[i] as unknown;
    if (!isPlainObject(tender)) return null;
    const n = Object.keys(tender).length;
    const { token, units } = tender;
    if (!isIdentifier(token, TOKEN_CODE_PATTERN)) return null;
    if (n === 1) outTenders[i] = { token };
    else if (n === 2 && isAmount(units)) outTenders[i] = { token, units };
    else return null;
  }
  if (!isAmount(cashTenderedMinor)) return null;
  const out: SaleCommitRequest = { key, lines: outLines, card, tenders: outTenders, cashTenderedMinor };
  if (fields === 6) {
    if (typeof customerPin !== 'string' || !PIN_PATTERN.test(customerPin)) return null;
    out.customerPin = customerPin;
  } else if (fields !== 5) {
    return null;
  }
  return out;
}

/** Parses untrusted input; any problem becomes one typed error naming the field. */
export function parse<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const params = (issue as { params?: { errorCode?: ErrorCode } } | undefined)?.params;
  const code: ErrorCode = params?.errorCode ?? 'CORE_ERR_VALIDATION';
  const path = issue?.path.join('.') ?? '';
  const message = issue === undefined ? 'the request is not valid' : path === '' ? issue.message : `${path}: ${issue.message}`;
  throw new MallposError(code, message, {
    issues: result.error.issues.slice(0, 5).map((i) => ({ path: i.path.join('.'), message: i.message })),
  });
}

/** The hash of a request body, independent of key order; secrets must be removed first. */
export function bodyHash(body: unknown): string {
  return digest('sha256', canonicalize(body) ?? 'null', 'hex');
}

export type SaleCommitRequest = z.output<typeof saleCommitRequest>;
export type OfflineSaleForwardRequest = z.output<typeof offlineSaleForwardRequest>;
export type OfflineReportRequest = z.output<typeof offlineReportRequest>;
export type SaleRefundRequest = z.output<typeof saleRefundRequest>;
export type CartPriceRequest = z.output<typeof cartPriceRequest>;

// Identifiers that cross the vendor <-> mall boundary, each with one strict pattern, so
// that no name from outside (`__proto__`, `constructor`, a path) is ever used as a key.
/** A key id: the RFC 7638 thumbprint of an Ed25519 JWK, 43 base64url characters. */
export const keyId = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'a key id is a 43-character JWK thumbprint');
/** A product's GTIN as the vendor records it: 8 to 14 digits. */
export const productGtin = z.string().regex(/^[0-9]{8,14}$/, 'a GTIN is 8-14 digits');
/** An account of a vendor's token ledger (core/ledger.ts). */
export const ledgerAccount = z.string().regex(/^(?:float|redeemed|instruments|customer:[a-z0-9][a-z0-9-]{0,39}|issuer:[a-z0-9][a-z0-9-]{0,39})$/, 'an account is float, redeemed, instruments, customer:<id> or issuer:<id>');
/** A sale or refund id: `S` and the 10-digit journal seq. */
export const saleIdCode = z.string().regex(/^S[0-9]{10}$/, 'a sale id is S and 10 digits');

/**
 * A record whose every own key must match `key`. A plain zod record leaves a `__proto__`
 * key out silently; this refuses it, like any other key outside the pattern.
 */
export function strictRecord<K extends z.ZodType<string>, V extends z.ZodType>(key: K, value: V, keysMax = 10_000) {
  return z
    .unknown()
    .superRefine((v, ctx) => {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return;
      const keys = Object.keys(v);
      if (keys.length > keysMax) ctx.addIssue({ code: 'custom', message: `at most ${keysMax} entries` });
      for (const k of keys) if (!key.safeParse(k).success) ctx.addIssue({ code: 'custom', message: `${k.slice(0, 40)} is not a valid key here`, path: [k.slice(0, 40)] });
    })
    .pipe(z.record(key, value));
}

import { z } from 'zod';
import { fail } from './errors.ts';
import type { TokenPayment } from './economy.ts';
import { add, mul } from './money.ts';
import { ENTITY_ID_PATTERN, entityId, idempotencyKey, isoDate, keyId, text, tokenCode } from './schemas.ts';
import type { TokenType } from './token-types.ts';

/**
 * Bearer instruments (claims 6, 7, 9, 20, 21, 23): gift certificates and manufacturer
 * coupons. An instrument is a compact JWS (RFC 7515 section 7.1), alg EdDSA over Ed25519
 * (RFC 8037), so any JOSE library can check it:
 *
 *   BASE64URL(header) "." BASE64URL(payload) "." BASE64URL(signature)
 *
 * header  `{"alg":"EdDSA","kid":<issuer key id>,"typ":"mpgc"|"mpcp"}` (gift | coupon)
 * payload `{"i":issuer,"s":serial,"t":token,"u":units,"a":issuedAt,"x":expiresAt}`, the
 *         times in whole seconds since 1970 (UTC). Claim names are one letter so that the
 *         whole instrument fits a receipt printer's QR code (about 280 characters).
 *
 * An instrument is worth `u` tokens of type `t`; the token type's face value gives its
 * fiat value. A gift certificate is redeemable in part (the remaining value is tracked by
 * the mall, and offline by the store that saw it last); a coupon is used once, whatever
 * part of its value the sale takes. A coupon's token is a manufacturer token, so it pays
 * only for the manufacturer's listed products, as those tokens do on cards.
 *
 * Who may sign what is the key directory in the mall's snapshot (`InstrumentDirectory`):
 * each key names its issuer and the kinds it signs; the issuer in the payload must be the
 * key's, the token must be that issuer's, and the instrument must be issued while the key
 * was valid. Everything here is pure: the signature itself is checked in
 * platform/instruments.ts with jose, before the payload is parsed.
 */

export const INSTRUMENT_KINDS = ['gift', 'coupon'] as const;
export type InstrumentKind = (typeof INSTRUMENT_KINDS)[number];

/** The protected header's `typ` of each kind, and back. */
export const INSTRUMENT_TYP: Readonly<Record<InstrumentKind, string>> = { gift: 'mpgc', coupon: 'mpcp' };
const KIND_OF_TYP: ReadonlyMap<string, InstrumentKind> = new Map([
  ['mpgc', 'gift'],
  ['mpcp', 'coupon'],
]);

/**
 * The store ledger account of bearer instruments (core/ledger.ts accounts): a sold gift
 * certificate moves its tokens from the float into it, a redemption moves them out of it
 * into `redeemed`. It may go negative at a store that redeems more than it sold (coupons,
 * and certificates sold elsewhere); the mall keeps the balance of each instrument.
 */
export const INSTRUMENTS_ACCOUNT = 'instruments';

/** A serial: 6-20 digits or capital letters, unique per issuer (the mall's are random). */
export const INSTRUMENT_SERIAL_PATTERN = /^[0-9A-Z]{6,20}$/;
/** Longest compact form accepted: a QR code a receipt printer prints holds far less. */
export const INSTRUMENT_COMPACT_CHARS_MAX = 1024;
/** Instruments expire within this many years of being issued. */
export const INSTRUMENT_LIFE_YEARS_MAX = 10;
/** Latest time in seconds an instrument may carry (the year 2200): keeps dates in range. */
const EPOCH_S_MAX = 7_258_118_400;
/** An instrument's issue time may be ahead of the verifier's clock by this much. */
export const INSTRUMENT_CLOCK_SKEW_S = 300;

export const instrumentSerial = z.string().regex(INSTRUMENT_SERIAL_PATTERN, 'a serial is 6-20 digits or capital letters');
const epochSeconds = z.number().int().min(0).max(EPOCH_S_MAX);
const positiveUnits = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

/** The payload of an instrument, as signed. */
export const instrumentClaimsSchema = z.strictObject({
  i: entityId,
  s: instrumentSerial,
  t: tokenCode,
  u: positiveUnits,
  a: epochSeconds,
  x: epochSeconds,
});
export type InstrumentClaims = z.output<typeof instrumentClaimsSchema>;

/** The protected header, exactly these three members (no `crit`, no `b64`, no embedded key). */
export const instrumentHeaderSchema = z.strictObject({
  alg: z.literal('EdDSA'),
  kid: keyId,
  typ: z.enum(['mpgc', 'mpcp']),
});

/** An instrument whose signature and claims were checked. */
export interface Instrument {
  kind: InstrumentKind;
  kid: string;
  issuer: string;
  serial: string;
  /** The short human-readable code: also the instrument's id at the mall and in stores. */
  code: string;
  token: string;
  units: number;
  issuedAt: string;
  expiresAt: string;
  /** The compact form, as signed. */
  compact: string;
}

// ---- the key directory and the acceptance policy, as the mall's snapshot carries them -----

/** An Ed25519 public key as a JWK (RFC 8037). */
export const ed25519PublicJwk = z.strictObject({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'an Ed25519 public key is 43 base64url characters'),
  kid: z.string().max(64).optional(),
  alg: z.literal('EdDSA').optional(),
  use: z.literal('sig').optional(),
});

/**
 * A key that may sign instruments: the mall's instrument key (issuer `mall`), a store's
 * key (its own gift certificates), a manufacturer's key (its coupons). An instrument
 * issued (`a`) before `validFrom` or at or after `validTo` is refused; a key that must
 * not be trusted any more is taken out of the directory, which refuses every instrument
 * it signed (CORE_ERR_INSTRUMENT_KEY_UNKNOWN).
 */
export interface InstrumentKey {
  kid: string;
  issuer: string;
  kinds: InstrumentKind[];
  jwk: { kty: 'OKP'; crv: 'Ed25519'; x: string };
  validFrom: string;
  validTo: string | null;
}

export const instrumentKeySchema = z.strictObject({
  kid: keyId,
  issuer: entityId,
  kinds: z.array(z.enum(INSTRUMENT_KINDS)).min(1).max(2),
  jwk: ed25519PublicJwk,
  validFrom: isoDate,
  validTo: isoDate.nullable(),
});

/**
 * What a store may accept while it cannot reach the mall, published by the mall. Values
 * are fiat minor units at face value (units x the token type's face value), so one limit
 * holds for every token type. The day is the UTC day of the sale's time.
 */
export interface InstrumentPolicy {
  /** The most one sale may take from one instrument offline. */
  offlineInstrumentMaxMinor: number;
  /** The most a store may take from instruments offline in one day, all instruments together. */
  offlineStoreDailyMaxMinor: number;
  /** A store accepts instruments offline only with a snapshot younger than this. */
  snapshotMaxAgeHours: number;
}

export const instrumentPolicySchema = z.strictObject({
  offlineInstrumentMaxMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  offlineStoreDailyMaxMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  snapshotMaxAgeHours: z.number().int().min(1).max(24 * 90),
});

/** The policy a mall starts with until its operator sets one. */
export const DEFAULT_INSTRUMENT_POLICY: InstrumentPolicy = {
  offlineInstrumentMaxMinor: 5_000,
  offlineStoreDailyMaxMinor: 50_000,
  snapshotMaxAgeHours: 24,
};

/** The `instruments` member of the mall's snapshot (core/batch.ts SnapshotPayload). */
export interface InstrumentDirectory {
  keys: InstrumentKey[];
  policy: InstrumentPolicy;
}

export const INSTRUMENT_KEYS_MAX = 10_000;

export const instrumentDirectorySchema = z.strictObject({
  keys: z.array(instrumentKeySchema).max(INSTRUMENT_KEYS_MAX),
  policy: instrumentPolicySchema,
});

// ---- reading and checking ------------------------------------------------------------------

const BASE64URL = /^[A-Za-z0-9_-]+$/;
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes one part of a compact JWS, or null when it is not canonical base64url: a
 * last character with stray low bits decodes to the same bytes as the canonical one,
 * so it is refused, and no changed character of an instrument verifies.
 */
function canonicalBase64url(part: string): Buffer | null {
  if (!BASE64URL.test(part) || part.length % 4 === 1) return null;
  const bytes = Buffer.from(part, 'base64url');
  return bytes.toString('base64url') === part ? bytes : null;
}

function malformed(why: string): never {
  fail('CORE_ERR_INSTRUMENT_MALFORMED', `this gift certificate or coupon cannot be read: ${why}`);
}

/** A compact instrument split and its header read, before anything else is trusted. */
export interface InstrumentParts {
  kind: InstrumentKind;
  kid: string;
  /** The bytes the signature covers: `header "." payload` as ASCII. */
  signingInput: string;
  payload: Buffer;
  signature: Buffer;
}

/** Splits a compact instrument and reads its header. Throws CORE_ERR_INSTRUMENT_MALFORMED. */
export function readInstrument(compact: string): InstrumentParts {
  if (typeof compact !== 'string' || compact.length > INSTRUMENT_COMPACT_CHARS_MAX) malformed('it is not a signed instrument');
  const parts = compact.split('.');
  if (parts.length !== 3) malformed('it is not a signed instrument');
  const [h, p, s] = parts as [string, string, string];
  const headerBytes = canonicalBase64url(h);
  const payload = canonicalBase64url(p);
  const signature = canonicalBase64url(s);
  if (headerBytes === null || payload === null || signature === null) malformed('a part is not base64url');
  if (signature.length !== 64) malformed('the signature is not an Ed25519 signature');
  let header: unknown;
  try {
    header = JSON.parse(decoder.decode(headerBytes));
  } catch {
    malformed('the header is not JSON');
  }
  const parsed = instrumentHeaderSchema.safeParse(header);
  if (!parsed.success) malformed('the header is not an instrument header');
  const kind = KIND_OF_TYP.get(parsed.data.typ) as InstrumentKind;
  return { kind, kid: parsed.data.kid, signingInput: `${h}.${p}`, payload, signature };
}

/** The key directory entry for `kid`, or CORE_ERR_INSTRUMENT_KEY_UNKNOWN. */
export function instrumentKeyFor(directory: Readonly<InstrumentDirectory> | undefined, kid: string): InstrumentKey {
  const key = directory?.keys.find((k) => k.kid === kid);
  if (key === undefined) fail('CORE_ERR_INSTRUMENT_KEY_UNKNOWN', 'this gift certificate or coupon is signed with a key the mall does not list', { kid });
  return key;
}

/**
 * The instrument's claims checked against the key that verified its signature and the
 * token types, at `now`. Call only after the signature verified: the payload is parsed
 * here. Throws the typed reason.
 */
export function checkInstrumentClaims(
  parts: Pick<InstrumentParts, 'kind' | 'kid' | 'payload'>,
  compact: string,
  key: Readonly<InstrumentKey>,
  tokenTypes: ReadonlyMap<string, TokenType>,
  now: Date,
): Instrument {
  let raw: unknown;
  try {
    raw = JSON.parse(decoder.decode(parts.payload));
  } catch {
    malformed('the payload is not JSON');
  }
  const parsed = instrumentClaimsSchema.safeParse(raw);
  if (!parsed.success) malformed(`the payload is not valid at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
  const c = parsed.data;
  const what = parts.kind === 'gift' ? 'gift certificate' : 'coupon';
  function refuse(why: string): never {
    return fail('CORE_ERR_INSTRUMENT_ISSUER', `this ${what} is not valid: ${why}`, { kid: key.kid, issuer: c.i, serial: c.s });
  }
  if (key.kid !== parts.kid) throw new Error('assertion failed: the key checked is the one the header names');
  if (c.i !== key.issuer) refuse(`it names issuer ${c.i}, but its key belongs to ${key.issuer}`);
  if (!key.kinds.includes(parts.kind)) refuse(`the key of ${key.issuer} does not sign ${what}s`);
  const tt = tokenTypes.get(c.t);
  if (tt === undefined) refuse(`the mall does not list token type ${c.t}`);
  if (tt.issuer !== c.i) refuse(`${c.t} tokens are issued by ${tt.issuer}, not ${c.i}`);
  if (parts.kind === 'coupon' && tt.kind !== 'manufacturer') refuse(`a coupon is worth manufacturer tokens, and ${c.t} is not one`);
  if (parts.kind === 'gift' && tt.kind === 'manufacturer') refuse('a gift certificate is not worth manufacturer tokens: that is a coupon');
  const issuedMs = c.a * 1000;
  if (issuedMs < Date.parse(key.validFrom) || (key.validTo !== null && issuedMs >= Date.parse(key.validTo))) refuse('it was issued while its key was not valid');
  if (c.x <= c.a) refuse('it expires before it was issued');
  if (c.x - c.a > INSTRUMENT_LIFE_YEARS_MAX * 366 * 86_400) refuse(`it is valid for more than ${INSTRUMENT_LIFE_YEARS_MAX} years`);
  const nowS = Math.floor(now.getTime() / 1000);
  if (c.a > nowS + INSTRUMENT_CLOCK_SKEW_S) refuse('it is dated in the future');
  const expiresAt = new Date(c.x * 1000).toISOString();
  if (c.x <= nowS) fail('CORE_ERR_INSTRUMENT_EXPIRED', `this ${what} expired on ${expiresAt.slice(0, 10)}`, { code: instrumentCode(c.i, c.s), expiresAt });
  return {
    kind: parts.kind,
    kid: key.kid,
    issuer: c.i,
    serial: c.s,
    code: instrumentCode(c.i, c.s),
    token: c.t,
    units: c.u,
    issuedAt: new Date(issuedMs).toISOString(),
    expiresAt,
    compact,
  };
}

/** The fiat value of `units` of an instrument's token, in minor units at face value. */
export function instrumentValueMinor(tt: Pick<TokenType, 'faceValueMinor'>, units: number): number {
  return mul(units, tt.faceValueMinor);
}

// ---- the short code ---------------------------------------------------------------------------

/**
 * The human-readable code printed under the QR: `ISSUER-SERIAL-CC`, upper case, where CC
 * are two ISO 7064 MOD 97-10 check digits (as in an IBAN) over `ISSUER-SERIAL`, digits
 * counting as themselves, letters as 10-35 and `-` as 36. Typed codes are read in any
 * case. The code names an instrument but proves nothing: a till cannot check a signature
 * from it. It serves balance inquiries, and a till that cannot scan the QR asks the mall
 * (or its store's own record) for the instrument's compact form and verifies that.
 */
const CODE_PATTERN = /^([A-Z0-9][A-Z0-9-]{0,39})-([0-9A-Z]{6,20})-([0-9]{2})$/;
export const INSTRUMENT_CODE_CHARS_MAX = 64;

function mod97(body: string): number {
  let r = 0;
  for (const ch of body) {
    const c = ch.charCodeAt(0);
    const v = c >= 48 && c <= 57 ? c - 48 : c >= 65 && c <= 90 ? c - 55 : 36;
    r = v < 10 ? (r * 10 + v) % 97 : (r * 100 + v) % 97;
  }
  return r;
}

function checkDigits(body: string): string {
  return String(98 - ((mod97(body) * 100) % 97)).padStart(2, '0');
}

export function instrumentCode(issuer: string, serial: string): string {
  const body = `${issuer.toUpperCase()}-${serial}`;
  return `${body}-${checkDigits(body)}`;
}

/** Reads a typed or scanned short code. Throws CORE_ERR_INSTRUMENT_CODE. */
export function parseInstrumentCode(input: string): { issuer: string; serial: string; code: string } {
  const typed = typeof input === 'string' && input.length <= INSTRUMENT_CODE_CHARS_MAX ? input.trim().toUpperCase() : '';
  const m = CODE_PATTERN.exec(typed);
  const issuer = m?.[1]?.toLowerCase() ?? '';
  if (m === null || !ENTITY_ID_PATTERN.test(issuer)) fail('CORE_ERR_INSTRUMENT_CODE', 'this is not a gift certificate or coupon code: it reads ISSUER-SERIAL-NN');
  const body = `${m[1]}-${m[2]}`;
  if (checkDigits(body) !== m[3]) fail('CORE_ERR_INSTRUMENT_CODE', 'this gift certificate or coupon code has a wrong check digit: type it again');
  return { issuer, serial: m[2] as string, code: typed };
}

/** Short codes as ids in paths and keys (already checked, so no prototype name can pass). */
export const instrumentCodeSchema = z.string().max(INSTRUMENT_CODE_CHARS_MAX).transform((s, ctx) => {
  try {
    return parseInstrumentCode(s).code;
  } catch {
    ctx.addIssue({ code: 'custom', message: 'not a gift certificate or coupon code (ISSUER-SERIAL-NN)' });
    return z.NEVER;
  }
});

// ---- offline acceptance -----------------------------------------------------------------------

/** The UTC day of a time, YYYY-MM-DD: the day the offline daily limit counts in. */
export function policyDay(at: string): string {
  return new Date(at).toISOString().slice(0, 10);
}

/**
 * Why a redemption taken while the store could not reach the mall is beyond the policy,
 * or null when it is within it. `valueMinor` is what this sale takes from this instrument;
 * `takenTodayMinor` what the store took offline from instruments earlier the same day.
 */
export function offlineLimitProblem(
  policy: Readonly<InstrumentPolicy>,
  input: { valueMinor: number; takenTodayMinor: number; snapshotIssuedAt: string; at: string },
): string | null {
  const ageMs = Date.parse(input.at) - Date.parse(input.snapshotIssuedAt);
  if (!Number.isFinite(ageMs) || ageMs > policy.snapshotMaxAgeHours * 3_600_000) {
    return `the store's mall snapshot was older than ${policy.snapshotMaxAgeHours} hours`;
  }
  if (input.valueMinor > policy.offlineInstrumentMaxMinor) {
    return `${input.valueMinor} taken from one instrument offline, more than the ${policy.offlineInstrumentMaxMinor} allowed`;
  }
  const day = add(input.takenTodayMinor, input.valueMinor);
  if (day > policy.offlineStoreDailyMaxMinor) {
    return `${day} taken from instruments offline in one day, more than the ${policy.offlineStoreDailyMaxMinor} allowed`;
  }
  return null;
}

/** The store's check before it takes an instrument offline. Throws CORE_ERR_INSTRUMENT_OFFLINE_LIMIT. */
export function checkOfflineAcceptance(policy: Readonly<InstrumentPolicy>, input: Parameters<typeof offlineLimitProblem>[1]): void {
  const problem = offlineLimitProblem(policy, input);
  if (problem !== null) fail('CORE_ERR_INSTRUMENT_OFFLINE_LIMIT', `the mall is unreachable, and a store may not take this offline: ${problem}`);
}

// ---- in the journal -------------------------------------------------------------------------

/**
 * One instrument that paid part of a sale (`SaleData.instruments`). Its units count in
 * the sale's allocations and `debits` like any token (a coupon's manufacturer token pays
 * only listed products); its postings move them from `instruments` to `redeemed` rather
 * than from the customer. A sale paid only by instruments needs no customer.
 */
export interface InstrumentUse {
  /** The compact form as scanned: the mall checks the signature itself. */
  instrument: string;
  code: string;
  kind: InstrumentKind;
  token: string;
  /** Units this sale takes from the instrument. */
  units: number;
  /** The mall's reservation for exactly these units (online), or null: taken offline within the policy. */
  reservation: string | null;
  /** What the store holds as remaining on the instrument after this sale (0 for a coupon). */
  remainingAfter: number;
  /** The snapshot whose key directory and policy the store judged the instrument by. */
  snapshotIssuedAt: string;
}

export const INSTRUMENT_USES_MAX = 8;
export const RESERVATION_PATTERN = /^ir-[0-9]{6,12}$/;
export const reservationId = z.string().regex(RESERVATION_PATTERN, 'a reservation id is ir- and digits');

const compactSchema = z.string().min(1).max(INSTRUMENT_COMPACT_CHARS_MAX);

export const instrumentUseSchema = z.strictObject({
  instrument: compactSchema,
  code: instrumentCodeSchema,
  kind: z.enum(INSTRUMENT_KINDS),
  token: tokenCode,
  units: positiveUnits,
  reservation: reservationId.nullable(),
  remainingAfter: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  snapshotIssuedAt: isoDate,
});

/**
 * A gift certificate sold at a till (`instrument.sold`), for cash or card like tokens:
 * the mall's pre-printed certificate, or one the store signs for its own tokens then.
 * Postings: `float` -> `instruments`, the certificate's units of its token.
 */
export interface InstrumentSoldData {
  instrument: string;
  code: string;
  token: string;
  units: number;
  /** units x face value, in minor units of `currency`. */
  priceMinor: number;
  currency: string;
  payment: TokenPayment;
}

export const instrumentSoldDataSchema = z.strictObject({
  instrument: compactSchema,
  code: instrumentCodeSchema,
  token: tokenCode,
  units: positiveUnits,
  priceMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  currency: z.string().regex(/^[A-Z]{3}$/),
  payment: z.discriminatedUnion('method', [
    z.strictObject({ method: z.literal('cash'), tenderedMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), changeMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }),
    z.strictObject({ method: z.literal('card'), approvalRef: z.string().min(1).max(100) }),
  ]),
});

/**
 * A certificate this store sold taken back (`instrument.voided`): sold by mistake, never
 * redeemed, the void agreed by the mall first (POST .../instruments/:code/void), the price
 * refunded. Postings: `instruments` -> `float`, undoing the sale's.
 */
export interface InstrumentVoidedData {
  code: string;
  token: string;
  units: number;
  /** The seq of the `instrument.sold` event it undoes. */
  soldSeq: number;
  reason: string;
  supervisor: string;
  cashRefundMinor: number;
}

export const instrumentVoidedDataSchema = z.strictObject({
  code: instrumentCodeSchema,
  token: tokenCode,
  units: positiveUnits,
  soldSeq: positiveUnits,
  reason: text(1, 200),
  supervisor: entityId,
  cashRefundMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});

// ---- the mall's endpoints ---------------------------------------------------------------------

/**
 * Where an instrument stands at the mall. `unsold`: issued by the mall, not yet sold at a
 * till; `live`: sold, or seen in use; `spent`: nothing remains (a coupon after its use);
 * `voided`: withdrawn by its issuer or the store that sold it.
 */
export type InstrumentState = 'unsold' | 'live' | 'spent' | 'voided';

export interface InstrumentStatus {
  code: string;
  issuer: string;
  serial: string;
  kind: InstrumentKind;
  token: string;
  faceUnits: number;
  /** Units not yet redeemed, less what is reserved. */
  remainingUnits: number;
  heldUnits: number;
  state: InstrumentState;
  expiresAt: string;
  soldBy: string | null;
  /** Redeemed beyond its value by stores that could not see each other. */
  doubleSpent: boolean;
  /** The compact form when the mall holds it (it issued it, or saw it), for a till that has only the short code. */
  compact: string | null;
  asOf: string;
}

/** POST /v1/vendors/:vendor/instruments/reservations: hold `units` of the instrument for a sale. */
export const instrumentReserveRequest = z.strictObject({
  key: idempotencyKey,
  instrument: compactSchema,
  units: positiveUnits,
});
export type InstrumentReserveRequest = z.output<typeof instrumentReserveRequest>;

/** POST /v1/vendors/:vendor/instruments/reservations/:id/release: the sale did not happen. */
export const instrumentReleaseRequest = z.strictObject({ key: idempotencyKey });

/** POST /v1/vendors/:vendor/instruments/:code/void: a certificate this store sold by mistake, never redeemed. */
export const instrumentVoidRequest = z.strictObject({ key: idempotencyKey, reason: text(1, 200) });

export type ReservationState = 'held' | 'captured' | 'released' | 'lapsed';

export interface InstrumentReservation {
  id: string;
  code: string;
  token: string;
  units: number;
  state: ReservationState;
  /** A hold neither captured by a batch nor released by then lapses. */
  expiresAt: string;
}

export interface InstrumentReserveAnswer {
  reservation: InstrumentReservation;
  instrument: InstrumentStatus;
}

/** POST /admin/instruments: mall gift certificates, signed with the mall's instrument key. */
export const INSTRUMENTS_ISSUE_MAX = 1_000;
export const instrumentIssueRequest = z.strictObject({
  key: idempotencyKey,
  kind: z.literal('gift'),
  token: tokenCode,
  units: positiveUnits,
  expiresAt: isoDate,
  count: z.number().int().min(1).max(INSTRUMENTS_ISSUE_MAX).default(1),
});
export type InstrumentIssueRequest = z.output<typeof instrumentIssueRequest>;

export interface IssuedInstrument {
  code: string;
  compact: string;
}


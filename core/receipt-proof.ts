import canonicalize from 'canonicalize';
import { z } from 'zod';
import { parseCanonicalJson } from './batch.ts';
import { parseSaleId } from './codes.ts';
import { entityId, keyId, saleIdCode, strictRecord, tokenCode } from './schemas.ts';

/**
 * A verifiable receipt: the receipt's QR code carries the sale's digest and totals,
 * signed by the store's key as a compact JWS (RFC 7515 section 7.1), alg EdDSA over
 * Ed25519 (RFC 8037), protected header `{"alg":"EdDSA","kid":<vendor key thumbprint>,
 * "typ":"mallpos-receipt+jws"}`. The QR text is the compact JWS itself, so any JOSE
 * library checks it against the vendor's public key.
 *
 * The payload is RFC 8785 canonical JSON of `ReceiptProofPayload`. `hash` is the sale
 * event's journal hash: the sha256 hex of the event's exact journal text, the same bytes
 * the vendor later ships in a batch. The mall matches it against the event it ingested
 * under that seq (the sale id is `S` and the journal seq in 10 digits).
 *
 * Size: a sale paid with two token types and cash, as the demo store makes it
 * ({"at":"2026-12-01T10:15:42.123+01:00","cashDueMinor":350,"currency":"EUR","debits":
 * {"ACME":120,"MALL":45},"hash":<64 hex>,"saleId":"S0000000061","totalMinor":1250,
 * "v":1,"vendor":"acme"}) gives a QR text of 539 characters (measured in
 * test/core/receipt-proof.test.ts, which bounds it): a version 18 QR code at error
 * correction M holds 560 bytes, 89 modules a side, 3 dots a module on 58 mm paper.
 * Nothing that grows with the sale's lines is in it: only one entry per token type paid.
 *
 * This module is the pure part (payload, schema, canonical text, strict parsing of the
 * QR text); signing and the signature check are in platform/receipt-proof.ts.
 */
export const RECEIPT_PROOF_VERSION = 1;
export const RECEIPT_TYP = 'mallpos-receipt+jws';

/** The longest QR text a verifier reads: far above a real receipt's, far below anything costly. */
export const RECEIPT_QR_CHARS_MAX = 2_048;
/** Token types one receipt may name (a real sale uses one or two). */
export const RECEIPT_DEBITS_MAX = 16;

export interface ReceiptProofPayload {
  v: typeof RECEIPT_PROOF_VERSION;
  vendor: string;
  saleId: string;
  /** The sale event's journal hash (sha256 hex of its journal text). */
  hash: string;
  /** The sale event's time, as journalled. */
  at: string;
  currency: string;
  totalMinor: number;
  /** Tokens taken, by token type (the sale's `debits`). */
  debits: Record<string, number>;
  /** Cash due (minor units), 0 when tokens paid it all. */
  cashDueMinor: number;
}

const amount = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const receiptProofPayloadSchema = z.strictObject({
  v: z.literal(RECEIPT_PROOF_VERSION),
  vendor: entityId,
  saleId: saleIdCode.refine((s) => parseSaleIdSeq(s) > 0, 'a sale id names a seq of at least 1'),
  hash: z.string().regex(/^[0-9a-f]{64}$/, 'a hash is 64 lower-case hex digits'),
  at: z.iso.datetime({ offset: true }).max(40),
  currency: z.string().regex(/^[A-Z]{3}$/, 'a currency is 3 capital letters'),
  totalMinor: amount,
  debits: strictRecord(tokenCode, amount.min(1), RECEIPT_DEBITS_MAX),
  cashDueMinor: amount,
});

export const receiptProofHeaderSchema = z.strictObject({
  alg: z.literal('EdDSA'),
  kid: keyId,
  typ: z.literal(RECEIPT_TYP),
});

export type ReceiptProofHeader = z.output<typeof receiptProofHeaderSchema>;

function parseSaleIdSeq(saleId: string): number {
  return Number(saleId.slice(1));
}

/** The journal seq of the sale a receipt names. */
export function receiptSaleSeq(payload: Pick<ReceiptProofPayload, 'saleId'>): number {
  return parseSaleId(payload.saleId).seq;
}

/** What a receipt proof says about a sale, built from the journalled sale. */
export function receiptProofPayload(input: {
  vendor: string;
  saleId: string;
  hash: string;
  at: string;
  currency: string;
  totalMinor: number;
  debits: Record<string, number>;
  cash: { dueMinor: number };
}): ReceiptProofPayload {
  const debits = Object.create(null) as Record<string, number>;
  for (const token of Object.keys(input.debits).sort()) {
    const units = input.debits[token] as number;
    if (units > 0) debits[token] = units;
  }
  return {
    v: RECEIPT_PROOF_VERSION,
    vendor: input.vendor,
    saleId: input.saleId,
    hash: input.hash,
    at: input.at,
    currency: input.currency,
    totalMinor: input.totalMinor,
    debits: { ...debits },
    cashDueMinor: input.cash.dueMinor,
  };
}

/** The payload's signed text: RFC 8785 canonical JSON, the only text a verifier accepts. */
export function receiptProofText(payload: ReceiptProofPayload): string {
  const checked = receiptProofPayloadSchema.safeParse(payload);
  if (!checked.success) throw new Error(`assertion failed: a receipt proof payload is valid (${checked.error.issues[0]?.message ?? ''})`);
  const text = canonicalize(payload);
  if (text === undefined) throw new Error('assertion failed: a receipt proof payload canonicalizes');
  return text;
}

/** A QR text read apart, before its signature is checked. */
export interface ParsedReceiptQr {
  header: ReceiptProofHeader;
  payload: ReceiptProofPayload;
  /** The compact JWS exactly as read (no surrounding whitespace). */
  jws: string;
}

export type ReceiptQrParse = { ok: true; value: ParsedReceiptQr } | { ok: false; problem: string };

const SEGMENT = /^[A-Za-z0-9_-]+$/;

/**
 * Decodes one base64url segment, refusing any text that is not the one canonical
 * encoding of its bytes: otherwise the unused low bits of the last character would let
 * several texts stand for one signature.
 */
function segmentBytes(text: string): Buffer | null {
  if (!SEGMENT.test(text) || text.length % 4 === 1) return null;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : null;
}

function jsonSegment(text: string): unknown {
  const bytes = segmentBytes(text);
  if (bytes === null) return undefined;
  const decoded = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let json: string;
  try {
    json = decoded.decode(bytes);
  } catch {
    return undefined;
  }
  return parseCanonicalJson(json) ?? undefined;
}

/**
 * Reads a receipt's QR text strictly: bounded, three canonical base64url segments, a
 * protected header of exactly alg, kid and typ, and a canonical payload that matches the
 * schema. Leading and trailing whitespace (a scanner's line end) is ignored; anything
 * else is a problem stated in one sentence, never the input echoed back.
 */
export function parseReceiptQr(raw: unknown): ReceiptQrParse {
  if (typeof raw !== 'string') return { ok: false, problem: 'the receipt code is not text' };
  if (raw.length > RECEIPT_QR_CHARS_MAX) return { ok: false, problem: `the receipt code is longer than ${RECEIPT_QR_CHARS_MAX} characters` };
  const jws = raw.trim();
  if (jws.length === 0) return { ok: false, problem: 'the receipt code is empty' };
  const parts = jws.split('.');
  if (parts.length !== 3) return { ok: false, problem: 'the receipt code is not a compact JWS (three parts separated by dots)' };
  const [h, p, s] = parts as [string, string, string];
  const header = receiptProofHeaderSchema.safeParse(jsonSegment(h));
  if (!header.success) return { ok: false, problem: 'the receipt code\'s header is not a mallpos receipt header ({"alg":"EdDSA","kid":...,"typ":"mallpos-receipt+jws"})' };
  const body = jsonSegment(p);
  if (body === undefined) return { ok: false, problem: 'the receipt code\'s payload is not canonical JSON' };
  const payload = receiptProofPayloadSchema.safeParse(body);
  if (!payload.success) {
    // Only a field name the schema knows is named: nothing of the input goes back out.
    const field = payload.error.issues[0]?.path[0];
    const known = typeof field === 'string' && Object.hasOwn(receiptProofPayloadSchema.shape, field);
    return { ok: false, problem: `the receipt code's payload is not a valid receipt${known ? ` (field ${field})` : ''}` };
  }
  const signature = segmentBytes(s);
  if (signature === null || signature.length !== 64) return { ok: false, problem: 'the receipt code\'s signature is not a 64-byte Ed25519 signature' };
  return { ok: true, value: { header: header.data, payload: { ...payload.data, debits: { ...payload.data.debits } }, jws } };
}

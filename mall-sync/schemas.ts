import { z } from 'zod';
import { amount, entityId, isMallposError, MallposError, parse, personName, strictRecord, tokenCode } from '../core/index.ts';

/** Payloads of the mall's admin API, checked at the edge. Objects are strict. */
const bps = z.number().int().min(0).max(10_000);

export const publicJwkSchema = z.strictObject({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'x is a 32-byte Ed25519 public key in base64url'),
  kid: z.string().min(1).max(128).optional(),
  alg: z.literal('EdDSA').optional(),
  use: z.literal('sig').optional(),
  key_ops: z.array(z.string()).max(4).optional(),
  ext: z.boolean().optional(),
});

export const vendorRegister = z.strictObject({ id: entityId, name: personName, jwk: z.unknown() });
export const keyAdd = z.strictObject({ jwk: z.unknown() });
export const keyRevoke = z.strictObject({ reason: z.string().trim().min(1).max(200).optional() });

export const feeScheduleSchema = z.strictObject({
  royaltyBps: bps,
  royaltyBpsByVendor: strictRecord(entityId, bps),
  royaltyBpsByToken: strictRecord(tokenCode, bps),
  reimbursementTollMinor: amount('reimbursement toll'),
  customerDataTollMinor: amount('customer data toll'),
  exchangeServiceBps: bps,
});

export const partyAdd = z.strictObject({ id: entityId, name: personName, kind: z.enum(['manufacturer', 'issuer']) });

export const allotmentIssue = z.strictObject({
  vendor: entityId,
  token: tokenCode,
  units: amount('units').refine((n) => n > 0, 'units must be at least 1'),
  reference: z.string().trim().min(1).max(80),
});

export const gapDecide = z.strictObject({
  decision: z.enum(['wait', 'resend']),
  resendFromSeq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  note: z.string().trim().min(1).max(200).optional(),
});

export const idempotencyKeySchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$/, 'an Idempotency-Key is 8-128 letters, digits or . _ : -');

/** Parses untrusted admin input; a problem is MALL_ERR_VALIDATION (amounts keep CORE_ERR_AMOUNT / CORE_ERR_OVERFLOW). */
export function parseAdmin<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  try {
    return parse(schema, input);
  } catch (err) {
    if (isMallposError(err) && err.code === 'CORE_ERR_VALIDATION') throw new MallposError('MALL_ERR_VALIDATION', err.message, err.details);
    throw err;
  }
}

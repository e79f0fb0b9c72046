import { CompactSign, compactVerify, importJWK, type CryptoKey, type JWK } from 'jose';
import {
  checkInstrumentClaims,
  fail,
  INSTRUMENT_TYP,
  instrumentKeyFor,
  readInstrument,
  type Instrument,
  type InstrumentClaims,
  type InstrumentDirectory,
  type InstrumentKind,
  type TokenType,
} from '../core/index.ts';

/**
 * Signing and verifying bearer instruments (core/instruments.ts has the format and every
 * rule but the signature). The signature is checked with jose before the payload is
 * parsed; any JOSE library checks it the same way (docs/PROTOCOL.md has a worked example).
 */

const encoder = new TextEncoder();

/** The payload text: the claims in one fixed order, so equal claims sign equal bytes. */
export function instrumentPayloadText(c: InstrumentClaims): string {
  return JSON.stringify({ i: c.i, s: c.s, t: c.t, u: c.u, a: c.a, x: c.x });
}

/** Signs an instrument and returns its compact form. */
export async function signInstrument(kind: InstrumentKind, claims: InstrumentClaims, key: { kid: string; privateKey: CryptoKey }): Promise<string> {
  return new CompactSign(encoder.encode(instrumentPayloadText(claims)))
    .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: INSTRUMENT_TYP[kind] })
    .sign(key.privateKey);
}

/**
 * Verifies a compact instrument against the key directory and token types at `now`, and
 * returns it. Every refusal is a typed CORE_ERR_INSTRUMENT_* error and nothing else
 * happens: malformed, unknown key, bad signature (forged or altered), not the key's to
 * sign, expired.
 */
export async function verifyInstrument(
  compact: string,
  directory: Readonly<InstrumentDirectory> | undefined,
  tokenTypes: ReadonlyMap<string, TokenType>,
  now: Date,
): Promise<Instrument> {
  const parts = readInstrument(compact);
  const key = instrumentKeyFor(directory, parts.kid);
  let publicKey: CryptoKey | Uint8Array;
  try {
    publicKey = await importJWK({ kty: 'OKP', crv: 'Ed25519', x: key.jwk.x } as JWK, 'EdDSA');
  } catch {
    fail('CORE_ERR_INSTRUMENT_KEY_UNKNOWN', 'the key directory holds an unusable key for this instrument', { kid: key.kid });
  }
  try {
    await compactVerify(compact, publicKey, { algorithms: ['EdDSA'] });
  } catch {
    fail('CORE_ERR_INSTRUMENT_SIGNATURE', `this ${parts.kind === 'gift' ? 'gift certificate' : 'coupon'} does not carry a valid signature: it was altered or forged`, { kid: key.kid });
  }
  return checkInstrumentClaims(parts, compact, key, tokenTypes, now);
}

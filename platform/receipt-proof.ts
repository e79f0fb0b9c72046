import { CompactSign, compactVerify, importJWK, type CryptoKey, type JWK } from 'jose';
import { RECEIPT_TYP, receiptProofText, type ParsedReceiptQr, type ReceiptProofPayload } from '../core/receipt-proof.ts';

/**
 * Signs and checks receipt proofs (core/receipt-proof.ts): a compact JWS, alg EdDSA,
 * with the signing key's thumbprint as kid. The store signs when a receipt is fetched or
 * reprinted, never while a sale commits; the mall checks against its key directory.
 */
const encoder = new TextEncoder();

/** The QR text of a receipt: the compact JWS of the payload's canonical text. */
export function signReceiptProof(payload: ReceiptProofPayload, key: { privateKey: CryptoKey; kid: string }): Promise<string> {
  return new CompactSign(encoder.encode(receiptProofText(payload))).setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: RECEIPT_TYP }).sign(key.privateKey);
}

/**
 * Whether a parsed receipt's signature verifies with `jwk` (an Ed25519 public JWK).
 * False for a signature that does not verify; a key that cannot be imported throws.
 */
export async function receiptSignatureValid(parsed: ParsedReceiptQr, jwk: Record<string, unknown>): Promise<boolean> {
  const key = await importJWK({ kty: jwk['kty'], crv: jwk['crv'], x: jwk['x'] } as JWK, 'EdDSA');
  try {
    await compactVerify(parsed.jws, key, { algorithms: ['EdDSA'] });
    return true;
  } catch {
    return false;
  }
}

import { jwtVerify, SignJWT } from 'jose';
import { fail } from '../core/index.ts';
import type { VendorKeys } from './config.ts';

export const TERMINAL_AUDIENCE = 'mallpos-terminal';

/**
 * A paired terminal's credential: a JWT signed by the vendor's Ed25519 key (EdDSA),
 * naming the terminal (sub) and the one credential id (jti) currently valid for it.
 * Revocation and re-pairing are checked against the access store at every connect.
 */
export async function issueTerminalCredential(keys: VendorKeys, vendorId: string, terminalId: string, credentialId: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'EdDSA', kid: keys.kid, typ: 'JWT' })
    .setIssuer(vendorId)
    .setAudience(TERMINAL_AUDIENCE)
    .setSubject(terminalId)
    .setJti(credentialId)
    .setIssuedAt()
    .sign(keys.privateKey);
}

export async function verifyTerminalCredential(keys: VendorKeys, vendorId: string, token: unknown): Promise<{ terminalId: string; credentialId: string }> {
  if (typeof token !== 'string' || token.length === 0 || token.length > 4096) fail('VND_ERR_UNAUTHENTICATED', 'this terminal is not paired');
  try {
    const { payload } = await jwtVerify(token, keys.publicKey, { issuer: vendorId, audience: TERMINAL_AUDIENCE, algorithms: ['EdDSA'] });
    if (typeof payload.sub !== 'string' || typeof payload.jti !== 'string') fail('VND_ERR_UNAUTHENTICATED', 'the terminal credential is incomplete');
    return { terminalId: payload.sub, credentialId: payload.jti };
  } catch (err) {
    if ((err as { code?: string }).code?.startsWith('VND_ERR_') === true) throw err;
    return fail('VND_ERR_UNAUTHENTICATED', 'the terminal credential is not valid for this store');
  }
}

import { jwtVerify, SignJWT } from 'jose';
import { fail } from '../core/index.ts';
import type { VendorKeys } from './config.ts';

/** The audience of the short-lived access credential a terminal connects with. */
export const TERMINAL_AUDIENCE = 'mallpos-terminal';
/** The audience of the long-lived device credential a paired terminal renews its access with. */
export const DEVICE_AUDIENCE = 'mallpos-terminal-device';

const CREDENTIAL_CHARS_MAX = 4096;

/**
 * A paired terminal holds two credentials, both JWTs signed by the vendor's Ed25519 key
 * (EdDSA) that name the terminal (sub) and its pairing (jti, the one credential id valid
 * for it; pairing again or revoking invalidates both at once):
 * * the access credential, which expires after minutes and is what the terminal's
 *   socket presents;
 * * the device credential, which does not expire, is kept on the terminal's disk, and
 *   is good only for getting a new access credential.
 */
export async function issueAccessCredential(
  keys: VendorKeys,
  vendorId: string,
  terminalId: string,
  credentialId: string,
  ttlSeconds: number,
  nowMs = Date.now(),
): Promise<{ credential: string; expiresAtMs: number }> {
  const iat = Math.floor(nowMs / 1000);
  const exp = iat + ttlSeconds;
  const credential = await new SignJWT({})
    .setProtectedHeader({ alg: 'EdDSA', kid: keys.kid, typ: 'JWT' })
    .setIssuer(vendorId)
    .setAudience(TERMINAL_AUDIENCE)
    .setSubject(terminalId)
    .setJti(credentialId)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(keys.privateKey);
  return { credential, expiresAtMs: exp * 1000 };
}

export function issueDeviceCredential(keys: VendorKeys, vendorId: string, terminalId: string, credentialId: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'EdDSA', kid: keys.kid, typ: 'JWT' })
    .setIssuer(vendorId)
    .setAudience(DEVICE_AUDIENCE)
    .setSubject(terminalId)
    .setJti(credentialId)
    .setIssuedAt()
    .sign(keys.privateKey);
}

export interface VerifiedCredential {
  terminalId: string;
  credentialId: string;
  /** When an access credential stops being accepted; Infinity for a device credential. */
  expiresAtMs: number;
}

async function verify(keys: VendorKeys, vendorId: string, token: unknown, audience: string): Promise<VerifiedCredential> {
  if (typeof token !== 'string' || token.length === 0 || token.length > CREDENTIAL_CHARS_MAX) fail('VND_ERR_UNAUTHENTICATED', 'this terminal is not paired');
  try {
    const { payload } = await jwtVerify(token, keys.publicKey, { issuer: vendorId, audience, algorithms: ['EdDSA'], clockTolerance: 0 });
    if (typeof payload.sub !== 'string' || typeof payload.jti !== 'string') fail('VND_ERR_UNAUTHENTICATED', 'the terminal credential is incomplete');
    if (audience === TERMINAL_AUDIENCE && typeof payload.exp !== 'number') fail('VND_ERR_UNAUTHENTICATED', 'the access credential has no expiry');
    return { terminalId: payload.sub, credentialId: payload.jti, expiresAtMs: typeof payload.exp === 'number' ? payload.exp * 1000 : Infinity };
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code?.startsWith('VND_ERR_') === true) throw err;
    if (code === 'ERR_JWT_EXPIRED') fail('VND_ERR_CREDENTIAL_EXPIRED', 'the terminal\'s access credential has expired: it renews it with its device credential');
    return fail('VND_ERR_UNAUTHENTICATED', 'the terminal credential is not valid for this store');
  }
}

/** Checks an access credential's signature, audience and expiry (not yet revocation). */
export function verifyAccessCredential(keys: VendorKeys, vendorId: string, token: unknown): Promise<VerifiedCredential> {
  return verify(keys, vendorId, token, TERMINAL_AUDIENCE);
}

/** Checks a device credential's signature and audience (not yet revocation). */
export function verifyDeviceCredential(keys: VendorKeys, vendorId: string, token: unknown): Promise<VerifiedCredential> {
  return verify(keys, vendorId, token, DEVICE_AUDIENCE);
}

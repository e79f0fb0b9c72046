import { randomBytes, timingSafeEqual } from 'node:crypto';
import { scryptQueued } from '../platform/scrypt.ts';

/**
 * The mall's hashes of wallet PINs: salted scrypt, `scrypt$<N>$<r>$<p>$<salt hex>$<hash hex>`.
 * Every mall process computes them outside the store's exclusive section (a few tens of
 * milliseconds each on the process's one scrypt thread), so that a PIN check never holds
 * up the other changes of the mall.
 */
const SCRYPT_N = 2 ** 14;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const HASH_BYTES = 32;
const SALT_BYTES = 16;
const SCRYPT_MAXMEM = 64 * 1024 * 1024;

function scrypt(pin: string, salt: Buffer): Promise<Buffer> {
  return scryptQueued(pin, salt, HASH_BYTES, { N: SCRYPT_N, r: SCRYPT_R, p: SCRYPT_P, maxmem: SCRYPT_MAXMEM });
}

export async function hashWalletPin(pin: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await scrypt(pin, salt);
  return `scrypt$${SCRYPT_N}$${SCRYPT_R}$${SCRYPT_P}$${salt.toString('hex')}$${hash.toString('hex')}`;
}

/**
 * A stored hash that no PIN matches, with the same cost: checking a PIN against a card
 * the mall does not know takes as long as against one it knows.
 */
export const UNMATCHABLE_PIN_HASH = `scrypt$${SCRYPT_N}$${SCRYPT_R}$${SCRYPT_P}$${'00'.repeat(SALT_BYTES)}$`;

/** Whether `pin` matches `stored`, compared in constant time; false for anything malformed. */
export async function verifyWalletPin(pin: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  // Only the parameters this code writes: a stored hash does not choose its own cost.
  if (Number(parts[1]) !== SCRYPT_N || Number(parts[2]) !== SCRYPT_R || Number(parts[3]) !== SCRYPT_P) return false;
  const actual = await scrypt(pin, Buffer.from(parts[4] as string, 'hex'));
  const expected = Buffer.from(parts[5] as string, 'hex');
  return expected.length === actual.length && timingSafeEqual(actual, expected);
}

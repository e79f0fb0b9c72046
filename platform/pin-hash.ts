import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { scryptQueued } from './scrypt.ts';
import { DIR_MODE, writeFileDurable } from './storage/index.ts';

/**
 * Stored hashes of short secrets (staff PINs). A 4-digit PIN has 10,000 values, so no
 * cost setting alone keeps its hash from being searched once the file is read. The
 * hash is therefore keyed with a pepper: 32 random bytes kept in the keys directory
 * (owner-only, apart from the access file) and never stored next to the hashes. A
 * readable access file alone then reveals nothing: each guess needs the pepper. With
 * both files no cost saves a 4-digit PIN (10,000 guesses at any per-guess cost a login
 * can afford take minutes), so the cost is moderate, scrypt N=2^14, r=8 (16 MiB, a few
 * tens of milliseconds) unless the store sets another N, and the defence is the pepper's
 * separate, owner-only file; the online guessing that remains is for the lockout to stop.
 *
 *     scrypt-hmac$<N>$<r>$<p>$<salt hex>$<hash hex>     scrypt(HMAC-SHA256(pepper, pin), salt)
 *
 * A store sets N (`pinHashCost` in its config) for the PINs it hashes from then on: a
 * power of two from 2^10 (1 MiB, a few milliseconds: a till on slow hardware, a store
 * whose tills sign in very often) to 2^15 (32 MiB). A stored hash verifies at any N in
 * that range, so changing the setting locks nobody out; nothing outside it is computed,
 * so a stored hash cannot make a sign-in cost more than the most a store may set.
 *
 * Hashes of the older form `scrypt$<salt>$<hash>` (no pepper) still verify, so existing
 * staff can sign in; setting a PIN stores the new form.
 *
 * A PIN that verified is remembered for a while (CONFIRMED_TTL_MS, at most CONFIRMED_MAX
 * of them), by its stored hash and the PIN keyed with the pepper: the same PIN against the
 * same stored hash is then confirmed without another scrypt. Tills sign in again and
 * again in a shift (a reconnect after the network dropped, a break, the supervisor's
 * override, a customer's PIN at each visit), and twenty tills signing in at once after a
 * network blip would otherwise queue on the one scrypt thread for a second or two. It
 * gives a guesser nothing: only successes are remembered, so every wrong PIN still costs
 * a full scrypt and counts towards the lockout, and a changed PIN has another stored hash.
 * What is kept is an HMAC under the pepper, which lives in this process's memory anyway.
 */

const PEPPER_BYTES = 32;
/** scrypt's N for a store that sets none. */
export const PIN_HASH_COST_DEFAULT = 2 ** 14;
export const PIN_HASH_COST_MIN = 2 ** 10;
export const PIN_HASH_COST_MAX = 2 ** 15;
/** What a cost must be, for the messages that refuse one. */
export const PIN_HASH_COST_RANGE = `a power of two from ${PIN_HASH_COST_MIN} to ${PIN_HASH_COST_MAX}`;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const HASH_BYTES = 32;
/** How long a verified PIN is remembered: about a shift. */
export const CONFIRMED_TTL_MS = 8 * 60 * 60 * 1000;
/** How many verified PINs are remembered at most; the oldest is forgotten first. */
export const CONFIRMED_MAX = 1024;
// scrypt needs 128 * N * r bytes; room for that with headroom.
const SCRYPT_MAXMEM = 64 * 1024 * 1024;

function scryptAsync(input: Buffer | string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return scryptQueued(input, salt, HASH_BYTES, { N: n, r, p, maxmem: SCRYPT_MAXMEM });
}

/** Whether `n` is a cost a store may set and a stored hash may carry: a power of two from PIN_HASH_COST_MIN to PIN_HASH_COST_MAX. */
export function isPinHashCost(n: number): boolean {
  return Number.isSafeInteger(n) && n >= PIN_HASH_COST_MIN && n <= PIN_HASH_COST_MAX && (n & (n - 1)) === 0;
}

function equalBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export class PinHasher {
  /** Stored hash + keyed PIN (hex) of the PINs that verified -> when, in insertion order. */
  private readonly confirmed = new Map<string, number>();
  /** The clock the remembered PINs expire by (a test sets its own). */
  now: () => number = Date.now;
  /** How many verified PINs are remembered at most. */
  confirmedMax = CONFIRMED_MAX;

  private constructor(
    private readonly pepper: Buffer,
    /** scrypt's N for the hashes this hasher makes. */
    readonly cost: number,
  ) {}

  /**
   * Loads the pepper from `path`, creating it (owner-only, in an owner-only directory) the
   * first time. New hashes are made at scrypt N = `cost`.
   */
  static async open(path: string, cost = PIN_HASH_COST_DEFAULT): Promise<PinHasher> {
    if (!isPinHashCost(cost)) throw new RangeError(`a PIN hash cost is ${PIN_HASH_COST_RANGE}, not ${cost}`);
    let text: string | null = null;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text === null) {
      await mkdir(dirname(path), { recursive: true, mode: DIR_MODE });
      const pepper = randomBytes(PEPPER_BYTES);
      await writeFileDurable(path, `${pepper.toString('base64')}\n`);
      return new PinHasher(pepper, cost);
    }
    const pepper = Buffer.from(text.trim(), 'base64');
    if (pepper.length !== PEPPER_BYTES) throw new Error(`${path} does not hold a ${PEPPER_BYTES}-byte PIN pepper`);
    return new PinHasher(pepper, cost);
  }

  private keyed(pin: string): Buffer {
    return createHmac('sha256', this.pepper).update(pin, 'utf8').digest();
  }

  async hash(pin: string): Promise<string> {
    const salt = randomBytes(16);
    const hash = await scryptAsync(this.keyed(pin), salt, this.cost, SCRYPT_R, SCRYPT_P);
    return `scrypt-hmac$${this.cost}$${SCRYPT_R}$${SCRYPT_P}$${salt.toString('hex')}$${hash.toString('hex')}`;
  }

  /** Whether `pin` matches `stored`, compared in constant time; false for anything malformed. */
  async verify(pin: string, stored: string): Promise<boolean> {
    const keyed = this.keyed(pin);
    const memo = `${stored}\u0000${keyed.toString('hex')}`;
    const at = this.confirmed.get(memo);
    if (at !== undefined) {
      if (this.now() - at < CONFIRMED_TTL_MS) return true;
      this.confirmed.delete(memo);
    }
    const ok = await this.check(pin, keyed, stored);
    if (ok) {
      this.confirmed.set(memo, this.now());
      if (this.confirmed.size > this.confirmedMax) this.confirmed.delete(this.confirmed.keys().next().value as string);
    }
    return ok;
  }

  /** The scrypt check itself; `keyed` is the PIN keyed with the pepper. */
  private async check(pin: string, keyed: Buffer, stored: string): Promise<boolean> {
    const parts = stored.split('$');
    if (parts[0] === 'scrypt-hmac' && parts.length === 6) {
      const [n, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
      // Only parameters a store may set: a stored hash must not choose what a check costs.
      if (!isPinHashCost(n) || r !== SCRYPT_R || p !== SCRYPT_P) return false;
      const expected = Buffer.from(parts[5] as string, 'hex');
      const actual = await scryptAsync(keyed, Buffer.from(parts[4] as string, 'hex'), n, r, p);
      return equalBytes(actual, expected);
    }
    if (parts[0] === 'scrypt' && parts.length === 3) {
      const expected = Buffer.from(parts[2] as string, 'hex');
      const actual = await scryptAsync(pin, Buffer.from(parts[1] as string, 'hex'), PIN_HASH_COST_DEFAULT, 8, 1);
      return equalBytes(actual, expected);
    }
    return false;
  }
}

import { createHash } from 'node:crypto';

/**
 * A scalable Bloom filter of strings (idempotency keys). It answers "certainly never
 * added" or "perhaps added" in constant time and about two bytes per key, so a store
 * can remember every key it ever let go of from its in-memory window without keeping
 * the keys themselves. A "perhaps" is settled by looking in the journal.
 *
 * The filter is a list of Bloom filters, each twice the capacity of the one before, so
 * a store that never evicts a key pays nothing and a busy one grows in a few steps.
 * Each holds 16 bits per key with 11 probes: a false positive about once in 2,000
 * lookups per filter.
 */

const BITS_PER_KEY = 16;
const PROBES = 11;
const FIRST_CAPACITY = 4096;

interface Part {
  capacity: number;
  count: number;
  bits: Uint8Array;
}

/** The checkpoint form: capacity, count and the bits in base64, per part. */
export interface KeyFilterSnapshot {
  parts: { capacity: number; count: number; bits: string }[];
}

function probes(key: string): [number, number] {
  const d = createHash('sha256').update(key, 'utf8').digest();
  // Double hashing (Kirsch-Mitzenmacher): probe i is h1 + i * h2; h2 odd so probes differ.
  return [d.readUInt32LE(0), d.readUInt32LE(4) | 1];
}

function hasIn(part: Part, h1: number, h2: number): boolean {
  const m = part.bits.length * 8;
  for (let i = 0; i < PROBES; i++) {
    const bit = (h1 + Math.imul(i, h2)) >>> 0;
    const at = bit % m;
    if ((part.bits[at >>> 3]! & (1 << (at & 7))) === 0) return false;
  }
  return true;
}

function setIn(part: Part, h1: number, h2: number): void {
  const m = part.bits.length * 8;
  for (let i = 0; i < PROBES; i++) {
    const bit = (h1 + Math.imul(i, h2)) >>> 0;
    const at = bit % m;
    part.bits[at >>> 3]! |= 1 << (at & 7);
  }
}

export class KeyFilter {
  private readonly parts: Part[];

  constructor(snapshot?: KeyFilterSnapshot) {
    this.parts = (snapshot?.parts ?? []).map((p) => {
      const bits = new Uint8Array(Buffer.from(p.bits, 'base64'));
      if (!Number.isSafeInteger(p.capacity) || bits.length !== (p.capacity * BITS_PER_KEY) / 8 || !Number.isSafeInteger(p.count)) {
        throw new RangeError('key filter snapshot does not match its capacity');
      }
      return { capacity: p.capacity, count: p.count, bits };
    });
  }

  /** Keys added so far. */
  get size(): number {
    return this.parts.reduce((n, p) => n + p.count, 0);
  }

  add(key: string): void {
    let part = this.parts[this.parts.length - 1];
    if (part === undefined || part.count >= part.capacity) {
      const capacity = part === undefined ? FIRST_CAPACITY : part.capacity * 2;
      part = { capacity, count: 0, bits: new Uint8Array((capacity * BITS_PER_KEY) / 8) };
      this.parts.push(part);
    }
    const [h1, h2] = probes(key);
    setIn(part, h1, h2);
    part.count += 1;
  }

  /** False: the key was certainly never added. True: it perhaps was. */
  mayHave(key: string): boolean {
    if (this.parts.length === 0) return false;
    const [h1, h2] = probes(key);
    for (const part of this.parts) if (hasIn(part, h1, h2)) return true;
    return false;
  }

  toSnapshot(): KeyFilterSnapshot {
    return { parts: this.parts.map((p) => ({ capacity: p.capacity, count: p.count, bits: Buffer.from(p.bits).toString('base64') })) };
  }
}

import { keyPrint, sha256Print, type KeyPrint } from './key-window.ts';

/**
 * A scalable Bloom filter of strings (idempotency keys). It answers "certainly never
 * added" or "perhaps added" in constant time and three bytes per key, so a store
 * can remember every key it ever let go of from its in-memory window without keeping
 * the keys themselves. A "perhaps" is settled by looking in the journal.
 *
 * The filter is a list of Bloom filters (parts), each twice the capacity of the one
 * before up to a million keys, so a store that never evicts a key pays nothing and a
 * busy one grows in a few steps. Keys are added in the order they leave the window, so
 * each part also records the range of seqs its keys came from: a "perhaps" names the
 * journal ranges to search, each at most a part's worth of events. Each part holds 24
 * bits per key with 16 probes: a false positive about once in 100,000 lookups per part.
 *
 * Probes come from the key's fingerprint (key-window.ts), the only thing the key window
 * keeps of a key it lets go of. Parts written before that probe with the first eight
 * bytes of the key's sha256 and say nothing of it in the checkpoint; they are read and
 * searched as they were, and new keys go into new parts.
 */

const BITS_PER_KEY = 24;
const PROBES = 16;
const FIRST_CAPACITY = 4096;
const CAPACITY_MAX = 1 << 20;

interface Part {
  capacity: number;
  count: number;
  bits: Uint8Array;
  /** Lowest and highest seq of the events whose keys this part holds. */
  fromSeq: number;
  toSeq: number;
  /** Probes from the sha256 of the key (parts written before fingerprints). */
  sha256: boolean;
}

/** The checkpoint form: capacity, count, seq range and the bits in base64, per part. */
export interface KeyFilterSnapshot {
  parts: { capacity: number; count: number; fromSeq: number; toSeq: number; bits: string; probe?: 'print' }[];
}

/** The key's probes, from its fingerprint (the first eight bytes of its sha256, key-window.ts). */
function probes(p: KeyPrint): [number, number] {
  // Double hashing (Kirsch-Mitzenmacher): probe i is h1 + i * h2; h2 odd so probes differ.
  return [p.lo, p.hi | 1];
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
  /** Whether a part probes with sha256: only then is a key's sha256 computed. */
  private readonly anySha256: boolean;

  constructor(snapshot?: KeyFilterSnapshot) {
    this.parts = (snapshot?.parts ?? []).map((p) => {
      const bits = new Uint8Array(Buffer.from(p.bits, 'base64'));
      if (!Number.isSafeInteger(p.capacity) || bits.length !== (p.capacity * BITS_PER_KEY) / 8 || !Number.isSafeInteger(p.count)) {
        throw new RangeError('key filter snapshot does not match its capacity');
      }
      return { capacity: p.capacity, count: p.count, fromSeq: p.fromSeq, toSeq: p.toSeq, bits, sha256: p.probe !== 'print' };
    });
    this.anySha256 = this.parts.some((p) => p.sha256);
  }

  /** Keys added so far. */
  get size(): number {
    return this.parts.reduce((n, p) => n + p.count, 0);
  }

  /** Adds the key of the event at `seq`. */
  add(key: string, seq: number): void {
    this.addPrint(keyPrint(key), seq);
  }

  /** Adds a key by its fingerprint (a key leaving the window, which keeps only that). */
  addPrint(print: KeyPrint, seq: number): void {
    let part = this.parts[this.parts.length - 1];
    if (part === undefined || part.count >= part.capacity || part.sha256) {
      const capacity = part === undefined ? FIRST_CAPACITY : Math.min(part.capacity * 2, CAPACITY_MAX);
      part = { capacity, count: 0, bits: new Uint8Array((capacity * BITS_PER_KEY) / 8), fromSeq: seq, toSeq: seq, sha256: false };
      this.parts.push(part);
    }
    const [h1, h2] = probes(print);
    setIn(part, h1, h2);
    part.count += 1;
    part.fromSeq = Math.min(part.fromSeq, seq);
    part.toSeq = Math.max(part.toSeq, seq);
  }

  /** False: the key was certainly never added. True: it perhaps was. */
  mayHave(key: string): boolean {
    if (this.parts.length === 0) return false;
    const print = keyPrint(key);
    const sha = this.anySha256 ? sha256Print(key) : print;
    for (const part of this.parts) {
      const [h1, h2] = probes(part.sha256 ? sha : print);
      if (hasIn(part, h1, h2)) return true;
    }
    return false;
  }

  /** The seq ranges, newest first, in which the key's event may be: empty when it was certainly never added. */
  ranges(key: string): { fromSeq: number; toSeq: number }[] {
    if (this.parts.length === 0) return [];
    const print = keyPrint(key);
    const sha = this.anySha256 ? sha256Print(key) : print;
    const out: { fromSeq: number; toSeq: number }[] = [];
    for (let i = this.parts.length - 1; i >= 0; i--) {
      const part = this.parts[i] as Part;
      const [h1, h2] = probes(part.sha256 ? sha : print);
      if (hasIn(part, h1, h2)) out.push({ fromSeq: part.fromSeq, toSeq: part.toSeq });
    }
    return out;
  }

  toSnapshot(): KeyFilterSnapshot {
    return {
      parts: this.parts.map((p) => ({
        capacity: p.capacity,
        count: p.count,
        fromSeq: p.fromSeq,
        toSeq: p.toSeq,
        bits: Buffer.from(p.bits).toString('base64'),
        ...(p.sha256 ? {} : { probe: 'print' as const }),
      })),
    };
  }
}

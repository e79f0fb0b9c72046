import { hash } from 'node:crypto';

/**
 * The window of recent idempotency keys: key -> the seq of the event it produced, oldest
 * first, kept off the JavaScript heap.
 *
 * A store remembers up to a million keys. Held as a Map of strings they took about 90 MB
 * of heap, which every full garbage collection marked again, so a store's sales grew
 * slower as its window filled. Here each key is kept as a 64-bit fingerprint (keyPrint,
 * which the evicted-key filter probes with too) and its seq, in typed arrays: a ring in insertion order (16 bytes a key) and an open-addressing
 * index into it (4 to 8 bytes a key), about 24 MB for a million keys, none of it scanned
 * by the collector.
 *
 * A fingerprint names a key only with overwhelming probability: two different keys share
 * one about once in 2^64 pairs, so a full window of a million keys meets such a pair about
 * once in 3 x 10^7 windows. Callers treat a match as "this key, unless the event at that
 * seq says otherwise": the ledger reads that event before it answers from it (it has to,
 * for the request's hash) and refuses a request whose key the event does not carry.
 * The fingerprint is no cryptographic hash: a till could choose two keys of its own that
 * share one, and then its second request is refused, which harms nobody else. Making
 * another till's key look used would need that key before it is sent, and tills make
 * theirs from random UUIDs.
 */

/** The fingerprint of a key: two unsigned 32-bit words. */
export interface KeyPrint {
  lo: number;
  hi: number;
}

const SEED_LO = 0x9747b28c;
const SEED_HI = 0x5bd1e995;

/**
 * MurmurHash3 (x86, 32-bit) of a string's UTF-16 code units, two to a block. Keys are
 * short ASCII; this costs a tenth of a sha256 call, which would add a microsecond to every
 * sale and a second to the replay of a million keyed events.
 */
function murmur(key: string, seed: number): number {
  let h = seed >>> 0;
  const n = key.length;
  let i = 0;
  for (; i + 1 < n; i += 2) h = mixBlock(h, key.charCodeAt(i) | (key.charCodeAt(i + 1) << 16));
  if (i < n) h ^= scramble(key.charCodeAt(i));
  return finish(h, n);
}

function scramble(k: number): number {
  k = Math.imul(k >>> 0, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, 0x1b873593);
}

function mixBlock(h: number, k: number): number {
  return mixScrambled(h, scramble(k));
}

function mixScrambled(h: number, scrambled: number): number {
  h ^= scrambled;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finish(h: number, n: number): number {
  h ^= n * 2;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

let lastKey = '';
let lastPrint: KeyPrint = { lo: 0, hi: 0 };

/**
 * The fingerprint of `key`: two MurmurHash3 values with different seeds. A request's key
 * is looked up, checked and stored within a few calls of one another, so the last one is
 * remembered.
 */
export function keyPrint(key: string): KeyPrint {
  if (key === lastKey && key !== '') return lastPrint;
  lastPrint = { lo: murmur(key, SEED_LO), hi: murmur(key, SEED_HI) };
  lastKey = key;
  return lastPrint;
}

/**
 * keyPrint() of the string of the ASCII bytes buf[start, end), whose code units are those
 * bytes: both hashes in one pass, each block scrambled once.
 */
export function asciiKeyPrint(buf: Uint8Array, start: number, end: number): KeyPrint {
  let lo = SEED_LO >>> 0;
  let hi = SEED_HI >>> 0;
  let i = start;
  for (; i + 1 < end; i += 2) {
    const k = scramble((buf[i] as number) | ((buf[i + 1] as number) << 16));
    lo = mixScrambled(lo, k);
    hi = mixScrambled(hi, k);
  }
  if (i < end) {
    const k = scramble(buf[i] as number);
    lo ^= k;
    hi ^= k;
  }
  return { lo: finish(lo, end - start), hi: finish(hi, end - start) };
}

/**
 * Remembers `print` as keyPrint(key), as if it had just been computed: a replay thread
 * computes the prints of the keys it reads, and the replaying thread, which adds each to
 * the window right after, need not hash them again. The print must be keyPrint(key).
 */
export function knownKeyPrint(key: string, print: KeyPrint): void {
  lastKey = key;
  lastPrint = print;
}

/** The fingerprint older key filters probe with: the first eight bytes of the key's sha256. */
export function sha256Print(key: string): KeyPrint {
  const d = hash('sha256', key, 'buffer');
  return { lo: d.readUInt32LE(0), hi: d.readUInt32LE(4) };
}

/** The printable form of a fingerprint: 16 hex digits. */
export function keyPrintHex(p: KeyPrint): string {
  return p.lo.toString(16).padStart(8, '0') + p.hi.toString(16).padStart(8, '0');
}

/** The checkpoint form: the entries oldest first, each column little-endian in base64. */
export interface KeyWindowSnapshot {
  count: number;
  lo: string;
  hi: string;
  seqs: string;
}

const FIRST_CAPACITY = 1024;
const EMPTY = 0;

export class KeyWindow {
  /** The ring: slot i holds a key's fingerprint and seq; `head` is the oldest. */
  private lo: Uint32Array;
  private hi: Uint32Array;
  private seqs: Float64Array;
  private head = 0;
  private count = 0;
  /** Open addressing, linear probing: slot + 1 of the ring, 0 for an empty bucket. Twice the ring's capacity. */
  private index: Uint32Array;
  /** Whether the index holds the ring's entries; when not (deferIndex), the next lookup builds it. */
  private indexed = true;

  constructor(capacity = FIRST_CAPACITY) {
    const c = Math.max(FIRST_CAPACITY, 2 ** Math.ceil(Math.log2(capacity)));
    this.lo = new Uint32Array(c);
    this.hi = new Uint32Array(c);
    this.seqs = new Float64Array(c);
    this.index = new Uint32Array(c * 2);
  }

  get size(): number {
    return this.count;
  }

  /** The seq stored for the key's fingerprint (the newest, should two keys share one), or undefined. */
  get(key: string): number | undefined {
    const p = keyPrint(key);
    this.ensureIndex();
    const slot = this.find(p.lo, p.hi);
    return slot === -1 ? undefined : (this.seqs[slot] as number);
  }

  has(key: string): boolean {
    const p = keyPrint(key);
    this.ensureIndex();
    return this.find(p.lo, p.hi) !== -1;
  }

  /** Adds the key of the event at `seq`, the newest entry. */
  set(key: string, seq: number): void {
    const p = keyPrint(key);
    this.push(p.lo, p.hi, seq);
  }

  /**
   * Until the next lookup, adds and evicts keys in the ring alone, and then builds the index
   * in one pass: for a replay, which adds up to a million keys and looks up none. Kept as
   * they come, their index cost a random write apiece, and a rebuild at every doubling.
   */
  deferIndex(): void {
    if (!this.indexed) return;
    this.indexed = false;
    this.index = new Uint32Array(0);
  }

  /** Takes the oldest entry out and returns it, or null when the window is empty. */
  evictOldest(): { print: KeyPrint; seq: number } | null {
    if (this.count === 0) return null;
    const slot = this.head;
    const out = { print: { lo: this.lo[slot] as number, hi: this.hi[slot] as number }, seq: this.seqs[slot] as number };
    if (this.indexed) this.unindex(slot);
    this.head = (this.head + 1) & (this.lo.length - 1);
    this.count -= 1;
    return out;
  }

  /** The entries, oldest first. */
  *entries(): IterableIterator<[KeyPrint, number]> {
    const mask = this.lo.length - 1;
    for (let i = 0; i < this.count; i++) {
      const s = (this.head + i) & mask;
      yield [{ lo: this.lo[s] as number, hi: this.hi[s] as number }, this.seqs[s] as number];
    }
  }

  toSnapshot(): KeyWindowSnapshot {
    const lo = Buffer.allocUnsafe(this.count * 4);
    const hi = Buffer.allocUnsafe(this.count * 4);
    const seqs = Buffer.allocUnsafe(this.count * 8);
    const mask = this.lo.length - 1;
    for (let i = 0; i < this.count; i++) {
      const s = (this.head + i) & mask;
      lo.writeUInt32LE(this.lo[s] as number, i * 4);
      hi.writeUInt32LE(this.hi[s] as number, i * 4);
      seqs.writeDoubleLE(this.seqs[s] as number, i * 8);
    }
    return { count: this.count, lo: lo.toString('base64'), hi: hi.toString('base64'), seqs: seqs.toString('base64') };
  }

  static fromSnapshot(s: KeyWindowSnapshot): KeyWindow {
    if (!Number.isSafeInteger(s.count) || s.count < 0) throw new RangeError('key window snapshot: count is not a whole number');
    const lo = Buffer.from(s.lo, 'base64');
    const hi = Buffer.from(s.hi, 'base64');
    const seqs = Buffer.from(s.seqs, 'base64');
    if (lo.length !== s.count * 4 || hi.length !== s.count * 4 || seqs.length !== s.count * 8) {
      throw new RangeError('key window snapshot does not hold its count of entries');
    }
    const w = new KeyWindow(s.count * 2);
    let prev = 0;
    for (let i = 0; i < s.count; i++) {
      const seq = seqs.readDoubleLE(i * 8);
      if (!Number.isSafeInteger(seq) || seq <= prev) throw new RangeError('key window snapshot: seqs are not increasing whole numbers');
      prev = seq;
      w.push(lo.readUInt32LE(i * 4), hi.readUInt32LE(i * 4), seq);
    }
    return w;
  }

  /** A window holding these keys, in seq order (checkpoints that stored the keys themselves). */
  static fromEntries(entries: Iterable<readonly [string, number]>): KeyWindow {
    const sorted = [...entries].sort((a, b) => a[1] - b[1]);
    const w = new KeyWindow(sorted.length * 2);
    for (const [key, seq] of sorted) w.set(key, seq);
    return w;
  }

  private push(lo: number, hi: number, seq: number): void {
    if (this.count === this.lo.length) this.grow();
    const slot = (this.head + this.count) & (this.lo.length - 1);
    this.lo[slot] = lo;
    this.hi[slot] = hi;
    this.seqs[slot] = seq;
    this.count += 1;
    if (this.indexed) this.indexSlot(slot);
  }

  /** Builds the index now if it was deferred, rather than at the next lookup. */
  ensureIndex(): void {
    if (this.indexed) return;
    this.index = new Uint32Array(this.lo.length * 2);
    const mask = this.lo.length - 1;
    for (let i = 0; i < this.count; i++) this.indexSlot((this.head + i) & mask);
    this.indexed = true;
  }

  private find(lo: number, hi: number): number {
    const mask = this.index.length - 1;
    let found = -1;
    for (let b = lo & mask; ; b = (b + 1) & mask) {
      const e = this.index[b] as number;
      if (e === EMPTY) return found;
      const slot = e - 1;
      // Of two keys with one fingerprint, the newer one (the later seq) answers.
      if (this.lo[slot] === lo && this.hi[slot] === hi && (found === -1 || (this.seqs[slot] as number) > (this.seqs[found] as number))) found = slot;
    }
  }

  private indexSlot(slot: number): void {
    const mask = this.index.length - 1;
    let b = (this.lo[slot] as number) & mask;
    while (this.index[b] !== EMPTY) b = (b + 1) & mask;
    this.index[b] = slot + 1;
  }

  /** Removes the ring slot from the index, shifting later entries of its cluster back (no tombstones). */
  private unindex(slot: number): void {
    const mask = this.index.length - 1;
    let i = (this.lo[slot] as number) & mask;
    while (this.index[i] !== slot + 1) {
      if (this.index[i] === EMPTY) throw new Error('assertion failed: a window entry is in its index');
      i = (i + 1) & mask;
    }
    for (let j = (i + 1) & mask; this.index[j] !== EMPTY; j = (j + 1) & mask) {
      const home = (this.lo[(this.index[j] as number) - 1] as number) & mask;
      // The entry at j may move to the hole at i unless its home lies cyclically in (i, j].
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (stays) continue;
      this.index[i] = this.index[j] as number;
      i = j;
    }
    this.index[i] = EMPTY;
  }

  /** Doubles the ring (oldest entry first again) and rebuilds the index. */
  private grow(): void {
    const c = this.lo.length * 2;
    const lo = new Uint32Array(c);
    const hi = new Uint32Array(c);
    const seqs = new Float64Array(c);
    const mask = this.lo.length - 1;
    for (let i = 0; i < this.count; i++) {
      const s = (this.head + i) & mask;
      lo[i] = this.lo[s] as number;
      hi[i] = this.hi[s] as number;
      seqs[i] = this.seqs[s] as number;
    }
    this.lo = lo;
    this.hi = hi;
    this.seqs = seqs;
    this.head = 0;
    if (!this.indexed) return;
    this.index = new Uint32Array(c * 2);
    for (let i = 0; i < this.count; i++) this.indexSlot(i);
  }
}

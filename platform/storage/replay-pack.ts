import { isAscii } from 'node:buffer';
import type { EventParser } from './journal-format.ts';

/**
 * How a replay thread hands parsed events to the replaying thread (replay-threads.ts).
 *
 * Handing over the objects themselves costs the receiving thread about what parsing
 * them would: structured cloning rebuilds every object and string, and JSON text must be
 * parsed again. A codec instead writes an event's fields into a few flat buffers that
 * cross threads without copying, and rebuilds the event on the other side with object
 * literals, much faster than either:
 * - numbers go into a Float64Array, exactly as they were (a double holds any JSON number);
 * - strings that recur (accounts, tokens, customers, terminals) become symbols: a number
 *   into a table the thread extends as it meets new ones, so each such string crosses once
 *   and the events rebuilt from it share one string, which the replaying thread then finds
 *   quickly as a key in its state;
 * - other strings go as UTF-8 bytes. A chunk whose bytes are all ASCII (those of the ledger's
 *   sales are) is read as one string, and each of its strings is a slice of that: making a
 *   string from bytes is a call into the runtime, which cost more than anything else the
 *   unpacking did. A slice keeps the chunk's string alive for as long as it is kept
 *   itself: a few tens of kilobytes, for the rare string a consumer keeps.
 * An event the codec does not pack whole is handed over as JSON text.
 */

/** What a codec packs and unpacks: the events of one journal, on both sides of the threads. */
export interface ReplayCodec<E> {
  /** How the replay thread reads an event's bytes (the parser of a sequential replay). */
  readonly parse: EventParser;
  /**
   * Writes the event with `p`, or returns false, having written nothing, for an event
   * it does not pack exactly: the thread then sends it as JSON. What unpack() makes of
   * what pack() wrote must equal the event.
   */
  pack(event: E, p: EventPacker): boolean;
  /**
   * Optional: packs the event straight from its bytes buf[start, end), without making it
   * an object first, exactly as pack() packs what parse() makes of those bytes; or returns
   * false for bytes it does not read this way (the thread then parses them and calls
   * pack(), having taken back whatever this wrote). `seq` and `prev` are the line's, as
   * the line check found them at the start of the text: prev is the 64 characters after
   * `"prev":"` there, which the codec need not compare again. It must return false for an
   * event whose own seq or prev would differ all the same (one that repeats its seq or prev
   * key, say), which the parsed path reports as damage.
   */
  packText?(buf: Buffer, start: number, end: number, seq: number, prev: string, p: EventPacker): boolean;
  /**
   * Reads back, with the same calls in the same order, what pack() wrote. `seq` and
   * `prev` are the line's, which the thread checked are the event's own `seq` and
   * `prev`: a codec need not pack them.
   */
  unpack(u: EventUnpacker, seq: number, prev: string): E;
}

/** One chunk of packed events as it crosses to the replaying thread. */
export interface Packed {
  nums: Float64Array;
  bytes: Uint8Array;
  /** The symbols first used in this chunk, numbered on from those before. */
  symbols: string[];
  /** The events sent as JSON text, in order. */
  texts: string[];
}

/** A chunk written into buffers the receiver already holds: how much of each it fills. */
export interface PackedInto {
  n: number;
  b: number;
  symbols: string[];
  texts: string[];
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

// Room for a chunk of CHUNK_LINES sales (replay-threads.ts) without growing.
const NUMS_INITIAL = 8192;
const BYTES_INITIAL = 64 * 1024;

/**
 * The symbols of ASCII strings found by their bytes, without making the string: an
 * open-addressing table over the symbols met so far, which keeps their bytes.
 */
class AsciiSymbols {
  /** Slot -> entry + 1 (0: empty); twice the room of the entries at least. */
  private slots = new Int32Array(4096);
  private hashes = new Int32Array(1024);
  private starts = new Int32Array(1024);
  private lengths = new Int32Array(1024);
  private symbols = new Int32Array(1024);
  private count = 0;
  private bytes = new Uint8Array(64 * 1024);
  private used = 0;

  /** The symbol of the bytes buf[start, end), or -1 when they are not known yet. */
  find(buf: Uint8Array, start: number, end: number, h: number): number {
    const mask = this.slots.length - 1;
    const len = end - start;
    for (let slot = h & mask; ; slot = (slot + 1) & mask) {
      const e = (this.slots[slot] as number) - 1;
      if (e === -1) return -1;
      if (this.hashes[e] !== h || this.lengths[e] !== len) continue;
      const bytes = this.bytes;
      const at = this.starts[e] as number;
      let k = 0;
      while (k < len && bytes[at + k] === buf[start + k]) k++;
      if (k === len) return this.symbols[e] as number;
    }
  }

  add(buf: Uint8Array, start: number, end: number, h: number, symbol: number): void {
    const len = end - start;
    if (this.count === this.hashes.length) {
      this.hashes = grown(this.hashes);
      this.starts = grown(this.starts);
      this.lengths = grown(this.lengths);
      this.symbols = grown(this.symbols);
    }
    this.bytes = withRoom(this.bytes, this.used, len);
    const e = this.count++;
    this.hashes[e] = h;
    this.starts[e] = this.used;
    this.lengths[e] = len;
    this.symbols[e] = symbol;
    this.bytes.set(buf.subarray(start, end), this.used);
    this.used += len;
    if (this.count * 2 > this.slots.length) {
      this.slots = new Int32Array(this.slots.length * 2);
      for (let i = 0; i < this.count; i++) this.index(i);
    } else {
      this.index(e);
    }
  }

  private index(e: number): void {
    const mask = this.slots.length - 1;
    let slot = (this.hashes[e] as number) & mask;
    while (this.slots[slot] !== 0) slot = (slot + 1) & mask;
    this.slots[slot] = e + 1;
  }
}

/** bytes, or a copy of its first `used` bytes in a buffer at least twice as large, so that `more` bytes fit after them. */
function withRoom(bytes: Uint8Array<ArrayBuffer>, used: number, more: number): Uint8Array<ArrayBuffer> {
  if (used + more <= bytes.length) return bytes;
  const grownBytes = new Uint8Array(Math.max(bytes.length * 2, used + more));
  grownBytes.set(bytes.subarray(0, used));
  return grownBytes;
}

function grown(a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}

/** The replay thread's side: fills one chunk at a time. */
export class EventPacker {
  private nums = new Float64Array(NUMS_INITIAL);
  private n = 0;
  private bytes = new Uint8Array(BYTES_INITIAL);
  private b = 0;
  private readonly table = new Map<string, number>();
  private fresh: string[] = [];
  private texts: string[] = [];
  private readonly asciiSymbols = new AsciiSymbols();

  num(x: number): void {
    if (this.n === this.nums.length) {
      const grown = new Float64Array(this.nums.length * 2);
      grown.set(this.nums);
      this.nums = grown;
    }
    this.nums[this.n++] = x;
  }

  /** A string, read back as a string equal to it (EventUnpacker.str). */
  str(s: string): void {
    // UTF-8 takes at most three bytes for each UTF-16 unit.
    this.bytes = withRoom(this.bytes, this.b, s.length * 3);
    const { written } = ENCODER.encodeInto(s, this.bytes.subarray(this.b));
    this.b += written;
    this.num(written);
  }

  /** The string of the ASCII bytes buf[start, end), as str() would write it, without making the string. */
  ascii(buf: Uint8Array, start: number, end: number): void {
    const len = end - start;
    this.bytes = withRoom(this.bytes, this.b, len);
    // Byte by byte: these strings are short, and a subarray to set() from costs more.
    const bytes = this.bytes;
    const b = this.b;
    for (let k = 0; k < len; k++) bytes[b + k] = buf[start + k] as number;
    this.b = b + len;
    this.num(len);
  }

  /**
   * ascii() of the JSON string whose opening quote is at buf[from], when it holds only
   * printable ASCII without an escape (its bytes are then the string), found and copied in
   * one pass. Returns the index after its closing quote; or -1, having written nothing, for
   * any other string, or one that does not close before `end`.
   */
  asciiString(buf: Uint8Array, from: number, end: number): number {
    if (from >= end || buf[from] !== QUOTE) return -1;
    this.bytes = withRoom(this.bytes, this.b, end - from);
    const bytes = this.bytes;
    const at = this.b - from - 1;
    let i = from + 1;
    for (;;) {
      if (i >= end) return -1;
      const c = buf[i] as number;
      if (c === QUOTE) break;
      if (c < 0x20 || c > 0x7e || c === BACKSLASH) return -1;
      bytes[at + i] = c;
      i += 1;
    }
    const len = i - from - 1;
    this.b += len;
    this.num(len);
    return i + 1;
  }

  /**
   * sym() of the string of the ASCII bytes buf[start, end), found by those bytes: making
   * the string and looking it up cost a replay thread more than anything else it did per
   * field. The string is made once, when the bytes are first met.
   */
  symAscii(buf: Uint8Array, start: number, end: number): void {
    // FNV-1a over the bytes.
    let h = 0x811c9dc5;
    for (let k = start; k < end; k++) h = Math.imul(h ^ (buf[k] as number), 0x01000193);
    const known = this.asciiSymbols.find(buf, start, end, h);
    if (known !== -1) {
      this.num(known);
      return;
    }
    this.sym(Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString('latin1'));
    this.asciiSymbols.add(buf, start, end, h, this.nums[this.n - 1] as number);
  }

  /** A number written now and given its value later with fill(), such as a count of what follows. */
  slot(): number {
    this.num(0);
    return this.n - 1;
  }

  fill(slot: number, x: number): void {
    this.nums[slot] = x;
  }

  /** A string that recurs (or null), read back as the one string of its symbol. */
  sym(s: string | null): void {
    if (s === null) {
      this.num(-1);
      return;
    }
    let i = this.table.get(s);
    if (i === undefined) {
      i = this.table.size;
      this.table.set(s, i);
      this.fresh.push(s);
    }
    this.num(i);
  }

  /** A value sent as JSON text. */
  json(value: unknown): void {
    this.texts.push(JSON.stringify(value));
  }

  /** Where the chunk ends now, to go back to if a codec gives up half way. */
  mark(): { n: number; b: number } {
    return { n: this.n, b: this.b };
  }

  rewind(m: { n: number; b: number }): void {
    this.n = m.n;
    this.b = m.b;
  }

  get empty(): boolean {
    return this.n === 0 && this.texts.length === 0;
  }

  /**
   * The chunk so far copied into `nums` and `bytes` (a page the replaying thread reads
   * in place), and a fresh one begun; or null, with nothing changed, when it does not fit.
   */
  takeInto(nums: Float64Array, bytes: Uint8Array): PackedInto | null {
    if (this.n > nums.length || this.b > bytes.length) return null;
    nums.set(this.nums.subarray(0, this.n));
    bytes.set(this.bytes.subarray(0, this.b));
    const out: PackedInto = { n: this.n, b: this.b, symbols: this.fresh, texts: this.texts };
    this.n = 0;
    this.b = 0;
    this.fresh = [];
    this.texts = [];
    return out;
  }

  /** The chunk so far, in buffers of its own (to be transferred), and a fresh one begun. */
  take(): Packed {
    // Copied with set() (takeInto): a Float64Array's slice() copies element by element, five times slower.
    const nums = new Float64Array(this.n);
    const bytes = new Uint8Array(this.b);
    const { symbols, texts } = this.takeInto(nums, bytes) as PackedInto;
    return { nums, bytes, symbols, texts };
  }
}

const ENCODER = new TextEncoder();

/** The replaying thread's side, one per replay thread: its symbols accumulate across chunks. */
export class EventUnpacker {
  private readonly symbols: string[] = [];
  private nums: Float64Array = new Float64Array(0);
  private i = 0;
  private bytes: Buffer = Buffer.alloc(0);
  /** The chunk's bytes as one string when they are all ASCII (one character a byte), else null. */
  private text: string | null = null;
  private b = 0;
  private texts: string[] = [];
  private t = 0;

  load(p: Packed): void {
    for (const s of p.symbols) this.symbols.push(s);
    this.nums = p.nums;
    this.i = 0;
    this.bytes = Buffer.from(p.bytes.buffer, p.bytes.byteOffset, p.bytes.byteLength);
    this.text = isAscii(this.bytes) ? this.bytes.toString('latin1') : null;
    this.b = 0;
    this.texts = p.texts;
    this.t = 0;
  }

  num(): number {
    const x = this.nums[this.i++];
    if (x === undefined) throw new RangeError('a packed chunk ended early');
    return x;
  }

  str(): string {
    const len = this.num();
    const end = this.b + len;
    if (end > this.bytes.length) throw new RangeError('a packed chunk ended early');
    const s = this.text === null ? this.bytes.toString('utf8', this.b, end) : this.text.slice(this.b, end);
    this.b = end;
    return s;
  }

  /** The symbol's string; null for -1. */
  sym(): string | null {
    const i = this.num();
    if (i === -1) return null;
    const s = this.symbols[i];
    if (s === undefined) throw new RangeError(`a packed chunk names symbol ${i}, which was never sent`);
    return s;
  }

  /** A symbol that cannot be null. */
  name(): string {
    const s = this.sym();
    if (s === null) throw new RangeError('a packed chunk has no string where one is needed');
    return s;
  }

  json(): unknown {
    const text = this.texts[this.t++];
    if (text === undefined) throw new RangeError('a packed chunk ended early');
    return JSON.parse(text);
  }
}

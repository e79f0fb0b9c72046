import { asciiKeyPrint } from '../../platform/storage/key-window.ts';
import type { EventPacker } from '../../platform/storage/replay-pack.ts';
import { AFTER_ALLOCATIONS, AFTER_LINES, bracketBefore } from './replay-parse.ts';

/**
 * Packs a plain sale for the replay threads straight from its bytes (ReplayCodec.packText),
 * without parsing it into objects first: parsing and then packing the objects cost a
 * replay thread most of its time.
 *
 * The scan reads the text parseStateEvent would parse (the sale without its lines and
 * allocations) against one template: the keys of a plain sale in the order the ledger
 * writes them (replay-codec.ts), with no space anywhere. It writes what stateEventCodec.pack
 * writes for the event JSON.parse makes of that text, and gives up (false) at anything
 * where the two might differ, so that such a sale takes the parser's path:
 * - a string with an escape, a control character or a byte outside ASCII (a string of
 *   printable ASCII without `\` is its own bytes);
 * - a number other than an integer of at most 15 digits (which is exactly its digits);
 * - in a record of numbers: a key that begins with a digit (JSON.parse would order it
 *   first), `__proto__`, or a key twice (JSON.parse keeps the last);
 * - any other key, order, type or layout.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;
const DIGITS_MAX = 15;

/**
 * A fixed piece of the template, compared four bytes at a time (as little-endian 32-bit
 * words read through a DataView), then byte by byte for the rest: half the cost of a
 * comparison byte by byte, and a sale has some thirty of them.
 */
class Literal {
  readonly bytes: Buffer;
  readonly words: Int32Array;
  readonly length: number;

  constructor(text: string) {
    this.bytes = Buffer.from(text, 'latin1');
    this.length = this.bytes.length;
    this.words = new Int32Array(this.length >> 2);
    for (let k = 0; k < this.words.length; k++) this.words[k] = this.bytes.readInt32LE(4 * k);
  }
}

const lit = (s: string): Literal => new Literal(s);
const SEQ = lit('{"seq":');
const PREV_OPEN = lit(',"prev":"');
const V = lit(',"v":');
const VENDOR = lit(',"vendor":');
const AT = lit(',"at":');
const TERMINAL = lit(',"terminal":');
const CASHIER = lit(',"cashier":');
const KEY = lit(',"key":');
const BODY_HASH = lit(',"bodyHash":');
const TYPE_SALE_POSTINGS = lit(',"type":"sale","postings":[');
const ACCOUNT = lit('{"account":');
const TOKEN = lit(',"token":');
const UNITS = lit(',"units":');
const DATA_SALE_ID = lit('],"data":{"saleId":');
const CUSTOMER = lit(',"customer":');
const CURRENCY = lit(',"currency":');
const LINES = lit(',"lines":[');
const DEBITS = lit('"debits":');
const TOTAL = lit(',"totalMinor":');
const DUE = lit(',"cash":{"dueMinor":');
const TENDERED = lit(',"tenderedMinor":');
const CHANGE = lit(',"changeMinor":');
const BALANCES_AFTER = lit('},"balancesAfter":');
const NULL = lit('null');
const END = lit('}}');

/** A cursor over the text: each read moves on past what it read, or fails and leaves it anywhere. */
class Scan {
  buf: Buffer = Buffer.alloc(0);
  /** The same bytes, to read words from. */
  view: DataView = new DataView(new ArrayBuffer(0));
  i = 0;
  end = 0;
  /** The last string read: its bytes are buf[a, b). */
  a = 0;
  b = 0;
  /** The last number read. */
  n = 0;

  at(buf: Buffer, start: number, end: number): void {
    // A thread reads its lines from one buffer after another; the view follows it.
    if (buf !== this.buf) this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.buf = buf;
    this.i = start;
    this.end = end;
  }

  lit(l: Literal): boolean {
    const { view, i } = this;
    const length = l.length;
    if (i + length > this.end) return false;
    const words = l.words;
    for (let k = 0; k < words.length; k++) if (view.getInt32(i + 4 * k, true) !== words[k]) return false;
    const bytes = l.bytes;
    for (let k = words.length * 4; k < length; k++) if (this.buf[i + k] !== bytes[k]) return false;
    this.i = i + length;
    return true;
  }

  byte(c: number): boolean {
    if (this.i >= this.end || this.buf[this.i] !== c) return false;
    this.i += 1;
    return true;
  }

  /** A string of printable ASCII without escapes. */
  str(): boolean {
    const { buf, end } = this;
    let i = this.i;
    if (i >= end || buf[i] !== QUOTE) return false;
    const a = ++i;
    for (;;) {
      if (i >= end) return false;
      const c = buf[i] as number;
      if (c === QUOTE) break;
      if (c < 0x20 || c > 0x7e || c === BACKSLASH) return false;
      i += 1;
    }
    this.a = a;
    this.b = i;
    this.i = i + 1;
    return true;
  }

  /** A string as str() reads it, written with p.ascii() as it is read. */
  strTo(p: EventPacker): boolean {
    const next = p.asciiString(this.buf, this.i, this.end);
    if (next === -1) return false;
    this.a = this.i + 1;
    this.b = next - 1;
    this.i = next;
    return true;
  }

  /** `null` (true, and nothing read) or a string as str() reads it. */
  isNull(): boolean {
    return this.lit(NULL);
  }

  /** An integer of at most DIGITS_MAX digits, without a fraction or an exponent. */
  int(): boolean {
    const { buf, end } = this;
    let i = this.i;
    const negative = i < end && buf[i] === MINUS;
    if (negative) i += 1;
    const first = i;
    let n = 0;
    while (i < end) {
      const c = buf[i] as number;
      if (c < ZERO || c > NINE) break;
      n = n * 10 + (c - ZERO);
      i += 1;
    }
    const digits = i - first;
    if (digits === 0 || digits > DIGITS_MAX || (digits > 1 && buf[first] === ZERO)) return false;
    // What follows must end the number: a comma or a closing brace in this template.
    if (i >= end || (buf[i] !== COMMA && buf[i] !== CLOSE_BRACE)) return false;
    this.n = negative ? -n : n;
    this.i = i;
    return true;
  }
}

const scan = new Scan();
// The keys of the record being read, to find one twice: records have a few keys, and a
// record with more than these takes the parser's path.
const RECORD_KEYS_MAX = 64;
const keyStarts = new Int32Array(RECORD_KEYS_MAX);
const keyEnds = new Int32Array(RECORD_KEYS_MAX);

function sameBytes(buf: Buffer, a1: number, b1: number, a2: number, b2: number): boolean {
  if (b1 - a1 !== b2 - a2) return false;
  for (let k = 0; k < b1 - a1; k++) if (buf[a1 + k] !== buf[a2 + k]) return false;
  return true;
}

/** Whether buf[a, b) holds the string `text`, all of whose characters are ASCII. */
function isText(buf: Buffer, a: number, b: number, text: string): boolean {
  if (b - a !== text.length) return false;
  for (let k = 0; k < text.length; k++) if (buf[a + k] !== text.charCodeAt(k)) return false;
  return true;
}

/** A record of numbers, packed as the codec's packRecord packs it. */
function record(s: Scan, p: EventPacker): boolean {
  if (!s.byte(OPEN_BRACE)) return false;
  const count = p.slot();
  if (s.byte(CLOSE_BRACE)) return true;
  let keys = 0;
  for (;;) {
    if (!s.str() || keys === RECORD_KEYS_MAX) return false;
    const { a, b } = s;
    if (a < b && (s.buf[a] as number) >= ZERO && (s.buf[a] as number) <= NINE) return false;
    if (isText(s.buf, a, b, '__proto__')) return false;
    for (let k = 0; k < keys; k++) if (sameBytes(s.buf, a, b, keyStarts[k] as number, keyEnds[k] as number)) return false;
    keyStarts[keys] = a;
    keyEnds[keys] = b;
    keys += 1;
    p.symAscii(s.buf, s.a, s.b);
    if (!s.byte(COLON) || !s.int()) return false;
    p.num(s.n);
    if (s.byte(CLOSE_BRACE)) break;
    if (!s.byte(COMMA)) return false;
  }
  p.fill(count, keys);
  return true;
}

/** A string or null, packed as a symbol. */
function symOrNull(s: Scan, p: EventPacker): boolean {
  if (s.isNull()) p.sym(null);
  else if (s.str()) p.symAscii(s.buf, s.a, s.b);
  else return false;
  return true;
}

/** A string or null, packed as the codec packs bodyHash: 0, or 1 and the string. */
function strOrNull(s: Scan, p: EventPacker): boolean {
  if (s.isNull()) p.num(0);
  else {
    p.num(1);
    if (!s.strTo(p)) return false;
  }
  return true;
}

/** A key or null, packed as the codec packs it: 0, or 1, the string and its fingerprint. */
function keyOrNull(s: Scan, p: EventPacker): boolean {
  if (s.isNull()) {
    p.num(0);
    return true;
  }
  if (!strOrNull(s, p)) return false;
  const print = asciiKeyPrint(s.buf, s.a, s.b);
  p.num(print.lo);
  p.num(print.hi);
  return true;
}

/**
 * Packs the sale buf[start, end) as stateEventCodec.pack packs parseStateEvent's event for
 * it, or returns false (what it wrote is then the caller's to take back). `prev` is the
 * line's as the caller checked it: the 64 bytes after `"prev":"` at the start of the text
 * (LineCheck), so they are skipped here rather than compared again.
 *
 * One pass from the start: the head up to the sale's lines, then the tail from its debits
 * on. The lines' key follows the currency in every sale the ledger writes, and nothing
 * before it can hold `"lines":[` (every string of the head is plain ASCII, without a quote),
 * so the text left out is the one parseStateEvent cuts away (replay-parse.ts).
 */
export function packSaleText(buf: Buffer, start: number, end: number, seq: number, _prev: string, p: EventPacker): boolean {
  const s = scan;
  // The head: the envelope, the postings, and the data up to its lines.
  s.at(buf, start, end);
  if (!s.lit(SEQ) || !s.int() || s.n !== seq) return false;
  if (!s.lit(PREV_OPEN) || s.i + 65 > end || buf[s.i + 64] !== QUOTE) return false;
  s.i += 65;
  if (!s.lit(V) || !s.int()) return false;
  p.num(s.n);
  if (!s.lit(VENDOR) || !s.str()) return false;
  p.symAscii(s.buf, s.a, s.b);
  if (!s.lit(AT) || !s.strTo(p)) return false;
  if (!s.lit(TERMINAL) || !symOrNull(s, p)) return false;
  if (!s.lit(CASHIER) || !symOrNull(s, p)) return false;
  if (!s.lit(KEY) || !keyOrNull(s, p)) return false;
  if (!s.lit(BODY_HASH) || !strOrNull(s, p)) return false;
  if (!s.lit(TYPE_SALE_POSTINGS)) return false;
  const postings = p.slot();
  let count = 0;
  if (s.i < s.end && buf[s.i] !== CLOSE_BRACKET) {
    for (;;) {
      if (!s.lit(ACCOUNT) || !s.str()) return false;
      p.symAscii(s.buf, s.a, s.b);
      if (!s.lit(TOKEN) || !s.str()) return false;
      p.symAscii(s.buf, s.a, s.b);
      if (!s.lit(UNITS) || !s.int() || !s.byte(CLOSE_BRACE)) return false;
      p.num(s.n);
      count += 1;
      if (!s.byte(COMMA)) break;
    }
  }
  p.fill(postings, count);
  if (!s.lit(DATA_SALE_ID) || !s.strTo(p)) return false;
  if (!s.lit(CUSTOMER) || !symOrNull(s, p)) return false;
  if (!s.lit(CURRENCY) || !s.str()) return false;
  p.symAscii(s.buf, s.a, s.b);
  if (!s.lit(LINES)) return false;
  // The lines and their allocations are not read: the tail begins at the debits.
  // Searched in a view of the rest of the text alone: in the whole buffer a search could
  // run on through the lines after it.
  const from = s.i;
  const rest = buf.subarray(from, end);
  const allocations = bracketBefore(rest, 0, AFTER_LINES);
  if (allocations === -1) return false;
  const debits = bracketBefore(rest, allocations + 1 + AFTER_LINES.length, AFTER_ALLOCATIONS);
  if (debits === -1) return false;
  s.i = from + debits + 2;
  if (!s.lit(DEBITS) || !record(s, p)) return false;
  if (!s.lit(TOTAL) || !s.int()) return false;
  p.num(s.n);
  if (!s.lit(DUE) || !s.int()) return false;
  p.num(s.n);
  if (!s.lit(TENDERED) || !s.int()) return false;
  p.num(s.n);
  if (!s.lit(CHANGE) || !s.int()) return false;
  p.num(s.n);
  if (!s.lit(BALANCES_AFTER)) return false;
  if (s.isNull()) p.num(-1);
  else if (!record(s, p)) return false;
  return s.lit(END) && s.i === s.end;
}

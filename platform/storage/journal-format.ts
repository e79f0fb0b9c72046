import { hash as digest } from 'node:crypto';
import { JournalCorruptError } from './errors.ts';
import type { JournalCorruptReason } from './errors.ts';

/**
 * The journal's line format and how one line is verified.
 *
 * One event per line:
 *
 *     {"h":"<sha256 hex of the event text>","e":{"seq":N,"prev":"<hash of seq N-1>",...}}\n
 *
 * The hash covers the exact bytes of the event text, so a reader verifies a line by
 * slicing it at fixed offsets, without re-serialising anything. Seqs start at 1 and run
 * without gaps across segments; seq 1 chains to GENESIS_HASH.
 */

export const GENESIS_HASH = '0'.repeat(64);

export const SEGMENT_NAME = /^journal-(\d{16})\.jsonl$/;

export function segmentName(firstSeq: number): string {
  return `journal-${String(firstSeq).padStart(16, '0')}.jsonl`;
}

// Fixed framing: {"h":" (6 bytes) + 64 hex + ","e": (6 bytes), then the event, then }\n.
export const HASH_AT = 6;
export const MID_AT = 70;
export const EVENT_AT = 76;
export const LINE_OVERHEAD = EVENT_AT + 2;
export const HEAD = Buffer.from('{"h":"', 'latin1');
export const MID = Buffer.from('","e":', 'latin1');
// The event text always opens with {"seq":<digits>,"prev":"<64 hex>".
const SEQ_OPEN = Buffer.from('{"seq":', 'latin1');
const PREV_OPEN = Buffer.from(',"prev":"', 'latin1');
const EVENT_BYTES_MIN = SEQ_OPEN.length + 1 + PREV_OPEN.length + 64 + 2;
const SEQ_DIGITS_MAX = 16;
export const NEWLINE = 0x0a;
export const CLOSE_BRACE = 0x7d;
const QUOTE = 0x22;
const COMMA = 0x2c;

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`journal invariant broken: ${message}`);
}

/** Frames an event text already written at buf[start + EVENT_AT, +evBytes) into a full line; returns the event's hash. */
export function frameLine(buf: Buffer, start: number, evBytes: number): string {
  const evStart = start + EVENT_AT;
  const hash = digest('sha256', buf.subarray(evStart, evStart + evBytes), 'hex');
  HEAD.copy(buf, start);
  buf.write(hash, start + HASH_AT, 'latin1');
  MID.copy(buf, start + MID_AT);
  buf[evStart + evBytes] = CLOSE_BRACE;
  buf[evStart + evBytes + 1] = NEWLINE;
  return hash;
}

/** How much of a verified line LineCheck turns into strings. */
export const TEXT_NONE = 0;
export const TEXT_KEEP = 1;
export const TEXT_PARSE = 2;
export type TextMode = typeof TEXT_NONE | typeof TEXT_KEEP | typeof TEXT_PARSE;

/**
 * Turns the event bytes buf[start, end) of a verified line into the event a replay hands
 * on, in place of JSON.parse of the whole text: a reader that needs only part of each
 * event can leave the rest unparsed. It throws a SyntaxError on text it cannot read.
 */
export type EventParser = (buf: Buffer, start: number, end: number) => unknown;

function corrupt(segment: string, offset: number, seq: number | undefined, reason: JournalCorruptReason, detail: string): never {
  throw new JournalCorruptError({ segment, offset, seq, reason, detail });
}

/**
 * Verifies one line and exposes what it found in its fields, so that checking a million
 * lines allocates only the strings the caller asked for.
 */
export class LineCheck {
  seq = 0;
  hash = '';
  prev = '';
  text = '';
  event: unknown = undefined;
  /**
   * When false, the stored hash is taken as the line's hash without computing it: only
   * for a replay whose hashes another thread checks (replay-worker.ts) before any event
   * is used.
   */
  hashing = true;

  /** parser: how TEXT_PARSE turns the event into an object (null: JSON.parse of its text, kept in `text`; else `text` stays ''). */
  constructor(private readonly parser: EventParser | null = null) {}

  /**
   * Checks buf[start, end), a line without its newline, found at `offset` in `segment`.
   * expectedSeq 0 accepts any seq; expectedPrev null accepts any prev. atSeq is the seq
   * an error names when expectedSeq does not say it.
   */
  check(
    buf: Buffer, start: number, end: number, segment: string, offset: number,
    expectedSeq: number, expectedPrev: string | null, mode: TextMode, atSeq = expectedSeq,
  ): void {
    const at = atSeq === 0 ? undefined : atSeq;
    const evStart = start + EVENT_AT;
    const evEnd = end - 1;
    if (evEnd - evStart < EVENT_BYTES_MIN || buf[evEnd] !== CLOSE_BRACE) corrupt(segment, offset, at, 'malformed', 'not a journal line');
    for (let i = 0; i < HEAD.length; i++) if (buf[start + i] !== HEAD[i]) corrupt(segment, offset, at, 'malformed', 'not a journal line');
    for (let i = 0; i < MID.length; i++) if (buf[start + MID_AT + i] !== MID[i]) corrupt(segment, offset, at, 'malformed', 'not a journal line');

    let hash: string;
    if (this.hashing) {
      hash = digest('sha256', buf.subarray(evStart, evEnd), 'hex');
      for (let i = 0; i < 64; i++) {
        if (hash.charCodeAt(i) !== buf[start + HASH_AT + i]) corrupt(segment, offset, at, 'hash-mismatch', 'the event bytes no longer match their stored hash');
      }
    } else {
      hash = buf.toString('latin1', start + HASH_AT, start + HASH_AT + 64);
    }

    let p = evStart;
    for (let i = 0; i < SEQ_OPEN.length; i++, p++) if (buf[p] !== SEQ_OPEN[i]) corrupt(segment, offset, at, 'malformed', 'event does not begin with seq');
    let seq = 0;
    const digitsStart = p;
    for (let c = buf[p] ?? 0; c >= 0x30 && c <= 0x39 && p - digitsStart < SEQ_DIGITS_MAX; c = buf[++p] ?? 0) {
      seq = seq * 10 + (c - 0x30);
    }
    if (p === digitsStart || seq < 1) corrupt(segment, offset, at, 'malformed', 'event seq is not a positive integer');
    for (let i = 0; i < PREV_OPEN.length; i++, p++) if (buf[p] !== PREV_OPEN[i]) corrupt(segment, offset, at, 'malformed', 'event prev does not follow seq');
    const prevAt = p;
    p += 64;
    if (p + 1 >= evEnd || buf[p] !== QUOTE || (buf[p + 1] !== COMMA && buf[p + 1] !== CLOSE_BRACE)) corrupt(segment, offset, at, 'malformed', 'event prev is not 64 characters');

    if (expectedSeq !== 0 && seq !== expectedSeq) {
      corrupt(segment, offset, at, seq > expectedSeq ? 'seq-gap' : 'seq-disorder', `expected seq ${expectedSeq}, found seq ${seq}`);
    }
    let prev: string;
    if (expectedPrev !== null) {
      for (let i = 0; i < 64; i++) {
        if (expectedPrev.charCodeAt(i) !== buf[prevAt + i]) {
          corrupt(segment, offset, at, 'chain-break', `prev ${buf.toString('latin1', prevAt, prevAt + 64)} is not the hash of the event before it (${expectedPrev})`);
        }
      }
      prev = expectedPrev;
    } else {
      prev = buf.toString('latin1', prevAt, prevAt + 64);
      if (!/^[0-9a-f]{64}$/.test(prev)) corrupt(segment, offset, at, 'malformed', 'event prev is not lowercase hex');
    }

    this.seq = seq;
    this.hash = hash;
    this.prev = prev;
    if (mode === TEXT_NONE) return;
    this.readEvent(buf, start, end, segment, offset, mode, atSeq);
  }

  /**
   * Reads the event of the line check() last passed with TEXT_NONE, as check() would have
   * with `mode`: for a caller that reads most events another way, and only some as text.
   */
  readEvent(buf: Buffer, start: number, end: number, segment: string, offset: number, mode: typeof TEXT_KEEP | typeof TEXT_PARSE, atSeq: number): void {
    const at = atSeq === 0 ? undefined : atSeq;
    const evStart = start + EVENT_AT;
    const evEnd = end - 1;
    const { seq, prev } = this;
    const parser = mode === TEXT_PARSE ? this.parser : null;
    this.text = parser === null ? buf.toString('utf8', evStart, evEnd) : '';
    if (mode === TEXT_KEEP) return;
    let event: unknown;
    try {
      event = parser === null ? JSON.parse(this.text) : parser(buf, evStart, evEnd);
    } catch (err) {
      corrupt(segment, offset, at, 'malformed', `event is not valid JSON (${(err as Error).message})`);
    }
    // A second "seq" or "prev" key later in the text would override the canonical one.
    const e = event as { seq?: unknown; prev?: unknown };
    if (e.seq !== seq || e.prev !== prev) corrupt(segment, offset, at, 'malformed', 'event repeats its seq or prev key');
    this.event = event;
  }
}

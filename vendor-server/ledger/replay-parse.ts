import type { StateEvent } from '../../core/index.ts';

/**
 * How the ledger reads an event when it replays the journal at start: as the event its
 * state is folded from (StateEvent), not the whole event.
 *
 * A sale's priced lines and their allocations are about half of its bytes and most of
 * its objects, and no part of the state depends on them. So they are cut out of the text
 * before it is parsed: a long replay parses about half the bytes, makes far fewer objects,
 * and leaves the garbage collector less to do. Everything else reads them from the journal as
 * written (receipts, batches for the mall, the integrity audit, which parses every byte).
 *
 * The cut follows how the ledger writes a sale (LedgerService.commitSale): the data holds
 * `"lines":[…],"allocations":[…],"debits":` in that order. The markers are found as bytes:
 * - `"lines":[` is a key, wherever it stands: in JSON text an unescaped quote always
 *   delimits a string, and no key before a sale's lines (the envelope, postings, the
 *   sale's id, customer and currency) is named so;
 * - `],"allocations":[` ends an array, since the quote before "allocations" can only open
 *   a key, so the comma and the bracket before it are structure; a line holds no array
 *   followed by such a key, so it is the end of the lines;
 * - `],"debits":` likewise ends the allocations.
 * The text between is left out. Only a sale is read this way (no other event holds lines):
 * a text without the three markers in order is parsed whole, and so is a cut text that
 * does not parse, or parses to something other than a sale.
 *
 * What is left out is not read at all, so lines that are not JSON do not stop a start;
 * the integrity audit, which parses every line whole, reports them. Either way a line's
 * bytes are verified against its hash and the chain before its event is used.
 */

const LINES = Buffer.from('"lines":[', 'latin1');
// What follows the `]` that closes the lines, and the one that closes the allocations.
export const AFTER_LINES = Buffer.from(',"allocations":[', 'latin1');
export const AFTER_ALLOCATIONS = Buffer.from(',"debits":', 'latin1');
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACKET = 0x5b;

/** Parses the event text buf[start, end) into what the ledger's state needs of it. */
export function parseStateEvent(buf: Buffer, start: number, end: number): StateEvent {
  const cut = saleCut(buf, start, end);
  if (cut !== null) {
    // Up to the lines' key, then from the debits' key on: `..."currency":"EUR","debits":{…}…`.
    const event = parseOrNull(buf.toString('utf8', start, cut.head) + buf.toString('utf8', cut.tail, end));
    if (event !== null && event.type === 'sale' && typeof event.data === 'object' && event.data !== null) return event;
  }
  return JSON.parse(buf.toString('utf8', start, end)) as StateEvent;
}

/** Where a sale's text is cut: buf[head, tail) holds its lines and allocations. */
export interface SaleCut {
  /** Where `"lines":[` begins. */
  head: number;
  /** Where `"debits":` begins. */
  tail: number;
}

/** Where the text buf[start, end) is cut if it is a sale's, or null when it has no three markers in order. */
export function saleCut(buf: Buffer, start: number, end: number): SaleCut | null {
  // The searches run in a view of the text alone: in the whole buffer they could run on
  // through every line after it.
  const text = buf.subarray(start, end);
  const lines = linesKey(text);
  if (lines === -1) return null;
  const allocations = bracketBefore(text, lines + LINES.length, AFTER_LINES);
  if (allocations === -1) return null;
  const debits = bracketBefore(text, allocations + 1 + AFTER_LINES.length, AFTER_ALLOCATIONS);
  return debits === -1 ? null : { head: start + lines, tail: start + debits + 2 };
}

/**
 * Where `"lines":[` first occurs in text, or -1: found at the first `[` that the rest of
 * the marker precedes, with the native search for one byte (a sale has few `[` before its
 * lines), which costs a fraction of a search for the whole marker.
 */
function linesKey(text: Buffer): number {
  const head = LINES.length - 1;
  for (let at = text.indexOf(OPEN_BRACKET, head); at !== -1; at = text.indexOf(OPEN_BRACKET, at + 1)) {
    let i = 0;
    while (i < head && text[at - head + i] === LINES[i]) i++;
    if (i === head) return at - head;
  }
  return -1;
}

/**
 * The first `]` at or after `from` that `tail` follows, or -1: found byte by byte with
 * the native search for one byte (a `]` is rare in a sale's text), then compared here.
 */
export function bracketBefore(text: Buffer, from: number, tail: Buffer): number {
  for (let at = text.indexOf(CLOSE_BRACKET, from); at !== -1; at = text.indexOf(CLOSE_BRACKET, at + 1)) {
    if (at + 1 + tail.length > text.length) return -1;
    let i = 0;
    while (i < tail.length && text[at + 1 + i] === tail[i]) i++;
    if (i === tail.length) return at;
  }
  return -1;
}

function parseOrNull(text: string): StateEvent | null {
  try {
    return JSON.parse(text) as StateEvent;
  } catch {
    return null;
  }
}
